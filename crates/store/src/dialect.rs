//! What differs between the backends inside a transaction.

use std::future::Future;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::pool::SqliteConn;
use crate::schema::{
    destinations, events, ledger_queue, orchestrators, organizations, webhook_deliveries,
    webhook_endpoints,
};
use crate::sql::{IndexPredicate, StableUpdate, Statement};
use crate::webhooks::rows::DeliveryRow;

/// The events waiting for fan-out, spelled as in the partial index's predicate so that the
/// planners of both backends can prove the index applies.
pub(crate) const NOT_FANNED_OUT: IndexPredicate = IndexPredicate("NOT fanned_out");

/// The pending attempts, spelled as in the partial index's predicate.
pub(crate) const PENDING_DELIVERY: IndexPredicate = IndexPredicate("status = 'pending'");

/// The finished attempts (what the retention purge deletes), spelled as in the partial
/// index's predicate.
pub(crate) const FINISHED_DELIVERY: IndexPredicate = IndexPredicate("status <> 'pending'");

/// The id of `$table`'s row `$id` (none when it is missing), locked until the transaction
/// ends.
macro_rules! locked_row {
    ($table:ident, $id:expr) => {
        $table::table.find($id).select($table::id).for_update()
    };
}

/// The event ids of up to `limit` queued ledger records, oldest first.
macro_rules! ledger_queue {
    ($limit:expr) => {
        ledger_queue::table
            .select(ledger_queue::event_id)
            .order(ledger_queue::event_id.asc())
            .limit($limit)
    };
}

/// The ids of up to `limit` events waiting for fan-out whose lease (if any) has ended at
/// `now`, oldest first.
macro_rules! fanout_queue {
    ($now:expr, $limit:expr) => {
        events::table
            .select(events::id)
            .filter(NOT_FANNED_OUT)
            .filter(
                events::fanout_lease_until
                    .is_null()
                    .or(events::fanout_lease_until.le($now)),
            )
            .order(events::id.asc())
            .limit($limit)
    };
}

/// Marks the events `ids` fanned out and ends their lease, unless another worker did; returns
/// the ids marked. Only the first worker to finish fans an event out: one whose lease ran out
/// while it worked finds the event done, and stores nothing twice.
macro_rules! mark_fanned_out {
    ($ids:expr) => {
        StableUpdate(
            ::diesel::update(events::table.filter(events::id.eq_any($ids)))
                .filter(NOT_FANNED_OUT)
                .set((
                    events::fanned_out.eq(true),
                    events::fanout_lease_until.eq(None::<NaiveDateTime>),
                ))
                .returning(events::id),
        )
    };
}

/// The pending attempts due at `now` whose lease (if any) has ended.
macro_rules! due_deliveries {
    ($now:expr) => {
        webhook_deliveries::table
            .filter(PENDING_DELIVERY)
            .filter(webhook_deliveries::next_attempt_at.le($now))
            .filter(
                webhook_deliveries::lease_until
                    .is_null()
                    .or(webhook_deliveries::lease_until.le($now)),
            )
    };
}

/// The ids of up to `limit` of endpoint `endpoint`'s attempts [`due_deliveries!`] names,
/// soonest first.
macro_rules! endpoint_queue {
    ($endpoint:expr, $now:expr, $limit:expr) => {
        due_deliveries!($now)
            .filter(webhook_deliveries::endpoint_id.eq($endpoint))
            .select(webhook_deliveries::id)
            .order((
                webhook_deliveries::next_attempt_at.asc(),
                webhook_deliveries::id.asc(),
            ))
            .limit($limit)
    };
}

/// Up to `limit` endpoints with attempts due at `now` (as [`due_deliveries!`]), the one whose
/// attempt fell due first first.
macro_rules! due_endpoints {
    ($now:expr, $limit:expr) => {
        due_deliveries!($now)
            .group_by(webhook_deliveries::endpoint_id)
            .select(webhook_deliveries::endpoint_id)
            .order(::diesel::dsl::min(webhook_deliveries::next_attempt_at).asc())
            .limit($limit)
    };
}
pub(crate) use {due_deliveries, due_endpoints};

