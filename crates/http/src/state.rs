//! What every handler can reach.

use mandate_domain::auth::Authenticator;
use mandate_domain::ports::TargetGuard;
use mandate_domain::usecases::Mandate;

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::error::ApiError;
use crate::tokens::TokenService;
use crate::{FailedAuthThrottle, RateLimit};

/// The application state shared by all workers.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub mandate: Mandate,
    /// Resolves credentials.
    pub authenticator: Authenticator,
    /// The URL clients reach the server at, without a trailing slash (payment links).
    pub public_url: String,
    /// Per-credential rate limit; `None` when off.
    pub rate_limit: Option<RateLimit>,
    /// The throttle of failed authentication per source address; `None` when off.
    pub failed_auth: Option<FailedAuthThrottle>,
    /// Issues and verifies OAuth access tokens.
    pub tokens: Arc<TokenService>,
    /// Checks webhook targets against the network policy.
    pub target_guard: Arc<dyn TargetGuard>,
    /// Whether `http://` webhook targets are allowed.
    pub allow_http: bool,
    /// How long a console sign-in lasts.
    pub console_session_lifetime: chrono::Duration,
    /// Renders the process's metrics at `GET /metrics`; `None` answers 404 there.
    pub metrics: Option<crate::MetricsRenderer>,
}

/// The application state as a handler reaches it: inside the request's keyed call when it
/// carries an `Idempotency-Key` (the use cases then run in the call's transaction, see
/// [`crate::idempotency`]), the server's otherwise. Every handler takes it, so that none can
/// write beside its call's transaction.
pub struct State(Arc<AppState>);

impl State {
    /// The state of a keyed call: the server's, with its use cases on `mandate`.
    pub(crate) fn keyed(state: &AppState, mandate: Mandate) -> Self {
        Self(Arc::new(AppState {
            mandate,
            ..state.clone()
        }))
    }
}

impl Clone for State {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl std::ops::Deref for State {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl FromRequest for State {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let keyed = request.extensions().get::<State>().cloned();
        ready(
            keyed
                .or_else(|| {
                    request
                        .app_data::<web::Data<AppState>>()
                        .map(|data| Self(data.clone().into_inner()))
                })
                .ok_or_else(|| ApiError::internal(&MissingState)),
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the application state is not registered")]
pub(crate) struct MissingState;
