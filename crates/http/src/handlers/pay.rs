//! The public page behind a payment link: server-rendered HTML for payers, or JSON for
//! programs that ask for it. Holding the token is the only authorization.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use mandate_domain::payments::RequestStatus;
use mandate_domain::usecases::{PaymentPage, PaymentPageError};
use mandate_domain::values::Total;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::state::State;

/// What a payment link shows, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPageView {
    /// `open`, `partially_paid`, `paid`, `cancelled` or `expired`.
    pub status: &'static str,
    /// What is asked, a decimal string.
    pub amount: String,
    /// In what.
    pub currency: String,
    /// What has been reported paid so far, a decimal string (may exceed `amount`).
    pub amount_paid: String,
    /// The payment reference to quote.
    pub reference: Option<String>,
    /// What the payment is for, free text.
    pub description: Option<String>,
    /// RFC 3339, UTC.
    pub due_at: Option<DateTime<Utc>>,
    /// Whom the payer pays.
    pub destination: PaymentPageDestination,
    /// When the link stops working; RFC 3339, UTC.
    pub expires_at: DateTime<Utc>,
}

/// The payee, as a payer sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPageDestination {
    /// The destination's display name.
    pub display_name: String,
    /// Where to send the money, free text.
    pub payment_address: Option<String>,
}

impl From<&PaymentPage> for PaymentPageView {
    fn from(page: &PaymentPage) -> Self {
        let request = &page.request;
        Self {
            status: request.status.as_str(),
            amount: request.amount.to_string(),
            currency: request.currency.as_str().to_owned(),
            amount_paid: request.amount_paid.to_string(),
            reference: request.reference.clone(),
            description: request.description.clone(),
            due_at: request.due_at,
            destination: PaymentPageDestination {
                display_name: page.destination.display_name.clone(),
                payment_address: page.destination.payment_address.clone(),
            },
            expires_at: page.link.expires_at,
        }
    }
}

/// Shows a payment link: HTML by default, JSON when `Accept` prefers `application/json`.
#[utoipa::path(get, path = "/pay/{token}", tag = "payment links",
    params(("token" = String, Path, description = "the link's token, the last segment of its url")),
    responses(
        (status = 200, description = "the payment request behind the link", content(
            (PaymentPageView = "application/json"), (String = "text/html"))),
        (status = 404, description = "no link has this token", body = ErrorEnvelope),
        (status = 410, description = "the link has expired", body = ErrorEnvelope),
        (status = 500, description = "something went wrong on our side", body = ErrorEnvelope),
        (status = 503, description = "the database cannot be reached now", body = ErrorEnvelope)))]
pub async fn page(state: State, request: HttpRequest, token: web::Path<String>) -> HttpResponse {
    let json = wants_json(&request);
    let mut response = match state
        .mandate
        .payment_page(&token, mandate_domain::now())
        .await
    {
        Ok(page) if json => HttpResponse::Ok().json(PaymentPageView::from(&page)),
        Ok(page) => html_answer(StatusCode::OK, render_page(&page)),
        Err(error) => error_response(error, json),
    };
    harden(&mut response);
    response
}

fn error_response(error: PaymentPageError, json: bool) -> HttpResponse {
    match error {
        PaymentPageError::NotFound if json => ApiError::not_found().error_response(),
        PaymentPageError::NotFound => html_answer(
            StatusCode::NOT_FOUND,
            render_notice(
                "Payment link not found",
                "Check that you opened the whole link, or ask the sender for a new one.",
            ),
        ),
        PaymentPageError::Gone if json => {
            ApiError::gone("this payment link has expired").error_response()
        }
        PaymentPageError::Gone => html_answer(
            StatusCode::GONE,
            render_notice(
                "This payment link has expired",
                "Ask the sender for a new payment link.",
            ),
        ),
        PaymentPageError::Store(error) => {
            // The conversion logs the cause and picks 503 (unreachable) or 500.
            let error = ApiError::from(error);
            let status = error.status_code();
            if json {
                error.error_response()
            } else if status == StatusCode::SERVICE_UNAVAILABLE {
                html_answer(
                    status,
                    render_notice(
                        "Temporarily unavailable",
                        "This page cannot be shown right now. Please try again in a moment.",
                    ),
                )
            } else {
                html_answer(
                    status,
                    render_notice(
                        "Something went wrong",
                        "This page cannot be shown right now. Please try again later.",
                    ),
                )
            }
        }
    }
}

