//! What every handler can reach.

use mandate_domain::auth::Authenticator;
use mandate_domain::ports::TargetGuard;
use mandate_domain::usecases::Mandate;

use std::sync::Arc;

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
    /// Renders the process's metrics at `GET /metrics`; `None` answers 404 there.
    pub metrics: Option<crate::MetricsRenderer>,
}
