//! An in-memory adapter of every port: [`MemoryStore`].
//!
//! It keeps everything in `BTreeMap`s behind one [`Mutex`]: each method takes the lock once,
//! so each method is one transaction, and concurrent callers are serialized. The scoping rules
//! are not re-implemented: lists filter with the domain's own Rust twins of the SQL the
//! database adapter runs ([`RequestScope::contains`], [`RequestFilter::matches`],
//! [`EventScope::contains`]).
//!
//! It is meant for tests, demos and as the worked example of an adapter (see
//! `docs/embedding.md`); it runs the exported contract suite (`store_contract_tests!`, feature
//! `testing`) like the database adapters do.
//! Nothing survives the process.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mandate_domain::keys::KeyHasher;
//! use mandate_domain::memory::MemoryStore;
//! use mandate_domain::ports::Store;
//! use mandate_domain::usecases::Mandate;
//!
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let mandate = Mandate::new(store, KeyHasher::new(b"a secret of at least 32 bytes!!!"));
//! # let _ = mandate;
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::agents::AgentKey;
use crate::claims::{Claim, ClaimStatus, LedgerEntry, LedgerRecord, LedgerStatus};
use crate::customers::{Customer, Email};
use crate::events::Event;
use crate::ids::{
    ClaimId, ClientId, CustomerId, DeliveryId, DestinationId, EndpointId, EventId, KeyId,
    OrchestratorId, OrganizationId, RequestId,
};
use crate::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use crate::operations::{DeliveryQueueStats, DeliveryQueueStore};
use crate::payments::{Payment, PaymentLink, PaymentRequest};
use crate::policy::{ClientScope, DestinationScope, RequestScope, endpoint_scope_fits};
use crate::ports::{
    ClaimApproval, ClaimStore, ClaimSubmission, ClaimedDelivery, ClientStore, CustomerStore,
    DestinationStore, EventFilter, EventStore, Fanout, Health, IdempotencyStart, IdempotencyStore,
    IdempotentAnswer, KeyStore, KeyedCall, KeyedStart, KeyedWrite, Ledger, OrchestratorFilter,
    OrchestratorStore, OrganizationFilter, OrganizationStore, Page, PageRequest, RecordedAttempt,
    RequestFilter, RequestStore, Store, StoreError, WebhookStore,
};
use crate::values::{PermissionSet, Slug};
use crate::webhooks::{Delivery, DeliveryStatus, EndpointOwner, EventScope, WebhookEndpoint};

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

#[async_trait]
impl OrganizationStore for MemoryStore {
    async fn insert_organization(
        &self,
        organization: &Organization,
        platform_key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = organization.id.to_string();
        if state.organizations.contains_key(&id)
            || state.keys.contains_key(&platform_key.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        state.organizations.insert(id, organization.clone());
        state
            .keys
            .insert(platform_key.id.to_string(), platform_key.clone());
        Ok(())
    }

    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>, StoreError> {
        Ok(self.state().organizations.get(id.as_str()).cloned())
    }

    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.organizations, page, |organization| {
            filter
                .name
                .as_ref()
                .is_none_or(|name| &organization.name == name)
                .then_some(organization)
        }))
    }
}

#[async_trait]
impl OrchestratorStore for MemoryStore {
    async fn insert_orchestrator(
        &self,
        orchestrator: &Orchestrator,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = orchestrator.id.to_string();
        if state.orchestrators.contains_key(&id)
            || state
                .orchestrators
                .values()
                .any(|stored| stored.slug == orchestrator.slug)
            || state.keys.contains_key(&key.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        state.orchestrators.insert(id, orchestrator.clone());
        state.keys.insert(key.id.to_string(), key.clone());
        Ok(())
    }

    async fn orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        Ok(self.state().orchestrators.get(id.as_str()).cloned())
    }

    async fn orchestrator_by_slug(&self, slug: &Slug) -> Result<Option<Orchestrator>, StoreError> {
        Ok(self
            .state()
            .orchestrators
            .values()
            .find(|orchestrator| &orchestrator.slug == slug)
            .cloned())
    }

    async fn list_orchestrators(
        &self,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.orchestrators, page, |orchestrator| {
            let slug = filter
                .slug
                .as_ref()
                .is_none_or(|slug| &orchestrator.slug == slug);
            let name = filter
                .name
                .as_ref()
                .is_none_or(|name| &orchestrator.name == name);
            (slug && name).then_some(orchestrator)
        }))
    }
}

