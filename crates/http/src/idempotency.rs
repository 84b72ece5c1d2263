//! `Idempotency-Key` on `POST`: a call runs at most once per (credential, key). The call runs
//! in a transaction of the store that begins by taking the key and ends by storing the answer
//! ([`KeyedWrite`]): the call's writes and its answer commit together, or neither does.
//!
//! What a client sees (docs/api.md):
//! - the same key and request after the first call committed: its answer again, with
//!   `Idempotent-Replayed: true`, however the first response was lost (a crash, a cut
//!   connection, a 503 after the commit);
//! - while the first call runs: the second waits for it and then gets its answer; when the
//!   wait outlasts the store's lock timeout, 409 with `Retry-After`;
//! - the first call died before its commit (or answered ≥ 500): nothing of it stayed, and the
//!   retry runs afresh;
//! - the same key with another request: 409;
//! - a refusal (4xx) changed nothing: it is rolled back and kept as the key's answer, and
//!   replayed like any answer.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use mandate_domain::ports::{IdempotencyStart, KeyedCall, KeyedStart, KeyedWrite};
use mandate_domain::principal::Principal;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::pipeline::{CLIENT_HEADER, DESTINATION_HEADER};
use crate::state::{AppState, State};

/// `Idempotency-Key`.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed response.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a client told that the first call is still running should wait, in seconds.
const IN_FLIGHT_RETRY_AFTER: &str = "1";

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

/// What an earlier call with the key decided for this one: its answer again, or a refusal.
fn earlier_answer(found: IdempotencyStart) -> HttpResponse {
    let refusal = match found {
        IdempotencyStart::Replay { status, body } => return replay(status, body),
        IdempotencyStart::InFlight => {
            let mut response = actix_web::ResponseError::error_response(&ApiError::conflict(
                "a request with this Idempotency-Key is still in progress: retry later",
            ));
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(IN_FLIGHT_RETRY_AFTER));
            return response;
        }
        IdempotencyStart::Mismatch => {
            ApiError::conflict("this Idempotency-Key was used with a different request")
        }
    };
    actix_web::ResponseError::error_response(&refusal)
}

/// Runs `next` at most once per (credential, key), in the key's transaction; replays or
/// refuses as an earlier call with the key decided.
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
    let call = KeyedCall {
        scope: principal.credential_id(),
        key,
        fingerprint: fingerprint(&request, &body),
        received_at: mandate_domain::now(),
    };
    request.set_payload(Payload::from(body));
    let store = state.mandate.store().clone();
    let write = match store
        .clone()
        .begin_keyed(&call)
        .await
        .map_err(ApiError::from)?
    {
        KeyedStart::Run(write) => write,
        KeyedStart::Answered(found) => return Ok(request.into_response(earlier_answer(found))),
    };
    let keyed = State::keyed(state, state.mandate.on_store(write.store()));
    request.extensions_mut().insert(keyed);
    let response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            roll_back(write).await;
            return Err(error);
        }
    };
    let (http_request, status, response) = match buffered(response).await {
        Ok(buffered) => buffered,
        Err(error) => {
            roll_back(write).await;
            return Err(error.into());
        }
    };
    let answer = call.answer(
        status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    );
    if status.is_success() || status.is_redirection() {
        // Should the commit fail, the client sees the error and retries: a commit that did
        // happen is then replayed, one that did not runs again.
        write.commit(answer).await.map_err(ApiError::from)?;
        #[cfg(feature = "fault-injection")]
        fault_injection::crash_after_commit(&call.key);
    } else {
        // A refusal, or a server error, keeps nothing of what the call wrote.
        roll_back(write).await;
        if !status.is_server_error() {
            // A refusal is the key's answer like any other; a call that took the key since
            // the rollback keeps its own.
            store
                .record_idempotent(&answer)
                .await
                .map_err(ApiError::from)?;
        }
    }
    Ok(ServiceResponse::new(http_request, response.rebuild()))
}

/// A crash at the worst moment for a keyed call, for the fault suite: after its commit,
/// before its answer leaves. Built only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
mod fault_injection {
    use std::sync::OnceLock;

    /// The `Idempotency-Key` whose call kills the process once committed.
    const ENV: &str = "MANDATE_FAULT_CRASH_AFTER_COMMIT";

    pub(super) fn crash_after_commit(key: &str) {
        static KEY: OnceLock<Option<String>> = OnceLock::new();
        if KEY.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(key) {
            std::process::abort();
        }
    }
}

async fn roll_back(write: Box<dyn KeyedWrite>) {
    if let Err(error) = write.roll_back().await {
        // The transaction ends with its connection anyway.
        tracing::warn!(error = %error, "could not roll back a keyed call");
    }
}

/// A response whose body has been read, to be stored and sent.
struct BufferedResponse {
    head: HttpResponse<()>,
    body: Bytes,
}

impl BufferedResponse {
    fn rebuild(self) -> HttpResponse {
        self.head.set_body(self.body).map_into_boxed_body()
    }
}

async fn buffered(
    response: ServiceResponse<impl MessageBody>,
) -> Result<(HttpRequest, StatusCode, BufferedResponse), ApiError> {
    let (http_request, http_response) = response.into_parts();
    let status = http_response.status();
    let (head, body) = http_response.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| ApiError::internal(&UnreadableBody))?;
    Ok((http_request, status, BufferedResponse { head, body: bytes }))
}

#[derive(Debug, thiserror::Error)]
#[error("a response body could not be read for the idempotency record")]
struct UnreadableBody;
