//! Steps 2 and 3 of the authentication pipeline: resolving a credential to a principal
//! (checked against the store *now*) and applying `X-Destination-Id`.

use chrono::{DateTime, Duration, Utc};

use crate::agents::AgentKey;
use crate::ids::{ClientId, DestinationId};
use crate::keys::{KeyHasher, KeyKind};
use crate::model::{Client, ClientStatus, KeyOwner};
use crate::ports::{Store, StoreError};
use crate::principal::{ClientPrincipal, Principal};
use crate::values::{Permission, PermissionSet};

/// Why a credential was refused; the reason is a stable label for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credential (HTTP 401).
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// A valid credential asking for something it may not (HTTP 403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// An agent signature's nonce was used before by the same key (HTTP 409).
    #[error("this signature nonce was already used")]
    ReplayedNonce,
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

/// Errors of the OAuth client-credentials grant, as RFC 6749 §5.2 names them.
#[derive(Debug, thiserror::Error)]
pub enum TokenGrantError {
    /// Unknown client ID, wrong secret, or a revoked client ID (`invalid_client`).
    #[error("client authentication failed")]
    InvalidClient,
    /// A scope beyond the client ID's permissions (`invalid_scope`).
    #[error("the requested scope exceeds the client ID's permissions")]
    InvalidScope,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Authenticator {
    /// Applies `X-Client-Id`: an orchestrator key naming one of its active client IDs acts as
    /// that client ID; nobody else may send the header.
    pub async fn act_as_client(
        &self,
        store: &dyn Store,
        principal: Principal,
        header: &str,
    ) -> Result<Principal, AuthError> {
        const NOT_YOURS: &str = "X-Client-Id does not name a client ID of this orchestrator";
        let Principal::Orchestrator {
            orchestrator_id, ..
        } = principal
        else {
            return Err(AuthError::Forbidden(
                "only an orchestrator key may send X-Client-Id",
            ));
        };
        let id = ClientId::parse(header).map_err(|_| AuthError::Forbidden(NOT_YOURS))?;
        let client = store
            .client(&id)
            .await?
            .ok_or(AuthError::Forbidden(NOT_YOURS))?;
        if client.orchestrator_id != orchestrator_id {
            return Err(AuthError::Forbidden(NOT_YOURS));
        }
        if client.status != ClientStatus::Active {
            return Err(AuthError::Forbidden("this client ID is revoked"));
        }
        if client.agent_key.is_some() {
            return Err(AuthError::Forbidden(
                "this client ID belongs to an agent: only the agent's signature acts as it",
            ));
        }
        Ok(client_principal(client, None))
    }

    /// Resolves an agent's verified signature: `X-Client-Id` must name an active client ID
    /// whose credential is the signing key.
    pub async fn agent_client(
        &self,
        store: &dyn Store,
        key: &AgentKey,
        client_header: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let header = client_header.ok_or(AuthError::Unauthenticated("agent_without_client_id"))?;
        let id =
            ClientId::parse(header).map_err(|_| AuthError::Unauthenticated("unknown_agent"))?;
        let client = store
            .client(&id)
            .await?
            .filter(|client| client.agent_key.as_ref() == Some(key))
            .ok_or(AuthError::Unauthenticated("unknown_agent"))?;
        if client.status != ClientStatus::Active {
            return Err(AuthError::Unauthenticated("revoked_agent"));
        }
        Ok(client_principal(client, None))
    }

    /// Accepts an agent signature's nonce once per key: a replay is refused.
    pub async fn accept_signature_nonce(
        &self,
        store: &dyn Store,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if store.record_signature_nonce(key, nonce, now).await? {
            Ok(())
        } else {
            Err(AuthError::ReplayedNonce)
        }
    }

    /// The OAuth client-credentials grant: `secret` must be a key of the orchestrator the
    /// active client ID was issued to, and `scope` (space-separated) a subset of its
    /// permissions. Returns the client ID and the granted scope.
    pub async fn client_credentials(
        &self,
        store: &dyn Store,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Client, PermissionSet), TokenGrantError> {
        let orchestrator_id = match self.bearer(store, secret, now).await {
            Ok(Principal::Orchestrator {
                orchestrator_id, ..
            }) => orchestrator_id,
            Err(AuthError::Store(error)) => return Err(TokenGrantError::Store(error)),
            _ => return Err(TokenGrantError::InvalidClient),
        };
        let id = ClientId::parse(client_id).map_err(|_| TokenGrantError::InvalidClient)?;
        let client = store
            .client(&id)
            .await?
            .ok_or(TokenGrantError::InvalidClient)?;
        // An agent's client ID has no secret but the agent's key: no tokens for it.
        if client.orchestrator_id != orchestrator_id
            || client.status != ClientStatus::Active
            || client.agent_key.is_some()
        {
            return Err(TokenGrantError::InvalidClient);
        }
        let granted = match scope.map(str::trim).filter(|scope| !scope.is_empty()) {
            None => client.permissions.clone(),
            Some(scope) => {
                let requested = scope
                    .split_ascii_whitespace()
                    .map(Permission::parse)
                    .collect::<Result<PermissionSet, _>>()
                    .map_err(|_| TokenGrantError::InvalidScope)?;
                if !requested.is_subset(&client.permissions) {
                    return Err(TokenGrantError::InvalidScope);
                }
                requested
            }
        };
        Ok((client, granted))
    }

    /// The client ID behind a verified access token, checked *now*: it must still be active
    /// and issued to the token's orchestrator, and it acts with the token's scope narrowed to
    /// the permissions it holds now, so a revocation takes effect on the very next request.
    pub async fn token_client(
        &self,
        store: &dyn Store,
        client_id: &str,
        orchestrator_id: &str,
        scope: &PermissionSet,
    ) -> Result<Principal, AuthError> {
        const REVOKED: AuthError = AuthError::Unauthenticated("revoked_token");
        let id = ClientId::parse(client_id).map_err(|_| REVOKED)?;
        let client = store.client(&id).await?.ok_or(REVOKED)?;
        if client.orchestrator_id.as_str() != orchestrator_id
            || client.status != ClientStatus::Active
        {
            return Err(REVOKED);
        }
        Ok(client_principal(client, Some(scope)))
    }
}

/// A client ID acting, with its permissions narrowed to `scope` when a token carries one.
fn client_principal(client: Client, scope: Option<&PermissionSet>) -> Principal {
    let mut acting = ClientPrincipal::of(client);
    if let Some(scope) = scope {
        acting.permissions = acting
            .permissions
            .iter()
            .filter(|permission| scope.contains(*permission))
            .collect();
    }
    Principal::Client(acting)
}
