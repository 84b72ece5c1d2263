//! Webhook endpoints, the event feed, and the delivery steps a worker drives. The feed and
//! the deliveries use one rule: `can_see_event`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;

use super::{InvalidField, Mandate};
use crate::events::{Audience, Event, EventType};
use crate::ids::{DeliveryId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId};
use crate::model::ClientStatus;
use crate::policy::{Action, ClientScope, Decision, Resource, authorize, credential_scope};
use crate::ports::{
    ClaimedDelivery, EventFilter, Fanout, Page, PageRequest, RecordedAttempt, StoreError,
};
use crate::principal::{ClientPrincipal, Principal};
use crate::values::PermissionSet;
use crate::webhooks::{
    Delivery, DeliveryStatus, EndpointOwner, EventTypeFilter, FilterError, Viewer, WebhookEndpoint,
    can_see_event, check_url_shape, event_scope,
};

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_GRACE_HOURS: i64 = 24;

/// Errors of the webhook use cases.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No such endpoint, delivery or event for this caller.
    #[error("not found")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FilterError> for WebhookError {
    fn from(error: FilterError) -> Self {
        match error {
            FilterError::NeverReadable(_) => WebhookError::Forbidden(error.to_string()),
            FilterError::Unknown(_) | FilterError::Empty => WebhookError::Invalid(InvalidField {
                field: "event_types",
                reason: "unknown event type: use an exact type, family.* or *",
            }),
        }
    }
}

/// Input of [`Mandate::create_endpoint`] and [`Mandate::update_endpoint`].
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// Where events are POSTed (already checked against the network policy).
    pub url: Option<String>,
    /// Exact types, `family.*` or `*`.
    pub event_types: Option<Vec<String>>,
    /// Free text; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Turn deliveries on or off.
    pub enabled: Option<bool>,
}

/// The outcome of one attempt, as the sender saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// 2xx within the timeout.
    pub succeeded: bool,
    /// The receiver's status, when it answered.
    pub response_status: Option<u16>,
    /// The start of its answer, or the transport error.
    pub response_body: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// What a worker claimed in one round: the attempts to send, and how many it recorded as
/// skipped because their receiver may no longer see the event.
#[derive(Debug, Clone, Default)]
pub struct ClaimedBatch {
    /// Attempts to send now.
    pub sendable: Vec<ClaimedDelivery>,
    /// Attempts recorded as skipped.
    pub skipped: usize,
}

/// What one fan-out did: how many events it took, and their first attempts, leased to the
/// worker that fanned them out.
#[derive(Debug, Clone, Default)]
pub struct FannedOut {
    /// Events claimed and fanned out.
    pub events: usize,
    /// Their first attempts, to be sent now by the caller.
    pub sendable: Vec<ClaimedDelivery>,
}

/// An endpoint's owner and scope: endpoints that agree on them see the same events.
type ViewerKey = (EndpointOwner, Option<PermissionSet>);

/// Everything [`crate::ports::WebhookStore::candidate_endpoints`] looks at besides the
/// event's time: events that agree on it have the same candidates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CandidateKey {
    organization_id: Option<OrganizationId>,
    destination_id: Option<DestinationId>,
    orchestrator_id: Option<OrchestratorId>,
    family: &'static str,
}

impl CandidateKey {
    fn of(event: &Event) -> Self {
        Self {
            organization_id: event.audience.organization_id.clone(),
            destination_id: event.audience.destination_id.clone(),
            orchestrator_id: event.audience.orchestrator_id.clone(),
            family: event.event_type.family(),
        }
    }
}

/// An attempt the worker made: what it sent, how it went, and what follows.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    /// The attempt as claimed.
    pub claimed: ClaimedDelivery,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// What follows a failure (ignored after a success).
    pub after_failure: AfterFailure,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// What to do after a failed attempt, decided by the worker's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// The schedule is exhausted: stop for this event.
    GiveUp,
    /// Disable the endpoint (it answered 410, or failed for too long).
    Disable,
}

/// A new secret: `whsec_` and base64 of 32 random bytes.
fn new_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn description_field(value: Option<String>) -> Result<Option<String>, InvalidField> {
    match value {
        Some(text) if text.chars().count() > 500 => Err(InvalidField {
            field: "description",
            reason: "must be at most 500 characters",
        }),
        Some(text) => super::safe_text("description", &text).map(|()| Some(text)),
        None => Ok(None),
    }
}

