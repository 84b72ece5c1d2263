//! Signing in and out. A sign-in takes a platform or destination key from the form (never
//! from a URL), opens a session, and sets its token as an HttpOnly, SameSite=Strict cookie
//! scoped to `/console`; failed sign-ins count against the address like failed API
//! authentication.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use mandate_domain::auth::AuthError;
use maud::html;

use super::layout;
use super::{
    Caller, Flash, Form, LOGIN_PATH, SESSION_COOKIE, cookie_header, expire_cookie, page, redirect,
    set_cookie,
};
use crate::error::ApiError;
use crate::state::State;

/// Where a sign-in lands when it was not sent from another console page.
const HOME: &str = "/console/claims";

/// `next` when it is a console page: anything else (another site, `//host`) lands at home.
fn landing(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/console/")
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.starts_with(LOGIN_PATH) =>
        {
            next
        }
        _ => HOME,
    }
}

fn login_form(
    request: &HttpRequest,
    status: StatusCode,
    next: &str,
    refusal: Option<&str>,
) -> HttpResponse {
    let flash = match refusal {
        Some(text) => Some(Flash::Refused(text.to_owned())),
        None => Flash::of(request),
    };
    let content = html! {
        h1 { "Sign in to the console" }
        p.sub {
            "Use a platform key or a destination key. It is sent once, in this form, and never \
             shown again."
        }
        form method="post" action=(LOGIN_PATH) {
            input type="hidden" name="next" value=(next);
            label {
                "Key"
                input type="password" name="key" autocomplete="current-password" required
                    spellcheck="false";
            }
            div.actions { button type="submit" { "Sign in" } }
        }
    };
    page(
        request,
        status,
        layout::document("Sign in", None, flash.as_ref(), content),
    )
}

/// `GET /console/login`: the form.
pub(crate) async fn login_page(request: HttpRequest) -> HttpResponse {
    let next = request.uri().query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "next")
            .map(|(_, value)| value.into_owned())
    });
    login_form(&request, StatusCode::OK, landing(next.as_deref()), None)
}

/// `POST /console/login`: opens a session for the key in field `key`.
pub(crate) async fn login(state: State, request: HttpRequest, form: Form) -> HttpResponse {
    let next = landing(form.get("next")).to_owned();
    let address = request.peer_addr().map(|address| address.ip());
    let throttle = state.failed_auth.as_ref().zip(address);
    if let Some((throttle, address)) = throttle {
        if let Err(wait) = throttle.check(address) {
            let error = ApiError::failed_auth_throttled(wait);
            let mut response = login_form(
                &request,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                Some(error.message()),
            );
            if let Ok(value) = wait.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    let Some(key) = form.get("key") else {
        return login_form(
            &request,
            StatusCode::BAD_REQUEST,
            &next,
            Some("enter a platform or destination key"),
        );
    };
    let now = mandate_domain::now();
    match state
        .authenticator
        .open_console_session(key, state.console_session_lifetime, now)
        .await
    {
        Ok(opened) => {
            let mut response = redirect(&state, &next, &Flash::Done("Signed in.".into()));
            let max_age = (opened.expires_at - now).num_seconds();
            set_cookie(
                &mut response,
                &cookie_header(
                    SESSION_COOKIE,
                    &opened.token,
                    max_age,
                    super::is_https(&state),
                ),
            );
            response
        }
        Err(AuthError::Store(error)) => layout::error_page(&ApiError::from(error)),
        Err(error) => {
            let error = ApiError::from(error);
            let status = actix_web::ResponseError::status_code(&error);
            if let (Some((throttle, address)), StatusCode::UNAUTHORIZED) = (throttle, status) {
                throttle.record_failure(address);
            }
            tracing::info!(code = error.code(), "console sign-in refused");
            login_form(&request, status, &next, Some(error.message()))
        }
    }
}

/// `POST /console/logout`: ends the session.
pub(crate) async fn logout(state: State, caller: Caller) -> HttpResponse {
    if let Err(error) = state
        .authenticator
        .close_console_session(&caller.session_token)
        .await
    {
        return layout::error_page(&ApiError::from(error));
    }
    let mut response = redirect(&state, LOGIN_PATH, &Flash::Done("Signed out.".into()));
    expire_cookie(&mut response, SESSION_COOKIE);
    response
}

/// The login page's address that comes back to `path` once signed in.
pub(crate) fn login_from(path: &str) -> String {
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    format!("{LOGIN_PATH}?next={next}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_land_only_on_console_pages() {
        assert_eq!(
            landing(Some("/console/claims/clm_1")),
            "/console/claims/clm_1"
        );
        for elsewhere in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/console/"),
            Some("/v1/claims"),
            Some("/console/login"),
            Some("/console/\\evil"),
        ] {
            assert_eq!(landing(elsewhere), HOME, "{elsewhere:?}");
        }
        assert_eq!(
            login_from("/console/claims/clm_1"),
            "/console/login?next=%2Fconsole%2Fclaims%2Fclm_1"
        );
    }
}
