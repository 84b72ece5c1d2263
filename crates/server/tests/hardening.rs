//! Findings of the security review, each against the real server over HTTP: what an
//! unauthenticated caller can make the server keep, compute or write, the admin token's
//! length, encoded request bodies, payment totals past 20 integer digits, a damaged stored
//! request, the active-key cap and the per-owner rate limit, ledger verification for a
//! destination, an agent at its approval's `expires_at`, and control or bidirectional
//! characters in text shown to people.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use mandate_domain::ids::ClientId;
use mandate_signatures::AgentSigner;
use serde_json::{Value, json};
use support::agent_signing::{AgentRequest, send_signed};
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Reply, Server, TempDir, tenant};

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fresh_nonce() -> String {
    format!("nonce-{}", support::random_hex(12))
}

/// A server on SQLite with the harness's environment and these variables added.
async fn server_with(settings: &[(&str, &str)]) -> (TempDir, Server) {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    for (name, value) in settings {
        command.env(name, value);
    }
    let server = Server::start_with(command, &data.0).await;
    (data, server)
}

async fn raw(api: &Api, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    api.send(method, path, None, None, headers).await
}

// Finding 3: the `method` label of the request metrics is one of a fixed set.
#[tokio::test(flavor = "multi_thread")]
async fn invented_methods_do_not_multiply_the_metrics() {
    let (_data, server) = server_with(&[]).await;
    let api = server.api();
    for index in 0..200 {
        let method = format!("INVENTED{index}X");
        let reply = raw(&api, &method, "/healthz", &[]).await;
        assert!(reply.status >= 400, "{method}: {}", reply.status);
    }
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("INVENTED"),
        "an invented method became a label"
    );
    assert!(
        metrics.contains("method=\"other\""),
        "invented methods are counted as other"
    );
    let series = metrics
        .lines()
        .filter(|line| line.starts_with("mandate_http_requests_total{"))
        .count();
    assert!(
        series < 20,
        "{series} request series after 200 invented methods"
    );
}

/// `sig1=(<components>);created=…;keyid=…;nonce=…` by a fresh key, with a made-up signature.
fn signature_input_with(components: &[String]) -> (String, String) {
    let key = AgentSigner::generate().key_id().to_owned();
    let listed: Vec<String> = components
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect();
    let input = format!(
        "sig1=({});created={};keyid=\"{key}\";nonce=\"{}\"",
        listed.join(" "),
        unix_now(),
        fresh_nonce()
    );
    let signature = format!("sig1=:{}:", "A".repeat(86) + "==");
    (input, signature)
}

