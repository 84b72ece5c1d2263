//! `Idempotency-Key` on `POST`: the same key and body get the first response again; the same
//! key with another request gets 409; a duplicate arriving while the first is still running
//! gets 409 and may retry. Responses with status ≥ 500 are not kept.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use mandate_domain::ports::{IdempotencyStart, Store};
use mandate_domain::principal::Principal;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::pipeline::{CLIENT_HEADER, DESTINATION_HEADER};
use crate::state::AppState;

/// `Idempotency-Key`.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed response.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A claim without an answer for this long belongs to a request that died.
const ABANDONED_AFTER_SECONDS: i64 = 60;

/// The idempotency key of a `POST`, validated; `None` when the request carries none.
pub fn key_of(request: &ServiceRequest) -> Result<Option<String>, ApiError> {
    if request.method() != Method::POST {
        return Ok(None);
    }
    let Some(value) = request.headers().get(&HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_owned())),
        _ => Err(ApiError::invalid_field(
            "Idempotency-Key",
            "Idempotency-Key must be 1-255 visible ASCII characters",
        )),
    }
}

/// Who a key belongs to: keys are scoped to the credential.
fn scope(principal: &Principal) -> String {
    match principal {
        Principal::Admin => "admin".to_owned(),
        Principal::Platform { key_id, .. }
        | Principal::Destination { key_id, .. }
        | Principal::Orchestrator { key_id, .. } => key_id.to_string(),
        Principal::Client(client) => client.client_id.to_string(),
    }
}

/// What makes two requests "the same": the target, the headers that change its meaning,
/// and the body.
fn fingerprint(request: &ServiceRequest, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [
        request.method().as_str().as_bytes(),
        request.uri().path().as_bytes(),
        request.uri().query().unwrap_or_default().as_bytes(),
        request
            .headers()
            .get(&DESTINATION_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default(),
        request
            .headers()
            .get(&CLIENT_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default(),
        body,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn replay(status: u16, body: String) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((REPLAYED, "true"))
        .body(body)
}

/// Runs `next` at most once per (credential, key); replays, refuses or records as needed.
pub async fn run_once(
    state: &AppState,
    principal: &Principal,
    key: String,
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let body = request
        .extract::<web::Bytes>()
        .await
        .map_err(|_| ApiError::payload_too_large())?;
    let fingerprint = fingerprint(&request, &body);
    request.set_payload(Payload::from(body));
    let store = state.mandate.store();
    let scope = scope(principal);
    let started = store
        .begin_idempotent(
            &scope,
            &key,
            &fingerprint,
            mandate_domain::now(),
            chrono::Duration::seconds(ABANDONED_AFTER_SECONDS),
        )
        .await
        .map_err(ApiError::from)?;
    let refusal = match started {
        IdempotencyStart::Started => None,
        IdempotencyStart::Replay { status, body } => {
            return Ok(request.into_response(replay(status, body)));
        }
        IdempotencyStart::InFlight => Some(ApiError::conflict(
            "a request with this Idempotency-Key is still in progress: retry later",
        )),
        IdempotencyStart::Mismatch => Some(ApiError::conflict(
            "this Idempotency-Key was used with a different request",
        )),
    };
    if let Some(error) = refusal {
        let response = actix_web::ResponseError::error_response(&error);
        return Ok(request.into_response(response));
    }
    let response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            release(store.as_ref(), &scope, &key).await;
            return Err(error);
        }
    };
    let (http_request, http_response) = response.into_parts();
    let (head, body) = http_response.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| ApiError::internal(&UnreadableBody))?;
    if head.status().is_server_error() {
        release(store.as_ref(), &scope, &key).await;
    } else {
        let text = String::from_utf8_lossy(&bytes);
        store
            .complete_idempotent(&scope, &key, head.status().as_u16(), &text)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(ServiceResponse::new(
        http_request,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}

async fn release(store: &dyn Store, scope: &str, key: &str) {
    if let Err(error) = store.release_idempotent(scope, key).await {
        // The claim then lapses after ABANDONED_AFTER_SECONDS.
        tracing::warn!(error = %error, "could not release an idempotency key");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a response body could not be read for the idempotency record")]
struct UnreadableBody;
