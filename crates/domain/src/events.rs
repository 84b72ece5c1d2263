//! Events: written in the same transaction as the change they describe (the outbox), and
//! read through the same authorization rule as the API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{ClientId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId};
use crate::payments::Direction;
use crate::principal::PrincipalKind;

macro_rules! event_catalogue {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $object:ident, [$($kind:ident),+], $description:literal;
    )*) => {
        /// Every event type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType {
            $($(#[$doc])* $variant,)*
        }

        impl EventType {
            /// Every type, in a stable order: the catalogue's.
            pub const ALL: [EventType; [$(EventType::$variant),*].len()] =
                [$(EventType::$variant),*];

            /// The type's name in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            /// What happened, for people: the catalogue's description.
            pub fn description(self) -> &'static str {
                match self {
                    $(EventType::$variant => $description,)*
                }
            }

            /// The kind of object in the event's `data.object`.
            pub fn object(self) -> EventObject {
                match self {
                    $(EventType::$variant => EventObject::$object,)*
                }
            }

            /// The principal kinds whose webhook endpoints may subscribe to it (and whose
            /// feeds may show it; which events of the type each one sees is
            /// `webhooks::can_see_event`'s decision).
            pub fn subscribers(self) -> &'static [PrincipalKind] {
                match self {
                    $(EventType::$variant => &[$(PrincipalKind::$kind),+],)*
                }
            }
        }
    };
}

// The event catalogue: every type, the object it carries, who may subscribe, and what it
// means. The OpenAPI document's `webhooks`, `GET /v1/event-types`, the subscription rules of
// webhook endpoints and the table in docs/webhooks.md all come from this one list.
event_catalogue! {
    /// `payment_request.created`
    PaymentRequestCreated = "payment_request.created", PaymentRequest,
        [Client, Orchestrator, Platform, Destination],
        "A payment request was created.";
    /// `payment_request.partially_paid`
    PaymentRequestPartiallyPaid = "payment_request.partially_paid", PaymentRequest,
        [Client, Orchestrator, Platform, Destination],
        "A payment was reported that leaves the request's total short of its amount.";
    /// `payment_request.paid`
    PaymentRequestPaid = "payment_request.paid", PaymentRequest,
        [Client, Orchestrator, Platform, Destination],
        "A payment was reported that brings the total to the amount or past it (one event per \
         payment, also for payments after the first that paid it).";
    /// `payment_request.cancelled`
    PaymentRequestCancelled = "payment_request.cancelled", PaymentRequest,
        [Client, Orchestrator, Platform, Destination],
        "An open or partially paid request was cancelled.";
    /// `payment_request.expired`
    PaymentRequestExpired = "payment_request.expired", PaymentRequest,
        [Client, Orchestrator, Platform, Destination],
        "An open or partially paid request reached its `expires_at`.";
    /// `client_id.created`
    ClientIdCreated = "client_id.created", ClientId,
        [Orchestrator, Platform, Destination],
        "A client ID was issued to an orchestrator, or created for an agent by approving its \
         claim.";
    /// `client_id.permissions_changed`
    ClientIdPermissionsChanged = "client_id.permissions_changed", ClientId,
        [Orchestrator, Platform, Destination],
        "A permission was granted to a client ID or withdrawn from it.";
    /// `client_id.revoked`
    ClientIdRevoked = "client_id.revoked", ClientId,
        [Orchestrator, Platform, Destination],
        "A client ID was revoked, for good (directly, or with its agent's claim).";
    /// `customer.created`
    CustomerCreated = "customer.created", Customer,
        [Client, Orchestrator, Platform, Destination],
        "A customer was added to the organization's pool (clients need `customers:read`).";
    /// `customer.updated`
    CustomerUpdated = "customer.updated", Customer,
        [Client, Orchestrator, Platform, Destination],
        "A customer changed (clients need `customers:read`).";
    /// `customer.deleted`
    CustomerDeleted = "customer.deleted", Customer,
        [Client, Orchestrator, Platform, Destination],
        "A customer was deleted; `data.object` is the customer as it was (clients need \
         `customers:read`).";
    /// `claim.submitted`
    ClaimSubmitted = "claim.submitted", Claim,
        [Orchestrator, Platform, Destination],
        "An orchestrator submitted an agent's claim; the destination's owner decides.";
    /// `claim.approved`
    ClaimApproved = "claim.approved", Claim,
        [Orchestrator, Platform, Destination],
        "A claim was approved: the agent's client ID exists (`data.object.client_id`).";
    /// `claim.rejected`
    ClaimRejected = "claim.rejected", Claim,
        [Orchestrator, Platform, Destination],
        "A pending claim was rejected.";
    /// `claim.revoked`
    ClaimRevoked = "claim.revoked", Claim,
        [Orchestrator, Platform, Destination],
        "An approved claim was revoked; its agent's client ID is revoked with it.";
    /// `claim.expired`
    ClaimExpired = "claim.expired", Claim,
        [Orchestrator, Platform, Destination],
        "A pending claim passed its `pending_expires_at` undecided, or an approval reached its \
         `expires_at`.";
    /// `webhook.test`: only from the test endpoint, only to that endpoint.
    WebhookTest = "webhook.test", WebhookEndpoint,
        [Client, Orchestrator, Platform, Destination],
        "Sent by `POST /v1/webhook-endpoints/{id}/test`, to that endpoint only.";
    /// `webhook_endpoint.disabled`: to the endpoint's owner.
    WebhookEndpointDisabled = "webhook_endpoint.disabled", WebhookEndpoint,
        [Platform, Destination],
        "An endpoint was disabled after a 410 or days of failures; to its owner.";
}

/// The kind of API object an event carries in `data.object`, in its API shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventObject {
    /// A payment request (`object: "payment_request"`).
    PaymentRequest,
    /// A client ID (`object: "client_id"`).
    ClientId,
    /// A customer (`object: "customer"`).
    Customer,
    /// A claim (`object: "claim"`).
    Claim,
    /// A webhook endpoint, without its secret (`object: "webhook_endpoint"`).
    WebhookEndpoint,
}

impl EventObject {
    /// The `object` field of the carried object.
    pub fn as_str(self) -> &'static str {
        match self {
            EventObject::PaymentRequest => "payment_request",
            EventObject::ClientId => "client_id",
            EventObject::Customer => "customer",
            EventObject::Claim => "claim",
            EventObject::WebhookEndpoint => "webhook_endpoint",
        }
    }
}

impl EventType {
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
