//! Webhooks: the caller's endpoints, each endpoint's delivery log, and sending a delivery's
//! event again (the API's retry use case).

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::{DeliveryId, EndpointId};
use mandate_domain::ports::PageRequest;
use mandate_domain::webhooks::{Delivery, DeliveryStatus, WebhookEndpoint};

use super::html::{self, escape, post_button};
use super::{Caller, Flash, after_change, page, refused};
use crate::error::ApiError;
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
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document("Webhooks", Some(&caller), flash.as_ref(), &content),
    )
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
    let flash = Flash::of(&request);
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
         <dt>State</dt><dd>{}</dd>\n</dl>\n<h2>Deliveries</h2>\n<ul class=\"rows\">\n",
        escape(endpoint.id.as_str()),
        escape(&endpoint.url),
        escape(&endpoint.event_types.patterns().join(", ")),
        escape(endpoint.description.as_deref().unwrap_or("none")),
        if endpoint.enabled {
            "enabled"
        } else {
            "disabled"
        },
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
