//! The owner's console sessions: looked up by the keyed hash of their token, purged once
//! expired.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::{delete, insert_into};
use diesel_async::RunQueryDsl;
use mandate_domain::ports::StoreError;
use mandate_domain::sessions::{ConsoleSession, ConsoleSessionStore};

use crate::DbStore;
use crate::pool::db_run;
use crate::rows::{to_naive, to_utc};
use crate::schema::console_sessions;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct SessionRow {
    token_hash: String,
    key_hash: String,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
}

impl From<&ConsoleSession> for SessionRow {
    fn from(session: &ConsoleSession) -> Self {
        Self {
            token_hash: session.token_hash.clone(),
            key_hash: session.key_hash.clone(),
            created_at: to_naive(session.created_at),
            expires_at: to_naive(session.expires_at),
        }
    }
}

impl From<SessionRow> for ConsoleSession {
    fn from(row: SessionRow) -> Self {
        Self {
            token_hash: row.token_hash,
            key_hash: row.key_hash,
            created_at: to_utc(row.created_at),
            expires_at: to_utc(row.expires_at),
        }
    }
}

#[async_trait]
impl ConsoleSessionStore for DbStore {
    async fn insert_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        let row = SessionRow::from(session);
        db_run!(self, |conn| {
            insert_into(console_sessions::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let token_hash = token_hash.to_owned();
        db_run!(self, |conn| {
            let row = console_sessions::table
                .select(SessionRow::as_select())
                .filter(console_sessions::token_hash.eq(&token_hash))
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(ConsoleSession::from))
        })
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let token_hash = token_hash.to_owned();
        db_run!(self, |conn| {
            let deleted = delete(console_sessions::table)
                .filter(console_sessions::token_hash.eq(&token_hash))
                .execute(conn)
                .await?;
            Ok(deleted == 1)
        })
    }

    async fn purge_console_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = to_naive(now);
        db_run!(self, |conn| {
            let purged = delete(console_sessions::table)
                .filter(console_sessions::expires_at.le(now))
                .execute(conn)
                .await?;
            Ok(u64::try_from(purged).unwrap_or(u64::MAX))
        })
    }
}
