//! The use cases: each checks `authorize`, validates its input, and calls the ports.
//! Each has its own error enum, which the HTTP layer maps to status codes.

mod claims;
mod clients;
mod customers;
mod destinations;
mod keys;
mod operations;
mod operators;
mod requests;
mod webhooks;

use std::sync::Arc;

use crate::keys::KeyHasher;
use crate::policy::Decision;
use crate::ports::{Store, StoreError};
use crate::principal::Principal;
use crate::values::Slug;

/// A field of the caller's input that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field's name in the API.
    pub field: &'static str,
    /// The rule it breaks.
    pub reason: &'static str,
}

pub use claims::{
    Approved, ClaimApprovalInput, ClaimDecisionError, NewClaim, SubmitClaimError, Submitted,
    parse_agent_key,
};
pub use clients::{ClientChange, ClientChangeError, IssueClientError, NewClient, parse_permission};
pub use customers::{CustomerChanges, CustomerError, NewCustomer};
pub use destinations::{
    CreateDestinationError, DestinationChanges, NewDestination, UpdateDestinationError,
};
pub use keys::{IssuedKey, KeyError, KeyTarget};
pub use operators::{CreateOrchestratorError, CreateOrganizationError};
pub use requests::{
    CreateRequestError, HISTORY_EVENTS_SCANNED, NewRequest, PaymentPage, PaymentPageError,
    RequestActionError, RequestHistory, request_audience,
};
pub use webhooks::{
    AfterFailure, AttemptOutcome, ClaimedBatch, EndpointInput, FannedOut, FinishedAttempt,
    ROTATION_GRACE_HOURS, WebhookError,
};

/// The id recorded as `created_by`.
pub(crate) fn principal_id(principal: &Principal) -> String {
    match principal {
        Principal::Client(client) => client.client_id.to_string(),
        Principal::Destination { destination_id, .. } => destination_id.to_string(),
        Principal::Platform {
            organization_id, ..
        } => organization_id.to_string(),
        Principal::Orchestrator {
            orchestrator_id, ..
        } => orchestrator_id.to_string(),
        Principal::Admin => "admin".to_owned(),
    }
}

/// Whether `c` may not appear in free text shown to payers or owners: control characters
/// (NUL, CR, LF, tab, the C1 range …) and the bidirectional controls that can make text read
/// differently from what it is (U+202A–U+202E embeddings and overrides, U+2066–U+2069
/// isolates, and the marks U+200E, U+200F, U+061C).
pub fn is_unsafe_text_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// The rule [`is_unsafe_text_char`] enforces, as the error names it.
pub(crate) const UNSAFE_TEXT: &str = "must not contain control or bidirectional control characters";

/// `value`, refused when it holds a character [`is_unsafe_text_char`] refuses.
pub(crate) fn safe_text(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.chars().any(is_unsafe_text_char) {
        return Err(InvalidField {
            field,
            reason: UNSAFE_TEXT,
        });
    }
    Ok(())
}

fn text_field(
    field: &'static str,
    value: &str,
    max_chars: usize,
    reason: &'static str,
) -> Result<String, InvalidField> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if length == 0 || length > max_chars {
        return Err(InvalidField { field, reason });
    }
    safe_text(field, trimmed)?;
    Ok(trimmed.to_owned())
}

fn slug_field(value: &str) -> Result<Slug, InvalidField> {
    Slug::parse(value).map_err(|invalid| InvalidField {
        field: "slug",
        reason: invalid.0,
    })
}

/// Errors of reading one resource or a list.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The resource does not exist or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller may see the resource but not this.
    #[error("this credential may not do this")]
    Forbidden,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// `Ok` where `decision` allows the read; otherwise the error that tells the caller.
    pub(crate) fn unless_allowed(decision: Decision) -> Result<(), ReadError> {
        match decision {
            Decision::Allow => Ok(()),
            Decision::Forbidden | Decision::Lacks(_) => Err(ReadError::Forbidden),
            Decision::NotFound => Err(ReadError::NotFound),
        }
    }
}

/// The use cases, over one store.
#[derive(Clone)]
pub struct Mandate {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    public_url: Option<Arc<str>>,
}

impl Mandate {
    /// Wires the use cases to a store and the server's key-hashing secret.
    pub fn new(store: Arc<dyn Store>, hasher: KeyHasher) -> Self {
        Self {
            store,
            hasher,
            public_url: None,
        }
    }

    /// The same use cases, knowing the URL people reach the server at (without a trailing
    /// slash): events then link to the console page where an owner decides
    /// (`claim.submitted`'s `review_url`).
    pub fn with_public_url(mut self, public_url: &str) -> Self {
        self.public_url = Some(public_url.trim_end_matches('/').into());
        self
    }

    /// The same use cases on another store: the transaction of a keyed call
    /// ([`crate::ports::KeyedWrite::store`]).
    pub fn on_store(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            ..self.clone()
        }
    }

    /// The store, for the keyed writes of the HTTP adapter and the webhook workers; anything
    /// else an adapter needs is a use case.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key hasher, shared with authentication.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }
}
