//! An in-memory adapter of every port: [`MemoryStore`], the reference adapter for embedders.
//!
//! It keeps everything in `BTreeMap`s behind one [`Mutex`]: each method takes the lock once,
//! so each method is one transaction, and concurrent callers are serialized. The scoping rules
//! are not re-implemented: lists filter with the domain's own Rust twins of the SQL the
//! database adapter runs ([`RequestScope::contains`], [`RequestFilter::matches`],
//! [`EventScope::contains`]). One file per aggregate holds its ports.
//!
//! It is meant for tests, demos and as the worked example of an adapter (see
//! `docs/embedding.md`); it runs the store contract ([`trials`](crate::trials)) like the
//! database adapters do. Nothing survives the process.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mandate_contract::memory::MemoryStore;
//! use mandate_domain::keys::KeyHasher;
//! use mandate_domain::ports::Store;
//! use mandate_domain::usecases::Mandate;
//!
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let mandate = Mandate::new(store, KeyHasher::new(b"a secret of at least 32 bytes!!!"));
//! # let _ = mandate;
//! ```

mod claims;
mod customers;
mod idempotency;
mod keys;
mod organizations;
mod requests;
mod sessions;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use mandate_domain::agents::AgentKey;
use mandate_domain::claims::{Claim, ClaimStatus, LedgerEntry, LedgerRecord, LedgerStatus};
use mandate_domain::customers::{Customer, Email};
use mandate_domain::events::Event;
use mandate_domain::ids::{
    ClaimId, ClientId, CustomerId, DeliveryId, DestinationId, EndpointId, EventId, KeyId,
    OrchestratorId, OrganizationId, RequestId,
};
use mandate_domain::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use mandate_domain::operations::{DeliveryQueueStats, DeliveryQueueStore};
use mandate_domain::payments::{Payment, PaymentLink, PaymentRequest};
use mandate_domain::policy::{ClientScope, DestinationScope, RequestScope, endpoint_scope_fits};
use mandate_domain::ports::{
    ClaimApproval, ClaimStore, ClaimSubmission, ClaimedDelivery, ClientStore, CustomerStore,
    DestinationStore, EventFilter, EventStore, Fanout, Health, IdempotencyStart, IdempotencyStore,
    IdempotentAnswer, KeyRead, KeyRef, KeyStore, KeyedCall, KeyedStart, KeyedWrite, Ledger,
    OrchestratorFilter, OrchestratorStore, OrganizationFilter, OrganizationStore, Page,
    PageRequest, RecordedAttempt, RequestFilter, RequestStore, Store, StoreError, WebhookStore,
};
use mandate_domain::sessions::ConsoleSession;
use mandate_domain::values::{PermissionSet, Slug};
use mandate_domain::webhooks::{
    Delivery, DeliveryStatus, EndpointOwner, EventScope, WebhookEndpoint,
};

/// Every port, in memory. Cheap to create; clone the `Arc` you wrap it in to share it.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Waiters of [`WebhookStore::wait_for_work`], woken by the next write.
    waiters: Mutex<Vec<Arc<Mutex<Signal>>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    organizations: BTreeMap<String, Organization>,
    orchestrators: BTreeMap<String, Orchestrator>,
    destinations: BTreeMap<String, Destination>,
    keys: BTreeMap<String, ApiKey>,
    clients: BTreeMap<String, Client>,
    requests: BTreeMap<String, PaymentRequest>,
    payments: BTreeMap<String, Payment>,
    payment_links: BTreeMap<String, PaymentLink>,
    events: BTreeMap<String, StoredEvent>,
    customers: BTreeMap<String, Customer>,
    endpoints: BTreeMap<String, WebhookEndpoint>,
    deliveries: BTreeMap<String, StoredDelivery>,
    claims: BTreeMap<String, Claim>,
    /// (orchestrator id, body nonce) of claim submissions.
    claim_nonces: BTreeSet<(String, String)>,
    /// (agent key, nonce) → when it was recorded.
    signature_nonces: BTreeMap<(String, String), DateTime<Utc>>,
    /// Ledger records waiting for their chain, by the id of their claim event.
    ledger_queue: BTreeMap<String, LedgerRecord>,
    /// Each organization's chain, oldest first (`seq` = index + 1).
    ledger: BTreeMap<String, Vec<LedgerEntry>>,
    /// (scope, key) → record.
    idempotency: BTreeMap<(String, String), IdempotencyRecord>,
    /// The keys of keyed calls that have begun and not ended.
    keyed_calls: BTreeSet<(String, String)>,
    /// Console sessions by token hash.
    console_sessions: BTreeMap<String, ConsoleSession>,
}

