//! Liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::state::State;

/// Readiness probes give up after this long, well under a load balancer's timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Status)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.mandate.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Status { status: "ready" })),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "not ready");
            Err(ApiError::unavailable())
        }
        Err(_) => Err(ApiError::unavailable()),
    }
}

/// This document, with this server's public URL as its `servers`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub async fn openapi(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::json(&state.public_url).to_string())
}

/// The process's metrics, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
              (status = 404, body = ErrorEnvelope, description = "metrics are not enabled")))]
pub async fn metrics(state: State) -> Result<HttpResponse, ApiError> {
    let renderer = state.metrics.as_ref().ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(renderer.render()))
}
