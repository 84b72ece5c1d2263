//! Idempotency keys on both backends.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ports::{IdempotencyStart, IdempotencyStore, StoreError};

use crate::DbStore;
use crate::pool::{db_run, db_transaction};
use crate::rows::to_naive;

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Text,
        status -> Nullable<Integer>,
        body -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

#[async_trait]
impl IdempotencyStore for DbStore {
    async fn begin_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        abandoned_after: Duration,
    ) -> Result<IdempotencyStart, StoreError> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        let (now, abandoned_before) = (to_naive(now), to_naive(now - abandoned_after));
        db_transaction!(self, |conn| {
            // A concurrent claim of the same key waits here until the first one commits, and
            // then finds its row: exactly one claim starts.
            let inserted = insert_into(idempotency_keys::table)
                .values((
                    idempotency_keys::scope.eq(&scope),
                    idempotency_keys::key.eq(&key),
                    idempotency_keys::fingerprint.eq(&fingerprint),
                    idempotency_keys::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                return Ok(IdempotencyStart::Started);
            }
            let this = idempotency_keys::table
                .filter(idempotency_keys::scope.eq(&scope))
                .filter(idempotency_keys::key.eq(&key));
            let (stored_fingerprint, status, body, created_at): (
                String,
                Option<i32>,
                Option<String>,
                chrono::NaiveDateTime,
            ) = this
                .select((
                    idempotency_keys::fingerprint,
                    idempotency_keys::status,
                    idempotency_keys::body,
                    idempotency_keys::created_at,
                ))
                .first(conn)
                .await?;
            if stored_fingerprint != fingerprint {
                return Ok(IdempotencyStart::Mismatch);
            }
            if let (Some(status), Some(body)) = (status, body) {
                let status = u16::try_from(status).unwrap_or(500);
                return Ok(IdempotencyStart::Replay { status, body });
            }
            if created_at >= abandoned_before {
                return Ok(IdempotencyStart::InFlight);
            }
            // The first attempt died without an answer: this one takes the key over.
            let taken = update(this.filter(idempotency_keys::created_at.eq(created_at)))
                .set(idempotency_keys::created_at.eq(now))
                .execute(conn)
                .await?;
            Ok(if taken == 1 {
                IdempotencyStart::Started
            } else {
                IdempotencyStart::InFlight
            })
        })
    }

    async fn complete_idempotent(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let (scope, key, body) = (scope.to_owned(), key.to_owned(), body.to_owned());
        db_run!(self, |conn| {
            update(
                idempotency_keys::table
                    .filter(idempotency_keys::scope.eq(&scope))
                    .filter(idempotency_keys::key.eq(&key)),
            )
            .set((
                idempotency_keys::status.eq(i32::from(status)),
                idempotency_keys::body.eq(&body),
            ))
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn release_idempotent(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        db_run!(self, |conn| {
            delete(
                idempotency_keys::table
                    .filter(idempotency_keys::scope.eq(&scope))
                    .filter(idempotency_keys::key.eq(&key))
                    .filter(idempotency_keys::status.is_null()),
            )
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = to_naive(before);
        db_run!(self, |conn| {
            let purged =
                delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
                    .execute(conn)
                    .await?;
            Ok(u64::try_from(purged).unwrap_or(u64::MAX))
        })
    }
}
