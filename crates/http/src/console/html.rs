//! The console's HTML: one document shape (the payment page's styles and escaping, with a
//! navigation bar and the flash), forms that always carry the session's CSRF token, and the
//! error page.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, NaiveDateTime, Utc};
use mandate_domain::principal::Principal;

pub(crate) use crate::handlers::pay::escape;
use crate::handlers::pay::{STYLE, time_element};

use super::{Caller, Flash};
use crate::error::ApiError;

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
    content: &str,
) -> String {
    let mut body = String::new();
    if let Some(caller) = caller {
        // Writing to a String cannot fail.
        let _ = writeln!(
            body,
            "<nav><a href=\"/console/claims\">Claims</a><a href=\"/console/client-ids\">Client \
             IDs</a><a href=\"/console/webhooks\">Webhooks</a><a \
             href=\"/console/requests\">Payments</a><a href=\"/console/ledger\">Ledger</a><span class=\"who\">{}</span>{}\
             </nav>",
            escape(&who(&caller.principal)),
            post_button(caller, "/console/logout", "Sign out", "secondary", "")
        );
    }
    match flash {
        Some(Flash::Done(text)) => {
            let _ = writeln!(
                body,
                "<p class=\"flash done\" role=\"status\">{}</p>",
                escape(text)
            );
        }
        Some(Flash::Refused(text)) => {
            let _ = writeln!(
                body,
                "<p class=\"flash refused\" role=\"alert\">{}</p>",
                escape(text)
            );
        }
        Some(Flash::Reveal { text, secret }) => {
            let _ = writeln!(
                body,
                "<div class=\"flash done\" role=\"status\"><p>{}</p><p class=\"mono secret\">{}</p>\
                 <p class=\"muted\">Copy it now: it is not shown again.</p></div>",
                escape(text),
                escape(secret)
            );
        }
        None => {}
    }
    let _ = write!(body, "<main>\n{content}</main>\n");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{} · Mandate console</title>\n<style>{STYLE}{CONSOLE_STYLE}</style>\n</head>\n\
         <body>\n{body}</body>\n</html>\n",
        escape(title)
    )
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
pub(crate) fn csrf_field(caller: &Caller) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        escape(&caller.csrf_token)
    )
}

/// A form of one button that POSTs to `action`, with `hidden` (already escaped) fields.
pub(crate) fn post_button(
    caller: &Caller,
    action: &str,
    label: &str,
    class: &str,
    hidden: &str,
) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}{hidden}<button type=\"submit\" \
         class=\"{}\">{}</button></form>",
        escape(action),
        csrf_field(caller),
        escape(class),
        escape(label)
    )
}

/// A hidden field.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// `<time>` for an optional instant.
pub(crate) fn when(at: Option<DateTime<Utc>>, otherwise: &str) -> String {
    at.map_or_else(|| escape(otherwise), time_element)
}

/// `<time>` for an instant.
pub(crate) fn at(at: DateTime<Utc>) -> String {
    time_element(at)
}

/// An instant from a form: `datetime-local` (read as UTC) or RFC 3339.
pub(crate) fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
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
    let content = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/console/claims\">Back to the console</a></p>\n",
        escape(heading),
        escape(error.message())
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(document(heading, None, None, &content))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn form_instants_read_as_utc() {
        let at = parse_instant("2030-01-31T18:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2030-01-31T18:00:00+00:00");
        assert_eq!(parse_instant("2030-01-31T19:00:00+01:00"), Some(at));
        assert_eq!(parse_instant("tomorrow"), None);
    }

    #[test]
    fn error_pages_escape_the_message_and_keep_the_status() {
        let response = error_page(&ApiError::forbidden("<b>no</b>"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = document("t", None, Some(&Flash::Refused("<i>".into())), "");
        assert!(body.contains("&lt;i&gt;"));
        assert!(!body.contains("<script"));
    }
}
