//! The port contract suite, exported so that any adapter can prove it keeps the contract.
//!
//! Each case is an `async fn(Arc<dyn Store>)` that panics on a broken promise. The
//! [`store_contract_tests!`](crate::store_contract_tests) macro turns every case into a
//! `#[tokio::test]` of the calling crate, on a fresh store from the given factory.

// Assertions are how a test suite reports; this module is compiled only for tests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::agents::AgentKey;
use crate::claims::{ChainVerifier, Claim, ClaimStatus, Grant, LedgerAction, LedgerStatus};
use crate::customers::{Customer, Email};
use crate::events::{Audience, Event, EventType};
use crate::ids::{
    ClaimId, ClientId, CustomerId, DeliveryId, DestinationId, EndpointId, EventId, KeyId,
    OrchestratorId, OrganizationId, PaymentId, PaymentLinkId, RequestId,
};
use crate::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use crate::payments::{Direction, Payment, PaymentLink, PaymentRequest, RequestStatus};
use crate::policy::{
    Action, ClientScope, Decision, DestinationScope, RequestScope, Resource, authorize,
    request_scope,
};
use crate::ports::{
    ClaimApproval, ClaimSubmission, ClaimedDelivery, EventFilter, Fanout, IdempotencyStart,
    IdempotentAnswer, KeyedCall, KeyedStart, KeyedWrite, OrchestratorFilter, OrganizationFilter,
    Page, PageRequest, RecordedAttempt, RequestFilter, Store, StoreError,
};
use crate::principal::{ClientPrincipal, Principal};
use crate::values::{Amount, Currency, Permission, PermissionSet, Slug, Total};
use crate::webhooks::{
    Delivery, DeliveryStatus, EndpointOwner, EventClause, EventScope, EventTypeFilter, Viewer,
    WebhookEndpoint, can_see_event, event_scope,
};

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

pub async fn keys_are_read_with_the_client_id_they_name(store: Arc<dyn Store>) {
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

pub async fn health_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

/// An organization with `destinations` destinations, stored.
pub async fn seed_organization(
    store: &dyn Store,
    destinations: usize,
) -> (Organization, Vec<Destination>) {
    let organization = organization();
    let platform_key = key(KeyOwner::Platform {
        organization_id: organization.id.clone(),
    });
    store
        .insert_organization(&organization, &platform_key)
        .await
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..destinations {
        let destination = destination(&organization.id);
        store.insert_destination(&destination).await.unwrap();
        created.push(destination);
    }
    (organization, created)
}

/// An orchestrator, stored.
pub async fn seed_orchestrator(store: &dyn Store) -> Orchestrator {
    let orchestrator = orchestrator();
    let orchestrator_key = key(KeyOwner::Orchestrator {
        orchestrator_id: orchestrator.id.clone(),
    });
    store
        .insert_orchestrator(&orchestrator, &orchestrator_key)
        .await
        .unwrap();
    orchestrator
}

/// Another key of a stored orchestrator, stored.
async fn seed_orchestrator_key(store: &dyn Store, orchestrator: &Orchestrator) -> ApiKey {
    let orchestrator_key = key(KeyOwner::Orchestrator {
        orchestrator_id: orchestrator.id.clone(),
    });
    assert!(
        store
            .insert_key(&orchestrator_key, None, now())
            .await
            .unwrap()
    );
    orchestrator_key
}

pub fn client(
    destination: &Destination,
    orchestrator_id: &OrchestratorId,
    permissions: PermissionSet,
) -> Client {
    Client {
        id: ClientId::generate(),
        organization_id: destination.organization_id.clone(),
        destination_id: destination.id.clone(),
        orchestrator_id: orchestrator_id.clone(),
        label: Some("checkout bot".into()),
        permissions,
        agent_key: None,
        version: 1,
        status: ClientStatus::Active,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn client_event(event_type: EventType, client: &Client) -> Event {
    let audience = Audience {
        organization_id: Some(client.organization_id.clone()),
        destination_id: Some(client.destination_id.clone()),
        orchestrator_id: Some(client.orchestrator_id.clone()),
        client_id: Some(client.id.clone()),
        direction: None,
        endpoint_id: None,
    };
    Event::new(event_type, audience, client, now())
}

/// An open request of `destination`, created through `client` or, without one, by the
/// destination's owner.
pub fn payment_request(
    destination: &Destination,
    direction: Direction,
    client: Option<&Client>,
) -> PaymentRequest {
    PaymentRequest {
        id: RequestId::generate(),
        organization_id: destination.organization_id.clone(),
        destination_id: destination.id.clone(),
        direction,
        amount: Amount::parse("10").unwrap(),
        currency: Currency::parse("USDC-base").unwrap(),
        amount_paid: Total::ZERO,
        status: RequestStatus::Open,
        customer_id: None,
        reference: None,
        description: None,
        due_at: None,
        expires_at: None,
        metadata: BTreeMap::new(),
        created_by: client.map_or_else(
            || destination.id.to_string(),
            |client| client.id.to_string(),
        ),
        client_id: client.map(|client| client.id.clone()),
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn request_event(event_type: EventType, request: &PaymentRequest) -> Event {
    let audience = Audience {
        organization_id: Some(request.organization_id.clone()),
        destination_id: Some(request.destination_id.clone()),
        orchestrator_id: None,
        client_id: request.client_id.clone(),
        direction: Some(request.direction),
        endpoint_id: None,
    };
    Event::new(event_type, audience, request, now())
}

fn payment(request: &PaymentRequest, amount: &str) -> Payment {
    Payment {
        id: PaymentId::generate(),
        request_id: request.id.clone(),
        organization_id: request.organization_id.clone(),
        destination_id: request.destination_id.clone(),
        amount: Amount::parse(amount).unwrap(),
        reference: "0xfeed".into(),
        paid_at: now() - Duration::seconds(30),
        created_by: request.destination_id.to_string(),
        created_at: now(),
    }
}

fn permissions(list: &[Permission]) -> PermissionSet {
    list.iter().copied().collect()
}

fn first_page(limit: u32) -> PageRequest {
    PageRequest {
        limit,
        starting_after: None,
    }
}

/// Every stored event, newest first, read page by page.
pub async fn all_events(store: &dyn Store) -> Vec<Event> {
    let mut events = Vec::new();
    let mut page = first_page(PageRequest::MAX_LIMIT);
    loop {
        let Page { data, has_more, .. } = store.events(&page).await.unwrap();
        page.starting_after = data.last().map(|event| event.id.to_string());
        events.extend(data);
        if !has_more {
            return events;
        }
    }
}

/// Walks every page of a client-ID list with pages of `limit`.
async fn all_clients(
    store: &dyn Store,
    scope: &ClientScope,
    status: Option<ClientStatus>,
    limit: u32,
) -> Vec<Client> {
    let mut clients = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = store.list_clients(scope, status, &page).await.unwrap();
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|client| client.id.to_string());
        clients.extend(data);
        if !has_more {
            return clients;
        }
    }
}

/// Walks every page of a request list with pages of `limit`.
async fn all_requests(
    store: &dyn Store,
    scope: &RequestScope,
    filter: &RequestFilter,
    limit: u32,
) -> Vec<PaymentRequest> {
    let mut requests = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = store.list_requests(scope, filter, &page).await.unwrap();
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|request| request.id.to_string());
        requests.extend(data);
        if !has_more {
            return requests;
        }
    }
}

pub async fn orchestrators_are_found_by_slug(store: Arc<dyn Store>) {
    let orchestrator = seed_orchestrator(&*store).await;
    let other = seed_orchestrator(&*store).await;
    assert_eq!(
        store
            .orchestrator_by_slug(&orchestrator.slug)
            .await
            .unwrap(),
        Some(orchestrator)
    );
    assert_eq!(
        store.orchestrator_by_slug(&other.slug).await.unwrap(),
        Some(other)
    );
    assert_eq!(
        store
            .orchestrator_by_slug(&unique_slug("nobody"))
            .await
            .unwrap(),
        None
    );
}

pub async fn client_ids_round_trip_with_their_events(store: Arc<dyn Store>) {
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

pub async fn client_id_lists_follow_the_scope_and_status(store: Arc<dyn Store>) {
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

pub async fn client_updates_need_the_expected_version(store: Arc<dyn Store>) {
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

pub async fn requests_round_trip_with_their_events(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let agent = client(
        &destinations[0],
        &orchestrator.id,
        PermissionSet::default_for_new_client(),
    );
    store
        .insert_client(&agent, &client_event(EventType::ClientIdCreated, &agent))
        .await
        .unwrap();

    let mut full = payment_request(&destinations[0], Direction::Outgoing, Some(&agent));
    // The largest amount there is, and the smallest step: both must survive exactly.
    full.amount = Amount::parse(&format!("{}.{}", "9".repeat(20), "9".repeat(18))).unwrap();
    full.amount_paid = Total::parse("0.000000000000000001").unwrap();
    full.status = RequestStatus::PartiallyPaid;
    full.customer_id = Some("cus_01J0000000000000000000000".into());
    full.reference = Some("INV-2026-001".into());
    full.description = Some("Consulting, \"November\" — 3 days".into());
    full.due_at = Some(now() + Duration::days(7));
    full.expires_at = Some(now() + Duration::days(30));
    full.metadata = BTreeMap::from([
        ("order".to_owned(), "A-17".to_owned()),
        ("note".to_owned(), "quotes \" and ünïcode".to_owned()),
    ]);
    full.version = 4;
    let full_created = request_event(EventType::PaymentRequestCreated, &full);
    store.insert_request(&full, &full_created).await.unwrap();

    let mut by_owner = payment_request(&destinations[0], Direction::Incoming, None);
    by_owner.created_by = organization.id.to_string();
    let owner_created = request_event(EventType::PaymentRequestCreated, &by_owner);
    store
        .insert_request(&by_owner, &owner_created)
        .await
        .unwrap();

    assert_eq!(store.request(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(
        store.request(&by_owner.id).await.unwrap(),
        Some(by_owner.clone())
    );
    assert_eq!(store.request(&RequestId::generate()).await.unwrap(), None);

    let events = all_events(&*store).await;
    assert_eq!(events[..2], [owner_created.clone(), full_created.clone()]);
    assert_eq!(events[1].event_type, EventType::PaymentRequestCreated);
    assert_eq!(
        events[1].audience,
        Audience {
            organization_id: Some(organization.id.clone()),
            destination_id: Some(destinations[0].id.clone()),
            orchestrator_id: None,
            client_id: Some(agent.id.clone()),
            direction: Some(Direction::Outgoing),
            endpoint_id: None,
        }
    );
    assert_eq!(
        events[1].object["amount"],
        serde_json::json!(full.amount.to_string())
    );
    assert_eq!(events[0].audience.client_id, None);

    // A duplicate request stores neither itself nor its event.
    let mut twin = by_owner.clone();
    twin.amount = Amount::parse("1").unwrap();
    let twin_created = request_event(EventType::PaymentRequestCreated, &twin);
    let refused = store.insert_request(&twin, &twin_created).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    assert_eq!(store.request(&by_owner.id).await.unwrap(), Some(by_owner));
    assert_eq!(all_events(&*store).await, events);
}

pub async fn request_updates_store_payment_and_event_atomically(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let mut request = payment_request(&destinations[0], Direction::Incoming, None);
    request.amount = Amount::parse("0.3").unwrap();
    let created = request_event(EventType::PaymentRequestCreated, &request);
    store.insert_request(&request, &created).await.unwrap();
    let original = request.clone();

    let first = payment(&request, "0.1");
    let event_type = request.record_payment(first.amount, now()).unwrap();
    assert_eq!(event_type, EventType::PaymentRequestPartiallyPaid);
    let partially_paid = request_event(event_type, &request);
    assert!(
        store
            .update_request(&request, original.version, Some(&first), &partially_paid)
            .await
            .unwrap()
    );
    assert_eq!(
        store.request(&request.id).await.unwrap(),
        Some(request.clone())
    );

    let second = payment(&request, "0.2");
    let before = request.version;
    let event_type = request.record_payment(second.amount, now()).unwrap();
    assert_eq!(event_type, EventType::PaymentRequestPaid);
    let paid = request_event(event_type, &request);
    assert!(
        store
            .update_request(&request, before, Some(&second), &paid)
            .await
            .unwrap()
    );
    let stored = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(stored, request);
    // 0.1 + 0.2 is exactly 0.3: amounts never pass through floating point.
    assert_eq!(
        (stored.amount_paid.to_string(), stored.status),
        ("0.3".into(), RequestStatus::Paid)
    );
    assert_eq!(
        store.payments_of(&request.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    // A writer holding an old version loses: no payment, no event, no change.
    let mut stale = original.clone();
    let late = payment(&stale, "5");
    let event_type = stale.record_payment(late.amount, now()).unwrap();
    let stale_event = request_event(event_type, &stale);
    assert!(
        !store
            .update_request(&stale, original.version, Some(&late), &stale_event)
            .await
            .unwrap()
    );
    let mut cancelled = original.clone();
    let event_type = cancelled.cancel(now()).unwrap();
    let stale_cancel = request_event(event_type, &cancelled);
    assert!(
        !store
            .update_request(&cancelled, original.version, None, &stale_cancel)
            .await
            .unwrap()
    );
    assert_eq!(
        store.request(&request.id).await.unwrap(),
        Some(request.clone())
    );
    assert_eq!(
        store.payments_of(&request.id).await.unwrap(),
        vec![first, second]
    );
    assert_eq!(
        store.payments_of(&RequestId::generate()).await.unwrap(),
        vec![]
    );

    let events = all_events(&*store).await;
    assert_eq!(events, vec![paid.clone(), partially_paid.clone(), created]);
    assert_eq!(
        events
            .iter()
            .map(|event| event.event_type)
            .collect::<Vec<_>>(),
        vec![
            EventType::PaymentRequestPaid,
            EventType::PaymentRequestPartiallyPaid,
            EventType::PaymentRequestCreated,
        ]
    );
    assert_eq!(events[0].object["amount_paid"], serde_json::json!("0.3"));

    // A change without a payment (a cancellation) stores the event alone.
    let mut open = payment_request(&destinations[0], Direction::Outgoing, None);
    store
        .insert_request(
            &open,
            &request_event(EventType::PaymentRequestCreated, &open),
        )
        .await
        .unwrap();
    let event_type = open.cancel(now()).unwrap();
    let cancelled = request_event(event_type, &open);
    assert!(
        store
            .update_request(&open, 1, None, &cancelled)
            .await
            .unwrap()
    );
    assert_eq!(store.request(&open.id).await.unwrap(), Some(open.clone()));
    assert_eq!(store.payments_of(&open.id).await.unwrap(), vec![]);
    assert_eq!(all_events(&*store).await[0], cancelled);
}

pub async fn concurrent_request_updates_apply_once(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    // Warm the pool first, so that the attempts below really overlap.
    futures_util::future::join_all((0..8).map(|_| store.ping())).await;
    let request = payment_request(&destinations[0], Direction::Incoming, None);
    store
        .insert_request(
            &request,
            &request_event(EventType::PaymentRequestCreated, &request),
        )
        .await
        .unwrap();
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let mut changed = request.clone();
        async move {
            let reported = payment(&changed, "1");
            let event_type = changed.record_payment(reported.amount, now()).unwrap();
            let event = request_event(event_type, &changed);
            store
                .update_request(&changed, request.version, Some(&reported), &event)
                .await
                .unwrap()
        }
    });
    let applied = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|applied| *applied)
        .count();
    assert_eq!(applied, 1);
    assert_eq!(store.payments_of(&request.id).await.unwrap().len(), 1);
    assert_eq!(all_events(&*store).await.len(), 2);
    let stored = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.amount_paid.to_string()),
        (2, "1".into())
    );
}

pub async fn requests_due_for_expiry_are_pending_and_past_due(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 2).await;
    let at = now();
    let cases = [
        // (status, expires_at relative to `at` in seconds, due)
        (RequestStatus::Open, Some(-10), true),
        (RequestStatus::PartiallyPaid, Some(-20), true),
        (RequestStatus::Open, Some(0), true),
        (RequestStatus::Open, Some(-30), true),
        (RequestStatus::Paid, Some(-40), false),
        (RequestStatus::Cancelled, Some(-40), false),
        (RequestStatus::Expired, Some(-40), false),
        (RequestStatus::Open, Some(1), false),
        (RequestStatus::PartiallyPaid, None, false),
    ];
    let mut due = Vec::new();
    for (index, (status, offset, is_due)) in cases.into_iter().enumerate() {
        let mut request = payment_request(&destinations[index % 2], Direction::Incoming, None);
        request.status = status;
        request.expires_at = offset.map(|seconds| at + Duration::seconds(seconds));
        let created = request_event(EventType::PaymentRequestCreated, &request);
        store.insert_request(&request, &created).await.unwrap();
        if is_due {
            due.push(request);
        }
    }
    due.sort_by_key(|request| request.expires_at);

    assert_eq!(store.requests_due_for_expiry(at, 100).await.unwrap(), due);
    assert_eq!(
        store.requests_due_for_expiry(at, 2).await.unwrap(),
        due[..2].to_vec()
    );
    assert_eq!(
        store
            .requests_due_for_expiry(at - Duration::seconds(15), 100)
            .await
            .unwrap(),
        due[..2].to_vec()
    );
    assert_eq!(
        store
            .requests_due_for_expiry(at - Duration::hours(1), 100)
            .await
            .unwrap(),
        vec![]
    );
}

pub async fn payment_links_are_found_by_token_hash(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let request = payment_request(&destinations[0], Direction::Incoming, None);
    store
        .insert_request(
            &request,
            &request_event(EventType::PaymentRequestCreated, &request),
        )
        .await
        .unwrap();
    let link = PaymentLink {
        id: PaymentLinkId::generate(),
        request_id: request.id.clone(),
        organization_id: request.organization_id.clone(),
        destination_id: request.destination_id.clone(),
        token_hash: format!("token-hash-{}", ulid::Ulid::new()),
        expires_at: now() + Duration::seconds(PaymentLink::DEFAULT_LIFETIME_SECONDS),
        created_at: now(),
    };
    store.insert_payment_link(&link).await.unwrap();
    assert_eq!(
        store
            .payment_link_by_token_hash(&link.token_hash)
            .await
            .unwrap(),
        Some(link.clone())
    );
    assert_eq!(
        store.payment_link_by_token_hash("unknown").await.unwrap(),
        None
    );
    let twin = PaymentLink {
        id: PaymentLinkId::generate(),
        ..link.clone()
    };
    let refused = store.insert_payment_link(&twin).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
}

pub async fn events_page_newest_first(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let mut written = Vec::new();
    for direction in [
        Direction::Incoming,
        Direction::Outgoing,
        Direction::Incoming,
    ] {
        let request = payment_request(&destinations[0], direction, None);
        let event = request_event(EventType::PaymentRequestCreated, &request);
        store.insert_request(&request, &event).await.unwrap();
        written.push(event);
    }
    written.reverse();
    let first = store.events(&first_page(2)).await.unwrap();
    assert_eq!(
        (first.data.as_slice(), first.has_more),
        (&written[..2], true)
    );
    let rest = store
        .events(&PageRequest {
            limit: 2,
            starting_after: Some(written[1].id.to_string()),
        })
        .await
        .unwrap();
    assert_eq!(
        (rest.data.as_slice(), rest.has_more),
        (&written[2..], false)
    );
    let after_oldest = store
        .events(&PageRequest {
            limit: 10,
            starting_after: Some(written[2].id.to_string()),
        })
        .await
        .unwrap();
    assert!(after_oldest.data.is_empty() && !after_oldest.has_more);
    // A cursor need not name a stored event: ids order by time.
    let after_newer = store
        .events(&PageRequest {
            limit: 10,
            starting_after: Some(EventId::generate().to_string()),
        })
        .await
        .unwrap();
    assert_eq!(after_newer.data, written);
}

pub fn customer(organization_id: &OrganizationId, email: Option<&str>) -> Customer {
    Customer {
        id: CustomerId::generate(),
        organization_id: organization_id.clone(),
        email: email.map(|email| Email::parse(email).unwrap()),
        name: Some("Ada Lovelace".into()),
        metadata: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
        created_by: "org_creator".into(),
        created_at: now(),
        updated_at: now(),
    }
}

pub fn customer_event(event_type: EventType, customer: &Customer) -> Event {
    let audience = Audience {
        organization_id: Some(customer.organization_id.clone()),
        ..Audience::default()
    };
    Event::new(event_type, audience, customer, now())
}

/// Stores a customer with its `customer.created` event.
async fn seed_customer(
    store: &dyn Store,
    organization_id: &OrganizationId,
    email: Option<&str>,
) -> Customer {
    let customer = customer(organization_id, email);
    store
        .insert_customer(
            &customer,
            &customer_event(EventType::CustomerCreated, &customer),
        )
        .await
        .unwrap();
    customer
}

fn email(value: &str) -> Email {
    Email::parse(value).unwrap()
}

/// Walks every page of a customer list with pages of `limit`.
async fn all_customers(
    store: &dyn Store,
    organization_id: &OrganizationId,
    email: Option<&Email>,
    limit: u32,
) -> Vec<Customer> {
    let mut customers = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = store
            .list_customers(organization_id, email, &page)
            .await
            .unwrap();
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|customer| customer.id.to_string());
        customers.extend(data);
        if !has_more {
            return customers;
        }
    }
}

