//! Agents' claims: the list (pending first), one claim with everything an owner decides on,
//! and the decisions — approve with a narrower set of permissions and an optional expiry,
//! reject, revoke — through the API's use cases.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use mandate_domain::agents::AgentKey;
use mandate_domain::claims::{Claim, ClaimStatus};
use mandate_domain::ids::ClaimId;
use mandate_domain::ports::PageRequest;
use mandate_domain::usecases::ClaimApprovalInput;
use maud::{Markup, html};
use sha2::{Digest, Sha256};

use super::layout::{self, post_button, time_element};
use super::{Caller, Done, Flash, Form, act, form_instant, see_other, signed_in_page};
use crate::error::ApiError;
use crate::input::path_id;
use crate::state::State;

/// The most claims one list shows.
const LIST_LIMIT: u32 = PageRequest::MAX_LIMIT;

/// `GET /console`: the claims are what an owner comes for.
pub(crate) async fn home() -> HttpResponse {
    see_other("/console/claims")
}

fn claim_path(id: &ClaimId) -> String {
    format!("/console/claims/{id}")
}

/// `SHA256:<base64>` of the raw key, as SSH shows fingerprints: short enough to compare by eye
/// with what the agent's operator sees.
pub(super) fn fingerprint(key: &AgentKey) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key.to_bytes()))
    )
}

fn permissions_text(claim_permissions: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = claim_permissions.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn row(claim: &Claim) -> Markup {
    html! {
        li {
            a href=(claim_path(&claim.id)) { (claim.agent_name) }
            span class={ "badge " (badge_class(claim.status)) } { (claim.status.as_str()) }
            span.muted {
                (claim.service.as_str()) " · for " (claim.namespace.as_str()) " · "
                (time_element(claim.created_at))
            }
        }
    }
}

fn badge_class(status: ClaimStatus) -> &'static str {
    match status {
        ClaimStatus::Pending => "partial",
        ClaimStatus::Approved => "paid",
        _ => "closed",
    }
}

/// `GET /console/claims`: pending claims first, then the latest decided ones.
pub(crate) async fn list(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let page_of = |limit| PageRequest {
        limit,
        starting_after: None,
    };
    let pending = state
        .mandate
        .list_claims(
            &caller.principal,
            Some(ClaimStatus::Pending),
            &page_of(LIST_LIMIT),
        )
        .await;
    let latest = state
        .mandate
        .list_claims(&caller.principal, None, &page_of(LIST_LIMIT))
        .await;
    let (pending, latest) = match (pending, latest) {
        (Ok(pending), Ok(latest)) => (pending, latest),
        (Err(error), _) | (_, Err(error)) => return layout::error_page(&ApiError::from(error)),
    };
    let content = html! {
        h1 { "Agent claims" }
        h2 { "Waiting for your decision" }
        @if pending.data.is_empty() {
            p.muted { "No claim is waiting." }
        } @else {
            ul.rows { @for claim in &pending.data { (row(claim)) } }
        }
        h2 { "Decided" }
        ul.rows {
            @for claim in latest.data.iter().filter(|claim| claim.status != ClaimStatus::Pending) {
                (row(claim))
            }
        }
    };
    let flash = Flash::of(&request);
    signed_in_page(&request, &caller, "Agent claims", flash.as_ref(), content)
}

/// `GET /console/claims/{id}`: one claim and its decisions.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let claim = match path_id(&id, ClaimId::parse) {
        Ok(id) => state
            .mandate
            .claim(&caller.principal, &id)
            .await
            .map_err(ApiError::from),
        Err(error) => Err(error),
    };
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => return layout::error_page(&error),
    };
    let agents = match approved_agents(&state, &caller, &claim).await {
        Ok(agents) => agents,
        Err(error) => return layout::error_page(&error),
    };
    let content = render_claim(&caller, &claim, agents);
    let flash = Flash::of(&request);
    signed_in_page(
        &request,
        &caller,
        &format!("Claim of {}", claim.agent_name),
        flash.as_ref(),
        content,
    )
}

/// The destination's approved agents (up to a page of them) and its `max_agents`.
async fn approved_agents(
    state: &State,
    caller: &Caller,
    claim: &Claim,
) -> Result<(usize, u32), ApiError> {
    let destination = state
        .mandate
        .destination(&caller.principal, &claim.destination_id)
        .await?;
    let approved = state
        .mandate
        .list_claims(
            &caller.principal,
            Some(ClaimStatus::Approved),
            &PageRequest {
                limit: LIST_LIMIT,
                starting_after: None,
            },
        )
        .await?;
    let count = approved
        .data
        .iter()
        .filter(|approved| approved.destination_id == claim.destination_id)
        .count();
    Ok((count, destination.max_agents))
}

