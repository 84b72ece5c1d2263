//! Idempotency keys on both backends. A keyed call runs in one transaction that begins by
//! inserting the key's record and ends by storing the answer in it: the call's writes and its
//! answer commit together or not at all. A concurrent call with the same key waits at that
//! first insert (the row's unique index) until the first call's transaction ends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{delete, insert_into, update};
use diesel_async::{AnsiTransactionManager, AsyncConnection, RunQueryDsl, TransactionManager};
use mandate_domain::ports::{
    IdempotencyStart, IdempotencyStore, IdempotentAnswer, KeyedCall, KeyedStart, KeyedWrite, Store,
    StoreError,
};
use tokio::sync::Mutex;

use crate::DbStore;
use crate::errors::Error;
use crate::keyed::Keyed;
use crate::pool::{Pools, SqliteConn, db_run, detached, pooled_postgres};
use crate::rows::to_naive;
use crate::schema::idempotency_keys;

/// How often a call looks again at a key whose record vanished under it (purged, or its
/// first call rolled back) before it answers `InFlight`.
const BEGIN_ATTEMPTS: usize = 3;

/// A record as stored: fingerprint, status, sealed body.
type StoredRecord = (String, Option<i32>, Option<String>);

impl DbStore {
    fn seal_answer(&self, answer: &IdempotentAnswer) -> Result<String, StoreError> {
        match &self.sealer {
            Some(sealer) => sealer.seal_answer(&answer.body, &answer.scope, &answer.key),
            None => Ok(answer.body.clone()),
        }
    }

    /// What a stored record means for a call with `fingerprint`.
    fn found(
        &self,
        call: (&str, &str, &str),
        record: StoredRecord,
    ) -> Result<IdempotencyStart, StoreError> {
        let (scope, key, fingerprint) = call;
        let (stored_fingerprint, status, body) = record;
        let (Some(status), Some(body)) = (status, body) else {
            // A claim without an answer, left by a server version that claimed keys before
            // writing: its call may have written, so it is never run again.
            return Ok(IdempotencyStart::InFlight);
        };
        let status = u16::try_from(status).map_err(|_| {
            StoreError::from(Error::Data(format!(
                "stored idempotent status {status} is out of range"
            )))
        })?;
        let body = match &self.sealer {
            Some(sealer) => sealer.open_answer(&body, scope, key)?,
            None => body,
        };
        Ok(IdempotencyStart::of_record(
            &stored_fingerprint,
            fingerprint,
            (status, body),
        ))
    }
}

/// Inserts the record of a call that begins; evaluates to the number of rows inserted (0:
/// the key has a record). A concurrent insert of the same key waits until the first ends.
macro_rules! insert_claim {
    ($conn:expr, $call:expr) => {
        insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::scope.eq(&$call.scope),
                idempotency_keys::key.eq(&$call.key),
                idempotency_keys::fingerprint.eq(&$call.fingerprint),
                idempotency_keys::created_at.eq(to_naive($call.received_at)),
            ))
            .on_conflict_do_nothing()
            .execute($conn)
    };
}

macro_rules! select_record {
    ($conn:expr, $scope:expr, $key:expr) => {
        idempotency_keys::table
            .filter(idempotency_keys::scope.eq($scope))
            .filter(idempotency_keys::key.eq($key))
            .select((
                idempotency_keys::fingerprint,
                idempotency_keys::status,
                idempotency_keys::body,
            ))
            .first::<StoredRecord>($conn)
    };
}

/// After the record's insert: the call runs in the open transaction, or the transaction ends
/// and the key's record says what the call gets.
macro_rules! finish_begin {
    ($conn:expr, $call:expr, $inserted:expr) => {{
        let found = match $inserted {
            Ok(1) => return Ok(Begun::Run),
            Ok(_) => select_record!(&mut *$conn, &$call.scope, &$call.key)
                .await
                .optional()
                .map(|record| record.map_or(Begun::Vanished, Begun::Found)),
            Err(error) if is_lock_timeout(&error) => Ok(Begun::Waited),
            Err(error) => Err(error),
        };
        TransactionManagerOf::rollback_transaction(&mut *$conn).await?;
        Ok(found?)
    }};
}

