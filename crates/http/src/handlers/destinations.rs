//! Destinations and their keys.

use actix_web::{HttpResponse, web};
use mandate_domain::ids::DestinationId;
use mandate_domain::usecases::{DestinationChanges, KeyTarget, NewDestination};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::handlers::keys;
use crate::input::{EmptyBody, Json, ListParams, Query, path_id};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{DestinationList, DestinationView, KeyList, KeyView, ListBody, NewKeyView};

/// Body of `POST /v1/destinations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    /// Unique slug, `^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$`; it cannot change later.
    #[schema(value_type = schemas::Slug)]
    pub slug: String,
    /// Shown to payers, 1–200 characters.
    pub display_name: String,
    /// Where payers send money, free text ≤ 256 characters.
    pub payment_address: Option<String>,
    /// 1–1000, default 10.
    pub max_agents: Option<u32>,
    /// 60–2592000, default 86400.
    pub pending_claim_ttl_seconds: Option<u32>,
}

/// Body of `PATCH /v1/destinations/{id}`: only the fields sent change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestination {
    /// Shown to payers, 1–200 characters.
    pub display_name: Option<String>,
    /// Free text ≤ 256 characters; `null` clears it.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(value_type = Option<String>)]
    pub payment_address: Option<Option<String>>,
    /// 1–1000.
    pub max_agents: Option<u32>,
    /// 60–2592000.
    pub pending_claim_ttl_seconds: Option<u32>,
}

fn destination_id(text: &str) -> Result<DestinationId, ApiError> {
    path_id(text, DestinationId::parse)
}

/// Creates a destination in the platform's organization.
#[utoipa::path(post, path = "/v1/destinations", tag = "destinations", request_body = CreateDestination,
    responses((status = 201, body = DestinationView),
        (status = 409, description = "slug taken", body = ErrorEnvelope)))]
pub async fn create(
    state: State,
    Authenticated(principal): Authenticated,
    body: Json<CreateDestination>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = NewDestination {
        slug: body.slug,
        display_name: body.display_name,
        payment_address: body.payment_address,
        max_agents: body.max_agents,
        pending_claim_ttl_seconds: body.pending_claim_ttl_seconds,
    };
    let destination = state
        .mandate
        .create_destination(&principal, input, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(DestinationView::from(destination)))
}

/// Lists the destinations the caller owns, newest first.
#[utoipa::path(get, path = "/v1/destinations", tag = "destinations", params(ListParams),
    responses((status = 200, body = DestinationList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(DestinationId::parse)?;
    let destinations = state.mandate.list_destinations(&principal, &page).await?;
    let views = destinations.map(DestinationView::from);
    Ok(HttpResponse::Ok().json(ListBody::new(views, |view| view.id.clone())))
}

/// Reads one destination.
#[utoipa::path(get, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "dst_…")),
    responses((status = 200, body = DestinationView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let destination = state
        .mandate
        .destination(&principal, &destination_id(&id)?)
        .await?;
    Ok(HttpResponse::Ok().json(DestinationView::from(destination)))
}

/// Changes a destination's settings.
#[utoipa::path(patch, path = "/v1/destinations/{id}", tag = "destinations", request_body = UpdateDestination,
    params(("id" = String, Path, description = "dst_…")),
    responses((status = 200, body = DestinationView)))]
pub async fn update(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    body: Json<UpdateDestination>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let changes = DestinationChanges {
        display_name: body.display_name,
        payment_address: body.payment_address,
        max_agents: body.max_agents,
        pending_claim_ttl_seconds: body.pending_claim_ttl_seconds,
    };
    let destination = state
        .mandate
        .update_destination(
            &principal,
            &destination_id(&id)?,
            changes,
            mandate_domain::now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(DestinationView::from(destination)))
}

/// Creates a destination key (shown once).
#[utoipa::path(post, path = "/v1/destinations/{id}/keys", tag = "destinations",
    params(("id" = String, Path, description = "dst_…")),
    responses((status = 201, body = NewKeyView),
        (status = 409, description = "two keys already active", body = ErrorEnvelope)))]
pub async fn create_key(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    keys::create(
        &state,
        &principal,
        KeyTarget::Destination(destination_id(&id)?),
    )
    .await
}

/// Lists a destination's keys (never the keys themselves).
#[utoipa::path(get, path = "/v1/destinations/{id}/keys", tag = "destinations",
    params(("id" = String, Path, description = "dst_…")),
    responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    keys::list(
        &state,
        &principal,
        KeyTarget::Destination(destination_id(&id)?),
    )
    .await
}

/// Revokes a destination key at once.
#[utoipa::path(delete, path = "/v1/destinations/{id}/keys/{key_id}", tag = "destinations",
    params(("id" = String, Path, description = "dst_…"), ("key_id" = String, Path, description = "key_…")),
    responses((status = 200, body = KeyView)))]
pub async fn revoke_key(
    state: State,
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = path.into_inner();
    keys::revoke(
        &state,
        &principal,
        KeyTarget::Destination(destination_id(&id)?),
        &key_id,
    )
    .await
}
