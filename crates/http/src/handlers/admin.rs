//! Operator endpoints: organizations and orchestrators.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{OrchestratorView, OrganizationView};

/// Body of `POST /v1/admin/organizations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// Display name, 1–200 characters.
    pub name: String,
}

/// A new organization and its first platform key (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationCreated {
    /// The organization.
    pub organization: OrganizationView,
    /// `mnd_plat_…`; store it now, it cannot be shown again.
    pub platform_key: String,
}

/// Creates an organization with its first platform key.
#[utoipa::path(post, path = "/v1/admin/organizations", tag = "admin", request_body = CreateOrganization,
    responses((status = 201, body = OrganizationCreated)))]
pub async fn create_organization(
    state: State,
    Authenticated(principal): Authenticated,
    body: web::Json<CreateOrganization>,
) -> Result<HttpResponse, ApiError> {
    let (organization, key) = state
        .mandate
        .create_organization(&principal, &body.name, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(OrganizationCreated {
        organization: organization.into(),
        platform_key: key.plain,
    }))
}

/// Body of `POST /v1/admin/orchestrators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrchestrator {
    /// Unique slug, `^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$`.
    #[schema(value_type = schemas::Slug)]
    pub slug: String,
    /// Display name, 1–200 characters.
    pub name: String,
}

/// A new orchestrator and its first API key (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrchestratorCreated {
    /// The orchestrator.
    pub orchestrator: OrchestratorView,
    /// `mnd_orch_…`; store it now, it cannot be shown again.
    pub api_key: String,
}

/// Registers an orchestrator with its first API key.
#[utoipa::path(post, path = "/v1/admin/orchestrators", tag = "admin", request_body = CreateOrchestrator,
    responses((status = 201, body = OrchestratorCreated),
        (status = 409, description = "slug taken", body = ErrorEnvelope)))]
pub async fn create_orchestrator(
    state: State,
    Authenticated(principal): Authenticated,
    body: web::Json<CreateOrchestrator>,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, key) = state
        .mandate
        .create_orchestrator(&principal, &body.slug, &body.name, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(OrchestratorCreated {
        orchestrator: orchestrator.into(),
        api_key: key.plain,
    }))
}
