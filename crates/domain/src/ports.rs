//! The ports the use cases call. Adapters (PostgreSQL, SQLite, an in-memory map, yours)
//! implement them; every write method is one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::agents::AgentKey;
use crate::claims::{Claim, ClaimStatus, LedgerEntry};
use crate::customers::{Customer, Email};
use crate::events::{Event, EventType};
use crate::ids::{
    ClaimId, ClientId, CustomerId, DeliveryId, DestinationId, EndpointId, EventId, KeyId,
    OrchestratorId, OrganizationId, RequestId,
};
use crate::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use crate::payments::{Direction, Payment, PaymentLink, PaymentRequest, RequestStatus};
use crate::policy::{ClientScope, DestinationScope, RequestScope};
use crate::values::{PermissionSet, Slug};
use crate::webhooks::{Delivery, EndpointOwner, EventScope, WebhookEndpoint};

/// Any error an adapter wants to carry as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now; the caller may retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// A uniqueness rule was broken (a slug already taken).
    #[error("the record already exists")]
    Duplicate,
    /// Anything else.
    #[error("storage failure")]
    Other(#[source] BoxError),
}

/// Where a list page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1–100.
    pub limit: u32,
    /// Return items older than this id (lists are newest first).
    pub starting_after: Option<String>,
}

impl PageRequest {
    /// The page size when the caller names none.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// The largest page.
    pub const MAX_LIMIT: u32 = 100;
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Whether older items follow.
    pub has_more: bool,
    /// The ids of stored items of this page that could not be read (a row breaking the
    /// domain's rules), left out of `data` so that one bad row does not fail the whole list;
    /// reading one of them by id fails. Newest first, like `data`.
    pub unreadable: Vec<String>,
}

impl<T> Page<T> {
    /// A page of `data` where every item could be read.
    pub fn of(data: Vec<T>, has_more: bool) -> Self {
        Self {
            data,
            has_more,
            unreadable: Vec::new(),
        }
    }

    /// The same page with each item changed by `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
            unreadable: self.unreadable,
        }
    }
}

/// The operator's look-up of organizations: all of them, or those with this exact `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationFilter {
    /// Only organizations with this name.
    pub name: Option<String>,
}

/// The operator's look-up of orchestrators: all of them, or those with this `slug` and/or
/// this exact `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrchestratorFilter {
    /// Only the orchestrator with this slug.
    pub slug: Option<Slug>,
    /// Only orchestrators with this name.
    pub name: Option<String>,
}

/// Which events a feed lists, beyond what its reader may see: all of them, or those of one of
/// these types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of these types.
    pub types: Option<Vec<EventType>>,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.contains(&event.event_type))
    }
}

/// Organizations.
#[async_trait]
pub trait OrganizationStore: Send + Sync {
    /// Stores a new organization and its first platform key, atomically.
    async fn insert_organization(
        &self,
        organization: &Organization,
        platform_key: &ApiKey,
    ) -> Result<(), StoreError>;

    /// One organization.
    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>, StoreError>;

    /// The organizations passing `filter`, newest first.
    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, StoreError>;
}

/// Orchestrators.
#[async_trait]
pub trait OrchestratorStore: Send + Sync {
    /// Stores a new orchestrator and its first key, atomically; `Duplicate` when the slug is
    /// taken.
    async fn insert_orchestrator(
        &self,
        orchestrator: &Orchestrator,
        key: &ApiKey,
    ) -> Result<(), StoreError>;

    /// One orchestrator.
    async fn orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError>;

    /// The orchestrator with this slug.
    async fn orchestrator_by_slug(&self, slug: &Slug) -> Result<Option<Orchestrator>, StoreError>;

    /// The orchestrators passing `filter`, newest first.
    async fn list_orchestrators(
        &self,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, StoreError>;
}

/// Destinations.
#[async_trait]
pub trait DestinationStore: Send + Sync {
    /// Stores a new destination; `Duplicate` when the slug is taken.
    async fn insert_destination(&self, destination: &Destination) -> Result<(), StoreError>;

    /// One destination.
    async fn destination(&self, id: &DestinationId) -> Result<Option<Destination>, StoreError>;

    /// The destinations in `scope`, newest first.
    async fn list_destinations(
        &self,
        scope: &DestinationScope,
        page: &PageRequest,
    ) -> Result<Page<Destination>, StoreError>;

    /// The destination with this slug.
    async fn destination_by_slug(&self, slug: &Slug) -> Result<Option<Destination>, StoreError>;

