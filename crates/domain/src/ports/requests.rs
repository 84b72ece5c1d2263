//! Payment requests, their payments and links, and the outbox of events.

use super::*;

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