fn html_answer(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(body)
}

/// Headers on every answer: the URL holds a secret, so nothing is cached, leaked through
/// `Referer`, framed, or allowed to load anything but the inline style.
fn harden(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
        (header::VARY, "Accept"),
        (header::HeaderName::from_static("x-robots-tag"), "noindex"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Whether `Accept` prefers `application/json` to `text/html` (RFC 9110 §12.5.1): each type
/// takes the quality of the most specific range that matches it; the higher quality wins, and
/// at equal quality the more specific match (so `application/json, */*` gets JSON). Anything
/// else, including no `Accept` at all and what browsers send, gets the page.
fn wants_json(request: &HttpRequest) -> bool {
    let ranges: Vec<MediaRange> = request
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(MediaRange::parse)
        .collect();
    if ranges.is_empty() {
        return false;
    }
    let json = preference(&ranges, "application", "json");
    let html = preference(&ranges, "text", "html");
    json.quality > 0 && (json.quality, json.specificity) > (html.quality, html.specificity)
}

/// One entry of `Accept`, lower-cased, with its quality in thousandths.
struct MediaRange {
    kind: String,
    subtype: String,
    quality: u16,
}

#[derive(Clone, Copy, Default)]
struct Preference {
    quality: u16,
    specificity: u8,
}

impl MediaRange {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let mut quality = 1000;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    // A malformed weight makes the whole range unusable.
                    quality = parse_quality(value.trim())?;
                }
            }
        }
        Some(Self {
            kind: kind.trim().to_ascii_lowercase(),
            subtype: subtype.trim().to_ascii_lowercase(),
            quality,
        })
    }

    /// 2 for an exact match, 1 for `type/*`, 0 for `*/*`; `None` when it does not match.
    fn specificity(&self, kind: &str, subtype: &str) -> Option<u8> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => Some(0),
            (k, "*") if k == kind => Some(1),
            (k, s) if k == kind && s == subtype => Some(2),
            _ => None,
        }
    }
}

fn preference(ranges: &[MediaRange], kind: &str, subtype: &str) -> Preference {
    ranges
        .iter()
        .filter_map(|range| {
            range
                .specificity(kind, subtype)
                .map(|specificity| Preference {
                    quality: range.quality,
                    specificity,
                })
        })
        .max_by_key(|preference| preference.specificity)
        .unwrap_or_default()
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_quality(text: &str) -> Option<u16> {
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match integer {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn human_time(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y, %H:%M UTC").to_string()
}

/// `<time>` with a machine-readable value.
pub(crate) fn time_element(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (human_time(at)) }
    }
}

/// Badge class, badge text, and for a finished request what the payer must know.
fn status_wording(
    status: RequestStatus,
) -> (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
) {
    match status {
        RequestStatus::Open => ("open", "Awaiting payment", None),
        RequestStatus::PartiallyPaid => ("partial", "Partially paid", None),
        RequestStatus::Paid => (
            "paid",
            "Paid",
            Some((
                "This request has been paid",
                "No further payment is needed.",
            )),
        ),
        RequestStatus::Cancelled => (
            "closed",
            "Cancelled",
            Some(("This request has been cancelled", "Do not send a payment.")),
        ),
        RequestStatus::Expired => (
            "closed",
            "Expired",
            Some(("This request has expired", "Do not send a payment.")),
        ),
    }
}

// Phone first: one readable column, large type, high contrast, nothing fetched.
const STYLE: &str = "\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}\
body{margin:0;padding:16px;background:#eef1f5;color:#111827;\
font:18px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,sans-serif}\
main{max-width:480px;margin:0 auto;background:#fff;border-radius:16px;padding:24px 20px;\
box-shadow:0 1px 3px rgba(17,24,39,.15)}\
.eyebrow{margin:0;font-size:15px;color:#4b5563}\
h1{margin:2px 0 14px;font-size:26px;line-height:1.25;overflow-wrap:anywhere}\
.badge{display:inline-block;padding:3px 12px;border-radius:999px;font-size:15px;font-weight:700}\
.open{background:#dbeafe;color:#1e3a8a}\
.partial{background:#fef3c7;color:#78350f}\
.paid{background:#dcfce7;color:#14532d}\
.closed{background:#e5e7eb;color:#1f2937}\
.notice{margin:16px 0 0;padding:12px 14px;border-radius:10px}\
.notice strong{display:block;font-size:19px}\
.amount{margin:20px 0 0;font-size:40px;font-weight:800;line-height:1.15;overflow-wrap:anywhere}\
.currency{font-size:22px;font-weight:700;color:#374151}\
.sub{margin:4px 0 0;color:#374151}\
dl{margin:8px 0 0}\
dt{margin-top:18px;font-size:15px;font-weight:600;color:#4b5563}\
dd{margin:4px 0 0}\
.box{padding:12px 14px;border:1px solid #d1d5db;border-radius:10px;background:#f3f4f6;\
font:500 17px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,\"Liberation Mono\",monospace;\
overflow-wrap:anywhere;word-break:break-all;-webkit-user-select:all;user-select:all}\
.hint{margin:6px 0 0;font-size:15px;color:#4b5563}\
.qr{margin:12px 0 0;text-align:center}\
.qr svg{width:100%;max-width:240px;height:auto}\
footer{max-width:480px;margin:14px auto 0;text-align:center;font-size:14px;color:#4b5563}\
footer time{white-space:nowrap}\
h2{margin:0 0 8px;font-size:24px}\
p{overflow-wrap:anywhere}";

/// The `<head>` of every page, the payer's and the console's: a phone's width, not indexed, no
/// `Referer`, and the styles inline (these, then `more_style`).
pub(crate) fn head(title: &str, more_style: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex, nofollow";
            meta name="referrer" content="no-referrer";
            title { (title) }
            style { (PreEscaped(STYLE)) (PreEscaped(more_style)) }
        }
    }
}

