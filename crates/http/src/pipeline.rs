//! The one authentication pipeline (SPEC §3). Every route is registered through
//! [`crate::routes`] with the principal kinds it admits, and this middleware runs in front of
//! each of them: read exactly one credential, resolve it *now* — together with the resource
//! the route reads by id, in the same statement — apply `X-Destination-Id`, check the route
//! admits the principal's kind, and hand the principal and the resource to the handler.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use mandate_domain::agents::AgentKey;
use mandate_domain::auth::{Resolved, TokenSubject};
use mandate_domain::ids::RequestId;
use mandate_domain::payments::PaymentRequest;
use mandate_domain::principal::{Principal, PrincipalKind};

use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;
use mandate_signatures::{self as signatures, SignatureError, SignedMessage};

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
    /// Principals of these kinds (by their Bearer credential) on a request that an agent has
    /// also signed: the agent's proof that it holds its key (`POST /v1/claims`). The handler
    /// gets the verified signature as [`AgentSignature`].
    KindsSignedByAgent(&'static [PrincipalKind]),
}

impl Admits {
    /// Whether a principal of `kind` passes step 4.
    pub fn admits(self, kind: PrincipalKind) -> bool {
        match self {
            Admits::Public => true,
            Admits::Kinds(kinds) | Admits::KindsSignedByAgent(kinds) => kinds.contains(&kind),
        }
    }
}

/// What a route reads by the `{id}` of its path, declared in the route table: the pipeline
/// reads it with the credential and leaves it to the handler ([`ReadRequest`]), so that an
/// authorized read is one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing.
    Nothing,
    /// The payment request `{id}` names.
    Request,
}

/// The Bearer credential a request presents (step 1), if it sends an Authorization header.
fn bearer_token(request: &ServiceRequest) -> Result<Option<&str>, ApiError> {
    let mut values = request.headers().get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
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
            Ok(Some(token.trim()))
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

/// Step 1 and 2: exactly one credential — a Bearer token, or an agent's signature — resolved
/// now. A route that wants an agent's proof of key possession takes both.
async fn resolve(
    admits: Admits,
    reads: Option<&RequestId>,
    state: &AppState,
    request: &ServiceRequest,
    signature: Option<&AgentSignature>,
) -> Result<Resolved, ApiError> {
    let token = bearer_token(request)?;
    let signed_by_agent = matches!(admits, Admits::KindsSignedByAgent(_));
    let token = match (token, signature) {
        (Some(token), None) => token,
        (Some(token), Some(_)) if signed_by_agent => token,
        (Some(_), Some(_)) => {
            return Err(ApiError::unauthenticated(
                "send exactly one credential: a Bearer token or an agent signature",
            ));
        }
        (None, Some(signature)) => {
            let client = single_header(request, &CLIENT_HEADER)?;
            let resolved = state
                .authenticator
                .agent_client(&signature.key, client, reads, mandate_domain::now())
                .await?;
            return apply_destination(state, request, resolved).await;
        }
        (None, None) => {
            return Err(ApiError::unauthenticated(
                "an Authorization header is required",
            ));
        }
    };
    // A malformed or repeated X-Client-Id waits until the credential is resolved: a bad
    // credential answers 401 whatever the header.
    let (client, client_header_error) = match single_header(request, &CLIENT_HEADER) {
        Ok(client) => (client, None),
        Err(error) => (None, Some(error)),
    };
    let now = mandate_domain::now();
    let resolved = if crate::tokens::looks_like_jwt(token) {
        let claims = state.tokens.verify(token).map_err(|error| {
            tracing::info!(reason = error.0, "access token refused");
            ApiError::unauthenticated("a valid credential is required")
        })?;
        let subject = TokenSubject {
            client_id: &claims.sub,
            orchestrator_id: &claims.orc,
            key_id: &claims.key,
            scope: &claims.scope,
        };
        state
            .authenticator
            .token_client(&subject, client, reads, now)
            .await?
    } else {
        state
            .authenticator
            .bearer(token, client, reads, now)
            .await?
    };
    if let Some(error) = client_header_error {
        return Err(error);
    }
    apply_destination(state, request, resolved).await
}

/// Step 3's `X-Destination-Id` (a platform key naming a destination reads it: a second round
/// trip, for that header only).
async fn apply_destination(
    state: &AppState,
    request: &ServiceRequest,
    resolved: Resolved,
) -> Result<Resolved, ApiError> {
    match single_header(request, &DESTINATION_HEADER)? {
        Some(destination) => Ok(Resolved {
            principal: state
                .authenticator
                .act_for_destination(resolved.principal, destination)
                .await?,
            request: resolved.request,
        }),
        None => Ok(resolved),
    }
}

/// Whether the request carries a signature at all (either signature header), so that it counts
/// as a credential and a half-signed request is refused instead of ignored.
fn is_signed(request: &ServiceRequest) -> bool {
    let headers = request.headers();
    headers.contains_key(signatures::SIGNATURE_INPUT) || headers.contains_key(signatures::SIGNATURE)
}

/// actix-web's headers as the `http` 1.x map the verifier reads. Names and values are copied
/// as bytes (both crates validate them alike), every field line in order; only signed requests
/// pay for it.
fn http_headers(headers: &actix_web::http::header::HeaderMap) -> http::HeaderMap {
    let mut converted = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            converted.append(name, value);
        }
    }
    converted
}

