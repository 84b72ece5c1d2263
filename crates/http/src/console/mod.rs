//! The owner's console: server-rendered pages, no scripts, where a platform or destination
//! key's holder decides agents' claims, manages client IDs and follows webhook deliveries.
//!
//! Every console route is declared once in [`ROUTES`] with its access: `public` (the sign-in
//! form), `session` (a page: a live session whose key is still active, re-read on every
//! request like an API key), or `form` (a change: a session and the form's `csrf_token`,
//! bound to that session). The guard in front of each route decides before the handler runs,
//! and every answer carries the console's security headers. Pages call the same use cases, and
//! so the same `authorize`, as the API: another tenant's object is 404 here too.

mod claims;
mod clients;
mod flash;
mod layout;
mod ledger;
mod requests;
mod session;
mod webhooks;

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use mandate_domain::auth::AuthError;
use mandate_domain::principal::Principal;

use crate::error::ApiError;
use crate::input::path_id;
use crate::state::AppState;
pub(crate) use flash::Flash;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mandate_session";
/// The cookie that carries the message of the last action to the page it redirected to.
const FLASH_COOKIE: &str = "mandate_flash";
/// Where the cookies are sent: the console only, never the API.
const COOKIE_PATH: &str = "/console";
/// Where a request without a live session is sent.
pub const LOGIN_PATH: &str = "/console/login";

/// Who may reach a console route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the sign-in form.
    Public,
    /// A live session: a page that changes nothing.
    Session,
    /// A live session and its `csrf_token` in the form: a change.
    Form,
}

/// One console route.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleRoute {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    /// Who may reach it.
    pub access: Access,
}

macro_rules! console_routes {
    ($($method:ident $path:literal => $access:ident => $handler:path;)*) => {
        /// Every console route.
        pub const ROUTES: &[ConsoleRoute] = &[
            $(ConsoleRoute { method: stringify!($method), path: $path, access: Access::$access },)*
        ];

        /// Registers every console route behind its guard.
        pub fn register(config: &mut web::ServiceConfig) {
            $(
                config.route(
                    $path,
                    web::method(Method::$method)
                        .to($handler)
                        .wrap(from_fn(|request, next| guard(Access::$access, request, next))),
                );
            )*
        }
    };
}

console_routes! {
    GET "/console" => Session => claims::home;
    GET "/console/login" => Public => session::login_page;
    POST "/console/login" => Public => session::login;
    POST "/console/logout" => Form => session::logout;
    GET "/console/claims" => Session => claims::list;
    GET "/console/claims/{id}" => Session => claims::show;
    POST "/console/claims/{id}/approve" => Form => claims::approve;
    POST "/console/claims/{id}/reject" => Form => claims::reject;
    POST "/console/claims/{id}/revoke" => Form => claims::revoke;
    GET "/console/client-ids" => Session => clients::list;
    POST "/console/client-ids" => Form => clients::issue;
    GET "/console/client-ids/{id}" => Session => clients::show;
    POST "/console/client-ids/{id}/grant" => Form => clients::grant;
    POST "/console/client-ids/{id}/withdraw" => Form => clients::withdraw;
    GET "/console/client-ids/{id}/revoke" => Session => clients::confirm_revoke;
    POST "/console/client-ids/{id}/revoke" => Form => clients::revoke;
    GET "/console/webhooks" => Session => webhooks::list;
    POST "/console/webhooks" => Form => webhooks::create;
    GET "/console/webhooks/{id}" => Session => webhooks::show;
    POST "/console/webhooks/{id}/rotate-secret" => Form => webhooks::rotate;
    POST "/console/webhooks/{id}/test" => Form => webhooks::test;
    POST "/console/webhook-deliveries/{id}/retry" => Form => webhooks::retry;
    GET "/console/requests" => Session => requests::list;
    GET "/console/requests/{id}" => Session => requests::show;
    POST "/console/requests/{id}/payment-links" => Form => requests::create_payment_link;
    POST "/console/requests/{id}/payments" => Form => requests::record_payment;
    GET "/console/ledger" => Session => ledger::show;
}

/// The signed-in caller of a console request, for handlers.
#[derive(Clone)]
pub(crate) struct Caller {
    /// Who the session's key is, resolved now.
    pub principal: Principal,
    /// The session token, to end the session at sign-out.
    session_token: String,
    /// The CSRF token every form of the page carries.
    pub csrf_token: String,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Absent only if a handler asking for a caller sits on a public route: a bug.
        ready(
            request
                .extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| ApiError::internal(&PublicRouteAskedForCaller)),
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a public console route's handler asked for a caller")]
struct PublicRouteAskedForCaller;

/// The fields of a submitted form (`application/x-www-form-urlencoded`), read by the guard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(field, value)| field == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    }
}