fn document(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, ""))
            body { (body) }
        }
    }
    .into_string()
}

fn render_notice(heading: &str, text: &str) -> String {
    document(
        heading,
        html! {
            main {
                h2 { (heading) }
                p { (text) }
            }
        },
    )
}

/// The address as a QR code for a wallet or banking app to scan: an inline `<svg>` drawn
/// here, so the page still fetches and runs nothing. `None` past what a QR code holds.
fn qr_code(address: &str) -> Option<Markup> {
    let code = QrCode::new(address.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color>()
        .module_dimensions(1, 1)
        .dark_color(svg::Color("#111827"))
        .light_color(svg::Color("#ffffff"))
        .build();
    // An XML declaration has no place inside an HTML document.
    let start = image.find("<svg ")?;
    // The renderer's own markup, made of numbers and fixed colours only.
    let svg = PreEscaped(format!(
        "<svg role=\"img\" aria-label=\"QR code of the payment address\" {}",
        &image[start + "<svg ".len()..]
    ));
    Some(html! { div.qr { (svg) } })
}

fn render_page(page: &PaymentPage) -> String {
    let request = &page.request;
    let name = &page.destination.display_name;
    let currency = request.currency.as_str();
    let (class, badge, finished) = status_wording(request.status);
    // Shown whenever it tells something the amount does not: a part payment or an excess.
    let paid_so_far = (request.amount_paid != Total::ZERO
        && !request.amount_paid.is_exactly(request.amount))
    .then_some(request.amount_paid);
    let address_label = if finished.is_some() {
        "Payment address"
    } else {
        "Send payment to"
    };
    let body = html! {
        main {
            p.eyebrow { "Payment request from" }
            h1 { (name) }
            span class={ "badge " (class) } { (badge) }
            @if let Some((headline, advice)) = finished {
                p class={ "notice " (class) } { strong { (headline) } (advice) }
            }
            p.amount { (request.amount.to_string()) " " span.currency { (currency) } }
            @if let Some(paid) = paid_so_far {
                p.sub { "Amount paid so far: " (paid.to_string()) " " (currency) }
            }
            dl {
                @if let Some(description) = &request.description {
                    dt { "Description" }
                    dd { (description) }
                }
                @if let Some(reference) = &request.reference {
                    dt { "Payment reference to quote" }
                    dd {
                        div.box { (reference) }
                        // The advice only matters while a payment is still expected.
                        @if finished.is_none() {
                            p.hint { "Include it with your payment so that it can be matched." }
                        }
                    }
                }
                @if let Some(due_at) = request.due_at {
                    dt { "Due" }
                    dd { (time_element(due_at)) }
                }
                dt { (address_label) }
                @match &page.destination.payment_address {
                    Some(address) => dd {
                        div.box { (address) }
                        // A finished request asks for no payment, so nothing invites a scan.
                        @if let (None, Some(qr)) = (finished, qr_code(address)) {
                            (qr)
                        }
                    },
                    None => dd {
                        "No payment address has been given. Please contact " (name) "."
                    },
                }
            }
        }
        footer { "This link expires on " (time_element(page.link.expires_at)) "." }
    };
    document(&format!("Payment request from {name}"), body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::TestRequest;

    use super::*;

    fn json_for(accept: &[&str]) -> bool {
        let mut request = TestRequest::default();
        for value in accept {
            request = request.append_header((header::ACCEPT, *value));
        }
        wants_json(&request.to_http_request())
    }

    #[test]
    fn json_only_when_preferred_to_html() {
        assert!(json_for(&["application/json"]));
        assert!(json_for(&["Application/JSON; charset=utf-8"]));
        assert!(json_for(&["application/json, text/plain, */*"]));
        assert!(json_for(&["text/html;q=0.5, application/json"]));
        assert!(json_for(&["text/*;q=0.1", "application/*"]));
        assert!(!json_for(&[]));
        assert!(!json_for(&["*/*"]));
        assert!(!json_for(&["text/html"]));
        assert!(!json_for(&["application/json, text/html"]));
        assert!(!json_for(&["application/json;q=0.5, text/html"]));
        assert!(!json_for(&["application/json;q=0"]));
        assert!(!json_for(&["application/json;q=2"]));
        assert!(!json_for(&["garbage"]));
        // What browsers send.
        assert!(!json_for(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
        ]));
    }

    #[test]
    fn qvalues_follow_the_grammar() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.8"), Some(800));
        assert_eq!(parse_quality("0.125"), Some(125));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("1.5"), None);
        assert_eq!(parse_quality("0.1234"), None);
        assert_eq!(parse_quality("-0"), None);
        assert_eq!(parse_quality("x"), None);
    }

    #[test]
    fn times_read_as_utc() {
        let at = DateTime::parse_from_rfc3339("2030-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(human_time(at), "2 January 2030, 00:00 UTC");
        assert_eq!(
            time_element(at).into_string(),
            "<time datetime=\"2030-01-02T00:00:00Z\">2 January 2030, 00:00 UTC</time>"
        );
    }

    #[test]
    fn qr_codes_are_bare_inline_svg() {
        let address = "eip155:8453:0x52908400098527886E0F7030069857D2E4169EE7";
        let qr = qr_code(address).unwrap().into_string();
        assert!(
            qr.starts_with(
                "<div class=\"qr\"><svg role=\"img\" aria-label=\"QR code of the payment address\" xmlns="
            ),
            "{qr}"
        );
        assert!(qr.ends_with("</svg></div>"), "{qr}");
        assert!(!qr.contains("<?xml"), "{qr}");
        // One unit per module, with the four-module quiet zone on each side.
        let side = QrCode::new(address).unwrap().width() + 8;
        assert!(
            qr.contains(&format!("viewBox=\"0 0 {side} {side}\"")),
            "{qr}"
        );
        // Different addresses draw different codes.
        assert_ne!(qr_code("IBAN DE00 1234").unwrap().into_string(), qr);
        // Past the capacity of the largest QR code there is none to draw.
        assert!(qr_code(&"9".repeat(8000)).is_none());
    }

    #[test]
    fn notices_are_escaped_documents() {
        let page = render_notice("<b>", "a & b");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<h2>&lt;b&gt;</h2>"));
        assert!(page.contains("<p>a &amp; b</p>"));
        assert!(page.contains("<title>&lt;b&gt;</title>"));
        assert!(!page.contains("<script"));
    }
}
