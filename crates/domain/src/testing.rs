//! The port contract suite, exported so that any adapter can prove it keeps the contract.
//!
//! Each case is an `async fn(Arc<dyn Store>)` that panics on a broken promise. The
//! [`store_contract_tests!`](crate::store_contract_tests) macro turns every case into a
//! `#[tokio::test]` of the calling crate, on a fresh store from the given factory.

// Assertions are how a test suite reports; this module is compiled only for tests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use chrono::Duration;

use crate::ids::{DestinationId, KeyId, OrchestratorId, OrganizationId};
use crate::model::{ApiKey, Destination, KeyOwner, Orchestrator, Organization};
use crate::policy::DestinationScope;
use crate::ports::{PageRequest, Store, StoreError};
use crate::values::Slug;

use crate::now;

fn unique_slug(stem: &str) -> Slug {
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    Slug::parse(&format!("{stem}-{suffix}")).unwrap()
}

pub fn organization() -> Organization {
    Organization {
        id: OrganizationId::generate(),
        name: "Acme".into(),
        created_at: now(),
    }
}

pub fn orchestrator() -> Orchestrator {
    Orchestrator {
        id: OrchestratorId::generate(),
        slug: unique_slug("orc"),
        name: "Agents Inc".into(),
        created_at: now(),
    }
}

