//! `ClaimStore` and `Ledger`: claims once per nonce, approvals, agent clients, endings, the
//! ledger chain, expiry, lists and signature nonces.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::claims::{ChainVerifier, Claim, ClaimStatus, LedgerAction, LedgerStatus};
use mandate_domain::events::EventType;
use mandate_domain::ids::{ClaimId, ClientId};
use mandate_domain::policy::ClientScope;
use mandate_domain::ports::{ClaimApproval, ClaimSubmission, Page, PageRequest, Store};
use mandate_domain::values::PermissionSet;

use mandate_domain::now;

use crate::fixtures::*;

async fn claims_are_submitted_once_per_nonce_and_live_key(store: Arc<dyn Store>) {
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
case!(claims_are_submitted_once_per_nonce_and_live_key);

async fn claim_approvals_respect_max_agents_and_versions(store: Arc<dyn Store>) {
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
case!(claim_approvals_respect_max_agents_and_versions);

async fn agent_clients_are_read_with_their_approvals_expiry(store: Arc<dyn Store>) {
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
case!(agent_clients_are_read_with_their_approvals_expiry);

async fn ending_a_claim_revokes_its_client_and_queues_the_ledger(store: Arc<dyn Store>) {
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
case!(ending_a_claim_revokes_its_client_and_queues_the_ledger);

async fn ledger_chains_are_per_organization_and_page_newest_first(store: Arc<dyn Store>) {
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
    assert_eq!(other[0].prev_hash, mandate_domain::claims::GENESIS_HASH);
}
case!(ledger_chains_are_per_organization_and_page_newest_first);

async fn claims_due_for_expiry_are_pending_past_their_ttl_or_approved_past_expiry(
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
case!(claims_due_for_expiry_are_pending_past_their_ttl_or_approved_past_expiry);

async fn claim_lists_follow_the_scope_and_status(store: Arc<dyn Store>) {
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
case!(claim_lists_follow_the_scope_and_status);

async fn signature_nonces_are_accepted_once_per_key_and_purged(store: Arc<dyn Store>) {
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
case!(signature_nonces_are_accepted_once_per_key_and_purged);