pub async fn customers_round_trip_with_their_events(store: Arc<dyn Store>) {
    let (organization, _) = seed_organization(&*store, 0).await;
    let full = customer(&organization.id, Some("Ada@Example.com"));
    let created = customer_event(EventType::CustomerCreated, &full);
    store.insert_customer(&full, &created).await.unwrap();
    let mut bare = customer(&organization.id, None);
    bare.name = None;
    bare.metadata.clear();
    let bare_created = customer_event(EventType::CustomerCreated, &bare);
    store.insert_customer(&bare, &bare_created).await.unwrap();

    // The email comes back as given, not normalized.
    assert_eq!(store.customer(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(store.customer(&bare.id).await.unwrap(), Some(bare));
    assert_eq!(store.customer(&CustomerId::generate()).await.unwrap(), None);
    assert_eq!(all_events(&*store).await, vec![bare_created, created]);
}

pub async fn customer_emails_are_unique_per_organization_without_regard_to_case(
    store: Arc<dyn Store>,
) {
    let (mine, _) = seed_organization(&*store, 0).await;
    let (theirs, _) = seed_organization(&*store, 0).await;
    let ada = seed_customer(&*store, &mine.id, Some("ada@example.com")).await;
    let events_before = all_events(&*store).await;

    let twin = customer(&mine.id, Some("ADA@Example.COM"));
    let refused = store
        .insert_customer(&twin, &customer_event(EventType::CustomerCreated, &twin))
        .await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    assert_eq!(store.customer(&twin.id).await.unwrap(), None);
    assert_eq!(all_events(&*store).await, events_before, "no event either");

    // Any number of customers go without an email; another organization may reuse one.
    let first_bare = seed_customer(&*store, &mine.id, None).await;
    let second_bare = seed_customer(&*store, &mine.id, None).await;
    let elsewhere = seed_customer(&*store, &theirs.id, Some("Ada@example.com")).await;
    for stored in [&first_bare, &second_bare, &elsewhere] {
        assert_eq!(
            store.customer(&stored.id).await.unwrap().as_ref(),
            Some(stored)
        );
    }

    assert_eq!(
        store
            .customer_by_email(&mine.id, &email("aDa@EXAMPLE.com"))
            .await
            .unwrap(),
        Some(ada)
    );
    assert_eq!(
        store
            .customer_by_email(&theirs.id, &email("ada@example.com"))
            .await
            .unwrap(),
        Some(elsewhere)
    );
    assert_eq!(
        store
            .customer_by_email(&mine.id, &email("grace@example.com"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .customer_by_email(&OrganizationId::generate(), &email("ada@example.com"))
            .await
            .unwrap(),
        None
    );
}

pub async fn customer_lists_follow_the_organization_and_email(store: Arc<dyn Store>) {
    let (mine, _) = seed_organization(&*store, 0).await;
    let (theirs, _) = seed_organization(&*store, 0).await;
    let mut expected = Vec::new();
    for email in [
        Some("one@example.com"),
        None,
        Some("Two@Example.com"),
        None,
        Some("three@example.com"),
    ] {
        expected.push(seed_customer(&*store, &mine.id, email).await);
    }
    let foreign = seed_customer(&*store, &theirs.id, Some("two@example.com")).await;
    expected.reverse();

    for limit in [1, 2, 5, 100] {
        assert_eq!(
            all_customers(&*store, &mine.id, None, limit).await,
            expected,
            "pages of {limit}"
        );
    }
    let first = store
        .list_customers(&mine.id, None, &first_page(2))
        .await
        .unwrap();
    assert_eq!(
        (first.data.as_slice(), first.has_more),
        (&expected[..2], true)
    );
    let last = store
        .list_customers(
            &mine.id,
            None,
            &PageRequest {
                limit: 3,
                starting_after: Some(expected[1].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (last.data.as_slice(), last.has_more),
        (&expected[2..], false)
    );
    // A cursor need not name a stored customer: ids order by time.
    let after_newer = store
        .list_customers(
            &mine.id,
            None,
            &PageRequest {
                limit: 10,
                starting_after: Some(CustomerId::generate().to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(after_newer.data, expected);

    // The email filter compares without regard to case, within the organization.
    let two = email("TWO@example.COM");
    assert_eq!(
        all_customers(&*store, &mine.id, Some(&two), 2).await,
        vec![expected[2].clone()]
    );
    assert_eq!(
        all_customers(&*store, &theirs.id, Some(&two), 2).await,
        vec![foreign.clone()]
    );
    assert_eq!(
        all_customers(&*store, &theirs.id, None, 2).await,
        vec![foreign]
    );
    assert!(
        all_customers(&*store, &mine.id, Some(&email("four@example.com")), 2)
            .await
            .is_empty()
    );
    assert!(
        all_customers(&*store, &OrganizationId::generate(), None, 2)
            .await
            .is_empty()
    );
}

pub async fn customer_updates_keep_emails_unique(store: Arc<dyn Store>) {
    let (organization, _) = seed_organization(&*store, 0).await;
    let mut ada = seed_customer(&*store, &organization.id, Some("ada@example.com")).await;
    let grace = seed_customer(&*store, &organization.id, Some("grace@example.com")).await;

    ada.email = Some(email("Countess@Example.com"));
    ada.name = Some("Augusta Ada King".into());
    ada.metadata = BTreeMap::from([("plan".to_owned(), "pro".to_owned())]);
    ada.updated_at = now() + Duration::seconds(5);
    let updated = customer_event(EventType::CustomerUpdated, &ada);
    store.update_customer(&ada, &updated).await.unwrap();
    assert_eq!(store.customer(&ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(all_events(&*store).await[0], updated);
    assert_eq!(
        store
            .customer_by_email(&organization.id, &email("countess@example.com"))
            .await
            .unwrap(),
        Some(ada.clone())
    );
    // The old email is free again.
    assert_eq!(
        store
            .customer_by_email(&organization.id, &email("ada@example.com"))
            .await
            .unwrap(),
        None
    );
    seed_customer(&*store, &organization.id, Some("ADA@example.com")).await;

    // Taking an email in use (in another case) is refused, and changes nothing.
    let events_before = all_events(&*store).await;
    let mut taken = grace.clone();
    taken.email = Some(email("COUNTESS@example.com"));
    taken.name = Some("Grace Hopper".into());
    taken.updated_at = now() + Duration::seconds(10);
    let refused = store
        .update_customer(&taken, &customer_event(EventType::CustomerUpdated, &taken))
        .await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    assert_eq!(
        store.customer(&grace.id).await.unwrap(),
        Some(grace.clone())
    );
    assert_eq!(all_events(&*store).await, events_before);

    // Clearing the email and the name stores nulls.
    let mut cleared = grace;
    cleared.email = None;
    cleared.name = None;
    cleared.metadata.clear();
    store
        .update_customer(
            &cleared,
            &customer_event(EventType::CustomerUpdated, &cleared),
        )
        .await
        .unwrap();
    assert_eq!(store.customer(&cleared.id).await.unwrap(), Some(cleared));
    assert_eq!(
        store
            .customer_by_email(&organization.id, &email("grace@example.com"))
            .await
            .unwrap(),
        None
    );
}

pub async fn customer_deletion_stores_its_event_once(store: Arc<dyn Store>) {
    let (organization, _) = seed_organization(&*store, 0).await;
    let ada = seed_customer(&*store, &organization.id, Some("ada@example.com")).await;
    let kept = seed_customer(&*store, &organization.id, None).await;
    let deleted = customer_event(EventType::CustomerDeleted, &ada);
    assert!(store.delete_customer(&ada.id, &deleted).await.unwrap());
    assert_eq!(store.customer(&ada.id).await.unwrap(), None);
    assert_eq!(store.customer(&kept.id).await.unwrap(), Some(kept.clone()));
    let events = all_events(&*store).await;
    assert_eq!(events[0], deleted);

    let again = customer_event(EventType::CustomerDeleted, &ada);
    assert!(!store.delete_customer(&ada.id, &again).await.unwrap());
    assert!(
        !store
            .delete_customer(&CustomerId::generate(), &again)
            .await
            .unwrap()
    );
    assert_eq!(
        all_events(&*store).await,
        events,
        "no event for nothing deleted"
    );
    assert_eq!(
        all_customers(&*store, &organization.id, None, 10).await,
        vec![kept]
    );
    // The email is free for a new customer.
    seed_customer(&*store, &organization.id, Some("Ada@Example.com")).await;
}

/// A call with `key` of the credential `key_a`, made now.
fn keyed_call(key: &str, fingerprint: &str) -> KeyedCall {
    KeyedCall {
        scope: "key_a".into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
        received_at: now(),
    }
}

/// Begins `call`, expecting it to run.
async fn run_keyed(store: &Arc<dyn Store>, call: &KeyedCall) -> Box<dyn KeyedWrite> {
    match store.clone().begin_keyed(call).await.unwrap() {
        KeyedStart::Run(write) => write,
        KeyedStart::Answered(found) => panic!("{} was answered already: {found:?}", call.key),
    }
}

/// Begins `call`, expecting an earlier call's answer.
async fn answered_keyed(store: &Arc<dyn Store>, call: &KeyedCall) -> IdempotencyStart {
    match store.clone().begin_keyed(call).await.unwrap() {
        KeyedStart::Answered(found) => found,
        KeyedStart::Run(write) => {
            write.roll_back().await.unwrap();
            panic!("{} ran again", call.key)
        }
    }
}

/// Creates a request inside a keyed call; the answer names it.
async fn create_request_keyed(
    write: &dyn KeyedWrite,
    destination: &Destination,
    call: &KeyedCall,
) -> (PaymentRequest, IdempotentAnswer) {
    let request = payment_request(destination, Direction::Incoming, None);
    let event = request_event(EventType::PaymentRequestCreated, &request);
    write
        .store()
        .insert_request(&request, &event)
        .await
        .unwrap();
    let answer = call.answer(201, format!(r#"{{"id":"{}"}}"#, request.id));
    (request, answer)
}

pub async fn keyed_calls_replay_their_committed_answer(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let call = keyed_call("order-1", "fp-1");
    assert_eq!(
        store
            .lookup_idempotent("key_a", "order-1", "fp-1")
            .await
            .unwrap(),
        None
    );
    let write = run_keyed(&store, &call).await;
    let (request, answer) = create_request_keyed(write.as_ref(), &destinations[0], &call).await;
    write.commit(answer.clone()).await.unwrap();
    assert_eq!(store.request(&request.id).await.unwrap(), Some(request));

    let replay = IdempotencyStart::Replay {
        status: 201,
        body: answer.body.clone(),
    };
    // The same call again: the committed answer, however much later.
    assert_eq!(answered_keyed(&store, &call).await, replay);
    let later = KeyedCall {
        received_at: now() + Duration::hours(23),
        ..call.clone()
    };
    assert_eq!(answered_keyed(&store, &later).await, replay);
    assert_eq!(
        store
            .lookup_idempotent("key_a", "order-1", "fp-1")
            .await
            .unwrap(),
        Some(replay)
    );
    // Another request with the key: refused, whatever it is.
    assert_eq!(
        answered_keyed(&store, &keyed_call("order-1", "fp-2")).await,
        IdempotencyStart::Mismatch
    );
    assert_eq!(
        store
            .lookup_idempotent("key_a", "order-1", "fp-2")
            .await
            .unwrap(),
        Some(IdempotencyStart::Mismatch)
    );
    // Keys belong to their credential.
    let other_scope = KeyedCall {
        scope: "key_b".into(),
        ..call
    };
    run_keyed(&store, &other_scope)
        .await
        .roll_back()
        .await
        .unwrap();
}

pub async fn keyed_calls_that_never_commit_run_again(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let call = keyed_call("order-1", "fp-1");
    // Rolled back (a server error): the key stays unused.
    run_keyed(&store, &call).await.roll_back().await.unwrap();
    // Dropped without an end (the process died, the connection broke): the same.
    drop(run_keyed(&store, &call).await);
    assert_eq!(
        store
            .lookup_idempotent("key_a", "order-1", "fp-1")
            .await
            .unwrap(),
        None
    );
    // The retry runs once and its answer stands.
    let write = run_keyed(&store, &call).await;
    let (_, answer) = create_request_keyed(write.as_ref(), &destinations[0], &call).await;
    write.commit(answer.clone()).await.unwrap();
    assert_eq!(
        answered_keyed(&store, &call).await,
        IdempotencyStart::Replay {
            status: 201,
            body: answer.body
        }
    );
}

pub async fn refused_keyed_calls_replay_their_refusal(store: Arc<dyn Store>) {
    let call = keyed_call("order-1", "fp-1");
    let refusal = call.answer(400, r#"{"error":{"code":"INVALID_REQUEST"}}"#.into());
    assert!(store.record_idempotent(&refusal).await.unwrap());
    // Kept once: a second record does not replace it.
    assert!(
        !store
            .record_idempotent(&call.answer(201, "{}".into()))
            .await
            .unwrap()
    );
    assert_eq!(
        answered_keyed(&store, &call).await,
        IdempotencyStart::Replay {
            status: 400,
            body: refusal.body
        }
    );
    assert_eq!(
        answered_keyed(&store, &keyed_call("order-1", "fp-2")).await,
        IdempotencyStart::Mismatch
    );
}

pub async fn concurrent_keyed_calls_run_once(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    // Warm the pool first, so that the calls below really overlap.
    futures_util::future::join_all((0..8).map(|_| store.ping())).await;
    let events_before = all_events(&*store).await.len();
    for round in 0..5 {
        let call = keyed_call(&format!("order-{round}"), "fp-1");
        let calls = (0..8).map(|_| {
            let (store, call, destination) = (store.clone(), call.clone(), &destinations[0]);
            async move {
                match store.clone().begin_keyed(&call).await.unwrap() {
                    KeyedStart::Run(write) => {
                        let (request, answer) =
                            create_request_keyed(write.as_ref(), destination, &call).await;
                        write.commit(answer.clone()).await.unwrap();
                        (
                            Some(request.id),
                            IdempotencyStart::Replay {
                                status: answer.status,
                                body: answer.body,
                            },
                        )
                    }
                    KeyedStart::Answered(found) => (None, found),
                }
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let ran: Vec<_> = results.iter().filter(|(id, _)| id.is_some()).collect();
        assert_eq!(ran.len(), 1, "one call runs per key: {results:?}");
        let (_, winner) = ran[0];
        // The others waited for it and got its answer, or (a store that does not wait) were
        // told it is still running.
        for (_, found) in &results {
            assert!(
                found == winner || *found == IdempotencyStart::InFlight,
                "{results:?}"
            );
        }
        assert_eq!(
            all_events(&*store).await.len(),
            events_before + round + 1,
            "one request (and its event) per key"
        );
    }
}

pub async fn idempotency_purge_deletes_only_older_records(store: Arc<dyn Store>) {
    let at = now();
    for (key, created) in [("old", at - Duration::hours(25)), ("new", at)] {
        let call = KeyedCall {
            received_at: created,
            ..keyed_call(key, "fp-1")
        };
        assert!(
            store
                .record_idempotent(&call.answer(201, "{}".into()))
                .await
                .unwrap()
        );
    }
    let cutoff = at - Duration::hours(24);
    assert_eq!(store.purge_idempotency(cutoff).await.unwrap(), 1);
    assert_eq!(store.purge_idempotency(cutoff).await.unwrap(), 0);
    // The purged key is new again; the recent one is kept as it was.
    run_keyed(&store, &keyed_call("old", "fp-2"))
        .await
        .roll_back()
        .await
        .unwrap();
    assert_eq!(
        answered_keyed(&store, &keyed_call("new", "fp-1")).await,
        IdempotencyStart::Replay {
            status: 201,
            body: "{}".into()
        }
    );
}

/// How many random principal-and-filter cases the SQL-versus-domain check runs.
const SQL_VERSUS_DOMAIN_CASES: usize = 1000;

/// The seed of the SQL-versus-domain check; `MANDATE_CONTRACT_SEED` replays another.
fn contract_seed() -> u64 {
    std::env::var("MANDATE_CONTRACT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x4d41_4e44_4154_4532)
}

fn random_permissions(rng: &mut StdRng) -> PermissionSet {
    Permission::ALL
        .into_iter()
        .filter(|_| rng.gen_bool(0.5))
        .collect()
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    items.choose(rng).unwrap()
}

fn random_principal(
    rng: &mut StdRng,
    destinations: &[Destination],
    clients: &[Client],
    orchestrators: &[Orchestrator],
) -> Principal {
    match rng.gen_range(0..7) {
        0 => Principal::Admin,
        1 => {
            let destination = pick(rng, destinations);
            Principal::Platform {
                organization_id: destination.organization_id.clone(),
                key_id: KeyId::generate(),
                acting_for: None,
            }
        }
        2 => {
            // `X-Destination-Id` names a destination of the platform's own organization.
            let destination = pick(rng, destinations);
            Principal::Platform {
                organization_id: destination.organization_id.clone(),
                key_id: KeyId::generate(),
                acting_for: Some(destination.id.clone()),
            }
        }
        3 => {
            let destination = pick(rng, destinations);
            Principal::Destination {
                organization_id: destination.organization_id.clone(),
                destination_id: destination.id.clone(),
                key_id: KeyId::generate(),
            }
        }
        4 => Principal::Orchestrator {
            orchestrator_id: pick(rng, orchestrators).id.clone(),
            key_id: KeyId::generate(),
        },
        5 => {
            // A client that never created anything.
            let destination = pick(rng, destinations);
            Principal::Client(ClientPrincipal {
                client_id: ClientId::generate(),
                orchestrator_id: pick(rng, orchestrators).id.clone(),
                organization_id: destination.organization_id.clone(),
                destination_id: destination.id.clone(),
                permissions: random_permissions(rng),
                scope: None,
            })
        }
        _ => {
            // A stored client, with permissions that may since have changed (a token's
            // narrowed scope, a fresh grant).
            let client = pick(rng, clients);
            Principal::Client(ClientPrincipal {
                client_id: client.id.clone(),
                orchestrator_id: client.orchestrator_id.clone(),
                organization_id: client.organization_id.clone(),
                destination_id: client.destination_id.clone(),
                permissions: random_permissions(rng),
                scope: None,
            })
        }
    }
}

const CUSTOMERS: [&str; 3] = ["cus_alpha", "cus_beta", "cus_nobody"];

fn random_filter(rng: &mut StdRng, destinations: &[Destination]) -> RequestFilter {
    RequestFilter {
        direction: rng.gen_bool(0.4).then(|| *pick(rng, &Direction::ALL)),
        status: rng.gen_bool(0.3).then(|| *pick(rng, &RequestStatus::ALL)),
        destination_id: rng.gen_bool(0.3).then(|| {
            if rng.gen_bool(0.9) {
                pick(rng, destinations).id.clone()
            } else {
                DestinationId::generate()
            }
        }),
        customer_id: rng
            .gen_bool(0.2)
            .then(|| (*pick(rng, &CUSTOMERS)).to_owned()),
    }
}

/// SPEC §4: list queries are `authorize` translated to SQL. For random principals and filters
/// over a random world, the store lists exactly the requests that `authorize` lets the
/// principal read and the filter matches, newest first, across every page.
pub async fn request_lists_match_authorize(store: Arc<dyn Store>) {
    let seed = contract_seed();
    let mut rng = StdRng::seed_from_u64(seed);

    let mut destinations = Vec::new();
    for _ in 0..2 {
        destinations.extend(seed_organization(&*store, 2).await.1);
    }
    let orchestrators = vec![
        seed_orchestrator(&*store).await,
        seed_orchestrator(&*store).await,
    ];
    let mut clients = Vec::new();
    for destination in &destinations {
        for _ in 0..2 {
            let orchestrator = pick(&mut rng, &orchestrators);
            let mut client = client(destination, &orchestrator.id, random_permissions(&mut rng));
            client.status = if rng.gen_bool(0.2) {
                ClientStatus::Revoked
            } else {
                ClientStatus::Active
            };
            store
                .insert_client(&client, &client_event(EventType::ClientIdCreated, &client))
                .await
                .unwrap();
            clients.push(client);
        }
    }
    let mut requests = Vec::new();
    for _ in 0..60 {
        let destination = pick(&mut rng, &destinations);
        let direction = *pick(&mut rng, &Direction::ALL);
        let own_clients: Vec<&Client> = clients
            .iter()
            .filter(|client| client.destination_id == destination.id)
            .collect();
        let creator = rng.gen_bool(0.6).then(|| *pick(&mut rng, &own_clients));
        let mut request = payment_request(destination, direction, creator);
        if creator.is_none() && rng.gen_bool(0.5) {
            request.created_by = destination.organization_id.to_string();
        }
        request.status = *pick(&mut rng, &RequestStatus::ALL);
        request.customer_id = rng
            .gen_bool(0.6)
            .then(|| (*pick(&mut rng, &CUSTOMERS[..2])).to_owned());
        store
            .insert_request(
                &request,
                &request_event(EventType::PaymentRequestCreated, &request),
            )
            .await
            .unwrap();
        requests.push(request);
    }
    requests.reverse();

    let mut checked = 0;
    let mut listed_total = 0;
    for case in 0..SQL_VERSUS_DOMAIN_CASES {
        let principal = random_principal(&mut rng, &destinations, &clients, &orchestrators);
        let filter = random_filter(&mut rng, &destinations);
        let limit = rng.gen_range(1..=7);
        let scope = request_scope(&principal);
        let expected: Vec<PaymentRequest> = requests
            .iter()
            .filter(|request| {
                let decision =
                    authorize(&principal, Action::ReadRequest, Resource::Request(request));
                let readable = decision == Decision::Allow;
                assert_eq!(
                    scope.contains(request),
                    readable,
                    "seed {seed} case {case}: {scope:?} disagrees with authorize on {request:?}"
                );
                readable && filter.matches(request)
            })
            .cloned()
            .collect();
        let listed = all_requests(&*store, &scope, &filter, limit).await;
        let ids = |requests: &[PaymentRequest]| {
            requests
                .iter()
                .map(|request| request.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&listed),
            ids(&expected),
            "seed {seed} case {case}: {principal:?} with {filter:?}, pages of {limit}"
        );
        assert_eq!(listed, expected);
        listed_total += listed.len();
        checked += 1;
    }
    // Guards against a generator that only ever produces empty answers.
    assert!(
        listed_total > SQL_VERSUS_DOMAIN_CASES,
        "too few requests listed: {listed_total}"
    );
    println!("sql-vs-domain: {checked} cases, {listed_total} requests listed (seed {seed})");
}

// Webhooks: endpoints, fan-out, deliveries, and the event feed.

fn webhook_endpoint(
    owner: EndpointOwner,
    organization_id: Option<&OrganizationId>,
    destination_id: Option<&DestinationId>,
) -> WebhookEndpoint {
    WebhookEndpoint {
        id: EndpointId::generate(),
        owner,
        organization_id: organization_id.cloned(),
        destination_id: destination_id.cloned(),
        scope: None,
        url: "https://hooks.example.com/mandate".into(),
        event_types: EventTypeFilter::from_stored(vec!["*".into()]),
        description: Some("orders".into()),
        enabled: true,
        secret: format!("whsec_{}", ulid::Ulid::new()),
        previous_secret: None,
        previous_secret_expires_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

/// An endpoint of a client ID (it names the client's organization and destination).
pub fn client_endpoint(client: &Client) -> WebhookEndpoint {
    webhook_endpoint(
        EndpointOwner::Client {
            client_id: client.id.clone(),
        },
        Some(&client.organization_id),
        Some(&client.destination_id),
    )
}

pub fn orchestrator_endpoint(orchestrator_id: &OrchestratorId) -> WebhookEndpoint {
    webhook_endpoint(
        EndpointOwner::Orchestrator {
            orchestrator_id: orchestrator_id.clone(),
        },
        None,
        None,
    )
}

pub fn platform_endpoint(organization_id: &OrganizationId) -> WebhookEndpoint {
    webhook_endpoint(
        EndpointOwner::Platform {
            organization_id: organization_id.clone(),
        },
        Some(organization_id),
        None,
    )
}

pub fn destination_endpoint(destination: &Destination) -> WebhookEndpoint {
    webhook_endpoint(
        EndpointOwner::Destination {
            organization_id: destination.organization_id.clone(),
            destination_id: destination.id.clone(),
        },
        Some(&destination.organization_id),
        Some(&destination.id),
    )
}

/// Stores an endpoint created a minute ago.
async fn seed_endpoint(store: &dyn Store, mut endpoint: WebhookEndpoint) -> WebhookEndpoint {
    endpoint.created_at = now() - Duration::minutes(1);
    endpoint.updated_at = endpoint.created_at;
    store.insert_endpoint(&endpoint).await.unwrap();
    endpoint
}

/// Stores a client ID with its `client_id.created` event.
async fn seed_client(
    store: &dyn Store,
    destination: &Destination,
    orchestrator_id: &OrchestratorId,
    permissions: PermissionSet,
) -> Client {
    let client = client(destination, orchestrator_id, permissions);
    store
        .insert_client(&client, &client_event(EventType::ClientIdCreated, &client))
        .await
        .unwrap();
    client
}

/// Stores a request of `destination` by its owner; its `payment_request.created` event.
async fn seed_request_event(store: &dyn Store, destination: &Destination) -> Event {
    let request = payment_request(destination, Direction::Incoming, None);
    let event = request_event(EventType::PaymentRequestCreated, &request);
    store.insert_request(&request, &event).await.unwrap();
    event
}

fn lease() -> Duration {
    Duration::seconds(60)
}

/// Where a list of endpoints comes from.
enum EndpointList<'a> {
    Owner(&'a EndpointOwner),
    /// An owner's endpoints whose scope fits inside a narrowed credential's.
    Within(&'a EndpointOwner, &'a PermissionSet),
    Organization(&'a OrganizationId),
}

/// Walks every page of an endpoint list with pages of `limit`.
async fn all_endpoints(
    store: &dyn Store,
    list: &EndpointList<'_>,
    limit: u32,
) -> Vec<WebhookEndpoint> {
    let mut endpoints = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = match list {
            EndpointList::Owner(owner) => store.endpoints_of(owner, None, &page).await.unwrap(),
            EndpointList::Within(owner, within) => store
                .endpoints_of(owner, Some(within), &page)
                .await
                .unwrap(),
            EndpointList::Organization(id) => {
                store.endpoints_of_organization(id, &page).await.unwrap()
            }
        };
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|endpoint| endpoint.id.to_string());
        endpoints.extend(data);
        if !has_more {
            return endpoints;
        }
    }
}

/// Walks every page of an endpoint's attempts with pages of `limit`.
async fn all_deliveries(store: &dyn Store, endpoint_id: &EndpointId, limit: u32) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = store.deliveries_of(endpoint_id, &page).await.unwrap();
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|delivery| delivery.id.to_string());
        deliveries.extend(data);
        if !has_more {
            return deliveries;
        }
    }
}

/// Walks every page of the feed of `scope` with pages of `limit`.
async fn all_feed_events(store: &dyn Store, scope: &EventScope, limit: u32) -> Vec<Event> {
    let mut events = Vec::new();
    let mut page = first_page(limit);
    loop {
        let Page { data, has_more, .. } = store
            .list_events(scope, &EventFilter::default(), &page)
            .await
            .unwrap();
        assert!(data.len() <= limit as usize);
        assert!(
            !has_more || data.len() == limit as usize,
            "a page before the last is full"
        );
        page.starting_after = data.last().map(|event| event.id.to_string());
        events.extend(data);
        if !has_more {
            return events;
        }
    }
}

fn delivery_ids(deliveries: &[Delivery]) -> Vec<DeliveryId> {
    deliveries
        .iter()
        .map(|delivery| delivery.id.clone())
        .collect()
}

fn claimed_ids(claimed: &[ClaimedDelivery]) -> Vec<DeliveryId> {
    claimed
        .iter()
        .map(|claimed| claimed.delivery.id.clone())
        .collect()
}

fn event_ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|event| event.id.clone()).collect()
}

fn endpoint_ids(endpoints: &[WebhookEndpoint]) -> Vec<EndpointId> {
    endpoints
        .iter()
        .map(|endpoint| endpoint.id.clone())
        .collect()
}

pub async fn webhook_endpoints_round_trip_per_owner_kind(store: Arc<dyn Store>) {
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

pub async fn webhook_endpoint_lists_follow_the_owner(store: Arc<dyn Store>) {
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

/// An endpoint keeps the scope of the credential that registered it, and a narrowed
/// credential lists only the endpoints whose scope fits inside its own.
pub async fn webhook_endpoint_scopes_round_trip_and_narrow_lists(store: Arc<dyn Store>) {
    use crate::policy::endpoint_scope_fits;
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

pub async fn candidate_endpoints_include_every_possible_receiver(store: Arc<dyn Store>) {
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

pub async fn fanout_claims_lease_events_until_recorded(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(seed_request_event(&*store, &destinations[0]).await);
    }
    let at = now();

    // Oldest first; a second claim gets the rest, then nothing while the leases last.
    let first = store.claim_events_for_fanout(2, at, lease()).await.unwrap();
    assert_eq!(first, events[..2].to_vec());
    let second = store
        .claim_events_for_fanout(10, at, lease())
        .await
        .unwrap();
    assert_eq!(second, events[2..].to_vec());
    let during = at + lease() - Duration::seconds(1);
    assert_eq!(
        store
            .claim_events_for_fanout(10, during, lease())
            .await
            .unwrap(),
        vec![]
    );

    // One call records a batch; its attempts are leased to the caller, who sends them.
    let first_attempt = Delivery::first(&events[0].id, &endpoint.id, at);
    assert_eq!(
        store
            .record_fanout(
                &[
                    fanout(&events[0], std::slice::from_ref(&first_attempt)),
                    fanout(&events[1], &[]),
                ],
                at,
                lease(),
            )
            .await
            .unwrap(),
        event_ids(&events[..2])
    );
    assert_eq!(
        store.delivery(&first_attempt.id).await.unwrap(),
        Some(first_attempt.clone())
    );
    assert!(
        store
            .claim_due_deliveries(10, at + lease() - Duration::seconds(1), lease())
            .await
            .unwrap()
            .is_empty(),
        "an attempt leased to the worker that fanned it out is not claimed by another"
    );

    // The workers of the others died: once their leases end, the events are claimed again.
    let after = at + lease();
    let again = store
        .claim_events_for_fanout(10, after, lease())
        .await
        .unwrap();
    assert_eq!(again, events[2..].to_vec());
    assert_eq!(
        store
            .claim_events_for_fanout(10, after, lease())
            .await
            .unwrap(),
        vec![]
    );

    // A second worker finishing the same event stores nothing twice, and is told so.
    let by_first_worker = Delivery::first(&events[2].id, &endpoint.id, after);
    let by_second_worker = Delivery::first(&events[2].id, &endpoint.id, after);
    assert_eq!(
        store
            .record_fanout(
                &[fanout(&events[2], std::slice::from_ref(&by_first_worker))],
                after,
                lease(),
            )
            .await
            .unwrap(),
        event_ids(&events[2..3])
    );
    assert_eq!(
        store
            .record_fanout(
                &[fanout(&events[2], std::slice::from_ref(&by_second_worker))],
                after,
                lease(),
            )
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(store.delivery(&by_second_worker.id).await.unwrap(), None);
    assert_eq!(
        delivery_ids(&all_deliveries(&*store, &endpoint.id, 100).await),
        vec![by_first_worker.id.clone(), first_attempt.id.clone()]
    );
    // The first attempt's lease has ended (its worker died): it is claimed like any other.
    assert_eq!(
        claimed_ids(
            &store
                .claim_due_deliveries(10, after, lease())
                .await
                .unwrap()
        ),
        vec![first_attempt.id.clone()]
    );

    let much_later = at + Duration::days(1);
    assert_eq!(
        store
            .claim_events_for_fanout(10, much_later, lease())
            .await
            .unwrap(),
        events[3..].to_vec()
    );
    let nobody: Vec<Fanout> = events[3..].iter().map(|event| fanout(event, &[])).collect();
    store
        .record_fanout(&nobody, much_later, lease())
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_events_for_fanout(10, much_later + Duration::days(1), lease())
            .await
            .unwrap(),
        vec![]
    );
}

fn fanout(event: &Event, deliveries: &[Delivery]) -> Fanout {
    Fanout {
        event_id: event.id.clone(),
        deliveries: deliveries.to_vec(),
    }
}

fn recorded(attempt: &Delivery, next: Option<&Delivery>) -> RecordedAttempt {
    RecordedAttempt {
        attempt: attempt.clone(),
        next: next.cloned(),
    }
}

pub async fn concurrent_fanout_claims_take_each_event_once(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let mut events = Vec::new();
    for _ in 0..40 {
        events.push(seed_request_event(&*store, &destinations[0]).await);
    }
    // Warm the pool first, so that the claims below really overlap.
    futures_util::future::join_all((0..8).map(|_| store.ping())).await;
    let at = now();
    let claims = (0..8).map(|_| {
        let store = store.clone();
        async move { store.claim_events_for_fanout(8, at, lease()).await.unwrap() }
    });
    let mut claimed: Vec<EventId> = futures_util::future::join_all(claims)
        .await
        .iter()
        .flat_map(|events| event_ids(events))
        .collect();
    loop {
        let more = store.claim_events_for_fanout(8, at, lease()).await.unwrap();
        if more.is_empty() {
            break;
        }
        claimed.extend(event_ids(&more));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(total, claimed.len(), "an event was claimed twice");
    assert_eq!(claimed, event_ids(&events));
}

pub async fn delivery_claims_lease_due_attempts(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let other_event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    let due_at = |seconds: i64| {
        let mut delivery =
            Delivery::first(&event.id, &endpoint.id, at + Duration::seconds(seconds));
        delivery.created_at = at;
        delivery
    };
    let oldest = due_at(-30);
    let mut older = due_at(-10);
    older.event_id = other_event.id.clone();
    let exactly_now = due_at(0);
    let future = due_at(60);
    let done = Delivery {
        status: DeliveryStatus::Succeeded,
        response_status: Some(200),
        next_attempt_at: None,
        ..due_at(-60)
    };
    let skipped = Delivery {
        status: DeliveryStatus::Skipped,
        ..due_at(-60)
    };
    // Stored in another order than they fall due.
    for delivery in [&future, &exactly_now, &done, &older, &skipped, &oldest] {
        store.insert_delivery(delivery).await.unwrap();
    }

    let first = store.claim_due_deliveries(2, at, lease()).await.unwrap();
    assert_eq!(
        claimed_ids(&first),
        delivery_ids(&[oldest.clone(), older.clone()])
    );
    assert_eq!(first[0].delivery, oldest);
    assert_eq!(first[0].event, event);
    assert_eq!(first[0].endpoint, endpoint);
    assert_eq!(first[1].event, other_event);
    let rest = store.claim_due_deliveries(10, at, lease()).await.unwrap();
    assert_eq!(claimed_ids(&rest), vec![exactly_now.id.clone()]);
    let during = at + Duration::seconds(59);
    assert!(
        store
            .claim_due_deliveries(10, during, lease())
            .await
            .unwrap()
            .is_empty()
    );

    // Nobody recorded anything: when the leases end the attempts are claimed again, with the
    // one that fell due meanwhile; finished attempts never are.
    let after = at + lease();
    let again = store
        .claim_due_deliveries(10, after, lease())
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&again),
        delivery_ids(&[oldest, older, exactly_now, future])
    );
    assert!(
        store
            .claim_due_deliveries(10, after, lease())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn concurrent_delivery_claims_take_each_attempt_once(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(seed_request_event(&*store, &destinations[0]).await);
    }
    let at = now();
    let mut due = Vec::new();
    for index in 0..50 {
        let scheduled = at - Duration::seconds(50 - index);
        let delivery = Delivery::first(&events[index as usize % 5].id, &endpoint.id, scheduled);
        store.insert_delivery(&delivery).await.unwrap();
        due.push(delivery.id);
    }
    // Warm the pool first, so that the claims below really overlap.
    futures_util::future::join_all((0..8).map(|_| store.ping())).await;
    let claims = (0..8).map(|_| {
        let store = store.clone();
        async move { store.claim_due_deliveries(10, at, lease()).await.unwrap() }
    });
    let mut claimed: Vec<DeliveryId> = futures_util::future::join_all(claims)
        .await
        .iter()
        .flat_map(|claimed| claimed_ids(claimed))
        .collect();
    loop {
        let more = store.claim_due_deliveries(10, at, lease()).await.unwrap();
        if more.is_empty() {
            break;
        }
        claimed.extend(claimed_ids(&more));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(total, claimed.len(), "an attempt was claimed twice");
    assert_eq!(claimed, due);
}

pub async fn delivery_claims_leave_each_endpoint_its_limit_in_flight(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let hanging = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let healthy = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    // The hanging endpoint's backlog falls due first, all of it before the healthy one's.
    let mut backlog = Vec::new();
    for index in 0..30 {
        let delivery = Delivery::first(&event.id, &hanging.id, at - Duration::seconds(60 - index));
        store.insert_delivery(&delivery).await.unwrap();
        backlog.push(delivery);
    }
    let mut fresh = Vec::new();
    for index in 0..3 {
        let delivery = Delivery::first(&event.id, &healthy.id, at - Duration::seconds(10 - index));
        store.insert_delivery(&delivery).await.unwrap();
        fresh.push(delivery);
    }
    let of = |claimed: &[ClaimedDelivery], endpoint: &WebhookEndpoint| {
        claimed
            .iter()
            .filter(|claimed| claimed.delivery.endpoint_id == endpoint.id)
            .count()
    };

    // Concurrent claims (other replicas) together never exceed the limit of one endpoint.
    futures_util::future::join_all((0..8).map(|_| store.ping())).await;
    let claims = (0..6).map(|_| {
        let store = store.clone();
        async move {
            store
                .claim_due_deliveries_per_endpoint(10, 4, at, lease())
                .await
                .unwrap()
        }
    });
    let claimed: Vec<ClaimedDelivery> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut more = store
        .claim_due_deliveries_per_endpoint(10, 4, at, lease())
        .await
        .unwrap();
    assert_eq!(of(&claimed, &hanging) + of(&more, &hanging), 4);
    // The healthy endpoint's attempts are not held back behind the hanging one's backlog.
    assert_eq!(of(&claimed, &healthy) + of(&more, &healthy), 3);
    more.extend(claimed);
    let mut hanging_claimed: Vec<DeliveryId> = more
        .iter()
        .filter(|claimed| claimed.delivery.endpoint_id == hanging.id)
        .map(|claimed| claimed.delivery.id.clone())
        .collect();
    hanging_claimed.sort();
    assert_eq!(
        hanging_claimed,
        delivery_ids(&backlog[..4]),
        "soonest due first"
    );

    // One finishes: one more of that endpoint may go.
    let finished = Delivery {
        status: DeliveryStatus::Failed,
        response_status: None,
        next_attempt_at: None,
        ..backlog[0].clone()
    };
    store
        .record_attempts(&[recorded(&finished, None)])
        .await
        .unwrap();
    let next = store
        .claim_due_deliveries_per_endpoint(10, 4, at, lease())
        .await
        .unwrap();
    assert_eq!(claimed_ids(&next), delivery_ids(&backlog[4..5]));
    // Leases that ended are no longer in flight.
    let later = store
        .claim_due_deliveries_per_endpoint(10, 4, at + lease(), lease())
        .await
        .unwrap();
    assert_eq!(of(&later, &hanging), 4);
    assert_eq!(of(&later, &healthy), 3);
}

pub async fn postponed_attempts_fall_due_later_without_an_attempt(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    let first = Delivery::first(&event.id, &endpoint.id, at);
    store.insert_delivery(&first).await.unwrap();
    let claimed = store.claim_due_deliveries(10, at, lease()).await.unwrap();
    assert_eq!(claimed_ids(&claimed), vec![first.id.clone()]);
    let until = at + Duration::seconds(30);
    assert_eq!(
        store
            .postpone_deliveries(std::slice::from_ref(&first.id), until)
            .await
            .unwrap(),
        1
    );
    // Not due before then, although its lease ended; due then as the same attempt.
    let before = store
        .claim_due_deliveries(10, until - Duration::seconds(1), lease())
        .await
        .unwrap();
    assert!(before.is_empty());
    let due = store
        .claim_due_deliveries(10, until, lease())
        .await
        .unwrap();
    assert_eq!(claimed_ids(&due), vec![first.id.clone()]);
    assert_eq!(due[0].delivery.attempt, 1);
    assert_eq!(due[0].delivery.next_attempt_at, Some(until));
    // Finished attempts are left alone.
    let done = Delivery {
        status: DeliveryStatus::Succeeded,
        next_attempt_at: None,
        ..first.clone()
    };
    store
        .record_attempts(&[recorded(&done, None)])
        .await
        .unwrap();
    assert_eq!(
        store
            .postpone_deliveries(std::slice::from_ref(&first.id), until)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.delivery(&first.id).await.unwrap(), Some(done));
}

pub async fn finished_attempts_are_purged_after_their_retention(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    let made = |status: DeliveryStatus, days_ago: i64| {
        let mut delivery = Delivery::first(&event.id, &endpoint.id, at);
        delivery.created_at = at - Duration::days(days_ago);
        if status != DeliveryStatus::Pending {
            delivery.status = status;
            delivery.next_attempt_at = None;
        }
        delivery
    };
    let old_finished = [
        made(DeliveryStatus::Succeeded, 40),
        made(DeliveryStatus::Failed, 39),
        made(DeliveryStatus::Skipped, 38),
    ];
    // A pending attempt is never purged, however old; recent finished ones are kept.
    let kept = [
        made(DeliveryStatus::Pending, 50),
        made(DeliveryStatus::Succeeded, 1),
    ];
    for delivery in old_finished.iter().chain(&kept) {
        store.insert_delivery(delivery).await.unwrap();
    }
    let before = at - Duration::days(30);
    // In batches, oldest first.
    assert_eq!(store.purge_finished_deliveries(before, 2).await.unwrap(), 2);
    assert_eq!(store.delivery(&old_finished[0].id).await.unwrap(), None);
    assert_eq!(store.delivery(&old_finished[1].id).await.unwrap(), None);
    assert!(store.delivery(&old_finished[2].id).await.unwrap().is_some());
    assert_eq!(store.purge_finished_deliveries(before, 2).await.unwrap(), 1);
    assert_eq!(store.purge_finished_deliveries(before, 2).await.unwrap(), 0);
    for delivery in &kept {
        assert_eq!(
            store.delivery(&delivery.id).await.unwrap().as_ref(),
            Some(delivery)
        );
    }
}

pub async fn attempts_are_recorded_with_their_successor(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    let first = Delivery::first(&event.id, &endpoint.id, at);
    store.insert_delivery(&first).await.unwrap();
    assert_eq!(
        store.delivery(&first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        claimed_ids(&store.claim_due_deliveries(10, at, lease()).await.unwrap()),
        vec![first.id.clone()]
    );

    let failed = Delivery {
        status: DeliveryStatus::Failed,
        response_status: Some(503),
        response_body: Some("busy — \"later\"".into()),
        duration_ms: Some(1234),
        next_attempt_at: None,
        ..first.clone()
    };
    let retry_at = at + Duration::seconds(5);
    let next = first.next(retry_at, at + Duration::seconds(1));
    store
        .record_attempts(&[recorded(&failed, Some(&next))])
        .await
        .unwrap();
    assert_eq!(
        store.delivery(&first.id).await.unwrap(),
        Some(failed.clone())
    );
    assert_eq!(store.delivery(&next.id).await.unwrap(), Some(next.clone()));
    assert_eq!(next.attempt, 2);
    assert_eq!(next.first_attempt_at, first.first_attempt_at);

    // The successor falls due at its time; the failed attempt is done even though its lease
    // has not ended.
    assert!(
        store
            .claim_due_deliveries(10, retry_at - Duration::seconds(1), lease())
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_due_deliveries(10, retry_at, lease())
        .await
        .unwrap();
    assert_eq!(claimed_ids(&claimed), vec![next.id.clone()]);
    let succeeded = Delivery {
        status: DeliveryStatus::Succeeded,
        response_status: Some(204),
        response_body: Some(String::new()),
        duration_ms: Some(0),
        next_attempt_at: None,
        ..next.clone()
    };
    store
        .record_attempts(&[recorded(&succeeded, None)])
        .await
        .unwrap();
    assert_eq!(
        store.delivery(&next.id).await.unwrap(),
        Some(succeeded.clone())
    );
    assert!(
        store
            .claim_due_deliveries(10, at + Duration::days(1), lease())
            .await
            .unwrap()
            .is_empty()
    );

    // A manual retry is a new attempt.
    let manual_at = at + Duration::seconds(10);
    let manual = Delivery {
        first_attempt_at: manual_at,
        ..succeeded.next(manual_at, manual_at)
    };
    store.insert_delivery(&manual).await.unwrap();
    let expected = vec![manual.clone(), succeeded.clone(), failed.clone()];
    for limit in [1, 2, 100] {
        assert_eq!(all_deliveries(&*store, &endpoint.id, limit).await, expected);
    }
    assert!(
        all_deliveries(&*store, &EndpointId::generate(), 10)
            .await
            .is_empty()
    );
    assert_eq!(store.delivery(&DeliveryId::generate()).await.unwrap(), None);

    // Deleting the endpoint deletes its log; an attempt in flight then records nothing, and
    // has no successor.
    let in_flight = store
        .claim_due_deliveries(10, manual_at, lease())
        .await
        .unwrap();
    assert_eq!(claimed_ids(&in_flight), vec![manual.id.clone()]);
    assert!(store.delete_endpoint(&endpoint.id).await.unwrap());
    for delivery in &expected {
        assert_eq!(store.delivery(&delivery.id).await.unwrap(), None);
    }
    let lost = Delivery {
        status: DeliveryStatus::Failed,
        ..manual.clone()
    };
    let orphan = manual.next(manual_at + Duration::seconds(5), manual_at);
    store
        .record_attempts(&[recorded(&lost, Some(&orphan))])
        .await
        .unwrap();
    assert_eq!(store.delivery(&manual.id).await.unwrap(), None);
    assert_eq!(store.delivery(&orphan.id).await.unwrap(), None);
    assert!(all_deliveries(&*store, &endpoint.id, 10).await.is_empty());
}

pub async fn direct_events_are_not_fanned_out_again(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let at = now();
    let audience = Audience {
        organization_id: Some(organization.id.clone()),
        destination_id: Some(destinations[0].id.clone()),
        endpoint_id: Some(endpoint.id.clone()),
        ..Audience::default()
    };
    let test = Event::new(EventType::WebhookTest, audience.clone(), &endpoint, at);
    let delivery = Delivery::first(&test.id, &endpoint.id, at);
    store.insert_direct_event(&test, &delivery).await.unwrap();
    assert_eq!(store.event(&test.id).await.unwrap(), Some(test.clone()));
    assert_eq!(store.event(&EventId::generate()).await.unwrap(), None);
    assert_eq!(all_events(&*store).await, vec![test.clone()]);

    assert!(
        store
            .claim_events_for_fanout(10, at + Duration::days(1), lease())
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store.claim_due_deliveries(10, at, lease()).await.unwrap();
    assert_eq!(claimed_ids(&claimed), vec![delivery.id.clone()]);
    assert_eq!(claimed[0].event, test);
    assert_eq!(
        claimed[0].event.audience.endpoint_id,
        Some(endpoint.id.clone())
    );

    // A refused attempt takes its event with it.
    let orphan = Event::new(EventType::WebhookTest, audience.clone(), &endpoint, at);
    let nowhere = Delivery::first(&orphan.id, &EndpointId::generate(), at);
    assert!(store.insert_direct_event(&orphan, &nowhere).await.is_err());
    assert_eq!(store.event(&orphan.id).await.unwrap(), None);

    // An ordinary event is fanned out; the direct one stays out of every feed.
    let ordinary = seed_request_event(&*store, &destinations[0]).await;
    assert_eq!(
        store
            .claim_events_for_fanout(10, at, lease())
            .await
            .unwrap(),
        vec![ordinary.clone()]
    );
    let viewer = Viewer::Platform {
        organization_id: organization.id.clone(),
        acting_for: None,
    };
    assert_eq!(
        all_feed_events(&*store, &event_scope(&viewer), 10).await,
        vec![ordinary]
    );
}

/// How many random viewers the feed's SQL-versus-domain check runs.
const EVENT_FEED_CASES: usize = 600;

fn random_client_principal(
    rng: &mut StdRng,
    destinations: &[Destination],
    clients: &[Client],
    orchestrators: &[Orchestrator],
) -> ClientPrincipal {
    if rng.gen_bool(0.8) {
        // A stored client ID, with permissions that may since have changed.
        let client = pick(rng, clients);
        ClientPrincipal {
            client_id: client.id.clone(),
            orchestrator_id: client.orchestrator_id.clone(),
            organization_id: client.organization_id.clone(),
            destination_id: client.destination_id.clone(),
            permissions: random_permissions(rng),
            scope: None,
        }
    } else {
        // One that never created anything.
        let destination = pick(rng, destinations);
        ClientPrincipal {
            client_id: ClientId::generate(),
            orchestrator_id: pick(rng, orchestrators).id.clone(),
            organization_id: destination.organization_id.clone(),
            destination_id: destination.id.clone(),
            permissions: random_permissions(rng),
            scope: None,
        }
    }
}

fn random_viewer(
    rng: &mut StdRng,
    destinations: &[Destination],
    clients: &[Client],
    orchestrators: &[Orchestrator],
) -> Viewer {
    let destination = pick(rng, destinations);
    match rng.gen_range(0..7) {
        0 => Viewer::Nobody,
        1 => Viewer::Platform {
            organization_id: destination.organization_id.clone(),
            acting_for: None,
        },
        // `X-Destination-Id` names a destination of the platform's own organization.
        2 => Viewer::Platform {
            organization_id: destination.organization_id.clone(),
            acting_for: Some(destination.id.clone()),
        },
        3 => Viewer::Destination {
            organization_id: destination.organization_id.clone(),
            destination_id: destination.id.clone(),
        },
        4 | 5 => {
            // Some of its client IDs (the active ones, as the caller found them), each with
            // permissions of its own.
            let orchestrator = pick(rng, orchestrators);
            let mut held = Vec::new();
            for client in clients {
                if client.orchestrator_id == orchestrator.id && rng.gen_bool(0.7) {
                    held.push(ClientPrincipal {
                        client_id: client.id.clone(),
                        orchestrator_id: client.orchestrator_id.clone(),
                        organization_id: client.organization_id.clone(),
                        destination_id: client.destination_id.clone(),
                        permissions: random_permissions(rng),
                        scope: None,
                    });
                }
            }
            Viewer::Orchestrator {
                orchestrator_id: orchestrator.id.clone(),
                clients: held,
            }
        }
        _ => Viewer::Client(random_client_principal(
            rng,
            destinations,
            clients,
            orchestrators,
        )),
    }
}

fn types_of(family: &str) -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|event_type| event_type.family() == family)
        .collect()
}

/// SPEC §4: the feed is `can_see_event` translated to SQL. For random viewers over a random
/// world of events, `list_events` walks exactly the events the rule lets the viewer see,
/// newest first, across every page.
pub async fn event_feed_matches_can_see_event(store: Arc<dyn Store>) {
    let seed = contract_seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4645_4544);

    let mut destinations = Vec::new();
    let mut organizations = Vec::new();
    for _ in 0..2 {
        let (organization, created) = seed_organization(&*store, 2).await;
        organizations.push(organization);
        destinations.extend(created);
    }
    let mut orchestrators = Vec::new();
    for _ in 0..3 {
        orchestrators.push(seed_orchestrator(&*store).await);
    }
    let request_types = types_of("payment_request");
    let client_types = types_of("client_id");
    let customer_types = types_of("customer");

    // Client IDs, each with a client_id.* event about it.
    let mut clients = Vec::new();
    for index in 0..14 {
        let destination = if index < destinations.len() * 2 {
            &destinations[index / 2]
        } else {
            pick(&mut rng, &destinations)
        };
        let orchestrator = pick(&mut rng, &orchestrators);
        let mut client = client(destination, &orchestrator.id, random_permissions(&mut rng));
        if rng.gen_bool(0.2) {
            client.status = ClientStatus::Revoked;
        }
        let event = client_event(*pick(&mut rng, &client_types), &client);
        store.insert_client(&client, &event).await.unwrap();
        clients.push(client);
    }
    // Requests of every kind: by owners and through client IDs, both directions.
    for _ in 0..60 {
        let destination = pick(&mut rng, &destinations);
        let own_clients: Vec<&Client> = clients
            .iter()
            .filter(|client| client.destination_id == destination.id)
            .collect();
        let creator = rng.gen_bool(0.6).then(|| *pick(&mut rng, &own_clients));
        let request = payment_request(destination, *pick(&mut rng, &Direction::ALL), creator);
        let event = request_event(*pick(&mut rng, &request_types), &request);
        store.insert_request(&request, &event).await.unwrap();
    }
    // Customers of either organization.
    for _ in 0..12 {
        let organization = pick(&mut rng, &organizations);
        let customer = customer(&organization.id, None);
        let event = customer_event(*pick(&mut rng, &customer_types), &customer);
        store.insert_customer(&customer, &event).await.unwrap();
    }
    // Events for one endpoint, which no feed shows.
    for destination in &destinations[..2] {
        let endpoint = seed_endpoint(&*store, destination_endpoint(destination)).await;
        let audience = Audience {
            organization_id: Some(destination.organization_id.clone()),
            destination_id: Some(destination.id.clone()),
            endpoint_id: Some(endpoint.id.clone()),
            ..Audience::default()
        };
        let event = Event::new(EventType::WebhookTest, audience, &endpoint, now());
        let delivery = Delivery::first(&event.id, &endpoint.id, now());
        store.insert_direct_event(&event, &delivery).await.unwrap();
    }
    let events = all_events(&*store).await;

    let mut listed_total = 0;
    for case in 0..EVENT_FEED_CASES {
        let viewer = random_viewer(&mut rng, &destinations, &clients, &orchestrators);
        let limit = rng.gen_range(1..=7);
        let scope = event_scope(&viewer);
        let expected: Vec<Event> = events
            .iter()
            .filter(|event| {
                let visible = can_see_event(&viewer, event);
                assert_eq!(
                    scope.contains(event),
                    visible,
                    "seed {seed} case {case}: {scope:?} disagrees with can_see_event on {event:?}"
                );
                visible
            })
            .cloned()
            .collect();
        let listed = all_feed_events(&*store, &scope, limit).await;
        assert_eq!(
            event_ids(&listed),
            event_ids(&expected),
            "seed {seed} case {case}: {viewer:?}, pages of {limit}"
        );
        assert_eq!(listed, expected);
        listed_total += listed.len();
    }
    // Guards against a generator that only ever produces empty answers.
    assert!(
        listed_total > EVENT_FEED_CASES * 5,
        "too few events listed: {listed_total}"
    );
    println!(
        "event feed sql-vs-domain: {EVENT_FEED_CASES} cases over {} events, {listed_total} \
         events listed (seed {seed})",
        events.len()
    );
}

// ---- Claims, signature nonces and the ledger ------------------------------------------

/// An agent key unique to this call.
pub fn agent_key() -> AgentKey {
    loop {
        let bytes: [u8; 32] = rand::thread_rng().r#gen();
        // Not every 32 bytes are a point on the curve.
        if let Ok(key) = AgentKey::from_bytes(&bytes) {
            return key;
        }
    }
}

/// A pending claim of `destination` submitted by `orchestrator`.
pub fn pending_claim(destination: &Destination, orchestrator: &Orchestrator) -> Claim {
    Claim {
        id: ClaimId::generate(),
        organization_id: destination.organization_id.clone(),
        destination_id: destination.id.clone(),
        namespace: destination.slug.clone(),
        orchestrator_id: orchestrator.id.clone(),
        service: orchestrator.slug.clone(),
        public_key: agent_key(),
        agent_id: format!("agent-{}", ClaimId::generate()),
        agent_name: "Checkout agent".into(),
        subject: Some("customer 42".into()),
        ip_address: "2001:db8::7".parse().unwrap(),
        permissions: PermissionSet::default_for_new_client(),
        status: ClaimStatus::Pending,
        client_id: None,
        pending_expires_at: now() + Duration::hours(1),
        expires_at: None,
        ledger_status: None,
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn claim_event(event_type: EventType, claim: &Claim) -> Event {
    let audience = Audience {
        organization_id: Some(claim.organization_id.clone()),
        destination_id: Some(claim.destination_id.clone()),
        orchestrator_id: Some(claim.orchestrator_id.clone()),
        client_id: claim.client_id.clone(),
        direction: None,
        endpoint_id: None,
    };
    Event::new(event_type, audience, claim, now())
}

fn nonce() -> String {
    format!("nonce-{}", ClaimId::generate())
}

async fn submit(store: &dyn Store, claim: &Claim) {
    let event = claim_event(EventType::ClaimSubmitted, claim);
    let outcome = store.submit_claim(claim, &nonce(), &event).await.unwrap();
    assert_eq!(outcome, ClaimSubmission::Created);
}

/// Approves a stored pending claim through the port; returns the claim, its client ID and
/// the outcome.
async fn approve(
    store: &dyn Store,
    claim: &Claim,
    max_agents: u32,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> (Claim, Client, ClaimApproval) {
    let destination = store
        .destination(&claim.destination_id)
        .await
        .unwrap()
        .unwrap();
    let mut agent = client(
        &destination,
        &claim.orchestrator_id,
        claim.permissions.clone(),
    );
    agent.agent_key = Some(claim.public_key.clone());
    let mut approved = claim.clone();
    approved
        .approve(
            Grant {
                client_id: agent.id.clone(),
                permissions: claim.permissions.clone(),
                expires_at,
            },
            now(),
        )
        .unwrap();
    let events = [
        claim_event(EventType::ClaimApproved, &approved),
        client_event(EventType::ClientIdCreated, &agent),
    ];
    let outcome = store
        .approve_claim(&approved, claim.version, &agent, max_agents, &events)
        .await
        .unwrap();
    (approved, agent, outcome)
}

pub async fn claims_are_submitted_once_per_nonce_and_live_key(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let claim = pending_claim(&destinations[0], &orchestrator);
    let event = claim_event(EventType::ClaimSubmitted, &claim);
    let used = nonce();
    assert_eq!(
        store.submit_claim(&claim, &used, &event).await.unwrap(),
        ClaimSubmission::Created
    );
    assert_eq!(store.claim(&claim.id).await.unwrap(), Some(claim.clone()));
    assert_eq!(all_events(&*store).await, vec![event]);

    // The nonce is spent, whatever the body.
    let other = pending_claim(&destinations[0], &orchestrator);
    let other_event = claim_event(EventType::ClaimSubmitted, &other);
    assert_eq!(
        store
            .submit_claim(&other, &used, &other_event)
            .await
            .unwrap(),
        ClaimSubmission::NonceReused
    );
    // The same key again: the live claim, nothing new.
    let mut again = pending_claim(&destinations[0], &orchestrator);
    again.public_key = claim.public_key.clone();
    let again_event = claim_event(EventType::ClaimSubmitted, &again);
    assert_eq!(
        store
            .submit_claim(&again, &nonce(), &again_event)
            .await
            .unwrap(),
        ClaimSubmission::Existing(Box::new(claim.clone()))
    );
    // The same agent id with another key: a conflict.
    let mut impostor = pending_claim(&destinations[0], &orchestrator);
    impostor.agent_id = claim.agent_id.clone();
    let impostor_event = claim_event(EventType::ClaimSubmitted, &impostor);
    assert_eq!(
        store
            .submit_claim(&impostor, &nonce(), &impostor_event)
            .await
            .unwrap(),
        ClaimSubmission::AgentIdTaken
    );
    assert_eq!(store.claim(&other.id).await.unwrap(), None);
    assert_eq!(store.claim(&again.id).await.unwrap(), None);
    assert_eq!(store.claim(&impostor.id).await.unwrap(), None);
    assert_eq!(all_events(&*store).await.len(), 1);
    // Nonces are per orchestrator.
    let elsewhere = pending_claim(&destinations[0], &seed_orchestrator(&*store).await);
    let elsewhere_event = claim_event(EventType::ClaimSubmitted, &elsewhere);
    assert_eq!(
        store
            .submit_claim(&elsewhere, &used, &elsewhere_event)
            .await
            .unwrap(),
        ClaimSubmission::Created
    );
}

pub async fn claim_approvals_respect_max_agents_and_versions(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let first = pending_claim(&destinations[0], &orchestrator);
    let second = pending_claim(&destinations[0], &orchestrator);
    submit(&*store, &first).await;
    submit(&*store, &second).await;

    let (approved, agent, outcome) = approve(&*store, &first, 1, None).await;
    assert_eq!(outcome, ClaimApproval::Approved { approved_agents: 1 });
    assert_eq!(
        store.claim(&first.id).await.unwrap(),
        Some(approved.clone())
    );
    assert_eq!(store.client(&agent.id).await.unwrap(), Some(agent.clone()));

    // The destination is full: nothing of the second approval is written.
    let events_before = all_events(&*store).await;
    let (_, refused_agent, outcome) = approve(&*store, &second, 1, None).await;
    assert_eq!(outcome, ClaimApproval::Full { approved_agents: 1 });
    assert_eq!(store.claim(&second.id).await.unwrap(), Some(second.clone()));
    assert_eq!(store.client(&refused_agent.id).await.unwrap(), None);
    assert_eq!(all_events(&*store).await, events_before);

    // A stale version writes nothing either.
    let (_, stale_agent, outcome) = approve(&*store, &first, 10, None).await;
    assert_eq!(outcome, ClaimApproval::Stale);
    assert_eq!(store.client(&stale_agent.id).await.unwrap(), None);
    let (_, _, outcome) = approve(&*store, &second, 2, None).await;
    assert_eq!(outcome, ClaimApproval::Approved { approved_agents: 2 });
}

pub async fn agent_clients_are_read_with_their_approvals_expiry(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let ends = now() + Duration::hours(1);
    let ending = pending_claim(&destinations[0], &orchestrator);
    let lasting = pending_claim(&destinations[0], &orchestrator);
    submit(&*store, &ending).await;
    submit(&*store, &lasting).await;
    let (_, ending_agent, _) = approve(&*store, &ending, 10, Some(ends)).await;
    let (_, lasting_agent, _) = approve(&*store, &lasting, 10, None).await;

    let read = |id: ClientId| {
        let store = store.clone();
        async move { store.client_with_approval_expiry(&id).await.unwrap() }
    };
    let (read_agent, expires_at) = read(ending_agent.id.clone()).await.unwrap();
    assert_eq!(read_agent, ending_agent);
    // Stored to the microsecond.
    assert_eq!(
        expires_at.map(|at| at.timestamp_micros()),
        Some(ends.timestamp_micros())
    );
    assert_eq!(
        read(lasting_agent.id.clone()).await,
        Some((lasting_agent, None))
    );
    // A client ID no claim created, and none at all.
    let plain = client(&destinations[0], &orchestrator.id, PermissionSet::default());
    let created = client_event(EventType::ClientIdCreated, &plain);
    store.insert_client(&plain, &created).await.unwrap();
    assert_eq!(read(plain.id.clone()).await, Some((plain, None)));
    assert_eq!(read(ClientId::generate()).await, None);
}

pub async fn ending_a_claim_revokes_its_client_and_queues_the_ledger(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let claim = pending_claim(&destinations[0], &orchestrator);
    submit(&*store, &claim).await;
    let (approved, agent, _) = approve(&*store, &claim, 10, None).await;

    let mut revoked = approved.clone();
    revoked.revoke(now()).unwrap();
    let mut revoked_agent = agent.clone();
    assert!(revoked_agent.revoke(now()));
    let events = [
        claim_event(EventType::ClaimRevoked, &revoked),
        client_event(EventType::ClientIdRevoked, &revoked_agent),
    ];
    // A stale claim version writes nothing, not even the client ID.
    assert!(
        !store
            .update_claim(
                &revoked,
                claim.version,
                Some((&revoked_agent, agent.version)),
                &events
            )
            .await
            .unwrap()
    );
    // Nor does a stale client version.
    assert!(
        !store
            .update_claim(
                &revoked,
                approved.version,
                Some((&revoked_agent, agent.version + 7)),
                &events
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim(&claim.id).await.unwrap(),
        Some(approved.clone())
    );
    assert_eq!(store.client(&agent.id).await.unwrap(), Some(agent.clone()));
    assert!(
        store
            .update_claim(
                &revoked,
                approved.version,
                Some((&revoked_agent, agent.version)),
                &events
            )
            .await
            .unwrap()
    );
    assert_eq!(store.claim(&claim.id).await.unwrap(), Some(revoked.clone()));
    assert_eq!(store.client(&agent.id).await.unwrap(), Some(revoked_agent));

    // Approval, then revocation: two entries of one valid chain, in that order.
    let entries = store.append_queued(100).await.unwrap();
    let actions: Vec<LedgerAction> = entries.iter().map(|entry| entry.action).collect();
    assert_eq!(actions, [LedgerAction::Approved, LedgerAction::Revoked]);
    assert!(store.append_queued(100).await.unwrap().is_empty());
    let chain = store.ledger_chain(&organization.id, 0, 100).await.unwrap();
    assert_eq!(chain, entries);
    let mut verifier = ChainVerifier::default();
    chain.iter().for_each(|entry| verifier.push(entry));
    let check = verifier.finish();
    assert!(check.valid);
    assert_eq!(check.entries, 2);
    assert_eq!(
        store.claim(&claim.id).await.unwrap().unwrap().ledger_status,
        Some(LedgerStatus::Recorded)
    );
}

pub async fn ledger_chains_are_per_organization_and_page_newest_first(store: Arc<dyn Store>) {
    let orchestrator = seed_orchestrator(&*store).await;
    let (first_organization, first) = seed_organization(&*store, 2).await;
    let (second_organization, second) = seed_organization(&*store, 1).await;
    for destination in [&first[0], &first[1], &first[0], &second[0]] {
        let claim = pending_claim(destination, &orchestrator);
        submit(&*store, &claim).await;
        approve(&*store, &claim, 10, None).await;
    }
    assert_eq!(store.append_queued(2).await.unwrap().len(), 2);
    assert_eq!(store.append_queued(100).await.unwrap().len(), 2);

    let all = store
        .ledger_entries(&first_organization.id, None, &first_page(100))
        .await
        .unwrap();
    let seqs: Vec<u64> = all.data.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, [3, 2, 1]);
    let page = store
        .ledger_entries(&first_organization.id, None, &first_page(2))
        .await
        .unwrap();
    assert!(page.has_more);
    let rest = store
        .ledger_entries(
            &first_organization.id,
            None,
            &PageRequest {
                limit: 2,
                starting_after: Some("2".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.data, vec![all.data[2].clone()]);
    let one_destination = store
        .ledger_entries(&first_organization.id, Some(&first[0].id), &first_page(100))
        .await
        .unwrap();
    assert_eq!(one_destination.data.len(), 2);
    assert!(
        one_destination
            .data
            .iter()
            .all(|entry| entry.destination_id == first[0].id)
    );
    let other = store
        .ledger_chain(&second_organization.id, 0, 100)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].seq, 1);
    assert_eq!(other[0].prev_hash, crate::claims::GENESIS_HASH);
}

pub async fn claims_due_for_expiry_are_pending_past_their_ttl_or_approved_past_expiry(
    store: Arc<dyn Store>,
) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let mut overdue = pending_claim(&destinations[0], &orchestrator);
    overdue.pending_expires_at = now() - Duration::seconds(1);
    let fresh = pending_claim(&destinations[0], &orchestrator);
    let limited = pending_claim(&destinations[0], &orchestrator);
    let unlimited = pending_claim(&destinations[0], &orchestrator);
    for claim in [&overdue, &fresh, &limited, &unlimited] {
        submit(&*store, claim).await;
    }
    let (limited, _, _) = approve(&*store, &limited, 10, Some(now() + Duration::seconds(30))).await;
    approve(&*store, &unlimited, 10, None).await;
    let due: Vec<ClaimId> = store
        .claims_due_for_expiry(now() + Duration::seconds(31), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|claim| claim.id)
        .collect();
    // `fresh` waits an hour for its decision; `unlimited` never ends by itself.
    assert_eq!(due.len(), 2, "{due:?}");
    assert!(due.contains(&overdue.id) && due.contains(&limited.id));
    assert!(!due.contains(&fresh.id));
    let due_now: Vec<ClaimId> = store
        .claims_due_for_expiry(now(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|claim| claim.id)
        .collect();
    assert_eq!(due_now, vec![overdue.id]);
}

pub async fn claim_lists_follow_the_scope_and_status(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 2).await;
    let orchestrator = seed_orchestrator(&*store).await;
    let other_orchestrator = seed_orchestrator(&*store).await;
    let first = pending_claim(&destinations[0], &orchestrator);
    let second = pending_claim(&destinations[1], &orchestrator);
    let third = pending_claim(&destinations[0], &other_orchestrator);
    for claim in [&first, &second, &third] {
        submit(&*store, claim).await;
    }
    approve(&*store, &second, 10, None).await;
    let ids = |page: Page<Claim>| {
        page.data
            .into_iter()
            .map(|claim| claim.id)
            .collect::<Vec<_>>()
    };
    let list = |scope: ClientScope, status: Option<ClaimStatus>| {
        let store = store.clone();
        async move {
            store
                .list_claims(&scope, status, &first_page(100))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        ids(list(ClientScope::Organization(organization.id.clone()), None).await),
        vec![third.id.clone(), second.id.clone(), first.id.clone()]
    );
    assert_eq!(
        ids(list(ClientScope::Destination(destinations[0].id.clone()), None).await),
        vec![third.id.clone(), first.id.clone()]
    );
    assert_eq!(
        ids(list(ClientScope::Orchestrator(orchestrator.id.clone()), None).await),
        vec![second.id.clone(), first.id.clone()]
    );
    assert_eq!(
        ids(list(
            ClientScope::Organization(organization.id.clone()),
            Some(ClaimStatus::Approved)
        )
        .await),
        vec![second.id.clone()]
    );
    assert!(list(ClientScope::Nothing, None).await.data.is_empty());
    let page = store
        .list_claims(
            &ClientScope::Organization(organization.id.clone()),
            None,
            &PageRequest {
                limit: 1,
                starting_after: Some(third.id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(page.clone()), vec![second.id]);
    assert!(page.has_more);
}

pub async fn signature_nonces_are_accepted_once_per_key_and_purged(store: Arc<dyn Store>) {
    let key = agent_key();
    let other = agent_key();
    let earlier = now() - Duration::minutes(10);
    assert!(
        store
            .record_signature_nonce(&key, "n-1", earlier)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_signature_nonce(&key, "n-1", now())
            .await
            .unwrap()
    );
    assert!(
        store
            .record_signature_nonce(&other, "n-1", now())
            .await
            .unwrap()
    );
    assert!(
        store
            .record_signature_nonce(&key, "n-2", now())
            .await
            .unwrap()
    );
    let purged = store
        .purge_signature_nonces(now() - Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    // Once forgotten (the signature is too old to be accepted anyway) it is new again.
    assert!(
        store
            .record_signature_nonce(&key, "n-1", now())
            .await
            .unwrap()
    );
}

/// The operator's look-ups: every organization or orchestrator, newest first, by page, or
/// those with a name (or an orchestrator's slug).
pub async fn operator_lookups_filter_and_page_newest_first(store: Arc<dyn Store>) {
    let mut organizations = Vec::new();
    for name in ["Acme", "Beta", "Acme"] {
        let organization = Organization {
            name: name.into(),
            ..organization()
        };
        let platform_key = key(KeyOwner::Platform {
            organization_id: organization.id.clone(),
        });
        store
            .insert_organization(&organization, &platform_key)
            .await
            .unwrap();
        organizations.push(organization);
    }
    organizations.reverse();
    let everything = OrganizationFilter::default();
    let first = store
        .list_organizations(&everything, &first_page(2))
        .await
        .unwrap();
    assert_eq!(
        (first.data.as_slice(), first.has_more),
        (&organizations[..2], true)
    );
    let rest = store
        .list_organizations(
            &everything,
            &PageRequest {
                limit: 2,
                starting_after: Some(organizations[1].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rest.data.as_slice(), rest.has_more),
        (&organizations[2..], false)
    );
    let acme = OrganizationFilter {
        name: Some("Acme".into()),
    };
    let named = store
        .list_organizations(&acme, &first_page(10))
        .await
        .unwrap();
    assert_eq!(
        named.data,
        vec![organizations[0].clone(), organizations[2].clone()]
    );

    let older = seed_orchestrator(&*store).await;
    let newer = seed_orchestrator(&*store).await;
    let all = store
        .list_orchestrators(&OrchestratorFilter::default(), &first_page(10))
        .await
        .unwrap();
    assert_eq!(all.data, vec![newer.clone(), older.clone()]);
    let by_slug = OrchestratorFilter {
        slug: Some(older.slug.clone()),
        name: None,
    };
    let found = store
        .list_orchestrators(&by_slug, &first_page(10))
        .await
        .unwrap();
    assert_eq!(found.data, vec![older.clone()]);
    let by_name = OrchestratorFilter {
        slug: None,
        name: Some(older.name.clone()),
    };
    let found = store
        .list_orchestrators(&by_name, &first_page(1))
        .await
        .unwrap();
    assert_eq!((found.data, found.has_more), (vec![newer], true));
    let neither = OrchestratorFilter {
        slug: Some(older.slug.clone()),
        name: Some("Someone else".into()),
    };
    let found = store
        .list_orchestrators(&neither, &first_page(10))
        .await
        .unwrap();
    assert!(found.data.is_empty() && !found.has_more);
}

/// The feed's `type` filter: only events of the named types, within the reader's scope.
pub async fn event_feed_filters_by_type(store: Arc<dyn Store>) {
    let (organization, destinations) = seed_organization(&*store, 1).await;
    let mut requests = Vec::new();
    for event_type in [
        EventType::PaymentRequestCreated,
        EventType::PaymentRequestPaid,
    ] {
        let request = payment_request(&destinations[0], Direction::Incoming, None);
        let event = request_event(event_type, &request);
        store.insert_request(&request, &event).await.unwrap();
        requests.push(event);
    }
    requests.reverse();
    seed_customer(&*store, &organization.id, None).await;
    // Another organization's events of the same types stay out.
    let (_, others) = seed_organization(&*store, 1).await;
    seed_request_event(&*store, &others[0]).await;
    let scope = EventScope {
        clauses: vec![EventClause::Organization {
            organization_id: organization.id.clone(),
            families: &["payment_request", "customer"],
        }],
    };
    let listed = |types: Vec<EventType>| {
        let store = store.clone();
        let scope = scope.clone();
        async move {
            let filter = EventFilter { types: Some(types) };
            store
                .list_events(&scope, &filter, &first_page(10))
                .await
                .unwrap()
                .data
        }
    };
    assert_eq!(listed(types_of("payment_request")).await, requests);
    assert_eq!(
        listed(vec![EventType::PaymentRequestPaid]).await,
        requests[..1]
    );
    let customers = listed(vec![EventType::CustomerCreated]).await;
    assert_eq!(
        customers
            .iter()
            .map(|event| event.event_type)
            .collect::<Vec<_>>(),
        vec![EventType::CustomerCreated]
    );
    assert!(listed(vec![EventType::ClaimApproved]).await.is_empty());
    let everything = store
        .list_events(&scope, &EventFilter::default(), &first_page(10))
        .await
        .unwrap();
    assert_eq!(everything.data.len(), 3);
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
            keys_are_read_with_the_client_id_they_name,
            health_answers,
            orchestrators_are_found_by_slug,
            client_ids_round_trip_with_their_events,
            client_id_lists_follow_the_scope_and_status,
            client_updates_need_the_expected_version,
            requests_round_trip_with_their_events,
            request_updates_store_payment_and_event_atomically,
            concurrent_request_updates_apply_once,
            requests_due_for_expiry_are_pending_and_past_due,
            payment_links_are_found_by_token_hash,
            events_page_newest_first,
            request_lists_match_authorize,
            customers_round_trip_with_their_events,
            customer_emails_are_unique_per_organization_without_regard_to_case,
            customer_lists_follow_the_organization_and_email,
            customer_updates_keep_emails_unique,
            customer_deletion_stores_its_event_once,
            keyed_calls_replay_their_committed_answer,
            keyed_calls_that_never_commit_run_again,
            refused_keyed_calls_replay_their_refusal,
            concurrent_keyed_calls_run_once,
            idempotency_purge_deletes_only_older_records,
            webhook_endpoints_round_trip_per_owner_kind,
            webhook_endpoint_lists_follow_the_owner,
            webhook_endpoint_scopes_round_trip_and_narrow_lists,
            candidate_endpoints_include_every_possible_receiver,
            fanout_claims_lease_events_until_recorded,
            concurrent_fanout_claims_take_each_event_once,
            delivery_claims_lease_due_attempts,
            concurrent_delivery_claims_take_each_attempt_once,
            delivery_claims_leave_each_endpoint_its_limit_in_flight,
            postponed_attempts_fall_due_later_without_an_attempt,
            finished_attempts_are_purged_after_their_retention,
            attempts_are_recorded_with_their_successor,
            direct_events_are_not_fanned_out_again,
            event_feed_matches_can_see_event,
            claims_are_submitted_once_per_nonce_and_live_key,
            claim_approvals_respect_max_agents_and_versions,
            agent_clients_are_read_with_their_approvals_expiry,
            ending_a_claim_revokes_its_client_and_queues_the_ledger,
            ledger_chains_are_per_organization_and_page_newest_first,
            claims_due_for_expiry_are_pending_past_their_ttl_or_approved_past_expiry,
            claim_lists_follow_the_scope_and_status,
            signature_nonces_are_accepted_once_per_key_and_purged,
            operator_lookups_filter_and_page_newest_first,
            event_feed_filters_by_type
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
