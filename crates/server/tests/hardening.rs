//! Findings of the security review, each against the real server over HTTP: what an
//! unauthenticated caller can make the server keep, compute or write, the admin token's
//! length, and encoded request bodies.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use mandate_domain::ids::ClientId;
use mandate_http::signatures::AgentSigner;
use serde_json::json;
use support::agent_signing::{AgentRequest, send_signed};
use support::{ADMIN_TOKEN, Api, Database, FreshPostgres, Reply, Server, TempDir, tenant};

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
    let key = AgentSigner::generate().public_key();
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
    let database = FreshPostgres::create().await;
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
