//! Payment requests, payments and payment links.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;

use super::clients::{ActingFor, MAX_ATTEMPTS, acting_for};
use super::{InvalidField, Mandate, ReadError, principal_id};
use crate::events::{Audience, Event, EventType};
use crate::ids::{CustomerId, PaymentId, PaymentLinkId, RequestId};
use crate::model::Destination;
use crate::payments::{
    Direction, Payment, PaymentLink, PaymentRefused, PaymentRequest, RequestStatus,
};
use crate::policy::{Action, Decision, Resource, authorize, request_scope};
use crate::ports::EventFilter;
use crate::ports::{Page, PageRequest, RequestFilter, StoreError};
use crate::principal::Principal;
use crate::values::{Amount, Currency, Permission, Total};

/// Input of [`Mandate::create_request`]; validated there.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// A decimal string.
    pub amount: String,
    /// A currency code.
    pub currency: String,
    /// ≤ 128 characters.
    pub reference: Option<String>,
    /// ≤ 1000 characters.
    pub description: Option<String>,
    /// When payment is due.
    pub due_at: Option<DateTime<Utc>>,
    /// When it expires; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// ≤ 20 pairs; keys ≤ 40, values ≤ 500 characters.
    pub metadata: Option<BTreeMap<String, String>>,
    /// A customer of the organization's pool.
    pub customer_id: Option<String>,
}

