//! `IdempotencyStore`: keyed calls that replay their committed answer, run once, and are
//! purged.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::model::Destination;
use mandate_domain::payments::{Direction, PaymentRequest};
use mandate_domain::ports::{
    IdempotencyStart, IdempotentAnswer, KeyedCall, KeyedStart, KeyedWrite, Store,
};

use mandate_domain::now;

use crate::fixtures::*;

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

async fn keyed_calls_replay_their_committed_answer(store: Arc<dyn Store>) {
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
case!(keyed_calls_replay_their_committed_answer);

async fn keyed_calls_that_never_commit_run_again(store: Arc<dyn Store>) {
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
case!(keyed_calls_that_never_commit_run_again);

async fn refused_keyed_calls_replay_their_refusal(store: Arc<dyn Store>) {
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
case!(refused_keyed_calls_replay_their_refusal);

async fn concurrent_keyed_calls_run_once(store: Arc<dyn Store>) {
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
case!(concurrent_keyed_calls_run_once);

async fn idempotency_purge_deletes_only_older_records(store: Arc<dyn Store>) {
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
case!(idempotency_purge_deletes_only_older_records);
