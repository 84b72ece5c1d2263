//! `WebhookStore`, endpoints: round trips per owner kind, owner lists, scopes, and the
//! candidate receivers of an event.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::ids::{ClientId, EndpointId, OrganizationId};
use mandate_domain::model::ClientStatus;
use mandate_domain::ports::{Store, StoreError};
use mandate_domain::values::{Permission, PermissionSet};
use mandate_domain::webhooks::{EndpointOwner, EventTypeFilter, WebhookEndpoint};

use mandate_domain::now;

use crate::fixtures::*;

async fn webhook_endpoints_round_trip_per_owner_kind(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let agent = seed_client(
        &*store,
        &destinations[0],
        &orchestrator.id,
        PermissionSet::default_for_new_client(),
    )
    .await;

    let mut of_client = client_endpoint(&agent);
    of_client.event_types =
        EventTypeFilter::from_stored(vec!["payment_request.*".into(), "customer.created".into()]);
    let mut of_orchestrator = orchestrator_endpoint(&orchestrator.id);
    of_orchestrator.description = None;
    let of_platform = platform_endpoint(&organization.id);
    let mut of_destination = destination_endpoint(&destinations[0]);
    of_destination.enabled = false;
    of_destination.previous_secret = Some("whsec_previous".into());
    of_destination.previous_secret_expires_at = Some(now() + Duration::hours(24));
    let endpoints = [of_client, of_orchestrator, of_platform, of_destination];
    for endpoint in &endpoints {
        store.insert_endpoint(endpoint).await.unwrap();
    }
    for endpoint in &endpoints {
        assert_eq!(
            store.endpoint(&endpoint.id).await.unwrap().as_ref(),
            Some(endpoint)
        );
    }
    assert_eq!(store.endpoint(&EndpointId::generate()).await.unwrap(), None);
    let refused = store.insert_endpoint(&endpoints[2]).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    // An orchestrator has no organization: an endpoint claiming one is refused.
    let mut inconsistent = orchestrator_endpoint(&orchestrator.id);
    inconsistent.organization_id = Some(organization.id.clone());
    assert!(store.insert_endpoint(&inconsistent).await.is_err());
    assert_eq!(store.endpoint(&inconsistent.id).await.unwrap(), None);

    // Every changeable field changes, secrets rotate, then the grace period is cleared.
    let mut changed = endpoints[0].clone();
    changed.url = "https://other.example.com/hooks?source=mandate".into();
    changed.event_types = EventTypeFilter::from_stored(vec!["*".into()]);
    changed.description = None;
    changed.enabled = false;
    changed.previous_secret = Some(std::mem::replace(
        &mut changed.secret,
        "whsec_rotated".into(),
    ));
    changed.previous_secret_expires_at = Some(now() + Duration::hours(24));
    changed.updated_at = now() + Duration::seconds(5);
    store.update_endpoint(&changed).await.unwrap();
    assert_eq!(
        store.endpoint(&changed.id).await.unwrap(),
        Some(changed.clone())
    );
    changed.previous_secret = None;
    changed.previous_secret_expires_at = None;
    changed.description = Some("back".into());
    changed.enabled = true;
    store.update_endpoint(&changed).await.unwrap();
    assert_eq!(
        store.endpoint(&changed.id).await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        store.endpoint(&endpoints[1].id).await.unwrap().as_ref(),
        Some(&endpoints[1]),
        "other endpoints are untouched"
    );

    assert!(store.delete_endpoint(&changed.id).await.unwrap());
    assert_eq!(store.endpoint(&changed.id).await.unwrap(), None);
    assert!(!store.delete_endpoint(&changed.id).await.unwrap());
    // Saving a deleted endpoint brings nothing back.
    store.update_endpoint(&changed).await.unwrap();
    assert_eq!(store.endpoint(&changed.id).await.unwrap(), None);
}
case!(webhook_endpoints_round_trip_per_owner_kind);