    /// Saves the changeable fields (`display_name`, `payment_address`, `max_agents`,
    /// `pending_claim_ttl_seconds`, `updated_at`) of an existing destination.
    async fn update_destination(&self, destination: &Destination) -> Result<(), StoreError>;
}

/// API keys, stored as keyed hashes.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key with this keyed hash, active or not.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// The key with this keyed hash, active or not, together with the client ID `client_id`
    /// (revoked or not, whoever holds it) read in the same round trip: what a request
    /// authenticated by a key and naming `X-Client-Id` needs. `None` when no key has this
    /// hash; the client ID is `None` when it does not exist.
    async fn key_with_client(
        &self,
        key_hash: &str,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError>;

    /// The key with this id, active or not, together with the client ID `client_id` read in
    /// the same round trip: what a request authenticated by an access token needs (the token
    /// names the key that obtained it, so revoking the key ends the token). `None` when no key
    /// has this id; the client ID is `None` when it does not exist.
    async fn key_by_id_with_client(
        &self,
        key_id: &KeyId,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError>;

    /// Stores a key unless its owner already holds `max_active` keys active at `now`, in which
    /// case nothing is stored and `false` comes back. Concurrent calls never exceed the limit.
    async fn insert_key(
        &self,
        key: &ApiKey,
        max_active: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Every key of an owner, revoked ones included, newest first.
    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes one key of an owner at `at` (a no-op when it is already revoked); the key
    /// as stored afterwards, or `None` when the owner has no such key.
    async fn revoke_key(
        &self,
        owner: &KeyOwner,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKey>, StoreError>;

    /// Records a successful authentication.
    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Client IDs. Each write stores the client ID and its event in one transaction.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Stores a new client ID and its `client_id.created` event.
    async fn insert_client(&self, client: &Client, event: &Event) -> Result<(), StoreError>;

    /// One client ID, revoked or not.
    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;

    /// One client ID, revoked or not, with the `expires_at` of the approved claim that
    /// created it (`None` for a client ID no claim created, or an approval without an end),
    /// read in one round trip: what an agent's signed request needs.
    async fn client_with_approval_expiry(
        &self,
        id: &ClientId,
    ) -> Result<Option<(Client, Option<DateTime<Utc>>)>, StoreError>;

    /// The client IDs in `scope`, optionally of one status, newest first.
    async fn list_clients(
        &self,
        scope: &ClientScope,
        status: Option<ClientStatus>,
        page: &PageRequest,
    ) -> Result<Page<Client>, StoreError>;

    /// Saves a changed client ID (`permissions`, `status`, `version`, `updated_at`) and its
    /// event, provided its stored version is still `expected_version`; `false`, with nothing
    /// written, when another change came first.
    async fn update_client(
        &self,
        client: &Client,
        expected_version: u64,
        event: &Event,
    ) -> Result<bool, StoreError>;
}

/// Filters of a payment-request list, on top of the caller's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this destination.
    pub destination_id: Option<DestinationId>,
    /// Only this customer.
    pub customer_id: Option<String>,
}

impl RequestFilter {
    /// Whether `request` passes the filter (the Rust twin of the store's SQL).
    pub fn matches(&self, request: &PaymentRequest) -> bool {
        self.direction
            .is_none_or(|direction| direction == request.direction)
            && self.status.is_none_or(|status| status == request.status)
            && self
                .destination_id
                .as_ref()
                .is_none_or(|id| id == &request.destination_id)
            && self
                .customer_id
                .as_ref()
                .is_none_or(|id| Some(id) == request.customer_id.as_ref())
    }
}

/// Payment requests, their payments and payment links.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new request and its `payment_request.created` event.
    async fn insert_request(
        &self,
        request: &PaymentRequest,
        event: &Event,
    ) -> Result<(), StoreError>;

    /// One request.
    async fn request(&self, id: &RequestId) -> Result<Option<PaymentRequest>, StoreError>;

    /// The requests in `scope` that pass `filter`, newest first.
    async fn list_requests(
        &self,
        scope: &RequestScope,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<PaymentRequest>, StoreError>;

    /// Saves a changed request (`amount_paid`, `status`, `version`, `updated_at`), the payment
    /// that changed it if any, and its event, provided its stored version is still
    /// `expected_version`; `false`, with nothing written, when another change came first.
    async fn update_request(
        &self,
        request: &PaymentRequest,
        expected_version: u64,
        payment: Option<&Payment>,
        event: &Event,
    ) -> Result<bool, StoreError>;

    /// Pending (`open`, `partially_paid`) requests whose `expires_at` is at or before `now`,
    /// soonest first, at most `limit`.
    async fn requests_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRequest>, StoreError>;

    /// The payments of a request, oldest first.
    async fn payments_of(&self, request_id: &RequestId) -> Result<Vec<Payment>, StoreError>;

    /// Stores a payment link.
    async fn insert_payment_link(&self, link: &PaymentLink) -> Result<(), StoreError>;

    /// The payment link whose token has this keyed hash.
    async fn payment_link_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<PaymentLink>, StoreError>;
}

/// The outbox of events.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Every event, newest first.
    async fn events(&self, page: &PageRequest) -> Result<Page<Event>, StoreError>;

    /// The events in `scope` (the SQL form of `can_see_event`) passing `filter`, newest first.
    async fn list_events(
        &self,
        scope: &EventScope,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>, StoreError>;

    /// One event.
    async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError>;
}

/// A pending attempt handed to a worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The attempt.
    pub delivery: Delivery,
    /// Its event.
    pub event: Event,
    /// Its endpoint, as stored now.
    pub endpoint: WebhookEndpoint,
}

/// An event's first attempts, as the fan-out decided them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout {
    /// The event.
    pub event_id: EventId,
    /// One first attempt per endpoint that receives it (none when nobody does).
    pub deliveries: Vec<Delivery>,
}

/// An attempt's outcome, and the attempt that follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAttempt {
    /// The attempt, with its final status and the receiver's answer.
    pub attempt: Delivery,
    /// The retry, when there is one.
    pub next: Option<Delivery>,
}