/// Verifies an agent's signature over the request, body included (the body is read here and
/// put back for the handler). Its nonce is accepted later, once the credential resolved: a key
/// no agent holds writes nothing.
async fn verify_agent_signature(
    state: &AppState,
    request: &mut ServiceRequest,
) -> Result<AgentSignature, ApiError> {
    let body = request
        .extract::<web::Bytes>()
        .await
        .map_err(|_| ApiError::payload_too_large())?;
    request.set_payload(Payload::from(body.clone()));
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let origin = origin(&state.public_url);
    let target_uri = format!("{origin}{path}");
    let headers = http_headers(request.headers());
    let message = SignedMessage {
        method: request.method().as_str(),
        target_uri: &target_uri,
        headers: &headers,
        body: &body,
    };
    let now = mandate_domain::now();
    let verified = signatures::verify(&message, now).map_err(|error| {
        tracing::info!(reason = error.reason(), "agent signature refused");
        let refused =
            ApiError::signature_invalid(error.to_string()).with_auth_reason(error.reason());
        if error != SignatureError::BadSignature {
            return refused;
        }
        // The most common cause: the agent signed the URL it called, which is not the public
        // URL (a proxy's inside address, a port). Say which authority the server expects, and
        // whether the signature holds for the one the request was sent to.
        let expected_authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let connection = request.connection_info();
        let sent_uri = format!("{}://{}{path}", connection.scheme(), connection.host());
        let sent = SignedMessage {
            target_uri: &sent_uri,
            ..message
        };
        let details = serde_json::json!({
            "component": "@target-uri",
            "expected_target_uri": target_uri,
            "expected_authority": expected_authority,
        });
        if sent_uri != target_uri && signatures::verify(&sent, now).is_ok() {
            ApiError::signature_invalid(format!(
                "the signature covers @target-uri {sent_uri}, but this server expects \
                 {target_uri}: sign the URI with the authority {expected_authority} (its public \
                 URL)"
            ))
            .with_details(details)
            .with_auth_reason("target_uri_mismatch")
        } else {
            ApiError::signature_invalid(format!(
                "{error}; the server checks it with @target-uri {target_uri} (the authority \
                 {expected_authority}, from its public URL)"
            ))
            .with_details(details)
            .with_auth_reason(error.reason())
        }
    })?;
    Ok(AgentSignature {
        key: AgentKey::from(verified.key),
        nonce: verified.nonce,
    })
}

/// The scheme and authority of the public URL: signatures cover the URL the agent called,
/// which a TLS-terminating proxy does not show the server.
fn origin(public_url: &str) -> &str {
    let authority_start = public_url.find("://").map_or(0, |index| index + 3);
    match public_url[authority_start..].find('/') {
        Some(path_start) => &public_url[..authority_start + path_start],
        None => public_url,
    }
}