struct StoredEvent {
    event: Event,
    fanned_out: bool,
    lease_until: Option<DateTime<Utc>>,
}

struct StoredDelivery {
    delivery: Delivery,
    lease_until: Option<DateTime<Utc>>,
}

struct IdempotencyRecord {
    fingerprint: String,
    response: (u16, String),
    created_at: DateTime<Utc>,
}

impl IdempotencyRecord {
    fn answered(answer: &IdempotentAnswer) -> Self {
        Self {
            fingerprint: answer.fingerprint.clone(),
            response: (answer.status, answer.body.clone()),
            created_at: answer.created_at,
        }
    }
}

/// A keyed call on the in-memory store. This store has no transactions: it keeps the key
/// taken while the call runs (a concurrent call with it is `InFlight`) and records the answer
/// at commit, but a rolled-back call's writes stay (only refusals roll back, and they write
/// nothing).
struct MemoryKeyedWrite {
    store: Arc<MemoryStore>,
    entry: (String, String),
}

impl Drop for MemoryKeyedWrite {
    fn drop(&mut self) {
        self.store.state().keyed_calls.remove(&self.entry);
    }
}

#[async_trait]
impl KeyedWrite for MemoryKeyedWrite {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn commit(self: Box<Self>, answer: IdempotentAnswer) -> Result<(), StoreError> {
        let mut state = self.store.state();
        state
            .idempotency
            .insert(self.entry.clone(), IdempotencyRecord::answered(&answer));
        Ok(())
    }

