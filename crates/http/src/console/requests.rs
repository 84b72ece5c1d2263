//! Payment requests: the list with the API's filters and cursor; one request with its
//! payments and events; creating a payment link (shown once, on the page after the redirect)
//! and recording a payment — through the API's use cases.

use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::RequestId;
use mandate_domain::payments::{Direction, PaymentLink, PaymentRequest, RequestStatus};
use mandate_domain::usecases::RequestHistory;
use maud::{Markup, html};

use super::layout::{self, time_element};
use super::{Caller, Done, Flash, Form, act, form_instant, signed_in_page};
use crate::error::ApiError;
use crate::handlers::requests::{RequestListParams, payment_link_url, payment_link_warnings};
use crate::input::path_id;
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

fn select(name: &str, label: &str, options: &[&str], chosen: Option<&str>) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                option value="" { "any" }
                @for option in options {
                    option value=(option) selected[chosen == Some(*option)] { (option) }
                }
            }
        }
    }
}

fn amount(request: &PaymentRequest) -> String {
    format!("{} {}", request.amount, request.currency.as_str())
}

/// `GET /console/requests`: newest first, with `direction`, `status`, `customer_id`,
/// `destination_id`, `limit` and the `starting_after` cursor.
pub(crate) async fn list(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let params = match list_params(request.query_string()) {
        Ok(params) => params,
        Err(error) => return layout::error_page(&error),
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
        Err(error) => return layout::error_page(&error),
    };
    let directions: Vec<&str> = Direction::ALL.iter().map(|d| d.as_str()).collect();
    let statuses: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
    let older = (listed.has_more)
        .then(|| listed.data.last())
        .flatten()
        .map(|last| {
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
            format!("{LIST}?{}", next.finish())
        });
    let content = html! {
        h1 { "Payment requests" }
        form method="get" action=(LIST) {
            (select("direction", "Direction", &directions, chosen_direction.as_deref()))
            (select("status", "Status", &statuses, chosen_status.as_deref()))
            label {
                "Customer id"
                input type="text" name="customer_id" value=(chosen_customer.as_deref().unwrap_or_default());
            }
            label {
                "Destination id"
                input type="text" name="destination_id"
                    value=(chosen_destination.as_deref().unwrap_or_default());
            }
            div.actions { button type="submit" class="secondary" { "Filter" } }
        }
        ul.rows {
            @for payment_request in &listed.data {
                li {
                    a.mono href={ (LIST) "/" (payment_request.id.as_str()) } { (payment_request.id.as_str()) }
                    span.badge.closed { (payment_request.status.as_str()) }
                    span { (payment_request.direction.as_str()) " · " (amount(payment_request)) }
                    span.muted { (time_element(payment_request.created_at)) }
                }
            }
            @if listed.data.is_empty() {
                li.muted { "No payment request matches." }
            }
        }
        @if let Some(older) = older {
            div.actions { a href=(older) { "Older requests" } }
        }
    };
    let flash = Flash::of(&request);
    signed_in_page(
        &request,
        &caller,
        "Payment requests",
        flash.as_ref(),
        content,
    )
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
                .request_history(
                    &caller.principal,
                    &path_id(&id, RequestId::parse)?,
                    mandate_domain::now(),
                )
                .await?,
        )
    }
    .await;
    let history = match found {
        Ok(found) => found,
        Err(error) => return layout::error_page(&error),
    };
    let content = html! {
        (render_request(&history.request))
        (render_history(&history))
        (action_forms(&caller, &history.request))
    };
    let flash = Flash::shown_to(&request, &state, &caller);
    signed_in_page(
        &request,
        &caller,
        "Payment request",
        flash.as_ref(),
        content,
    )
}

fn render_request(payment_request: &PaymentRequest) -> Markup {
    let optional = |value: Option<&str>| value.unwrap_or("none").to_owned();
    html! {
        p.eyebrow { "Payment request" }
        h1.mono { (payment_request.id.as_str()) }
        span.badge.closed { (payment_request.status.as_str()) }
        dl {
            dt { "Direction" } dd { (payment_request.direction.as_str()) }
            dt { "Amount" } dd { (amount(payment_request)) }
            dt { "Paid so far" }
            dd { (payment_request.amount_paid.to_string()) " " (payment_request.currency.as_str()) }
            dt { "Destination" } dd.mono { (payment_request.destination_id.as_str()) }
            dt { "Customer" } dd.mono { (optional(payment_request.customer_id.as_deref())) }
            dt { "Reference" } dd { (optional(payment_request.reference.as_deref())) }
            dt { "Description" } dd { (optional(payment_request.description.as_deref())) }
            dt { "Due" } dd { (layout::when(payment_request.due_at, "none")) }
            dt { "Expires" } dd { (layout::when(payment_request.expires_at, "never")) }
            dt { "Created by" } dd.mono { (payment_request.created_by) }
            dt { "Created" } dd { (time_element(payment_request.created_at)) }
            dt { "Last changed" } dd { (time_element(payment_request.updated_at)) }
            @for (key, value) in &payment_request.metadata {
                dt { "Metadata " (key) } dd { (value) }
            }
        }
    }
}