/// A row a transaction can hold, by its id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Row<'a> {
    Organization(&'a str),
    Destination(&'a str),
    Orchestrator(&'a str),
}

/// What differs between the backends inside a transaction.
pub(crate) trait Dialect {
    /// Locks `row` until the transaction ends, so that concurrent transactions that lock it
    /// too run one after the other. A missing row locks nothing.
    fn lock_row(&mut self, row: Row<'_>) -> impl Future<Output = QueryResult<()>> + Send;

    /// Locks up to `limit` queued ledger records, oldest first, until the transaction ends;
    /// a concurrent transaction waits for them (the chains are appended in order).
    fn lock_ledger_queue(
        &mut self,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<String>>> + Send;

    /// Locks the events [`fanout_queue!`] names until the transaction ends (concurrent
    /// transactions lock disjoint sets); the transaction then commits without the WAL flush.
    fn lock_fanout_queue(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<String>>> + Send;

    /// Marks the events `ids` fanned out (ending their lease) unless another worker did;
    /// returns the ids marked here. The transaction then commits without the WAL flush.
    fn mark_fanned_out(
        &mut self,
        ids: &[String],
    ) -> impl Future<Output = QueryResult<Vec<String>>> + Send;

    /// Locks the rows of the endpoints `ids` that no other transaction holds until the
    /// transaction ends, so that concurrent claims count an endpoint's attempts in flight one
    /// after the other (`FOR NO KEY UPDATE`: inserting its attempts is not held up); returns
    /// those locked. The transaction then commits without the WAL flush.
    fn lock_endpoints(
        &mut self,
        ids: &[String],
    ) -> impl Future<Output = QueryResult<Vec<String>>> + Send;

    /// Locks the attempts [`endpoint_queue!`] names until the transaction ends (concurrent
    /// transactions lock disjoint sets).
    fn lock_endpoint_queue(
        &mut self,
        endpoint: &str,
        now: NaiveDateTime,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<String>>> + Send;

    /// Lets the current transaction commit without waiting for the WAL flush (PostgreSQL's
    /// asynchronous commit; nothing on SQLite). Only for the delivery worker's bookkeeping:
    /// its leases, fan-outs and outcomes. What a database crash can lose of them is the last
    /// fraction of a second, and losing it only repeats work — an event fanned out again, an
    /// attempt sent again — which at-least-once delivery allows; the events themselves are
    /// committed by the API with the flush. The wait it saves sits on every event's way from
    /// commit to receiver.
    fn commit_without_flush(&mut self) -> impl Future<Output = QueryResult<()>> + Send;

    /// Runs one statement; how many rows it changed.
    fn run(&mut self, statement: impl Statement)
    -> impl Future<Output = QueryResult<usize>> + Send;

    /// Runs two statements: on PostgreSQL both travel together (pipelined), a round trip
    /// less; on SQLite one after the other.
    fn pipeline(
        &mut self,
        first: impl Statement,
        second: impl Statement,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// Inserts attempts: in a few multi-row statements on PostgreSQL, one statement per row
    /// on SQLite (diesel-async has no batch insert there).
    fn insert_deliveries(
        &mut self,
        rows: &[DeliveryRow],
    ) -> impl Future<Output = QueryResult<()>> + Send;
}

/// Rows per multi-row insert: 12 columns each stays far below PostgreSQL's 65,535 parameters.
pub(crate) const INSERT_CHUNK: usize = 1000;

impl Dialect for AsyncPgConnection {
    async fn lock_row(&mut self, row: Row<'_>) -> QueryResult<()> {
        let _: Vec<String> = match row {
            Row::Organization(id) => locked_row!(organizations, id).load(self).await?,
            Row::Destination(id) => locked_row!(destinations, id).load(self).await?,
            Row::Orchestrator(id) => locked_row!(orchestrators, id).load(self).await?,
        };
        Ok(())
    }

    async fn lock_ledger_queue(&mut self, limit: i64) -> QueryResult<Vec<String>> {
        ledger_queue!(limit).for_update().load(self).await
    }

    async fn lock_fanout_queue(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        let conn: &AsyncPgConnection = self;
        // Rows another worker holds are skipped, not waited for: it is leasing them.
        let locked = fanout_queue!(now, limit)
            .for_update()
            .skip_locked()
            .load(&mut &*conn);
        without_flush_with(conn, locked).await
    }

    async fn mark_fanned_out(&mut self, ids: &[String]) -> QueryResult<Vec<String>> {
        let conn: &AsyncPgConnection = self;
        without_flush_with(conn, mark_fanned_out!(ids).get_results(&mut &*conn)).await
    }

    async fn lock_endpoints(&mut self, ids: &[String]) -> QueryResult<Vec<String>> {
        let conn: &AsyncPgConnection = self;
        // An endpoint another claim holds is skipped, not waited for: it is being served.
        let locked = webhook_endpoints::table
            .filter(webhook_endpoints::id.eq_any(ids))
            .select(webhook_endpoints::id)
            .for_no_key_update()
            .skip_locked()
            .load(&mut &*conn);
        without_flush_with(conn, locked).await
    }

    async fn lock_endpoint_queue(
        &mut self,
        endpoint: &str,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        endpoint_queue!(endpoint, now, limit)
            .for_update()
            .skip_locked()
            .load(self)
            .await
    }

    async fn commit_without_flush(&mut self) -> QueryResult<()> {
        without_flush(self).await
    }

    async fn run(&mut self, statement: impl Statement) -> QueryResult<usize> {
        statement.execute(self).await
    }

    async fn pipeline(&mut self, first: impl Statement, second: impl Statement) -> QueryResult<()> {
        let conn: &AsyncPgConnection = self;
        // Both run; the first failure is the one that explains (the second then only finds
        // the transaction aborted).
        let (first, second) = tokio::join!(first.execute(&mut &*conn), second.execute(&mut &*conn));
        first?;
        second?;
        Ok(())
    }

    async fn insert_deliveries(&mut self, rows: &[DeliveryRow]) -> QueryResult<()> {
        // One row (an event for one endpoint, the common case) goes as a cached statement;
        // a multi-row statement is prepared again each time, a second round trip.
        if let [row] = rows {
            diesel::insert_into(webhook_deliveries::table)
                .values(row)
                .execute(self)
                .await?;
            return Ok(());
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            diesel::insert_into(webhook_deliveries::table)
                .values(chunk)
                .execute(self)
                .await?;
        }
        Ok(())
    }
}

/// [`Dialect::commit_without_flush`] through a shared reference, so that it can be pipelined
/// with the transaction's next statement.
async fn without_flush(mut conn: &AsyncPgConnection) -> QueryResult<()> {
    SimpleAsyncConnection::batch_execute(&mut conn, "SET LOCAL synchronous_commit TO OFF").await
}

/// Runs `statement` (made on `conn`) with [`without_flush`]: both travel together
/// (pipelined), a round trip less on every event's way.
async fn without_flush_with<T>(
    conn: &AsyncPgConnection,
    statement: impl Future<Output = QueryResult<T>>,
) -> QueryResult<T> {
    let ((), result) = tokio::try_join!(without_flush(conn), statement)?;
    Ok(result)
}

// The immediate transaction already holds the database's only write lock.
impl Dialect for SqliteConn {
    async fn lock_row(&mut self, _row: Row<'_>) -> QueryResult<()> {
        Ok(())
    }

    async fn lock_ledger_queue(&mut self, limit: i64) -> QueryResult<Vec<String>> {
        ledger_queue!(limit).load(self).await
    }

    async fn lock_fanout_queue(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        fanout_queue!(now, limit).load(self).await
    }

    async fn mark_fanned_out(&mut self, ids: &[String]) -> QueryResult<Vec<String>> {
        mark_fanned_out!(ids).get_results(self).await
    }

    async fn lock_endpoints(&mut self, ids: &[String]) -> QueryResult<Vec<String>> {
        Ok(ids.to_vec())
    }

    async fn lock_endpoint_queue(
        &mut self,
        endpoint: &str,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        endpoint_queue!(endpoint, now, limit).load(self).await
    }

    async fn commit_without_flush(&mut self) -> QueryResult<()> {
        Ok(())
    }

    async fn run(&mut self, statement: impl Statement) -> QueryResult<usize> {
        statement.execute(self).await
    }

    async fn pipeline(&mut self, first: impl Statement, second: impl Statement) -> QueryResult<()> {
        first.execute(&mut *self).await?;
        second.execute(self).await?;
        Ok(())
    }

    async fn insert_deliveries(&mut self, rows: &[DeliveryRow]) -> QueryResult<()> {
        for row in rows {
            diesel::insert_into(webhook_deliveries::table)
                .values(row)
                .execute(self)
                .await?;
        }
        Ok(())
    }
}
