//! Findings of a security review, each proven over HTTP against the real server: payment
//! totals past 20 integer digits, a damaged stored request, the active-key cap and the
//! per-owner rate limit, ledger verification for a destination, an agent at its approval's
//! `expires_at`, and control or bidirectional characters in text shown to people.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mandate_http::signatures::AgentSigner;
use serde_json::{Value, json};
use support::agent_signing::{AgentRequest, send_signed};
use support::{ADMIN_TOKEN, Api, Database, FreshPostgres, Reply, Server, TempDir, tenant};

/// The largest amount: 20 integer and 18 fractional digits.
const MAX_AMOUNT: &str = "99999999999999999999.999999999999999999";

async fn create_request(api: &Api, key: &str) -> String {
    let created = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "1", "currency": "USD"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn pay(api: &Api, key: &str, request_id: &str, amount: &str) -> Reply {
    api.post(
        &format!("/v1/requests/{request_id}/payments"),
        key,
        json!({"amount": amount, "reference": "wire-1"}),
    )
    .await
}

fn field(reply: &Reply) -> &str {
    reply.body["error"]["details"]["field"]
        .as_str()
        .unwrap_or("<no field>")
}

/// Payments whose total passes 20 integer digits are stored and read back everywhere; the
/// payment that would pass the largest total a request holds is refused with 400 naming
/// `amount`, and changes nothing.
async fn payment_totals(database: &Database) {
    let data = TempDir::new();
    let server = Server::start(&data.0, database).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let id = create_request(&api, key).await;

    for _ in 0..3 {
        let paid = pay(&api, key, &id, MAX_AMOUNT).await;
        assert_eq!(paid.status, 201, "{}", paid.body);
    }
    let total = "299999999999999999999.999999999999999997";
    let read = api.get(&format!("/v1/requests/{id}"), key).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["amount_paid"], total);
    assert_eq!(read.body["status"], "paid");

    // A fourth would pass 340282366920938463463.374607431768211455.
    let refused = pay(&api, key, &id, MAX_AMOUNT).await;
    assert_eq!(
        (refused.status, refused.code(), field(&refused)),
        (400, "INVALID_REQUEST", "amount"),
        "{}",
        refused.body
    );
    let small = pay(&api, key, &id, "1").await;
    assert_eq!(
        small.status, 201,
        "what still fits is taken: {}",
        small.body
    );

    // Every view of the request still answers.
    let read = api.get(&format!("/v1/requests/{id}"), key).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.body["amount_paid"],
        "300000000000000000000.999999999999999997"
    );
    for (path, credential) in [
        ("/v1/requests", key),
        (
            &format!("/v1/requests?destination_id={}", tenant.destination_id) as &str,
            tenant.platform_key.as_str(),
        ),
        ("/v1/requests", tenant.platform_key.as_str()),
    ] {
        let listed = api.get(path, credential).await;
        assert_eq!(listed.status, 200, "{path}: {}", listed.body);
        assert_eq!(support::ids(&listed.body), vec![id.clone()], "{path}");
    }
    let link = api
        .post(&format!("/v1/requests/{id}/payment-links"), key, json!({}))
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let page = api
        .client
        .get(link.body["url"].as_str().unwrap())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cancel = api
        .post(&format!("/v1/requests/{id}/cancel"), key, json!({}))
        .await;
    assert_eq!(
        (cancel.status, cancel.code()),
        (409, "CONFLICT"),
        "a paid request is not cancelled: {}",
        cancel.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_totals_past_twenty_digits_read_back_and_the_limit_is_refused_on_sqlite() {
    payment_totals(&Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_totals_past_twenty_digits_read_back_and_the_limit_is_refused_on_postgres() {
    let database = FreshPostgres::create().await;
    payment_totals(&Database::Postgres(database.url.clone())).await;
}

/// A stored request that breaks the domain's rules fails its own read (500) and is named in
/// the lists' `unreadable`, while the lists still answer and page past it.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_request_fails_alone_and_the_list_names_it() {
    let database = FreshPostgres::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let healthy = create_request(&api, key).await;
    let damaged = create_request(&api, key).await;
    let changed = database
        .client()
        .await
        .execute(
            "UPDATE payment_requests SET amount_paid = 'not a number' WHERE id = $1",
            &[&damaged],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);

    let read = api.get(&format!("/v1/requests/{damaged}"), key).await;
    assert_eq!(
        (read.status, read.code()),
        (500, "INTERNAL"),
        "{}",
        read.body
    );
    let read = api.get(&format!("/v1/requests/{healthy}"), key).await;
    assert_eq!(read.status, 200, "{}", read.body);

    for credential in [key, tenant.platform_key.as_str()] {
        let listed = api.get("/v1/requests", credential).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(support::ids(&listed.body), vec![healthy.clone()]);
        assert_eq!(listed.body["unreadable"], json!([damaged]));
    }
    // One at a time: the damaged request is the newest; its page is empty but goes on.
    let first = api.get("/v1/requests?limit=1", key).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["data"], json!([]));
    assert_eq!(first.body["unreadable"], json!([damaged]));
    assert_eq!(first.body["has_more"], true);
    assert_eq!(first.body["next_cursor"], damaged.as_str());
    let second = api
        .get(
            &format!("/v1/requests?limit=1&starting_after={damaged}"),
            key,
        )
        .await;
    assert_eq!(support::ids(&second.body), vec![healthy.clone()]);
    assert!(second.body.get("unreadable").is_none(), "{}", second.body);
}

/// Platform and destination keys are capped like orchestrator keys: two active per owner.
#[tokio::test(flavor = "multi_thread")]
async fn every_owner_holds_at_most_two_active_keys() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let platform = tenant.platform_key.as_str();

    let second = api.post("/v1/organization/keys", platform, json!({})).await;
    assert_eq!(second.status, 201, "{}", second.body);
    let third = api.post("/v1/organization/keys", platform, json!({})).await;
    assert_eq!(
        (third.status, third.code()),
        (409, "CONFLICT"),
        "{}",
        third.body
    );
    assert!(
        third.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 active keys"),
        "{}",
        third.body
    );
    let revoked = api
        .send(
            "DELETE",
            &format!(
                "/v1/organization/keys/{}",
                second.body["id"].as_str().unwrap()
            ),
            Some(platform),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let again = api.post("/v1/organization/keys", platform, json!({})).await;
    assert_eq!(
        again.status, 201,
        "a revoked key frees its place: {}",
        again.body
    );

    // The tenant's destination already holds one key.
    let keys = format!("/v1/destinations/{}/keys", tenant.destination_id);
    let second = api.post(&keys, &tenant.destination_key, json!({})).await;
    assert_eq!(second.status, 201, "{}", second.body);
    for credential in [tenant.destination_key.as_str(), platform] {
        let third = api.post(&keys, credential, json!({})).await;
        assert_eq!(
            (third.status, third.code()),
            (409, "CONFLICT"),
            "{}",
            third.body
        );
    }
}

/// The keys of one owner share its rate: a second key does not double it.
#[tokio::test(flavor = "multi_thread")]
async fn the_keys_of_one_owner_share_its_rate_limit() {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "1")
        .env("MANDATE__RATE_LIMIT__BURST", "3");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let created = api
        .post(
            "/v1/admin/organizations",
            ADMIN_TOKEN,
            json!({"name": "Busy"}),
        )
        .await;
    let first = created.body["platform_key"].as_str().unwrap().to_owned();
    let second = api.post("/v1/organization/keys", &first, json!({})).await;
    assert_eq!(second.status, 201, "{}", second.body);
    let second = second.body["key"].as_str().unwrap().to_owned();
    // Both buckets full again.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(api.get("/v1/organization", &first).await.status);
    }
    for _ in 0..3 {
        replies.push(api.get("/v1/organization", &second).await.status);
    }
    assert_eq!(replies[..3], [200, 200, 200], "{replies:?}");
    // The second key's own bucket is full, the owner's is spent (one token a second may
    // refill on a slow machine, never three).
    assert!(replies[3..].contains(&429), "{replies:?}");
}

