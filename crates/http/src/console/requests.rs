//! Payment requests: the list with the API's filters and cursor; one request with its
//! payments and events; creating a payment link (shown once, on the page after the redirect)
//! and recording a payment — through the API's use cases.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::RequestId;
use mandate_domain::payments::{Direction, PaymentLink, PaymentRequest, RequestStatus};
use mandate_domain::usecases::RequestHistory;

use super::html::{self, escape};
use super::{Caller, Flash, Form, after_change, page, refused, reveal};
use crate::error::ApiError;
use crate::handlers::requests::{RequestListParams, payment_link_url};
use crate::state::State;

const LIST: &str = "/console/requests";

/// The list's query string as the API reads it; a filter left at "any" (empty) is no filter.
fn list_params(query: &str) -> Result<RequestListParams, ApiError> {
    let mut params = RequestListParams {
        direction: None,
        status: None,
        customer_id: None,
        destination_id: None,
        limit: None,
        starting_after: None,
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim().to_owned();
        if value.is_empty() {
            continue;
        }
        match name.as_ref() {
            "direction" => params.direction = Some(value),
            "status" => params.status = Some(value),
            "customer_id" => params.customer_id = Some(value),
            "destination_id" => params.destination_id = Some(value),
            "limit" => {
                params.limit = Some(value.parse().map_err(|_| {
                    ApiError::invalid_field("limit", "limit must be between 1 and 100")
                })?);
            }
            "starting_after" => params.starting_after = Some(value),
            other => {
                return Err(ApiError::invalid_field(
                    other,
                    format!("unknown query parameter {other}"),
                ));
            }
        }
    }
    Ok(params)
}

fn select(name: &str, label: &str, options: &[&str], chosen: Option<&str>) -> String {
    let mut field = format!(
        "<label>{}<select name=\"{}\"><option value=\"\">any</option>",
        escape(label),
        escape(name)
    );
    for option in options {
        let selected = if chosen == Some(*option) {
            " selected"
        } else {
            ""
        };
        // Writing to a String cannot fail.
        let _ = write!(
            field,
            "<option value=\"{0}\"{selected}>{0}</option>",
            escape(option)
        );
    }
    field.push_str("</select></label>");
    field
}

fn amount(request: &PaymentRequest) -> String {
    format!("{} {}", request.amount, request.currency.as_str())
}

/// `GET /console/requests`: newest first, with `direction`, `status`, `customer_id`,
/// `destination_id`, `limit` and the `starting_after` cursor.
pub(crate) async fn list(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let params = match list_params(request.query_string()) {
        Ok(params) => params,
        Err(error) => return html::error_page(&error),
    };
    let chosen_direction = params.direction.clone();
    let chosen_status = params.status.clone();
    let chosen_customer = params.customer_id.clone();
    let chosen_destination = params.destination_id.clone();
    let listed = async {
        let (filter, page_request) = params.query()?;
        Ok::<_, ApiError>(
            state
                .mandate
                .list_requests(
                    &caller.principal,
                    &filter,
                    &page_request,
                    mandate_domain::now(),
                )
                .await?,
        )
    }
    .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(error) => return html::error_page(&error),
    };
    let directions: Vec<&str> = Direction::ALL.iter().map(|d| d.as_str()).collect();
    let statuses: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
    let mut content = format!(
        "<h1>Payment requests</h1>\n<form method=\"get\" action=\"{LIST}\">{}{}\
         <label>Customer id<input type=\"text\" name=\"customer_id\" value=\"{}\"></label>\
         <label>Destination id<input type=\"text\" name=\"destination_id\" value=\"{}\"></label>\
         <div class=\"actions\"><button type=\"submit\" class=\"secondary\">Filter</button></div>\
         </form>\n<ul class=\"rows\">\n",
        select(
            "direction",
            "Direction",
            &directions,
            chosen_direction.as_deref()
        ),
        select("status", "Status", &statuses, chosen_status.as_deref()),
        escape(chosen_customer.as_deref().unwrap_or_default()),
        escape(chosen_destination.as_deref().unwrap_or_default()),
    );
    for payment_request in &listed.data {
        let _ = writeln!(
            content,
            "<li><a class=\"mono\" href=\"{LIST}/{0}\">{0}</a><span class=\"badge closed\">{1}\
             </span><span>{2} · {3}</span><span class=\"muted\">{4}</span></li>",
            escape(payment_request.id.as_str()),
            payment_request.status.as_str(),
            payment_request.direction.as_str(),
            escape(&amount(payment_request)),
            html::at(payment_request.created_at),
        );
    }
    if listed.data.is_empty() {
        content.push_str("<li class=\"muted\">No payment request matches.</li>\n");
    }
    content.push_str("</ul>\n");
    if let (true, Some(last)) = (listed.has_more, listed.data.last()) {
        let mut next = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("direction", &chosen_direction),
            ("status", &chosen_status),
            ("customer_id", &chosen_customer),
            ("destination_id", &chosen_destination),
        ] {
            if let Some(value) = value {
                next.append_pair(name, value);
            }
        }
        next.append_pair("starting_after", last.id.as_str());
        let _ = writeln!(
            content,
            "<div class=\"actions\"><a href=\"{LIST}?{}\">Older requests</a></div>",
            escape(&next.finish())
        );
    }
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document("Payment requests", Some(&caller), flash.as_ref(), &content),
    )
}

