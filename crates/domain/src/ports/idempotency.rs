//! Keyed calls: the answer to an `Idempotency-Key` commits with the call's writes.

use super::*;

/// A call made under an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCall {
    /// The credential the key belongs to (keys of different credentials never meet).
    pub scope: String,
    /// The key.
    pub key: String,
    /// What makes two calls the same (target, headers that change its meaning, body).
    pub fingerprint: String,
    /// When the call arrived.
    pub received_at: DateTime<Utc>,
}

impl KeyedCall {
    /// The record of this call's answer: `status` and `body`.
    pub fn answer(&self, status: u16, body: String) -> IdempotentAnswer {
        IdempotentAnswer {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            status,
            body,
            created_at: self.received_at,
        }
    }
}

/// What an earlier call with the same key decided for this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// The key was used with the same request: send this response again.
    Replay {
        /// The first response's status.
        status: u16,
        /// The first response's body.
        body: String,
    },
    /// The first call with this key is still running (it holds the key longer than the
    /// store waits for it).
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

impl IdempotencyStart {
    /// What a stored answer (its call's `stored_fingerprint`, its `response`) means for a call
    /// with `fingerprint`.
    pub fn of_record(stored_fingerprint: &str, fingerprint: &str, response: (u16, String)) -> Self {
        if stored_fingerprint == fingerprint {
            let (status, body) = response;
            Self::Replay { status, body }
        } else {
            Self::Mismatch
        }
    }
}

/// What beginning a keyed call found.
pub enum KeyedStart {
    /// The key is unused: the call runs in this transaction, which stores its answer.
    Run(Box<dyn KeyedWrite>),
    /// An earlier call holds the key.
    Answered(IdempotencyStart),
}

impl std::fmt::Debug for KeyedStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Run(_) => f.write_str("Run"),
            Self::Answered(found) => f.debug_tuple("Answered").field(found).finish(),
        }
    }
}

/// The transaction of a keyed call: every write of the call and the answer to its key commit
/// together, or none of them does. A call that dies before [`KeyedWrite::commit`] (a crash, a
/// lost database connection) leaves its key unused, and a retry runs afresh; one that
/// committed is answered from its record, whatever happened to the response afterwards.
#[async_trait]
pub trait KeyedWrite: Send + Sync {
    /// The store inside this transaction: the call's use cases run on it. A concurrent call
    /// with the same key waits until this transaction ends.
    fn store(&self) -> Arc<dyn Store>;

    /// Stores `answer` and commits it with the call's writes.
    async fn commit(self: Box<Self>, answer: IdempotentAnswer) -> Result<(), StoreError>;

    /// Undoes the call's writes; the key stays unused.
    async fn roll_back(self: Box<Self>) -> Result<(), StoreError>;
}

/// The answer to an `Idempotency-Key`, kept for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentAnswer {
    /// The credential the key belongs to.
    pub scope: String,
    /// The key.
    pub key: String,
    /// What makes two calls the same.
    pub fingerprint: String,
    /// The response's status.
    pub status: u16,
    /// The response's body. Stores keep it sealed at rest: answers carry secrets (keys,
    /// webhook signing secrets, payment-link tokens).
    pub body: String,
    /// When the call arrived; the record is purged a retention period later.
    pub created_at: DateTime<Utc>,
}

/// Idempotency keys: the first answer to each (credential, key), kept for replays.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Begins `call`: an earlier call's answer when the key has one; otherwise a transaction
    /// in which the call runs and which stores its answer ([`KeyedWrite`]). A concurrent call
    /// with the key waits for the first to end, then gets its answer (or runs, if the first
    /// rolled back); `InFlight` when the wait outlasts the store's lock timeout.
    async fn begin_keyed(self: Arc<Self>, call: &KeyedCall) -> Result<KeyedStart, StoreError>;

    /// What `key` of `scope` answered, compared with a call of `fingerprint`; `None` when the
    /// key is unused.
    async fn lookup_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<IdempotencyStart>, StoreError>;

    /// Stores the answer of a call that wrote nothing (a refusal) unless the key already has
    /// a record; `true` when stored.
    async fn record_idempotent(&self, answer: &IdempotentAnswer) -> Result<bool, StoreError>;

    /// Deletes the records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
