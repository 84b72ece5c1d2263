//! `X-Request-Id`: echoed when the caller sends a sane one, generated otherwise, attached to
//! every response, to the error envelope and to every log line of the request.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

/// The header's name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled (empty outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A caller's id is kept only when it is short, visible ASCII: it ends up in logs.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| text.to_owned())
}

/// The path as logged: a payment link's token is its only secret, so it never reaches a log.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/pay/") {
        "/pay/{token}"
    } else {
        path
    }
}

/// The middleware: assigns the id, runs the request inside a span that carries it, and logs
/// one line per request.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(acceptable)
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %loggable_path(request.path()));
    let started = Instant::now();
    let header = HeaderValue::from_str(&id).ok();
    // Handlers, extractors and the pipeline turn their errors into responses themselves,
    // inside this scope, so that every envelope carries the id.
    let handled = async move {
        next.call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body)
    };
    let mut response = REQUEST_ID
        .scope(id, handled)
        .instrument(span.clone())
        .await?;
    let _entered = span.enter();
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(status = response.status().as_u16(), elapsed_ms, "handled");
    if let Some(header) = header {
        response.headers_mut().insert(HEADER, header);
    }
    Ok(response)
}
