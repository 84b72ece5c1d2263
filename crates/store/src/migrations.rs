//! Embedded migrations, run on a blocking thread through diesel's synchronous harness.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use mandate_domain::ports::BoxError;

use crate::OpenError;
use crate::pool::SQLITE_PRAGMAS;
use crate::url::redact;

const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// The session-level advisory lock that serializes migrations across replicas ("MANDATE1").
const MIGRATION_LOCK: i64 = 0x4d41_4e44_4154_4531;

/// Applies the pending PostgreSQL migrations under the advisory lock; how many it applied.
pub(crate) async fn postgres(url: &str, connect_timeout: Duration) -> Result<usize, OpenError> {
    let connect_failed = |source: diesel::ConnectionError| OpenError::Connect {
        target: redact(url),
        source: Box::new(source),
    };
    let conn = match tokio::time::timeout(connect_timeout, AsyncPgConnection::establish(url)).await
    {
        Ok(conn) => conn.map_err(connect_failed)?,
        Err(_) => {
            return Err(connect_failed(diesel::ConnectionError::BadConnection(
                format!("no answer within {connect_timeout:?}"),
            )));
        }
    };
    let applied = tokio::task::spawn_blocking(move || -> Result<usize, BoxError> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        // Waits while another replica migrates; it then finds nothing pending.
        sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(POSTGRES)
            .map(|versions| versions.len());
        // Closing the session would release the lock too; unlocking is merely prompt.
        if let Err(error) =
            sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(&mut conn)
        {
            tracing::warn!(%error, "releasing the migration lock failed");
        }
        applied
    })
    .await;
    finish(applied)
}

/// Applies the pending SQLite migrations in one immediate transaction, which another process
/// migrating the same file waits for; how many it applied.
pub(crate) async fn sqlite(path: String) -> Result<usize, OpenError> {
    let applied = tokio::task::spawn_blocking(move || -> Result<usize, BoxError> {
        let mut conn = <SqliteConnection as Connection>::establish(&path).map_err(|source| {
            OpenError::Connect {
                target: path.clone(),
                source: Box::new(source),
            }
        })?;
        // Another process opening the same file may be migrating it, which can take longer
        // than one `busy_timeout`: wait for it, as PostgreSQL's advisory lock does.
        let deadline = std::time::Instant::now() + SQLITE_MIGRATION_WAIT;
        loop {
            // Foreign keys stay off here (SQLite's default) so that a later migration may
            // rebuild a referenced table, which SQLite's limited ALTER TABLE requires.
            let migrated = conn
                .batch_execute(SQLITE_PRAGMAS)
                .map_err(BoxError::from)
                .and_then(|()| {
                    conn.immediate_transaction(|conn| {
                        conn.run_pending_migrations(SQLITE)
                            .map(|versions| versions.len())
                    })
                });
            match migrated {
                Err(error)
                    if error.to_string().contains("database is locked")
                        && std::time::Instant::now() < deadline => {}
                other => break other,
            }
        }
    })
    .await;
    finish(applied)
}

/// How long opening an SQLite file waits for another process's migration of it.
const SQLITE_MIGRATION_WAIT: Duration = Duration::from_secs(60);

fn finish(
    outcome: Result<Result<usize, BoxError>, tokio::task::JoinError>,
) -> Result<usize, OpenError> {
    let applied = match outcome {
        Ok(Ok(applied)) => applied,
        Ok(Err(error)) => match error.downcast::<OpenError>() {
            Ok(open) => return Err(*open),
            Err(error) => return Err(OpenError::Migration(error)),
        },
        Err(failed) => return Err(OpenError::Migration(Box::new(failed))),
    };
    if applied > 0 {
        tracing::info!(applied, "applied database migrations");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    // Assertions are how a test reports.
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use diesel::migration::MigrationSource;
    use diesel::pg::Pg;
    use diesel::sqlite::Sqlite;

    use super::*;

    /// Diesel knows a migration by the version its folder name starts with: two folders of one
    /// version would leave the second unapplied on every database that ran the first.
    #[test]
    fn every_migration_has_a_version_of_its_own_and_both_backends_the_same_list() {
        let postgres: Vec<String> = MigrationSource::<Pg>::migrations(&POSTGRES)
            .unwrap()
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
        let sqlite: Vec<String> = MigrationSource::<Sqlite>::migrations(&SQLITE)
            .unwrap()
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
        let versions: BTreeSet<&str> = postgres
            .iter()
            .map(|name| {
                name.split_once('_')
                    .map_or(name.as_str(), |(version, _)| version)
            })
            .collect();
        assert_eq!(
            versions.len(),
            postgres.len(),
            "versions repeat in {postgres:?}"
        );
        assert_eq!(postgres, sqlite);
    }
}
