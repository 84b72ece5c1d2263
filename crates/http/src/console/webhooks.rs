//! Webhooks: the caller's endpoints and registering one, each endpoint's delivery log,
//! rotating its signing secret, sending it a test event, and sending a delivery's event again
//! — through the API's use cases. A new secret is shown once, on the page after the redirect.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::{DeliveryId, EndpointId};
use mandate_domain::ports::PageRequest;
use mandate_domain::usecases::{EndpointInput, ROTATION_GRACE_HOURS};
use mandate_domain::webhooks::{Delivery, DeliveryStatus, WebhookEndpoint};

use super::html::{self, escape, post_button};
use super::{Caller, Flash, Form, after_change, page, refused, reveal};
use crate::error::ApiError;
use crate::handlers::webhooks::check_target;
use crate::state::State;

const LIST: &str = "/console/webhooks";

fn endpoint_path(id: &EndpointId) -> String {
    format!("{LIST}/{id}")
}

fn first_page() -> PageRequest {
    PageRequest {
        limit: PageRequest::MAX_LIMIT,
        starting_after: None,
    }
}

/// `GET /console/webhooks`: the caller's endpoints.
pub(crate) async fn list(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let endpoints = match state
        .mandate
        .list_endpoints(&caller.principal, &first_page())
        .await
    {
        Ok(endpoints) => endpoints,
        Err(error) => return html::error_page(&ApiError::from(error)),
    };
    let mut content = String::from("<h1>Webhook endpoints</h1>\n<ul class=\"rows\">\n");
    for endpoint in &endpoints.data {
        // Writing to a String cannot fail.
        let _ = writeln!(
            content,
            "<li><a class=\"mono\" href=\"{}\">{}</a><span class=\"badge {}\">{}</span>\
             <span class=\"muted\">{} · {}</span></li>",
            escape(&endpoint_path(&endpoint.id)),
            escape(&endpoint.url),
            if endpoint.enabled { "paid" } else { "closed" },
            if endpoint.enabled {
                "enabled"
            } else {
                "disabled"
            },
            escape(endpoint.id.as_str()),
            escape(&endpoint.event_types.patterns().join(", "))
        );
    }
    if endpoints.data.is_empty() {
        content.push_str("<li class=\"muted\">No webhook endpoint yet.</li>\n");
    }
    content.push_str("</ul>\n");
    content.push_str(&create_form(&caller));
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document("Webhooks", Some(&caller), flash.as_ref(), &content),
    )
}

fn create_form(caller: &Caller) -> String {
    format!(
        "<h2>Add an endpoint</h2>\n<form method=\"post\" action=\"{LIST}\">{}\
         <label>URL<input type=\"text\" name=\"url\" required spellcheck=\"false\" \
         inputmode=\"url\" placeholder=\"https://\"></label>\
         <label>Events (exact types, family.* or *, separated by spaces)<input type=\"text\" \
         name=\"event_types\" value=\"*\" spellcheck=\"false\"></label>\
         <label>Description (optional)<input type=\"text\" name=\"description\"></label>\
         <div class=\"actions\"><button type=\"submit\">Add</button></div></form>\n",
        html::csrf_field(caller)
    )
}

/// `POST /console/webhooks`: fields `url`, `event_types` (separated by spaces or commas;
/// default `*`) and `description`. The endpoint's page then shows its secret, once.
pub(crate) async fn create(state: State, caller: Caller, form: Form) -> HttpResponse {
    let outcome = async {
        let url = form.get("url");
        if let Some(url) = url {
            check_target(&state, url).await?;
        }
        let event_types: Vec<String> = form
            .get("event_types")
            .unwrap_or("*")
            .split([' ', ','])
            .filter(|pattern| !pattern.is_empty())
            .map(str::to_owned)
            .collect();
        let input = EndpointInput {
            url: url.map(str::to_owned),
            event_types: Some(event_types),
            description: Some(form.get("description").map(str::to_owned)),
            enabled: None,
        };
        Ok::<_, ApiError>(
            state
                .mandate
                .create_endpoint(
                    &caller.principal,
                    input,
                    state.allow_http,
                    mandate_domain::now(),
                )
                .await?,
        )
    }
    .await;
    match outcome {
        Ok(endpoint) => reveal(
            &state,
            &caller,
            &endpoint_path(&endpoint.id),
            format!(
                "Added endpoint {} for {}. Verify its deliveries' signatures with this \
                 signing secret:",
                endpoint.id, endpoint.url
            ),
            endpoint.secret,
        ),
        Err(error) => refused(&state, LIST, &error),
    }
}

/// `POST /console/webhooks/{id}/rotate-secret`: the endpoint's page then shows the new
/// secret, once.
pub(crate) async fn rotate(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = EndpointId::parse(&id).map_err(|_| ApiError::not_found())?;
        Ok::<_, ApiError>(
            state
                .mandate
                .rotate_endpoint_secret(&caller.principal, &id, mandate_domain::now())
                .await?,
        )
    }
    .await;
    match outcome {
        Ok(endpoint) => reveal(
            &state,
            &caller,
            &location,
            format!(
                "Rotated the signing secret of {}: for {ROTATION_GRACE_HOURS} hours deliveries \
                 carry a signature with the previous one too. The new one:",
                endpoint.id
            ),
            endpoint.secret,
        ),
        Err(error) => refused(&state, &location, &error),
    }
}

