//! The two connection pools, the macro that runs one body of queries on either, and the
//! mapping of driver errors to [`StoreError`].

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;

use diesel::ConnectionError;
use diesel::SqliteConnection;
use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, ValidGrouping, is_aggregate};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Bool;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use mandate_domain::model::KeyOwner;
use mandate_domain::ports::StoreError;
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::rows::DeliveryRow;
use crate::schema::{
    destinations, events, ledger_queue, orchestrators, organizations, webhook_deliveries,
};
use crate::{OpenError, StoreOptions};

/// SQLite through diesel-async: each query runs on a blocking thread.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

type ManagerError = diesel_async::pooled_connection::PoolError;
pub(crate) type PoolError = deadpool::managed::PoolError<ManagerError>;

/// Set on every SQLite connection, the migrations' included. `busy_timeout` comes first so
/// that the switch to WAL waits for another process's lock instead of failing.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;";

/// Why a store operation failed, before it becomes a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Query(#[from] DieselError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no database connection became available within {0:?}")]
    AcquireTimeout(Duration),
    #[error("the database did not answer within {0:?}")]
    PingTimeout(Duration),
    #[error("{0}")]
    Data(String),
    #[error("the database task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<Error> for StoreError {
    fn from(error: Error) -> StoreError {
        match error {
            Error::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                StoreError::Duplicate
            }
            Error::Query(ref query) if is_connection_failure(query) => {
                StoreError::Unavailable(Box::new(error))
            }
            Error::Pool(PoolError::NoRuntimeSpecified) => StoreError::Other(Box::new(error)),
            Error::Pool(_) | Error::AcquireTimeout(_) | Error::PingTimeout(_) => {
                StoreError::Unavailable(Box::new(error))
            }
            Error::Query(_) | Error::Data(_) | Error::Task(_) => StoreError::Other(Box::new(error)),
        }
    }
}

/// Errors after which a retry on another connection, or later, may well succeed.
fn is_connection_failure(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        // SQLITE_BUSY: another process held the write lock past busy_timeout.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().contains("database is locked")
        }
        _ => false,
    }
}

/// A pool per backend; cloning one clones an `Arc`.
#[derive(Clone)]
pub(crate) enum Pools {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

impl Pools {
    pub(crate) fn postgres(url: &str, options: &StoreOptions) -> Result<Pools, OpenError> {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // A closed connection is noticed (and dropped) without a round trip per checkout.
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let timeout = Some(options.acquire_timeout);
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|error| OpenError::Pool(Box::new(error)))?;
        Ok(Pools::Postgres(pool))
    }

    pub(crate) fn sqlite(path: &str, options: &StoreOptions) -> Result<Pools, OpenError> {
        let mut config = ManagerConfig::<SqliteConn>::default();
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = SqliteConn::establish(&url).await?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                conn.batch_execute("PRAGMA foreign_keys = ON;")
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::new_with_config(path, config);
        // SQLite has one writer at a time anyway: a single connection queues requests in the
        // pool (bounded by acquire_timeout) instead of failing them with SQLITE_BUSY. Opening
        // the connection is not timed out (see `sqlite_connection`).
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|error| OpenError::Pool(Box::new(error)))?;
        Ok(Pools::Sqlite(pool))
    }
}

/// The connection of a keyed call, held in the call's transaction from its beginning to its
/// end (then taken out and returned to the pool): every operation of the call's store runs on
/// it, so that the call's writes and its answer commit together.
pub(crate) type KeyedConnection<C> = Arc<tokio::sync::Mutex<Option<Object<C>>>>;

/// The keyed call a store runs in, if any.
#[derive(Clone)]
pub(crate) enum Keyed {
    Postgres(KeyedConnection<AsyncPgConnection>),
    Sqlite(KeyedConnection<SqliteConn>),
}

/// The connection one operation runs on (`O`, a pooled connection object): a pooled one, or
/// its keyed call's.
pub(crate) enum Held<O: 'static> {
    Pooled(O),
    Keyed(OwnedMappedMutexGuard<Option<O>, O>),
}

