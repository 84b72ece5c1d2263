//! `ClientStore`: client IDs with their events, scoped lists and versioned updates.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::ids::ClientId;
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::policy::ClientScope;
use mandate_domain::ports::{Store, StoreError};
use mandate_domain::values::{Permission, PermissionSet};

use mandate_domain::now;

use crate::fixtures::*;

async fn client_ids_round_trip_with_their_events(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let labelled = client(
        &destinations[0],
        &orchestrator.id,
        permissions(&[
            Permission::ReadOutgoing,
            Permission::CreateIncoming,
            Permission::PaymentsReport,
        ]),
    );
    let created = client_event(EventType::ClientIdCreated, &labelled);
    store.insert_client(&labelled, &created).await.unwrap();
    let mut bare = client(&destinations[0], &orchestrator.id, PermissionSet::default());
    bare.label = None;
    let bare_created = client_event(EventType::ClientIdCreated, &bare);
    store.insert_client(&bare, &bare_created).await.unwrap();

    assert_eq!(
        store.client(&labelled.id).await.unwrap(),
        Some(labelled.clone())
    );
    assert_eq!(store.client(&bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(store.client(&ClientId::generate()).await.unwrap(), None);
    assert_eq!(
        all_events(&*store).await,
        vec![bare_created.clone(), created.clone()]
    );

    // A refused row takes its event with it, and a refused event its row.
    let refused_event = client_event(EventType::ClientIdCreated, &labelled);
    let refused = store.insert_client(&labelled, &refused_event).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    let newcomer = client(&destinations[0], &orchestrator.id, PermissionSet::default());
    let mut reused = client_event(EventType::ClientIdCreated, &newcomer);
    reused.id = created.id.clone();
    let refused = store.insert_client(&newcomer, &reused).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    assert_eq!(store.client(&newcomer.id).await.unwrap(), None);
    assert_eq!(all_events(&*store).await, vec![bare_created, created]);
}
case!(client_ids_round_trip_with_their_events);

async fn client_id_lists_follow_the_scope_and_status(store: Arc<dyn Store>) {
    let (mine, my_destinations) = seed_organization(&*store, 2).await;
    let (theirs, their_destinations) = seed_organization(&*store, 1).await;
    let first_orchestrator = seed_orchestrator(&*store).await;
    let second_orchestrator = seed_orchestrator(&*store).await;
    let placements = [
        (&my_destinations[0], &first_orchestrator),
        (&my_destinations[1], &first_orchestrator),
        (&their_destinations[0], &second_orchestrator),
        (&my_destinations[0], &second_orchestrator),
        (&their_destinations[0], &first_orchestrator),
        (&my_destinations[1], &second_orchestrator),
        (&my_destinations[0], &first_orchestrator),
    ];
    let mut clients = Vec::new();
    for (index, (destination, orchestrator)) in placements.into_iter().enumerate() {
        let mut client = client(
            destination,
            &orchestrator.id,
            PermissionSet::default_for_new_client(),
        );
        let event = client_event(EventType::ClientIdCreated, &client);
        store.insert_client(&client, &event).await.unwrap();
        if index % 3 == 0 {
            assert!(client.revoke(now()));
            let event = client_event(EventType::ClientIdRevoked, &client);
            assert!(store.update_client(&client, 1, &event).await.unwrap());
        }
        clients.push(client);
    }
    clients.reverse();

    let scopes = [
        ClientScope::Organization(mine.id.clone()),
        ClientScope::Organization(theirs.id.clone()),
        ClientScope::Destination(my_destinations[0].id.clone()),
        ClientScope::Orchestrator(first_orchestrator.id.clone()),
        ClientScope::Nothing,
    ];
    for scope in &scopes {
        for status in [
            None,
            Some(ClientStatus::Active),
            Some(ClientStatus::Revoked),
        ] {
            let expected: Vec<Client> = clients
                .iter()
                .filter(|client| {
                    scope.contains(
                        &client.organization_id,
                        &client.destination_id,
                        &client.orchestrator_id,
                    ) && status.is_none_or(|status| client.status == status)
                })
                .cloned()
                .collect();
            for limit in [1, 2, 100] {
                let listed = all_clients(&*store, scope, status, limit).await;
                assert_eq!(listed, expected, "{scope:?} {status:?} limit {limit}");
            }
        }
    }
}
case!(client_id_lists_follow_the_scope_and_status);

async fn client_updates_need_the_expected_version(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let original = client(
        &destinations[0],
        &orchestrator.id,
        PermissionSet::default_for_new_client(),
    );
    let created = client_event(EventType::ClientIdCreated, &original);
    store.insert_client(&original, &created).await.unwrap();

    let mut changed = original.clone();
    let later = now() + Duration::seconds(1);
    assert!(changed.grant(Permission::ReadIncoming, later));
    assert!(changed.withdraw(Permission::CreateOutgoing, later));
    let permissions_changed = client_event(EventType::ClientIdPermissionsChanged, &changed);
    assert!(
        store
            .update_client(&changed, original.version, &permissions_changed)
            .await
            .unwrap()
    );
    assert_eq!(
        store.client(&changed.id).await.unwrap(),
        Some(changed.clone())
    );

    // A writer still holding the original version lost the race: nothing of it is stored.
    let mut stale = original.clone();
    assert!(stale.revoke(now() + Duration::seconds(2)));
    let revoked = client_event(EventType::ClientIdRevoked, &stale);
    assert!(
        !store
            .update_client(&stale, original.version, &revoked)
            .await
            .unwrap()
    );
    assert_eq!(
        store.client(&changed.id).await.unwrap(),
        Some(changed.clone())
    );

    // An unknown client ID is no match either.
    let ghost = client(&destinations[0], &orchestrator.id, PermissionSet::default());
    let ghost_event = client_event(EventType::ClientIdRevoked, &ghost);
    assert!(!store.update_client(&ghost, 1, &ghost_event).await.unwrap());

    let events = all_events(&*store).await;
    assert_eq!(events, vec![permissions_changed.clone(), created]);
    assert_eq!(events[0].event_type, EventType::ClientIdPermissionsChanged);
    assert_eq!(
        events[0].audience.orchestrator_id,
        Some(orchestrator.id.clone())
    );
    assert_eq!(
        events[0].object["permissions"],
        serde_json::json!(["create:incoming", "read:incoming"])
    );

    let mut revoked_now = changed.clone();
    assert!(revoked_now.revoke(now() + Duration::seconds(3)));
    let revoked = client_event(EventType::ClientIdRevoked, &revoked_now);
    assert!(
        store
            .update_client(&revoked_now, changed.version, &revoked)
            .await
            .unwrap()
    );
    assert_eq!(store.client(&changed.id).await.unwrap(), Some(revoked_now));
    assert_eq!(all_events(&*store).await[0], revoked);
}
case!(client_updates_need_the_expected_version);
