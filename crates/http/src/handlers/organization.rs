//! A platform's own organization and its platform keys (rotation).

use actix_web::{HttpResponse, web};
use mandate_domain::usecases::KeyTarget;

use crate::error::{ApiError, ErrorEnvelope};
use crate::handlers::keys;
use crate::input::EmptyBody;
use crate::pipeline::Authenticated;
use crate::state::State;
use crate::views::{KeyList, KeyView, NewKeyView, OrganizationView};

/// Reads the platform's organization.
#[utoipa::path(get, path = "/v1/organization", tag = "organization",
    responses((status = 200, body = OrganizationView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let organization = state.mandate.organization(&principal).await?;
    Ok(HttpResponse::Ok().json(OrganizationView::from(organization)))
}

/// Creates another platform key (shown once), e.g. to rotate.
#[utoipa::path(post, path = "/v1/organization/keys", tag = "organization",
    responses((status = 201, body = NewKeyView),
        (status = 409, description = "two keys already active", body = ErrorEnvelope)))]
pub async fn create_key(
    state: State,
    Authenticated(principal): Authenticated,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    keys::create(&state, &principal, KeyTarget::Organization).await
}

/// Lists the platform keys (never the keys themselves).
#[utoipa::path(get, path = "/v1/organization/keys", tag = "organization",
    responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    state: State,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    keys::list(&state, &principal, KeyTarget::Organization).await
}

/// Revokes a platform key at once.
#[utoipa::path(delete, path = "/v1/organization/keys/{key_id}", tag = "organization",
    params(("key_id" = String, Path, description = "key_…")),
    responses((status = 200, body = KeyView)))]
pub async fn revoke_key(
    state: State,
    Authenticated(principal): Authenticated,
    key_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    keys::revoke(&state, &principal, KeyTarget::Organization, &key_id).await
}