/// Errors of [`Mandate::create_request`].
#[derive(Debug, thiserror::Error)]
pub enum CreateRequestError {
    /// A platform key must name the destination with `X-Destination-Id`.
    #[error("X-Destination-Id is required: name the destination this request belongs to")]
    DestinationRequired,
    /// The caller may not create this request.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The client ID lacks the permission to create a request of this direction.
    #[error("this client ID lacks the {0} permission")]
    MissingPermission(Permission),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of acting on an existing request: cancelling, paying, linking.
#[derive(Debug, thiserror::Error)]
pub enum RequestActionError {
    /// No such request, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees the request but may not do this.
    #[error("this credential may not do this to this request")]
    Forbidden,
    /// The caller (a client ID) sees the request, and would need this permission.
    #[error("this client ID lacks the {0} permission")]
    MissingPermission(Permission),
    /// The request's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of opening a payment link.
#[derive(Debug, thiserror::Error)]
pub enum PaymentPageError {
    /// No link has this token.
    #[error("not found")]
    NotFound,
    /// The link has expired.
    #[error("this payment link has expired")]
    Gone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a payer sees behind a payment link.
#[derive(Debug, Clone)]
pub struct PaymentPage {
    /// The request, current.
    pub request: PaymentRequest,
    /// Its destination.
    pub destination: Destination,
    /// The link.
    pub link: PaymentLink,
}

/// One request with what happened to it: for the owner's page of a request.
#[derive(Debug, Clone)]
pub struct RequestHistory {
    /// The request, current.
    pub request: PaymentRequest,
    /// Its payments, oldest first.
    pub payments: Vec<Payment>,
    /// Its events that the caller's feed shows, newest first.
    pub events: Vec<Event>,
    /// Whether `events` is every one: `false` when the feed held more events newer than the
    /// request than one look reads ([`HISTORY_EVENTS_SCANNED`]).
    pub events_complete: bool,
}

/// How many of the caller's newest request events one history reads at most: the feed is
/// not indexed by request, so it is read back to the request's creation, within this bound.
pub const HISTORY_EVENTS_SCANNED: usize = 1000;

/// Why a payment that would overflow `amount_paid` is refused.
const TOTAL_TOO_LARGE: &str = "would bring amount_paid past 340282366920938463463.374607431768211455, the largest total a request holds";

fn optional_text(
    field: &'static str,
    value: Option<String>,
    max_chars: usize,
    reason: &'static str,
) -> Result<Option<String>, InvalidField> {
    match value {
        Some(text) if text.chars().count() > max_chars => Err(InvalidField { field, reason }),
        Some(text) => super::safe_text(field, &text).map(|()| Some(text)),
        None => Ok(None),
    }
}

pub(super) fn check_metadata(
    metadata: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, InvalidField> {
    let metadata = metadata.unwrap_or_default();
    let invalid = |reason| InvalidField {
        field: "metadata",
        reason,
    };
    if metadata.len() > 20 {
        return Err(invalid("at most 20 keys"));
    }
    for (key, value) in &metadata {
        if key.is_empty() || key.chars().count() > 40 {
            return Err(invalid("keys must be 1-40 characters"));
        }
        if value.chars().count() > 500 {
            return Err(invalid("values must be at most 500 characters"));
        }
        super::safe_text("metadata", key)?;
        super::safe_text("metadata", value)?;
    }
    Ok(metadata)
}

/// Who a request's events concern.
pub fn request_audience(request: &PaymentRequest) -> Audience {
    Audience {
        organization_id: Some(request.organization_id.clone()),
        destination_id: Some(request.destination_id.clone()),
        orchestrator_id: None,
        client_id: request.client_id.clone(),
        direction: Some(request.direction),
        endpoint_id: None,
    }
}

fn decide(decision: Decision) -> Result<(), RequestActionError> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Forbidden => Err(RequestActionError::Forbidden),
        Decision::Lacks(permission) => Err(RequestActionError::MissingPermission(permission)),
        Decision::NotFound => Err(RequestActionError::NotFound),
    }
}

impl Mandate {
    /// Creates a payment request for the caller's destination.
    pub async fn create_request(
        &self,
        principal: &Principal,
        input: NewRequest,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, CreateRequestError> {
        let destination_id = match acting_for(principal) {
            ActingFor::Destination(id) => id,
            ActingFor::Unnamed => return Err(CreateRequestError::DestinationRequired),
            ActingFor::Nobody => {
                return Err(CreateRequestError::Forbidden(
                    "this credential may not create payment requests",
                ));
            }
        };
        let direction = Direction::parse(&input.direction).ok_or(InvalidField {
            field: "direction",
            reason: "must be incoming or outgoing",
        })?;
        let destination =
            self.store
                .destination(destination_id)
                .await?
                .ok_or(CreateRequestError::Forbidden(
                    "the destination no longer exists",
                ))?;
        let resource = Resource::Destination {
            id: &destination.id,
            organization_id: &destination.organization_id,
        };
        match authorize(principal, Action::CreateRequest(direction), resource) {
            Decision::Allow => {}
            Decision::Lacks(permission) => {
                return Err(CreateRequestError::MissingPermission(permission));
            }
            Decision::Forbidden | Decision::NotFound => {
                return Err(CreateRequestError::Forbidden(
                    "this credential may not create payment requests for this destination",
                ));
            }
        }
        let amount = Amount::parse(&input.amount).map_err(|invalid| InvalidField {
            field: "amount",
            reason: invalid.0,
        })?;
        let currency = Currency::parse(&input.currency).map_err(|invalid| InvalidField {
            field: "currency",
            reason: invalid.0,
        })?;
        let customer_id = match input.customer_id {
            None => None,
            Some(text) => {
                let unknown = InvalidField {
                    field: "customer_id",
                    reason: "no customer with this id in the organization",
                };
                let id = CustomerId::parse(&text).map_err(|_| unknown.clone())?;
                match self.store.customer(&id).await? {
                    Some(customer) if customer.organization_id == destination.organization_id => {
                        Some(id.to_string())
                    }
                    _ => return Err(unknown.into()),
                }
            }
        };
        if input.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(InvalidField {
                field: "expires_at",
                reason: "must be in the future",
            }
            .into());
        }
        let request = PaymentRequest {
            id: RequestId::generate(),
            organization_id: destination.organization_id,
            destination_id: destination.id,
            direction,
            amount,
            currency,
            amount_paid: Total::zero_like(amount),
            status: RequestStatus::Open,
            customer_id,
            reference: optional_text(
                "reference",
                input.reference,
                128,
                "must be at most 128 characters",
            )?,
            description: optional_text(
                "description",
                input.description,
                1000,
                "must be at most 1000 characters",
            )?,
            due_at: input.due_at,
            expires_at: input.expires_at,
            metadata: check_metadata(input.metadata)?,
            created_by: principal_id(principal),
            client_id: match principal {
                Principal::Client(client) => Some(client.client_id.clone()),
                _ => None,
            },
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = Event::new(
            EventType::PaymentRequestCreated,
            request_audience(&request),
            &request,
            now,
        );
        self.store.insert_request(&request, &event).await?;
        Ok(request)
    }

    /// Loads a request, authorizes `action` for `caller` (`None`: the holder of a payment
    /// link), and applies a pending expiry first (persisting it with its event), so that every
    /// read shows the current status.
    async fn current_request(
        &self,
        caller: Option<(&Principal, Action)>,
        id: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, RequestActionError> {
        let found = self.store.request(id).await?;
        self.bring_current(caller, found, now).await
    }

    /// [`Self::current_request`] for a request already read (`found`; `None`: there is none).
    /// A concurrent change to it is read again.
    async fn bring_current(
        &self,
        caller: Option<(&Principal, Action)>,
        found: Option<PaymentRequest>,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, RequestActionError> {
        let mut found = found;
        for _ in 0..MAX_ATTEMPTS {
            let mut request = found.take().ok_or(RequestActionError::NotFound)?;
            if let Some((principal, action)) = caller {
                decide(authorize(principal, action, Resource::Request(&request)))?;
            }
            let expected_version = request.version;
            let Some(event_type) = request.expire_if_due(now) else {
                return Ok(request);
            };
            let event = Event::new(event_type, request_audience(&request), &request, now);
            if self
                .store
                .update_request(&request, expected_version, None, &event)
                .await?
            {
                return Ok(request);
            }
            found = self.store.request(&request.id).await?;
        }
        Err(StoreError::Other("the request kept changing concurrently".into()).into())
    }

    /// One request the caller may read.
    pub async fn request(
        &self,
        principal: &Principal,
        id: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, ReadError> {
        let found = self.store.request(id).await?;
        self.request_read(principal, found, now).await
    }

    /// The request `found`, read together with the caller's credential (`None`: no such
    /// request), if the caller may read it — decided, and brought current, as
    /// [`Self::request`] does.
    pub async fn request_read(
        &self,
        principal: &Principal,
        found: Option<PaymentRequest>,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, ReadError> {
        self.bring_current(Some((principal, Action::ReadRequest)), found, now)
            .await
            .map_err(|error| match error {
                RequestActionError::Store(error) => ReadError::Store(error),
                RequestActionError::Forbidden | RequestActionError::MissingPermission(_) => {
                    ReadError::Forbidden
                }
                _ => ReadError::NotFound,
            })
    }

    /// One request the caller may read, its payments, and its events as the caller's feed
    /// shows them (the same scope, so never an event the caller's webhooks would not get).
    pub async fn request_history(
        &self,
        principal: &Principal,
        id: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<RequestHistory, ReadError> {
        let request = self.request(principal, id, now).await?;
        let payments = self.store.payments_of(&request.id).await?;
        let filter = EventFilter {
            types: Some(
                EventType::ALL
                    .into_iter()
                    .filter(|event_type| event_type.family() == "payment_request")
                    .collect(),
            ),
        };
        let mut page = PageRequest {
            limit: PageRequest::MAX_LIMIT,
            starting_after: None,
        };
        let mut events = Vec::new();
        let mut scanned = 0;
        loop {
            let listed = self
                .list_events(principal, &filter, &page)
                .await
                .map_err(|error| match error {
                    super::WebhookError::Store(error) => ReadError::Store(error),
                    _ => ReadError::Forbidden,
                })?;
            scanned += listed.data.len();
            // The request's first event is its creation: nothing of it is older.
            let reached_creation = listed
                .data
                .last()
                .is_none_or(|oldest| oldest.created_at < request.created_at);
            page.starting_after = listed.data.last().map(|event| event.id.to_string());
            events.extend(
                listed
                    .data
                    .into_iter()
                    .filter(|event| event.object["id"] == request.id.as_str()),
            );
            let found_creation = events
                .last()
                .is_some_and(|event| event.event_type == EventType::PaymentRequestCreated);
            let complete = found_creation || reached_creation || !listed.has_more;
            if complete || scanned >= HISTORY_EVENTS_SCANNED {
                return Ok(RequestHistory {
                    request,
                    payments,
                    events,
                    events_complete: complete,
                });
            }
        }
    }

    /// The requests the caller may read that pass `filter`, newest first. Requests past
    /// their expiry are expired on the way (the background job does the same for the rest).
    pub async fn list_requests(
        &self,
        principal: &Principal,
        filter: &RequestFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<PaymentRequest>, ReadError> {
        let mut listed = self
            .store
            .list_requests(&request_scope(principal), filter, page)
            .await?;
        for request in listed.data.iter_mut() {
            if request
                .expires_at
                .is_some_and(|expires_at| expires_at <= now)
                && request.status.is_pending()
            {
                *request = self.request(principal, &request.id, now).await?;
            }
        }
        Ok(listed)
    }

    /// Applies a change to a request, retrying on concurrent updates.
    async fn change_request(
        &self,
        principal: &Principal,
        id: &RequestId,
        action: Action,
        now: DateTime<Utc>,
        mut change: impl FnMut(
            &mut PaymentRequest,
        ) -> Result<(EventType, Option<Payment>), RequestActionError>,
    ) -> Result<(PaymentRequest, Option<Payment>), RequestActionError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut request = self
                .current_request(Some((principal, action)), id, now)
                .await?;
            let expected_version = request.version;
            let (event_type, payment) = change(&mut request)?;
            let event = Event::new(event_type, request_audience(&request), &request, now);
            if self
                .store
                .update_request(&request, expected_version, payment.as_ref(), &event)
                .await?
            {
                return Ok((request, payment));
            }
        }
        Err(StoreError::Other("the request kept changing concurrently".into()).into())
    }

    /// Cancels an open or partially paid request (only its creator, among clients).
    pub async fn cancel_request(
        &self,
        principal: &Principal,
        id: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<PaymentRequest, RequestActionError> {
        let (request, _) = self
            .change_request(principal, id, Action::CancelRequest, now, |request| {
                let event = request
                    .cancel(now)
                    .map_err(|refused| RequestActionError::Conflict(refused.to_string()))?;
                Ok((event, None))
            })
            .await?;
        Ok(request)
    }

    /// Records a reported payment: partial, full or over.
    pub async fn report_payment(
        &self,
        principal: &Principal,
        id: &RequestId,
        amount: &str,
        reference: &str,
        paid_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Payment, PaymentRequest), RequestActionError> {
        let amount = Amount::parse(amount).map_err(|invalid| InvalidField {
            field: "amount",
            reason: invalid.0,
        })?;
        let reference = super::text_field("reference", reference, 256, "must be 1-256 characters")?;
        let created_by = principal_id(principal);
        let (request, payment) = self
            .change_request(principal, id, Action::ReportPayment, now, |request| {
                let event =
                    request
                        .record_payment(amount, now)
                        .map_err(|refused| match refused {
                            // The request could take no payment past it, whatever the state.
                            PaymentRefused::Overflow => RequestActionError::Invalid(InvalidField {
                                field: "amount",
                                reason: TOTAL_TOO_LARGE,
                            }),
                            PaymentRefused::Closed(_) => {
                                RequestActionError::Conflict(refused.to_string())
                            }
                        })?;
                let payment = Payment {
                    id: PaymentId::generate(),
                    request_id: request.id.clone(),
                    organization_id: request.organization_id.clone(),
                    destination_id: request.destination_id.clone(),
                    amount,
                    reference: reference.clone(),
                    paid_at: paid_at.unwrap_or(now),
                    created_by: created_by.clone(),
                    created_at: now,
                };
                Ok((event, Some(payment)))
            })
            .await?;
        let payment =
            payment.ok_or_else(|| StoreError::Other("a payment was not recorded".into()))?;
        Ok((payment, request))
    }

    /// Creates a public payment link; the token is returned once and only its hash is kept.
    pub async fn create_payment_link(
        &self,
        principal: &Principal,
        id: &RequestId,
        expires_in_seconds: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(PaymentLink, String), RequestActionError> {
        let lifetime = expires_in_seconds.unwrap_or(PaymentLink::DEFAULT_LIFETIME_SECONDS);
        if !(1..=PaymentLink::MAX_LIFETIME_SECONDS).contains(&lifetime) {
            return Err(InvalidField {
                field: "expires_in_seconds",
                reason: "must be between 1 and 2592000",
            }
            .into());
        }
        let request = self
            .current_request(Some((principal, Action::CreatePaymentLink)), id, now)
            .await?;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let token = URL_SAFE_NO_PAD.encode(secret);
        let link = PaymentLink {
            id: PaymentLinkId::generate(),
            request_id: request.id,
            organization_id: request.organization_id,
            destination_id: request.destination_id,
            token_hash: self.hasher.hash(&token),
            expires_at: now + Duration::seconds(lifetime),
            created_at: now,
        };
        self.store.insert_payment_link(&link).await?;
        Ok((link, token))
    }

    /// What the public page of a payment link shows.
    pub async fn payment_page(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<PaymentPage, PaymentPageError> {
        let link = self
            .store
            .payment_link_by_token_hash(&self.hasher.hash(token))
            .await?
            .ok_or(PaymentPageError::NotFound)?;
        if link.expires_at <= now {
            return Err(PaymentPageError::Gone);
        }
        // Holding the link's token is the authorization to see its request.
        let request = self
            .current_request(None, &link.request_id, now)
            .await
            .map_err(|error| match error {
                RequestActionError::Store(error) => PaymentPageError::Store(error),
                _ => PaymentPageError::NotFound,
            })?;
        let destination = self
            .store
            .destination(&link.destination_id)
            .await?
            .ok_or(PaymentPageError::NotFound)?;
        Ok(PaymentPage {
            request,
            destination,
            link,
        })
    }

    /// Expires up to `limit` requests whose `expires_at` has passed; returns how many.
    pub async fn expire_due_requests(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let due = self.store.requests_due_for_expiry(now, limit).await?;
        let mut expired = 0;
        for mut request in due {
            let expected_version = request.version;
            if let Some(event_type) = request.expire_if_due(now) {
                let event = Event::new(event_type, request_audience(&request), &request, now);
                // A concurrent change wins; the next run looks again.
                if self
                    .store
                    .update_request(&request, expected_version, None, &event)
                    .await?
                {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }
}
