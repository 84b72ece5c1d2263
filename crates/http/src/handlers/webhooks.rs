//! Webhook endpoints, their delivery log, and the event feed.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use mandate_domain::events::{Event, EventType};
use mandate_domain::ids::{DeliveryId, EndpointId, EventId};
use mandate_domain::ports::{EventFilter, Page};
use mandate_domain::usecases::EndpointInput;
use mandate_domain::webhooks::{WebhookEndpoint, feed_types};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{EmptyBody, Json, ListParams, Query, list_params, path_id};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{ListBody, list_schema};

/// Body of `POST /v1/webhook-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://…` (http only when the server allows it); private addresses are refused.
    pub url: String,
    /// Exact types, `family.*` or `*` (default `["*"]`: everything this credential may see).
    #[schema(value_type = Option<Vec<schemas::EventTypePattern>>)]
    pub event_types: Option<Vec<String>>,
    /// ≤ 500 characters.
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Body of `PATCH /v1/webhook-endpoints/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New filter.
    #[schema(value_type = Option<Vec<schemas::EventTypePattern>>)]
    pub event_types: Option<Vec<String>>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Turn deliveries on or off.
    pub enabled: Option<bool>,
}

/// A webhook endpoint (documentation of the shape `WebhookEndpoint` serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// `we_…`
    #[schema(value_type = schemas::EndpointId)]
    pub id: String,
    /// Always `webhook_endpoint`.
    pub object: String,
    /// For endpoints of a destination's owner or of a client.
    #[schema(value_type = Option<schemas::DestinationId>)]
    pub destination_id: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// The subscription.
    #[schema(value_type = Vec<schemas::EventTypePattern>)]
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

/// An endpoint with its signing secret: returned on creation and on rotation only.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret<'a> {
    /// The endpoint.
    #[serde(flatten)]
    #[schema(value_type = EndpointView)]
    pub endpoint: &'a WebhookEndpoint,
    /// `whsec_…`: verify signatures with it; it is not shown again.
    pub secret: &'a str,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_…`
    #[schema(value_type = schemas::DeliveryId)]
    pub id: String,
    /// Always `webhook_delivery`.
    pub object: String,
    /// The event.
    #[schema(value_type = schemas::EventId)]
    pub event_id: String,
    /// The endpoint.
    #[schema(value_type = schemas::EndpointId)]
    pub endpoint_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `pending`, `succeeded`, `failed` or `skipped` (the receiver may no longer see the event).
    pub status: String,
    /// The receiver's status.
    pub response_status: Option<u16>,
    /// The start (≤ 4 KiB) of the receiver's answer, or the transport error.
    pub response_body: Option<String>,
    /// How long the attempt took.
    pub duration_ms: Option<u64>,
    /// When a pending attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

/// An event, exactly as webhooks deliver it; `data.object`'s schema depends on `type` (see
/// `GET /v1/event-types` and the document's `webhooks`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// `evt_…`, also the `webhook-id` header of every delivery.
    #[schema(value_type = schemas::EventId)]
    pub id: String,
    /// The event type, e.g. `payment_request.paid`.
    #[serde(rename = "type")]
    #[schema(value_type = schemas::EventType)]
    pub event_type: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// The destination it concerns.
    #[schema(value_type = Option<schemas::DestinationId>)]
    pub destination_id: Option<String>,
    /// The object after the change.
    pub data: EventDataView,
}

/// `data` of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDataView {
    /// The object after the change, in its API shape (`object` names its kind).
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
}

list_schema!(
    /// A page of webhook endpoints.
    EndpointList,
    EndpointView
);
list_schema!(
    /// A page of delivery attempts.
    DeliveryList,
    DeliveryView
);
list_schema!(
    /// A page of events.
    EventList,
    EventView
);
list_schema!(
    /// The event catalogue: every event type, in one page.
    EventTypeList,
    EventTypeView
);

/// One type of the event catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// Always `event_type`.
    pub object: &'static str,
    /// The type, e.g. `payment_request.paid`; subscribe to it, to its family
    /// (`payment_request.*`) or to `*`.
    #[serde(rename = "type")]
    #[schema(value_type = schemas::EventType)]
    pub event_type: &'static str,
    /// What happened.
    pub description: &'static str,
    /// The principal kinds whose webhook endpoints may subscribe to it.
    #[schema(value_type = Vec<schemas::PrincipalKind>)]
    pub subscribers: Vec<&'static str>,
    /// The kind of object in `data.object` (its `object` field).
    pub data_object: &'static str,
    /// The JSON Schema (2020-12) of `data.object`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

impl From<EventType> for EventTypeView {
    fn from(event_type: EventType) -> Self {
        Self {
            object: "event_type",
            event_type: event_type.as_str(),
            description: event_type.description(),
            subscribers: event_type
                .subscribers()
                .iter()
                .map(|kind| kind.as_str())
                .collect(),
            data_object: event_type.object().as_str(),
            schema: crate::openapi::object_json_schema(event_type),
        }
    }
}

fn endpoint_id(text: &str) -> Result<EndpointId, ApiError> {
    path_id(text, EndpointId::parse)
}

/// The network policy's verdict on a webhook target, in the API's wording (the console's too).
pub(crate) async fn check_target(state: &State, url: &str) -> Result<(), ApiError> {
    state
        .target_guard
        .check(url)
        .await
        .map_err(|refused| ApiError::invalid_field("url", refused.0))
}