async fn webhook_endpoint_lists_follow_the_owner(store: Arc<dyn Store>) {
    let (mine, my_destinations) = seed_organization(&*store, 2).await;
    let (theirs, their_destinations) = seed_organization(&*store, 1).await;
    let first_orchestrator = seed_orchestrator(&*store).await;
    let second_orchestrator = seed_orchestrator(&*store).await;
    let first_client = seed_client(
        &*store,
        &my_destinations[0],
        &first_orchestrator.id,
        PermissionSet::default_for_new_client(),
    )
    .await;
    let second_client = seed_client(
        &*store,
        &my_destinations[1],
        &second_orchestrator.id,
        PermissionSet::default_for_new_client(),
    )
    .await;
    let made = [
        platform_endpoint(&mine.id),
        destination_endpoint(&my_destinations[0]),
        client_endpoint(&first_client),
        orchestrator_endpoint(&first_orchestrator.id),
        platform_endpoint(&theirs.id),
        destination_endpoint(&my_destinations[1]),
        client_endpoint(&second_client),
        orchestrator_endpoint(&second_orchestrator.id),
        destination_endpoint(&their_destinations[0]),
        platform_endpoint(&mine.id),
        destination_endpoint(&my_destinations[0]),
        client_endpoint(&first_client),
        orchestrator_endpoint(&first_orchestrator.id),
    ];
    for endpoint in &made {
        store.insert_endpoint(endpoint).await.unwrap();
    }
    let mut newest_first = made.to_vec();
    newest_first.reverse();

    let mut owners: Vec<EndpointOwner> = Vec::new();
    for endpoint in &made {
        if !owners.contains(&endpoint.owner) {
            owners.push(endpoint.owner.clone());
        }
    }
    // Owners without endpoints list nothing.
    owners.push(EndpointOwner::Client {
        client_id: ClientId::generate(),
    });
    owners.push(EndpointOwner::Destination {
        organization_id: theirs.id.clone(),
        destination_id: my_destinations[0].id.clone(),
    });
    for owner in &owners {
        let expected: Vec<WebhookEndpoint> = newest_first
            .iter()
            .filter(|endpoint| &endpoint.owner == owner)
            .cloned()
            .collect();
        for limit in [1, 2, 100] {
            let listed = all_endpoints(&*store, &EndpointList::Owner(owner), limit).await;
            assert_eq!(listed, expected, "{owner:?} limit {limit}");
        }
    }
    for organization_id in [&mine.id, &theirs.id, &OrganizationId::generate()] {
        let expected: Vec<WebhookEndpoint> = newest_first
            .iter()
            .filter(|endpoint| match &endpoint.owner {
                EndpointOwner::Platform {
                    organization_id: owner,
                }
                | EndpointOwner::Destination {
                    organization_id: owner,
                    ..
                } => owner == organization_id,
                _ => false,
            })
            .cloned()
            .collect();
        for limit in [1, 3, 100] {
            let listed =
                all_endpoints(&*store, &EndpointList::Organization(organization_id), limit).await;
            assert_eq!(listed, expected, "{organization_id} limit {limit}");
        }
    }
}
case!(webhook_endpoint_lists_follow_the_owner);

/// An endpoint keeps the scope of the credential that registered it, and a narrowed
/// credential lists only the endpoints whose scope fits inside its own.
async fn webhook_endpoint_scopes_round_trip_and_narrow_lists(store: Arc<dyn Store>) {
    use mandate_domain::policy::endpoint_scope_fits;
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let everything: PermissionSet = Permission::ALL.into_iter().collect();
    let client = seed_client(
        &*store,
        &destinations[0],
        &orchestrator.id,
        everything.clone(),
    )
    .await;
    let other = seed_client(
        &*store,
        &destinations[0],
        &orchestrator.id,
        everything.clone(),
    )
    .await;
    let set = |permissions: &[Permission]| permissions.iter().copied().collect::<PermissionSet>();
    let scopes = [
        None,
        Some(PermissionSet::default()),
        Some(set(&[Permission::CreateIncoming])),
        Some(set(&[Permission::CreateIncoming, Permission::ReadOutgoing])),
        Some(set(&[
            Permission::CustomersRead,
            Permission::CustomersWrite,
        ])),
        Some(everything.clone()),
    ];
    let mut made = Vec::new();
    for scope in &scopes {
        let mut endpoint = client_endpoint(&client);
        endpoint.scope = scope.clone();
        store.insert_endpoint(&endpoint).await.unwrap();
        made.push(endpoint);
    }
    // Another client ID's endpoint, narrowed the same way, is never listed.
    let mut theirs = client_endpoint(&other);
    theirs.scope = Some(set(&[Permission::CreateIncoming]));
    store.insert_endpoint(&theirs).await.unwrap();
    for endpoint in &made {
        assert_eq!(
            store.endpoint(&endpoint.id).await.unwrap().as_ref(),
            Some(endpoint)
        );
    }
    // Changes leave the scope as it was registered.
    let mut changed = made[2].clone();
    changed.url = "https://changed.example.com/hooks".into();
    changed.scope = None;
    store.update_endpoint(&changed).await.unwrap();
    let stored = store.endpoint(&changed.id).await.unwrap().unwrap();
    assert_eq!(stored.url, changed.url);
    assert_eq!(stored.scope, made[2].scope);
    made[2].url = changed.url;

    let owner = made[0].owner.clone();
    let mut newest_first = made.clone();
    newest_first.reverse();
    let credentials = [
        PermissionSet::default(),
        set(&[Permission::CreateIncoming]),
        set(&[Permission::CreateIncoming, Permission::ReadOutgoing]),
        set(&[Permission::CreateIncoming, Permission::CustomersRead]),
        set(&[
            Permission::CustomersRead,
            Permission::CustomersWrite,
            Permission::PaymentsReport,
        ]),
        everything,
    ];
    for within in &credentials {
        let expected: Vec<WebhookEndpoint> = newest_first
            .iter()
            .filter(|endpoint| endpoint_scope_fits(endpoint.scope.as_ref(), Some(within)))
            .cloned()
            .collect();
        for limit in [1, 100] {
            let listed = all_endpoints(&*store, &EndpointList::Within(&owner, within), limit).await;
            assert_eq!(listed, expected, "{within:?} limit {limit}");
        }
    }
    assert_eq!(
        all_endpoints(&*store, &EndpointList::Owner(&owner), 100).await,
        newest_first
    );
}
case!(webhook_endpoint_scopes_round_trip_and_narrow_lists);

