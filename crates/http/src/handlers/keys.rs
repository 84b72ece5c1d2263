//! Key management, shared by organizations, destinations and orchestrators.

use actix_web::HttpResponse;
use mandate_domain::ids::KeyId;
use mandate_domain::principal::Principal;
use mandate_domain::usecases::KeyTarget;

use crate::error::ApiError;
use crate::input::path_id;
use crate::state::AppState;
use crate::views::{KeyList, KeyView, NewKeyView};

/// `POST …/keys`: 201 with the key, shown once.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    target: KeyTarget,
) -> Result<HttpResponse, ApiError> {
    let issued = state
        .mandate
        .create_key(principal, &target, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(NewKeyView::from(issued)))
}

/// `GET …/keys`.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    target: KeyTarget,
) -> Result<HttpResponse, ApiError> {
    let keys = state.mandate.list_keys(principal, &target).await?;
    Ok(HttpResponse::Ok().json(KeyList::from(keys)))
}

/// `DELETE …/keys/{key_id}`: revokes at once; 200 with the revoked key.
pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    target: KeyTarget,
    key_id: &str,
) -> Result<HttpResponse, ApiError> {
    let key_id = path_id(key_id, KeyId::parse)?;
    let key = state
        .mandate
        .revoke_key(principal, &target, &key_id, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(KeyView::from(key)))
}