/// Registers an endpoint; its secret is returned now only.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, body = EndpointWithSecret), (status = 403, description = "an event type this credential can never read", body = ErrorEnvelope)))]
pub async fn create(
    state: State,
    Authenticated(principal): Authenticated,
    body: Json<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_target(&state, &body.url).await?;
    let input = EndpointInput {
        url: Some(body.url),
        event_types: body.event_types,
        description: Some(body.description),
        enabled: body.enabled,
    };
    let endpoint = state
        .mandate
        .create_endpoint(&principal, input, state.allow_http, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(EndpointWithSecret {
        endpoint: &endpoint,
        secret: &endpoint.secret,
    }))
}

/// Lists the caller's endpoints (a platform also sees its destinations').
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", params(ListParams),
    responses((status = 200, body = EndpointList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(EndpointId::parse)?;
    let endpoints = state.mandate.list_endpoints(&principal, &page).await?;
    Ok(HttpResponse::Ok().json(ListBody::new(endpoints, |endpoint| endpoint.id.to_string())))
}

/// Reads one endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, body = EndpointView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        state
            .mandate
            .endpoint(&principal, &endpoint_id(&id)?)
            .await?,
    ))
}

/// Changes an endpoint.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", request_body = UpdateEndpoint,
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, body = EndpointView)))]
pub async fn update(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    body: Json<UpdateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(url) = &body.url {
        check_target(&state, url).await?;
    }
    let input = EndpointInput {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    let endpoint = state
        .mandate
        .update_endpoint(
            &principal,
            &endpoint_id(&id)?,
            input,
            state.allow_http,
            mandate_domain::now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(&endpoint))
}

/// Deletes an endpoint and its delivery log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, body = EndpointView)))]
pub async fn delete(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        state
            .mandate
            .delete_endpoint(&principal, &endpoint_id(&id)?)
            .await?,
    ))
}

/// Replaces the signing secret; the old one keeps signing (a second signature) for 24 hours.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, body = EndpointWithSecret)))]
pub async fn rotate_secret(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let endpoint = state
        .mandate
        .rotate_endpoint_secret(&principal, &endpoint_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(EndpointWithSecret {
        endpoint: &endpoint,
        secret: &endpoint.secret,
    }))
}

/// Sends a `webhook.test` event to this endpoint only.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, body = EventView)))]
pub async fn test(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let event = state
        .mandate
        .test_endpoint(&principal, &endpoint_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(event.body()))
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "we_…"), ListParams),
    responses((status = 200, body = DeliveryList)))]
pub async fn deliveries(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    params: Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(DeliveryId::parse)?;
    let deliveries = state
        .mandate
        .endpoint_deliveries(&principal, &endpoint_id(&id)?, &page)
        .await?;
    Ok(
        HttpResponse::Ok().json(ListBody::new(deliveries, |delivery| {
            delivery.id.to_string()
        })),
    )
}

/// Sends a delivery's event again, now, as a new attempt.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "dlv_…")),
    responses((status = 200, body = DeliveryView)))]
pub async fn retry(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, DeliveryId::parse)?;
    Ok(HttpResponse::Ok().json(
        state
            .mandate
            .retry_delivery(&principal, &id, mandate_domain::now())
            .await?,
    ))
}

list_params! {
    /// Filters of `GET /v1/events`.
    pub struct EventListParams {
        /// Only events of this exact type (`payment_request.paid`), or of its family
        /// (`payment_request.*`).
        #[serde(rename = "type")]
        pub event_type: Option<String>,
    }
}

/// The events the caller may see — exactly what its endpoints receive — newest first.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventListParams),
    responses((status = 200, body = EventList)))]
pub async fn events(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<EventListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let types = params
        .event_type
        .as_deref()
        .map(|pattern| {
            feed_types(pattern).ok_or_else(|| {
                ApiError::invalid_field(
                    "type",
                    format!(
                        "unknown event type {pattern:?}: use an exact type (payment_request.paid) \
                         or a family (payment_request.*)"
                    ),
                )
            })
        })
        .transpose()?;
    let page = params.page(EventId::parse)?;
    let events = state
        .mandate
        .list_events(&principal, &EventFilter { types }, &page)
        .await?;
    let bodies = Page {
        data: events.data.iter().map(Event::body).collect(),
        has_more: events.has_more,
        unreadable: events.unreadable,
    };
    Ok(HttpResponse::Ok().json(ListBody::new(bodies, |body| body.id.to_string())))
}

/// One event the caller may see.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "evt_…")),
    responses((status = 200, body = EventView)))]
pub async fn event(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let event = state
        .mandate
        .event(&principal, &path_id(&id, EventId::parse)?)
        .await?;
    Ok(HttpResponse::Ok().json(event.body()))
}

/// The event catalogue: every event type, what it means, who may subscribe to it, and the
/// JSON Schema of its `data.object`.
#[utoipa::path(get, path = "/v1/event-types", tag = "events",
    responses((status = 200, body = EventTypeList)))]
pub async fn event_types() -> HttpResponse {
    let page = Page {
        data: EventType::ALL
            .into_iter()
            .map(EventTypeView::from)
            .collect(),
        has_more: false,
        unreadable: Vec::new(),
    };
    HttpResponse::Ok().json(ListBody::new(page, |view| view.event_type.to_owned()))
}
