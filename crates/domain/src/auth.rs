//! Steps 2 and 3 of the authentication pipeline: resolving a credential to a principal
//! (checked against the store *now*) and applying `X-Destination-Id`.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::agents::AgentKey;
use crate::ids::{ClientId, DestinationId, KeyId, OrchestratorId, RequestId};
use crate::keys::{KeyHasher, KeyKind};
use crate::model::{ApiKey, Client, ClientStatus, KeyOwner};
use crate::payments::PaymentRequest;
use crate::ports::{KeyRead, KeyRef, Store, StoreError};
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

/// Resolves credentials to principals against its store, *now*: API keys and the admin token,
/// access tokens, agents' signatures, and the OAuth client-credentials grant.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
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
    /// An authenticator over `store`, with the keyed hash API keys are stored under; the admin
    /// API is off when `admin_token` is `None`.
    pub fn new(store: Arc<dyn Store>, hasher: KeyHasher, admin_token: Option<String>) -> Self {
        Self {
            store,
            hasher,
            admin_token: admin_token.filter(|token| !token.is_empty()),
        }
    }

    /// Resolves a Bearer credential that is not an access token — an API key by its keyed
    /// hash, or the admin token — and, when the request sends `X-Client-Id` (`client_header`),
    /// the client ID it acts as: only an orchestrator key may name one, and only an active
    /// client ID of its own that is not an agent's. A key, the client ID it names and the
    /// payment request the route reads (`reads`) are read in one store round trip.
    pub async fn bearer(
        &self,
        token: &str,
        client_header: Option<&str>,
        reads: Option<&RequestId>,
        now: DateTime<Utc>,
    ) -> Result<Resolved, AuthError> {
        if KeyKind::of(token).is_none() {
            let principal = self.admin(token)?;
            if client_header.is_some() {
                return Err(AuthError::Forbidden(ONLY_ORCHESTRATOR_KEYS));
            }
            return self.with_request(principal, reads).await;
        }
        // A header that is no client ID names none of the orchestrator's: nothing to read.
        let named = client_header.map(ClientId::parse);
        let client_id = named.as_ref().and_then(|parsed| parsed.as_ref().ok());
        let read = self
            .store
            .key_read(KeyRef::Hash(&self.hasher.hash(token)), client_id, reads)
            .await?;
        let (key, client, request) = match read {
            Some(KeyRead {
                key,
                client,
                request,
            }) => (Some(key), client, request),
            None => (None, None, None),
        };
        let principal = key_principal(self.store.as_ref(), key, now).await?;
        let principal = match named {
            None => principal,
            Some(Err(_)) => {
                orchestrator_of(&principal)?;
                return Err(AuthError::Forbidden(NOT_YOURS));
            }
            Some(Ok(_)) => acting_client(orchestrator_of(&principal)?, client)?,
        };
        Ok(Resolved { principal, request })
    }

    /// An API key by its keyed hash, or the admin token.
    pub(crate) async fn key_or_admin(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        if KeyKind::of(token).is_none() {
            return self.admin(token);
        }
        let key = self.store.key_by_hash(&self.hasher.hash(token)).await?;
        key_principal(self.store.as_ref(), key, now).await
    }

    /// The admin token, if the admin API is on and `token` is it.
    fn admin(&self, token: &str) -> Result<Principal, AuthError> {
        match &self.admin_token {
            Some(admin) if self.hasher.matches(token, admin) => Ok(Principal::Admin),
            _ => Err(AuthError::Unauthenticated("unknown_token")),
        }
    }

    /// `principal` with the payment request `reads` names, read on its own: for credentials
    /// whose own check reads no key to read it with (the admin token, an agent's signature).
    async fn with_request(
        &self,
        principal: Principal,
        reads: Option<&RequestId>,
    ) -> Result<Resolved, AuthError> {
        let request = match reads {
            Some(id) => self.store.request(id).await?,
            None => None,
        };
        Ok(Resolved { principal, request })
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Applies `X-Destination-Id`: a platform key then acts as that destination's owner; a
    /// destination key may only name itself; no other principal may send it.
    pub async fn act_for_destination(
        &self,
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
                match self.store.destination(&id).await? {
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

/// The principal of the API key found for a presented secret, if it may still be used;
/// records the use at most once per [`TOUCH_INTERVAL_SECONDS`].
pub(crate) async fn key_principal(
    store: &dyn Store,
    key: Option<ApiKey>,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let key = key.ok_or(AuthError::Unauthenticated("unknown_key"))?;
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
    /// Resolves an agent's verified signature: `X-Client-Id` must name an active client ID
    /// whose credential is the signing key, and the approval that created it must not have
    /// reached its `expires_at` — checked here, at `now`, not only when the background job
    /// revokes the client ID a moment later.
    pub async fn agent_client(
        &self,
        key: &AgentKey,
        client_header: Option<&str>,
        reads: Option<&RequestId>,
        now: DateTime<Utc>,
    ) -> Result<Resolved, AuthError> {
        let header = client_header.ok_or(AuthError::Unauthenticated("agent_without_client_id"))?;
        let id =
            ClientId::parse(header).map_err(|_| AuthError::Unauthenticated("unknown_agent"))?;
        let (client, expires_at) = self
            .store
            .client_with_approval_expiry(&id)
            .await?
            .filter(|(client, _)| client.agent_key.as_ref() == Some(key))
            .ok_or(AuthError::Unauthenticated("unknown_agent"))?;
        if client.status != ClientStatus::Active {
            return Err(AuthError::Unauthenticated("revoked_agent"));
        }
        if expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(AuthError::Unauthenticated("expired_agent"));
        }
        self.with_request(client_principal(client, None), reads)
            .await
    }

    /// Accepts an agent signature's nonce once per key: a replay is refused.
    pub async fn accept_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if self.store.record_signature_nonce(key, nonce, now).await? {
            Ok(())
        } else {
            Err(AuthError::ReplayedNonce)
        }
    }

    /// The OAuth client-credentials grant: `secret` must be a key of the orchestrator the
    /// active client ID was issued to, and `scope` (space-separated) a subset of its
    /// permissions. Returns the client ID, the id of the key that authenticated (the token
    /// names it, so revoking the key ends the token) and the granted scope.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Client, KeyId, PermissionSet), TokenGrantError> {
        let (orchestrator_id, key_id) = match self.key_or_admin(secret, now).await {
            Ok(Principal::Orchestrator {
                orchestrator_id,
                key_id,
            }) => (orchestrator_id, key_id),
            Err(AuthError::Store(error)) => return Err(TokenGrantError::Store(error)),
            _ => return Err(TokenGrantError::InvalidClient),
        };
        let id = ClientId::parse(client_id).map_err(|_| TokenGrantError::InvalidClient)?;
        let client = self
            .store
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
        Ok((client, key_id, granted))
    }

    /// The client ID behind a verified access token, checked *now*: it must still be active
    /// and issued to the token's orchestrator, the orchestrator key that obtained the token
    /// (`key_id`) must still be active (neither revoked nor expired), and the client ID acts
    /// with the token's scope narrowed to the permissions it holds now — so revoking the
    /// client ID or the key takes effect on the very next request. One store round trip
    /// reads both, and the payment request the route reads (`reads`). The token names its
    /// client ID, so `X-Client-Id` (`client_header`) is refused with it, once the token is
    /// known to be good.
    pub async fn token_client(
        &self,
        token: &TokenSubject<'_>,
        client_header: Option<&str>,
        reads: Option<&RequestId>,
        now: DateTime<Utc>,
    ) -> Result<Resolved, AuthError> {
        const REVOKED: AuthError = AuthError::Unauthenticated("revoked_token");
        let id = ClientId::parse(token.client_id).map_err(|_| REVOKED)?;
        let key_id = KeyId::parse(token.key_id).map_err(|_| REVOKED)?;
        let KeyRead {
            key,
            client,
            request,
        } = self
            .store
            .key_read(KeyRef::Id(&key_id), Some(&id), reads)
            .await?
            .ok_or(AuthError::Unauthenticated("revoked_key"))?;
        let key_is_the_orchestrators = matches!(
            &key.owner,
            KeyOwner::Orchestrator { orchestrator_id } if orchestrator_id.as_str() == token.orchestrator_id
        );
        if !key_is_the_orchestrators || key.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated("revoked_key"));
        }
        if !key.is_active(now) {
            return Err(AuthError::Unauthenticated("expired_key"));
        }
        let client = client.ok_or(REVOKED)?;
        if client.orchestrator_id.as_str() != token.orchestrator_id
            || client.status != ClientStatus::Active
        {
            return Err(REVOKED);
        }
        if client_header.is_some() {
            return Err(AuthError::Forbidden(ONLY_ORCHESTRATOR_KEYS));
        }
        Ok(Resolved {
            principal: client_principal(client, Some(token.scope)),
            request,
        })
    }
}

