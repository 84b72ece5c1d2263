//! Mandate's HTTP adapter: the actix-web application, the one authentication pipeline,
//! the error envelope, and the OpenAPI document. It knows the domain, not the database.

pub mod console;
mod error;
mod handlers;
pub mod idempotency;
mod input;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
mod rate_limit;
mod request_id;
pub mod routes;
mod schemas;
mod state;
pub mod tokens;
mod views;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::PathError;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, web};

pub use error::ApiError;
pub use metrics::MetricsRenderer;
pub use rate_limit::{FailedAuthThrottle, RateLimit};
pub use state::AppState;

/// JSON bodies larger than this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

fn path_error(_: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::not_found().into()
}

/// No route matched: 405 with `Allow` when the path has routes of other methods, else 404.
async fn unknown_route(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = routes::methods_of(request.path());
    if allowed.is_empty() {
        Err(ApiError::not_found())
    } else {
        Err(ApiError::method_not_allowed(&allowed))
    }
}

/// The whole application over `state`: every route behind the authentication pipeline, the
/// error envelope everywhere, request ids on every response, every request counted and timed.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::from(state.tokens.clone()))
        .app_data(web::Data::new(state))
        .app_data(web::PayloadConfig::default().limit(BODY_LIMIT_BYTES))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .configure(routes::register)
        .configure(console::register)
        .default_service(web::to(unknown_route))
        .wrap(from_fn(input::refuse_encoded_bodies))
        .wrap(from_fn(metrics::middleware))
        .wrap(from_fn(request_id::middleware))
}
