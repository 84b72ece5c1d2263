//! The Authenticator on the in-memory reference adapter: reading a key and the client ID it
//! names in one round trip decides exactly as reading them one after the other.

// Assertions are how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mandate_contract::fixtures;
use mandate_contract::memory::MemoryStore;
use mandate_domain::auth::{AuthError, Authenticator};
use mandate_domain::events::EventType;
use mandate_domain::ids::ClientId;
use mandate_domain::keys::KeyHasher;
use mandate_domain::model::{ApiKey, Client, ClientStatus, KeyOwner};
use mandate_domain::ports::{ClientStore, KeyStore};
use mandate_domain::principal::{ClientPrincipal, Principal};
use mandate_domain::values::PermissionSet;

/// A stored key whose plain text is `plain`.
async fn stored_key(
    store: &MemoryStore,
    hasher: &KeyHasher,
    plain: &str,
    owner: KeyOwner,
    change: impl FnOnce(&mut ApiKey),
) {
    let mut key = ApiKey {
        hash: hasher.hash(plain),
        ..fixtures::key(owner)
    };
    change(&mut key);
    assert!(
        store
            .insert_key(&key, None, mandate_domain::now())
            .await
            .unwrap()
    );
}

async fn stored_client(store: &MemoryStore, client: Client) -> String {
    let created = fixtures::client_event(EventType::ClientIdCreated, &client);
    store.insert_client(&client, &created).await.unwrap();
    client.id.to_string()
}

/// What the one-query path must decide, read in two steps: the credential alone, then the
/// client ID that `header` names, judged by the rules as the specification states them.
async fn credential_then_client(
    authenticator: &Authenticator,
    store: &MemoryStore,
    token: &str,
    header: &str,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let not_yours =
        || AuthError::Forbidden("X-Client-Id does not name a client ID of this orchestrator");
    let principal = authenticator.bearer(token, None, now).await?;
    let Principal::Orchestrator {
        orchestrator_id, ..
    } = principal
    else {
        return Err(AuthError::Forbidden(
            "only an orchestrator key may send X-Client-Id",
        ));
    };
    let id = ClientId::parse(header).map_err(|_| not_yours())?;
    let client = store.client(&id).await?.ok_or_else(not_yours)?;
    if client.orchestrator_id != orchestrator_id {
        return Err(not_yours());
    }
    if client.status != ClientStatus::Active {
        return Err(AuthError::Forbidden("this client ID is revoked"));
    }
    if client.agent_key.is_some() {
        return Err(AuthError::Forbidden(
            "this client ID belongs to an agent: only the agent's signature acts as it",
        ));
    }
    Ok(Principal::Client(ClientPrincipal::of(client)))
}

/// Reading the key and the client ID together changes the round trips and nothing else:
/// every credential with every `X-Client-Id` meets the outcome of resolving the credential
/// first and reading the client ID after.
#[tokio::test]
async fn reading_key_and_client_together_decides_like_two_reads() {
    let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
    let memory = Arc::new(MemoryStore::new());
    let authenticator =
        Authenticator::new(memory.clone(), hasher.clone(), Some("admin-secret".into()));
    let store = memory.as_ref();
    let now = mandate_domain::now();

    let (organization, destinations) = fixtures::seed_organization(store, 1).await;
    let destination = &destinations[0];
    let mine = fixtures::seed_orchestrator(store).await;
    let theirs = fixtures::seed_orchestrator(store).await;
    let orchestrator = || KeyOwner::Orchestrator {
        orchestrator_id: mine.id.clone(),
    };
    let platform = KeyOwner::Platform {
        organization_id: organization.id.clone(),
    };
    let destination_owner = KeyOwner::Destination {
        organization_id: organization.id.clone(),
        destination_id: destination.id.clone(),
    };
    stored_key(store, &hasher, "mnd_plat_p", platform, |_| {}).await;
    stored_key(store, &hasher, "mnd_dest_d", destination_owner, |_| {}).await;
    stored_key(store, &hasher, "mnd_orch_mine", orchestrator(), |_| {}).await;
    stored_key(store, &hasher, "mnd_orch_used", orchestrator(), |key| {
        key.last_used_at = Some(now);
    })
    .await;
    stored_key(store, &hasher, "mnd_orch_revoked", orchestrator(), |key| {
        key.revoked_at = Some(now - Duration::hours(1));
    })
    .await;
    stored_key(store, &hasher, "mnd_orch_expired", orchestrator(), |key| {
        key.expires_at = Some(now - Duration::hours(1));
    })
    .await;

    let active = fixtures::client(destination, &mine.id, PermissionSet::default());
    let active_id = stored_client(store, active.clone()).await;
    let headers = [
        active_id.clone(),
        stored_client(
            store,
            Client {
                status: ClientStatus::Revoked,
                ..fixtures::client(destination, &mine.id, PermissionSet::default())
            },
        )
        .await,
        stored_client(
            store,
            Client {
                agent_key: Some(fixtures::agent_key()),
                ..fixtures::client(destination, &mine.id, PermissionSet::default())
            },
        )
        .await,
        stored_client(
            store,
            fixtures::client(destination, &theirs.id, PermissionSet::default()),
        )
        .await,
        ClientId::generate().to_string(),
        "not-a-client-id".to_owned(),
    ];
    let tokens = [
        "admin-secret",
        "not-a-key",
        "mnd_orch_unknown",
        "mnd_plat_p",
        "mnd_dest_d",
        "mnd_orch_mine",
        "mnd_orch_used",
        "mnd_orch_revoked",
        "mnd_orch_expired",
    ];

    for token in tokens {
        for header in &headers {
            let together = authenticator.bearer(token, Some(header), now).await;
            let apart = credential_then_client(&authenticator, store, token, header, now).await;
            assert_eq!(
                format!("{together:?}"),
                format!("{apart:?}"),
                "token {token}, X-Client-Id {header}"
            );
        }
    }
    let acting = authenticator
        .bearer("mnd_orch_mine", Some(&active_id), now)
        .await
        .unwrap();
    assert_eq!(acting, Principal::Client(ClientPrincipal::of(active)));
}