/// Stores the answer (when given, with its body as stored) and commits, or rolls back.
macro_rules! end_transaction {
    ($conn:expr, $connection:ty, $answer:expr) => {{
        type Manager = <$connection as AsyncConnection>::TransactionManager;
        match $answer {
            None => Ok(Manager::rollback_transaction($conn).await?),
            Some((answer, body)) => {
                let stored = update(
                    idempotency_keys::table
                        .filter(idempotency_keys::scope.eq(&answer.scope))
                        .filter(idempotency_keys::key.eq(&answer.key)),
                )
                .set((
                    idempotency_keys::status.eq(i32::from(answer.status)),
                    idempotency_keys::body.eq(&body),
                ))
                .execute(&mut *$conn)
                .await;
                match stored {
                    Ok(_) => Ok(Manager::commit_transaction($conn).await?),
                    Err(error) => {
                        Manager::rollback_transaction($conn).await?;
                        Err(Error::from(error))
                    }
                }
            }
        }
    }};
}

/// How a begin ended on the connection: the call runs, or the key has this record.
enum Begun {
    Run,
    Found(StoredRecord),
    /// The record vanished between the insert and the read (purged, or its call rolled
    /// back): begin afresh.
    Vanished,
    /// The first call held the key past the lock timeout.
    Waited,
}

/// Whether PostgreSQL gave up waiting for a lock (`lock_timeout`).
fn is_lock_timeout(error: &DieselError) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
        if info.message().contains("lock timeout"))
}

#[async_trait]
impl IdempotencyStore for DbStore {
    async fn begin_keyed(self: Arc<Self>, call: &KeyedCall) -> Result<KeyedStart, StoreError> {
        for _ in 0..BEGIN_ATTEMPTS {
            let begun = match self.pools.clone() {
                Pools::Postgres(pool) => {
                    let (call, timeout) = (call.clone(), self.acquire_timeout);
                    detached(async move {
                        let mut object = pooled_postgres(&pool, timeout).await?;
                        let begun = begin_postgres(&mut object, &call, timeout).await?;
                        Ok((begun, object))
                    })
                    .await
                    .map(|(begun, object)| {
                        (begun, Keyed::Postgres(Arc::new(Mutex::new(Some(object)))))
                    })?
                }
                Pools::Sqlite(pool) => {
                    let call = call.clone();
                    detached(async move {
                        let mut object = pool.get().await?;
                        let begun = begin_sqlite(&mut object, &call).await?;
                        Ok((begun, object))
                    })
                    .await
                    .map(|(begun, object)| {
                        (begun, Keyed::Sqlite(Arc::new(Mutex::new(Some(object)))))
                    })?
                }
            };
            match begun {
                (Begun::Run, keyed) => {
                    let store = DbStore {
                        keyed: Some(keyed),
                        ..(*self).clone()
                    };
                    return Ok(KeyedStart::Run(Box::new(DbKeyedWrite { store })));
                }
                (Begun::Found(record), _) => {
                    let call = (
                        call.scope.as_str(),
                        call.key.as_str(),
                        call.fingerprint.as_str(),
                    );
                    return Ok(KeyedStart::Answered(self.found(call, record)?));
                }
                (Begun::Waited, _) => break,
                (Begun::Vanished, _) => {}
            }
        }
        Ok(KeyedStart::Answered(IdempotencyStart::InFlight))
    }

