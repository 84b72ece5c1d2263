//! Agents' claims: the list (pending first), one claim with everything an owner decides on,
//! and the decisions — approve with a narrower set of permissions and an optional expiry,
//! reject, revoke — through the API's use cases.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use mandate_domain::agents::AgentKey;
use mandate_domain::claims::{Claim, ClaimStatus};
use mandate_domain::ids::ClaimId;
use mandate_domain::ports::PageRequest;
use mandate_domain::usecases::ClaimApprovalInput;
use sha2::{Digest, Sha256};

use super::html::{self, escape, post_button};
use super::{Caller, Flash, Form, after_change, page, see_other};
use crate::error::ApiError;
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

fn row(claim: &Claim) -> String {
    format!(
        "<li><a href=\"{}\">{}</a><span class=\"badge {}\">{}</span><span class=\"muted\">{} · \
         for {} · {}</span></li>\n",
        escape(&claim_path(&claim.id)),
        escape(&claim.agent_name),
        badge_class(claim.status),
        claim.status.as_str(),
        escape(claim.service.as_str()),
        escape(claim.namespace.as_str()),
        html::at(claim.created_at)
    )
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
        (Err(error), _) | (_, Err(error)) => return html::error_page(&ApiError::from(error)),
    };
    let mut content = String::from("<h1>Agent claims</h1>\n<h2>Waiting for your decision</h2>\n");
    if pending.data.is_empty() {
        content.push_str("<p class=\"muted\">No claim is waiting.</p>\n");
    } else {
        content.push_str("<ul class=\"rows\">\n");
        for claim in &pending.data {
            content.push_str(&row(claim));
        }
        content.push_str("</ul>\n");
    }
    content.push_str("<h2>Decided</h2>\n<ul class=\"rows\">\n");
    for claim in latest
        .data
        .iter()
        .filter(|claim| claim.status != ClaimStatus::Pending)
    {
        content.push_str(&row(claim));
    }
    content.push_str("</ul>\n");
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document("Agent claims", Some(&caller), flash.as_ref(), &content),
    )
}

/// `GET /console/claims/{id}`: one claim and its decisions.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let claim = match ClaimId::parse(&id) {
        Ok(id) => state.mandate.claim(&caller.principal, &id).await,
        Err(_) => return html::error_page(&ApiError::not_found()),
    };
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => return html::error_page(&ApiError::from(error)),
    };
    let agents = match approved_agents(&state, &caller, &claim).await {
        Ok(agents) => agents,
        Err(error) => return html::error_page(&error),
    };
    let content = render_claim(&caller, &claim, agents);
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document(
            &format!("Claim of {}", claim.agent_name),
            Some(&caller),
            flash.as_ref(),
            &content,
        ),
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

