//! The ledger: the caller's entries, newest first, and the result of verifying the chain.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use mandate_domain::ports::PageRequest;

use super::claims::fingerprint;
use super::html::{self, escape};
use super::{Caller, page};
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
        Err(error) => return html::error_page(&error),
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
    let mut content = format!(
        "<h1>Ledger</h1>\n<p class=\"flash {class}\">{}</p>\n<dl>\n<dt>Entries checked</dt>\
         <dd>{}</dd>\n<dt>Newest hash</dt><dd class=\"mono\">{}</dd>\n</dl>\n\
         <h2>Entries</h2>\n<ul class=\"rows\">\n",
        escape(verdict),
        check.entries,
        escape(check.head.as_deref().unwrap_or("none")),
    );
    for entry in &entries.data {
        // Writing to a String cannot fail.
        let _ = writeln!(
            content,
            "<li><span>#{}</span><span class=\"badge closed\">{}</span><a class=\"mono\" \
             href=\"/console/claims/{2}\">{2}</a><span class=\"muted mono\">{3}</span>\
             <span class=\"muted\">{4}</span></li>",
            entry.seq,
            entry.action.as_str(),
            escape(entry.claim_id.as_str()),
            escape(&fingerprint(&entry.public_key)),
            html::at(entry.at),
        );
    }
    if entries.data.is_empty() {
        content.push_str("<li class=\"muted\">No approval or revocation yet.</li>\n");
    }
    content.push_str("</ul>\n");
    page(
        &request,
        StatusCode::OK,
        html::document("Ledger", Some(&caller), None, &content),
    )
}