/// A resolved credential: its principal, and the payment request its route reads by id,
/// read with it (`None` when the route reads none or no such request exists). Whether the
/// principal may read the request is not decided here: that is `authorize`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Who is calling.
    pub principal: Principal,
    /// The payment request the route reads, whoever owns it.
    pub request: Option<PaymentRequest>,
}

/// What a verified access token says about its holder, as [`Authenticator::token_client`]
/// checks it against the store.
#[derive(Debug, Clone, Copy)]
pub struct TokenSubject<'a> {
    /// The client ID (`sub`).
    pub client_id: &'a str,
    /// The orchestrator the client ID was issued to.
    pub orchestrator_id: &'a str,
    /// The orchestrator key that obtained the token.
    pub key_id: &'a str,
    /// The granted scope.
    pub scope: &'a PermissionSet,
}

const NOT_YOURS: &str = "X-Client-Id does not name a client ID of this orchestrator";
const ONLY_ORCHESTRATOR_KEYS: &str = "only an orchestrator key may send X-Client-Id";

/// The orchestrator behind a principal that sends `X-Client-Id`: nobody else may send it.
fn orchestrator_of(principal: &Principal) -> Result<&OrchestratorId, AuthError> {
    match principal {
        Principal::Orchestrator {
            orchestrator_id, ..
        } => Ok(orchestrator_id),
        _ => Err(AuthError::Forbidden(ONLY_ORCHESTRATOR_KEYS)),
    }
}

/// The client ID named by `X-Client-Id` (`None` when it does not exist) acting for its
/// orchestrator: it must be that orchestrator's, active, and not an agent's.
fn acting_client(
    orchestrator_id: &OrchestratorId,
    client: Option<Client>,
) -> Result<Principal, AuthError> {
    let client = client.ok_or(AuthError::Forbidden(NOT_YOURS))?;
    if &client.orchestrator_id != orchestrator_id {
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

/// A client ID acting, with its permissions narrowed to `scope` when a token carries one.
fn client_principal(client: Client, scope: Option<&PermissionSet>) -> Principal {
    let acting = ClientPrincipal::of(client);
    Principal::Client(match scope {
        Some(scope) => acting.narrowed_to(scope),
        None => acting,
    })
}
