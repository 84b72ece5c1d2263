//! `KeyStore`: the active-key limit, revocation by the owner, touches, and the key read with
//! the client ID and the payment request a call names.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::ids::{ClientId, KeyId, RequestId};
use mandate_domain::model::{ApiKey, Client, KeyOwner};
use mandate_domain::payments::{Direction, PaymentRequest};
use mandate_domain::ports::{KeyRef, Store};
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

/// `key_read` of `store`, flattened for comparing.
async fn key_read(
    store: &dyn Store,
    key: KeyRef<'_>,
    client_id: Option<&ClientId>,
    request_id: Option<&RequestId>,
) -> Option<(ApiKey, Option<Client>, Option<PaymentRequest>)> {
    store
        .key_read(key, client_id, request_id)
        .await
        .unwrap()
        .map(|read| (read.key, read.client, read.request))
}

async fn keys_are_read_with_the_client_id_and_request_they_name(store: Arc<dyn Store>) {
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
    let request = payment_request(&destinations[0], Direction::Outgoing, Some(&named));
    store
        .insert_request(
            &request,
            &request_event(EventType::PaymentRequestCreated, &request),
        )
        .await
        .unwrap();
    let by_hash = KeyRef::Hash(&orchestrator_key.hash);
    let (some_client, some_request) = (Some(&named.id), Some(&request.id));
    let (no_client, no_request) = (ClientId::generate(), RequestId::generate());

    // The key found with its client ID and the request.
    assert_eq!(
        key_read(&*store, by_hash, some_client, some_request).await,
        Some((
            orchestrator_key.clone(),
            Some(named.clone()),
            Some(request.clone())
        ))
    );
    // Each asked for alone, or not at all.
    assert_eq!(
        key_read(&*store, by_hash, some_client, None).await,
        Some((orchestrator_key.clone(), Some(named.clone()), None))
    );
    assert_eq!(
        key_read(&*store, by_hash, None, some_request).await,
        Some((orchestrator_key.clone(), None, Some(request.clone())))
    );
    assert_eq!(
        key_read(&*store, by_hash, None, None).await,
        Some((orchestrator_key.clone(), None, None))
    );
    // The key found, the client ID and the request missing.
    assert_eq!(
        key_read(&*store, by_hash, Some(&no_client), Some(&no_request)).await,
        Some((orchestrator_key.clone(), None, None))
    );
    // The key missing, though the client ID and the request exist.
    assert_eq!(
        key_read(
            &*store,
            KeyRef::Hash("hash-of-no-key"),
            some_client,
            some_request
        )
        .await,
        None
    );

    // Whether the key may be used, whether the client ID is its orchestrator's and whether
    // the request may be read is the caller's to decide: a revoked key, another
    // orchestrator's client ID and its request come back too.
    let other = seed_orchestrator(&*store).await;
    let other_key = seed_orchestrator_key(&*store, &other).await;
    let revoked = store
        .revoke_key(&other_key.owner, &other_key.id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        key_read(
            &*store,
            KeyRef::Hash(&other_key.hash),
            some_client,
            some_request
        )
        .await,
        Some((revoked.clone(), Some(named.clone()), Some(request.clone())))
    );

    // By the key's id (what an access token names), with the same rules.
    let by_id = KeyRef::Id(&orchestrator_key.id);
    assert_eq!(
        key_read(&*store, by_id, some_client, some_request).await,
        Some((
            orchestrator_key.clone(),
            Some(named.clone()),
            Some(request.clone())
        ))
    );
    assert_eq!(
        key_read(&*store, by_id, Some(&no_client), Some(&no_request)).await,
        Some((orchestrator_key.clone(), None, None))
    );
    assert_eq!(
        key_read(
            &*store,
            KeyRef::Id(&KeyId::generate()),
            some_client,
            some_request
        )
        .await,
        None
    );
    assert_eq!(
        key_read(&*store, KeyRef::Id(&revoked.id), some_client, some_request).await,
        Some((revoked, Some(named), Some(request)))
    );
}
case!(keys_are_read_with_the_client_id_and_request_they_name);
