//! The one authentication pipeline (SPEC §3). Every route is registered through
//! [`crate::routes`] with the principal kinds it admits, and this middleware runs in front of
//! each of them: read exactly one credential, resolve it *now*, apply `X-Destination-Id`,
//! check the route admits the principal's kind, and hand the principal to the handler.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use mandate_domain::principal::{Principal, PrincipalKind};

use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;

/// `X-Destination-Id`.
pub const DESTINATION_HEADER: HeaderName = HeaderName::from_static("x-destination-id");
/// `X-Client-Id`.
pub const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-client-id");

/// Who a route admits, declared once per route in the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// Anyone; credentials are not read.
    Public,
    /// Authenticated principals of these kinds.
    Kinds(&'static [PrincipalKind]),
}

impl Admits {
    /// Whether a principal of `kind` passes step 4.
    pub fn admits(self, kind: PrincipalKind) -> bool {
        match self {
            Admits::Public => true,
            Admits::Kinds(kinds) => kinds.contains(&kind),
        }
    }
}

/// The credential a request presents (step 1).
fn bearer_token(request: &ServiceRequest) -> Result<&str, ApiError> {
    let mut values = request.headers().get_all(AUTHORIZATION);
    let value = values
        .next()
        .ok_or_else(|| ApiError::unauthenticated("an Authorization header is required"))?;
    if values.next().is_some() {
        return Err(ApiError::unauthenticated("send exactly one credential"));
    }
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthenticated(
            "use Authorization: Bearer <key or token>",
        )),
    }
}

fn single_header<'a>(
    request: &'a ServiceRequest,
    name: &HeaderName,
) -> Result<Option<&'a str>, ApiError> {
    let mut values = request.headers().get_all(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid(format!("send {name} at most once")));
    }
    value
        .to_str()
        .map(|text| Some(text.trim()))
        .map_err(|_| ApiError::invalid(format!("malformed {name}")))
}

async fn resolve(state: &AppState, request: &ServiceRequest) -> Result<Principal, ApiError> {
    let token = bearer_token(request)?;
    let store = state.mandate.store().as_ref();
    let mut principal = if crate::tokens::looks_like_jwt(token) {
        let claims = state.tokens.verify(token).map_err(|error| {
            tracing::info!(reason = error.0, "access token refused");
            ApiError::unauthenticated("a valid credential is required")
        })?;
        state
            .authenticator
            .token_client(store, &claims.sub, &claims.orc, &claims.scope)
            .await?
    } else {
        state
            .authenticator
            .bearer(store, token, mandate_domain::now())
            .await?
    };
    if let Some(client) = single_header(request, &CLIENT_HEADER)? {
        principal = state
            .authenticator
            .act_as_client(store, principal, client)
            .await?;
    }
    if let Some(destination) = single_header(request, &DESTINATION_HEADER)? {
        principal = state
            .authenticator
            .act_for_destination(store, principal, destination)
            .await?;
    }
    Ok(principal)
}

/// Runs the pipeline for a route that admits `admits`, then the handler — at most once per
/// `Idempotency-Key`.
pub async fn authenticate(
    admits: Admits,
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Admits::Kinds(kinds) = admits else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(refuse(request, ApiError::internal(&MissingState)));
    };
    let admitted = match admit(kinds, &state, &request).await {
        Ok(principal) => idempotency::key_of(&request).map(|key| (principal, key)),
        Err(error) => Err(error),
    };
    match admitted {
        Ok((principal, key)) => {
            request
                .extensions_mut()
                .insert(Authenticated(principal.clone()));
            match key {
                Some(key) => idempotency::run_once(&state, &principal, key, request, next).await,
                None => Ok(next.call(request).await?.map_into_boxed_body()),
            }
        }
        Err(error) => {
            tracing::info!(code = error.code(), "request refused");
            Ok(refuse(request, error))
        }
    }
}

/// Answers here, inside the request's scope, so that the envelope carries its id (an error
/// returned instead would be rendered later, outside it).
fn refuse(request: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    let response = actix_web::ResponseError::error_response(&error);
    request.into_response(response)
}

/// Steps 1–4 for a route that admits `kinds`.
async fn admit(
    kinds: &[PrincipalKind],
    state: &AppState,
    request: &ServiceRequest,
) -> Result<Principal, ApiError> {
    let principal = resolve(state, request).await?;
    if let Some(limit) = &state.rate_limit {
        limit.check(&principal).map_err(ApiError::rate_limited)?;
    }
    if kinds.contains(&principal.kind()) {
        Ok(principal)
    } else {
        Err(ApiError::wrong_principal_kind(principal.kind(), kinds))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the application state is not configured")]
struct MissingState;

/// The principal the pipeline resolved, for handlers.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Absent only if a handler asking for a principal sits on a public route: a bug.
        ready(
            request
                .extensions()
                .get::<Authenticated>()
                .cloned()
                .ok_or_else(|| ApiError::internal(&PublicRouteAskedForPrincipal)),
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a public route's handler asked for a principal")]
struct PublicRouteAskedForPrincipal;