/// Webhook endpoints and deliveries, claimed by any number of workers.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint.
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;

    /// One endpoint.
    async fn endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;

    /// The endpoints of an owner, newest first; with `within`, only those whose scope fits
    /// inside it ([`crate::policy::endpoint_scope_fits`]: a recorded scope that is a subset).
    async fn endpoints_of(
        &self,
        owner: &EndpointOwner,
        within: Option<&PermissionSet>,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError>;

    /// The endpoints of an organization's owners (platform and destinations), newest first.
    async fn endpoints_of_organization(
        &self,
        organization_id: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError>;

    /// Saves a changed endpoint (url, event types, description, enabled, secrets, updated_at).
    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;

    /// Deletes an endpoint and its deliveries; `false` when there was none.
    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError>;

    /// Enabled endpoints that may receive `event`: created at or before it, and owned in its
    /// organization (platform, destinations, clients) or by an orchestrator named in its
    /// audience or holding a client ID on its destination — anywhere in its organization for
    /// events without a destination (`customer.*`). Over-inclusion is fine: the domain filters
    /// with `can_see_event`.
    async fn candidate_endpoints(&self, event: &Event) -> Result<Vec<WebhookEndpoint>, StoreError>;

    /// Claims up to `limit` events not yet fanned out, oldest first, for `lease`: a worker that
    /// dies leaves them to be claimed again once the lease ends.
    async fn claim_events_for_fanout(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Event>, StoreError>;

    /// Stores the first attempts of a batch of events and marks those events fanned out, in
    /// one transaction. Only the first worker to finish an event fans it out: an event already
    /// fanned out is left alone and its attempts here are not stored. The stored attempts are
    /// leased to the caller for `lease` from `now`: it sends them itself, without claiming
    /// them, and other workers take them only once the lease ends. Returns the events this
    /// call fanned out.
    async fn record_fanout(
        &self,
        fanouts: &[Fanout],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<EventId>, StoreError>;

    /// Claims up to `limit` pending attempts due at `now`, soonest first, for `lease`
    /// (`FOR UPDATE SKIP LOCKED` on PostgreSQL: each attempt goes to exactly one worker).
    async fn claim_due_deliveries(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records attempts' outcomes and the next attempt of each, if any, in one transaction.
    /// An attempt gone with its endpoint (deleted meanwhile) gets no successor.
    async fn record_attempts(&self, recorded: &[RecordedAttempt]) -> Result<(), StoreError>;

    /// Stores a new pending attempt (a manual retry).
    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Stores an event that goes to one endpoint (`webhook.test`) with its first attempt,
    /// already fanned out.
    async fn insert_direct_event(
        &self,
        event: &Event,
        delivery: &Delivery,
    ) -> Result<(), StoreError>;

    /// One attempt.
    async fn delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// An endpoint's attempts, newest first.
    async fn deliveries_of(
        &self,
        endpoint_id: &EndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError>;

    /// Waits until new events or attempts may be ready, at most `timeout`: woken by
    /// `LISTEN/NOTIFY` on PostgreSQL (any replica's writes), by this process's writes on
    /// SQLite.
    async fn wait_for_work(&self, timeout: std::time::Duration);
}

/// The customer pool of each organization. Each write stores its event in the same
/// transaction.
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// Stores a new customer and its event; `Duplicate` when the organization already has a
    /// customer with the same email (compared without regard to case).
    async fn insert_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError>;

    /// One customer.
    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError>;

    /// The organization's customer with this email (compared without regard to case).
    async fn customer_by_email(
        &self,
        organization_id: &OrganizationId,
        email: &Email,
    ) -> Result<Option<Customer>, StoreError>;

    /// The organization's customers, optionally only the one with `email`, newest first.
    async fn list_customers(
        &self,
        organization_id: &OrganizationId,
        email: Option<&Email>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, StoreError>;

    /// Saves a changed customer (`email`, `name`, `metadata`, `updated_at`) and its event;
    /// `Duplicate` when the new email is taken in the organization.
    async fn update_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError>;

    /// Deletes a customer and stores its event; `false` when there was none.
    async fn delete_customer(&self, id: &CustomerId, event: &Event) -> Result<bool, StoreError>;
}

/// What submitting a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSubmission {
    /// The claim and its event were stored.
    Created,
    /// The orchestrator used this body nonce before; nothing was stored.
    NonceReused,
    /// A pending or approved claim for the same destination, orchestrator and key exists;
    /// nothing but the nonce was stored.
    Existing(Box<Claim>),
    /// The agent id has a pending or approved claim with another key; nothing was stored.
    AgentIdTaken,
}

/// What approving a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimApproval {
    /// Approved; the destination now has this many approved agents.
    Approved {
        /// Approved claims of the destination, this one included.
        approved_agents: u32,
    },
    /// The destination already has `max_agents` approved agents; nothing was written.
    Full {
        /// Approved claims of the destination.
        approved_agents: u32,
    },
    /// The claim changed since it was read; nothing was written.
    Stale,
}

/// Claims and the nonces of agent signatures.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// In one transaction: records the orchestrator's body `nonce` (once ever), then stores
    /// `claim` and its `claim.submitted` event unless a live claim with its key or agent id
    /// exists on the same destination and orchestrator.
    async fn submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError>;

    /// One claim.
    async fn claim(&self, id: &ClaimId) -> Result<Option<Claim>, StoreError>;

    /// The claims in `scope` (the same scope as client IDs), optionally of one status,
    /// newest first.
    async fn list_claims(
        &self,
        scope: &ClientScope,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, StoreError>;

    /// In one transaction: unless the destination already has `max_agents` approved claims,
    /// saves the approved `claim` (provided its stored version is `expected_version`), stores
    /// the agent's `client`, the `events` and the claim's ledger record.
    async fn approve_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: &Client,
        max_agents: u32,
        events: &[Event],
    ) -> Result<ClaimApproval, StoreError>;

    /// Saves a changed claim (`status`, `ledger_status`, `version`, `updated_at`) with its
    /// events and its ledger record if its state has one, and the agent's changed client ID
    /// if given (checked against its expected version), provided the stored claim is still at
    /// `expected_version`; `false`, with nothing written, when another change came first.
    async fn update_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: Option<(&Client, u64)>,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Pending claims past their `pending_expires_at` and approved ones past their
    /// `expires_at` at `now`, at most `limit` of each.
    async fn claims_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Records that `key` used the signature `nonce`; `false` when it already had.
    async fn record_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets signature nonces recorded before `before` (signatures that old are refused
    /// anyway); returns how many.
    async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The tamper-evident ledger: per-organization SHA-256 hash chains of approvals and
/// revocations. The database adapter keeps the chain; an external anchor (a blockchain, a
/// transparency log) can be added by another implementation that also publishes each head.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Appends up to `limit` queued records to their organizations' chains, oldest first,
    /// marks their claims `recorded`, and returns the new entries. Concurrent callers never
    /// fork a chain.
    async fn append_queued(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError>;

    /// An organization's entries (only one destination's when given), newest first;
    /// `page.starting_after` is a `seq`.
    async fn ledger_entries(
        &self,
        organization_id: &OrganizationId,
        destination_id: Option<&DestinationId>,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError>;

    /// Up to `limit` entries of an organization's chain with `seq > after`, oldest first.
    async fn ledger_chain(
        &self,
        organization_id: &OrganizationId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
}

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

/// Why a webhook target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetRefused(pub String);

/// Checks webhook targets against the server's network policy (scheme, private addresses
/// after name resolution); implemented by the delivery adapter.
#[async_trait]
pub trait TargetGuard: Send + Sync {
    /// `Ok` when `url` may receive webhooks.
    async fn check(&self, url: &str) -> Result<(), TargetRefused>;
}

/// Liveness of the store.
#[async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the database answers now.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Every port at once: what the server hands to the use cases.
pub trait Store:
    OrganizationStore
    + OrchestratorStore
    + DestinationStore
    + KeyStore
    + ClientStore
    + ClaimStore
    + Ledger
    + RequestStore
    + EventStore
    + CustomerStore
    + WebhookStore
    + IdempotencyStore
    + Health
    + crate::operations::DeliveryQueueStore
{
}

impl<T> Store for T where
    T: OrganizationStore
        + OrchestratorStore
        + DestinationStore
        + KeyStore
        + ClientStore
        + ClaimStore
        + Ledger
        + RequestStore
        + EventStore
        + CustomerStore
        + WebhookStore
        + IdempotencyStore
        + Health
        + crate::operations::DeliveryQueueStore
{
}
