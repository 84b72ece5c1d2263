//! `RequestStore`: payment requests and payments with their events, expiry, payment links,
//! and lists that are `authorize` translated to SQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use mandate_domain::events::{Audience, EventType};
use mandate_domain::ids::{DestinationId, PaymentLinkId, RequestId};
use mandate_domain::model::{Client, ClientStatus, Destination};
use mandate_domain::payments::{Direction, PaymentLink, PaymentRequest, RequestStatus};
use mandate_domain::policy::{Action, Decision, Resource, authorize, request_scope};
use mandate_domain::ports::{RequestFilter, Store, StoreError};
use mandate_domain::values::{Amount, PermissionSet, Total};

use mandate_domain::now;

use crate::fixtures::*;

async fn requests_round_trip_with_their_events(store: Arc<dyn Store>) {
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
case!(requests_round_trip_with_their_events);

async fn request_updates_store_payment_and_event_atomically(store: Arc<dyn Store>) {
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
case!(request_updates_store_payment_and_event_atomically);

async fn concurrent_request_updates_apply_once(store: Arc<dyn Store>) {
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
case!(concurrent_request_updates_apply_once);

async fn requests_due_for_expiry_are_pending_and_past_due(store: Arc<dyn Store>) {
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
case!(requests_due_for_expiry_are_pending_and_past_due);

async fn payment_links_are_found_by_token_hash(store: Arc<dyn Store>) {
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
case!(payment_links_are_found_by_token_hash);

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
async fn request_lists_match_authorize(store: Arc<dyn Store>) {
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
case!(request_lists_match_authorize);
