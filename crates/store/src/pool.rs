//! The two connection pools, the connection an operation runs on, and the macros that run one
//! body of queries on either backend.

use std::future::Future;
use std::time::Duration;

use diesel::ConnectionError;
use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use mandate_domain::ports::StoreError;

use crate::errors::Error;
use crate::keyed::{Held, Keyed};
use crate::{OpenError, StoreOptions};

/// SQLite through diesel-async: each query runs on a blocking thread.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

type ManagerError = diesel_async::pooled_connection::PoolError;
pub(crate) type PoolError = deadpool::managed::PoolError<ManagerError>;

/// Set on every SQLite connection, the migrations' included. `busy_timeout` comes first so
/// that the switch to WAL waits for another process's lock instead of failing.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;";

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

/// Runs `$postgres` or `$sqlite`, whichever is the store's backend, detached (see
/// [`detached`]) with that backend's connection as `$object` (the keyed call's, when there is
/// one).
macro_rules! on_connection {
    ($store:expr, |$object:ident| postgres $postgres:block sqlite $sqlite:block) => {{
        let timeout = $store.acquire_timeout;
        let keyed = $store.keyed.clone();
        match $store.pools.clone() {
            $crate::pool::Pools::Postgres(pool) => {
                $crate::pool::detached(async move {
                    let mut $object =
                        $crate::pool::postgres_connection(&pool, keyed.as_ref(), timeout).await?;
                    $postgres
                })
                .await
            }
            $crate::pool::Pools::Sqlite(pool) => {
                $crate::pool::detached(async move {
                    let mut $object =
                        $crate::pool::sqlite_connection(&pool, keyed.as_ref()).await?;
                    $sqlite
                })
                .await
            }
        }
    }};
}
pub(crate) use on_connection;

/// Runs one body of diesel-async queries on a pooled connection of whichever backend the store
/// uses, outside any transaction. The body is expanded once per connection type, so it must
/// type-check on both; it runs detached (see [`detached`]), so it may capture only owned values.
macro_rules! db_run {
    ($store:expr, |$conn:ident| $body:block) => {
        $crate::pool::on_connection!($store, |object| postgres {
            let $conn: &mut ::diesel_async::AsyncPgConnection = &mut object;
            $body
        } sqlite {
            let $conn: &mut $crate::pool::SqliteConn = &mut object;
            $body
        })
    };
}
pub(crate) use db_run;

/// The row of `$row` that `$query` finds first, as the domain's type (`None` if there is
/// none), read as [`db_run!`] does.
macro_rules! db_first {
    ($store:expr, $row:ty, $query:expr) => {
        $crate::pool::db_run!($store, |conn| {
            let row: Option<$row> = $query
                .select(<$row>::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(TryFrom::try_from)
                .transpose()
                .map_err($crate::errors::Error::from)
        })
    };
}
pub(crate) use db_first;

/// Like [`db_run!`], in one transaction. SQLite begins it with `BEGIN IMMEDIATE`, taking the
/// write lock up front, so that a read followed by a write cannot fail halfway with
/// SQLITE_BUSY when another process writes too.
macro_rules! db_transaction {
    ($store:expr, |$conn:ident| $body:block) => {
        $crate::pool::on_connection!($store, |object| postgres {
            let conn: &mut ::diesel_async::AsyncPgConnection = &mut object;
            // Inside a keyed call's transaction, a savepoint.
            ::diesel_async::AsyncConnection::transaction::<_, $crate::errors::Error, _>(
                conn,
                async |$conn| $body,
            )
            .await
        } sqlite {
            let nested = object.is_keyed();
            let conn: &mut $crate::pool::SqliteConn = &mut object;
            let body = async |$conn: &mut $crate::pool::SqliteConn| -> Result<_, $crate::errors::Error> { $body };
            if nested {
                // Inside a keyed call's transaction (begun with the write lock), a
                // savepoint.
                ::diesel_async::AsyncConnection::transaction(conn, body).await
            } else {
                conn.immediate_transaction(body).await
            }
        })
    };
}
pub(crate) use db_transaction;
