//! Steps 2 and 3 of the authentication pipeline: resolving a credential to a principal
//! (checked against the store *now*) and applying `X-Destination-Id`.

use chrono::{DateTime, Duration, Utc};

use crate::ids::DestinationId;
use crate::keys::{KeyHasher, KeyKind};
use crate::model::KeyOwner;
use crate::ports::{Store, StoreError};
use crate::principal::Principal;

/// Why a credential was refused; the reason is a stable label for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credential (HTTP 401).
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// A valid credential asking for something it may not (HTTP 403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `last_used_at` is refreshed at most this often, so authentication stays a read.
const TOUCH_INTERVAL_SECONDS: i64 = 60;

/// Resolves bearer credentials to principals.
#[derive(Clone)]
pub struct Authenticator {
    hasher: KeyHasher,
    admin_token: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("admin_api_enabled", &self.admin_token.is_some())
            .finish()
    }
}

impl Authenticator {
    /// An authenticator; the admin API is off when `admin_token` is `None`.
    pub fn new(hasher: KeyHasher, admin_token: Option<String>) -> Self {
        Self {
            hasher,
            admin_token: admin_token.filter(|token| !token.is_empty()),
        }
    }

    /// Resolves a bearer token: an API key by its keyed hash, or the admin token.
    pub async fn bearer(
        &self,
        store: &dyn Store,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        if KeyKind::of(token).is_none() {
            return match &self.admin_token {
                Some(admin) if self.hasher.matches(token, admin) => Ok(Principal::Admin),
                _ => Err(AuthError::Unauthenticated("unknown_token")),
            };
        }
        let key = store
            .key_by_hash(&self.hasher.hash(token))
            .await?
            .ok_or(AuthError::Unauthenticated("unknown_key"))?;
        if key.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated("revoked_key"));
        }
        if !key.is_active(now) {
            return Err(AuthError::Unauthenticated("expired_key"));
        }
        if key
            .last_used_at
            .is_none_or(|used| now - used >= Duration::seconds(TOUCH_INTERVAL_SECONDS))
        {
            store.touch_key(&key.id, now).await?;
        }
        Ok(match key.owner {
            KeyOwner::Platform { organization_id } => Principal::Platform {
                organization_id,
                key_id: key.id,
                acting_for: None,
            },
            KeyOwner::Destination {
                organization_id,
                destination_id,
            } => Principal::Destination {
                organization_id,
                destination_id,
                key_id: key.id,
            },
            KeyOwner::Orchestrator { orchestrator_id } => Principal::Orchestrator {
                orchestrator_id,
                key_id: key.id,
            },
        })
    }

    /// Applies `X-Destination-Id`: a platform key then acts as that destination's owner; a
    /// destination key may only name itself; no other principal may send it.
    pub async fn act_for_destination(
        &self,
        store: &dyn Store,
        principal: Principal,
        header: &str,
    ) -> Result<Principal, AuthError> {
        const NOT_IN_ORGANIZATION: &str =
            "X-Destination-Id does not name a destination of this organization";
        match principal {
            Principal::Platform {
                organization_id,
                key_id,
                ..
            } => {
                let id = DestinationId::parse(header)
                    .map_err(|_| AuthError::Forbidden(NOT_IN_ORGANIZATION))?;
                match store.destination(&id).await? {
                    Some(destination) if destination.organization_id == organization_id => {
                        Ok(Principal::Platform {
                            organization_id,
                            key_id,
                            acting_for: Some(destination.id),
                        })
                    }
                    _ => Err(AuthError::Forbidden(NOT_IN_ORGANIZATION)),
                }
            }
            Principal::Destination {
                ref destination_id, ..
            } => {
                if DestinationId::parse(header).is_ok_and(|named| &named == destination_id) {
                    Ok(principal)
                } else {
                    Err(AuthError::Forbidden(
                        "a destination key may only name its own destination",
                    ))
                }
            }
            Principal::Admin | Principal::Orchestrator { .. } | Principal::Client(_) => Err(
                AuthError::Forbidden("this credential may not send X-Destination-Id"),
            ),
        }
    }
}