impl<O: 'static> Held<O> {
    /// Whether the operation runs inside a keyed call's transaction.
    pub(crate) fn is_keyed(&self) -> bool {
        matches!(self, Held::Keyed(_))
    }

    async fn keyed(connection: &Arc<tokio::sync::Mutex<Option<O>>>) -> Result<Held<O>, Error> {
        OwnedMutexGuard::try_map(connection.clone().lock_owned().await, Option::as_mut)
            .map(Held::Keyed)
            .map_err(|_| Error::Data("the keyed call has ended".into()))
    }
}

impl<O: DerefMut + 'static> Deref for Held<O> {
    type Target = O::Target;

    fn deref(&self) -> &O::Target {
        match self {
            Held::Pooled(object) => object,
            Held::Keyed(guard) => guard,
        }
    }
}

impl<O: DerefMut + 'static> DerefMut for Held<O> {
    fn deref_mut(&mut self) -> &mut O::Target {
        match self {
            Held::Pooled(object) => object,
            Held::Keyed(guard) => guard,
        }
    }
}

/// A PostgreSQL connection within `timeout` (the keyed call's, when there is one): deadpool
/// bounds each phase (wait, create, recycle) separately, the outer bound caps their sum.
pub(crate) async fn postgres_connection(
    pool: &Pool<AsyncPgConnection>,
    keyed: Option<&Keyed>,
    timeout: Duration,
) -> Result<Held<Object<AsyncPgConnection>>, Error> {
    if let Some(Keyed::Postgres(connection)) = keyed {
        return Held::keyed(connection).await;
    }
    Ok(Held::Pooled(pooled_postgres(pool, timeout).await?))
}

/// A pooled PostgreSQL connection within `timeout`.
pub(crate) async fn pooled_postgres(
    pool: &Pool<AsyncPgConnection>,
    timeout: Duration,
) -> Result<Object<AsyncPgConnection>, Error> {
    match tokio::time::timeout(timeout, pool.get()).await {
        Ok(object) => Ok(object?),
        Err(_) => Err(Error::AcquireTimeout(timeout)),
    }
}

/// The SQLite connection (the keyed call's, when there is one); only the wait for it is
/// bounded (by deadpool). Abandoning the opening of a connection midway would abandon a
/// blocking call (see [`detached`]), and `busy_timeout` bounds the opening anyway.
pub(crate) async fn sqlite_connection(
    pool: &Pool<SqliteConn>,
    keyed: Option<&Keyed>,
) -> Result<Held<Object<SqliteConn>>, Error> {
    if let Some(Keyed::Sqlite(connection)) = keyed {
        return Held::keyed(connection).await;
    }
    Ok(Held::Pooled(pool.get().await?))
}

/// Runs a store operation as its own task, so that it completes even when the caller stops
/// waiting: a half-run SQLite call would otherwise block (or, on a current-thread runtime,
/// panic) while being dropped, and a half-run transaction would waste its connection.
pub(crate) async fn detached<T, F>(operation: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    match tokio::spawn(operation).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(failed) => Err(Error::Task(failed).into()),
    }
}

/// Runs one body of diesel-async queries on a pooled connection of whichever backend the store
/// uses, outside any transaction. The body is expanded once per connection type, so it must
/// type-check on both; it runs detached (see [`detached`]), so it may capture only owned values.
macro_rules! db_run {
    ($store:expr, |$conn:ident| $body:block) => {{
        let timeout = $store.acquire_timeout;
        let keyed = $store.keyed.clone();
        match $store.pools.clone() {
            $crate::pool::Pools::Postgres(pool) => {
                $crate::pool::detached(async move {
                    let mut object =
                        $crate::pool::postgres_connection(&pool, keyed.as_ref(), timeout).await?;
                    let $conn: &mut ::diesel_async::AsyncPgConnection = &mut object;
                    $body
                })
                .await
            }
            $crate::pool::Pools::Sqlite(pool) => {
                $crate::pool::detached(async move {
                    let mut object = $crate::pool::sqlite_connection(&pool, keyed.as_ref()).await?;
                    let $conn: &mut $crate::pool::SqliteConn = &mut object;
                    $body
                })
                .await
            }
        }
    }};
}
pub(crate) use db_run;

