//! Mandate's storage adapter: the domain's ports on PostgreSQL (production, replicas) or an
//! embedded SQLite file (the zero-setup default), through diesel and diesel-async.
//!
//! One body of queries serves both backends (see `pool::db_run!`); the schema uses only
//! types both treat alike: text ids, UTC timestamps without a zone, integers and text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// The aggregates: each module holds its rows, its port implementation and its queries.
mod claims;
mod clients;
mod customers;
mod destinations;
mod events;
mod idempotency;
mod orchestrators;
mod organizations;
mod requests;
mod sessions;
mod webhooks;

// What the aggregates share.
mod dialect;
mod errors;
mod feed;
mod keyed;
mod migrations;
mod operations;
mod outbox;
mod page;
mod pool;
mod rows;
mod schema;
mod sealing;
mod sql;
mod url;
mod work;

pub use crate::operations::PoolStatus;
use crate::pool::Pools;
use crate::url::Target;
use crate::work::Work;

/// How the store uses its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most PostgreSQL connections held at once. SQLite always uses one.
    pub max_connections: usize,
    /// How long an operation may wait for a connection (and a PostgreSQL connection may take
    /// to establish) before it fails with `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// An embedded SQLite file.
    Sqlite,
}

/// Why a store could not be opened. No variant shows a password from the URL.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names no supported backend.
    #[error(
        "unsupported database URL{}: expected postgres://…, postgresql://… or sqlite:PATH",
        .scheme.as_ref().map(|scheme| format!(" scheme {scheme:?}")).unwrap_or_default()
    )]
    UnsupportedUrl {
        /// The URL's scheme, when it has one.
        scheme: Option<String>,
    },
    /// An SQLite URL without a file path, or naming an in-memory database.
    #[error("an SQLite URL must name a file (sqlite:PATH); in-memory databases are not supported")]
    InvalidSqlitePath,
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the database directory {}", .path.display())]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite file could not be created or made private.
    #[error("cannot create the database file {}", .path.display())]
    CreateDatabaseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database refused or did not answer the first connection.
    #[error("cannot connect to the database at {target}")]
    Connect {
        /// The URL or path, password redacted.
        target: String,
        /// Why.
        #[source]
        source: mandate_domain::ports::BoxError,
    },
    /// A migration failed; the failed migration's changes were rolled back.
    #[error("database migration failed")]
    Migration(#[source] mandate_domain::ports::BoxError),
    /// The connection pool could not be built.
    #[error("cannot build the connection pool")]
    Pool(#[source] mandate_domain::ports::BoxError),
}

/// The storage adapter: implements every port of `mandate_domain::ports`. Cheap to clone.
#[derive(Clone)]
pub struct DbStore {
    pools: Pools,
    acquire_timeout: Duration,
    /// Wakes the webhook workers; shared by clones, and stops listening with the last one.
    work: Arc<Work>,
    /// Seals webhook secrets and idempotent answers at rest; `None` stores them as given.
    sealer: Option<sealing::Sealer>,
    /// The keyed call this store runs in (see [`mandate_domain::ports::KeyedWrite`]); `None`
    /// for the store of the pools.
    keyed: Option<keyed::Keyed>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("backend", &self.backend())
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

impl DbStore {
    /// Opens the database named by `url`, creating an SQLite file (and its parent directory)
    /// if needed, and runs pending migrations (on PostgreSQL under `pg_advisory_lock` so
    /// concurrently starting replicas never race).
    pub async fn open(url: &str, options: &StoreOptions) -> Result<DbStore, OpenError> {
        let (pools, work) = match Target::parse(url)? {
            Target::Postgres(url) => {
                migrations::postgres(&url, options.acquire_timeout).await?;
                let work = Work::postgres(&url, options.acquire_timeout);
                (Pools::postgres(&url, options)?, work)
            }
            Target::Sqlite(path) => {
                let path = prepare_sqlite_file(path)?;
                migrations::sqlite(path.clone()).await?;
                (Pools::sqlite(&path, options)?, Work::local())
            }
        };
        Ok(DbStore {
            pools,
            acquire_timeout: options.acquire_timeout,
            work: Arc::new(work),
            sealer: None,
            keyed: None,
        })
    }

    /// This store, keeping webhook signing secrets sealed at rest under a key derived from
    /// `server_secret`, so that the database alone reveals none of them. Every replica must
    /// be given the same secret.
    pub fn with_webhook_secret_sealing(mut self, server_secret: &[u8]) -> Self {
        self.sealer = Some(sealing::Sealer::new(server_secret));
        self
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Postgres(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Applies the pending migrations to the database named by `url` (creating an SQLite file if
/// needed); how many it applied.
pub async fn migrate(url: &str) -> Result<usize, OpenError> {
    let connect_timeout = StoreOptions::default().acquire_timeout;
    match Target::parse(url)? {
        Target::Postgres(url) => migrations::postgres(&url, connect_timeout).await,
        Target::Sqlite(path) => migrations::sqlite(prepare_sqlite_file(path)?).await,
    }
}

/// Creates the file's directory and the file itself, readable by their owner only (0700 and
/// 0600: the database holds key hashes and sealed secrets, and SQLite gives its WAL and
/// shared-memory files the database file's mode); the path as the text the SQLite driver
/// takes.
fn prepare_sqlite_file(path: PathBuf) -> Result<String, OpenError> {
    if let Some(directory) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(directory)
            .map_err(|source| OpenError::CreateDirectory {
                path: directory.to_owned(),
                source,
            })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|source| OpenError::CreateDatabaseFile {
            path: path.clone(),
            source,
        })?;
    // A file made by an earlier version, or by hand, is narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| OpenError::CreateDatabaseFile {
                path: path.clone(),
                source,
            })?;
    }
    drop(file);
    path.into_os_string()
        .into_string()
        .map_err(|_| OpenError::InvalidSqlitePath)
}
