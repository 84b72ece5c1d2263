//! Webhook endpoints, deliveries, and the one rule that decides which events a principal may
//! see — in `GET /v1/events` and through its endpoints alike.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::events::{Event, EventType};
use crate::ids::{
    ClientId, DeliveryId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId,
};
use crate::principal::{ClientPrincipal, Principal};
use crate::values::{InvalidValue, Permission, PermissionSet};

/// Whom an endpoint belongs to; a client's endpoints belong to its client ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointOwner {
    /// A client ID.
    Client {
        /// The client ID.
        client_id: ClientId,
    },
    /// An orchestrator.
    Orchestrator {
        /// The orchestrator.
        orchestrator_id: OrchestratorId,
    },
    /// A platform (the whole organization).
    Platform {
        /// The organization.
        organization_id: OrganizationId,
    },
    /// A destination's owner.
    Destination {
        /// The organization.
        organization_id: OrganizationId,
        /// The destination.
        destination_id: DestinationId,
    },
}

impl EndpointOwner {
    /// The owner a principal registers endpoints as. A platform acting for a destination
    /// registers them as that destination's owner.
    pub fn of(principal: &Principal) -> Option<EndpointOwner> {
        Some(match principal {
            Principal::Client(client) => EndpointOwner::Client {
                client_id: client.client_id.clone(),
            },
            Principal::Orchestrator {
                orchestrator_id, ..
            } => EndpointOwner::Orchestrator {
                orchestrator_id: orchestrator_id.clone(),
            },
            Principal::Platform {
                organization_id,
                acting_for: None,
                ..
            } => EndpointOwner::Platform {
                organization_id: organization_id.clone(),
            },
            Principal::Platform {
                organization_id,
                acting_for: Some(destination_id),
                ..
            }
            | Principal::Destination {
                organization_id,
                destination_id,
                ..
            } => EndpointOwner::Destination {
                organization_id: organization_id.clone(),
                destination_id: destination_id.clone(),
            },
            Principal::Admin => return None,
        })
    }

    /// Whether `principal` owns endpoints of this owner (a platform owns its destinations').
    pub fn is_owned_by(&self, principal: &Principal) -> bool {
        match (self, principal) {
            (EndpointOwner::Client { client_id }, Principal::Client(client)) => {
                client_id == &client.client_id
            }
            (
                EndpointOwner::Orchestrator { orchestrator_id },
                Principal::Orchestrator {
                    orchestrator_id: own,
                    ..
                },
            ) => orchestrator_id == own,
            (
                EndpointOwner::Platform { organization_id }
                | EndpointOwner::Destination {
                    organization_id, ..
                },
                Principal::Platform {
                    organization_id: own,
                    acting_for: None,
                    ..
                },
            ) => organization_id == own,
            (
                EndpointOwner::Destination { destination_id, .. },
                Principal::Platform {
                    acting_for: Some(own),
                    ..
                }
                | Principal::Destination {
                    destination_id: own,
                    ..
                },
            ) => destination_id == own,
            _ => false,
        }
    }
}

/// The event types an endpoint subscribes to: exact types, `family.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EventTypeFilter(Vec<String>);

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A pattern names no event type (HTTP 400).
    #[error("unknown event type {0:?}: use an exact type, family.* or *")]
    Unknown(String),
    /// A type this principal kind can never read (HTTP 403).
    #[error("this credential can never receive {0:?} events")]
    NeverReadable(String),
    /// An empty list.
    #[error("event_types must name at least one type")]
    Empty,
}