impl Mandate {
    /// Who a principal is when it looks at events: an orchestrator brings its active client IDs.
    pub async fn viewer(&self, principal: &Principal) -> Result<Viewer, StoreError> {
        Ok(match principal {
            Principal::Platform {
                organization_id,
                acting_for,
                ..
            } => Viewer::Platform {
                organization_id: organization_id.clone(),
                acting_for: acting_for.clone(),
            },
            Principal::Destination {
                organization_id,
                destination_id,
                ..
            } => Viewer::Destination {
                organization_id: organization_id.clone(),
                destination_id: destination_id.clone(),
            },
            Principal::Orchestrator {
                orchestrator_id, ..
            } => self.orchestrator_viewer(orchestrator_id).await?,
            Principal::Client(client) => Viewer::Client(client.clone()),
            Principal::Admin => Viewer::Nobody,
        })
    }

    async fn orchestrator_viewer(
        &self,
        orchestrator_id: &OrchestratorId,
    ) -> Result<Viewer, StoreError> {
        let scope = ClientScope::Orchestrator(orchestrator_id.clone());
        let mut clients = Vec::new();
        let mut page = PageRequest {
            limit: PageRequest::MAX_LIMIT,
            starting_after: None,
        };
        loop {
            let listed = self
                .store
                .list_clients(&scope, Some(ClientStatus::Active), &page)
                .await?;
            page.starting_after = listed.data.last().map(|client| client.id.to_string());
            clients.extend(listed.data.into_iter().map(ClientPrincipal::of));
            if !listed.has_more {
                return Ok(Viewer::Orchestrator {
                    orchestrator_id: orchestrator_id.clone(),
                    clients,
                });
            }
        }
    }

    /// The viewer an endpoint is *now*: its owner, with a client ID's current permissions
    /// narrowed to the scope the endpoint was registered with (`scope`); a revoked or deleted
    /// client ID sees nothing.
    pub async fn owner_viewer(
        &self,
        owner: &EndpointOwner,
        scope: Option<&PermissionSet>,
    ) -> Result<Viewer, StoreError> {
        Ok(match owner {
            EndpointOwner::Client { client_id } => match self.store.client(client_id).await? {
                Some(client) if client.status == ClientStatus::Active => {
                    let acting = ClientPrincipal::of(client);
                    Viewer::Client(match scope {
                        Some(scope) => acting.narrowed_to(scope),
                        None => acting,
                    })
                }
                _ => Viewer::Nobody,
            },
            EndpointOwner::Orchestrator { orchestrator_id } => {
                self.orchestrator_viewer(orchestrator_id).await?
            }
            EndpointOwner::Platform { organization_id } => Viewer::Platform {
                organization_id: organization_id.clone(),
                acting_for: None,
            },
            EndpointOwner::Destination {
                organization_id,
                destination_id,
            } => Viewer::Destination {
                organization_id: organization_id.clone(),
                destination_id: destination_id.clone(),
            },
        })
    }

