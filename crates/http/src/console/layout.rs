//! The console's page shapes, as templates: one document (the payment page's styles, with a
//! navigation bar and the flash), forms that always carry the session's CSRF token, and the
//! error page. Every value is HTML-escaped by the template engine.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use mandate_domain::principal::Principal;
use maud::{DOCTYPE, Markup, html};

use super::{Caller, Flash};
use crate::error::ApiError;
use crate::handlers::pay::head;
pub(crate) use crate::handlers::pay::time_element;

// Over the payment page's phone-first column: wider on a desktop, rows that wrap on a phone,
// buttons large enough for a thumb.
const CONSOLE_STYLE: &str = "\
main{max-width:960px}\
nav{max-width:960px;margin:0 auto 12px;display:flex;flex-wrap:wrap;gap:8px 16px;\
align-items:center;font-size:16px}\
nav a{color:#1e3a8a;font-weight:600}\
nav .who{margin-left:auto;color:#4b5563;overflow-wrap:anywhere}\
nav form{margin:0}\
.flash{max-width:960px;margin:0 auto 12px;padding:12px 14px;border-radius:10px;font-weight:600}\
.secret{user-select:all;background:#fff;padding:8px;border-radius:6px}\
.flash p{margin:4px 0}\
.done{background:#dcfce7;color:#14532d}\
.refused{background:#fee2e2;color:#7f1d1d}\
.warning{background:#fef3c7;color:#78350f}\
ul.rows{list-style:none;margin:8px 0 0;padding:0}\
ul.rows li{padding:12px 0;border-top:1px solid #e5e7eb;display:flex;flex-wrap:wrap;gap:4px 12px;\
align-items:baseline}\
ul.rows li a{font-weight:600;overflow-wrap:anywhere}\
.muted{color:#4b5563;font-size:15px}\
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:15px;\
overflow-wrap:anywhere}\
form.inline{display:inline}\
fieldset{border:1px solid #d1d5db;border-radius:10px;margin:12px 0;padding:10px 14px}\
label{display:block;margin:8px 0}\
input[type=text],input[type=password],input[type=datetime-local],select{width:100%;\
max-width:420px;padding:10px;font-size:17px;border:1px solid #9ca3af;border-radius:8px}\
button{min-height:44px;padding:8px 18px;font-size:17px;font-weight:600;border-radius:8px;\
border:1px solid #1e3a8a;background:#1e3a8a;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1e3a8a}\
button.danger{background:#991b1b;border-color:#991b1b}\
.actions{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}\
h1.mono{font-size:22px}\
h2{margin-top:22px}";

/// A whole console page: navigation for a signed-in `caller`, the flash, then `content`.
pub(crate) fn document(
    title: &str,
    caller: Option<&Caller>,
    flash: Option<&Flash>,
    content: Markup,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · Mandate console"), CONSOLE_STYLE))
            body {
                @if let Some(caller) = caller {
                    nav {
                        a href="/console/claims" { "Claims" }
                        a href="/console/client-ids" { "Client IDs" }
                        a href="/console/webhooks" { "Webhooks" }
                        a href="/console/requests" { "Payments" }
                        a href="/console/ledger" { "Ledger" }
                        span.who { (who(&caller.principal)) }
                        (post_button(caller, "/console/logout", "Sign out", "secondary", html! {}))
                    }
                }
                @match flash {
                    Some(Flash::Done(text)) => p.flash.done role="status" { (text) },
                    Some(Flash::Refused(text)) => p.flash.refused role="alert" { (text) },
                    Some(Flash::Reveal { text, secret, warning }) => {
                        div.flash.done role="status" {
                            p { (text) }
                            p.mono.secret { (secret) }
                            p.muted { "Copy it now: it is not shown again." }
                        }
                        @if let Some(warning) = warning {
                            p.flash.warning role="alert" { "Warning: " (warning) }
                        }
                    },
                    None => {},
                }
                main { (content) }
            }
        }
    }
    .into_string()
}

/// Who is signed in, as the navigation says it.
fn who(principal: &Principal) -> String {
    match principal {
        Principal::Platform {
            organization_id, ..
        } => format!("Platform key of {organization_id}"),
        Principal::Destination { destination_id, .. } => {
            format!("Destination key of {destination_id}")
        }
        other => other.kind().to_string(),
    }
}

/// The hidden field that every changing form carries.
pub(crate) fn csrf_field(caller: &Caller) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(caller.csrf_token); }
}

/// A form of one button that POSTs to `action`, with `fields` (hidden ones) beside the token.
pub(crate) fn post_button(
    caller: &Caller,
    action: &str,
    label: &str,
    class: &str,
    fields: Markup,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(caller))
            (fields)
            button type="submit" class=(class) { (label) }
        }
    }
}

/// `<time>` for an optional instant.
pub(crate) fn when(at: Option<DateTime<Utc>>, otherwise: &str) -> Markup {
    match at {
        Some(at) => time_element(at),
        None => html! { (otherwise) },
    }
}

/// A refusal as a page: its status, and its message in the API's wording.
pub(crate) fn error_page(error: &ApiError) -> HttpResponse {
    let status = error.status_code();
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        status if status.is_server_error() => "Something went wrong",
        _ => "Cannot do this",
    };
    let content = html! {
        h1 { (heading) }
        p { (error.message()) }
        p { a href="/console/claims" { "Back to the console" } }
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(document(heading, None, None, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape_the_message_and_keep_the_status() {
        let response = error_page(&ApiError::forbidden("<b>no</b>"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = document("t", None, Some(&Flash::Refused("<i>".into())), html! {});
        assert!(body.contains("&lt;i&gt;"));
        assert!(!body.contains("<i>"));
        assert!(!body.contains("<script"));
    }
}