impl EventTypeFilter {
    /// Validates patterns for a principal of `kind`; `customer.*` for a client also needs
    /// `customers:read` (of a token, within its scope). `*` is always accepted and means what
    /// the endpoint's owner may read, within the registering credential's scope: deliveries
    /// are decided by [`can_see_event`], not by the filter.
    ///
    /// ```
    /// use mandate_domain::events::EventType;
    /// use mandate_domain::ids::{KeyId, OrchestratorId};
    /// use mandate_domain::principal::Principal;
    /// use mandate_domain::webhooks::{EventTypeFilter, FilterError};
    ///
    /// let orchestrator = Principal::Orchestrator {
    ///     orchestrator_id: OrchestratorId::generate(),
    ///     key_id: KeyId::generate(),
    /// };
    /// let filter = EventTypeFilter::parse(&["payment_request.*".into()], &orchestrator).unwrap();
    /// assert!(filter.matches(EventType::PaymentRequestPaid));
    /// assert!(!filter.matches(EventType::ClaimSubmitted));
    ///
    /// // Endpoint events go to platforms and destinations only.
    /// assert_eq!(
    ///     EventTypeFilter::parse(&["webhook_endpoint.*".into()], &orchestrator),
    ///     Err(FilterError::NeverReadable("webhook_endpoint.*".into()))
    /// );
    /// ```
    pub fn parse(patterns: &[String], principal: &Principal) -> Result<Self, FilterError> {
        if patterns.is_empty() {
            return Err(FilterError::Empty);
        }
        let kind = principal.kind();
        for pattern in patterns {
            // The types the pattern names; `family.*` is readable when any of its types is.
            let named: Vec<EventType> = if pattern == "*" {
                continue;
            } else if let Some(family) = pattern.strip_suffix(".*") {
                EventType::ALL
                    .into_iter()
                    .filter(|event_type| event_type.family() == family)
                    .collect()
            } else {
                EventType::parse(pattern).into_iter().collect()
            };
            let Some(first) = named.first() else {
                return Err(FilterError::Unknown(pattern.clone()));
            };
            let customers_barred = first.family() == "customer"
                && matches!(principal, Principal::Client(client) if !client.permissions.contains(Permission::CustomersRead));
            // Who may subscribe is the event catalogue's `subscribers` (SPEC §6).
            let readable = named
                .iter()
                .any(|event_type| event_type.subscribers().contains(&kind));
            if !readable || customers_barred {
                return Err(FilterError::NeverReadable(pattern.clone()));
            }
        }
        Ok(Self(patterns.to_vec()))
    }