#[async_trait]
impl DestinationStore for MemoryStore {
    async fn insert_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = destination.id.to_string();
        if state.destinations.contains_key(&id)
            || state
                .destinations
                .values()
                .any(|stored| stored.slug == destination.slug)
        {
            return Err(StoreError::Duplicate);
        }
        state.destinations.insert(id, destination.clone());
        Ok(())
    }

    async fn destination(&self, id: &DestinationId) -> Result<Option<Destination>, StoreError> {
        Ok(self.state().destinations.get(id.as_str()).cloned())
    }

    async fn list_destinations(
        &self,
        scope: &DestinationScope,
        page: &PageRequest,
    ) -> Result<Page<Destination>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.destinations, page, |destination| {
            let keep = match scope {
                DestinationScope::Organization(id) => &destination.organization_id == id,
                DestinationScope::One(id) => &destination.id == id,
                DestinationScope::Nothing => false,
            };
            keep.then_some(destination)
        }))
    }

    async fn destination_by_slug(&self, slug: &Slug) -> Result<Option<Destination>, StoreError> {
        Ok(self
            .state()
            .destinations
            .values()
            .find(|destination| &destination.slug == slug)
            .cloned())
    }

    async fn update_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(stored) = state
            .destinations
            .get_mut(destination.id.as_str())
            .filter(|stored| stored.organization_id == destination.organization_id)
        {
            stored.display_name = destination.display_name.clone();
            stored.payment_address = destination.payment_address.clone();
            stored.max_agents = destination.max_agents;
            stored.pending_claim_ttl_seconds = destination.pending_claim_ttl_seconds;
            stored.updated_at = destination.updated_at;
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .state()
            .keys
            .values()
            .find(|key| key.hash == hash)
            .cloned())
    }

    async fn key_with_client(
        &self,
        key_hash: &str,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError> {
        // One lock for both reads, as the database reads both in one statement.
        let state = self.state();
        Ok(state
            .keys
            .values()
            .find(|key| key.hash == key_hash)
            .map(|key| (key.clone(), state.clients.get(client_id.as_str()).cloned())))
    }

    async fn key_by_id_with_client(
        &self,
        key_id: &KeyId,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError> {
        let state = self.state();
        Ok(state
            .keys
            .get(key_id.as_str())
            .map(|key| (key.clone(), state.clients.get(client_id.as_str()).cloned())))
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_active: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if let Some(max_active) = max_active {
            let active = state
                .keys
                .values()
                .filter(|stored| owned_by(stored, &key.owner))
                .filter(|stored| stored.revoked_at.is_none())
                .filter(|stored| stored.expires_at.is_none_or(|at| at > now))
                .count();
            if active >= max_active {
                return Ok(false);
            }
        }
        let id = key.id.to_string();
        if state.keys.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        state.keys.insert(id, key.clone());
        Ok(true)
    }

    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<ApiKey>, StoreError> {
        Ok(self
            .state()
            .keys
            .values()
            .rev()
            .filter(|key| owned_by(key, owner))
            .cloned()
            .collect())
    }

    async fn revoke_key(
        &self,
        owner: &KeyOwner,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKey>, StoreError> {
        let mut state = self.state();
        let Some(key) = state
            .keys
            .get_mut(id.as_str())
            .filter(|key| owned_by(key, owner))
        else {
            return Ok(None);
        };
        // Only the first revocation sets the time.
        key.revoked_at.get_or_insert(at);
        Ok(Some(key.clone()))
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(key) = self.state().keys.get_mut(id.as_str()) {
            // Never moves backwards when touches race.
            if key.last_used_at.is_none_or(|last| last < at) {
                key.last_used_at = Some(at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn insert_client(&self, client: &Client, event: &Event) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = client.id.to_string();
            if state.clients.contains_key(&id) {
                return Err(StoreError::Duplicate);
            }
            state.clients.insert(id, client.clone());
            Ok(())
        })
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        Ok(self.state().clients.get(id.as_str()).cloned())
    }

    async fn client_with_approval_expiry(
        &self,
        id: &ClientId,
    ) -> Result<Option<(Client, Option<DateTime<Utc>>)>, StoreError> {
        let state = self.state();
        Ok(state.clients.get(id.as_str()).map(|client| {
            let expires_at = state
                .claims
                .values()
                .find(|claim| claim.client_id.as_ref() == Some(id))
                .and_then(|claim| claim.expires_at);
            (client.clone(), expires_at)
        }))
    }

    async fn list_clients(
        &self,
        scope: &ClientScope,
        status: Option<ClientStatus>,
        page: &PageRequest,
    ) -> Result<Page<Client>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.clients, page, |client| {
            let keep = scope.contains(
                &client.organization_id,
                &client.destination_id,
                &client.orchestrator_id,
            ) && status.is_none_or(|status| status == client.status);
            keep.then_some(client)
        }))
    }

    async fn update_client(
        &self,
        client: &Client,
        expected_version: u64,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        events_are_new(&state, &[event])?;
        match state.clients.get_mut(client.id.as_str()) {
            Some(stored) if stored.version == expected_version => *stored = client.clone(),
            _ => return Ok(false),
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn insert_request(
        &self,
        request: &PaymentRequest,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = request.id.to_string();
            if state.requests.contains_key(&id) {
                return Err(StoreError::Duplicate);
            }
            state.requests.insert(id, request.clone());
            Ok(())
        })
    }

    async fn request(&self, id: &RequestId) -> Result<Option<PaymentRequest>, StoreError> {
        Ok(self.state().requests.get(id.as_str()).cloned())
    }

    async fn list_requests(
        &self,
        scope: &RequestScope,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<PaymentRequest>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.requests, page, |request| {
            (scope.contains(request) && filter.matches(request)).then_some(request)
        }))
    }

    async fn update_request(
        &self,
        request: &PaymentRequest,
        expected_version: u64,
        payment: Option<&Payment>,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if let Some(payment) = payment
            && state.payments.contains_key(&payment.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        match state.requests.get_mut(request.id.as_str()) {
            Some(stored) if stored.version == expected_version => *stored = request.clone(),
            _ => return Ok(false),
        }
        if let Some(payment) = payment {
            state
                .payments
                .insert(payment.id.to_string(), payment.clone());
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }

    async fn requests_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRequest>, StoreError> {
        let state = self.state();
        let mut due: Vec<&PaymentRequest> = state
            .requests
            .values()
            .filter(|request| request.status.is_pending())
            .filter(|request| request.expires_at.is_some_and(|at| at <= now))
            .collect();
        due.sort_by(|left, right| (left.expires_at, &left.id).cmp(&(right.expires_at, &right.id)));
        Ok(due.into_iter().take(limit as usize).cloned().collect())
    }

    async fn payments_of(&self, request_id: &RequestId) -> Result<Vec<Payment>, StoreError> {
        Ok(self
            .state()
            .payments
            .values()
            .filter(|payment| &payment.request_id == request_id)
            .cloned()
            .collect())
    }

    async fn insert_payment_link(&self, link: &PaymentLink) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = link.id.to_string();
        if state.payment_links.contains_key(&id)
            || state
                .payment_links
                .values()
                .any(|stored| stored.token_hash == link.token_hash)
        {
            return Err(StoreError::Duplicate);
        }
        state.payment_links.insert(id, link.clone());
        Ok(())
    }

    async fn payment_link_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<PaymentLink>, StoreError> {
        Ok(self
            .state()
            .payment_links
            .values()
            .find(|link| link.token_hash == hash)
            .cloned())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn events(&self, page: &PageRequest) -> Result<Page<Event>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.events, page, |stored| Some(&stored.event)))
    }

    async fn list_events(
        &self,
        scope: &EventScope,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.events, page, |stored| {
            (scope.contains(&stored.event) && filter.matches(&stored.event))
                .then_some(&stored.event)
        }))
    }

    async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        Ok(self
            .state()
            .events
            .get(id.as_str())
            .map(|stored| stored.event.clone()))
    }
}

