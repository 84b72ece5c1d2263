//! The port operators' tooling needs beyond the use cases: how much webhook work waits (for
//! metrics and alerts), handing claimed attempts back (at shutdown, so that another worker
//! sends them at once instead of after their lease) or putting them off (while their
//! endpoint is backed off), and forgetting finished attempts once their retention ends.
//!
//! Kept apart from [`crate::ports`] so that the use cases' ports stay the API an embedder reads
//! first; [`crate::ports::Store`] includes this trait all the same.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::DeliveryId;
use crate::ports::StoreError;

/// How much webhook work waits, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQueueStats {
    /// Pending attempts due now or earlier: the backlog the workers have yet to send.
    pub due: u64,
    /// Pending attempts scheduled later (retries waiting for their turn).
    pub scheduled: u64,
    /// When the longest-waiting due attempt became due; `None` when nothing is due.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Events not yet fanned out to their endpoints.
    pub events_awaiting_fanout: u64,
}

/// Queue statistics, the early release or postponement of claimed attempts, and the purge
/// of finished ones.
#[async_trait]
pub trait DeliveryQueueStore: Send + Sync {
    /// The queue as it stands at `now`, over every organization.
    async fn delivery_queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DeliveryQueueStats, StoreError>;

    /// Ends the leases of these attempts if they are still pending, so that any worker may
    /// claim them again at once; returns how many were released. Attempts recorded meanwhile
    /// are left alone.
    async fn release_deliveries(&self, ids: &[DeliveryId]) -> Result<u64, StoreError>;

    /// Puts these attempts off until `until` if they are still pending: their lease ends and
    /// they fall due then, without counting as an attempt (their endpoint is backed off);
    /// returns how many.
    async fn postpone_deliveries(
        &self,
        ids: &[DeliveryId],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Deletes up to `limit` finished attempts (succeeded, failed or skipped) created before
    /// `before`, oldest first; returns how many. Pending attempts are never touched.
    async fn purge_finished_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}
