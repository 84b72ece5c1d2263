//! The operators' port: queue statistics for metrics, the early release of claimed attempts
//! at shutdown or their postponement while their endpoint is backed off, and the retention
//! purge of finished attempts. Also the connection pool's state, which only the binary reads.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{delete, update};
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use mandate_domain::ids::DeliveryId;
use mandate_domain::operations::{DeliveryQueueStats, DeliveryQueueStore};
use mandate_domain::ports::{Health, StoreError};

use crate::DbStore;
use crate::dialect::{FINISHED_DELIVERY, NOT_FANNED_OUT, PENDING_DELIVERY};
use crate::errors::Error;
use crate::pool::{Pools, db_run, detached, pooled_postgres};
use crate::rows::to_naive;
use crate::schema::{events, webhook_deliveries};

/// The connection pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections the pool holds.
    pub max_size: usize,
    /// Connections open now, idle or in use.
    pub size: usize,
    /// Open connections that are idle.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
}

impl DbStore {
    /// The state of the connection pool, for metrics.
    pub fn pool_status(&self) -> PoolStatus {
        let status = match &self.pools {
            Pools::Postgres(pool) => pool.status(),
            Pools::Sqlite(pool) => pool.status(),
        };
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }
}

/// A count as the unsigned number the statistics report.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl DeliveryQueueStore for DbStore {
    async fn delivery_queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DeliveryQueueStats, StoreError> {
        let now = to_naive(now);
        db_run!(self, |conn| {
            // Both filters are spelled as the partial indexes' predicates, so that each
            // count reads only the small index of what is still to do.
            let pending = || webhook_deliveries::table.filter(PENDING_DELIVERY);
            let due: i64 = pending()
                .filter(webhook_deliveries::next_attempt_at.le(now))
                .count()
                .get_result(conn)
                .await?;
            let scheduled: i64 = pending()
                .filter(webhook_deliveries::next_attempt_at.gt(now))
                .count()
                .get_result(conn)
                .await?;
            let oldest_due_at: Option<chrono::NaiveDateTime> = pending()
                .filter(webhook_deliveries::next_attempt_at.le(now))
                .select(diesel::dsl::min(webhook_deliveries::next_attempt_at))
                .first(conn)
                .await?;
            let awaiting: i64 = events::table
                .filter(NOT_FANNED_OUT)
                .count()
                .get_result(conn)
                .await?;
            Ok(DeliveryQueueStats {
                due: count(due),
                scheduled: count(scheduled),
                oldest_due_at: oldest_due_at.map(|at| at.and_utc()),
                events_awaiting_fanout: count(awaiting),
            })
        })
    }

    async fn release_deliveries(&self, ids: &[DeliveryId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let released = db_run!(self, |conn| {
            let released = update(
                webhook_deliveries::table
                    .filter(webhook_deliveries::id.eq_any(&ids))
                    .filter(PENDING_DELIVERY),
            )
            .set(webhook_deliveries::lease_until.eq(None::<chrono::NaiveDateTime>))
            .execute(conn)
            .await?;
            Ok(u64::try_from(released).unwrap_or(u64::MAX))
        })?;
        // Released attempts are due: on SQLite this wakes the process's workers; on PostgreSQL
        // other replicas' workers find them when their idle wait ends (about a second).
        self.work.committed();
        Ok(released)
    }

    async fn postpone_deliveries(
        &self,
        ids: &[DeliveryId],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let until = to_naive(until);
        db_run!(self, |conn| {
            let postponed = update(
                webhook_deliveries::table
                    .filter(webhook_deliveries::id.eq_any(&ids))
                    .filter(PENDING_DELIVERY),
            )
            .set((
                webhook_deliveries::lease_until.eq(None::<chrono::NaiveDateTime>),
                webhook_deliveries::next_attempt_at.eq(until),
            ))
            .execute(conn)
            .await?;
            Ok(u64::try_from(postponed).unwrap_or(u64::MAX))
        })
    }

    async fn purge_finished_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let before = to_naive(before);
        let limit = i64::from(limit);
        db_run!(self, |conn| {
            let oldest: Vec<String> = webhook_deliveries::table
                .filter(FINISHED_DELIVERY)
                .filter(webhook_deliveries::created_at.lt(before))
                .order(webhook_deliveries::created_at.asc())
                .select(webhook_deliveries::id)
                .limit(limit)
                .load(conn)
                .await?;
            if oldest.is_empty() {
                return Ok(0);
            }
            // Finished attempts never change again: deleting them needs no transaction.
            let purged = delete(webhook_deliveries::table)
                .filter(webhook_deliveries::id.eq_any(&oldest))
                .execute(conn)
                .await?;
            Ok(u64::try_from(purged).unwrap_or(u64::MAX))
        })
    }
}

#[async_trait]
impl Health for DbStore {
    async fn ping(&self) -> Result<(), StoreError> {
        ping(self.pools.clone(), self.acquire_timeout).await
    }
}

/// `Ok` when the database answers: on PostgreSQL within `timeout`, on SQLite when its one
/// connection frees up within `timeout`.
pub(crate) async fn ping(pools: Pools, timeout: Duration) -> Result<(), StoreError> {
    match pools {
        Pools::Postgres(pool) => {
            detached(async move {
                let mut object = pooled_postgres(&pool, timeout).await?;
                match tokio::time::timeout(timeout, object.batch_execute("SELECT 1")).await {
                    Ok(answer) => Ok(answer?),
                    Err(_) => {
                        // The connection may be stuck mid-query: never hand it out again.
                        drop(Object::take(object));
                        Err(Error::PingTimeout(timeout))
                    }
                }
            })
            .await
        }
        // No timeout around the query, which must not be abandoned (see `detached`) and takes
        // no lock.
        Pools::Sqlite(pool) => {
            detached(async move {
                let mut object = pool.get().await?;
                Ok(object.batch_execute("SELECT 1").await?)
            })
            .await
        }
    }
}