    /// The events the caller may see (what its endpoints would receive) passing `filter`,
    /// newest first.
    pub async fn list_events(
        &self,
        principal: &Principal,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>, WebhookError> {
        let viewer = self.viewer(principal).await?;
        Ok(self
            .store
            .list_events(&event_scope(&viewer), filter, page)
            .await?)
    }

    /// One event the caller may see.
    pub async fn event(&self, principal: &Principal, id: &EventId) -> Result<Event, WebhookError> {
        let event = self.store.event(id).await?.ok_or(WebhookError::NotFound)?;
        if can_see_event(&self.viewer(principal).await?, &event) {
            Ok(event)
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// Registers an endpoint for the caller (its URL already passed the network policy).
    pub async fn create_endpoint(
        &self,
        principal: &Principal,
        input: EndpointInput,
        allow_http: bool,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let owner = EndpointOwner::of(principal).ok_or_else(|| {
            WebhookError::Forbidden("this credential may not register webhook endpoints".into())
        })?;
        let url = input.url.ok_or(InvalidField {
            field: "url",
            reason: "is required",
        })?;
        check_url_shape(&url, allow_http).map_err(|invalid| InvalidField {
            field: "url",
            reason: invalid.0,
        })?;
        let event_types = EventTypeFilter::parse(
            &input.event_types.unwrap_or_else(|| vec!["*".into()]),
            principal,
        )?;
        let (organization_id, destination_id) = match (&owner, principal) {
            (
                EndpointOwner::Destination {
                    organization_id,
                    destination_id,
                },
                _,
            ) => (Some(organization_id.clone()), Some(destination_id.clone())),
            (EndpointOwner::Client { .. }, Principal::Client(client)) => (
                Some(client.organization_id.clone()),
                Some(client.destination_id.clone()),
            ),
            (EndpointOwner::Platform { organization_id }, _) => {
                (Some(organization_id.clone()), None)
            }
            _ => (None, None),
        };
        let endpoint = WebhookEndpoint {
            id: EndpointId::generate(),
            owner,
            organization_id,
            destination_id,
            // A narrowed token's endpoint receives no more than the token may read.
            scope: credential_scope(principal).cloned(),
            url,
            event_types,
            description: description_field(input.description.flatten())?,
            enabled: input.enabled.unwrap_or(true),
            secret: new_secret(),
            previous_secret: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_endpoint(&endpoint).await?;
        Ok(endpoint)
    }

    /// The caller's endpoints (a platform also sees its destinations'), newest first; a
    /// narrowed token sees only those whose scope fits inside its own.
    pub async fn list_endpoints(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, WebhookError> {
        match (principal, EndpointOwner::of(principal)) {
            (
                Principal::Platform {
                    organization_id,
                    acting_for: None,
                    ..
                },
                _,
            ) => Ok(self
                .store
                .endpoints_of_organization(organization_id, page)
                .await?),
            (_, Some(owner)) => Ok(self
                .store
                .endpoints_of(&owner, credential_scope(principal), page)
                .await?),
            (_, None) => Err(WebhookError::Forbidden(
                "this credential has no webhook endpoints".into(),
            )),
        }
    }

    /// One endpoint of the caller ([`Action::ManageEndpoint`]: a narrowed token's own, never
    /// one registered with more than its scope).
    pub async fn endpoint(
        &self,
        principal: &Principal,
        id: &EndpointId,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let endpoint = self
            .store
            .endpoint(id)
            .await?
            .ok_or(WebhookError::NotFound)?;
        match authorize(
            principal,
            Action::ManageEndpoint,
            Resource::Endpoint(&endpoint),
        ) {
            Decision::Allow => Ok(endpoint),
            Decision::NotFound | Decision::Forbidden | Decision::Lacks(_) => {
                Err(WebhookError::NotFound)
            }
        }
    }

    /// Changes an endpoint (its new URL already passed the network policy).
    pub async fn update_endpoint(
        &self,
        principal: &Principal,
        id: &EndpointId,
        input: EndpointInput,
        allow_http: bool,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let mut endpoint = self.endpoint(principal, id).await?;
        if let Some(url) = input.url {
            check_url_shape(&url, allow_http).map_err(|invalid| InvalidField {
                field: "url",
                reason: invalid.0,
            })?;
            endpoint.url = url;
        }
        if let Some(types) = input.event_types {
            endpoint.event_types = EventTypeFilter::parse(&types, principal)?;
        }
        if let Some(description) = input.description {
            endpoint.description = description_field(description)?;
        }
        if let Some(enabled) = input.enabled {
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = now;
        self.store.update_endpoint(&endpoint).await?;
        Ok(endpoint)
    }

    /// Deletes an endpoint and its delivery log.
    pub async fn delete_endpoint(
        &self,
        principal: &Principal,
        id: &EndpointId,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let endpoint = self.endpoint(principal, id).await?;
        if self.store.delete_endpoint(id).await? {
            Ok(endpoint)
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// Replaces the signing secret; the previous one keeps signing for a grace period, so
    /// receivers can switch without losing a delivery. Returns the endpoint and the new secret.
    pub async fn rotate_endpoint_secret(
        &self,
        principal: &Principal,
        id: &EndpointId,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let mut endpoint = self.endpoint(principal, id).await?;
        endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, new_secret()));
        endpoint.previous_secret_expires_at = Some(now + Duration::hours(ROTATION_GRACE_HOURS));
        endpoint.updated_at = now;
        self.store.update_endpoint(&endpoint).await?;
        Ok(endpoint)
    }

    /// Sends a `webhook.test` event to this endpoint only.
    pub async fn test_endpoint(
        &self,
        principal: &Principal,
        id: &EndpointId,
        now: DateTime<Utc>,
    ) -> Result<Event, WebhookError> {
        let endpoint = self.endpoint(principal, id).await?;
        let audience = Audience {
            organization_id: endpoint.organization_id.clone(),
            destination_id: endpoint.destination_id.clone(),
            endpoint_id: Some(endpoint.id.clone()),
            ..Audience::default()
        };
        let event = Event::new(EventType::WebhookTest, audience, &endpoint, now);
        self.store
            .insert_direct_event(&event, &Delivery::first(&event.id, &endpoint.id, now))
            .await?;
        Ok(event)
    }

    /// An endpoint's delivery attempts, newest first.
    pub async fn endpoint_deliveries(
        &self,
        principal: &Principal,
        id: &EndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, WebhookError> {
        self.endpoint(principal, id).await?;
        Ok(self.store.deliveries_of(id, page).await?)
    }

    /// Sends one delivery's event again, now, as a new attempt.
    pub async fn retry_delivery(
        &self,
        principal: &Principal,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Delivery, WebhookError> {
        let delivery = self
            .store
            .delivery(id)
            .await?
            .ok_or(WebhookError::NotFound)?;
        self.endpoint(principal, &delivery.endpoint_id).await?;
        let retry = Delivery {
            first_attempt_at: now,
            ..delivery.next(now, now)
        };
        self.store.insert_delivery(&retry).await?;
        Ok(retry)
    }

    /// The viewer of `endpoint` (its owner within its scope), read once per batch of work.
    async fn cached_viewer<'a>(
        &self,
        viewers: &'a mut HashMap<ViewerKey, Viewer>,
        endpoint: &WebhookEndpoint,
    ) -> Result<&'a Viewer, StoreError> {
        let key = (endpoint.owner.clone(), endpoint.scope.clone());
        if !viewers.contains_key(&key) {
            let viewer = self
                .owner_viewer(&endpoint.owner, endpoint.scope.as_ref())
                .await?;
            viewers.insert(key.clone(), viewer);
        }
        viewers
            .get(&key)
            .ok_or_else(|| StoreError::Other("a cached viewer vanished".into()))
    }

    /// Turns up to `limit` new events into first attempts for every endpoint whose owner may
    /// see them and subscribes to their type. The attempts come back leased to the caller, to
    /// be sent at once: the event's path from commit to receiver takes no separate claim.
    pub async fn fan_out(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<FannedOut, StoreError> {
        let events = self
            .store
            .claim_events_for_fanout(limit, now, lease)
            .await?;
        if events.is_empty() {
            return Ok(FannedOut::default());
        }
        let candidates = self.candidates_by_audience(&events).await?;
        // Owners are looked up once per batch; a retry re-checks its receiver anyway.
        let mut viewers = HashMap::new();
        let mut fanouts = Vec::with_capacity(events.len());
        let mut sendable = Vec::new();
        for event in &events {
            let mut deliveries = Vec::new();
            let endpoints = candidates
                .get(&CandidateKey::of(event))
                .map_or(&[][..], Vec::as_slice);
            for endpoint in endpoints {
                // The group's endpoints were asked for with its newest event.
                if endpoint.created_at <= event.created_at
                    && endpoint.enabled
                    && endpoint.event_types.matches(event.event_type)
                    && can_see_event(self.cached_viewer(&mut viewers, endpoint).await?, event)
                {
                    let delivery = Delivery::first(&event.id, &endpoint.id, now);
                    sendable.push(ClaimedDelivery {
                        delivery: delivery.clone(),
                        event: event.clone(),
                        endpoint: endpoint.clone(),
                    });
                    deliveries.push(delivery);
                }
            }
            fanouts.push(Fanout {
                event_id: event.id.clone(),
                deliveries,
            });
        }
        let recorded: HashSet<EventId> = self
            .store
            .record_fanout(&fanouts, now, lease)
            .await?
            .into_iter()
            .collect();
        // Another worker whose lease ran out may have finished some first: theirs stand.
        sendable.retain(|claimed| recorded.contains(&claimed.delivery.event_id));
        Ok(FannedOut {
            events: events.len(),
            sendable,
        })
    }

    /// The candidate endpoints of a batch of events, asked for once per distinct audience
    /// (with the audience's newest event, so that no endpoint older than one of them is
    /// missed) instead of once per event.
    async fn candidates_by_audience(
        &self,
        events: &[Event],
    ) -> Result<HashMap<CandidateKey, Vec<WebhookEndpoint>>, StoreError> {
        let mut newest: HashMap<CandidateKey, &Event> = HashMap::new();
        for event in events {
            newest
                .entry(CandidateKey::of(event))
                .and_modify(|known| {
                    if event.created_at > known.created_at {
                        *known = event;
                    }
                })
                .or_insert(event);
        }
        let mut candidates = HashMap::with_capacity(newest.len());
        for (key, event) in newest {
            candidates.insert(key, self.store.candidate_endpoints(event).await?);
        }
        Ok(candidates)
    }

    /// Claims due attempts, leaving no endpoint more than `per_endpoint` in flight, and
    /// re-authorizes each receiver *now*: attempts whose receiver may no longer see the event
    /// (or whose endpoint is disabled) are recorded as `skipped` and counted (for the worker's
    /// metrics); the rest are to be sent.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        lease: Duration,
    ) -> Result<ClaimedBatch, StoreError> {
        let mut sendable = Vec::new();
        let mut skipped = Vec::new();
        let mut viewers = HashMap::new();
        let claimed = self
            .store
            .claim_due_deliveries_per_endpoint(limit, per_endpoint, now, lease)
            .await?;
        for claimed in claimed {
            let direct = claimed.event.audience.endpoint_id.as_ref() == Some(&claimed.endpoint.id);
            let allowed = claimed.endpoint.enabled
                && (direct
                    || can_see_event(
                        self.cached_viewer(&mut viewers, &claimed.endpoint).await?,
                        &claimed.event,
                    ));
            if allowed {
                sendable.push(claimed);
            } else {
                skipped.push(RecordedAttempt {
                    attempt: Delivery {
                        status: DeliveryStatus::Skipped,
                        next_attempt_at: None,
                        ..claimed.delivery
                    },
                    next: None,
                });
            }
        }
        if !skipped.is_empty() {
            self.store.record_attempts(&skipped).await?;
        }
        Ok(ClaimedBatch {
            sendable,
            skipped: skipped.len(),
        })
    }

    /// Records the outcomes of finished attempts and what follows each, in one transaction;
    /// disabling an endpoint emits `webhook_endpoint.disabled` to its owner.
    pub async fn record_outcomes(&self, finished: &[FinishedAttempt]) -> Result<(), StoreError> {
        let recorded: Vec<RecordedAttempt> = finished
            .iter()
            .map(|finished| {
                let FinishedAttempt {
                    claimed,
                    outcome,
                    after_failure,
                    finished_at,
                } = finished;
                RecordedAttempt {
                    attempt: Delivery {
                        status: if outcome.succeeded {
                            DeliveryStatus::Succeeded
                        } else {
                            DeliveryStatus::Failed
                        },
                        response_status: outcome.response_status,
                        response_body: outcome.response_body.clone(),
                        duration_ms: Some(outcome.duration_ms),
                        next_attempt_at: None,
                        ..claimed.delivery.clone()
                    },
                    next: match (outcome.succeeded, after_failure) {
                        (false, AfterFailure::RetryAt(at)) => {
                            Some(claimed.delivery.next(*at, *finished_at))
                        }
                        _ => None,
                    },
                }
            })
            .collect();
        self.store.record_attempts(&recorded).await?;
        for finished in finished {
            if !finished.outcome.succeeded && finished.after_failure == AfterFailure::Disable {
                self.disable_endpoint(&finished.claimed.endpoint, finished.finished_at)
                    .await?;
            }
        }
        Ok(())
    }

    async fn disable_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !endpoint.enabled {
            return Ok(());
        }
        let endpoint = WebhookEndpoint {
            enabled: false,
            updated_at: now,
            ..endpoint.clone()
        };
        self.store.update_endpoint(&endpoint).await?;
        let audience = Audience {
            organization_id: endpoint.organization_id.clone(),
            destination_id: endpoint.destination_id.clone(),
            endpoint_id: Some(endpoint.id.clone()),
            ..Audience::default()
        };
        let event = Event::new(EventType::WebhookEndpointDisabled, audience, &endpoint, now);
        // Recorded for the owner's log and feed; the disabled endpoint is not called.
        self.store
            .insert_direct_event(
                &event,
                &Delivery {
                    status: DeliveryStatus::Skipped,
                    next_attempt_at: None,
                    ..Delivery::first(&event.id, &endpoint.id, now)
                },
            )
            .await
    }
}
