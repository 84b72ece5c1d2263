//! `DestinationStore`: destinations, their unique slugs, updates and scoped lists.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::ids::DestinationId;
use mandate_domain::model::{Destination, KeyOwner};
use mandate_domain::policy::DestinationScope;
use mandate_domain::ports::{Store, StoreError};

use mandate_domain::now;

use crate::fixtures::*;

async fn destinations_round_trip_and_slugs_are_unique(store: Arc<dyn Store>) {
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
case!(destinations_round_trip_and_slugs_are_unique);

async fn destination_updates_persist(store: Arc<dyn Store>) {
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
case!(destination_updates_persist);

async fn destination_lists_follow_the_scope_newest_first(store: Arc<dyn Store>) {
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
case!(destination_lists_follow_the_scope_newest_first);
