//! The Authenticator on the in-memory reference adapter: reading a credential's key, the
//! client ID it names and the payment request its route reads in one round trip decides
//! exactly as reading them one after the other.

// Assertions are how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mandate_contract::fixtures;
use mandate_contract::memory::MemoryStore;
use mandate_domain::auth::{AuthError, Authenticator, Resolved, TokenSubject};
use mandate_domain::events::EventType;
use mandate_domain::ids::{ClientId, KeyId, OrchestratorId, RequestId};
use mandate_domain::keys::KeyHasher;
use mandate_domain::model::{ApiKey, Client, ClientStatus, KeyOwner};
use mandate_domain::payments::{Direction, PaymentRequest};
use mandate_domain::ports::{ClientStore, KeyStore, RequestStore};
use mandate_domain::principal::{ClientPrincipal, Principal};
use mandate_domain::usecases::Mandate;
use mandate_domain::values::Permission;
use mandate_domain::values::PermissionSet;

/// A stored key whose plain text is `plain`.
async fn stored_key(
    store: &MemoryStore,
    hasher: &KeyHasher,
    plain: &str,
    owner: KeyOwner,
    change: impl FnOnce(&mut ApiKey),
) {
    let mut key = ApiKey {
        hash: hasher.hash(plain),
        ..fixtures::key(owner)
    };
    change(&mut key);
    assert!(
        store
            .insert_key(&key, None, mandate_domain::now())
            .await
            .unwrap()
    );
}

async fn stored_client(store: &MemoryStore, client: Client) -> String {
    let created = fixtures::client_event(EventType::ClientIdCreated, &client);
    store.insert_client(&client, &created).await.unwrap();
    client.id.to_string()
}

/// What the one-query path must decide, read in two steps: the credential alone, then the
/// client ID that `header` names, judged by the rules as the specification states them.
async fn credential_then_client(
    authenticator: &Authenticator,
    store: &MemoryStore,
    token: &str,
    header: &str,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let not_yours =
        || AuthError::Forbidden("X-Client-Id does not name a client ID of this orchestrator");
    let principal = authenticator
        .bearer(token, None, None, now)
        .await?
        .principal;
    let Principal::Orchestrator {
        orchestrator_id, ..
    } = principal
    else {
        return Err(AuthError::Forbidden(
            "only an orchestrator key may send X-Client-Id",
        ));
    };
    let id = ClientId::parse(header).map_err(|_| not_yours())?;
    let client = store.client(&id).await?.ok_or_else(not_yours)?;
    if client.orchestrator_id != orchestrator_id {
        return Err(not_yours());
    }
    if client.status != ClientStatus::Active {
        return Err(AuthError::Forbidden("this client ID is revoked"));
    }
    if client.agent_key.is_some() {
        return Err(AuthError::Forbidden(
            "this client ID belongs to an agent: only the agent's signature acts as it",
        ));
    }
    Ok(Principal::Client(ClientPrincipal::of(client)))
}