async fn candidate_endpoints_include_every_possible_receiver(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 2).await;
    let (other, other_destinations) = seed_organization(&*store, 1).await;
    let [linked, revoked_link, audience_only, elsewhere] = [
        seed_orchestrator(&*store).await,
        seed_orchestrator(&*store).await,
        seed_orchestrator(&*store).await,
        seed_orchestrator(&*store).await,
    ];
    let reader = permissions(&[Permission::ReadIncoming, Permission::CustomersRead]);
    let agent = seed_client(&*store, &destinations[0], &linked.id, reader.clone()).await;
    // A revoked client ID still links its orchestrator: whether it may see is decided later.
    let mut revoked = client(&destinations[0], &revoked_link.id, reader.clone());
    revoked.status = ClientStatus::Revoked;
    store
        .insert_client(
            &revoked,
            &client_event(EventType::ClientIdRevoked, &revoked),
        )
        .await
        .unwrap();
    seed_client(&*store, &other_destinations[0], &elsewhere.id, reader).await;

    let platform = seed_endpoint(&*store, platform_endpoint(&organization.id)).await;
    let first_destination = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let second_destination = seed_endpoint(&*store, destination_endpoint(&destinations[1])).await;
    let of_client = seed_endpoint(&*store, client_endpoint(&agent)).await;
    let of_linked = seed_endpoint(&*store, orchestrator_endpoint(&linked.id)).await;
    let of_revoked_link = seed_endpoint(&*store, orchestrator_endpoint(&revoked_link.id)).await;
    let of_audience_only = seed_endpoint(&*store, orchestrator_endpoint(&audience_only.id)).await;
    let other_platform = seed_endpoint(&*store, platform_endpoint(&other.id)).await;
    let mut disabled = platform_endpoint(&organization.id);
    disabled.enabled = false;
    let disabled = seed_endpoint(&*store, disabled).await;

    let event = seed_request_event(&*store, &destinations[0]).await;
    // Created with the event: it receives it. Created after it: it does not.
    let mut simultaneous = destination_endpoint(&destinations[0]);
    simultaneous.created_at = event.created_at;
    store.insert_endpoint(&simultaneous).await.unwrap();
    let mut later = platform_endpoint(&organization.id);
    later.created_at = event.created_at + Duration::seconds(1);
    store.insert_endpoint(&later).await.unwrap();

    let never = [&other_platform, &disabled, &later];
    let check = |candidates: Vec<WebhookEndpoint>, must: &[&WebhookEndpoint], what: &str| {
        let ids = endpoint_ids(&candidates);
        for endpoint in must {
            assert!(
                ids.contains(&endpoint.id),
                "{what}: {endpoint:?} is missing"
            );
            let found = candidates
                .iter()
                .find(|candidate| candidate.id == endpoint.id);
            assert_eq!(found, Some(*endpoint), "{what}: endpoints come back whole");
        }
        for endpoint in never {
            assert!(
                !ids.contains(&endpoint.id),
                "{what}: {endpoint:?} is included"
            );
        }
    };

    check(
        store.candidate_endpoints(&event).await.unwrap(),
        &[
            &platform,
            &first_destination,
            &of_client,
            &of_linked,
            &of_revoked_link,
            &simultaneous,
        ],
        "request event",
    );

    // A client-ID event names its orchestrator, which may hold no client ID there (yet).
    let stranger = client(
        &destinations[1],
        &audience_only.id,
        PermissionSet::default(),
    );
    let mut client_changed = client_event(EventType::ClientIdRevoked, &stranger);
    client_changed.created_at = event.created_at;
    check(
        store.candidate_endpoints(&client_changed).await.unwrap(),
        &[&platform, &second_destination, &of_audience_only],
        "client-ID event",
    );

    // Customer events concern the whole organization: every client ID there may read them.
    let customer = customer(&organization.id, None);
    let mut customer_created = customer_event(EventType::CustomerCreated, &customer);
    customer_created.created_at = event.created_at;
    check(
        store.candidate_endpoints(&customer_created).await.unwrap(),
        &[
            &platform,
            &first_destination,
            &second_destination,
            &of_client,
            &of_linked,
            &of_revoked_link,
            &simultaneous,
        ],
        "customer event",
    );

    // Much later, the later endpoint is a candidate too; a disabled one never is.
    let mut recent = event.clone();
    recent.created_at = event.created_at + Duration::hours(1);
    let ids = endpoint_ids(&store.candidate_endpoints(&recent).await.unwrap());
    assert!(ids.contains(&later.id));
    assert!(!ids.contains(&disabled.id));
}
case!(candidate_endpoints_include_every_possible_receiver);
