//! Agents end to end: an orchestrator submits a claim signed by the agent's key (RFC 9421,
//! signed here by an independent implementation), the destination's owner approves it, the
//! agent calls the API with its signature alone, the owner revokes it — and the ledger records
//! each approval and revocation in a chain that any edit breaks. Plus every refusal.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mandate_signatures::AgentSigner;
use serde_json::{Value, json};
use support::agent_signing::{AgentRequest, python_sign, send_signed};
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Reply, Server, TempDir, tenant};

/// An agent: an Ed25519 key, signing through the Python library or the server's own signer.
struct Agent {
    seed: [u8; 32],
    signer: AgentSigner,
}

impl Agent {
    fn new() -> Self {
        let seed: [u8; 32] = rand::random();
        Self {
            seed,
            signer: AgentSigner::from_seed(seed),
        }
    }

    fn public_key(&self) -> String {
        self.signer.key_id().to_owned()
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fresh_nonce() -> String {
    format!("nonce-{}", support::random_hex(12))
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// How a claim submission is signed.
#[derive(Clone, Copy)]
struct Signing<'a> {
    /// The agent whose key signs (not necessarily the body's `public_key`).
    agent: &'a Agent,
    created: i64,
}

/// `POST /v1/claims` with the orchestrator's key, signed by the Python library.
async fn submit(api: &Api, orchestrator_key: &str, signing: Signing<'_>, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    let url = format!("{}/v1/claims", api.base());
    let request = AgentRequest {
        method: "POST",
        url: &url,
        headers: &[JSON],
        body: &bytes,
    };
    let signed = python_sign(
        &request,
        &signing.agent.seed,
        &request.required_components(),
        signing.created,
        &fresh_nonce(),
    );
    send_signed(api, &request, &signed.pairs(), Some(orchestrator_key)).await
}

/// An agent's own API call with `X-Client-Id`, signed by the Python library (`python`) or the
/// server's signer; no Bearer.
async fn agent_call(
    api: &Api,
    agent: &Agent,
    client_id: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    python: bool,
) -> Reply {
    let bytes = body
        .map(|body| serde_json::to_vec(body).unwrap())
        .unwrap_or_default();
    let url = format!("{}{path}", api.base());
    let headers = [("x-client-id", client_id), JSON];
    let request = AgentRequest {
        method,
        url: &url,
        headers: &headers,
        body: &bytes,
    };
    if python {
        let signed = python_sign(
            &request,
            &agent.seed,
            &request.required_components(),
            unix_now(),
            &fresh_nonce(),
        );
        send_signed(api, &request, &signed.pairs(), None).await
    } else {
        let signed = agent
            .signer
            .sign(
                method,
                &url,
                &[("x-client-id", client_id)],
                &bytes,
                unix_now(),
                &fresh_nonce(),
            )
            .unwrap();
        send_signed(api, &request, &signed.pairs(), None).await
    }
}

async fn register_orchestrator(api: &Api) -> (String, String) {
    let slug = format!("agents-{}", support::random_hex(4));
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Agent runner"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    (slug, created.body["api_key"].as_str().unwrap().to_owned())
}

async fn destination_slug(api: &Api, key: &str, destination_id: &str) -> String {
    let destination = api
        .get(&format!("/v1/destinations/{destination_id}"), key)
        .await;
    destination.body["slug"].as_str().unwrap().to_owned()
}

fn claim_body(namespace: &str, service: &str, agent: &Agent, agent_id: &str) -> Value {
    json!({
        "namespace": namespace,
        "public_key": agent.public_key(),
        "service": service,
        "ip_address": "203.0.113.7",
        "nonce": fresh_nonce(),
        "agent_id": agent_id,
        "agent_name": "Invoice agent",
        "subject": "user-42",
    })
}

/// Polls `check` until it returns `Some`, for at most 20 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event_types(feed: &Reply) -> Vec<String> {
    feed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_is_approved_acts_with_its_signature_and_is_revoked_into_the_ledger() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = tenant.destination_key.as_str();
    let (service, orchestrator_key) = register_orchestrator(&api).await;
    let namespace = destination_slug(&api, owner, &tenant.destination_id).await;
    let agent = Agent::new();
    let signing = Signing {
        agent: &agent,
        created: unix_now(),
    };

    // Submitted: 201 pending; the same key again is the same claim (200).
    let body = claim_body(&namespace, &service, &agent, "invoice-bot");
    let submitted = submit(&api, &orchestrator_key, signing, &body).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    assert_eq!(submitted.body["status"], "pending");
    assert_eq!(submitted.body["service"], service.as_str());
    let claim_id = submitted.body["id"].as_str().unwrap().to_owned();
    let again = submit(
        &api,
        &orchestrator_key,
        signing,
        &claim_body(&namespace, &service, &agent, "invoice-bot"),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], claim_id.as_str());

