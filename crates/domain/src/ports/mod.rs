//! The ports the use cases call. Adapters (PostgreSQL, SQLite, an in-memory map, yours)
//! implement them; every write method is one transaction.

mod claims;
mod idempotency;
mod requests;
mod webhooks;

pub use claims::*;
pub use idempotency::*;
pub use requests::*;
use std::sync::Arc;
pub use webhooks::*;

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

/// How a credential names its key: an API key by its keyed hash, an access token by the id
/// of the key that obtained it (so revoking the key ends the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// The keyed hash of a presented API key.
    Hash(&'a str),
    /// The id of a key.
    Id(&'a KeyId),
}

/// A key with what [`KeyStore::key_read`] read alongside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRead {
    /// The key, active or not.
    pub key: ApiKey,
    /// The client ID asked for, if it exists.
    pub client: Option<Client>,
    /// The payment request asked for, if it exists.
    pub request: Option<PaymentRequest>,
}

/// API keys, stored as keyed hashes.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key with this keyed hash, active or not.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// The key `key` names, active or not, together with — read in the same statement — the
    /// client ID `client_id` (revoked or not, whoever holds it) and the payment request
    /// `request_id` (whoever owns it): what a request authenticated by a key or an access
    /// token needs, with the `X-Client-Id` it names and the request its route reads by id.
    /// `None` when no key matches; the client ID and the request are `None` when they are not
    /// asked for or do not exist. Whether the key may be used, whether the client ID is its
    /// orchestrator's and whether the request may be read is the caller's to decide.
    async fn key_read(
        &self,
        key: KeyRef<'_>,
        client_id: Option<&ClientId>,
        request_id: Option<&RequestId>,
    ) -> Result<Option<KeyRead>, StoreError>;

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
    + crate::sessions::ConsoleSessionStore
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
        + crate::sessions::ConsoleSessionStore
{
}