/// Whether an endpoint belongs to `owner`.
fn endpoint_owned_by(endpoint: &WebhookEndpoint, owner: &EndpointOwner) -> bool {
    &endpoint.owner == owner
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = endpoint.id.to_string();
        if state.endpoints.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        if !endpoint_is_consistent(endpoint) {
            return Err(inconsistent(
                "an endpoint names an organization or destination its owner does not have",
            ));
        }
        state.endpoints.insert(id, endpoint.clone());
        Ok(())
    }

    async fn endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        Ok(self.state().endpoints.get(id.as_str()).cloned())
    }

    async fn endpoints_of(
        &self,
        owner: &EndpointOwner,
        within: Option<&PermissionSet>,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.endpoints, page, |endpoint| {
            (endpoint_owned_by(endpoint, owner)
                && endpoint_scope_fits(endpoint.scope.as_ref(), within))
            .then_some(endpoint)
        }))
    }

    async fn endpoints_of_organization(
        &self,
        organization_id: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.endpoints, page, |endpoint| {
            let keep = match &endpoint.owner {
                EndpointOwner::Platform {
                    organization_id: owner,
                }
                | EndpointOwner::Destination {
                    organization_id: owner,
                    ..
                } => owner == organization_id,
                EndpointOwner::Client { .. } | EndpointOwner::Orchestrator { .. } => false,
            };
            keep.then_some(endpoint)
        }))
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(stored) = state.endpoints.get_mut(endpoint.id.as_str()) {
            stored.url = endpoint.url.clone();
            stored.event_types = endpoint.event_types.clone();
            stored.description = endpoint.description.clone();
            stored.enabled = endpoint.enabled;
            stored.secret = endpoint.secret.clone();
            stored.previous_secret = endpoint.previous_secret.clone();
            stored.previous_secret_expires_at = endpoint.previous_secret_expires_at;
            stored.updated_at = endpoint.updated_at;
        }
        Ok(())
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.endpoints.remove(id.as_str()).is_none() {
            return Ok(false);
        }
        // Its attempts go with it.
        state
            .deliveries
            .retain(|_, stored| &stored.delivery.endpoint_id != id);
        Ok(true)
    }

    async fn candidate_endpoints(&self, event: &Event) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let state = self.state();
        let audience = &event.audience;
        // Customer events are seen through any client ID of the organization, the others
        // through a client ID of their destination.
        let organization_wide =
            audience.destination_id.is_none() || event.event_type.family() == "customer";
        let linked: BTreeSet<&OrchestratorId> = state
            .clients
            .values()
            .filter(|client| {
                if organization_wide {
                    audience.organization_id.as_ref() == Some(&client.organization_id)
                } else {
                    audience.destination_id.as_ref() == Some(&client.destination_id)
                }
            })
            .map(|client| &client.orchestrator_id)
            .collect();
        Ok(state
            .endpoints
            .values()
            .filter(|endpoint| endpoint.enabled && endpoint.created_at <= event.created_at)
            .filter(|endpoint| {
                let in_organization = audience.organization_id.is_some()
                    && endpoint.organization_id == audience.organization_id;
                let orchestrator = match &endpoint.owner {
                    EndpointOwner::Orchestrator { orchestrator_id } => {
                        audience.orchestrator_id.as_ref() == Some(orchestrator_id)
                            || linked.contains(orchestrator_id)
                    }
                    _ => false,
                };
                in_organization || orchestrator
            })
            .cloned()
            .collect())
    }

    async fn claim_events_for_fanout(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Event>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        Ok(state
            .events
            .values_mut()
            .filter(|stored| !stored.fanned_out)
            .filter(|stored| stored.lease_until.is_none_or(|at| at <= now))
            .take(limit as usize)
            .map(|stored| {
                stored.lease_until = Some(until);
                stored.event.clone()
            })
            .collect())
    }

    async fn record_fanout(
        &self,
        fanouts: &[Fanout],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<EventId>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        // Only the first worker to finish fans an event out.
        let open: Vec<&Fanout> = fanouts
            .iter()
            .filter(|fanout| {
                state
                    .events
                    .get(fanout.event_id.as_str())
                    .is_some_and(|stored| !stored.fanned_out)
            })
            .collect();
        let attempts: Vec<&Delivery> = open.iter().flat_map(|fanout| &fanout.deliveries).collect();
        deliveries_are_stored_whole(&state, &attempts, None)?;
        let mut marked = Vec::with_capacity(open.len());
        for fanout in open {
            if let Some(stored) = state.events.get_mut(fanout.event_id.as_str()) {
                stored.fanned_out = true;
                stored.lease_until = None;
                marked.push(fanout.event_id.clone());
            }
        }
        for delivery in attempts {
            state.deliveries.insert(
                delivery.id.to_string(),
                StoredDelivery {
                    delivery: delivery.clone(),
                    lease_until: Some(until),
                },
            );
        }
        // No wake-up: the attempts are leased to the caller, who sends them.
        Ok(marked)
    }

    async fn claim_due_deliveries_per_endpoint(
        &self,
        limit: u32,
        per_endpoint: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        // What each endpoint has in flight already, taken from its room.
        let mut in_flight: BTreeMap<String, u32> = BTreeMap::new();
        for stored in state.deliveries.values() {
            if stored.delivery.status == DeliveryStatus::Pending
                && stored.lease_until.is_some_and(|at| at > now)
            {
                *in_flight
                    .entry(stored.delivery.endpoint_id.to_string())
                    .or_default() += 1;
            }
        }
        let mut due: Vec<(Option<DateTime<Utc>>, String)> = state
            .deliveries
            .iter()
            .filter(|(_, stored)| stored.delivery.status == DeliveryStatus::Pending)
            .filter(|(_, stored)| stored.delivery.next_attempt_at.is_some_and(|at| at <= now))
            .filter(|(_, stored)| stored.lease_until.is_none_or(|at| at <= now))
            .map(|(id, stored)| (stored.delivery.next_attempt_at, id.clone()))
            .collect();
        due.sort();
        let mut claimed = Vec::new();
        for (_, id) in due {
            if claimed.len() >= limit as usize {
                break;
            }
            let Some(stored) = state.deliveries.get(&id) else {
                continue;
            };
            let taken = in_flight
                .entry(stored.delivery.endpoint_id.to_string())
                .or_default();
            if *taken >= per_endpoint {
                continue;
            }
            *taken += 1;
            let (Some(event), Some(endpoint)) = (
                state.events.get(stored.delivery.event_id.as_str()),
                state.endpoints.get(stored.delivery.endpoint_id.as_str()),
            ) else {
                continue;
            };
            claimed.push(ClaimedDelivery {
                delivery: stored.delivery.clone(),
                event: event.event.clone(),
                endpoint: endpoint.clone(),
            });
            if let Some(stored) = state.deliveries.get_mut(&id) {
                stored.lease_until = Some(until);
            }
        }
        Ok(claimed)
    }

    async fn record_attempts(&self, recorded: &[RecordedAttempt]) -> Result<(), StoreError> {
        let mut state = self.state();
        // An attempt gone with its endpoint (deleted meanwhile) has no successor.
        let successors: Vec<&Delivery> = recorded
            .iter()
            .filter(|recorded| state.deliveries.contains_key(recorded.attempt.id.as_str()))
            .filter_map(|recorded| recorded.next.as_ref())
            .collect();
        deliveries_are_stored_whole(&state, &successors, None)?;
        for RecordedAttempt { attempt, .. } in recorded {
            if let Some(stored) = state.deliveries.get_mut(attempt.id.as_str()) {
                stored.delivery.status = attempt.status;
                stored.delivery.response_status = attempt.response_status;
                stored.delivery.response_body = attempt.response_body.clone();
                stored.delivery.duration_ms = attempt.duration_ms;
                stored.delivery.next_attempt_at = attempt.next_attempt_at;
                stored.lease_until = None;
            }
        }
        for next in successors {
            state.deliveries.insert(
                next.id.to_string(),
                StoredDelivery {
                    delivery: next.clone(),
                    lease_until: None,
                },
            );
        }
        drop(state);
        self.committed();
        Ok(())
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = delivery.id.to_string();
        deliveries_are_stored_whole(&state, &[delivery], None)?;
        state.deliveries.insert(
            id,
            StoredDelivery {
                delivery: delivery.clone(),
                lease_until: None,
            },
        );
        drop(state);
        self.committed();
        Ok(())
    }

    async fn insert_direct_event(
        &self,
        event: &Event,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let delivery_id = delivery.id.to_string();
        events_are_new(&state, &[event])?;
        deliveries_are_stored_whole(&state, &[delivery], Some(&event.id))?;
        // Its one attempt is stored with it: the fan-out has nothing to add.
        store_event(&mut state, event, true);
        state.deliveries.insert(
            delivery_id,
            StoredDelivery {
                delivery: delivery.clone(),
                lease_until: None,
            },
        );
        drop(state);
        self.committed();
        Ok(())
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .state()
            .deliveries
            .get(id.as_str())
            .map(|stored| stored.delivery.clone()))
    }

    async fn deliveries_of(
        &self,
        endpoint_id: &EndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.deliveries, page, |stored| {
            (&stored.delivery.endpoint_id == endpoint_id).then_some(&stored.delivery)
        }))
    }

    async fn wait_for_work(&self, timeout: std::time::Duration) {
        let signal = Arc::new(Mutex::new(Signal::default()));
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(signal.clone());
        // No runtime here: a plain thread ends the wait at the timeout (it sleeps on until then
        // even when a write ends the wait sooner; fine for the short waits of workers).
        let timer = signal.clone();
        let spawned = std::thread::Builder::new()
            .name("mandate-memory-wait".into())
            .spawn(move || {
                std::thread::sleep(timeout);
                signal_done(&timer);
            });
        if spawned.is_err() {
            // Without a timer, waiting could last forever: return at once instead.
            return;
        }
        Wait { signal }.await;
    }
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
impl CustomerStore for MemoryStore {
    async fn insert_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = customer.id.to_string();
            if state.customers.contains_key(&id) || email_taken(state, customer) {
                return Err(StoreError::Duplicate);
            }
            state.customers.insert(id, customer.clone());
            Ok(())
        })
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError> {
        Ok(self.state().customers.get(id.as_str()).cloned())
    }

    async fn customer_by_email(
        &self,
        organization_id: &OrganizationId,
        email: &Email,
    ) -> Result<Option<Customer>, StoreError> {
        let normalized = email.normalized();
        Ok(self
            .state()
            .customers
            .values()
            .find(|customer| {
                &customer.organization_id == organization_id
                    && customer
                        .email
                        .as_ref()
                        .is_some_and(|email| email.normalized() == normalized)
            })
            .cloned())
    }

    async fn list_customers(
        &self,
        organization_id: &OrganizationId,
        email: Option<&Email>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, StoreError> {
        let normalized = email.map(Email::normalized);
        let state = self.state();
        Ok(page_of(&state.customers, page, |customer| {
            let keep = &customer.organization_id == organization_id
                && normalized.as_ref().is_none_or(|wanted| {
                    customer
                        .email
                        .as_ref()
                        .is_some_and(|email| &email.normalized() == wanted)
                });
            keep.then_some(customer)
        }))
    }

    async fn update_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        let mut state = self.state();
        let exists = state
            .customers
            .get(customer.id.as_str())
            .is_some_and(|stored| stored.organization_id == customer.organization_id);
        if !exists {
            return Err(inconsistent("the customer does not exist"));
        }
        if email_taken(&state, customer) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        if let Some(stored) = state.customers.get_mut(customer.id.as_str()) {
            stored.email = customer.email.clone();
            stored.name = customer.name.clone();
            stored.metadata = customer.metadata.clone();
            stored.updated_at = customer.updated_at;
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(())
    }

    async fn delete_customer(&self, id: &CustomerId, event: &Event) -> Result<bool, StoreError> {
        let mut state = self.state();
        if !state.customers.contains_key(id.as_str()) {
            return Ok(false);
        }
        events_are_new(&state, &[event])?;
        if state.customers.remove(id.as_str()).is_none() {
            return Ok(false);
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }
}

/// Whether another customer of `customer`'s organization has its email (without regard to
/// case).
fn email_taken(state: &State, customer: &Customer) -> bool {
    let Some(email) = customer.email.as_ref().map(Email::normalized) else {
        return false;
    };
    state.customers.values().any(|other| {
        other.id != customer.id
            && other.organization_id == customer.organization_id
            && other
                .email
                .as_ref()
                .is_some_and(|other| other.normalized() == email)
    })
}

#[async_trait]
impl ClaimStore for MemoryStore {
    async fn submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError> {
        let mut state = self.state();
        let nonce = (claim.orchestrator_id.to_string(), nonce.to_owned());
        if state.claim_nonces.contains(&nonce) {
            return Ok(ClaimSubmission::NonceReused);
        }
        let live: Vec<Claim> = state
            .claims
            .values()
            .filter(|found| {
                found.status.is_live()
                    && found.destination_id == claim.destination_id
                    && found.orchestrator_id == claim.orchestrator_id
                    && (found.public_key == claim.public_key || found.agent_id == claim.agent_id)
            })
            .cloned()
            .collect();
        let live_count = live.len();
        // The nonce is recorded whatever the outcome, unless the write fails.
        if let Some(existing) = live
            .into_iter()
            .find(|found| found.public_key == claim.public_key)
        {
            state.claim_nonces.insert(nonce);
            return Ok(ClaimSubmission::Existing(Box::new(existing)));
        }
        if live_count > 0 {
            state.claim_nonces.insert(nonce);
            return Ok(ClaimSubmission::AgentIdTaken);
        }
        let id = claim.id.to_string();
        if state.claims.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        state.claim_nonces.insert(nonce);
        state.claims.insert(id, claim.clone());
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(ClaimSubmission::Created)
    }

    async fn claim(&self, id: &ClaimId) -> Result<Option<Claim>, StoreError> {
        Ok(self.state().claims.get(id.as_str()).cloned())
    }

    async fn list_claims(
        &self,
        scope: &ClientScope,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.claims, page, |claim| {
            let keep = scope.contains(
                &claim.organization_id,
                &claim.destination_id,
                &claim.orchestrator_id,
            ) && status.is_none_or(|status| status == claim.status);
            keep.then_some(claim)
        }))
    }

    async fn approve_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: &Client,
        max_agents: u32,
        events: &[Event],
    ) -> Result<ClaimApproval, StoreError> {
        let mut state = self.state();
        let approved = state
            .claims
            .values()
            .filter(|found| {
                found.destination_id == claim.destination_id
                    && found.status == ClaimStatus::Approved
            })
            .count();
        let approved_agents = u32::try_from(approved).unwrap_or(u32::MAX);
        if approved_agents >= max_agents {
            return Ok(ClaimApproval::Full { approved_agents });
        }
        let current = state
            .claims
            .get(claim.id.as_str())
            .is_some_and(|stored| stored.version == expected_version);
        if !current {
            return Ok(ClaimApproval::Stale);
        }
        let client_id = client.id.to_string();
        if state.clients.contains_key(&client_id) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &events.iter().collect::<Vec<_>>())?;
        queue_ledger(&mut state, claim, events)?;
        state.clients.insert(client_id, client.clone());
        state.claims.insert(claim.id.to_string(), claim.clone());
        for event in events {
            store_event(&mut state, event, false);
        }
        drop(state);
        self.committed();
        Ok(ClaimApproval::Approved {
            approved_agents: approved_agents.saturating_add(1),
        })
    }

    async fn update_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: Option<(&Client, u64)>,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let claim_current = state
            .claims
            .get(claim.id.as_str())
            .is_some_and(|stored| stored.version == expected_version);
        let client_current = client.is_none_or(|(client, version)| {
            state
                .clients
                .get(client.id.as_str())
                .is_some_and(|stored| stored.version == version)
        });
        if !claim_current || !client_current {
            return Ok(false);
        }
        events_are_new(&state, &events.iter().collect::<Vec<_>>())?;
        queue_ledger(&mut state, claim, events)?;
        state.claims.insert(claim.id.to_string(), claim.clone());
        if let Some((client, _)) = client {
            state.clients.insert(client.id.to_string(), client.clone());
        }
        for event in events {
            store_event(&mut state, event, false);
        }
        drop(state);
        self.committed();
        Ok(true)
    }

    async fn claims_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let state = self.state();
        let mut pending: Vec<&Claim> = state
            .claims
            .values()
            .filter(|claim| claim.status == ClaimStatus::Pending && claim.pending_expires_at <= now)
            .collect();
        pending.sort_by_key(|claim| claim.pending_expires_at);
        let mut approved: Vec<&Claim> = state
            .claims
            .values()
            .filter(|claim| {
                claim.status == ClaimStatus::Approved
                    && claim.expires_at.is_some_and(|at| at <= now)
            })
            .collect();
        approved.sort_by_key(|claim| claim.expires_at);
        Ok(pending
            .into_iter()
            .take(limit as usize)
            .chain(approved.into_iter().take(limit as usize))
            .cloned()
            .collect())
    }

    async fn record_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let entry = (key.to_string(), nonce.to_owned());
        if state.signature_nonces.contains_key(&entry) {
            return Ok(false);
        }
        state.signature_nonces.insert(entry, now);
        Ok(true)
    }

    async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.signature_nonces.len();
        state.signature_nonces.retain(|_, at| *at >= before);
        Ok((count - state.signature_nonces.len()) as u64)
    }
}

