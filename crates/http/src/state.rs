//! What every handler can reach.

use mandate_domain::auth::Authenticator;
use mandate_domain::usecases::Mandate;

/// The application state shared by all workers.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub mandate: Mandate,
    /// Resolves credentials.
    pub authenticator: Authenticator,
}