/// An Ed25519 agent, signing with the server's own signer.
struct Agent {
    signer: AgentSigner,
}

impl Agent {
    fn new() -> Self {
        Self {
            signer: AgentSigner::from_seed(rand::random()),
        }
    }

    async fn send(
        &self,
        api: &Api,
        method: &str,
        path: &str,
        client_id: Option<&str>,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Reply {
        let bytes = body
            .map(|body| serde_json::to_vec(body).unwrap())
            .unwrap_or_default();
        let url = format!("{}{path}", api.base());
        let covered: Vec<(&str, &str)> = client_id
            .map(|client_id| ("x-client-id", client_id))
            .into_iter()
            .collect();
        let mut headers = covered.clone();
        headers.push(("content-type", "application/json"));
        let request = AgentRequest {
            method,
            url: &url,
            headers: &headers,
            body: &bytes,
        };
        let nonce = format!("nonce-{}", support::random_hex(12));
        let signed = self
            .signer
            .sign(
                method,
                &url,
                &covered,
                &bytes,
                chrono::Utc::now().timestamp(),
                &nonce,
            )
            .unwrap();
        send_signed(api, &request, &signed.pairs(), bearer).await
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

/// A claim for `agent` on the destination `namespace`, submitted and approved by `owner`
/// with `approval`; the agent's client ID.
async fn approved_agent(
    api: &Api,
    owner: &str,
    namespace: &str,
    agent: &Agent,
    approval: Value,
) -> (String, String) {
    let (service, orchestrator_key) = register_orchestrator(api).await;
    let body = json!({
        "namespace": namespace,
        "public_key": agent.signer.public_key().to_string(),
        "service": service,
        "ip_address": "203.0.113.7",
        "nonce": format!("claim-{}", support::random_hex(8)),
        "agent_id": format!("bot-{}", support::random_hex(4)),
        "agent_name": "Invoice agent",
    });
    let submitted = agent
        .send(
            api,
            "POST",
            "/v1/claims",
            None,
            Some(&body),
            Some(&orchestrator_key),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let claim_id = submitted.body["id"].as_str().unwrap().to_owned();
    let approved = api
        .post(&format!("/v1/claims/{claim_id}/approve"), owner, approval)
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    (
        claim_id,
        approved.body["client_id"].as_str().unwrap().to_owned(),
    )
}

async fn slug_of(api: &Api, key: &str, destination_id: &str) -> String {
    let destination = api
        .get(&format!("/v1/destinations/{destination_id}"), key)
        .await;
    destination.body["slug"].as_str().unwrap().to_owned()
}

/// `GET /v1/ledger/verify` answers a destination for its own entries only, as
/// `GET /v1/ledger` does; the platform key sees the organization's chain.
#[tokio::test(flavor = "multi_thread")]
async fn ledger_verification_shows_a_destination_only_its_own_entries() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let sibling = api
        .post(
            "/v1/destinations",
            &tenant.platform_key,
            json!({"slug": format!("sibling-{}", support::random_hex(4)), "display_name": "Sibling"}),
        )
        .await;
    assert_eq!(sibling.status, 201, "{}", sibling.body);
    let sibling_id = sibling.body["id"].as_str().unwrap().to_owned();
    let sibling_key = api
        .post(
            &format!("/v1/destinations/{sibling_id}/keys"),
            &tenant.platform_key,
            json!({}),
        )
        .await;
    let sibling_key = sibling_key.body["key"].as_str().unwrap().to_owned();
    let namespace = slug_of(&api, &sibling_key, &sibling_id).await;
    approved_agent(&api, &sibling_key, &namespace, &Agent::new(), json!({})).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let whole = loop {
        let whole = api.get("/v1/ledger/verify", &tenant.platform_key).await;
        if whole.body["entries"] == 1 {
            break whole;
        }
        assert!(Instant::now() < deadline, "not recorded: {}", whole.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(whole.body["valid"], true);

    // The sibling's own entry …
    let own = api.get("/v1/ledger/verify", &sibling_key).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let listed = api.get("/v1/ledger", &sibling_key).await;
    assert_eq!(
        own.body,
        json!({"valid": true, "entries": 1, "head": listed.body["data"][0]["hash"]})
    );
    // … is nothing the other destination is shown, by its key or by the platform key acting
    // for it.
    let empty = json!({"valid": true, "entries": 0, "head": null});
    let other = api.get("/v1/ledger/verify", &tenant.destination_key).await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body, empty);
    let acting = api
        .send(
            "GET",
            "/v1/ledger/verify",
            Some(&tenant.platform_key),
            None,
            &[("x-destination-id", &tenant.destination_id)],
        )
        .await;
    assert_eq!(acting.body, empty);
    let other_list = api.get("/v1/ledger", &tenant.destination_key).await;
    assert_eq!(other_list.body["data"], json!([]));
}

/// An agent's access ends at its approval's `expires_at`, checked when it authenticates,
/// not a housekeeping round later.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_is_refused_from_its_approvals_expires_at() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = tenant.destination_key.as_str();
    let namespace = slug_of(&api, owner, &tenant.destination_id).await;
    let agent = Agent::new();
    let ends = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, client_id) = approved_agent(
        &api,
        owner,
        &namespace,
        &agent,
        json!({"expires_at": ends.to_rfc3339()}),
    )
    .await;
    let before = agent
        .send(&api, "GET", "/v1/requests", Some(&client_id), None, None)
        .await;
    assert_eq!(before.status, 200, "{}", before.body);

    let wait = ends - chrono::Utc::now() + chrono::Duration::milliseconds(20);
    tokio::time::sleep(wait.to_std().unwrap_or_default()).await;
    let after = agent
        .send(&api, "GET", "/v1/requests", Some(&client_id), None, None)
        .await;
    assert_eq!(
        (after.status, after.code()),
        (401, "UNAUTHENTICATED"),
        "{}",
        after.body
    );
}

/// Text shown to payers or owners refuses control and bidirectional control characters,
/// naming the field; the same text without them is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn control_and_bidi_characters_are_refused_in_shown_text() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let refused = |reply: &Reply, expected: &str| {
        assert_eq!(
            (reply.status, reply.code(), field(reply)),
            (400, "INVALID_REQUEST", expected),
            "{}",
            reply.body
        );
    };