/// Reading the key and the client ID together changes the round trips and nothing else:
/// every credential with every `X-Client-Id` meets the outcome of resolving the credential
/// first and reading the client ID after.
#[tokio::test]
async fn reading_key_and_client_together_decides_like_two_reads() {
    let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
    let memory = Arc::new(MemoryStore::new());
    let authenticator =
        Authenticator::new(memory.clone(), hasher.clone(), Some("admin-secret".into()));
    let store = memory.as_ref();
    let now = mandate_domain::now();

    let (organization, destinations) = fixtures::seed_organization(store, 1).await;
    let destination = &destinations[0];
    let mine = fixtures::seed_orchestrator(store).await;
    let theirs = fixtures::seed_orchestrator(store).await;
    let orchestrator = || KeyOwner::Orchestrator {
        orchestrator_id: mine.id.clone(),
    };
    let platform = KeyOwner::Platform {
        organization_id: organization.id.clone(),
    };
    let destination_owner = KeyOwner::Destination {
        organization_id: organization.id.clone(),
        destination_id: destination.id.clone(),
    };
    stored_key(store, &hasher, "mnd_plat_p", platform, |_| {}).await;
    stored_key(store, &hasher, "mnd_dest_d", destination_owner, |_| {}).await;
    stored_key(store, &hasher, "mnd_orch_mine", orchestrator(), |_| {}).await;
    stored_key(store, &hasher, "mnd_orch_used", orchestrator(), |key| {
        key.last_used_at = Some(now);
    })
    .await;
    stored_key(store, &hasher, "mnd_orch_revoked", orchestrator(), |key| {
        key.revoked_at = Some(now - Duration::hours(1));
    })
    .await;
    stored_key(store, &hasher, "mnd_orch_expired", orchestrator(), |key| {
        key.expires_at = Some(now - Duration::hours(1));
    })
    .await;

    let active = fixtures::client(destination, &mine.id, PermissionSet::default());
    let active_id = stored_client(store, active.clone()).await;
    let headers = [
        active_id.clone(),
        stored_client(
            store,
            Client {
                status: ClientStatus::Revoked,
                ..fixtures::client(destination, &mine.id, PermissionSet::default())
            },
        )
        .await,
        stored_client(
            store,
            Client {
                agent_key: Some(fixtures::agent_key()),
                ..fixtures::client(destination, &mine.id, PermissionSet::default())
            },
        )
        .await,
        stored_client(
            store,
            fixtures::client(destination, &theirs.id, PermissionSet::default()),
        )
        .await,
        ClientId::generate().to_string(),
        "not-a-client-id".to_owned(),
    ];
    let tokens = [
        "admin-secret",
        "not-a-key",
        "mnd_orch_unknown",
        "mnd_plat_p",
        "mnd_dest_d",
        "mnd_orch_mine",
        "mnd_orch_used",
        "mnd_orch_revoked",
        "mnd_orch_expired",
    ];

    for token in tokens {
        for header in &headers {
            let together = authenticator
                .bearer(token, Some(header), None, now)
                .await
                .map(|resolved| resolved.principal);
            let apart = credential_then_client(&authenticator, store, token, header, now).await;
            assert_eq!(
                format!("{together:?}"),
                format!("{apart:?}"),
                "token {token}, X-Client-Id {header}"
            );
        }
    }
    let acting = authenticator
        .bearer("mnd_orch_mine", Some(&active_id), None, now)
        .await
        .unwrap()
        .principal;
    assert_eq!(acting, Principal::Client(ClientPrincipal::of(active)));
}

/// What an authorized read answers: the principal and the request, or why not.
type ReadOutcome = Result<(Principal, PaymentRequest), String>;

fn why(error: impl std::fmt::Debug) -> String {
    format!("{error:?}")
}

/// The access token's rules as the specification states them, read in two steps — the key by
/// its owner's list, then the client ID — for the oracle.
async fn token_then_client(
    store: &MemoryStore,
    subject: &TokenSubject<'_>,
    header: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let revoked_token = || AuthError::Unauthenticated("revoked_token");
    let revoked_key = AuthError::Unauthenticated("revoked_key");
    let client_id = ClientId::parse(subject.client_id).map_err(|_| revoked_token())?;
    let orchestrator_id =
        OrchestratorId::parse(subject.orchestrator_id).map_err(|_| revoked_token())?;
    let owner = KeyOwner::Orchestrator { orchestrator_id };
    let key = store
        .keys_of(&owner)
        .await?
        .into_iter()
        .find(|key| key.id.as_str() == subject.key_id)
        .filter(|key| key.revoked_at.is_none())
        .ok_or(revoked_key)?;
    if !key.is_active(now) {
        return Err(AuthError::Unauthenticated("expired_key"));
    }
    let client = store
        .client(&client_id)
        .await?
        .filter(|client| client.orchestrator_id.as_str() == subject.orchestrator_id)
        .filter(|client| client.status == ClientStatus::Active)
        .ok_or_else(revoked_token)?;
    if header.is_some() {
        return Err(AuthError::Forbidden(
            "only an orchestrator key may send X-Client-Id",
        ));
    }
    Ok(Principal::Client(
        ClientPrincipal::of(client).narrowed_to(subject.scope),
    ))
}

/// `X-Destination-Id`, as the pipeline applies it after resolving.
async fn for_destination(
    authenticator: &Authenticator,
    principal: Result<Principal, AuthError>,
    destination_header: Option<&str>,
) -> Result<Principal, AuthError> {
    match destination_header {
        Some(header) => authenticator.act_for_destination(principal?, header).await,
        None => principal,
    }
}

/// What both paths read with.
struct Reading<'a> {
    authenticator: &'a Authenticator,
    mandate: &'a Mandate,
    now: DateTime<Utc>,
}