// Finding 6: Signature-Input is bounded before any work on its components.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_signature_inputs_are_refused_naming_the_limit() {
    let (_data, server) = server_with(&[]).await;
    let api = server.api();

    // 5,200 distinct components in about 40 kB: refused by size, quickly.
    let many: Vec<String> = (0..5_200).map(|index| format!("x-{index}")).collect();
    let (input, signature) = signature_input_with(&many);
    assert!(input.len() > 38_000, "{}", input.len());
    let started = Instant::now();
    let reply = raw(
        &api,
        "GET",
        "/v1/organization",
        &[("signature-input", &input), ("signature", &signature)],
    )
    .await;
    assert_eq!((reply.status, reply.code()), (401, "SIGNATURE_INVALID"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Signature-Input") && message.contains("at most 4096 bytes"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Small enough, but more components than any request needs.
    let forty: Vec<String> = (0..40).map(|index| format!("x-{index}")).collect();
    let (input, signature) = signature_input_with(&forty);
    let reply = raw(
        &api,
        "GET",
        "/v1/organization",
        &[("signature-input", &input), ("signature", &signature)],
    )
    .await;
    assert_eq!((reply.status, reply.code()), (401, "SIGNATURE_INVALID"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 32 components"), "{message}");

    // A duplicate is still found (through the set).
    let twice = vec!["@method".to_owned(), "x-a".to_owned(), "@method".to_owned()];
    let (input, signature) = signature_input_with(&twice);
    let reply = raw(
        &api,
        "GET",
        "/v1/organization",
        &[("signature-input", &input), ("signature", &signature)],
    )
    .await;
    assert_eq!(reply.status, 401);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("listed twice"), "{message}");

    // An oversized Signature header is refused too.
    let (input, _) = signature_input_with(&["@method".to_owned(), "@target-uri".to_owned()]);
    let huge = format!("sig1=:{}:", "A".repeat(8_000));
    let reply = raw(
        &api,
        "GET",
        "/v1/organization",
        &[("signature-input", &input), ("signature", &huge)],
    )
    .await;
    assert_eq!(reply.status, 401);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Signature") && message.contains("at most"),
        "{message}"
    );
}

// Finding 7: a signature by a key no agent holds writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn signatures_by_unknown_keys_write_no_nonce() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Postgres(database.url.clone()));
    command.env("MANDATE__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "0");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let url = server.url("/v1/requests");
    let made_up_client = ClientId::generate().to_string();
    for round in 0..20 {
        let signer = AgentSigner::generate();
        let client_headers = [("x-client-id", made_up_client.as_str())];
        let headers: &[(&str, &str)] = if round % 2 == 0 { &client_headers } else { &[] };
        let signed = signer
            .sign("GET", &url, headers, b"", unix_now(), &fresh_nonce())
            .unwrap();
        let request = AgentRequest {
            method: "GET",
            url: &url,
            headers,
            body: b"",
        };
        let reply = send_signed(&api, &request, &signed.pairs(), None).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    // A signature next to a valid Bearer on a route that takes no agent signature: refused
    // before its nonce is kept.
    let signer = AgentSigner::generate();
    let signed = signer
        .sign("GET", &url, &[], b"", unix_now(), &fresh_nonce())
        .unwrap();
    let request = AgentRequest {
        method: "GET",
        url: &url,
        headers: &[],
        body: b"",
    };
    let reply = send_signed(&api, &request, &signed.pairs(), Some(&tenant.platform_key)).await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    let rows: i64 = database
        .client()
        .await
        .query_one("SELECT count(*) FROM signature_nonces", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "nonces kept for keys no agent holds");
}

fn assert_throttled(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.code()),
        (429, "RATE_LIMITED"),
        "{}",
        reply.body
    );
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(reply.body["error"]["details"]["retry_after"], retry_after);
    assert!(reply.body["error"]["request_id"].is_string());
}