    for bad in [
        "Shop\u{202E}gnp.exe",
        "Shop\u{2066}x",
        "Shop\0",
        "Shop\r\nX: 1",
    ] {
        let destination = api
            .post(
                "/v1/destinations",
                &tenant.platform_key,
                json!({"slug": format!("d-{}", support::random_hex(4)), "display_name": bad}),
            )
            .await;
        refused(&destination, "display_name");
    }
    let address = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(key),
            Some(json!({"payment_address": "IBAN DE00\u{202D}1234"})),
            &[],
        )
        .await;
    refused(&address, "payment_address");
    for (name, bad) in [
        ("reference", "INV-1\u{202A}"),
        ("description", "line\nbreak"),
    ] {
        let mut body = json!({"direction": "incoming", "amount": "5", "currency": "USD"});
        body[name] = json!(bad);
        refused(&api.post("/v1/requests", key, body).await, name);
    }
    let id = create_request(&api, key).await;
    let payment = api
        .post(
            &format!("/v1/requests/{id}/payments"),
            key,
            json!({"amount": "1", "reference": "wire\u{2069}"}),
        )
        .await;
    refused(&payment, "reference");

    // The same text without them passes; other scripts are fine.
    let fine = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "5", "currency": "USD",
                   "reference": "INV-1 — فاتورة", "description": "Ünïcode ok"}),
        )
        .await;
    assert_eq!(fine.status, 201, "{}", fine.body);
    let listed = api.get("/v1/requests", key).await;
    assert_eq!(support::ids(&listed.body).len(), 2);
}