pub fn destination(organization_id: &OrganizationId) -> Destination {
    Destination {
        id: DestinationId::generate(),
        organization_id: organization_id.clone(),
        slug: unique_slug("shop"),
        display_name: "Shop".into(),
        payment_address: Some("0xabc".into()),
        max_agents: Destination::DEFAULT_MAX_AGENTS,
        pending_claim_ttl_seconds: Destination::DEFAULT_PENDING_CLAIM_TTL_SECONDS,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn key(owner: KeyOwner) -> ApiKey {
    let id = KeyId::generate();
    ApiKey {
        hash: format!("hash-of-{id}"),
        prefix: "mnd_test_123".into(),
        id,
        owner,
        created_at: now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    }
}

fn page(limit: u32, starting_after: Option<&DestinationId>) -> PageRequest {
    PageRequest {
        limit,
        starting_after: starting_after.map(|id| id.to_string()),
    }
}

pub async fn organizations_round_trip(store: Arc<dyn Store>) {
    let organization = organization();
    let platform_key = key(KeyOwner::Platform {
        organization_id: organization.id.clone(),
    });
    store
        .insert_organization(&organization, &platform_key)
        .await
        .unwrap();
    assert_eq!(
        store.organization(&organization.id).await.unwrap(),
        Some(organization)
    );
    assert_eq!(
        store.key_by_hash(&platform_key.hash).await.unwrap(),
        Some(platform_key)
    );
    assert_eq!(
        store
            .organization(&OrganizationId::generate())
            .await
            .unwrap(),
        None
    );
}

pub async fn orchestrator_slugs_are_unique(store: Arc<dyn Store>) {
    let first = orchestrator();
    let key_one = key(KeyOwner::Orchestrator {
        orchestrator_id: first.id.clone(),
    });
    store.insert_orchestrator(&first, &key_one).await.unwrap();
    let twin = Orchestrator {
        id: OrchestratorId::generate(),
        ..first.clone()
    };
    let key_two = key(KeyOwner::Orchestrator {
        orchestrator_id: twin.id.clone(),
    });
    let refused = store.insert_orchestrator(&twin, &key_two).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    // Nothing of the refused write remains: not the orchestrator, not its key.
    assert_eq!(store.orchestrator(&twin.id).await.unwrap(), None);
    assert_eq!(store.key_by_hash(&key_two.hash).await.unwrap(), None);
    assert_eq!(store.orchestrator(&first.id).await.unwrap(), Some(first));
}

pub async fn destinations_round_trip_and_slugs_are_unique(store: Arc<dyn Store>) {
    let organization = organization();
    store
        .insert_organization(
            &organization,
            &key(KeyOwner::Platform {
                organization_id: organization.id.clone(),
            }),
        )
        .await
        .unwrap();
    let mut destination = destination(&organization.id);
    destination.payment_address = None;
    store.insert_destination(&destination).await.unwrap();
    assert_eq!(
        store.destination(&destination.id).await.unwrap(),
        Some(destination.clone())
    );
    let twin = Destination {
        id: DestinationId::generate(),
        ..destination.clone()
    };
    assert!(matches!(
        store.insert_destination(&twin).await,
        Err(StoreError::Duplicate)
    ));
    assert_eq!(store.destination(&twin.id).await.unwrap(), None);
}

pub async fn destination_updates_persist(store: Arc<dyn Store>) {
    let organization = organization();
    store
        .insert_organization(
            &organization,
            &key(KeyOwner::Platform {
                organization_id: organization.id.clone(),
            }),
        )
        .await
        .unwrap();
    let mut destination = destination(&organization.id);
    store.insert_destination(&destination).await.unwrap();
    destination.display_name = "Renamed".into();
    destination.payment_address = None;
    destination.max_agents = 3;
    destination.pending_claim_ttl_seconds = 600;
    destination.updated_at = now() + Duration::seconds(5);
    store.update_destination(&destination).await.unwrap();
    assert_eq!(
        store.destination(&destination.id).await.unwrap(),
        Some(destination)
    );
}

pub async fn destination_lists_follow_the_scope_newest_first(store: Arc<dyn Store>) {
    let mine = organization();
    let theirs = organization();
    for organization in [&mine, &theirs] {
        let platform_key = key(KeyOwner::Platform {
            organization_id: organization.id.clone(),
        });
        store
            .insert_organization(organization, &platform_key)
            .await
            .unwrap();
    }
    let mut created = Vec::new();
    for _ in 0..5 {
        let destination = destination(&mine.id);
        store.insert_destination(&destination).await.unwrap();
        created.push(destination);
    }
    store
        .insert_destination(&destination(&theirs.id))
        .await
        .unwrap();
    created.reverse();

    let scope = DestinationScope::Organization(mine.id.clone());
    let first = store
        .list_destinations(&scope, &page(2, None))
        .await
        .unwrap();
    assert_eq!(first.data, created[..2].to_vec());
    assert!(first.has_more);
    let rest = store
        .list_destinations(&scope, &page(10, Some(&created[1].id)))
        .await
        .unwrap();
    assert_eq!(rest.data, created[2..].to_vec());
    assert!(!rest.has_more);

    let one = DestinationScope::One(created[3].id.clone());
    let only = store
        .list_destinations(&one, &page(10, None))
        .await
        .unwrap();
    assert_eq!(only.data, vec![created[3].clone()]);
    let none = store
        .list_destinations(&DestinationScope::Nothing, &page(10, None))
        .await
        .unwrap();
    assert!(none.data.is_empty() && !none.has_more);
}

pub async fn key_limit_counts_only_active_keys(store: Arc<dyn Store>) {
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

pub async fn concurrent_key_creation_never_exceeds_the_limit(store: Arc<dyn Store>) {
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

pub async fn keys_are_revoked_only_by_their_owner_and_touched(store: Arc<dyn Store>) {
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

pub async fn health_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh store from `$factory`:
/// an async expression yielding `(Arc<dyn Store>, guard)`; the guard is dropped at the end.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:expr) => {
        $crate::store_contract_tests!(@cases $factory;
            organizations_round_trip,
            orchestrator_slugs_are_unique,
            destinations_round_trip_and_slugs_are_unique,
            destination_updates_persist,
            destination_lists_follow_the_scope_newest_first,
            key_limit_counts_only_active_keys,
            concurrent_key_creation_never_exceeds_the_limit,
            keys_are_revoked_only_by_their_owner_and_touched,
            health_answers
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $factory.await;
                $crate::testing::$case(store).await;
            }
        )*
    };
}
