//! Client IDs: the list and the issuing form, one client ID with each permission granted or
//! withdrawn on its own, and revocation behind a confirmation step.

use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::ClientId;
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::ports::PageRequest;
use mandate_domain::principal::Principal;
use mandate_domain::usecases::{ClientChange, NewClient, parse_permission};
use mandate_domain::values::{Permission, PermissionSet};
use maud::{Markup, html};

use super::layout::{self, post_button, time_element};
use super::{Caller, Done, Flash, Form, act, respond, signed_in_page};
use crate::error::ApiError;
use crate::input::path_id;
use crate::state::State;

const LIST: &str = "/console/client-ids";

fn client_path(id: &ClientId) -> String {
    format!("{LIST}/{id}")
}

fn permissions_text(permissions: &PermissionSet) -> String {
    let names: Vec<&str> = permissions.iter().map(Permission::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn status_badge(status: ClientStatus) -> Markup {
    let class = match status {
        ClientStatus::Active => "paid",
        ClientStatus::Revoked => "closed",
    };
    html! { span class={ "badge " (class) } { (status.as_str()) } }
}

/// `GET /console/client-ids`: every client ID the caller may see, and the issuing form.
pub(crate) async fn list(state: State, request: HttpRequest, caller: Caller) -> HttpResponse {
    let page_request = PageRequest {
        limit: PageRequest::MAX_LIMIT,
        starting_after: None,
    };
    let clients = match state
        .mandate
        .list_clients(&caller.principal, None, &page_request)
        .await
    {
        Ok(clients) => clients,
        Err(error) => return layout::error_page(&ApiError::from(error)),
    };
    // A platform picks the destination a new client ID is for.
    let destinations = match &caller.principal {
        Principal::Platform { .. } => match state
            .mandate
            .list_destinations(&caller.principal, &page_request)
            .await
        {
            Ok(destinations) => Some(destinations.data),
            Err(error) => return layout::error_page(&ApiError::from(error)),
        },
        _ => None,
    };
    let content = html! {
        h1 { "Client IDs" }
        ul.rows {
            @for client in &clients.data {
                li {
                    a.mono href=(client_path(&client.id)) { (client.id.as_str()) }
                    (status_badge(client.status))
                    span.muted {
                        (client.label.as_deref().unwrap_or("no label")) " · "
                        (permissions_text(&client.permissions))
                    }
                }
            }
            @if clients.data.is_empty() {
                li.muted { "No client ID yet." }
            }
        }
        (issue_form(&caller, destinations.as_deref()))
    };
    let flash = Flash::of(&request);
    signed_in_page(&request, &caller, "Client IDs", flash.as_ref(), content)
}

fn issue_form(
    caller: &Caller,
    destinations: Option<&[mandate_domain::model::Destination]>,
) -> Markup {
    let defaults = PermissionSet::default_for_new_client();
    html! {
        h2 { "Issue a client ID" }
        form method="post" action=(LIST) {
            (layout::csrf_field(caller))
            @if let Some(destinations) = destinations {
                label {
                    "Destination"
                    select name="destination_id" required {
                        @for destination in destinations {
                            option value=(destination.id.as_str()) {
                                (destination.display_name) " (" (destination.slug.as_str()) ")"
                            }
                        }
                    }
                }
            }
            label {
                "Orchestrator (slug or id)"
                input type="text" name="orchestrator" required spellcheck="false";
            }
            label { "Label (optional)" input type="text" name="label"; }
            fieldset {
                legend { "Permissions" }
                @for permission in Permission::ALL {
                    label {
                        input type="checkbox" name="permissions" value=(permission.as_str())
                            checked[defaults.contains(permission)];
                        " " (permission.as_str())
                    }
                }
            }
            div.actions { button type="submit" { "Issue" } }
        }
    }
}

/// `POST /console/client-ids`: fields `orchestrator`, `label`, `permissions` (repeated) and,
/// for a platform, `destination_id`.
pub(crate) async fn issue(state: State, caller: Caller, form: Form) -> HttpResponse {
    let outcome = async {
        let principal = match form.get("destination_id") {
            Some(destination) => {
                state
                    .authenticator
                    .act_for_destination(caller.principal.clone(), destination)
                    .await?
            }
            None => caller.principal.clone(),
        };
        let input = NewClient {
            orchestrator: form.get("orchestrator").unwrap_or_default().to_owned(),
            label: form.get("label").map(str::to_owned),
            permissions: Some(form.all("permissions")),
        };
        Ok::<_, ApiError>(
            state
                .mandate
                .issue_client(&principal, input, mandate_domain::now())
                .await?,
        )
    }
    .await;
    let done = outcome.map(|client| {
        Done::said(format!(
            "Issued client ID {} with {}.",
            client.id,
            permissions_text(&client.permissions)
        ))
        .on(client_path(&client.id))
    });
    respond(&state, &caller, LIST, done)
}

/// `GET /console/client-ids/{id}`.
pub(crate) async fn show(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let client = match readable(&state, &caller, &id).await {
        Ok(client) => client,
        Err(error) => return layout::error_page(&error),
    };
    let content = render_client(&caller, &client);
    let flash = Flash::of(&request);
    signed_in_page(
        &request,
        &caller,
        &format!("Client ID {}", client.id),
        flash.as_ref(),
        content,
    )
}

async fn readable(state: &State, caller: &Caller, id: &str) -> Result<Client, ApiError> {
    Ok(state
        .mandate
        .client(&caller.principal, &path_id(id, ClientId::parse)?)
        .await?)
}

fn render_client(caller: &Caller, client: &Client) -> Markup {
    let path = client_path(&client.id);
    html! {
        p.eyebrow { "Client ID" }
        h1.mono { (client.id.as_str()) }
        (status_badge(client.status))
        dl {
            dt { "Label" } dd { (client.label.as_deref().unwrap_or("no label")) }
            dt { "Orchestrator" } dd.mono { (client.orchestrator_id.as_str()) }
            dt { "Destination" } dd.mono { (client.destination_id.as_str()) }
            dt { "Issued" } dd { (time_element(client.created_at)) }
            dt { "Last changed" } dd { (time_element(client.updated_at)) }
            @if let Some(key) = &client.agent_key {
                dt { "Agent's key" } dd.mono { (key.as_str()) }
            }
        }
        h2 { "Permissions" }
        ul.rows {
            @for permission in Permission::ALL {
                @let granted = client.permissions.contains(permission);
                li {
                    span.mono { (permission.as_str()) }
                    span.muted { (if granted { "granted" } else { "not granted" }) }
                    @if client.status == ClientStatus::Active {
                        @let (change, label, class) = if granted {
                            ("withdraw", "Withdraw", "secondary")
                        } else {
                            ("grant", "Grant", "")
                        };
                        (post_button(
                            caller,
                            &format!("{path}/{change}"),
                            &format!("{label} {permission}"),
                            class,
                            html! { input type="hidden" name="permission" value=(permission.as_str()); },
                        ))
                    }
                }
            }
        }
        @if client.status == ClientStatus::Active {
            div.actions { a href={ (path) "/revoke" } { "Revoke this client ID…" } }
        }
    }
}

/// The change of `POST …/grant` and `POST …/withdraw`: field `permission`.
async fn change_permission(
    state: State,
    caller: Caller,
    form: Form,
    id: &str,
    change: fn(Permission) -> ClientChange,
    done: &'static str,
) -> HttpResponse {
    act(
        &state,
        &caller,
        &format!("{LIST}/{id}"),
        id,
        async |id: ClientId| {
            let permission =
                parse_permission("permission", form.get("permission").unwrap_or_default())?;
            let client = state
                .mandate
                .change_client(
                    &caller.principal,
                    &id,
                    change(permission),
                    mandate_domain::now(),
                )
                .await?;
            Ok::<_, ApiError>((permission, client))
        },
        |(permission, client)| {
            Done::said(format!(
                "{done} {permission}: {} now has {}.",
                client.id,
                permissions_text(&client.permissions)
            ))
        },
    )
    .await
}

/// `POST /console/client-ids/{id}/grant`.
pub(crate) async fn grant(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    change_permission(state, caller, form, &id, ClientChange::Grant, "Granted").await
}

/// `POST /console/client-ids/{id}/withdraw`.
pub(crate) async fn withdraw(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    change_permission(state, caller, form, &id, ClientChange::Withdraw, "Withdrew").await
}

/// `GET /console/client-ids/{id}/revoke`: the confirmation step.
pub(crate) async fn confirm_revoke(
    state: State,
    request: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> HttpResponse {
    let client = match readable(&state, &caller, &id).await {
        Ok(client) => client,
        Err(error) => return layout::error_page(&error),
    };
    let path = client_path(&client.id);
    let content = html! {
        h1 { "Revoke client ID " (client.id.as_str()) "?" }
        p {
            "The orchestrator " (client.orchestrator_id.as_str()) " loses this client ID at \
             once, with every access token issued for it. A revoked client ID cannot be used \
             again."
        }
        div.actions {
            (post_button(
                &caller,
                &format!("{path}/revoke"),
                "Revoke for good",
                "danger",
                html! { input type="hidden" name="confirm" value="yes"; },
            ))
            a href=(path) { "Keep it" }
        }
    };
    signed_in_page(&request, &caller, "Revoke a client ID", None, content)
}

/// `POST /console/client-ids/{id}/revoke`: with `confirm=yes` from the confirmation step.
pub(crate) async fn revoke(
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
        async |id: ClientId| {
            if form.get("confirm") != Some("yes") {
                return Err(ApiError::invalid_field(
                    "confirm",
                    "confirm the revocation on its confirmation page first",
                ));
            }
            Ok(state
                .mandate
                .change_client(
                    &caller.principal,
                    &id,
                    ClientChange::Revoke,
                    mandate_domain::now(),
                )
                .await?)
        },
        |client| Done::said(format!("Revoked client ID {}.", client.id)),
    )
    .await
}
