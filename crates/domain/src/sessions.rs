//! The owner's console: a platform or destination key signs in once and the browser holds a
//! random session token. Only the token's keyed hash is stored, beside the keyed hash of the
//! key that signed in (as the key table keeps it), so every page re-reads the key *now*: a
//! revoked or expired key ends its sessions at once.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;

use crate::auth::{AuthError, Authenticator};
use crate::keys::KeyKind;
use crate::ports::StoreError;
use crate::principal::Principal;
use crate::usecases::Mandate;

/// One console session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The keyed hash of the session token (the token itself is only in the browser's cookie).
    pub token_hash: String,
    /// The keyed hash of the key that signed in, the one the key table is looked up by.
    pub key_hash: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it ends, whatever happens to its key.
    pub expires_at: DateTime<Utc>,
}

/// Console sessions. Every method is one transaction.
#[async_trait]
pub trait ConsoleSessionStore: Send + Sync {
    /// Stores a new session.
    async fn insert_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;

    /// The session whose token hashes to `token_hash`, expired or not.
    async fn console_session(&self, token_hash: &str)
    -> Result<Option<ConsoleSession>, StoreError>;

    /// Ends a session; `false` when there was none.
    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Deletes the sessions that expired at or before `now`; returns how many.
    async fn purge_console_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A session just opened: the token for the browser's cookie, shown nowhere else.
pub struct OpenedSession {
    /// The session token, in plain text.
    pub token: String,
    /// Who signed in.
    pub principal: Principal,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who may sign in to the console: the people who decide for a destination.
const CONSOLE_KEYS_ONLY: &str = "only a platform or destination key may sign in to the console";

/// What the CSRF token of a session is derived from, apart from the session token: a
/// separate input, so the token in a page tells nothing about the hash that is stored.
const CSRF_CONTEXT: &str = "mandate console csrf\0";

/// What the key sealing a session's shown-once values is derived from, apart from the session
/// token: neither the stored hash nor the CSRF token, so neither opens them.
const FLASH_CONTEXT: &str = "mandate console flash\0";

impl Authenticator {
    /// Opens a console session for a platform or destination `key`, valid for `lifetime`.
    pub async fn open_console_session(
        &self,
        key: &str,
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<OpenedSession, AuthError> {
        if !matches!(
            KeyKind::of(key),
            Some(KeyKind::Platform | KeyKind::Destination)
        ) {
            // An orchestrator key or the admin token is checked like any credential first, so
            // that a wrong one counts as a failure; a right one is still not for the console.
            self.key_or_admin(key, now).await?;
            return Err(AuthError::Forbidden(CONSOLE_KEYS_ONLY));
        }
        let principal = self.key_or_admin(key, now).await?;
        let token = session_token();
        let expires_at = now + lifetime;
        let session = ConsoleSession {
            token_hash: self.hasher().hash(&token),
            key_hash: self.hasher().hash(key),
            created_at: now,
            expires_at,
        };
        self.store().insert_console_session(&session).await?;
        Ok(OpenedSession {
            token,
            principal,
            expires_at,
        })
    }

    /// The principal of a console session, checked *now*: the session must not have expired
    /// and its key must still be active (an expired session is deleted on the way).
    pub async fn console_principal(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let token_hash = self.hasher().hash(token);
        let session = self
            .store()
            .console_session(&token_hash)
            .await?
            .ok_or(AuthError::Unauthenticated("unknown_session"))?;
        if session.expires_at <= now {
            self.store().delete_console_session(&token_hash).await?;
            return Err(AuthError::Unauthenticated("expired_session"));
        }
        let key = self.store().key_by_hash(&session.key_hash).await?;
        crate::auth::key_principal(self.store().as_ref(), key, now).await
    }

    /// Ends a console session (signing out); nothing happens for an unknown token.
    pub async fn close_console_session(&self, token: &str) -> Result<(), StoreError> {
        self.store()
            .delete_console_session(&self.hasher().hash(token))
            .await
            .map(|_| ())
    }

    /// The CSRF token that the forms of a session carry: derived from the session token under
    /// the server secret, so another session's (or a guessed) token never matches.
    pub fn console_csrf_token(&self, session_token: &str) -> String {
        self.hasher()
            .hash(&format!("{CSRF_CONTEXT}{session_token}"))
    }

    /// The key material that seals a value shown once (a signing secret, a payment link) on
    /// its way through the browser to the session's next page: derived from the session
    /// token under the server secret, never stored, never sent.
    pub fn console_flash_key(&self, session_token: &str) -> String {
        self.hasher()
            .hash(&format!("{FLASH_CONTEXT}{session_token}"))
    }

    /// Whether `presented` is the CSRF token of the session, compared in constant time.
    pub fn console_csrf_matches(&self, session_token: &str, presented: &str) -> bool {
        self.hasher()
            .matches(presented, &self.console_csrf_token(session_token))
    }
}

impl Mandate {
    /// Deletes the console sessions that have expired by `now`; returns how many.
    pub async fn purge_console_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store().purge_console_sessions(now).await
    }
}

/// 32 random bytes, hex: what the browser's cookie holds.
fn session_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