fn render_history(history: &RequestHistory) -> Markup {
    let currency = history.request.currency.as_str();
    html! {
        h2 { "Payments" }
        ul.rows {
            @for payment in &history.payments {
                li {
                    span.mono { (payment.id.as_str()) }
                    span { (payment.amount.to_string()) " " (currency) }
                    span.muted {
                        (payment.reference) " · paid " (time_element(payment.paid_at)) " · by "
                        (payment.created_by)
                    }
                }
            }
            @if history.payments.is_empty() {
                li.muted { "No payment recorded yet." }
            }
        }
        h2 { "Events" }
        ul.rows {
            @for event in &history.events {
                li {
                    span.mono { (event.event_type.as_str()) }
                    span.muted.mono { (event.id.as_str()) }
                    span.muted { (time_element(event.created_at)) }
                }
            }
            @if history.events.is_empty() {
                li.muted { "No event of this request in your feed." }
            }
        }
        @if !history.events_complete {
            p.muted {
                "Older events of this request are in the feed ("
                span.mono { "GET /v1/events?type=payment_request.*" } ")."
            }
        }
    }
}

fn action_forms(caller: &Caller, payment_request: &PaymentRequest) -> Markup {
    let path = format!("{LIST}/{}", payment_request.id);
    let day = 24 * 60 * 60;
    html! {
        h2 { "Payment link" }
        form method="post" action={ (path) "/payment-links" } {
            (layout::csrf_field(caller))
            label {
                "Valid for"
                select name="expires_in_seconds" {
                    @for (seconds, label) in [
                        (day, "1 day"),
                        (PaymentLink::DEFAULT_LIFETIME_SECONDS, "7 days"),
                        (PaymentLink::MAX_LIFETIME_SECONDS, "30 days"),
                    ] {
                        option value=(seconds)
                            selected[seconds == PaymentLink::DEFAULT_LIFETIME_SECONDS] { (label) }
                    }
                }
            }
            div.actions { button type="submit" { "Create a payment link" } }
        }
        h2 { "Record a payment" }
        form method="post" action={ (path) "/payments" } {
            (layout::csrf_field(caller))
            label {
                "Amount (" (payment_request.currency.as_str()) ")"
                input type="text" name="amount" inputmode="decimal" required;
            }
            label {
                "Reference (a transaction hash, a bank reference)"
                input type="text" name="reference" required spellcheck="false";
            }
            label {
                "Paid at (UTC, optional: now)"
                input type="datetime-local" name="paid_at";
            }
            div.actions { button type="submit" { "Record" } }
        }
    }
}

/// `POST /console/requests/{id}/payment-links`: field `expires_in_seconds` (optional). The
/// request's page then shows the link, once: it carries the token that opens it, and what the
/// API warns of (`NO_PAYMENT_ADDRESS`) beside it.
pub(crate) async fn create_payment_link(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("{LIST}/{id}"),
        &id,
        async |id: RequestId| {
            let expires_in = form
                .get("expires_in_seconds")
                .map(|text| {
                    text.parse::<i64>().map_err(|_| {
                        ApiError::invalid_field(
                            "expires_in_seconds",
                            "must be between 1 and 2592000",
                        )
                    })
                })
                .transpose()?;
            let (link, token) = state
                .mandate
                .create_payment_link(&caller.principal, &id, expires_in, mandate_domain::now())
                .await?;
            let warnings = payment_link_warnings(&state, &token).await?;
            Ok::<_, ApiError>((link, token, warnings))
        },
        |(link, token, warnings)| {
            let warning = warnings
                .iter()
                .map(|warning| format!("{}: {}", warning.code, warning.message))
                .reduce(|all, warning| format!("{all} {warning}"));
            Done::showing(Flash::Reveal {
                text: format!(
                    "Created payment link {}, valid until {} UTC. Send the payer this address:",
                    link.id,
                    link.expires_at.format("%Y-%m-%d %H:%M")
                ),
                secret: payment_link_url(&state, &token),
                warning,
            })
        },
    )
    .await
}

/// `POST /console/requests/{id}/payments`: fields `amount`, `reference` and `paid_at`
/// (optional, read as UTC), validated as the API validates them.
pub(crate) async fn record_payment(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("{LIST}/{id}"),
        &id,
        async |id: RequestId| {
            let paid_at = form
                .get("paid_at")
                .map(|value| form_instant("paid_at", value))
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
        },
        |(payment, request)| {
            Done::said(format!(
                "Recorded payment {} of {} {}: the request is {}, {} {} paid so far.",
                payment.id,
                payment.amount,
                request.currency.as_str(),
                request.status.as_str(),
                request.amount_paid,
                request.currency.as_str()
            ))
        },
    )
    .await
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