    /// A stored filter, trusted.
    pub fn from_stored(patterns: Vec<String>) -> Self {
        Self(patterns)
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether an event of `event_type` passes.
    pub fn matches(&self, event_type: EventType) -> bool {
        let name = event_type.as_str();
        self.0.iter().any(|pattern| {
            pattern == "*"
                || pattern == name
                || pattern
                    .strip_suffix(".*")
                    .is_some_and(|family| family == event_type.family())
        })
    }
}

/// The types a feed's `type` filter names: one exact type, or every type of a family
/// (`family.*`); `None` when it names no type.
///
/// ```
/// use mandate_domain::events::EventType;
/// use mandate_domain::webhooks::feed_types;
///
/// assert_eq!(feed_types("claim.approved"), Some(vec![EventType::ClaimApproved]));
/// assert_eq!(feed_types("customer.*").map(|types| types.len()), Some(3));
/// assert_eq!(feed_types("customer"), None);
/// assert_eq!(feed_types("nothing.*"), None);
/// ```
pub fn feed_types(pattern: &str) -> Option<Vec<EventType>> {
    match pattern.strip_suffix(".*") {
        Some(family) => {
            let types: Vec<EventType> = EventType::ALL
                .into_iter()
                .filter(|event_type| event_type.family() == family)
                .collect();
            (!types.is_empty()).then_some(types)
        }
        None => EventType::parse(pattern).map(|event_type| vec![event_type]),
    }
}

/// A webhook endpoint. It serializes to its API shape (`object: "webhook_endpoint"`), never
/// showing its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "webhook_endpoint")]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: EndpointId,
    /// Whom it belongs to.
    #[serde(skip)]
    pub owner: EndpointOwner,
    /// The owner's organization, when it has one (orchestrators have none).
    #[serde(skip)]
    pub organization_id: Option<OrganizationId>,
    /// The destination, for destination owners' endpoints.
    pub destination_id: Option<DestinationId>,
    /// The scope of the credential that registered it, when that credential was narrowed
    /// (an access token whose scope is less than its client ID holds): it receives only what
    /// this scope may read, intersected with the owner's permissions at the time. `None`: the
    /// owner's full permissions, whatever they are at the time.
    #[serde(skip)]
    pub scope: Option<PermissionSet>,
    /// Where events are POSTed.
    pub url: String,
    /// What it subscribes to.
    pub event_types: EventTypeFilter,
    /// Free text.
    pub description: Option<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The signing secret (`whsec_…`).
    #[serde(skip)]
    pub secret: String,
    /// The previous secret, still signing until `previous_secret_expires_at`.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    /// End of the rotation grace period.
    #[serde(skip)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was created; it receives the events created after this.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// The secrets to sign with at `now`: the current one, and the previous one during a
    /// rotation's grace period.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
        {
            if until > now {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// Where a delivery attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its attempt.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// The receiver failed; another attempt may follow.
    Failed,
    /// Not sent: the receiver may no longer see the event.
    Skipped,
}

impl DeliveryStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    /// Parses the API spelling.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// One attempt to deliver one event to one endpoint; every attempt is kept as the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "webhook_delivery")]
pub struct Delivery {
    /// `dlv_…`
    pub id: DeliveryId,
    /// The event.
    pub event_id: EventId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The receiver's HTTP status, when it answered.
    pub response_status: Option<u16>,
    /// The start of the receiver's answer (≤ 4 KiB) or the transport error.
    pub response_body: Option<String>,
    /// How long the attempt took.
    pub duration_ms: Option<u64>,
    /// When this (pending) attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the first attempt of this event to this endpoint was scheduled: an endpoint
    /// failing for longer than the configured period is disabled.
    #[serde(skip)]
    pub first_attempt_at: DateTime<Utc>,
    /// When the attempt was scheduled.
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// The first attempt of `event` to `endpoint`, due at once.
    pub fn first(event_id: &EventId, endpoint_id: &EndpointId, now: DateTime<Utc>) -> Self {
        Self {
            id: DeliveryId::generate(),
            event_id: event_id.clone(),
            endpoint_id: endpoint_id.clone(),
            attempt: 1,
            status: DeliveryStatus::Pending,
            response_status: None,
            response_body: None,
            duration_ms: None,
            next_attempt_at: Some(now),
            first_attempt_at: now,
            created_at: now,
        }
    }

    /// The attempt after this one, due at `at`.
    pub fn next(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            id: DeliveryId::generate(),
            attempt: self.attempt + 1,
            status: DeliveryStatus::Pending,
            response_status: None,
            response_body: None,
            duration_ms: None,
            next_attempt_at: Some(at),
            created_at: now,
            ..self.clone()
        }
    }
}

/// Who is looking at events, without the credential: a principal as the feed sees it, or an
/// endpoint's owner as a delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A platform, for its organization or one destination.
    Platform {
        /// The organization.
        organization_id: OrganizationId,
        /// The destination it acts for, if any.
        acting_for: Option<DestinationId>,
    },
    /// A destination's owner.
    Destination {
        /// The organization.
        organization_id: OrganizationId,
        /// The destination.
        destination_id: DestinationId,
    },
    /// An orchestrator, with its active client IDs: it sees the union of what they may read.
    Orchestrator {
        /// The orchestrator.
        orchestrator_id: OrchestratorId,
        /// Its active client IDs.
        clients: Vec<ClientPrincipal>,
    },
    /// A client ID.
    Client(ClientPrincipal),
    /// Sees no events (the operator; a revoked client ID).
    Nobody,
}

