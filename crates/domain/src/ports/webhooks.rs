//! Webhook endpoints, the fan-out and the delivery queue.

use super::*;

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
    /// (`FOR UPDATE SKIP LOCKED` on PostgreSQL: each attempt goes to exactly one worker),
    /// leaving no endpoint with more than `per_endpoint` attempts leased (in flight) at once,
    /// those leased before included, so that endpoints whose receivers hang cannot take every
    /// send. Endpoints are taken by their soonest due attempt; on PostgreSQL their rows are
    /// locked `FOR NO KEY UPDATE SKIP LOCKED` while they are counted, so that concurrent claims
    /// of any replica count one after the other (an endpoint another claim holds waits for the
    /// next round).
    async fn claim_due_deliveries_per_endpoint(
        &self,
        limit: u32,
        per_endpoint: u32,
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