/// Like [`db_run!`], in one transaction. SQLite begins it with `BEGIN IMMEDIATE`, taking the
/// write lock up front, so that a read followed by a write cannot fail halfway with
/// SQLITE_BUSY when another process writes too.
macro_rules! db_transaction {
    ($store:expr, |$conn:ident| $body:block) => {{
        let timeout = $store.acquire_timeout;
        let keyed = $store.keyed.clone();
        match $store.pools.clone() {
            $crate::pool::Pools::Postgres(pool) => {
                $crate::pool::detached(async move {
                    let mut object =
                        $crate::pool::postgres_connection(&pool, keyed.as_ref(), timeout).await?;
                    let conn: &mut ::diesel_async::AsyncPgConnection = &mut object;
                    // Inside a keyed call's transaction, a savepoint.
                    ::diesel_async::AsyncConnection::transaction::<_, $crate::pool::Error, _>(
                        conn,
                        async |$conn| $body,
                    )
                    .await
                })
                .await
            }
            $crate::pool::Pools::Sqlite(pool) => {
                $crate::pool::detached(async move {
                    let mut object = $crate::pool::sqlite_connection(&pool, keyed.as_ref()).await?;
                    let nested = object.is_keyed();
                    let conn: &mut $crate::pool::SqliteConn = &mut object;
                    let body = async |$conn: &mut $crate::pool::SqliteConn| -> Result<_, $crate::pool::Error> { $body };
                    if nested {
                        // Inside a keyed call's transaction (begun with the write lock), a
                        // savepoint.
                        ::diesel_async::AsyncConnection::transaction(conn, body).await
                    } else {
                        conn.immediate_transaction(body).await
                    }
                })
                .await
            }
        }
    }};
}
pub(crate) use db_transaction;

/// A fixed SQL condition, spelled as in a partial index's predicate so that the planners of
/// both backends can prove the index applies (a bound parameter would not do). Unlike
/// `diesel::dsl::sql`, it leaves the statement cacheable: PostgreSQL then runs it as a prepared
/// statement in one round trip instead of preparing it again (a second round trip) every time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPredicate(pub(crate) &'static str);

impl Expression for IndexPredicate {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for IndexPredicate {}

impl<QS> SelectableExpression<QS> for IndexPredicate {}

impl ValidGrouping<()> for IndexPredicate {
    type IsAggregate = is_aggregate::Never;
}

// Statements holding one are cached by their SQL text, not by their type: the type does not
// tell the predicates apart.
impl QueryId for IndexPredicate {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> QueryFragment<DB> for IndexPredicate {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

/// An `UPDATE` on the way of every event, which PostgreSQL may keep prepared. Diesel never
/// caches an `UPDATE` (a changeset skipping `None` fields changes its SQL), so each would be
/// prepared again, a second round trip, every time; these statements' SQL does not change
/// with their values, and they are cached by their text. (On SQLite an `IN` list has one text
/// per length, bounded by the worker's batch size.)
#[derive(Debug)]
pub(crate) struct StableUpdate<Q>(pub(crate) Q);

impl<Q: Query> Query for StableUpdate<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> QueryFragment<DB> for StableUpdate<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for StableUpdate<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// The events waiting for fan-out, spelled as in the partial index's predicate so that the
/// planners of both backends can prove the index applies.
pub(crate) const NOT_FANNED_OUT: IndexPredicate = IndexPredicate("NOT fanned_out");

/// The pending attempts, spelled as in the partial index's predicate.
pub(crate) const PENDING_DELIVERY: IndexPredicate = IndexPredicate("status = 'pending'");

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

/// The ids of up to `limit` pending attempts due at `now` whose lease (if any) has ended,
/// soonest first.
macro_rules! delivery_queue {
    ($now:expr, $limit:expr) => {
        webhook_deliveries::table
            .select(webhook_deliveries::id)
            .filter(PENDING_DELIVERY)
            .filter(webhook_deliveries::next_attempt_at.le($now))
            .filter(
                webhook_deliveries::lease_until
                    .is_null()
                    .or(webhook_deliveries::lease_until.le($now)),
            )
            .order((
                webhook_deliveries::next_attempt_at.asc(),
                webhook_deliveries::id.asc(),
            ))
            .limit($limit)
    };
}

/// A statement both backends run, as [`Dialect::run`] and [`Dialect::pipeline`] take it.
pub(crate) trait Statement:
    QueryFragment<diesel::pg::Pg> + QueryFragment<diesel::sqlite::Sqlite> + QueryId + Send
{
}

impl<S> Statement for S where
    S: QueryFragment<diesel::pg::Pg> + QueryFragment<diesel::sqlite::Sqlite> + QueryId + Send
{
}

/// What differs between the backends inside a transaction.
pub(crate) trait Dialect {
    /// Locks the row of a key's owner until the transaction ends, so that concurrent key
    /// insertions for one owner run one after the other.
    fn lock_owner(&mut self, owner: &KeyOwner) -> impl Future<Output = QueryResult<()>> + Send;