/// **The rule**: whether `viewer` may see `event`, in the feed and through its webhooks.
/// `webhook.*` and `webhook_endpoint.*` events go to one endpoint and are in no feed.
pub fn can_see_event(viewer: &Viewer, event: &Event) -> bool {
    let audience = &event.audience;
    let organization = audience.organization_id.as_ref();
    let destination = audience.destination_id.as_ref();
    match (event.event_type.family(), viewer) {
        (_, Viewer::Nobody) => false,
        ("payment_request", Viewer::Client(client)) => client_sees_request(client, event),
        ("payment_request", Viewer::Orchestrator { clients, .. }) => clients
            .iter()
            .any(|client| client_sees_request(client, event)),
        (
            "client_id" | "claim",
            Viewer::Orchestrator {
                orchestrator_id, ..
            },
        ) => audience.orchestrator_id.as_ref() == Some(orchestrator_id),
        ("payment_request" | "client_id" | "claim", owner) => {
            owns_destination(owner, organization, destination)
        }
        ("customer", Viewer::Client(client)) => client_sees_customers(client, organization),
        ("customer", Viewer::Orchestrator { clients, .. }) => clients
            .iter()
            .any(|client| client_sees_customers(client, organization)),
        (
            "customer",
            Viewer::Platform {
                organization_id, ..
            }
            | Viewer::Destination {
                organization_id, ..
            },
        ) => organization == Some(organization_id),
        _ => false,
    }
}

fn client_sees_request(client: &ClientPrincipal, event: &Event) -> bool {
    let audience = &event.audience;
    audience.destination_id.as_ref() == Some(&client.destination_id)
        && (audience.client_id.as_ref() == Some(&client.client_id)
            || audience
                .direction
                .is_some_and(|direction| client.permissions.contains(direction.read_permission())))
}

fn client_sees_customers(
    client: &ClientPrincipal,
    organization_id: Option<&OrganizationId>,
) -> bool {
    organization_id == Some(&client.organization_id)
        && client.permissions.contains(Permission::CustomersRead)
}

fn owns_destination(
    viewer: &Viewer,
    organization_id: Option<&OrganizationId>,
    destination_id: Option<&DestinationId>,
) -> bool {
    match viewer {
        Viewer::Platform {
            organization_id: own,
            acting_for,
        } => {
            organization_id == Some(own)
                && acting_for
                    .as_ref()
                    .is_none_or(|acting| destination_id == Some(acting))
        }
        Viewer::Destination {
            destination_id: own,
            ..
        } => destination_id == Some(own),
        _ => false,
    }
}

/// Checks a webhook URL's shape: `https` (or `http` when allowed), a host, no credentials.
/// Address checks (private, loopback…) belong to the adapter that resolves names.
pub fn check_url_shape(url: &str, allow_http: bool) -> Result<(), InvalidValue> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://").filter(|_| allow_http) {
        rest
    } else if allow_http {
        return Err(InvalidValue("must be an http:// or https:// URL"));
    } else {
        return Err(InvalidValue("must be an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty()
        || authority.contains('@')
        || url.len() > 2048
        || url.chars().any(char::is_whitespace)
    {
        return Err(InvalidValue(
            "must be an absolute URL with a host, no credentials, at most 2048 characters",
        ));
    }
    Ok(())
}

/// One part of an [`EventScope`]: the events a viewer sees are the union of its clauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventClause {
    /// Events of these families in an organization.
    Organization {
        /// The organization.
        organization_id: OrganizationId,
        /// The families.
        families: &'static [&'static str],
    },
    /// Events of these families about one destination.
    Destination {
        /// The destination.
        destination_id: DestinationId,
        /// The families.
        families: &'static [&'static str],
    },
    /// Events of these families about one orchestrator.
    Orchestrator {
        /// The orchestrator.
        orchestrator_id: OrchestratorId,
        /// The families.
        families: &'static [&'static str],
    },
    /// Payment-request events a client sees: created through it, or of a readable direction.
    ClientRequests {
        /// The client's destination.
        destination_id: DestinationId,
        /// The client ID.
        client_id: ClientId,
        /// Holds `read:incoming`.
        incoming: bool,
        /// Holds `read:outgoing`.
        outgoing: bool,
    },
}

