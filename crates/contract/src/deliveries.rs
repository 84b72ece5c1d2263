//! `WebhookStore`, the queue: fan-out claims, delivery claims, recorded attempts and direct
//! events.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{DeliveryId, EndpointId, EventId};
use mandate_domain::ports::{ClaimedDelivery, Fanout, RecordedAttempt, Store};
use mandate_domain::webhooks::{Delivery, DeliveryStatus, Viewer, WebhookEndpoint, event_scope};

use mandate_domain::now;

use crate::fixtures::*;

async fn fanout_claims_lease_events_until_recorded(store: Arc<dyn Store>) {
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
            .claim_due_deliveries_per_endpoint(
                10,
                NO_SHARE_LIMIT,
                at + lease() - Duration::seconds(1),
                lease()
            )
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
                .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, after, lease())
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
case!(fanout_claims_lease_events_until_recorded);

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

async fn concurrent_fanout_claims_take_each_event_once(store: Arc<dyn Store>) {
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
case!(concurrent_fanout_claims_take_each_event_once);

async fn delivery_claims_lease_due_attempts(store: Arc<dyn Store>) {
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

    let first = store
        .claim_due_deliveries_per_endpoint(2, NO_SHARE_LIMIT, at, lease())
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&first),
        delivery_ids(&[oldest.clone(), older.clone()])
    );
    assert_eq!(first[0].delivery, oldest);
    assert_eq!(first[0].event, event);
    assert_eq!(first[0].endpoint, endpoint);
    assert_eq!(first[1].event, other_event);
    let rest = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
        .await
        .unwrap();
    assert_eq!(claimed_ids(&rest), vec![exactly_now.id.clone()]);
    let during = at + Duration::seconds(59);
    assert!(
        store
            .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, during, lease())
            .await
            .unwrap()
            .is_empty()
    );

    // Nobody recorded anything: when the leases end the attempts are claimed again, with the
    // one that fell due meanwhile; finished attempts never are.
    let after = at + lease();
    let again = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, after, lease())
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&again),
        delivery_ids(&[oldest, older, exactly_now, future])
    );
    assert!(
        store
            .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, after, lease())
            .await
            .unwrap()
            .is_empty()
    );
}
case!(delivery_claims_lease_due_attempts);

async fn concurrent_delivery_claims_take_each_attempt_once(store: Arc<dyn Store>) {
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
        async move {
            store
                .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
                .await
                .unwrap()
        }
    });
    let mut claimed: Vec<DeliveryId> = futures_util::future::join_all(claims)
        .await
        .iter()
        .flat_map(|claimed| claimed_ids(claimed))
        .collect();
    loop {
        let more = store
            .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
            .await
            .unwrap();
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
case!(concurrent_delivery_claims_take_each_attempt_once);

async fn delivery_claims_leave_each_endpoint_its_limit_in_flight(store: Arc<dyn Store>) {
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
case!(delivery_claims_leave_each_endpoint_its_limit_in_flight);

async fn postponed_attempts_fall_due_later_without_an_attempt(store: Arc<dyn Store>) {
    let (_, destinations) = seed_organization(&*store, 1).await;
    let endpoint = seed_endpoint(&*store, destination_endpoint(&destinations[0])).await;
    let event = seed_request_event(&*store, &destinations[0]).await;
    let at = now();
    let first = Delivery::first(&event.id, &endpoint.id, at);
    store.insert_delivery(&first).await.unwrap();
    let claimed = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
        .await
        .unwrap();
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
        .claim_due_deliveries_per_endpoint(
            10,
            NO_SHARE_LIMIT,
            until - Duration::seconds(1),
            lease(),
        )
        .await
        .unwrap();
    assert!(before.is_empty());
    let due = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, until, lease())
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
case!(postponed_attempts_fall_due_later_without_an_attempt);

async fn finished_attempts_are_purged_after_their_retention(store: Arc<dyn Store>) {
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
case!(finished_attempts_are_purged_after_their_retention);

async fn attempts_are_recorded_with_their_successor(store: Arc<dyn Store>) {
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
        claimed_ids(
            &store
                .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
                .await
                .unwrap()
        ),
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
            .claim_due_deliveries_per_endpoint(
                10,
                NO_SHARE_LIMIT,
                retry_at - Duration::seconds(1),
                lease()
            )
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, retry_at, lease())
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
            .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at + Duration::days(1), lease())
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
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, manual_at, lease())
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
case!(attempts_are_recorded_with_their_successor);

async fn direct_events_are_not_fanned_out_again(store: Arc<dyn Store>) {
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
    let claimed = store
        .claim_due_deliveries_per_endpoint(10, NO_SHARE_LIMIT, at, lease())
        .await
        .unwrap();
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
case!(direct_events_are_not_fanned_out_again);
