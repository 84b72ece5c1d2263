//! Claims: an orchestrator submits one for an agent (signed by the agent's key, checked by the
//! pipeline); the destination's owner approves, rejects or revokes it. And the ledger.

use actix_web::{HttpResponse, web};
use mandate_domain::claims::{ChainCheck, Claim, ClaimStatus, LedgerStatus};
use mandate_domain::ids::ClaimId;
use mandate_domain::usecases::{ClaimApprovalInput, NewClaim, parse_agent_key};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{
    EmptyBody, Json, ListParams, OptionalJson, Query, filter_value, list_params, path_id,
};
use crate::pipeline::{AgentSignature, Authenticated};
use crate::schemas;
use crate::state::State;
use crate::views::{ClaimList, ClaimView, LedgerList, ListBody};

/// Body of `POST /v1/claims`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitClaim {
    /// The destination's slug.
    #[schema(value_type = schemas::Slug)]
    pub namespace: String,
    /// `ed25519:<base64 of 32 bytes>`; the request must be signed by this key.
    pub public_key: String,
    /// Your orchestrator's slug.
    #[schema(value_type = schemas::Slug)]
    pub service: String,
    /// The agent's IPv4 or IPv6 address.
    pub ip_address: String,
    /// 8–256 characters, never reused.
    pub nonce: String,
    /// Whom the agent acts for, 1–256 characters.
    pub subject: Option<String>,
    /// The agent's id within your service, 1–128 characters.
    pub agent_id: String,
    /// The agent's display name, 1–128 characters.
    pub agent_name: String,
    /// Default `["create:incoming","create:outgoing"]`.
    #[schema(value_type = Option<Vec<schemas::Permission>>)]
    pub permissions: Option<Vec<String>>,
}

/// The answer to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimSubmitted {
    /// `clm_…`
    #[schema(value_type = schemas::ClaimId)]
    pub id: String,
    /// `pending` for a new claim; the current status of an existing one.
    #[schema(value_type = schemas::ClaimStatus)]
    pub status: ClaimStatus,
    /// Your orchestrator's slug.
    pub service: String,
    /// What happened, for people.
    pub message: &'static str,
}

/// Body of `POST /v1/claims/{id}/approve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveClaim {
    /// When the approval ends (RFC 3339, in the future); default never.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A subset of the requested permissions; default all of them.
    #[schema(value_type = Option<Vec<schemas::Permission>>)]
    pub permissions: Option<Vec<String>>,
}

/// The answer to an approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimApproved {
    /// `clm_…`
    #[schema(value_type = schemas::ClaimId)]
    pub id: String,
    /// `approved`
    #[schema(value_type = schemas::ClaimStatus)]
    pub status: ClaimStatus,
    /// The agent's client ID: the agent sends it as `X-Client-Id` with its signature.
    #[schema(value_type = schemas::ClientId)]
    pub client_id: String,
    /// Approved agents of the destination, this one included.
    pub approved_agents: u32,
    /// The destination's limit.
    pub max_agents: u32,
    /// `queued` until the ledger step records the approval.
    #[schema(value_type = String)]
    pub ledger_status: LedgerStatus,
}

/// The answer to a rejection or a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimDecided {
    /// `clm_…`
    #[schema(value_type = schemas::ClaimId)]
    pub id: String,
    /// `rejected` or `revoked`.
    #[schema(value_type = schemas::ClaimStatus)]
    pub status: ClaimStatus,
    /// For a revocation: `queued` until the ledger step records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ledger_status: Option<LedgerStatus>,
}

list_params! {
    /// `?status=` on top of the list parameters.
    pub struct ClaimListParams {
        /// `pending`, `approved`, `rejected`, `revoked` or `expired`.
        #[param(value_type = Option<schemas::ClaimStatus>)]
        pub status: Option<String>,
    }
}

/// The answer of `GET /v1/ledger/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerVerification {
    /// Whether every entry's hash matches its content and links to the previous one.
    pub valid: bool,
    /// How many entries the organization's chain holds.
    pub entries: u64,
    /// The last entry's hash.
    pub head: Option<String>,
}

impl From<ChainCheck> for LedgerVerification {
    fn from(check: ChainCheck) -> Self {
        Self {
            valid: check.valid,
            entries: check.entries,
            head: check.head,
        }
    }
}

impl From<&Claim> for ClaimDecided {
    /// A rejected claim never had an approval, so it has no ledger status to show.
    fn from(claim: &Claim) -> Self {
        Self {
            id: claim.id.to_string(),
            status: claim.status,
            ledger_status: claim.ledger_status,
        }
    }
}

fn claim_id(text: &str) -> Result<ClaimId, ApiError> {
    path_id(text, ClaimId::parse)
}

/// Submits an agent's claim for a destination. Authenticate with your orchestrator key
/// (Bearer) **and** have the agent sign the request (RFC 9421, `keyid` = `public_key`,
/// covering `@method`, `@target-uri` and `content-digest`).
#[utoipa::path(post, path = "/v1/claims", tag = "claims", request_body = SubmitClaim,
    responses((status = 201, body = ClaimSubmitted), (status = 200, body = ClaimSubmitted),
        (status = 404, description = "no destination has this namespace", body = ErrorEnvelope),
        (status = 409, description = "the body's `nonce` or the agent id was used before", body = ErrorEnvelope)))]