fn request_id(id: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(id).map_err(|_| ApiError::not_found())
}

/// `GET /console/requests/{id}`: the request, its payments and its events, and the forms that
/// create a payment link and record a payment.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let found = async {
        Ok::<_, ApiError>(
            state
                .mandate
                .request_history(&caller.principal, &request_id(&id)?, mandate_domain::now())
                .await?,
        )
    }
    .await;
    let history = match found {
        Ok(found) => found,
        Err(error) => return html::error_page(&error),
    };
    let mut content = render_request(&history.request);
    content.push_str(&render_history(&history));
    content.push_str(&action_forms(&caller, &history.request));
    let flash = Flash::shown_to(&request, &state, &caller);
    page(
        &request,
        StatusCode::OK,
        html::document("Payment request", Some(&caller), flash.as_ref(), &content),
    )
}

fn render_request(payment_request: &PaymentRequest) -> String {
    let optional = |value: Option<&str>| escape(value.unwrap_or("none"));
    let mut content = format!(
        "<p class=\"eyebrow\">Payment request</p>\n<h1 class=\"mono\">{}</h1>\n\
         <span class=\"badge closed\">{}</span>\n<dl>\n\
         <dt>Direction</dt><dd>{}</dd>\n<dt>Amount</dt><dd>{}</dd>\n\
         <dt>Paid so far</dt><dd>{} {}</dd>\n<dt>Destination</dt><dd class=\"mono\">{}</dd>\n\
         <dt>Customer</dt><dd class=\"mono\">{}</dd>\n<dt>Reference</dt><dd>{}</dd>\n\
         <dt>Description</dt><dd>{}</dd>\n<dt>Due</dt><dd>{}</dd>\n<dt>Expires</dt><dd>{}</dd>\n\
         <dt>Created by</dt><dd class=\"mono\">{}</dd>\n<dt>Created</dt><dd>{}</dd>\n\
         <dt>Last changed</dt><dd>{}</dd>\n",
        escape(payment_request.id.as_str()),
        payment_request.status.as_str(),
        payment_request.direction.as_str(),
        escape(&amount(payment_request)),
        escape(&payment_request.amount_paid.to_string()),
        escape(payment_request.currency.as_str()),
        escape(payment_request.destination_id.as_str()),
        optional(payment_request.customer_id.as_deref()),
        optional(payment_request.reference.as_deref()),
        optional(payment_request.description.as_deref()),
        html::when(payment_request.due_at, "none"),
        html::when(payment_request.expires_at, "never"),
        escape(&payment_request.created_by),
        html::at(payment_request.created_at),
        html::at(payment_request.updated_at),
    );
    for (key, value) in &payment_request.metadata {
        // Writing to a String cannot fail.
        let _ = writeln!(
            content,
            "<dt>Metadata {}</dt><dd>{}</dd>",
            escape(key),
            escape(value)
        );
    }
    content.push_str("</dl>\n");
    content
}

fn render_history(history: &RequestHistory) -> String {
    let currency = history.request.currency.as_str();
    let mut content = String::from("<h2>Payments</h2>\n<ul class=\"rows\">\n");
    for payment in &history.payments {
        let _ = writeln!(
            content,
            "<li><span class=\"mono\">{}</span><span>{} {}</span><span class=\"muted\">{} · \
             paid {} · by {}</span></li>",
            escape(payment.id.as_str()),
            escape(&payment.amount.to_string()),
            escape(currency),
            escape(&payment.reference),
            html::at(payment.paid_at),
            escape(&payment.created_by),
        );
    }
    if history.payments.is_empty() {
        content.push_str("<li class=\"muted\">No payment recorded yet.</li>\n");
    }
    content.push_str("</ul>\n<h2>Events</h2>\n<ul class=\"rows\">\n");
    for event in &history.events {
        let _ = writeln!(
            content,
            "<li><span class=\"mono\">{}</span><span class=\"muted mono\">{}</span>\
             <span class=\"muted\">{}</span></li>",
            escape(event.event_type.as_str()),
            escape(event.id.as_str()),
            html::at(event.created_at),
        );
    }
    if history.events.is_empty() {
        content.push_str("<li class=\"muted\">No event of this request in your feed.</li>\n");
    }
    content.push_str("</ul>\n");
    if !history.events_complete {
        content.push_str(
            "<p class=\"muted\">Older events of this request are in the feed \
             (<span class=\"mono\">GET /v1/events?type=payment_request.*</span>).</p>\n",
        );
    }
    content
}

