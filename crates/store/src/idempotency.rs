//! Idempotency keys on both backends.

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ports::{IdempotencyStart, IdempotencyStore, IdempotentAnswer, StoreError};

use crate::DbStore;
use crate::pool::{Error, db_run, db_transaction};
use crate::rows::to_naive;
use crate::schema::idempotency_keys;

/// How often one claim looks again at a record that changed under it (released, taken over,
/// completed or purged by another session) before it answers `InFlight`.
const CLAIM_ATTEMPTS: usize = 3;

/// Inserts a complete answer unless `(scope, key)` has a record; evaluates to the number of
/// rows inserted. A concurrent insert of the same key waits until the first commits.
macro_rules! insert_answer {
    ($conn:expr, $answer:expr) => {
        ::diesel_async::RunQueryDsl::execute(
            ::diesel::insert_into($crate::schema::idempotency_keys::table)
                .values((
                    $crate::schema::idempotency_keys::scope.eq(&$answer.scope),
                    $crate::schema::idempotency_keys::key.eq(&$answer.key),
                    $crate::schema::idempotency_keys::fingerprint.eq(&$answer.fingerprint),
                    $crate::schema::idempotency_keys::status.eq(i32::from($answer.status)),
                    $crate::schema::idempotency_keys::body.eq(&$answer.body),
                    $crate::schema::idempotency_keys::created_at
                        .eq($crate::rows::to_naive($answer.created_at)),
                ))
                .on_conflict_do_nothing(),
            $conn,
        )
    };
}
pub(crate) use insert_answer;

#[async_trait]
impl IdempotencyStore for DbStore {
    async fn lookup_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<IdempotencyStart>, StoreError> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        db_run!(self, |conn| {
            let found: Option<(String, Option<i32>, Option<String>)> = idempotency_keys::table
                .filter(idempotency_keys::scope.eq(&scope))
                .filter(idempotency_keys::key.eq(&key))
                .select((
                    idempotency_keys::fingerprint,
                    idempotency_keys::status,
                    idempotency_keys::body,
                ))
                .first(conn)
                .await
                .optional()?;
            found
                .map(|(stored_fingerprint, status, body)| {
                    Ok(IdempotencyStart::of_record(
                        &stored_fingerprint,
                        &fingerprint,
                        stored_response(status, body)?,
                    ))
                })
                .transpose()
        })
    }

    async fn record_idempotent(&self, answer: &IdempotentAnswer) -> Result<bool, StoreError> {
        let answer = answer.clone();
        db_run!(self, |conn| {
            Ok(insert_answer!(conn, answer).await? == 1)
        })
    }

    async fn begin_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        abandoned_after: Duration,
    ) -> Result<IdempotencyStart, StoreError> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        // An absurdly long `abandoned_after` means never abandoned, rather than a panic.
        let abandoned_before = now
            .checked_sub_signed(abandoned_after)
            .map_or(NaiveDateTime::MIN, to_naive);
        let now = to_naive(now);
        db_transaction!(self, |conn| {
            // Each statement sees what committed before it (PostgreSQL's read committed; on
            // SQLite the transaction holds the only write lock), so a record that changed
            // between two statements is looked at again.
            for _ in 0..CLAIM_ATTEMPTS {
                // A concurrent claim of the same key waits here until the first one commits,
                // and then finds its row: exactly one claim starts.
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
                let found: Option<(String, Option<i32>, Option<String>, NaiveDateTime)> = this
                    .select((
                        idempotency_keys::fingerprint,
                        idempotency_keys::status,
                        idempotency_keys::body,
                        idempotency_keys::created_at,
                    ))
                    .first(conn)
                    .await
                    .optional()?;
                // Released or purged since the insert found it: claim it afresh.
                let Some((stored_fingerprint, status, body, created_at)) = found else {
                    continue;
                };
                let found = IdempotencyStart::of_record(
                    &stored_fingerprint,
                    &fingerprint,
                    stored_response(status, body)?,
                );
                if found != IdempotencyStart::InFlight || created_at >= abandoned_before {
                    return Ok(found);
                }
                // The first attempt died without an answer: this one takes the key over, unless
                // another claim took it over or the first attempt completed meanwhile (both
                // change the row, which PostgreSQL re-checks after waiting for its lock).
                let taken = update(
                    this.filter(idempotency_keys::created_at.eq(created_at))
                        .filter(idempotency_keys::status.is_null()),
                )
                .set(idempotency_keys::created_at.eq(now))
                .execute(conn)
                .await?;
                if taken == 1 {
                    return Ok(IdempotencyStart::Started);
                }
            }
            Ok(IdempotencyStart::InFlight)
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
            // The first response is the one replayed: a late attempt that was taken over
            // does not overwrite it.
            update(
                idempotency_keys::table
                    .filter(idempotency_keys::scope.eq(&scope))
                    .filter(idempotency_keys::key.eq(&key))
                    .filter(idempotency_keys::status.is_null()),
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

/// The stored response of a record, if it was answered.
fn stored_response(
    status: Option<i32>,
    body: Option<String>,
) -> Result<Option<(u16, String)>, Error> {
    let (Some(status), Some(body)) = (status, body) else {
        return Ok(None);
    };
    let status = u16::try_from(status)
        .map_err(|_| Error::Data(format!("stored idempotent status {status} is out of range")))?;
    Ok(Some((status, body)))
}
