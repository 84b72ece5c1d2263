//! Operator endpoints: organizations and orchestrators.

use actix_web::HttpResponse;
use mandate_domain::ids::{OrchestratorId, OrganizationId};
use mandate_domain::ports::{OrchestratorFilter, OrganizationFilter};
use mandate_domain::values::Slug;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{Json, Query, filter_value, list_params};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{
    ListBody, OrchestratorList, OrchestratorView, OrganizationList, OrganizationView,
};

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
    body: Json<CreateOrganization>,
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
    body: Json<CreateOrchestrator>,
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

list_params! {
    /// Filters of `GET /v1/admin/organizations`.
    pub struct OrganizationListParams {
        /// Only organizations with exactly this name.
        pub name: Option<String>,
    }
}

/// Lists the organizations, newest first: an operator finds what a setup created.
#[utoipa::path(get, path = "/v1/admin/organizations", tag = "admin", params(OrganizationListParams),
    responses((status = 200, body = OrganizationList), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_organizations(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<OrganizationListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let page = params.page(OrganizationId::parse)?;
    let filter = OrganizationFilter { name: params.name };
    let organizations = state
        .mandate
        .list_organizations(&principal, &filter, &page)
        .await?;
    let views = organizations.map(OrganizationView::from);
    Ok(HttpResponse::Ok().json(ListBody::new(views, |view| view.id.clone())))
}

list_params! {
    /// Filters of `GET /v1/admin/orchestrators`.
    pub struct OrchestratorListParams {
        /// Only the orchestrator with this slug.
        pub slug: Option<String>,
        /// Only orchestrators with exactly this name.
        pub name: Option<String>,
    }
}

/// Lists the orchestrators, newest first: an operator finds what a setup registered.
#[utoipa::path(get, path = "/v1/admin/orchestrators", tag = "admin", params(OrchestratorListParams),
    responses((status = 200, body = OrchestratorList), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_orchestrators(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<OrchestratorListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let slug = filter_value(
        params.slug.as_deref(),
        "slug",
        "slug must match ^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$",
        |slug| Slug::parse(slug).ok(),
    )?;
    let page = params.page(OrchestratorId::parse)?;
    let filter = OrchestratorFilter {
        slug,
        name: params.name,
    };
    let orchestrators = state
        .mandate
        .list_orchestrators(&principal, &filter, &page)
        .await?;
    let views = orchestrators.map(OrchestratorView::from);
    Ok(HttpResponse::Ok().json(ListBody::new(views, |view| view.id.clone())))
}