#[async_trait]
impl Ledger for MemoryStore {
    async fn append_queued(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut state = self.state();
        let taken: Vec<String> = state
            .ledger_queue
            .keys()
            .take(limit as usize)
            .cloned()
            .collect();
        let mut appended = Vec::with_capacity(taken.len());
        let mut claim_ids = Vec::with_capacity(taken.len());
        for event_id in taken {
            let Some(record) = state.ledger_queue.remove(&event_id) else {
                continue;
            };
            claim_ids.push(record.claim_id.clone());
            let chain = state
                .ledger
                .entry(record.organization_id.to_string())
                .or_default();
            let entry = LedgerEntry::append(record, chain.last());
            chain.push(entry.clone());
            appended.push(entry);
        }
        for claim_id in claim_ids {
            let still_queued = state
                .ledger_queue
                .values()
                .any(|record| record.claim_id == claim_id);
            if still_queued {
                continue;
            }
            if let Some(claim) = state.claims.get_mut(claim_id.as_str()) {
                claim.ledger_status = Some(LedgerStatus::Recorded);
            }
        }
        Ok(appended)
    }

    async fn ledger_entries(
        &self,
        organization_id: &OrganizationId,
        destination_id: Option<&DestinationId>,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError> {
        let cursor = match page.starting_after.as_deref().map(str::parse::<u64>) {
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => return Ok(empty_page()),
            None => None,
        };
        let limit = page_limit(page);
        let state = self.state();
        let Some(chain) = state.ledger.get(organization_id.as_str()) else {
            return Ok(empty_page());
        };
        let mut data: Vec<LedgerEntry> = chain
            .iter()
            .rev()
            .filter(|entry| cursor.is_none_or(|cursor| entry.seq < cursor))
            .filter(|entry| destination_id.is_none_or(|id| &entry.destination_id == id))
            .take(limit + 1)
            .cloned()
            .collect();
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page::of(data, has_more))
    }

