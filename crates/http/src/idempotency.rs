//! `Idempotency-Key` on `POST`: the same key and body get the first response again; the same
//! key with another request gets 409; a duplicate arriving while the first is still running
//! gets 409 and may retry. Responses with status ≥ 500 are not kept.
//!
//! Most routes claim the key before the handler and store the response after it (two commits
//! besides the handler's own). A route declared [`KeyRecording::InWrite`] instead stores its
//! answer in the transaction of its write, through [`InWriteKey`]: one commit in all, and no
//! statement for the key unless the write finds it taken. A concurrent duplicate waits until
//! the first commits and then gets its response, having written nothing.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use mandate_domain::ports::{IdempotencyStart, IdempotentAnswer, Store};
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

const IN_FLIGHT: &str = "a request with this Idempotency-Key is still in progress: retry later";

/// How a route keeps the answers to its `Idempotency-Key`s; declared in the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRecording {
    /// The key is claimed before the handler runs, and its response stored after it.
    AroundHandler,
    /// The handler stores its answer in the transaction of its write, through [`InWriteKey`].
    InWrite,
}

/// The `Idempotency-Key` of a request to a [`KeyRecording::InWrite`] route: the handler builds
/// the answer to store with its write, and says whether it stored it.
#[derive(Debug, Clone)]
pub struct InWriteKey(Rc<InWriteState>);

#[derive(Debug)]
struct InWriteState {
    scope: String,
    key: String,
    fingerprint: String,
    received_at: DateTime<Utc>,
    outcome: Cell<InWriteOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InWriteOutcome {
    /// The handler stored nothing with the key (it refused the request).
    Unused,
    /// The answer was stored with the write.
    Stored,
    /// The key already had a record (an earlier or concurrent request's); nothing was
    /// written.
    Taken,
}

impl InWriteKey {
    /// The answer to store with the write: `status` and the JSON `body` the handler will send.
    pub fn answer(&self, status: StatusCode, body: &str) -> IdempotentAnswer {
        IdempotentAnswer {
            scope: self.0.scope.clone(),
            key: self.0.key.clone(),
            fingerprint: self.0.fingerprint.clone(),
            status: status.as_u16(),
            body: body.to_owned(),
            created_at: self.0.received_at,
        }
    }

    /// The answer was stored with the write.
    pub fn stored(&self) {
        self.0.outcome.set(InWriteOutcome::Stored);
    }

    /// The key already had a record (an earlier request's, or a concurrent one's that
    /// committed first): the handler wrote nothing and answers 409, which the pipeline
    /// replaces by the earlier response when there is one.
    pub fn taken(&self) -> ApiError {
        self.0.outcome.set(InWriteOutcome::Taken);
        ApiError::conflict(IN_FLIGHT)
    }
}

/// The [`InWriteKey`] of the request, if it carries an `Idempotency-Key` and its route is
/// declared [`KeyRecording::InWrite`].
#[derive(Debug)]
pub struct WriteIdempotency(pub Option<InWriteKey>);

impl FromRequest for WriteIdempotency {
    type Error = Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(request.extensions().get::<InWriteKey>().cloned())))
    }
}

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

/// What an earlier request with the key decided for this one: its response again, or a
/// refusal; `None` when this request may run.
fn earlier_answer(found: IdempotencyStart) -> Option<HttpResponse> {
    let refusal = match found {
        IdempotencyStart::Started => return None,
        IdempotencyStart::Replay { status, body } => return Some(replay(status, body)),
        IdempotencyStart::InFlight => ApiError::conflict(IN_FLIGHT),
        IdempotencyStart::Mismatch => {
            ApiError::conflict("this Idempotency-Key was used with a different request")
        }
    };
    Some(actix_web::ResponseError::error_response(&refusal))
}

/// Runs `next` at most once per (credential, key); replays, refuses or records as needed.
pub async fn run_once(
    state: &AppState,
    principal: &Principal,
    key: String,
    recording: KeyRecording,
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
    let now = mandate_domain::now();
    if recording == KeyRecording::InWrite {
        let key = InWriteKey(Rc::new(InWriteState {
            scope,
            key,
            fingerprint,
            received_at: now,
            outcome: Cell::new(InWriteOutcome::Unused),
        }));
        return run_in_write(store.as_ref(), key, request, next).await;
    }
    let started = store
        .begin_idempotent(
            &scope,
            &key,
            &fingerprint,
            now,
            chrono::Duration::seconds(ABANDONED_AFTER_SECONDS),
        )
        .await
        .map_err(ApiError::from)?;
    if let Some(response) = earlier_answer(started) {
        return Ok(request.into_response(response));
    }
    let response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            release(store.as_ref(), &scope, &key).await;
            return Err(error);
        }
    };
    let (http_request, status, response) = buffered(response).await?;
    if status.is_server_error() {
        release(store.as_ref(), &scope, &key).await;
    } else {
        let text = String::from_utf8_lossy(&response.body);
        store
            .complete_idempotent(&scope, &key, status.as_u16(), &text)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(ServiceResponse::new(http_request, response.rebuild()))
}

/// Runs the handler of an [`KeyRecording::InWrite`] route. The key is looked up only when
/// the handler did not store its answer: on a request's first run (the common case) the key
/// costs no statement of its own.
async fn run_in_write(
    store: &dyn Store,
    key: InWriteKey,
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    request.extensions_mut().insert(key.clone());
    let response = next.call(request).await?;
    let outcome = key.0.outcome.get();
    if outcome == InWriteOutcome::Stored {
        return Ok(response.map_into_boxed_body());
    }
    // The key was taken, or the handler refused the request before writing: an earlier
    // request's record decides what this one gets (its response again, or 409).
    let state = key.0.as_ref();
    let found = store
        .lookup_idempotent(&state.scope, &state.key, &state.fingerprint)
        .await
        .map_err(ApiError::from)?;
    if let Some(answer) = found.and_then(earlier_answer) {
        let (http_request, _) = response.into_parts();
        return Ok(ServiceResponse::new(http_request, answer));
    }
    if outcome == InWriteOutcome::Taken {
        return Ok(response.map_into_boxed_body());
    }
    // A first refusal is kept like any answer below 500.
    let (http_request, status, response) = buffered(response).await?;
    if !status.is_server_error() {
        let text = String::from_utf8_lossy(&response.body);
        store
            .record_idempotent(&key.answer(status, &text))
            .await
            .map_err(ApiError::from)?;
    }
    Ok(ServiceResponse::new(http_request, response.rebuild()))
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

async fn release(store: &dyn Store, scope: &str, key: &str) {
    if let Err(error) = store.release_idempotent(scope, key).await {
        // The claim then lapses after ABANDONED_AFTER_SECONDS.
        tracing::warn!(error = %error, "could not release an idempotency key");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a response body could not be read for the idempotency record")]
struct UnreadableBody;
