//! `CustomerStore`: customers with their events, emails unique per organization, lists and
//! deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;

use mandate_domain::events::EventType;
use mandate_domain::ids::{CustomerId, OrganizationId};
use mandate_domain::ports::{PageRequest, Store, StoreError};

use mandate_domain::now;

use crate::fixtures::*;

async fn customers_round_trip_with_their_events(store: Arc<dyn Store>) {
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
case!(customers_round_trip_with_their_events);

async fn customer_emails_are_unique_per_organization_without_regard_to_case(store: Arc<dyn Store>) {
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
case!(customer_emails_are_unique_per_organization_without_regard_to_case);

async fn customer_lists_follow_the_organization_and_email(store: Arc<dyn Store>) {
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
case!(customer_lists_follow_the_organization_and_email);

async fn customer_updates_keep_emails_unique(store: Arc<dyn Store>) {
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
case!(customer_updates_keep_emails_unique);

async fn customer_deletion_stores_its_event_once(store: Arc<dyn Store>) {
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
case!(customer_deletion_stores_its_event_once);