fn render_claim(caller: &Caller, claim: &Claim, (approved, max_agents): (usize, u32)) -> String {
    let mut content = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        content,
        "<p class=\"eyebrow\">Agent claim {}</p>\n<h1>{}</h1>\n<span class=\"badge {}\">{}</span>\n\
         <dl>\n<dt>Agent</dt><dd>{} <span class=\"mono\">({})</span></dd>\n\
         <dt>Key fingerprint</dt><dd class=\"mono\">{}</dd>\n\
         <dt>Orchestrator</dt><dd>{} <span class=\"mono\">({})</span></dd>\n\
         <dt>Destination</dt><dd>{} <span class=\"mono\">({})</span></dd>\n",
        escape(claim.id.as_str()),
        escape(&claim.agent_name),
        badge_class(claim.status),
        claim.status.as_str(),
        escape(&claim.agent_name),
        escape(&claim.agent_id),
        escape(&fingerprint(&claim.public_key)),
        escape(claim.service.as_str()),
        escape(claim.orchestrator_id.as_str()),
        escape(claim.namespace.as_str()),
        escape(claim.destination_id.as_str()),
    );
    if let Some(subject) = &claim.subject {
        let _ = writeln!(content, "<dt>Acting for</dt><dd>{}</dd>", escape(subject));
    }
    let _ = write!(
        content,
        "<dt>{}</dt><dd class=\"mono\">{}</dd>\n\
         <dt>IP address</dt><dd class=\"mono\">{}</dd>\n\
         <dt>Submitted</dt><dd>{}</dd>\n",
        // An approval keeps the granted permissions in place of the requested ones.
        if claim.status == ClaimStatus::Pending {
            "Requested permissions"
        } else {
            "Permissions"
        },
        escape(&permissions_text(
            claim.permissions.iter().map(|p| p.as_str().to_owned())
        )),
        escape(&claim.ip_address.to_string()),
        html::at(claim.created_at),
    );
    match claim.status {
        ClaimStatus::Pending => {
            let _ = writeln!(
                content,
                "<dt>Waits until</dt><dd>{}</dd>",
                html::at(claim.pending_expires_at)
            );
        }
        _ => {
            let _ = write!(
                content,
                "<dt>Decided</dt><dd>{}</dd>\n<dt>Approval ends</dt><dd>{}</dd>\n",
                html::at(claim.updated_at),
                html::when(claim.expires_at, "never")
            );
        }
    }
    if let Some(client_id) = &claim.client_id {
        let _ = writeln!(
            content,
            "<dt>Agent's client ID</dt><dd><a class=\"mono\" href=\"/console/client-ids/{0}\">{0}\
             </a></dd>",
            escape(client_id.as_str())
        );
    }
    let _ = write!(
        content,
        "<dt>Approved agents of this destination</dt><dd>{approved} of {max_agents}</dd>\n</dl>\n"
    );
    let path = claim_path(&claim.id);
    match claim.status {
        ClaimStatus::Pending => {
            let mut boxes = String::new();
            for permission in claim.permissions.iter() {
                let _ = write!(
                    boxes,
                    "<label><input type=\"checkbox\" name=\"permissions\" value=\"{0}\" checked> \
                     {0}</label>",
                    escape(permission.as_str())
                );
            }
            let _ = write!(
                content,
                "<h2>Decide</h2>\n<form method=\"post\" action=\"{0}/approve\">{1}\
                 <fieldset><legend>Permissions to grant</legend>{boxes}</fieldset>\
                 <label>Approval ends (UTC, optional)<input type=\"datetime-local\" \
                 name=\"expires_at\"></label>\
                 <div class=\"actions\"><button type=\"submit\">Approve</button></div></form>\n\
                 <div class=\"actions\">{2}</div>\n",
                escape(&path),
                html::csrf_field(caller),
                post_button(caller, &format!("{path}/reject"), "Reject", "danger", ""),
            );
        }
        ClaimStatus::Approved => {
            let _ = write!(
                content,
                "<h2>Revoke</h2>\n<p>Revoking ends the agent's client ID at once.</p>\n\
                 <div class=\"actions\">{}</div>\n",
                post_button(caller, &format!("{path}/revoke"), "Revoke", "danger", "")
            );
        }
        _ => {}
    }
    content
}

fn claim_id(id: &str) -> Result<ClaimId, ApiError> {
    ClaimId::parse(id).map_err(|_| ApiError::not_found())
}

/// `POST /console/claims/{id}/approve`: fields `permissions` (repeated) and `expires_at`.
pub(crate) async fn approve(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    let location = format!("/console/claims/{id}");
    let outcome = async {
        let id = claim_id(&id)?;
        let expires_at = match form.get("expires_at") {
            Some(value) => Some(html::parse_instant(value).ok_or_else(|| {
                ApiError::invalid_field(
                    "expires_at",
                    "expires_at: expected a date and time, e.g. 2030-01-31T18:00 (UTC)",
                )
            })?),
            None => None,
        };
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
    }
    .await;
    after_change(&state, &location, outcome, |approved| {
        format!(
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
        )
    })
}

/// `POST /console/claims/{id}/reject`.
pub(crate) async fn reject(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    let location = format!("/console/claims/{id}");
    let outcome = async {
        let id = claim_id(&id)?;
        Ok::<_, ApiError>(
            state
                .mandate
                .reject_claim(&caller.principal, &id, mandate_domain::now())
                .await?,
        )
    }
    .await;
    after_change(&state, &location, outcome, |claim| {
        format!("Rejected the claim of {}.", claim.agent_name)
    })
}

/// `POST /console/claims/{id}/revoke`.
pub(crate) async fn revoke(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    let location = format!("/console/claims/{id}");
    let outcome = async {
        let id = claim_id(&id)?;
        Ok::<_, ApiError>(
            state
                .mandate
                .revoke_claim(&caller.principal, &id, mandate_domain::now())
                .await?,
        )
    }
    .await;
    after_change(&state, &location, outcome, |claim| {
        format!(
            "Revoked {}: its client ID no longer works.",
            claim.agent_name
        )
    })
}
