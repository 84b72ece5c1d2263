//! The ledger: the caller's entries, newest first, and the result of verifying the chain.

use actix_web::{HttpRequest, HttpResponse};
use mandate_domain::ports::PageRequest;
use maud::html;

use super::claims::fingerprint;
use super::layout::{self, time_element};
use super::{Caller, signed_in_page};
use crate::error::ApiError;
use crate::state::State;

/// `GET /console/ledger`.
pub(crate) async fn show(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let read = async {
        let check = state.mandate.verify_ledger(&caller.principal).await?;
        let entries = state
            .mandate
            .ledger(
                &caller.principal,
                &PageRequest {
                    limit: PageRequest::MAX_LIMIT,
                    starting_after: None,
                },
            )
            .await?;
        Ok::<_, ApiError>((check, entries))
    }
    .await;
    let (check, entries) = match read {
        Ok(read) => read,
        Err(error) => return layout::error_page(&error),
    };
    let (class, verdict) = if check.valid {
        (
            "done",
            "The chain verifies: no entry was changed, removed or reordered.",
        )
    } else {
        (
            "refused",
            "The chain does NOT verify: an entry was changed, removed or reordered.",
        )
    };
    let content = html! {
        h1 { "Ledger" }
        p class={ "flash " (class) } { (verdict) }
        dl {
            dt { "Entries checked" } dd { (check.entries) }
            dt { "Newest hash" } dd.mono { (check.head.as_deref().unwrap_or("none")) }
        }
        h2 { "Entries" }
        ul.rows {
            @for entry in &entries.data {
                li {
                    span { "#" (entry.seq) }
                    span.badge.closed { (entry.action.as_str()) }
                    a.mono href={ "/console/claims/" (entry.claim_id.as_str()) } { (entry.claim_id.as_str()) }
                    span.muted.mono { (fingerprint(&entry.public_key)) }
                    span.muted { (time_element(entry.at)) }
                }
            }
            @if entries.data.is_empty() {
                li.muted { "No approval or revocation yet." }
            }
        }
    };
    signed_in_page(&request, &caller, "Ledger", None, content)
}
