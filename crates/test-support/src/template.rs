//! Test databases cloned from a template migrated once per run, instead of migrated per test:
//! PostgreSQL's `CREATE DATABASE … TEMPLATE`, and a copy of a migrated SQLite file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, Result};
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::database::FreshDatabase;

/// Brings the database named by a URL to the current schema.
type Migrate =
    Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

fn boxed<M, Migrated>(migrate: M) -> Migrate
where
    M: Fn(String) -> Migrated + Send + Sync + 'static,
    Migrated: Future<Output = Result<()>> + Send + 'static,
{
    Box::new(move |url| Box::pin(migrate(url)))
}

/// A PostgreSQL database migrated by its first [`fresh`](Self::fresh) call (the others wait
/// for that one), which every fresh database is cloned from; dropped with this.
pub struct PostgresTemplate {
    migrate: Migrate,
    template: OnceCell<FreshDatabase>,
}

impl PostgresTemplate {
    /// A template that `migrate` brings to the current schema when it is first needed.
    pub fn new<M, Migrated>(migrate: M) -> Self
    where
        M: Fn(String) -> Migrated + Send + Sync + 'static,
        Migrated: Future<Output = Result<()>> + Send + 'static,
    {
        PostgresTemplate {
            migrate: boxed(migrate),
            template: OnceCell::new(),
        }
    }

    /// A database of its own, already migrated, dropped with the value returned.
    pub async fn fresh(&self) -> FreshDatabase {
        let template = self.template.get_or_init(|| self.migrated()).await;
        FreshDatabase::clone_of(template).await
    }

    async fn migrated(&self) -> FreshDatabase {
        let template = FreshDatabase::create().await;
        (self.migrate)(template.url.clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the template database: {error:#}"));
        // A clone needs a template without sessions, and the migration's may still be closing.
        template.close_to_sessions().await;
        template
    }
}

/// An SQLite file migrated by the first [`fresh`](Self::fresh) call (the others wait for that
/// one), which every fresh database copies; removed with this.
pub struct SqliteTemplate {
    migrate: Migrate,
    directory: TempDir,
    template: OnceCell<PathBuf>,
}

/// An SQLite file of its own, removed (with its directory) when this is dropped.
pub struct FreshSqlite {
    pub url: String,
    _directory: TempDir,
}

impl SqliteTemplate {
    /// A template that `migrate` brings to the current schema when it is first needed.
    pub fn new<M, Migrated>(migrate: M) -> Result<Self>
    where
        M: Fn(String) -> Migrated + Send + Sync + 'static,
        Migrated: Future<Output = Result<()>> + Send + 'static,
    {
        Ok(SqliteTemplate {
            migrate: boxed(migrate),
            directory: tempfile::tempdir().context("creating the template's directory")?,
            template: OnceCell::new(),
        })
    }

    /// A database of its own, already migrated.
    pub async fn fresh(&self) -> FreshSqlite {
        let template = self.template.get_or_init(|| self.migrated()).await;
        let copied = tempfile::tempdir()
            .context("creating a test database's directory")
            .and_then(|directory| {
                let path = directory.path().join("mandate.db");
                std::fs::copy(template, &path).context("copying the template database")?;
                Ok(FreshSqlite {
                    url: sqlite_url(&path),
                    _directory: directory,
                })
            });
        copied.unwrap_or_else(|error| panic!("{error:#}"))
    }

    async fn migrated(&self) -> PathBuf {
        let path = self.directory.path().join("template.db");
        // The migration closes its connection, checkpointing the WAL into the file copied.
        (self.migrate)(sqlite_url(&path))
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the template database: {error:#}"));
        path
    }
}

/// The store's spelling of an SQLite file: `sqlite://PATH`.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}
