//! Webhooks: the caller's endpoints and registering one, each endpoint's delivery log,
//! rotating its signing secret, sending it a test event, and sending a delivery's event again
//! — through the API's use cases. A new secret is shown once, on the page after the redirect.

use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::{DeliveryId, EndpointId};
use mandate_domain::ports::PageRequest;
use mandate_domain::usecases::{EndpointInput, ROTATION_GRACE_HOURS};
use mandate_domain::webhooks::{Delivery, DeliveryStatus, WebhookEndpoint};
use maud::{Markup, html};

use super::layout::{self, post_button};
use super::{Caller, Done, Flash, Form, act, respond, signed_in_page};
use crate::error::ApiError;
use crate::handlers::webhooks::check_target;
use crate::input::path_id;
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
        Err(error) => return layout::error_page(&ApiError::from(error)),
    };
    let content = html! {
        h1 { "Webhook endpoints" }
        ul.rows {
            @for endpoint in &endpoints.data {
                li {
                    a.mono href=(endpoint_path(&endpoint.id)) { (endpoint.url) }
                    span class={ "badge " (if endpoint.enabled { "paid" } else { "closed" }) } {
                        (if endpoint.enabled { "enabled" } else { "disabled" })
                    }
                    span.muted {
                        (endpoint.id.as_str()) " · " (endpoint.event_types.patterns().join(", "))
                    }
                }
            }
            @if endpoints.data.is_empty() {
                li.muted { "No webhook endpoint yet." }
            }
        }
        (create_form(&caller))
    };
    let flash = Flash::of(&request);
    signed_in_page(&request, &caller, "Webhooks", flash.as_ref(), content)
}

fn create_form(caller: &Caller) -> Markup {
    html! {
        h2 { "Add an endpoint" }
        form method="post" action=(LIST) {
            (layout::csrf_field(caller))
            label {
                "URL"
                input type="text" name="url" required spellcheck="false" inputmode="url"
                    placeholder="https://";
            }
            label {
                "Events (exact types, family.* or *, separated by spaces)"
                input type="text" name="event_types" value="*" spellcheck="false";
            }
            label { "Description (optional)" input type="text" name="description"; }
            div.actions { button type="submit" { "Add" } }
        }
    }
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
    let done = outcome.map(|endpoint| {
        Done::showing(Flash::Reveal {
            text: format!(
                "Added endpoint {} for {}. Verify its deliveries' signatures with this \
                 signing secret:",
                endpoint.id, endpoint.url
            ),
            secret: endpoint.secret,
            warning: None,
        })
        .on(endpoint_path(&endpoint.id))
    });
    respond(&state, &caller, LIST, done)
}

/// `POST /console/webhooks/{id}/rotate-secret`: the endpoint's page then shows the new
/// secret, once.
pub(crate) async fn rotate(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("{LIST}/{id}"),
        &id,
        async |id: EndpointId| {
            state
                .mandate
                .rotate_endpoint_secret(&caller.principal, &id, mandate_domain::now())
                .await
        },
        |endpoint| {
            Done::showing(Flash::Reveal {
                text: format!(
                    "Rotated the signing secret of {}: for {ROTATION_GRACE_HOURS} hours \
                     deliveries carry a signature with the previous one too. The new one:",
                    endpoint.id
                ),
                secret: endpoint.secret,
                warning: None,
            })
        },
    )
    .await
}

/// `POST /console/webhooks/{id}/test`: a `webhook.test` event to this endpoint only.
pub(crate) async fn test(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("{LIST}/{id}"),
        &id,
        async |id: EndpointId| {
            state
                .mandate
                .test_endpoint(&caller.principal, &id, mandate_domain::now())
                .await
        },
        |event| {
            Done::said(format!(
                "Sent a webhook.test event ({}) to this endpoint; its delivery shows below.",
                event.id
            ))
        },
    )
    .await
}

/// `GET /console/webhooks/{id}`: one endpoint and its delivery log, newest first.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let found = async {
        let id = path_id(&id, EndpointId::parse)?;
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
        Err(error) => return layout::error_page(&error),
    };
    let content = render_endpoint(&caller, &endpoint, &deliveries);
    let flash = Flash::shown_to(&request, &state, &caller);
    signed_in_page(
        &request,
        &caller,
        "Webhook endpoint",
        flash.as_ref(),
        content,
    )
}

fn render_endpoint(caller: &Caller, endpoint: &WebhookEndpoint, deliveries: &[Delivery]) -> Markup {
    let path = endpoint_path(&endpoint.id);
    html! {
        p.eyebrow { "Webhook endpoint " (endpoint.id.as_str()) }
        h1.mono { (endpoint.url) }
        dl {
            dt { "Events" } dd.mono { (endpoint.event_types.patterns().join(", ")) }
            dt { "Description" } dd { (endpoint.description.as_deref().unwrap_or("none")) }
            dt { "State" } dd { (if endpoint.enabled { "enabled" } else { "disabled" }) }
        }
        div.actions {
            (post_button(caller, &format!("{path}/test"), "Send a test event", "", html! {}))
            (post_button(
                caller,
                &format!("{path}/rotate-secret"),
                "Rotate the signing secret",
                "secondary",
                html! {},
            ))
        }
        h2 { "Deliveries" }
        ul.rows {
            @for delivery in deliveries {
                (delivery_row(caller, delivery))
            }
            @if deliveries.is_empty() {
                li.muted { "Nothing delivered yet." }
            }
        }
    }
}

fn delivery_row(caller: &Caller, delivery: &Delivery) -> Markup {
    let class = match delivery.status {
        DeliveryStatus::Succeeded => "paid",
        DeliveryStatus::Failed => "closed",
        DeliveryStatus::Pending | DeliveryStatus::Skipped => "partial",
    };
    let answer = delivery
        .response_status
        .map_or_else(|| "no answer".to_owned(), |status| format!("HTTP {status}"));
    html! {
        li {
            span.mono { (delivery.id.as_str()) }
            span class={ "badge " (class) } { (delivery.status.as_str()) }
            span.muted {
                "attempt " (delivery.attempt) " · " (answer) " · event "
                (delivery.event_id.as_str()) " · " (layout::time_element(delivery.created_at))
            }
            // A delivery still pending is sent anyway; only a finished one is worth sending again.
            @if delivery.status != DeliveryStatus::Pending {
                (post_button(
                    caller,
                    &format!("/console/webhook-deliveries/{}/retry", delivery.id),
                    "Send again",
                    "secondary",
                    html! {},
                ))
            }
        }
    }
}

/// `POST /console/webhook-deliveries/{id}/retry`: back to the endpoint's log.
pub(crate) async fn retry(state: State, caller: Caller, id: web::Path<String>) -> HttpResponse {
    act(
        &state,
        &caller,
        LIST,
        &id,
        async |id: DeliveryId| {
            state
                .mandate
                .retry_delivery(&caller.principal, &id, mandate_domain::now())
                .await
        },
        |retry| {
            Done::said(format!(
                "Sending event {} again: delivery {} (attempt {}).",
                retry.event_id, retry.id, retry.attempt
            ))
            .on(endpoint_path(&retry.endpoint_id))
        },
    )
    .await
}