    async fn roll_back(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state, for one transaction. A panic while the lock was held cannot leave a write
    /// half done (every method checks before it writes), so a poisoned lock is taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new record and its event, as one transaction: nothing is stored when the event is
    /// not new or `insert` refuses.
    fn insert_with_event(
        &self,
        event: &Event,
        insert: impl FnOnce(&mut State) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        events_are_new(&state, &[event])?;
        insert(&mut state)?;
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(())
    }

    /// Wakes every [`WebhookStore::wait_for_work`] in progress: work may be ready.
    fn committed(&self) {
        let waiters =
            std::mem::take(&mut *self.waiters.lock().unwrap_or_else(PoisonError::into_inner));
        waiters.iter().for_each(|signal| signal_done(signal));
    }
}

/// The canonical (upper-case) spelling of an id used as a cursor, in which stored ids compare.
fn cursor(page: &PageRequest) -> Option<String> {
    page.starting_after
        .as_deref()
        .map(|cursor| match cursor.split_once('_') {
            Some((prefix, rest)) => format!("{prefix}_{}", rest.to_uppercase()),
            None => cursor.to_owned(),
        })
}

fn page_limit(page: &PageRequest) -> usize {
    page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize
}

/// A page of `map` (keyed by id, so in creation order) newest first, of the items `select`
/// keeps.
fn page_of<'a, S, T: Clone + 'a>(
    map: &'a BTreeMap<String, S>,
    page: &PageRequest,
    select: impl Fn(&'a S) -> Option<&'a T>,
) -> Page<T> {
    let limit = page_limit(page);
    let items: Box<dyn DoubleEndedIterator<Item = (&String, &S)>> = match cursor(page) {
        Some(cursor) => Box::new(map.range::<str, _>((
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(cursor.as_str()),
        ))),
        None => Box::new(map.iter()),
    };
    let mut data: Vec<T> = items
        .rev()
        .filter_map(|(_, item)| select(item))
        .take(limit + 1)
        .cloned()
        .collect();
    let has_more = data.len() > limit;
    data.truncate(limit);
    Page::of(data, has_more)
}

fn empty_page<T>() -> Page<T> {
    Page::of(Vec::new(), false)
}

fn lease_end(now: DateTime<Utc>, lease: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn inconsistent(message: &str) -> StoreError {
    StoreError::Other(message.to_owned().into())
}

fn owned_by(key: &ApiKey, owner: &KeyOwner) -> bool {
    &key.owner == owner
}

fn store_event(state: &mut State, event: &Event, fanned_out: bool) {
    state.events.insert(
        event.id.to_string(),
        StoredEvent {
            event: event.clone(),
            fanned_out,
            lease_until: None,
        },
    );
}

/// `Duplicate` when one of `events` is already stored: a refused event takes its write with
/// it.
fn events_are_new(state: &State, events: &[&Event]) -> Result<(), StoreError> {
    if events
        .iter()
        .any(|event| state.events.contains_key(event.id.as_str()))
    {
        return Err(StoreError::Duplicate);
    }
    Ok(())
}

/// Refuses attempts of an unknown event or endpoint (the database's foreign keys), and ids
/// already taken.
fn deliveries_are_stored_whole(
    state: &State,
    deliveries: &[&Delivery],
    pending_event: Option<&EventId>,
) -> Result<(), StoreError> {
    for delivery in deliveries {
        if state.deliveries.contains_key(delivery.id.as_str()) {
            return Err(StoreError::Duplicate);
        }
        let event_known = pending_event == Some(&delivery.event_id)
            || state.events.contains_key(delivery.event_id.as_str());
        if !event_known || !state.endpoints.contains_key(delivery.endpoint_id.as_str()) {
            return Err(inconsistent(
                "an attempt must name a stored event and endpoint",
            ));
        }
    }
    Ok(())
}

/// Whether an endpoint's organization and destination are those its owner has.
fn endpoint_is_consistent(endpoint: &WebhookEndpoint) -> bool {
    match &endpoint.owner {
        EndpointOwner::Client { .. } => endpoint.organization_id.is_some(),
        EndpointOwner::Orchestrator { .. } => {
            endpoint.organization_id.is_none() && endpoint.destination_id.is_none()
        }
        EndpointOwner::Platform { organization_id } => {
            endpoint.organization_id.as_ref() == Some(organization_id)
                && endpoint.destination_id.is_none()
        }
        EndpointOwner::Destination {
            organization_id,
            destination_id,
        } => {
            endpoint.organization_id.as_ref() == Some(organization_id)
                && endpoint.destination_id.as_ref() == Some(destination_id)
        }
    }
}

/// The ledger record of `claim`'s state, queued under the id of its first event.
fn queue_ledger(state: &mut State, claim: &Claim, events: &[Event]) -> Result<(), StoreError> {
    if let Some(record) = claim.ledger_record() {
        let event = events
            .first()
            .ok_or_else(|| inconsistent("a ledger record needs its claim event"))?;
        state.ledger_queue.insert(event.id.to_string(), record);
    }
    Ok(())
}

/// The state of one [`WebhookStore::wait_for_work`].
#[derive(Default)]
struct Signal {
    done: bool,
    waker: Option<Waker>,
}

fn signal_done(signal: &Mutex<Signal>) {
    let mut signal = signal.lock().unwrap_or_else(PoisonError::into_inner);
    signal.done = true;
    if let Some(waker) = signal.waker.take() {
        waker.wake();
    }
}

/// Ready once its signal is done (a write, or the timeout).
struct Wait {
    signal: Arc<Mutex<Signal>>,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
        if signal.done {
            Poll::Ready(())
        } else {
            signal.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