fn render_claim(caller: &Caller, claim: &Claim, (approved, max_agents): (usize, u32)) -> Markup {
    let path = claim_path(&claim.id);
    let permissions = permissions_text(claim.permissions.iter().map(|p| p.as_str().to_owned()));
    html! {
        p.eyebrow { "Agent claim " (claim.id.as_str()) }
        h1 { (claim.agent_name) }
        span class={ "badge " (badge_class(claim.status)) } { (claim.status.as_str()) }
        dl {
            dt { "Agent" } dd { (claim.agent_name) " " span.mono { "(" (claim.agent_id) ")" } }
            dt { "Key fingerprint" } dd.mono { (fingerprint(&claim.public_key)) }
            dt { "Orchestrator" }
            dd { (claim.service.as_str()) " " span.mono { "(" (claim.orchestrator_id.as_str()) ")" } }
            dt { "Destination" }
            dd { (claim.namespace.as_str()) " " span.mono { "(" (claim.destination_id.as_str()) ")" } }
            @if let Some(subject) = &claim.subject {
                dt { "Acting for" } dd { (subject) }
            }
            // An approval keeps the granted permissions in place of the requested ones.
            dt {
                (if claim.status == ClaimStatus::Pending { "Requested permissions" } else { "Permissions" })
            }
            dd.mono { (permissions) }
            dt { "IP address" } dd.mono { (claim.ip_address.to_string()) }
            dt { "Submitted" } dd { (time_element(claim.created_at)) }
            @if claim.status == ClaimStatus::Pending {
                dt { "Waits until" } dd { (time_element(claim.pending_expires_at)) }
            } @else {
                dt { "Decided" } dd { (time_element(claim.updated_at)) }
                dt { "Approval ends" } dd { (layout::when(claim.expires_at, "never")) }
            }
            @if let Some(client_id) = &claim.client_id {
                dt { "Agent's client ID" }
                dd { a.mono href={ "/console/client-ids/" (client_id.as_str()) } { (client_id.as_str()) } }
            }
            dt { "Approved agents of this destination" } dd { (approved) " of " (max_agents) }
        }
        @match claim.status {
            ClaimStatus::Pending => {
                h2 { "Decide" }
                form method="post" action={ (path) "/approve" } {
                    (layout::csrf_field(caller))
                    fieldset {
                        legend { "Permissions to grant" }
                        @for permission in claim.permissions.iter() {
                            label {
                                input type="checkbox" name="permissions" value=(permission.as_str()) checked;
                                " " (permission.as_str())
                            }
                        }
                    }
                    label {
                        "Approval ends (UTC, optional)"
                        input type="datetime-local" name="expires_at";
                    }
                    div.actions { button type="submit" { "Approve" } }
                }
                div.actions { (post_button(caller, &format!("{path}/reject"), "Reject", "danger", html! {})) }
            },
            ClaimStatus::Approved => {
                h2 { "Revoke" }
                p { "Revoking ends the agent's client ID at once." }
                div.actions { (post_button(caller, &format!("{path}/revoke"), "Revoke", "danger", html! {})) }
            },
            _ => {},
        }
    }
}

/// `POST /console/claims/{id}/approve`: fields `permissions` (repeated) and `expires_at`.
pub(crate) async fn approve(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("/console/claims/{id}"),
        &id,
        async |id: ClaimId| {
            let expires_at = form
                .get("expires_at")
                .map(|value| form_instant("expires_at", value))
                .transpose()?;
            let input = ClaimApprovalInput {
                expires_at,
                permissions: Some(form.all("permissions")),
            };
            Ok::<_, ApiError>(
                state
                    .mandate
                    .approve_claim(&caller.principal, &id, input, mandate_domain::now())
                    .await?,
            )
        },
        |approved| {
            Done::said(format!(
                "Approved {} with {}: client ID {}; {} of {} approved agents.",
                approved.claim.agent_name,
                permissions_text(
                    approved
                        .claim
                        .permissions
                        .iter()
                        .map(|p| p.as_str().to_owned())
                ),
                approved
                    .claim
                    .client_id
                    .as_ref()
                    .map_or("-", |client| client.as_str()),
                approved.approved_agents,
                approved.max_agents
            ))
        },
    )
    .await
}

/// `POST /console/claims/{id}/reject`.
pub(crate) async fn reject(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("/console/claims/{id}"),
        &id,
        async |id: ClaimId| {
            state
                .mandate
                .reject_claim(&caller.principal, &id, mandate_domain::now())
                .await
        },
        |claim| Done::said(format!("Rejected the claim of {}.", claim.agent_name)),
    )
    .await
}

/// `POST /console/claims/{id}/revoke`.
pub(crate) async fn revoke(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("/console/claims/{id}"),
        &id,
        async |id: ClaimId| {
            state
                .mandate
                .revoke_claim(&caller.principal, &id, mandate_domain::now())
                .await
        },
        |claim| {
            Done::said(format!(
                "Revoked {}: its client ID no longer works.",
                claim.agent_name
            ))
        },
    )
    .await
}
