//! Events: written in the same transaction as the change they describe (the outbox), and
//! read through the same authorization rule as the API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{ClientId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId};
use crate::payments::Direction;

/// Every event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `payment_request.created`
    PaymentRequestCreated,
    /// `payment_request.partially_paid`
    PaymentRequestPartiallyPaid,
    /// `payment_request.paid`
    PaymentRequestPaid,
    /// `payment_request.cancelled`
    PaymentRequestCancelled,
    /// `payment_request.expired`
    PaymentRequestExpired,
    /// `client_id.created`
    ClientIdCreated,
    /// `client_id.permissions_changed`
    ClientIdPermissionsChanged,
    /// `client_id.revoked`
    ClientIdRevoked,
    /// `customer.created`
    CustomerCreated,
    /// `customer.updated`
    CustomerUpdated,
    /// `customer.deleted`
    CustomerDeleted,
    /// `claim.submitted`
    ClaimSubmitted,
    /// `claim.approved`
    ClaimApproved,
    /// `claim.rejected`
    ClaimRejected,
    /// `claim.revoked`
    ClaimRevoked,
    /// `claim.expired`
    ClaimExpired,
    /// `webhook.test`: only from the test endpoint, only to that endpoint.
    WebhookTest,
    /// `webhook_endpoint.disabled`: to the endpoint's owner.
    WebhookEndpointDisabled,
}

impl EventType {
    /// Every type, in a stable order.
    pub const ALL: [EventType; 18] = [
        EventType::PaymentRequestCreated,
        EventType::PaymentRequestPartiallyPaid,
        EventType::PaymentRequestPaid,
        EventType::PaymentRequestCancelled,
        EventType::PaymentRequestExpired,
        EventType::ClientIdCreated,
        EventType::ClientIdPermissionsChanged,
        EventType::ClientIdRevoked,
        EventType::CustomerCreated,
        EventType::CustomerUpdated,
        EventType::CustomerDeleted,
        EventType::ClaimSubmitted,
        EventType::ClaimApproved,
        EventType::ClaimRejected,
        EventType::ClaimRevoked,
        EventType::ClaimExpired,
        EventType::WebhookTest,
        EventType::WebhookEndpointDisabled,
    ];

    /// The type's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentRequestCreated => "payment_request.created",
            EventType::PaymentRequestPartiallyPaid => "payment_request.partially_paid",
            EventType::PaymentRequestPaid => "payment_request.paid",
            EventType::PaymentRequestCancelled => "payment_request.cancelled",
            EventType::PaymentRequestExpired => "payment_request.expired",
            EventType::ClientIdCreated => "client_id.created",
            EventType::ClientIdPermissionsChanged => "client_id.permissions_changed",
            EventType::ClientIdRevoked => "client_id.revoked",
            EventType::CustomerCreated => "customer.created",
            EventType::CustomerUpdated => "customer.updated",
            EventType::CustomerDeleted => "customer.deleted",
            EventType::ClaimSubmitted => "claim.submitted",
            EventType::ClaimApproved => "claim.approved",
            EventType::ClaimRejected => "claim.rejected",
            EventType::ClaimRevoked => "claim.revoked",
            EventType::ClaimExpired => "claim.expired",
            EventType::WebhookTest => "webhook.test",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    /// The family: the part before the dot (`payment_request`, `client_id`, …).
    pub fn family(self) -> &'static str {
        let name = self.as_str();
        name.split_once('.').map_or(name, |(family, _)| family)
    }

    /// Parses the API name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == value)
    }
}

/// Who an event is about, in the terms `authorize` decides on; stored beside the event so
/// that the feed and the webhooks can filter on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience {
    /// The organization.
    pub organization_id: Option<OrganizationId>,
    /// The destination.
    pub destination_id: Option<DestinationId>,
    /// The orchestrator concerned (client-ID events).
    pub orchestrator_id: Option<OrchestratorId>,
    /// The client ID the subject was created through, or the client ID itself.
    pub client_id: Option<ClientId>,
    /// The direction of a payment request.
    pub direction: Option<Direction>,
    /// The one endpoint a `webhook.*` / `webhook_endpoint.*` event is for.
    pub endpoint_id: Option<EndpointId>,
}

/// One event: its type, who it concerns, and the object as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`, also the `webhook-id` of every delivery.
    pub id: EventId,
    /// What happened.
    pub event_type: EventType,
    /// Who may see it.
    pub audience: Audience,
    /// The object after the change, in its API shape (`data.object`).
    pub object: serde_json::Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// An event about `object`, serialized now.
    pub fn new(
        event_type: EventType,
        audience: Audience,
        object: &impl Serialize,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: EventId::generate(),
            event_type,
            audience,
            // Domain objects serialize to plain JSON maps; failure would be a programming error
            // in a Serialize impl, recorded as null rather than losing the event.
            object: serde_json::to_value(object).unwrap_or(serde_json::Value::Null),
            created_at: now,
        }
    }
}

/// The JSON of an event, identical in `GET /v1/events` and in webhook bodies:
/// `{"id","type","created_at","destination_id","data":{"object":{…}}}`.
#[derive(Debug, Serialize)]
pub struct EventBody<'a> {
    /// `evt_…`
    pub id: &'a EventId,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The destination it concerns, if any.
    pub destination_id: Option<&'a DestinationId>,
    /// The object.
    pub data: EventData<'a>,
}

/// `data` of an [`EventBody`].
#[derive(Debug, Serialize)]
pub struct EventData<'a> {
    /// The object after the change.
    pub object: &'a serde_json::Value,
}

impl Event {
    /// The event as the API and webhooks show it.
    pub fn body(&self) -> EventBody<'_> {
        EventBody {
            id: &self.id,
            event_type: self.event_type.as_str(),
            created_at: self.created_at,
            destination_id: self.audience.destination_id.as_ref(),
            data: EventData {
                object: &self.object,
            },
        }
    }
}
