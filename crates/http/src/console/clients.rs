//! Client IDs: the list and the issuing form, one client ID with each permission granted or
//! withdrawn on its own, and revocation behind a confirmation step.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use mandate_domain::ids::ClientId;
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::ports::PageRequest;
use mandate_domain::principal::Principal;
use mandate_domain::usecases::{ClientChange, NewClient, parse_permission};
use mandate_domain::values::{Permission, PermissionSet};

use super::html::{self, escape, hidden, post_button};
use super::{Caller, Flash, Form, after_change, page, redirect, refused};
use crate::error::ApiError;
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

fn status_badge(status: ClientStatus) -> String {
    let class = match status {
        ClientStatus::Active => "paid",
        ClientStatus::Revoked => "closed",
    };
    format!("<span class=\"badge {class}\">{}</span>", status.as_str())
}

fn client_id(id: &str) -> Result<ClientId, ApiError> {
    ClientId::parse(id).map_err(|_| ApiError::not_found())
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
        Err(error) => return html::error_page(&ApiError::from(error)),
    };
    // A platform picks the destination a new client ID is for.
    let destinations = match &caller.principal {
        Principal::Platform { .. } => match state
            .mandate
            .list_destinations(&caller.principal, &page_request)
            .await
        {
            Ok(destinations) => Some(destinations.data),
            Err(error) => return html::error_page(&ApiError::from(error)),
        },
        _ => None,
    };
    let mut content = String::from("<h1>Client IDs</h1>\n<ul class=\"rows\">\n");
    for client in &clients.data {
        // Writing to a String cannot fail.
        let _ = writeln!(
            content,
            "<li><a class=\"mono\" href=\"{}\">{}</a>{}<span class=\"muted\">{} · {}</span></li>",
            escape(&client_path(&client.id)),
            escape(client.id.as_str()),
            status_badge(client.status),
            escape(client.label.as_deref().unwrap_or("no label")),
            escape(&permissions_text(&client.permissions))
        );
    }
    if clients.data.is_empty() {
        content.push_str("<li class=\"muted\">No client ID yet.</li>\n");
    }
    content.push_str("</ul>\n");
    content.push_str(&issue_form(&caller, destinations.as_deref()));
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document("Client IDs", Some(&caller), flash.as_ref(), &content),
    )
}

fn issue_form(
    caller: &Caller,
    destinations: Option<&[mandate_domain::model::Destination]>,
) -> String {
    let mut form = format!(
        "<h2>Issue a client ID</h2>\n<form method=\"post\" action=\"{LIST}\">{}",
        html::csrf_field(caller)
    );
    if let Some(destinations) = destinations {
        form.push_str("<label>Destination<select name=\"destination_id\" required>");
        for destination in destinations {
            let _ = write!(
                form,
                "<option value=\"{}\">{} ({})</option>",
                escape(destination.id.as_str()),
                escape(&destination.display_name),
                escape(destination.slug.as_str())
            );
        }
        form.push_str("</select></label>");
    }
    form.push_str(
        "<label>Orchestrator (slug or id)<input type=\"text\" name=\"orchestrator\" required \
         spellcheck=\"false\"></label><label>Label (optional)<input type=\"text\" \
         name=\"label\"></label><fieldset><legend>Permissions</legend>",
    );
    let defaults = PermissionSet::default_for_new_client();
    for permission in Permission::ALL {
        let checked = if defaults.contains(permission) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            form,
            "<label><input type=\"checkbox\" name=\"permissions\" value=\"{0}\"{checked}> {0}\
             </label>",
            escape(permission.as_str())
        );
    }
    form.push_str(
        "</fieldset><div class=\"actions\"><button type=\"submit\">Issue</button></div></form>\n",
    );
    form
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
    match outcome {
        Ok(client) => redirect(
            &state,
            &client_path(&client.id),
            &Flash::Done(format!(
                "Issued client ID {} with {}.",
                client.id,
                permissions_text(&client.permissions)
            )),
        ),
        Err(error) => refused(&state, LIST, &error),
    }
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
        Err(error) => return html::error_page(&error),
    };
    let content = render_client(&caller, &client);
    let flash = Flash::of(&request);
    page(
        &request,
        StatusCode::OK,
        html::document(
            &format!("Client ID {}", client.id),
            Some(&caller),
            flash.as_ref(),
            &content,
        ),
    )
}

