//! What the server's probes, gauges and housekeeping ask of the store, as use cases: no
//! principal (the process itself asks), no authorization.

use chrono::{DateTime, Utc};

use super::Mandate;
use crate::auth::Authenticator;
use crate::operations::DeliveryQueueStats;
use crate::ports::StoreError;

impl Mandate {
    /// The credential resolver over the same store and key hasher; the admin API is off when
    /// `admin_token` is `None`.
    pub fn authenticator(&self, admin_token: Option<String>) -> Authenticator {
        Authenticator::new(self.store.clone(), self.hasher.clone(), admin_token)
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// The webhook queue as it stands at `now`, over every organization.
    pub async fn delivery_queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DeliveryQueueStats, StoreError> {
        self.store.delivery_queue_stats(now).await
    }

    /// Forgets the idempotency records older than `before`; returns how many.
    pub async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.purge_idempotency(before).await
    }

    /// Forgets the agent signature nonces older than `before` (their signatures are refused
    /// as too old anyway); returns how many.
    pub async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.purge_signature_nonces(before).await
    }

    /// Forgets up to `limit` finished webhook attempts created before `before` (their
    /// retention ended); returns how many. Called again while it returns `limit`.
    pub async fn purge_finished_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.store.purge_finished_deliveries(before, limit).await
    }
}