/// The two-step path's end: `X-Destination-Id` on the resolved principal, then the request
/// read on its own, as the handler read it before.
async fn read_after(
    ctx: &Reading<'_>,
    principal: Result<Principal, AuthError>,
    destination_header: Option<&str>,
    id: &RequestId,
) -> ReadOutcome {
    let principal = for_destination(ctx.authenticator, principal, destination_header)
        .await
        .map_err(why)?;
    let request = ctx
        .mandate
        .request(&principal, id, ctx.now)
        .await
        .map_err(why)?;
    Ok((principal, request))
}

/// The one-statement path's end: `X-Destination-Id`, then the request read with the
/// credential, authorized.
async fn read_with(
    ctx: &Reading<'_>,
    resolved: Result<Resolved, AuthError>,
    destination_header: Option<&str>,
) -> ReadOutcome {
    let resolved = resolved.map_err(why)?;
    let principal = for_destination(
        ctx.authenticator,
        Ok(resolved.principal),
        destination_header,
    )
    .await
    .map_err(why)?;
    let request = ctx
        .mandate
        .request_read(&principal, resolved.request, ctx.now)
        .await
        .map_err(why)?;
    Ok((principal, request))
}

/// A read of a payment request by id, as the pipeline now does it — the credential, the
/// client ID and the request in one statement, then `authorize` on what came back — refuses
/// and admits exactly as the two-step path did (the credential, then the request), over every
/// credential kind, `X-Client-Id` and `X-Destination-Id`, for a request the caller owns, one
/// it may not read, another tenant's, an expired one and one that does not exist.
#[tokio::test]
async fn reading_the_request_with_the_credential_decides_like_reading_it_after() {
    let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
    let memory = Arc::new(MemoryStore::new());
    let authenticator =
        Authenticator::new(memory.clone(), hasher.clone(), Some("admin-secret".into()));
    let mandate = Mandate::new(memory.clone(), hasher.clone());
    let store = memory.as_ref();
    let now = mandate_domain::now();

    let (organization, destinations) = fixtures::seed_organization(store, 2).await;
    let (_, foreign_destinations) = fixtures::seed_organization(store, 1).await;
    let (shop, other_shop) = (&destinations[0], &destinations[1]);
    let mine = fixtures::seed_orchestrator(store).await;
    let theirs = fixtures::seed_orchestrator(store).await;
    let orchestrator = |id: &OrchestratorId| KeyOwner::Orchestrator {
        orchestrator_id: id.clone(),
    };
    stored_key(
        store,
        &hasher,
        "mnd_plat_p",
        KeyOwner::Platform {
            organization_id: organization.id.clone(),
        },
        |_| {},
    )
    .await;
    stored_key(
        store,
        &hasher,
        "mnd_dest_d",
        KeyOwner::Destination {
            organization_id: organization.id.clone(),
            destination_id: shop.id.clone(),
        },
        |_| {},
    )
    .await;
    let mut key_ids = Vec::new();
    for (plain, change) in [
        ("mnd_orch_mine", None),
        ("mnd_orch_revoked", Some(true)),
        ("mnd_orch_expired", Some(false)),
    ] {
        let mut key = ApiKey {
            hash: hasher.hash(plain),
            ..fixtures::key(orchestrator(&mine.id))
        };
        match change {
            Some(true) => key.revoked_at = Some(now - Duration::hours(1)),
            Some(false) => key.expires_at = Some(now - Duration::hours(1)),
            None => {}
        }
        assert!(store.insert_key(&key, None, now).await.unwrap());
        key_ids.push(key.id.to_string());
    }
    let theirs_key = fixtures::seed_orchestrator_key(store, &theirs).await;
    key_ids.push(theirs_key.id.to_string());
    key_ids.push(KeyId::generate().to_string());

    let reads = fixtures::permissions(&[Permission::ReadOutgoing]);
    let active = fixtures::client(shop, &mine.id, reads.clone());
    let active_id = stored_client(store, active.clone()).await;
    let revoked_id = stored_client(
        store,
        Client {
            status: ClientStatus::Revoked,
            ..fixtures::client(shop, &mine.id, reads.clone())
        },
    )
    .await;
    let agent_id = stored_client(
        store,
        Client {
            agent_key: Some(fixtures::agent_key()),
            ..fixtures::client(shop, &mine.id, reads.clone())
        },
    )
    .await;
    let foreign_id = stored_client(store, fixtures::client(shop, &theirs.id, reads.clone())).await;
    let client_headers = [
        None,
        Some(active_id.clone()),
        Some(revoked_id.clone()),
        Some(agent_id.clone()),
        Some(foreign_id.clone()),
        Some(ClientId::generate().to_string()),
        Some("not-a-client-id".to_owned()),
    ];
    let destination_headers = [
        None,
        Some(shop.id.to_string()),
        Some(other_shop.id.to_string()),
        Some(foreign_destinations[0].id.to_string()),
        Some("not-a-destination".to_owned()),
    ];

    let mut request_ids = vec![RequestId::generate()];
    let expiring = PaymentRequest {
        expires_at: Some(now - Duration::minutes(1)),
        ..fixtures::payment_request(shop, Direction::Outgoing, Some(&active))
    };
    for request in [
        fixtures::payment_request(shop, Direction::Outgoing, Some(&active)),
        fixtures::payment_request(shop, Direction::Incoming, Some(&active)),
        fixtures::payment_request(shop, Direction::Outgoing, None),
        fixtures::payment_request(other_shop, Direction::Outgoing, None),
        fixtures::payment_request(&foreign_destinations[0], Direction::Outgoing, None),
        expiring,
    ] {
        let created = fixtures::request_event(EventType::PaymentRequestCreated, &request);
        store.insert_request(&request, &created).await.unwrap();
        request_ids.push(request.id);
    }

    let tokens = [
        "admin-secret",
        "not-a-key",
        "mnd_orch_unknown",
        "mnd_plat_p",
        "mnd_dest_d",
        "mnd_orch_mine",
        "mnd_orch_revoked",
        "mnd_orch_expired",
    ];
    let subjects: Vec<(String, String)> = key_ids
        .iter()
        .flat_map(|key_id| {
            [&active_id, &revoked_id, &agent_id, &foreign_id]
                .into_iter()
                .map(ToString::to_string)
                .chain([ClientId::generate().to_string()])
                .map(move |client_id| (key_id.clone(), client_id))
        })
        .collect();
    let scope = fixtures::permissions(&[Permission::ReadOutgoing, Permission::ReadIncoming]);
    let ctx = Reading {
        authenticator: &authenticator,
        mandate: &mandate,
        now,
    };
    let (mut admitted, mut refused) = (0, 0);
    for id in &request_ids {
        for destination_header in &destination_headers {
            let destination_header = destination_header.as_deref();
            for client_header in &client_headers {
                let client_header = client_header.as_deref();
                let mut judge = |together: ReadOutcome, apart: ReadOutcome, credential: &str| {
                    assert_eq!(
                        together, apart,
                        "{credential}, X-Client-Id {client_header:?}, X-Destination-Id \
                         {destination_header:?}, request {id}"
                    );
                    if together.is_ok() {
                        admitted += 1;
                    } else {
                        refused += 1;
                    }
                };
                for token in tokens {
                    let apart = match client_header {
                        Some(header) => {
                            credential_then_client(&authenticator, store, token, header, now).await
                        }
                        None => authenticator
                            .bearer(token, None, None, now)
                            .await
                            .map(|resolved| resolved.principal),
                    };
                    let apart = read_after(&ctx, apart, destination_header, id).await;
                    let together = authenticator
                        .bearer(token, client_header, Some(id), now)
                        .await;
                    let together = read_with(&ctx, together, destination_header).await;
                    judge(together, apart, token);
                }
                if client_header.is_some_and(|header| header != active_id) {
                    // A token sends X-Client-Id with its own or none: one foreign header is
                    // enough to see it refused alike.
                    continue;
                }
                for (key_id, client_id) in &subjects {
                    let subject = TokenSubject {
                        client_id,
                        orchestrator_id: mine.id.as_str(),
                        key_id,
                        scope: &scope,
                    };
                    let apart = token_then_client(store, &subject, client_header, now).await;
                    let apart = read_after(&ctx, apart, destination_header, id).await;
                    let together = authenticator
                        .token_client(&subject, client_header, Some(id), now)
                        .await;
                    let together = read_with(&ctx, together, destination_header).await;
                    judge(
                        together,
                        apart,
                        &format!("token of key {key_id} for {client_id}"),
                    );
                }
            }
        }
    }
    // Both kinds of answer were exercised, not only refusals.
    assert!(
        admitted > 0 && refused > admitted,
        "{admitted} admitted, {refused} refused"
    );
}