/// The feed's list query: [`can_see_event`] as a union of clauses the store translates to SQL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventScope {
    /// The clauses; none means nothing.
    pub clauses: Vec<EventClause>,
}

const OWNER_DESTINATION_FAMILIES: &[&str] = &["payment_request", "client_id", "claim"];
const CUSTOMER_FAMILY: &[&str] = &["customer"];
const ORCHESTRATOR_FAMILIES: &[&str] = &["client_id", "claim"];

impl EventClause {
    /// Whether `event` is in the clause.
    pub fn contains(&self, event: &Event) -> bool {
        let audience = &event.audience;
        let family = event.event_type.family();
        match self {
            EventClause::Organization {
                organization_id,
                families,
            } => {
                families.contains(&family)
                    && audience.organization_id.as_ref() == Some(organization_id)
            }
            EventClause::Destination {
                destination_id,
                families,
            } => {
                families.contains(&family)
                    && audience.destination_id.as_ref() == Some(destination_id)
            }
            EventClause::Orchestrator {
                orchestrator_id,
                families,
            } => {
                families.contains(&family)
                    && audience.orchestrator_id.as_ref() == Some(orchestrator_id)
            }
            EventClause::ClientRequests {
                destination_id,
                client_id,
                incoming,
                outgoing,
            } => {
                family == "payment_request"
                    && audience.destination_id.as_ref() == Some(destination_id)
                    && (audience.client_id.as_ref() == Some(client_id)
                        || match audience.direction {
                            Some(crate::payments::Direction::Incoming) => *incoming,
                            Some(crate::payments::Direction::Outgoing) => *outgoing,
                            None => false,
                        })
            }
        }
    }
}

impl EventScope {
    /// Whether `event` is in the scope.
    pub fn contains(&self, event: &Event) -> bool {
        self.clauses.iter().any(|clause| clause.contains(event))
    }
}

fn client_clauses(client: &ClientPrincipal) -> Vec<EventClause> {
    let mut clauses = vec![EventClause::ClientRequests {
        destination_id: client.destination_id.clone(),
        client_id: client.client_id.clone(),
        incoming: client.permissions.contains(Permission::ReadIncoming),
        outgoing: client.permissions.contains(Permission::ReadOutgoing),
    }];
    if client.permissions.contains(Permission::CustomersRead) {
        clauses.push(EventClause::Organization {
            organization_id: client.organization_id.clone(),
            families: CUSTOMER_FAMILY,
        });
    }
    clauses
}

/// The feed of `viewer`, as a scope.
pub fn event_scope(viewer: &Viewer) -> EventScope {
    let clauses = match viewer {
        Viewer::Platform {
            organization_id,
            acting_for: None,
        } => vec![EventClause::Organization {
            organization_id: organization_id.clone(),
            families: &["payment_request", "client_id", "claim", "customer"],
        }],
        Viewer::Platform {
            organization_id,
            acting_for: Some(destination_id),
        }
        | Viewer::Destination {
            organization_id,
            destination_id,
        } => vec![
            EventClause::Destination {
                destination_id: destination_id.clone(),
                families: OWNER_DESTINATION_FAMILIES,
            },
            EventClause::Organization {
                organization_id: organization_id.clone(),
                families: CUSTOMER_FAMILY,
            },
        ],
        Viewer::Client(client) => client_clauses(client),
        Viewer::Orchestrator {
            orchestrator_id,
            clients,
        } => {
            let mut clauses = vec![EventClause::Orchestrator {
                orchestrator_id: orchestrator_id.clone(),
                families: ORCHESTRATOR_FAMILIES,
            }];
            clauses.extend(clients.iter().flat_map(client_clauses));
            clauses
        }
        Viewer::Nobody => Vec::new(),
    };
    EventScope { clauses }
}