async fn readable(state: &State, caller: &Caller, id: &str) -> Result<Client, ApiError> {
    Ok(state
        .mandate
        .client(&caller.principal, &client_id(id)?)
        .await?)
}

fn render_client(caller: &Caller, client: &Client) -> String {
    let path = client_path(&client.id);
    let mut content = format!(
        "<p class=\"eyebrow\">Client ID</p>\n<h1 class=\"mono\">{}</h1>\n{}\n<dl>\n\
         <dt>Label</dt><dd>{}</dd>\n<dt>Orchestrator</dt><dd class=\"mono\">{}</dd>\n\
         <dt>Destination</dt><dd class=\"mono\">{}</dd>\n<dt>Issued</dt><dd>{}</dd>\n\
         <dt>Last changed</dt><dd>{}</dd>\n",
        escape(client.id.as_str()),
        status_badge(client.status),
        escape(client.label.as_deref().unwrap_or("no label")),
        escape(client.orchestrator_id.as_str()),
        escape(client.destination_id.as_str()),
        html::at(client.created_at),
        html::at(client.updated_at),
    );
    if let Some(key) = &client.agent_key {
        let _ = writeln!(
            content,
            "<dt>Agent's key</dt><dd class=\"mono\">{}</dd>",
            escape(key.as_str())
        );
    }
    content.push_str("</dl>\n<h2>Permissions</h2>\n<ul class=\"rows\">\n");
    for permission in Permission::ALL {
        let granted = client.permissions.contains(permission);
        let action = match (client.status, granted) {
            (ClientStatus::Revoked, _) => String::new(),
            (ClientStatus::Active, true) => post_button(
                caller,
                &format!("{path}/withdraw"),
                &format!("Withdraw {permission}"),
                "secondary",
                &hidden("permission", permission.as_str()),
            ),
            (ClientStatus::Active, false) => post_button(
                caller,
                &format!("{path}/grant"),
                &format!("Grant {permission}"),
                "",
                &hidden("permission", permission.as_str()),
            ),
        };
        let _ = writeln!(
            content,
            "<li><span class=\"mono\">{}</span><span class=\"muted\">{}</span>{action}</li>",
            escape(permission.as_str()),
            if granted { "granted" } else { "not granted" }
        );
    }
    content.push_str("</ul>\n");
    if client.status == ClientStatus::Active {
        let _ = writeln!(
            content,
            "<div class=\"actions\"><a href=\"{}/revoke\">Revoke this client ID…</a></div>",
            escape(&path)
        );
    }
    content
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
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = client_id(id)?;
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
    }
    .await;
    after_change(&state, &location, outcome, |(permission, client)| {
        format!(
            "{done} {permission}: {} now has {}.",
            client.id,
            permissions_text(&client.permissions)
        )
    })
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
        Err(error) => return html::error_page(&error),
    };
    let path = client_path(&client.id);
    let content = format!(
        "<h1>Revoke client ID {}?</h1>\n<p>The orchestrator {} loses this client ID at once, \
         with every access token issued for it. A revoked client ID cannot be used again.</p>\n\
         <div class=\"actions\">{}<a href=\"{}\">Keep it</a></div>\n",
        escape(client.id.as_str()),
        escape(client.orchestrator_id.as_str()),
        post_button(
            &caller,
            &format!("{path}/revoke"),
            "Revoke for good",
            "danger",
            &hidden("confirm", "yes")
        ),
        escape(&path)
    );
    page(
        &request,
        StatusCode::OK,
        html::document("Revoke a client ID", Some(&caller), None, &content),
    )
}

/// `POST /console/client-ids/{id}/revoke`: with `confirm=yes` from the confirmation step.
pub(crate) async fn revoke(
    state: State,
    caller: Caller,
    form: Form,
    id: web::Path<String>,
) -> HttpResponse {
    let location = format!("{LIST}/{id}");
    let outcome = async {
        let id = client_id(&id)?;
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
    }
    .await;
    after_change(&state, &location, outcome, |client| {
        format!("Revoked client ID {}.", client.id)
    })
}