    async fn lookup_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<IdempotencyStart>, StoreError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        let record = {
            let (scope, key) = (scope.clone(), key.clone());
            db_run!(self, |conn| {
                Ok(select_record!(conn, &scope, &key).await.optional()?)
            })?
        };
        record
            .map(|record| self.found((&scope, &key, fingerprint), record))
            .transpose()
    }

    async fn record_idempotent(&self, answer: &IdempotentAnswer) -> Result<bool, StoreError> {
        let body = self.seal_answer(answer)?;
        let answer = answer.clone();
        db_run!(self, |conn| {
            let inserted = insert_into(idempotency_keys::table)
                .values((
                    idempotency_keys::scope.eq(&answer.scope),
                    idempotency_keys::key.eq(&answer.key),
                    idempotency_keys::fingerprint.eq(&answer.fingerprint),
                    idempotency_keys::status.eq(i32::from(answer.status)),
                    idempotency_keys::body.eq(&body),
                    idempotency_keys::created_at.eq(to_naive(answer.created_at)),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(inserted == 1)
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

/// Begins a keyed call on PostgreSQL: the transaction, a bound on how long it waits for a
/// concurrent call with the key, and the record's insert, in one round trip.
async fn begin_postgres(
    conn: &mut diesel_async::AsyncPgConnection,
    call: &KeyedCall,
    lock_timeout: std::time::Duration,
) -> Result<Begun, Error> {
    AnsiTransactionManager::begin_transaction(conn).await?;
    let set_timeout = format!("SET LOCAL lock_timeout = {}", lock_timeout.as_millis());
    let shared: &diesel_async::AsyncPgConnection = conn;
    let inserted = {
        let mut for_timeout = shared;
        let mut for_insert = shared;
        let (timeout, inserted) = tokio::join!(
            diesel_async::SimpleAsyncConnection::batch_execute(&mut for_timeout, &set_timeout),
            insert_claim!(&mut for_insert, call),
        );
        timeout.and(inserted)
    };
    type TransactionManagerOf = AnsiTransactionManager;
    finish_begin!(conn, call, inserted)
}

/// Begins a keyed call on SQLite: the record's insert takes the write lock at once.
async fn begin_sqlite(conn: &mut SqliteConn, call: &KeyedCall) -> Result<Begun, Error> {
    <SqliteConn as AsyncConnection>::TransactionManager::begin_transaction(conn).await?;
    let inserted = insert_claim!(&mut *conn, call).await;
    type TransactionManagerOf = <SqliteConn as AsyncConnection>::TransactionManager;
    finish_begin!(conn, call, inserted)
}

/// A keyed call's transaction on the database.
struct DbKeyedWrite {
    /// This store, running on the call's connection.
    store: DbStore,
}

impl DbKeyedWrite {
    /// Ends the call's transaction: with `answer` stored and committed, or rolled back.
    async fn end(self, answer: Option<IdempotentAnswer>) -> Result<(), StoreError> {
        let sealed = answer
            .as_ref()
            .map(|answer| self.store.seal_answer(answer))
            .transpose()?;
        let finished = match self.store.keyed.clone() {
            Some(Keyed::Postgres(connection)) => {
                detached(async move {
                    let Some(mut object) = connection.lock().await.take() else {
                        return Err(ended());
                    };
                    let conn: &mut diesel_async::AsyncPgConnection = &mut object;
                    end_transaction!(conn, diesel_async::AsyncPgConnection, answer.zip(sealed))
                })
                .await
            }
            Some(Keyed::Sqlite(connection)) => {
                detached(async move {
                    let Some(mut object) = connection.lock().await.take() else {
                        return Err(ended());
                    };
                    let conn: &mut SqliteConn = &mut object;
                    end_transaction!(conn, SqliteConn, answer.zip(sealed))
                })
                .await
            }
            None => Err(ended().into()),
        };
        // On SQLite the writers' wake-ups came before this commit; the workers found the
        // connection taken and looked again once it was back. Once more, now.
        self.store.work.committed();
        finished
    }
}

fn ended() -> Error {
    Error::Data("the keyed call has ended".into())
}

#[async_trait]
impl KeyedWrite for DbKeyedWrite {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn commit(self: Box<Self>, answer: IdempotentAnswer) -> Result<(), StoreError> {
        self.end(Some(answer)).await
    }

    async fn roll_back(self: Box<Self>) -> Result<(), StoreError> {
        self.end(None).await
    }
}