    // Both sides see it; nobody else does.
    let read = api.get(&format!("/v1/claims/{claim_id}"), owner).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["public_key"], agent.public_key().as_str());
    assert_eq!(read.body["ip_address"], "203.0.113.7");
    let listed = api
        .get("/v1/claims?status=pending", &orchestrator_key)
        .await;
    assert_eq!(support::ids(&listed.body), vec![claim_id.clone()]);
    let (_, stranger) = register_orchestrator(&api).await;
    let hidden = api.get(&format!("/v1/claims/{claim_id}"), &stranger).await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    let refused = api
        .post(
            &format!("/v1/claims/{claim_id}/approve"),
            &orchestrator_key,
            json!({}),
        )
        .await;
    assert_eq!(
        refused.status, 403,
        "the service may not approve its own agent"
    );

    // Approved with fewer permissions than asked: the agent's client ID.
    let approved = api
        .post(
            &format!("/v1/claims/{claim_id}/approve"),
            owner,
            json!({"permissions": ["create:incoming"]}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["approved_agents"], 1);
    assert_eq!(approved.body["max_agents"], 10);
    assert_eq!(approved.body["ledger_status"], "queued");
    let client_id = approved.body["client_id"].as_str().unwrap().to_owned();
    let client = api.get(&format!("/v1/client-ids/{client_id}"), owner).await;
    assert_eq!(client.body["agent_public_key"], agent.public_key().as_str());
    assert_eq!(client.body["permissions"], json!(["create:incoming"]));

    // The agent acts with its signature alone, signed by either implementation.
    let incoming = json!({"direction": "incoming", "amount": "12.00", "currency": "USD"});
    let created = agent_call(
        &api,
        &agent,
        &client_id,
        "POST",
        "/v1/requests",
        Some(&incoming),
        true,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["client_id"], client_id.as_str());
    let request_id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/requests/{request_id}");
    let fetched = agent_call(&api, &agent, &client_id, "GET", &path, None, false).await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    let outgoing = json!({"direction": "outgoing", "amount": "1", "currency": "USD"});
    let narrowed = agent_call(
        &api,
        &agent,
        &client_id,
        "POST",
        "/v1/requests",
        Some(&outgoing),
        false,
    )
    .await;
    assert_eq!(
        narrowed.status, 403,
        "outgoing was not granted: {}",
        narrowed.body
    );

    // The exact same signed request again is a replay.
    let url = api.base().to_owned() + &path;
    let headers = [("x-client-id", client_id.as_str()), JSON];
    let request = AgentRequest {
        method: "GET",
        url: &url,
        headers: &headers,
        body: b"",
    };
    let signed = python_sign(
        &request,
        &agent.seed,
        &request.required_components(),
        unix_now(),
        &fresh_nonce(),
    );
    let first = send_signed(&api, &request, &signed.pairs(), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replayed = send_signed(&api, &request, &signed.pairs(), None).await;
    assert_eq!(
        (replayed.status, replayed.code()),
        (409, "CONFLICT"),
        "{}",
        replayed.body
    );

    // The service cannot act as its agent, with its key or with a token.
    let as_service = api
        .send(
            "GET",
            &path,
            Some(&orchestrator_key),
            None,
            &[("x-client-id", &client_id)],
        )
        .await;
    assert_eq!(as_service.status, 403, "{}", as_service.body);
    let token = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", orchestrator_key.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 401);

    // The approval reaches the ledger.
    eventually("the approval is recorded", async || {
        let claim = api.get(&format!("/v1/claims/{claim_id}"), owner).await;
        (claim.body["ledger_status"] == "recorded").then_some(())
    })
    .await;
    let ledger = api.get("/v1/ledger", &tenant.platform_key).await;
    assert_eq!(ledger.status, 200, "{}", ledger.body);
    assert_eq!(ledger.body["data"][0]["action"], "approved");
    assert_eq!(ledger.body["data"][0]["claim_id"], claim_id.as_str());

    // Revoked: the agent is out on its very next call, and the revocation is chained too.
    let revoked = api
        .post(&format!("/v1/claims/{claim_id}/revoke"), owner, json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    assert_eq!(revoked.body["ledger_status"], "queued");
    let after = agent_call(&api, &agent, &client_id, "GET", &path, None, true).await;
    assert_eq!(
        (after.status, after.code()),
        (401, "UNAUTHENTICATED"),
        "{}",
        after.body
    );
    let twice = api
        .post(&format!("/v1/claims/{claim_id}/revoke"), owner, json!({}))
        .await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    let verified = eventually("the revocation is recorded", async || {
        let verified = api.get("/v1/ledger/verify", owner).await;
        (verified.body["entries"] == 2).then_some(verified)
    })
    .await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    let head = verified.body["head"].as_str().unwrap().to_owned();
    let latest = api.get("/v1/ledger?limit=1", &tenant.platform_key).await;
    assert_eq!(latest.body["data"][0]["hash"], head.as_str());
    assert_eq!(latest.body["next_cursor"], "2");

    // Both parties were told, in their feeds.
    let owner_feed = api.get("/v1/events?limit=100", owner).await;
    let owner_types = event_types(&owner_feed);
    for expected in [
        "claim.submitted",
        "claim.approved",
        "claim.revoked",
        "client_id.created",
        "client_id.revoked",
    ] {
        assert!(
            owner_types.iter().any(|found| found == expected),
            "{expected} in {owner_types:?}"
        );
    }
    let service_feed = api.get("/v1/events?limit=100", &orchestrator_key).await;
    let service_types = event_types(&service_feed);
    assert!(
        service_types.iter().any(|found| found == "claim.revoked"),
        "{service_types:?}"
    );
    let stranger_feed = api.get("/v1/events?limit=100", &stranger).await;
    assert!(event_types(&stranger_feed).is_empty());

    // One edited row breaks the chain.
    let edited = database
        .client()
        .await
        .execute(
            "UPDATE ledger_entries SET public_key = $1 WHERE seq = 1",
            &[&Agent::new().public_key()],
        )
        .await
        .unwrap();
    assert_eq!(edited, 1);
    let broken = api.get("/v1/ledger/verify", &tenant.platform_key).await;
    assert_eq!(broken.body["valid"], false, "{}", broken.body);
    assert_eq!(broken.body["entries"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_claim_is_refused_and_changes_nothing() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = tenant.destination_key.as_str();
    let (service, key) = register_orchestrator(&api).await;
    let (other_service, _) = register_orchestrator(&api).await;
    let namespace = destination_slug(&api, owner, &tenant.destination_id).await;
    let agent = Agent::new();
    let now = unix_now();
    let signing = Signing {
        agent: &agent,
        created: now,
    };
    let body = claim_body(&namespace, &service, &agent, "bot-1");
    let bytes = serde_json::to_vec(&body).unwrap();
    let url = format!("{}/v1/claims", api.base());
    let request = AgentRequest {
        method: "POST",
        url: &url,
        headers: &[JSON],
        body: &bytes,
    };
    let signed = python_sign(
        &request,
        &agent.seed,
        &request.required_components(),
        now,
        &fresh_nonce(),
    );
    let expect_signature_invalid = |reply: Reply, what: &str| {
        assert_eq!(
            (reply.status, reply.code()),
            (401, "SIGNATURE_INVALID"),
            "{what}: {}",
            reply.body
        );
    };

    // An altered body: the digest no longer matches.
    let mut altered = body.clone();
    altered["agent_name"] = json!("Evil agent");
    let altered_bytes = serde_json::to_vec(&altered).unwrap();
    let tampered = AgentRequest {
        body: &altered_bytes,
        ..request
    };
    expect_signature_invalid(
        send_signed(&api, &tampered, &signed.pairs(), Some(&key)).await,
        "altered body",
    );
    // An altered digest that matches the altered body: the signature no longer matches.
    let redigested: Vec<(String, String)> = signed
        .headers
        .iter()
        .map(|(name, value)| {
            if name.eq_ignore_ascii_case("content-digest") {
                (
                    name.clone(),
                    mandate_signatures::content_digest(&altered_bytes),
                )
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect();
    let redigested: Vec<(&str, &str)> = redigested
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    expect_signature_invalid(
        send_signed(&api, &tampered, &redigested, Some(&key)).await,
        "altered digest",
    );
    // Signed too long ago, or too far ahead.
    // (Margins past the 300 s / 60 s limits absorb the seconds this test has run; the exact
    // boundaries are the verifier's unit tests.)
    for created in [unix_now() - 330, unix_now() + 90] {
        let stale = Signing {
            agent: &agent,
            created,
        };
        expect_signature_invalid(
            submit(
                &api,
                &key,
                stale,
                &claim_body(&namespace, &service, &agent, "bot-1"),
            )
            .await,
            "created out of window",
        );
    }
    // Signed by another key than the body's public_key.
    let impostor = Agent::new();
    let wrong_key = Signing {
        agent: &impostor,
        created: now,
    };
    expect_signature_invalid(submit(&api, &key, wrong_key, &body).await, "wrong key");
    // No signature at all.
    let unsigned = api.post("/v1/claims", &key, body.clone()).await;
    expect_signature_invalid(unsigned, "unsigned");

    // Unknown namespace, another service's slug.
    let unknown = submit(
        &api,
        &key,
        signing,
        &claim_body("no-such-shop", &service, &agent, "bot-1"),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "NOT_FOUND"),
        "{}",
        unknown.body
    );
    let mismatch = submit(
        &api,
        &key,
        signing,
        &claim_body(&namespace, &other_service, &agent, "bot-1"),
    )
    .await;
    assert_eq!(
        (mismatch.status, mismatch.code()),
        (403, "FORBIDDEN"),
        "{}",
        mismatch.body
    );
    let listed = api.get("/v1/claims", owner).await;
    assert_eq!(
        support::ids(&listed.body),
        Vec::<String>::new(),
        "refusals stored nothing"
    );

    // The good request passes once; the same signature again is a replay.
    let accepted = send_signed(&api, &request, &signed.pairs(), Some(&key)).await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let replayed = send_signed(&api, &request, &signed.pairs(), Some(&key)).await;
    assert_eq!(
        (replayed.status, replayed.code()),
        (409, "CONFLICT"),
        "{}",
        replayed.body
    );
    // The body nonce is spent too, even under a fresh signature.
    let reused = submit(&api, &key, signing, &body).await;
    assert_eq!(
        (reused.status, reused.code()),
        (409, "CONFLICT"),
        "{}",
        reused.body
    );
    // The same agent id with another key conflicts.
    let other_agent = Agent::new();
    let conflicting = submit(
        &api,
        &key,
        Signing {
            agent: &other_agent,
            created: now,
        },
        &claim_body(&namespace, &service, &other_agent, "bot-1"),
    )
    .await;
    assert_eq!(
        (conflicting.status, conflicting.code()),
        (409, "CONFLICT"),
        "{}",
        conflicting.body
    );

    // One agent at most: the second approval is refused, and a rejection is final.
    let limited = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(owner),
            Some(json!({"max_agents": 1})),
            &[],
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    let second = submit(
        &api,
        &key,
        Signing {
            agent: &other_agent,
            created: now,
        },
        &claim_body(&namespace, &service, &other_agent, "bot-2"),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let first_id = accepted.body["id"].as_str().unwrap();
    let second_id = second.body["id"].as_str().unwrap();
    let approved = api
        .post(&format!("/v1/claims/{first_id}/approve"), owner, json!({}))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let full = api
        .post(&format!("/v1/claims/{second_id}/approve"), owner, json!({}))
        .await;
    assert_eq!(
        (full.status, full.code()),
        (409, "CONFLICT"),
        "{}",
        full.body
    );
    assert_eq!(
        full.body["error"]["details"],
        json!({"approved_agents": 1, "max_agents": 1})
    );
    let wider = api
        .post(
            &format!("/v1/claims/{second_id}/approve"),
            owner,
            json!({"permissions": ["read:outgoing"]}),
        )
        .await;
    assert_eq!(wider.status, 400, "more than asked: {}", wider.body);
    let rejected = api
        .post(&format!("/v1/claims/{second_id}/reject"), owner, json!({}))
        .await;
    assert_eq!(
        rejected.body,
        json!({"id": second_id, "status": "rejected"})
    );
    let late = api
        .post(&format!("/v1/claims/{second_id}/approve"), owner, json!({}))
        .await;
    assert_eq!(late.status, 409, "{}", late.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_with_expires_at_ends_by_itself() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = tenant.destination_key.as_str();
    let (service, key) = register_orchestrator(&api).await;
    let namespace = destination_slug(&api, owner, &tenant.destination_id).await;
    let agent = Agent::new();
    let signing = Signing {
        agent: &agent,
        created: unix_now(),
    };
    let submitted = submit(
        &api,
        &key,
        signing,
        &claim_body(&namespace, &service, &agent, "short"),
    )
    .await;
    let claim_id = submitted.body["id"].as_str().unwrap().to_owned();
    let ends = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let approved = api
        .post(
            &format!("/v1/claims/{claim_id}/approve"),
            owner,
            json!({"expires_at": ends}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let client_id = approved.body["client_id"].as_str().unwrap().to_owned();
    let listed = agent_call(&api, &agent, &client_id, "GET", "/v1/requests", None, false).await;
    assert_eq!(listed.status, 200, "{}", listed.body);

    eventually("the approval expires", async || {
        let claim = api.get(&format!("/v1/claims/{claim_id}"), owner).await;
        (claim.body["status"] == "expired").then_some(())
    })
    .await;
    let after = agent_call(&api, &agent, &client_id, "GET", "/v1/requests", None, false).await;
    assert_eq!(after.status, 401, "{}", after.body);
    let client = api.get(&format!("/v1/client-ids/{client_id}"), owner).await;
    assert_eq!(client.body["status"], "revoked");
    let verified = eventually("the end of the approval is recorded", async || {
        let verified = api.get("/v1/ledger/verify", owner).await;
        (verified.body["entries"] == 2).then_some(verified)
    })
    .await;
    assert_eq!(verified.body["valid"], true);
    let ledger = api.get("/v1/ledger", owner).await;
    assert_eq!(ledger.body["data"][0]["action"], "expired");
}