/// Runs the pipeline for a route that admits `admits`, then the handler — at most once per
/// `Idempotency-Key` (every authenticated `POST`).
pub async fn authenticate(
    admits: Admits,
    reads: Reads,
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (Admits::Kinds(kinds) | Admits::KindsSignedByAgent(kinds)) = admits else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(refuse(
            request,
            ApiError::internal(&crate::state::MissingState),
        ));
    };
    // An address past its failed authentications is refused before anything is read.
    let address = request.peer_addr().map(|address| address.ip());
    let throttle = state.failed_auth.as_ref().zip(address);
    if let Some((throttle, address)) = throttle {
        if let Err(wait) = throttle.check(address) {
            let error = ApiError::failed_auth_throttled(wait);
            crate::metrics::record_auth_failure(&request, &error);
            return Ok(refuse(request, error));
        }
    }
    let failed = |error: &ApiError| {
        let unauthenticated = actix_web::ResponseError::status_code(error).as_u16() == 401;
        if let (Some((throttle, address)), true) = (throttle, unauthenticated) {
            throttle.record_failure(address);
        }
    };
    let mut request = request;
    let signature = if is_signed(&request) {
        match verify_agent_signature(&state, &mut request).await {
            Ok(signature) => Some(signature),
            Err(error) => {
                failed(&error);
                crate::metrics::record_auth_failure(&request, &error);
                return Ok(refuse(request, error));
            }
        }
    } else {
        None
    };
    // An id that is no request id names none: the handler answers for its path.
    let read_id = match reads {
        Reads::Nothing => None,
        Reads::Request => request
            .match_info()
            .get("id")
            .and_then(|id| RequestId::parse(id).ok()),
    };
    let admission = admit(
        admits,
        kinds,
        read_id.as_ref(),
        &state,
        &request,
        signature.as_ref(),
    );
    let admitted = match admission.await {
        Ok(resolved) => idempotency::key_of(&request).map(|key| (resolved, key)),
        Err(error) => Err(error),
    };
    match admitted {
        Ok((
            Resolved {
                principal,
                request: found,
            },
            key,
        )) => {
            request
                .extensions_mut()
                .insert(Authenticated(principal.clone()));
            if reads == Reads::Request {
                request.extensions_mut().insert(ReadRequest(found));
            }
            if let Some(signature) = signature {
                request.extensions_mut().insert(signature);
            }
            match key {
                Some(key) => idempotency::run_once(&state, &principal, key, request, next).await,
                None => Ok(next.call(request).await?.map_into_boxed_body()),
            }
        }
        Err(error) => {
            tracing::info!(code = error.code(), "request refused");
            failed(&error);
            crate::metrics::record_auth_failure(&request, &error);
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
    admits: Admits,
    kinds: &[PrincipalKind],
    reads: Option<&RequestId>,
    state: &AppState,
    request: &ServiceRequest,
    signature: Option<&AgentSignature>,
) -> Result<Resolved, ApiError> {
    let resolved = resolve(admits, reads, state, request, signature).await?;
    let principal = &resolved.principal;
    if let Some(limit) = &state.rate_limit {
        limit.check(principal).map_err(ApiError::rate_limited)?;
    }
    if !kinds.contains(&principal.kind()) {
        return Err(ApiError::wrong_principal_kind(principal.kind(), kinds));
    }
    if matches!(admits, Admits::KindsSignedByAgent(_)) && signature.is_none() {
        return Err(ApiError::signature_invalid(
            "this endpoint also needs the agent's signature (Signature-Input, Signature)",
        ));
    }
    // Only now, with the credential known and admitted, is the nonce kept (a replay → 409).
    if let Some(signature) = signature {
        state
            .authenticator
            .accept_signature_nonce(&signature.key, &signature.nonce, mandate_domain::now())
            .await?;
    }
    Ok(resolved)
}

/// The principal the pipeline resolved, for handlers.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Absent only if a handler asking for a principal sits on a public route: a bug.
        left_by_pipeline(request, || {
            ApiError::internal(&PublicRouteAskedForPrincipal)
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a public route's handler asked for a principal")]
struct PublicRouteAskedForPrincipal;

/// The payment request the route reads by id (`None`: there is none), read by the pipeline
/// with the credential — whoever owns it: the handler's use case decides whether the
/// principal may read it.
#[derive(Debug, Clone)]
pub struct ReadRequest(pub Option<PaymentRequest>);

impl FromRequest for ReadRequest {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Absent only if a handler asks for it on a route the table does not declare as
        // reading a request: a bug.
        left_by_pipeline(request, || ApiError::internal(&RouteReadsNoRequest))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a handler asked for the request its route does not declare it reads")]
struct RouteReadsNoRequest;

/// An agent signature the pipeline verified (for handlers of routes that need one): the
/// domain's key for its `keyid`, and its nonce.
#[derive(Debug, Clone)]
pub struct AgentSignature {
    /// The agent's key, which signed.
    pub key: AgentKey,
    /// The signature's nonce, accepted once per key.
    pub nonce: String,
}

impl FromRequest for AgentSignature {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        left_by_pipeline(request, || {
            ApiError::signature_invalid(
                "this endpoint needs the agent's signature (Signature-Input, Signature)",
            )
        })
    }
}

/// What the pipeline left in the request's extensions for handlers; `missing` without it.
fn left_by_pipeline<T: Clone + 'static>(
    request: &HttpRequest,
    missing: impl FnOnce() -> ApiError,
) -> Ready<Result<T, ApiError>> {
    ready(request.extensions().get::<T>().cloned().ok_or_else(missing))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn the_origin_is_the_public_url_without_its_path() {
        assert_eq!(origin("https://pay.example.com"), "https://pay.example.com");
        assert_eq!(
            origin("https://pay.example.com/api/"),
            "https://pay.example.com"
        );
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