// Findings 7 and 10: failed authentication, the admin token's included, is throttled per
// source address.
#[tokio::test(flavor = "multi_thread")]
async fn failed_authentication_is_throttled_per_address() {
    let (_data, server) = server_with(&[
        ("MANDATE__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "1"),
        ("MANDATE__RATE_LIMIT__FAILED_AUTH_BURST", "4"),
    ])
    .await;
    let api = server.api();
    // A valid credential before: it keeps working while no attempt failed.
    let created = api
        .post(
            "/v1/admin/organizations",
            ADMIN_TOKEN,
            json!({"name": "Acme"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    for attempt in 0..4 {
        let token = format!("wrong-admin-token-{attempt}-that-is-long-enough-too");
        let reply = api
            .post("/v1/admin/organizations", &token, json!({"name": "Guess"}))
            .await;
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.body);
    }
    // The burst is spent: the address is refused unread, even with the right admin token, and
    // so are unknown keys and signatures.
    assert_throttled(
        &api.post(
            "/v1/admin/organizations",
            ADMIN_TOKEN,
            json!({"name": "Late"}),
        )
        .await,
    );
    assert_throttled(&api.get("/v1/organization", "mnd_plat_unknown").await);
    let url = server.url("/v1/requests");
    let signed = AgentSigner::generate()
        .sign("GET", &url, &[], b"", unix_now(), &fresh_nonce())
        .unwrap();
    let request = AgentRequest {
        method: "GET",
        url: &url,
        headers: &[],
        body: b"",
    };
    assert_throttled(&send_signed(&api, &request, &signed.pairs(), None).await);
    // Bad client secrets at the token endpoint as well.
    let reply = api
        .client
        .post(server.url("/v1/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cli_01JAAAAAAAAAAAAAAAAAAAAAAA"),
            ("client_secret", "mnd_orch_wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 429);
    // Public routes are not affected.
    assert_eq!(raw(&api, "GET", "/healthz", &[]).await.status, 200);
}

// Finding 10: an admin token shorter than 32 characters stops the server at start.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_admin_token_is_refused_at_start() {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__ADMIN__TOKEN", "x".repeat(31))
        .env(
            "MANDATE__SERVER__BIND",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with a 31-character admin token");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("admin.token") && stderr.contains("at least 32 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains(&"x".repeat(31)), "the token was echoed");
}

/// The CRC-32 of gzip (RFC 1952).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `bytes` as a gzip member with one stored (uncompressed) deflate block.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let length = u16::try_from(bytes.len()).unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&(!length).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&crc32(bytes).to_le_bytes());
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
    out
}

async fn post_bytes(
    api: &Api,
    path: &str,
    key: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = api
        .client
        .post(format!("{}{path}", api.base()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or_default();
    Reply {
        status,
        body,
        headers,
    }
}

// Finding 11: encoded request bodies are refused, signed or not, idempotent or not.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_request_bodies_are_refused_with_415() {
    let (_data, server) = server_with(&[]).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let body =
        serde_json::to_vec(&json!({"direction": "incoming", "amount": "7", "currency": "USD"}))
            .unwrap();
    let gzipped = gzip(&body);
    let before = api.get("/v1/requests", &tenant.destination_key).await;
    assert_eq!(before.status, 200);

    let assert_refused = |reply: &Reply| {
        assert_eq!(
            (reply.status, reply.code()),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            "{}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Content-Encoding"), "{message}");
        assert!(reply.body["error"]["request_id"].is_string());
    };
    for headers in [
        vec![("content-encoding", "gzip")],
        vec![("content-encoding", "gzip"), ("idempotency-key", "gzip-1")],
        vec![("content-encoding", "br")],
    ] {
        let reply = post_bytes(
            &api,
            "/v1/requests",
            &tenant.destination_key,
            gzipped.clone(),
            &headers,
        )
        .await;
        assert_refused(&reply);
    }
    // Signed over the bytes sent (RFC 9530): refused for the encoding, not the digest.
    let url = server.url("/v1/requests");
    let client = ClientId::generate().to_string();
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
        ("x-client-id", client.as_str()),
    ];
    let signed = AgentSigner::generate()
        .sign(
            "POST",
            &url,
            &[("x-client-id", client.as_str())],
            &gzipped,
            unix_now(),
            &fresh_nonce(),
        )
        .unwrap();
    let request = AgentRequest {
        method: "POST",
        url: &url,
        headers: &headers,
        body: &gzipped,
    };
    assert_refused(&send_signed(&api, &request, &signed.pairs(), None).await);

    // Nothing was created; identity is no encoding and passes.
    let after = api.get("/v1/requests", &tenant.destination_key).await;
    assert_eq!(after.body["data"], before.body["data"]);
    let reply = post_bytes(
        &api,
        "/v1/requests",
        &tenant.destination_key,
        body,
        &[("content-encoding", "identity")],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

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
    let database = FreshDatabase::create().await;
    payment_totals(&Database::Postgres(database.url.clone())).await;
}

/// A stored request that breaks the domain's rules fails its own read (500) and is named in
/// the lists' `unreadable`, while the lists still answer and page past it.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_request_fails_alone_and_the_list_names_it() {
    let database = FreshDatabase::create().await;
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
        "public_key": agent.signer.key_id().to_owned(),
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