pub async fn submit(
    state: State,
    Authenticated(principal): Authenticated,
    signature: AgentSignature,
    body: Json<SubmitClaim>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if parse_agent_key("public_key", &body.public_key)? != signature.key {
        return Err(ApiError::signature_invalid(
            "the request must be signed by the key in public_key (keyid)",
        ));
    }
    let input = NewClaim {
        namespace: body.namespace,
        public_key: body.public_key,
        service: body.service,
        ip_address: body.ip_address,
        nonce: body.nonce,
        subject: body.subject,
        agent_id: body.agent_id,
        agent_name: body.agent_name,
        permissions: body.permissions,
    };
    let submitted = state
        .mandate
        .submit_claim(&principal, input, mandate_domain::now())
        .await?;
    let (mut response, message) = if submitted.created {
        (
            HttpResponse::Created(),
            "claim submitted: the destination's owner decides",
        )
    } else {
        (
            HttpResponse::Ok(),
            "a claim for this agent key already exists",
        )
    };
    Ok(response.json(ClaimSubmitted {
        id: submitted.claim.id.to_string(),
        status: submitted.claim.status,
        service: submitted.claim.service.to_string(),
        message,
    }))
}

/// Lists the claims the caller may see: an owner's destinations' claims, an orchestrator's own.
#[utoipa::path(get, path = "/v1/claims", tag = "claims", params(ClaimListParams),
    responses((status = 200, body = ClaimList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<ClaimListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = filter_value(
        params.status.as_deref(),
        "status",
        "status must be pending, approved, rejected, revoked or expired",
        ClaimStatus::parse,
    )?;
    let page = params.page(ClaimId::parse)?;
    let claims = state.mandate.list_claims(&principal, status, &page).await?;
    Ok(HttpResponse::Ok().json(ListBody::new(claims, |claim| claim.id.to_string())))
}

/// Reads one claim.
#[utoipa::path(get, path = "/v1/claims/{id}", tag = "claims",
    params(("id" = String, Path, description = "clm_…")),
    responses((status = 200, body = ClaimView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let claim = state.mandate.claim(&principal, &claim_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(&claim))
}

/// Approves a pending claim: creates the agent's client ID, whose only credential is the
/// agent's key. 409 when the destination already has `max_agents` approved agents.
#[utoipa::path(post, path = "/v1/claims/{id}/approve", tag = "claims",
    params(("id" = String, Path, description = "clm_…")), request_body = ApproveClaim,
    responses((status = 200, body = ClaimApproved), (status = 409, body = ErrorEnvelope)))]
pub async fn approve(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    // The body is optional: nothing (or whitespace) approves with the defaults.
    OptionalJson(body): OptionalJson<ApproveClaim>,
) -> Result<HttpResponse, ApiError> {
    let input = ClaimApprovalInput {
        expires_at: body.expires_at,
        permissions: body.permissions,
    };
    let approved = state
        .mandate
        .approve_claim(&principal, &claim_id(&id)?, input, mandate_domain::now())
        .await?;
    let client_id = approved
        .claim
        .client_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(ClaimApproved {
        id: approved.claim.id.to_string(),
        status: approved.claim.status,
        client_id,
        approved_agents: approved.approved_agents,
        max_agents: approved.max_agents,
        ledger_status: LedgerStatus::Queued,
    }))
}

/// Rejects a pending claim.
#[utoipa::path(post, path = "/v1/claims/{id}/reject", tag = "claims",
    params(("id" = String, Path, description = "clm_…")),
    responses((status = 200, body = ClaimDecided),
        (status = 409, body = ErrorEnvelope)))]
pub async fn reject(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let claim = state
        .mandate
        .reject_claim(&principal, &claim_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(ClaimDecided::from(&claim)))
}

/// Revokes an approved claim; the agent's client ID is revoked at once.
#[utoipa::path(post, path = "/v1/claims/{id}/revoke", tag = "claims",
    params(("id" = String, Path, description = "clm_…")),
    responses((status = 200, body = ClaimDecided),
        (status = 409, body = ErrorEnvelope)))]
pub async fn revoke(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let claim = state
        .mandate
        .revoke_claim(&principal, &claim_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(ClaimDecided::from(&claim)))
}

/// The ledger entries the caller may read, newest first: a platform's whole organization, a
/// destination's own. `starting_after` is a `seq`.
#[utoipa::path(get, path = "/v1/ledger", tag = "ledger", params(ListParams),
    responses((status = 200, body = LedgerList)))]
pub async fn ledger(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(str::parse::<u64>)?;
    let entries = state.mandate.ledger(&principal, &page).await?;
    Ok(HttpResponse::Ok().json(ListBody::new(entries, |entry| entry.seq.to_string())))
}

/// Recomputes the organization's hash chain: `valid` is false when any stored entry was
/// edited, removed or reordered.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger",
    responses((status = 200, body = LedgerVerification)))]
pub async fn verify_ledger(
    state: State,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let check = state.mandate.verify_ledger(&principal).await?;
    Ok(HttpResponse::Ok().json(LedgerVerification::from(check)))
}
