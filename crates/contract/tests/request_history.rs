//! A request's history on the in-memory reference adapter: its payments and its events as the
//! caller's feed shows them, nobody else's, and a bounded read of a busy feed.

// Assertions are how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mandate_contract::fixtures;
use mandate_contract::memory::MemoryStore;
use mandate_domain::events::EventType;
use mandate_domain::ids::KeyId;
use mandate_domain::keys::KeyHasher;
use mandate_domain::principal::Principal;
use mandate_domain::usecases::{HISTORY_EVENTS_SCANNED, Mandate, NewRequest, ReadError};

fn incoming(amount: &str) -> NewRequest {
    NewRequest {
        direction: "incoming".into(),
        amount: amount.into(),
        currency: "EUR".into(),
        ..NewRequest::default()
    }
}

#[tokio::test]
async fn a_history_holds_the_requests_payments_and_feed_events_only() {
    let memory = Arc::new(MemoryStore::new());
    let mandate = Mandate::new(memory.clone(), KeyHasher::new(&[7; 32]));
    let (organization, destinations) = fixtures::seed_organization(memory.as_ref(), 2).await;
    let owner = |index: usize| Principal::Destination {
        organization_id: organization.id.clone(),
        destination_id: destinations[index].id.clone(),
        key_id: KeyId::generate(),
    };
    let (mine, theirs) = (owner(0), owner(1));
    let now = mandate_domain::now();
    let request = mandate
        .create_request(&mine, incoming("42.50"), now)
        .await
        .unwrap();
    let other = mandate
        .create_request(&mine, incoming("1"), now)
        .await
        .unwrap();
    mandate
        .report_payment(&mine, &request.id, "20", "bank-1", None, now)
        .await
        .unwrap();
    mandate
        .report_payment(&mine, &other.id, "1", "bank-2", None, now)
        .await
        .unwrap();

    let history = mandate
        .request_history(&mine, &request.id, now)
        .await
        .unwrap();
    assert_eq!(history.request.amount_paid.to_string(), "20.00");
    let references: Vec<&str> = history
        .payments
        .iter()
        .map(|payment| payment.reference.as_str())
        .collect();
    assert_eq!(references, ["bank-1"]);
    let types: Vec<EventType> = history
        .events
        .iter()
        .map(|event| event.event_type)
        .collect();
    assert_eq!(
        types,
        [
            EventType::PaymentRequestPartiallyPaid,
            EventType::PaymentRequestCreated
        ]
    );
    assert!(history.events_complete);
    assert!(matches!(
        mandate.request_history(&theirs, &request.id, now).await,
        Err(ReadError::NotFound)
    ));

    // A feed busier than one read: the history says it is incomplete; a new request's is not.
    for _ in 0..HISTORY_EVENTS_SCANNED {
        mandate
            .create_request(&mine, incoming("1"), now)
            .await
            .unwrap();
    }
    let busy = mandate
        .request_history(&mine, &request.id, now)
        .await
        .unwrap();
    assert!(!busy.events_complete);
    assert_eq!(busy.payments.len(), 1);
    let newest = mandate
        .create_request(&mine, incoming("1"), now)
        .await
        .unwrap();
    let fresh = mandate
        .request_history(&mine, &newest.id, now)
        .await
        .unwrap();
    assert!(fresh.events_complete);
    assert_eq!(fresh.events.len(), 1);
}