    /// Locks a destination's row until the transaction ends, so that concurrent approvals
    /// of its claims count one after the other.
    fn lock_destination(&mut self, id: &str) -> impl Future<Output = QueryResult<()>> + Send;

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

    /// Locks the attempts [`delivery_queue!`] names until the transaction ends (concurrent
    /// transactions lock disjoint sets); the transaction then commits without the WAL flush.
    fn lock_delivery_queue(
        &mut self,
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
const INSERT_CHUNK: usize = 1000;

impl Dialect for AsyncPgConnection {
    async fn lock_owner(&mut self, owner: &KeyOwner) -> QueryResult<()> {
        // A missing owner locks nothing; the key's foreign key then refuses the insert.
        match owner {
            KeyOwner::Platform { organization_id } => {
                organizations::table
                    .find(organization_id.as_str())
                    .select(organizations::id)
                    .for_update()
                    .load::<String>(self)
                    .await?;
            }
            KeyOwner::Destination { destination_id, .. } => {
                self.lock_destination(destination_id.as_str()).await?;
            }
            KeyOwner::Orchestrator { orchestrator_id } => {
                orchestrators::table
                    .find(orchestrator_id.as_str())
                    .select(orchestrators::id)
                    .for_update()
                    .load::<String>(self)
                    .await?;
            }
        }
        Ok(())
    }

    async fn lock_destination(&mut self, id: &str) -> QueryResult<()> {
        destinations::table
            .find(id)
            .select(destinations::id)
            .for_update()
            .load::<String>(self)
            .await?;
        Ok(())
    }

    async fn lock_ledger_queue(&mut self, limit: i64) -> QueryResult<Vec<String>> {
        ledger_queue::table
            .select(ledger_queue::event_id)
            .order(ledger_queue::event_id.asc())
            .limit(limit)
            .for_update()
            .load(self)
            .await
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

    async fn lock_delivery_queue(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        let conn: &AsyncPgConnection = self;
        let locked = delivery_queue!(now, limit)
            .for_update()
            .skip_locked()
            .load(&mut &*conn);
        without_flush_with(conn, locked).await
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
    async fn lock_owner(&mut self, _owner: &KeyOwner) -> QueryResult<()> {
        Ok(())
    }

    async fn lock_destination(&mut self, _id: &str) -> QueryResult<()> {
        Ok(())
    }

    async fn lock_ledger_queue(&mut self, limit: i64) -> QueryResult<Vec<String>> {
        ledger_queue::table
            .select(ledger_queue::event_id)
            .order(ledger_queue::event_id.asc())
            .limit(limit)
            .load(self)
            .await
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

    async fn lock_delivery_queue(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        delivery_queue!(now, limit).load(self).await
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
