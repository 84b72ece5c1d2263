//! Console sessions on the in-memory reference adapter: a session lives while its key does and
//! until it expires, its CSRF token belongs to it alone, and only owners sign in.

// Assertions are how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::Duration;
use mandate_contract::fixtures;
use mandate_contract::memory::MemoryStore;
use mandate_domain::auth::{AuthError, Authenticator};
use mandate_domain::keys::KeyHasher;
use mandate_domain::model::{ApiKey, KeyOwner};
use mandate_domain::ports::KeyStore;
use mandate_domain::sessions::ConsoleSessionStore;

#[tokio::test]
async fn a_session_lives_while_its_key_does_and_until_it_expires() {
    let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
    let memory = Arc::new(MemoryStore::new());
    let authenticator = Authenticator::new(memory.clone(), hasher.clone(), None);
    let (organization, destinations) = fixtures::seed_organization(memory.as_ref(), 1).await;
    let owner = KeyOwner::Destination {
        organization_id: organization.id.clone(),
        destination_id: destinations[0].id.clone(),
    };
    let key = ApiKey {
        hash: hasher.hash("mnd_dest_owner"),
        ..fixtures::key(owner.clone())
    };
    assert!(
        memory
            .insert_key(&key, None, mandate_domain::now())
            .await
            .unwrap()
    );
    let orchestrator = fixtures::seed_orchestrator(memory.as_ref()).await;
    let orchestrator_key = ApiKey {
        hash: hasher.hash("mnd_orch_runner"),
        ..fixtures::key(KeyOwner::Orchestrator {
            orchestrator_id: orchestrator.id,
        })
    };
    assert!(
        memory
            .insert_key(&orchestrator_key, None, mandate_domain::now())
            .await
            .unwrap()
    );
    let now = mandate_domain::now();
    let hour = Duration::hours(1);

    let opened = authenticator
        .open_console_session("mnd_dest_owner", hour, now)
        .await
        .unwrap();
    let stored = memory
        .console_session(&hasher.hash(&opened.token))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.token_hash, opened.token, "only the hash is stored");
    assert_eq!(stored.expires_at, now + hour);
    let principal = authenticator
        .console_principal(&opened.token, now)
        .await
        .unwrap();
    assert_eq!(principal, opened.principal);

    // The CSRF token belongs to its session only.
    let other = authenticator
        .open_console_session("mnd_dest_owner", hour, now)
        .await
        .unwrap();
    let csrf = authenticator.console_csrf_token(&opened.token);
    assert!(authenticator.console_csrf_matches(&opened.token, &csrf));
    assert!(!authenticator.console_csrf_matches(&other.token, &csrf));
    assert_ne!(csrf, stored.token_hash);

    // Past its lifetime the session is gone, and its row with it.
    assert!(matches!(
        authenticator
            .console_principal(&opened.token, now + hour)
            .await,
        Err(AuthError::Unauthenticated("expired_session"))
    ));
    assert_eq!(
        memory.console_session(&stored.token_hash).await.unwrap(),
        None
    );

    // A revoked key ends the sessions it opened at once.
    assert!(
        memory
            .revoke_key(&owner, &key.id, now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        authenticator.console_principal(&other.token, now).await,
        Err(AuthError::Unauthenticated("revoked_key"))
    ));

    // Only the people who decide for a destination sign in.
    assert!(matches!(
        authenticator
            .open_console_session("mnd_orch_runner", hour, now)
            .await,
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        authenticator
            .open_console_session("mnd_dest_unknown", hour, now)
            .await,
        Err(AuthError::Unauthenticated(_))
    ));
    assert!(matches!(
        authenticator.console_principal("forged", now).await,
        Err(AuthError::Unauthenticated("unknown_session"))
    ));
}