impl FromRequest for Form {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(request
            .extensions()
            .get::<Form>()
            .cloned()
            .unwrap_or_default()))
    }
}

/// Runs the guard of a route with `access`, then the handler; hardens every answer.
async fn guard(
    access: Access,
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut response = match admit(access, &mut request).await {
        Ok(()) => next.call(request).await?.map_into_boxed_body(),
        Err(refusal) => request.into_response(refusal),
    };
    harden(response.headers_mut());
    Ok(response)
}

/// Decides whether the request reaches its handler; the answer to give when it does not.
async fn admit(access: Access, request: &mut ServiceRequest) -> Result<(), HttpResponse> {
    // Every change is a POST: its form is read here, once, for the CSRF check and the handler.
    if request.method() == Method::POST {
        let body = request
            .extract::<web::Bytes>()
            .await
            .map_err(|_| layout::error_page(&ApiError::payload_too_large()))?;
        request.extensions_mut().insert(Form::parse(&body));
    }
    if access == Access::Public {
        return Ok(());
    }
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Err(layout::error_page(&ApiError::internal(
            &crate::state::MissingState,
        )));
    };
    // A page asked for without a session comes back once signed in (a review link).
    let to_login = || match *request.method() {
        Method::GET => see_other(&session::login_from(request.path())),
        _ => see_other(LOGIN_PATH),
    };
    let Some(token) = cookie(request.headers(), SESSION_COOKIE) else {
        return Err(to_login());
    };
    let principal = match state
        .authenticator
        .console_principal(&token, mandate_domain::now())
        .await
    {
        Ok(principal) => principal,
        Err(AuthError::Store(error)) => return Err(layout::error_page(&ApiError::from(error))),
        Err(_) => {
            let mut response = to_login();
            expire_cookie(&mut response, SESSION_COOKIE);
            return Err(response);
        }
    };
    let csrf_token = state.authenticator.console_csrf_token(&token);
    if access == Access::Form {
        let sent = request
            .extensions()
            .get::<Form>()
            .and_then(|form| form.get("csrf_token").map(str::to_owned));
        let matches =
            sent.is_some_and(|sent| state.authenticator.console_csrf_matches(&token, &sent));
        if !matches {
            tracing::info!("console form refused: missing or foreign csrf_token");
            return Err(layout::error_page(&ApiError::forbidden(
                "this form was not sent from this session's console page: reload the page and \
                 try again",
            )));
        }
    }
    request.extensions_mut().insert(Caller {
        principal,
        session_token: token,
        csrf_token,
    });
    Ok(())
}

/// The console's headers on every answer: nothing cached, framed, leaked through `Referer`,
/// or loaded but the inline style; no script may run at all.
fn harden(headers: &mut HeaderMap) {
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::HeaderName::from_static("x-robots-tag"), "noindex"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value for the console: sent back to the console only, never readable by a
/// page, never sent by another site; `Secure` when the console is served over https.
fn cookie_header(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age_seconds}; HttpOnly; \
         SameSite=Strict{secure}"
    )
}

