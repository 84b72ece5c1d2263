//! Client IDs: issue, read, grant and withdraw permissions one by one, revoke.

use actix_web::{HttpResponse, web};
use mandate_domain::ids::ClientId;
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::usecases::{ClientChange, NewClient, parse_permission};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{EmptyBody, Json, Query, filter_value, list_params, path_id};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{ClientList, ClientView, ListBody};

/// Body of `POST /v1/client-ids`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// The orchestrator, by slug or id.
    pub orchestrator: String,
    /// Free text for you, ≤ 200 characters.
    pub label: Option<String>,
    /// Default `["create:incoming","create:outgoing"]`.
    #[schema(value_type = Option<Vec<schemas::Permission>>)]
    pub permissions: Option<Vec<String>>,
}

/// Body of `POST /v1/client-ids/{id}/permissions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPermission {
    /// One permission, e.g. `read:incoming`.
    #[schema(value_type = schemas::Permission)]
    pub permission: String,
}

list_params! {
    /// `?status=` on top of the list parameters.
    pub struct ClientListParams {
        /// `active` or `revoked`.
        #[param(value_type = Option<schemas::ClientStatus>)]
        pub status: Option<String>,
    }
}

fn client_id(text: &str) -> Result<ClientId, ApiError> {
    path_id(text, ClientId::parse)
}

fn respond(client: &Client) -> HttpResponse {
    HttpResponse::Ok().json(client)
}

/// Issues a client ID to an orchestrator, for the caller's destination (a platform key names
/// it with `X-Destination-Id`).
#[utoipa::path(post, path = "/v1/client-ids", tag = "client-ids", request_body = CreateClient,
    responses((status = 201, body = ClientView)))]
pub async fn create(
    state: State,
    Authenticated(principal): Authenticated,
    body: Json<CreateClient>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = NewClient {
        orchestrator: body.orchestrator,
        label: body.label,
        permissions: body.permissions,
    };
    let client = state
        .mandate
        .issue_client(&principal, input, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(&client))
}

/// Lists the client IDs the caller may see (revoked ones too, unless `status` filters).
#[utoipa::path(get, path = "/v1/client-ids", tag = "client-ids", params(ClientListParams),
    responses((status = 200, body = ClientList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<ClientListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = filter_value(
        params.status.as_deref(),
        "status",
        "status must be active or revoked",
        ClientStatus::parse,
    )?;
    let page = params.page(ClientId::parse)?;
    let clients = state
        .mandate
        .list_clients(&principal, status, &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(clients, |client| client.id.to_string())))
}

/// Reads one client ID.
#[utoipa::path(get, path = "/v1/client-ids/{id}", tag = "client-ids",
    params(("id" = String, Path, description = "cli_…")),
    responses((status = 200, body = ClientView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(respond(
        &state.mandate.client(&principal, &client_id(&id)?).await?,
    ))
}

/// Grants one permission (idempotent; a grant that changes nothing bumps nothing).
#[utoipa::path(post, path = "/v1/client-ids/{id}/permissions", tag = "client-ids",
    request_body = GrantPermission, params(("id" = String, Path, description = "cli_…")),
    responses((status = 200, body = ClientView), (status = 409, description = "revoked", body = ErrorEnvelope)))]
pub async fn grant(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    body: Json<GrantPermission>,
) -> Result<HttpResponse, ApiError> {
    let id = client_id(&id)?;
    let permission = parse_permission("permission", &body.permission)?;
    let change = ClientChange::Grant(permission);
    Ok(respond(
        &state
            .mandate
            .change_client(&principal, &id, change, mandate_domain::now())
            .await?,
    ))
}

/// Withdraws one permission (idempotent); tokens already issued lose it on their next request.
#[utoipa::path(delete, path = "/v1/client-ids/{id}/permissions/{permission}", tag = "client-ids",
    params(("id" = String, Path, description = "cli_…"), ("permission" = schemas::Permission, Path, description = "e.g. create:incoming")),
    responses((status = 200, body = ClientView), (status = 409, description = "revoked", body = ErrorEnvelope)))]
pub async fn withdraw(
    state: State,
    Authenticated(principal): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, permission) = path.into_inner();
    let id = client_id(&id)?;
    let change = ClientChange::Withdraw(parse_permission("permission", &permission)?);
    Ok(respond(
        &state
            .mandate
            .change_client(&principal, &id, change, mandate_domain::now())
            .await?,
    ))
}

/// Revokes the client ID for good: every credential acting through it stops at once.
#[utoipa::path(post, path = "/v1/client-ids/{id}/revoke", tag = "client-ids",
    params(("id" = String, Path, description = "cli_…")),
    responses((status = 200, body = ClientView)))]
pub async fn revoke(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let id = client_id(&id)?;
    Ok(respond(
        &state
            .mandate
            .change_client(&principal, &id, ClientChange::Revoke, mandate_domain::now())
            .await?,
    ))
}
