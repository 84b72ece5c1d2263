//! An orchestrator's own profile and key rotation (at most two active keys).

use actix_web::{HttpResponse, web};
use mandate_domain::usecases::KeyTarget;

use crate::error::{ApiError, ErrorEnvelope};
use crate::handlers::keys;
use crate::input::EmptyBody;
use crate::pipeline::Authenticated;
use crate::state::State;
use crate::views::{KeyView, NewKeyView, OrchestratorProfile};

/// Reads the orchestrator's profile and its keys.
#[utoipa::path(get, path = "/v1/orchestrator", tag = "orchestrator",
    responses((status = 200, body = OrchestratorProfile)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, keys) = state.mandate.orchestrator_profile(&principal).await?;
    Ok(HttpResponse::Ok().json(OrchestratorProfile {
        orchestrator: orchestrator.into(),
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// Creates a second key to rotate to (shown once); 409 while two are active.
#[utoipa::path(post, path = "/v1/orchestrator/keys", tag = "orchestrator",
    responses((status = 201, body = NewKeyView), (status = 409, description = "two keys already active", body = ErrorEnvelope)))]
pub async fn create_key(
    state: State,
    Authenticated(principal): Authenticated,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    keys::create(&state, &principal, KeyTarget::Orchestrator).await
}

/// Revokes one of the orchestrator's keys at once.
#[utoipa::path(delete, path = "/v1/orchestrator/keys/{key_id}", tag = "orchestrator",
    params(("key_id" = String, Path, description = "key_…")),
    responses((status = 200, body = KeyView)))]
pub async fn revoke_key(
    state: State,
    Authenticated(principal): Authenticated,
    key_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    keys::revoke(&state, &principal, KeyTarget::Orchestrator, &key_id).await
}