fn action_forms(caller: &Caller, payment_request: &PaymentRequest) -> String {
    let path = format!("{LIST}/{}", payment_request.id);
    let day = 24 * 60 * 60;
    let mut lifetimes = String::new();
    for (seconds, label) in [
        (day, "1 day"),
        (PaymentLink::DEFAULT_LIFETIME_SECONDS, "7 days"),
        (PaymentLink::MAX_LIFETIME_SECONDS, "30 days"),
    ] {
        let selected = if seconds == PaymentLink::DEFAULT_LIFETIME_SECONDS {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            lifetimes,
            "<option value=\"{seconds}\"{selected}>{label}</option>"
        );
    }
    format!(
        "<h2>Payment link</h2>\n<form method=\"post\" action=\"{0}/payment-links\">{1}\
         <label>Valid for<select name=\"expires_in_seconds\">{lifetimes}</select></label>\
         <div class=\"actions\"><button type=\"submit\">Create a payment link</button></div>\
         </form>\n<h2>Record a payment</h2>\n<form method=\"post\" action=\"{0}/payments\">{1}\
         <label>Amount ({2})<input type=\"text\" name=\"amount\" inputmode=\"decimal\" required>\
         </label><label>Reference (a transaction hash, a bank reference)<input type=\"text\" \
         name=\"reference\" required spellcheck=\"false\"></label>\
         <label>Paid at (UTC, optional: now)<input type=\"datetime-local\" name=\"paid_at\">\
         </label><div class=\"actions\"><button type=\"submit\">Record</button></div></form>\n",
        escape(&path),
        html::csrf_field(caller),
        escape(payment_request.currency.as_str()),
    )
}

/// `POST /console/requests/{id}/payment-links`: field `expires_in_seconds` (optional). The
/// request's page then shows the link, once: it carries the token that opens it.
pub(crate) async fn create_payment_link(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = request_id(&id)?;
        let expires_in = form
            .get("expires_in_seconds")
            .map(|text| {
                text.parse::<i64>().map_err(|_| {
                    ApiError::invalid_field("expires_in_seconds", "must be between 1 and 2592000")
                })
            })
            .transpose()?;
        Ok::<_, ApiError>(
            state
                .mandate
                .create_payment_link(&caller.principal, &id, expires_in, mandate_domain::now())
                .await?,
        )
    }
    .await;
    match outcome {
        Ok((link, token)) => reveal(
            &state,
            &caller,
            &location,
            format!(
                "Created payment link {}, valid until {} UTC. Send the payer this address:",
                link.id,
                link.expires_at.format("%Y-%m-%d %H:%M")
            ),
            payment_link_url(&state, &token),
        ),
        Err(error) => refused(&state, &location, &error),
    }
}

/// `POST /console/requests/{id}/payments`: fields `amount`, `reference` and `paid_at`
/// (optional, read as UTC), validated as the API validates them.
pub(crate) async fn record_payment(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = request_id(&id)?;
        let paid_at = form
            .get("paid_at")
            .map(|value| {
                html::parse_instant(value).ok_or_else(|| {
                    ApiError::invalid_field(
                        "paid_at",
                        "paid_at: expected a date and time, e.g. 2030-01-31T18:00 (UTC)",
                    )
                })
            })
            .transpose()?;
        Ok::<_, ApiError>(
            state
                .mandate
                .report_payment(
                    &caller.principal,
                    &id,
                    form.get("amount").unwrap_or_default(),
                    form.get("reference").unwrap_or_default(),
                    paid_at,
                    mandate_domain::now(),
                )
                .await?,
        )
    }
    .await;
    after_change(&state, &location, outcome, |(payment, request)| {
        format!(
            "Recorded payment {} of {} {}: the request is {}, {} {} paid so far.",
            payment.id,
            payment.amount,
            request.currency.as_str(),
            request.status.as_str(),
            request.amount_paid,
            request.currency.as_str()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_is_no_filter_and_unknown_parameters_are_refused() {
        let params = list_params("direction=&status=paid&limit=5&starting_after=req_1").unwrap();
        assert_eq!(params.direction, None);
        assert_eq!(params.status.as_deref(), Some("paid"));
        assert_eq!(params.limit, Some(5));
        assert_eq!(params.starting_after.as_deref(), Some("req_1"));
        assert!(list_params("colour=red").is_err());
        assert!(list_params("limit=many").is_err());
    }
}
