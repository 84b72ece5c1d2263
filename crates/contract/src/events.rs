//! `EventStore` and the feed: events newest first, and the feed that is `can_see_event`
//! translated to SQL.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{ClientId, EventId};
use mandate_domain::model::{Client, ClientStatus, Destination, Orchestrator};
use mandate_domain::payments::Direction;
use mandate_domain::ports::{EventFilter, PageRequest, Store};
use mandate_domain::principal::ClientPrincipal;
use mandate_domain::webhooks::{
    Delivery, EventClause, EventScope, Viewer, can_see_event, event_scope,
};

use mandate_domain::now;

use crate::fixtures::*;

async fn events_page_newest_first(store: Arc<dyn Store>) {
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
case!(events_page_newest_first);

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
async fn event_feed_matches_can_see_event(store: Arc<dyn Store>) {
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
case!(event_feed_matches_can_see_event);

/// The feed's `type` filter: only events of the named types, within the reader's scope.
async fn event_feed_filters_by_type(store: Arc<dyn Store>) {
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
case!(event_feed_filters_by_type);