    async fn ledger_chain(
        &self,
        organization_id: &OrganizationId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let state = self.state();
        Ok(state
            .ledger
            .get(organization_id.as_str())
            .map(|chain| {
                chain
                    .iter()
                    .filter(|entry| entry.seq > after)
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin_keyed(self: Arc<Self>, call: &KeyedCall) -> Result<KeyedStart, StoreError> {
        let entry = (call.scope.clone(), call.key.clone());
        {
            let mut state = self.state();
            if let Some(record) = state.idempotency.get(&entry) {
                return Ok(KeyedStart::Answered(IdempotencyStart::of_record(
                    &record.fingerprint,
                    &call.fingerprint,
                    record.response.clone(),
                )));
            }
            if !state.keyed_calls.insert(entry.clone()) {
                return Ok(KeyedStart::Answered(IdempotencyStart::InFlight));
            }
        }
        Ok(KeyedStart::Run(Box::new(MemoryKeyedWrite {
            store: self,
            entry,
        })))
    }

    async fn lookup_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<IdempotencyStart>, StoreError> {
        Ok(self
            .state()
            .idempotency
            .get(&(scope.to_owned(), key.to_owned()))
            .map(|record| {
                IdempotencyStart::of_record(
                    &record.fingerprint,
                    fingerprint,
                    record.response.clone(),
                )
            }))
    }

    async fn record_idempotent(&self, answer: &IdempotentAnswer) -> Result<bool, StoreError> {
        let mut state = self.state();
        let entry = (answer.scope.clone(), answer.key.clone());
        if state.idempotency.contains_key(&entry) {
            return Ok(false);
        }
        state
            .idempotency
            .insert(entry, IdempotencyRecord::answered(answer));
        Ok(true)
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.idempotency.len();
        state
            .idempotency
            .retain(|_, record| record.created_at >= before);
        Ok((count - state.idempotency.len()) as u64)
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueueStore for MemoryStore {
    async fn delivery_queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DeliveryQueueStats, StoreError> {
        let state = self.state();
        let mut stats = DeliveryQueueStats::default();
        for stored in state.deliveries.values() {
            let delivery = &stored.delivery;
            if delivery.status != DeliveryStatus::Pending {
                continue;
            }
            match delivery.next_attempt_at {
                Some(at) if at <= now => {
                    stats.due += 1;
                    stats.oldest_due_at = Some(stats.oldest_due_at.map_or(at, |old| old.min(at)));
                }
                Some(_) => stats.scheduled += 1,
                None => {}
            }
        }
        stats.events_awaiting_fanout = state
            .events
            .values()
            .filter(|stored| !stored.fanned_out)
            .count() as u64;
        Ok(stats)
    }

    async fn release_deliveries(&self, ids: &[DeliveryId]) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut released = 0;
        for id in ids {
            if let Some(stored) = state
                .deliveries
                .get_mut(id.as_str())
                .filter(|stored| stored.delivery.status == DeliveryStatus::Pending)
            {
                stored.lease_until = None;
                released += 1;
            }
        }
        drop(state);
        self.committed();
        Ok(released)
    }

    async fn postpone_deliveries(
        &self,
        ids: &[DeliveryId],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut postponed = 0;
        for id in ids {
            if let Some(stored) = state
                .deliveries
                .get_mut(id.as_str())
                .filter(|stored| stored.delivery.status == DeliveryStatus::Pending)
            {
                stored.lease_until = None;
                stored.delivery.next_attempt_at = Some(until);
                postponed += 1;
            }
        }
        Ok(postponed)
    }

    async fn purge_finished_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut finished: Vec<(DateTime<Utc>, String)> = state
            .deliveries
            .iter()
            .filter(|(_, stored)| stored.delivery.status != DeliveryStatus::Pending)
            .filter(|(_, stored)| stored.delivery.created_at < before)
            .map(|(id, stored)| (stored.delivery.created_at, id.clone()))
            .collect();
        finished.sort();
        finished.truncate(limit as usize);
        for (_, id) in &finished {
            state.deliveries.remove(id);
        }
        Ok(finished.len() as u64)
    }
}
