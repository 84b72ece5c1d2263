//! `KeyStore`: the active-key limit, revocation by the owner, touches, and the key read with
//! the client ID it names.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::ids::{ClientId, KeyId};
use mandate_domain::model::KeyOwner;
use mandate_domain::ports::Store;
use mandate_domain::values::Permission;

use mandate_domain::now;

use crate::fixtures::*;

async fn key_limit_counts_only_active_keys(store: Arc<dyn Store>) {
    let orchestrator = orchestrator();
    let owner = KeyOwner::Orchestrator {
        orchestrator_id: orchestrator.id.clone(),
    };
    let first = key(owner.clone());
    store
        .insert_orchestrator(&orchestrator, &first)
        .await
        .unwrap();
    let at = now();
    let second = key(owner.clone());
    assert!(store.insert_key(&second, Some(2), at).await.unwrap());
    let third = key(owner.clone());
    assert!(!store.insert_key(&third, Some(2), at).await.unwrap());
    assert_eq!(store.key_by_hash(&third.hash).await.unwrap(), None);

    let revoked = store
        .revoke_key(&owner, &first.id, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    assert!(store.insert_key(&third, Some(2), at).await.unwrap());

    let mut expiring = key(owner.clone());
    expiring.expires_at = Some(at + Duration::seconds(10));
    assert!(!store.insert_key(&expiring, Some(2), at).await.unwrap());
    assert!(store.insert_key(&expiring, None, at).await.unwrap());

    let listed: Vec<KeyId> = store
        .keys_of(&owner)
        .await
        .unwrap()
        .into_iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(listed, vec![expiring.id, third.id, second.id, first.id]);
}
case!(key_limit_counts_only_active_keys);

async fn concurrent_key_creation_never_exceeds_the_limit(store: Arc<dyn Store>) {
    // Warm the pool first, so that the attempts below really overlap.
    futures_util::future::join_all((0..16).map(|_| store.ping())).await;
    for _round in 0..10 {
        let orchestrator = orchestrator();
        let owner = KeyOwner::Orchestrator {
            orchestrator_id: orchestrator.id.clone(),
        };
        store
            .insert_orchestrator(&orchestrator, &key(owner.clone()))
            .await
            .unwrap();
        let at = now();
        let attempts = (0..16).map(|_| {
            let store = store.clone();
            let candidate = key(owner.clone());
            async move { store.insert_key(&candidate, Some(2), at).await.unwrap() }
        });
        let accepted = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .filter(|accepted| *accepted)
            .count();
        assert_eq!(accepted, 1);
        assert_eq!(store.keys_of(&owner).await.unwrap().len(), 2);
    }
}
case!(concurrent_key_creation_never_exceeds_the_limit);

async fn keys_are_revoked_only_by_their_owner_and_touched(store: Arc<dyn Store>) {
    let organization = organization();
    let platform = KeyOwner::Platform {
        organization_id: organization.id.clone(),
    };
    let platform_key = key(platform.clone());
    store
        .insert_organization(&organization, &platform_key)
        .await
        .unwrap();
    let destination = destination(&organization.id);
    store.insert_destination(&destination).await.unwrap();
    let destination_owner = KeyOwner::Destination {
        organization_id: organization.id.clone(),
        destination_id: destination.id.clone(),
    };
    let destination_key = key(destination_owner.clone());
    assert!(
        store
            .insert_key(&destination_key, None, now())
            .await
            .unwrap()
    );

    // Another owner cannot revoke it, and an unknown id is simply absent.
    assert_eq!(
        store
            .revoke_key(&platform, &destination_key.id, now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .revoke_key(&destination_owner, &KeyId::generate(), now())
            .await
            .unwrap(),
        None
    );

    let used = now() + Duration::seconds(1);
    store.touch_key(&destination_key.id, used).await.unwrap();
    let stored = store
        .key_by_hash(&destination_key.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_used_at, Some(used));
    assert_eq!(stored.owner, destination_owner);

    let first = now() + Duration::seconds(2);
    store
        .revoke_key(&destination_owner, &destination_key.id, first)
        .await
        .unwrap();
    let again = store
        .revoke_key(
            &destination_owner,
            &destination_key.id,
            first + Duration::seconds(9),
        )
        .await
        .unwrap();
    assert_eq!(
        again.and_then(|key| key.revoked_at),
        Some(first),
        "revocation time is kept"
    );
}
case!(keys_are_revoked_only_by_their_owner_and_touched);

async fn keys_are_read_with_the_client_id_they_name(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let orchestrator_key = seed_orchestrator_key(&*store, &orchestrator).await;
    let named = client(
        &destinations[0],
        &orchestrator.id,
        permissions(&[Permission::ReadOutgoing]),
    );
    let created = client_event(EventType::ClientIdCreated, &named);
    store.insert_client(&named, &created).await.unwrap();

    // The key found with its client ID.
    assert_eq!(
        store
            .key_with_client(&orchestrator_key.hash, &named.id)
            .await
            .unwrap(),
        Some((orchestrator_key.clone(), Some(named.clone())))
    );
    // The key found, the client ID missing.
    assert_eq!(
        store
            .key_with_client(&orchestrator_key.hash, &ClientId::generate())
            .await
            .unwrap(),
        Some((orchestrator_key.clone(), None))
    );
    // The key missing, though the client ID exists.
    assert_eq!(
        store
            .key_with_client("hash-of-no-key", &named.id)
            .await
            .unwrap(),
        None
    );

    // Whether the key may be used, and whether the client ID is its orchestrator's, is the
    // caller's to decide: a revoked key and another orchestrator's client ID come back too.
    let other = seed_orchestrator(&*store).await;
    let other_key = seed_orchestrator_key(&*store, &other).await;
    let revoked = store
        .revoke_key(&other_key.owner, &other_key.id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .key_with_client(&other_key.hash, &named.id)
            .await
            .unwrap(),
        Some((revoked.clone(), Some(named.clone())))
    );

    // By the key's id (what an access token names), with the same rules.
    assert_eq!(
        store
            .key_by_id_with_client(&orchestrator_key.id, &named.id)
            .await
            .unwrap(),
        Some((orchestrator_key.clone(), Some(named.clone())))
    );
    assert_eq!(
        store
            .key_by_id_with_client(&orchestrator_key.id, &ClientId::generate())
            .await
            .unwrap(),
        Some((orchestrator_key.clone(), None))
    );
    assert_eq!(
        store
            .key_by_id_with_client(&KeyId::generate(), &named.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .key_by_id_with_client(&revoked.id, &named.id)
            .await
            .unwrap(),
        Some((revoked, Some(named)))
    );
}
case!(keys_are_read_with_the_client_id_they_name);