/// `POST /console/webhooks/{id}/test`: a `webhook.test` event to this endpoint only.
pub(crate) async fn test(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = EndpointId::parse(&id).map_err(|_| ApiError::not_found())?;
        Ok::<_, ApiError>(
            state
                .mandate
                .test_endpoint(&caller.principal, &id, mandate_domain::now())
                .await?,
        )
    }
    .await;
    after_change(&state, &location, outcome, |event| {
        format!(
            "Sent a webhook.test event ({}) to this endpoint; its delivery shows below.",
            event.id
        )
    })
}

/// `GET /console/webhooks/{id}`: one endpoint and its delivery log, newest first.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let found = async {
        let id = EndpointId::parse(&id).map_err(|_| ApiError::not_found())?;
        let endpoint = state.mandate.endpoint(&caller.principal, &id).await?;
        let deliveries = state
            .mandate
            .endpoint_deliveries(&caller.principal, &id, &first_page())
            .await?;
        Ok::<_, ApiError>((endpoint, deliveries.data))
    }
    .await;
    let (endpoint, deliveries) = match found {
        Ok(found) => found,
        Err(error) => return html::error_page(&error),
    };
    let content = render_endpoint(&caller, &endpoint, &deliveries);
    let flash = Flash::shown_to(&request, &state, &caller);
    page(
        &request,
        StatusCode::OK,
        html::document("Webhook endpoint", Some(&caller), flash.as_ref(), &content),
    )
}

fn render_endpoint(caller: &Caller, endpoint: &WebhookEndpoint, deliveries: &[Delivery]) -> String {
    let mut content = format!(
        "<p class=\"eyebrow\">Webhook endpoint {}</p>\n<h1 class=\"mono\">{}</h1>\n<dl>\n\
         <dt>Events</dt><dd class=\"mono\">{}</dd>\n<dt>Description</dt><dd>{}</dd>\n\
         <dt>State</dt><dd>{}</dd>\n</dl>\n<div class=\"actions\">{}{}</div>\n\
         <h2>Deliveries</h2>\n<ul class=\"rows\">\n",
        escape(endpoint.id.as_str()),
        escape(&endpoint.url),
        escape(&endpoint.event_types.patterns().join(", ")),
        escape(endpoint.description.as_deref().unwrap_or("none")),
        if endpoint.enabled {
            "enabled"
        } else {
            "disabled"
        },
        post_button(
            caller,
            &format!("{}/test", endpoint_path(&endpoint.id)),
            "Send a test event",
            "",
            ""
        ),
        post_button(
            caller,
            &format!("{}/rotate-secret", endpoint_path(&endpoint.id)),
            "Rotate the signing secret",
            "secondary",
            ""
        ),
    );
    for delivery in deliveries {
        let class = match delivery.status {
            DeliveryStatus::Succeeded => "paid",
            DeliveryStatus::Failed => "closed",
            DeliveryStatus::Pending | DeliveryStatus::Skipped => "partial",
        };
        let answer = delivery
            .response_status
            .map_or_else(|| "no answer".to_owned(), |status| format!("HTTP {status}"));
        // A delivery still pending is sent anyway; only a finished one is worth sending again.
        let retry = if delivery.status == DeliveryStatus::Pending {
            String::new()
        } else {
            post_button(
                caller,
                &format!("/console/webhook-deliveries/{}/retry", delivery.id),
                "Send again",
                "secondary",
                "",
            )
        };
        let _ = writeln!(
            content,
            "<li><span class=\"mono\">{}</span><span class=\"badge {class}\">{}</span>\
             <span class=\"muted\">attempt {} · {} · event {} · {}</span>{retry}</li>",
            escape(delivery.id.as_str()),
            delivery.status.as_str(),
            delivery.attempt,
            escape(&answer),
            escape(delivery.event_id.as_str()),
            html::at(delivery.created_at),
        );
    }
    if deliveries.is_empty() {
        content.push_str("<li class=\"muted\">Nothing delivered yet.</li>\n");
    }
    content.push_str("</ul>\n");
    content
}

/// `POST /console/webhook-deliveries/{id}/retry`: back to the endpoint's log.
pub(crate) async fn retry(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    let outcome = async {
        let id = DeliveryId::parse(&id).map_err(|_| ApiError::not_found())?;
        Ok::<_, ApiError>(
            state
                .mandate
                .retry_delivery(&caller.principal, &id, mandate_domain::now())
                .await?,
        )
    }
    .await;
    match outcome {
        Ok(retry) => {
            let location = endpoint_path(&retry.endpoint_id);
            after_change(&state, &location, Ok::<_, ApiError>(retry), |retry| {
                format!(
                    "Sending event {} again: delivery {} (attempt {}).",
                    retry.event_id, retry.id, retry.attempt
                )
            })
        }
        Err(error) => refused(&state, LIST, &error),
    }
}