fn set_cookie(response: &mut HttpResponse, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn expire_cookie(response: &mut HttpResponse, name: &str) {
    set_cookie(response, &cookie_header(name, "", 0, false));
}

/// 303 to `location`.
fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

impl Flash {
    /// The plain flash a request carries (a shown-once value opens only with its session,
    /// [`Flash::shown_to`]).
    fn of(request: &HttpRequest) -> Option<Self> {
        cookie(request.headers(), FLASH_COOKIE).and_then(|value| Flash::decode(&value, None))
    }

    /// The flash a request of `caller`'s session carries, a value shown once included.
    fn shown_to(request: &HttpRequest, state: &AppState, caller: &Caller) -> Option<Self> {
        let flash_key = state.authenticator.console_flash_key(&caller.session_token);
        cookie(request.headers(), FLASH_COOKIE)
            .and_then(|value| Flash::decode(&value, Some(&flash_key)))
    }
}

/// 303 to `location`, which shows `flash` once (a plain one: no session to seal it to).
fn redirect(state: &AppState, location: &str, flash: &Flash) -> HttpResponse {
    flash_redirect(state, location, &flash.encode(None))
}

/// 303 to `location`, which shows `flash` once; a value shown once is sealed to `caller`'s
/// session only.
fn tell(state: &AppState, caller: &Caller, location: &str, flash: &Flash) -> HttpResponse {
    let flash_key = state.authenticator.console_flash_key(&caller.session_token);
    flash_redirect(state, location, &flash.encode(Some(&flash_key)))
}

fn flash_redirect(state: &AppState, location: &str, encoded: &str) -> HttpResponse {
    let mut response = see_other(location);
    set_cookie(
        &mut response,
        &cookie_header(FLASH_COOKIE, encoded, 60, is_https(state)),
    );
    response
}

/// What a change did: the flash that says so, and the page to show it on when that is not
/// the one the change was sent from.
pub(crate) struct Done {
    flash: Flash,
    location: Option<String>,
}

impl Done {
    /// Says `text`.
    fn said(text: String) -> Self {
        Self::showing(Flash::Done(text))
    }

    /// Shows `flash`.
    fn showing(flash: Flash) -> Self {
        Self {
            flash,
            location: None,
        }
    }

    /// On the page at `location` instead.
    fn on(self, location: String) -> Self {
        Self {
            location: Some(location),
            ..self
        }
    }
}

/// Every change to an object of the path has this shape: its id (one that cannot be an id is
/// the 404 page), the use case, then back to `location` saying what was done or why not.
async fn act<Id, T, E>(
    state: &AppState,
    caller: &Caller,
    location: &str,
    id: &str,
    change: impl AsyncFnOnce(Id) -> Result<T, E>,
    done: impl FnOnce(T) -> Done,
) -> HttpResponse
where
    Id: TryFrom<String>,
    ApiError: From<E>,
{
    let outcome = match path_id(id, |id| Id::try_from(id.to_owned())) {
        Ok(id) => change(id).await.map_err(ApiError::from),
        Err(error) => Err(error),
    };
    respond(state, caller, location, outcome.map(done))
}

/// The answer to a change: back to `location` (or where `Done` says) saying what was done, or
/// why not.
fn respond(
    state: &AppState,
    caller: &Caller,
    location: &str,
    outcome: Result<Done, ApiError>,
) -> HttpResponse {
    match outcome {
        Ok(done) => tell(
            state,
            caller,
            done.location.as_deref().unwrap_or(location),
            &done.flash,
        ),
        Err(error) => refused(state, location, &error),
    }
}

/// An instant from a form: `datetime-local` (read as UTC) or RFC 3339; `field` names it in
/// the refusal.
fn form_instant(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
        .ok_or_else(|| {
            ApiError::invalid_field(
                field,
                format!("{field}: expected a date and time, e.g. 2030-01-31T18:00 (UTC)"),
            )
        })
}

/// A refused change: back to `location` saying why, or the error page when there is nothing
/// to go back to (an object the caller may not see, a failure on our side).
fn refused(state: &AppState, location: &str, error: &ApiError) -> HttpResponse {
    if error.status_code_u16() == 404 || error.status_code_u16() >= 500 {
        layout::error_page(error)
    } else {
        redirect(state, location, &Flash::Refused(error.message().to_owned()))
    }
}

fn is_https(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

/// A signed-in `caller`'s page at 200, showing `flash` once.
fn signed_in_page(
    request: &HttpRequest,
    caller: &Caller,
    title: &str,
    flash: Option<&Flash>,
    content: maud::Markup,
) -> HttpResponse {
    page(
        request,
        StatusCode::OK,
        layout::document(title, Some(caller), flash, content),
    )
}

/// An HTML answer: the page's status, and the flash it showed cleared.
fn page(request: &HttpRequest, status: StatusCode, body: String) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(body);
    if cookie(request.headers(), FLASH_COOKIE).is_some() {
        expire_cookie(&mut response, FLASH_COOKIE);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn form_instants_read_as_utc() {
        let at = form_instant("paid_at", "2030-01-31T18:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2030-01-31T18:00:00+00:00");
        assert_eq!(
            form_instant("paid_at", "2030-01-31T19:00:00+01:00").ok(),
            Some(at)
        );
        let refused = form_instant("paid_at", "tomorrow").unwrap_err();
        assert_eq!(
            refused.message(),
            "paid_at: expected a date and time, e.g. 2030-01-31T18:00 (UTC)"
        );
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; mandate_session_x=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("mandate_session=abc"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn session_cookies_are_http_only_strict_and_scoped_to_the_console() {
        assert_eq!(
            cookie_header(SESSION_COOKIE, "t", 43200, true),
            "mandate_session=t; Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!cookie_header(SESSION_COOKIE, "t", 1, false).contains("Secure"));
    }
}
