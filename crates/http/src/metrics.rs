//! The HTTP layer's metrics, recorded through the `metrics` facade (the binary installs the
//! recorder and hands its renderer to [`crate::AppState`]): requests by route template and
//! status, their latency, and the authentication pipeline's refusals by reason.
//!
//! Labels come from small fixed sets: the route is the matched template
//! (`/v1/requests/{id}`), never the raw path, and the method one of the standard methods or
//! `other`, so neither ids nor invented methods can multiply the series.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;

use crate::error::ApiError;

/// `mandate_http_requests_total{method, route, status}`.
pub const REQUESTS_TOTAL: &str = "mandate_http_requests_total";
/// `mandate_http_request_duration_seconds{method, route}`.
pub const REQUEST_DURATION: &str = "mandate_http_request_duration_seconds";
/// `mandate_auth_failures_total{reason}`.
pub const AUTH_FAILURES_TOTAL: &str = "mandate_auth_failures_total";

/// The route label of requests that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Renders every metric of the process in the Prometheus text format.
#[derive(Clone)]
pub struct MetricsRenderer(Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsRenderer {
    /// A renderer calling `render` at each scrape.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The metrics now.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for MetricsRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRenderer")
    }
}

/// Counts and times every request, labelled by the route it matched.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let outcome = next.call(request).await;
    let (route, status) = match &outcome {
        Ok(response) => (response.request().match_pattern(), response.status()),
        Err(error) => (None, error.as_response_error().status_code()),
    };
    let route = route.unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    metrics::counter!(
        REQUESTS_TOTAL,
        "method" => method,
        "route" => route.clone(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    outcome.map(ServiceResponse::map_into_boxed_body)
}

/// The method label: a standard method by its name, anything else `other` (a method is any
/// token the caller likes, and each distinct label is a series kept for the process's life).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts a refusal of the authentication pipeline by its reason; refusals that are not about
/// the credential (an unavailable database, a malformed idempotency key) are not counted.
pub(crate) fn record_auth_failure(request: &ServiceRequest, error: &ApiError) {
    if let Some(reason) = auth_failure_reason(request, error) {
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => reason).increment(1);
    }
}

/// Counts a refused OAuth client-credentials grant (`invalid_client`).
pub(crate) fn record_refused_client_credentials() {
    metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => "invalid_client").increment(1);
}

/// The reason label: the domain's stable reason when the credential was resolved and refused
/// (`unknown_key`, `revoked_key`, `expired_key`, `unknown_token`, `revoked_token`,
/// `unknown_agent`, `revoked_agent`, `replayed_nonce`), an agent signature's own reason
/// (`digest_mismatch`, `bad_signature`, `created_too_old`, …), else one
/// of `missing_credential`, `malformed_credential`, `invalid_token`, `forbidden_header` (an
/// `X-Client-Id` or `X-Destination-Id` the credential may not send), `wrong_principal_kind`
/// and `rate_limited`. (The token endpoint counts `invalid_client` itself.)
fn auth_failure_reason(request: &ServiceRequest, error: &ApiError) -> Option<&'static str> {
    if let Some(reason) = error.auth_reason() {
        return Some(reason);
    }
    match actix_web::ResponseError::status_code(error) {
        StatusCode::UNAUTHORIZED => {
            let mut all = request.headers().get_all(AUTHORIZATION);
            let presented = all.next();
            if all.next().is_some() {
                return Some("malformed_credential");
            }
            let bearer = presented
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.split_once(' '))
                .map(|(_, token)| token.trim());
            Some(match (presented, bearer) {
                (None, _) => "missing_credential",
                (Some(_), Some(token)) if crate::tokens::looks_like_jwt(token) => "invalid_token",
                (Some(_), _) => "malformed_credential",
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_others_are_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["INVENTED", "get", "X1"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{invented}");
        }
    }
}
