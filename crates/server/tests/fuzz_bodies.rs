//! Random and mutated JSON bodies through the real handlers: every operation that reads a
//! body is sent arbitrary JSON, valid bodies with one field changed, dropped or added, and
//! bytes that are not JSON at all, by a caller it admits. No answer is a 5xx, and every
//! refusal is the documented error envelope. Prints how many requests it sent, for the
//! record in `docs/security.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use support::{ADMIN_TOKEN, Api, Database, Server, TempDir, random_hex};

/// An operation that reads a body, a caller it admits, and a body it would accept.
struct Target {
    method: &'static str,
    path: String,
    token: String,
    headers: Vec<(&'static str, String)>,
    valid: Value,
    /// The token endpoint answers errors as RFC 6749 §5.2, not with the envelope.
    oauth: bool,
}

async fn targets(api: &Api) -> Vec<Target> {
    let tenant = support::tenant(api).await;
    let slug = format!("orc-{}", random_hex(6));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Fuzz"}),
        )
        .await;
    assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
    let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
    let client = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": slug, "permissions": ["create:incoming", "customers:write", "customers:read", "payments:report"]}),
        )
        .await;
    assert_eq!(client.status, 201, "{}", client.body);
    let client_id = client.body["id"].as_str().unwrap().to_owned();
    let request = api
        .post(
            "/v1/requests",
            &tenant.destination_key,
            json!({"direction": "incoming", "amount": "10", "currency": "USD"}),
        )
        .await;
    assert_eq!(request.status, 201, "{}", request.body);
    let request_id = request.body["id"].as_str().unwrap().to_owned();
    let customer = api
        .post(
            "/v1/customers",
            &tenant.destination_key,
            json!({"email": "fuzz@example.com", "name": "Fuzz"}),
        )
        .await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    let customer_id = customer.body["id"].as_str().unwrap().to_owned();
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            &tenant.destination_key,
            json!({"url": "http://127.0.0.1:9/mandate", "event_types": ["*"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let endpoint_id = endpoint.body["id"].as_str().unwrap().to_owned();

    let destination = tenant.destination_key.clone();
    let as_client = vec![("x-client-id", client_id.clone())];
    let target = |method, path: String, token: &str, valid: Value| Target {
        method,
        path,
        token: token.to_owned(),
        headers: vec![],
        valid,
        oauth: false,
    };
    vec![
        target(
            "POST",
            "/v1/admin/organizations".into(),
            ADMIN_TOKEN,
            json!({"name": "Acme"}),
        ),
        target(
            "POST",
            "/v1/admin/orchestrators".into(),
            ADMIN_TOKEN,
            json!({"slug": "orc-fuzz", "name": "Fuzz"}),
        ),
        target(
            "POST",
            "/v1/destinations".into(),
            &tenant.platform_key,
            json!({"slug": "shop-fuzz", "display_name": "Shop", "payment_address": "addr", "max_agents": 3, "pending_claim_ttl_seconds": 60}),
        ),
        target(
            "PATCH",
            format!("/v1/destinations/{}", tenant.destination_id),
            &destination,
            json!({"display_name": "Shop", "payment_address": "addr", "max_agents": 5}),
        ),
        target(
            "POST",
            "/v1/client-ids".into(),
            &destination,
            json!({"orchestrator": slug, "label": "x", "permissions": ["read:incoming"]}),
        ),
        target(
            "POST",
            format!("/v1/client-ids/{client_id}/permissions"),
            &destination,
            json!({"permission": "read:incoming"}),
        ),
        target(
            "POST",
            "/v1/requests".into(),
            &destination,
            json!({"direction": "incoming", "amount": "12.50", "currency": "USD", "customer_id": customer_id, "reference": "INV-1", "description": "d", "due_at": "2030-01-01T00:00:00Z", "expires_at": "2030-01-02T00:00:00Z", "metadata": {"k": "v"}}),
        ),
        Target {
            headers: as_client.clone(),
            ..target(
                "POST",
                "/v1/requests".into(),
                &orchestrator_key,
                json!({"direction": "incoming", "amount": "1", "currency": "USDC-base"}),
            )
        },
        target(
            "POST",
            format!("/v1/requests/{request_id}/payment-links"),
            &destination,
            json!({"expires_in_seconds": 3600}),
        ),
        target(
            "POST",
            format!("/v1/requests/{request_id}/payments"),
            &destination,
            json!({"amount": "0.01", "reference": "tx-1", "paid_at": "2026-01-01T00:00:00Z"}),
        ),
        target(
            "POST",
            "/v1/customers".into(),
            &destination,
            json!({"email": "someone@example.com", "name": "Someone"}),
        ),
        target(
            "PATCH",
            format!("/v1/customers/{customer_id}"),
            &destination,
            json!({"name": "Renamed"}),
        ),
        target(
            "POST",
            "/v1/webhook-endpoints".into(),
            &destination,
            json!({"url": "http://127.0.0.1:9/x", "event_types": ["payment_request.*"], "description": "d"}),
        ),
        target(
            "PATCH",
            format!("/v1/webhook-endpoints/{endpoint_id}"),
            &destination,
            json!({"enabled": true, "event_types": ["*"]}),
        ),
        target(
            "POST",
            format!("/v1/webhook-endpoints/{endpoint_id}/test"),
            &destination,
            json!({}),
        ),
        target(
            "POST",
            "/v1/claims".into(),
            &orchestrator_key,
            json!({"namespace": "shop", "public_key": "ed25519:AAAA", "service": slug, "ip_address": "127.0.0.1", "nonce": "nonce-123", "agent_id": "a", "agent_name": "A"}),
        ),
        target(
            "POST",
            format!("/v1/claims/clm_{}/approve", "0".repeat(26)),
            &destination,
            json!({"permissions": ["create:incoming"]}),
        ),
        Target {
            oauth: true,
            ..target(
                "POST",
                "/v1/oauth/token".into(),
                "",
                json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": orchestrator_key}),
            )
        },
    ]
}

/// Any JSON value, nested a few levels, with strings that look like the API's values.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1e400",
            "12.5",
            "0.0000000000000000001",
            "99999999999999999999999",
            "USD",
            "dst_00000000000000000000000000",
            "cli_7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "read:incoming",
            "*",
            "http://127.0.0.1/",
            "https://[::1]/",
            "ed25519:",
            "2030-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "\u{0}",
            "💸",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        (1usize..2000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A change to a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, Value),
    Drop(prop::sample::Index),
    Add(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any_json()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Drop),
        1 => ("[a-z_]{1,12}", any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
    ]
}

fn mutate(valid: &Value, mutation: &Mutation) -> Value {
    let mut object = valid.as_object().cloned().unwrap_or_default();
    let keys: Vec<String> = object.keys().cloned().collect();
    match mutation {
        Mutation::Replace(at, value) if !keys.is_empty() => {
            object.insert(keys[at.index(keys.len())].clone(), value.clone());
        }
        Mutation::Drop(at) if !keys.is_empty() => {
            object.remove(&keys[at.index(keys.len())]);
        }
        Mutation::Replace(_, value) | Mutation::Add(_, value) => {
            let key = match mutation {
                Mutation::Add(key, _) => key.clone(),
                _ => "extra".to_owned(),
            };
            object.insert(key, value.clone());
        }
        Mutation::Drop(_) => {}
    }
    Value::Object(object)
}

/// How a body is made: a valid one changed, any JSON value, or bytes that are not JSON.
#[derive(Debug, Clone)]
enum Shape {
    Mutated(Mutation),
    Random(Value),
    NotJson(Vec<u8>),
}

/// What is sent: a JSON value, or raw bytes labelled as JSON.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

/// Sends one body to one target; an `Err` names what was wrong with the answer.
async fn send(api: &Api, target: &Target, body: &Body) -> Result<u16, String> {
    let url = format!("{}{}", api.base(), target.path);
    let method = reqwest::Method::from_bytes(target.method.as_bytes()).unwrap();
    let mut request = api
        .client
        .request(method, url)
        .header("content-type", "application/json");
    if !target.token.is_empty() {
        request = request.bearer_auth(&target.token);
    }
    for (name, value) in &target.headers {
        request = request.header(*name, value);
    }
    let bytes = match body {
        Body::Json(value) => serde_json::to_vec(value).unwrap(),
        Body::Raw(bytes) => bytes.clone(),
    };
    let response = request
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status >= 500 {
        return Err(format!("{status}: {text}"));
    }
    if status >= 400 {
        let parsed: Value =
            serde_json::from_str(&text).map_err(|_| format!("{status}: not JSON: {text}"))?;
        let shaped = if target.oauth {
            parsed["error"].is_string()
        } else {
            parsed["error"]["code"].is_string() && parsed["error"]["message"].is_string()
        };
        if !shaped {
            return Err(format!("{status}: not the documented error shape: {text}"));
        }
    }
    Ok(status)
}

#[test]
fn random_bodies_never_cause_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    // Webhook endpoints point at a closed local port: nothing resolves names in the tests.
    command
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0")
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
    let server = runtime.block_on(Server::start_with(command, &data.0));
    let api = server.api();
    let targets = runtime.block_on(targets(&api));
    let deadline = Instant::now() + Duration::from_secs(120);

    let body = prop_oneof![
        4 => mutation().prop_map(Shape::Mutated),
        2 => any_json().prop_map(Shape::Random),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Shape::NotJson),
    ];
    let strategy = (0..targets.len(), body);
    let sent = Mutex::new(0u32);
    let statuses = Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&strategy, |(index, shape)| {
        let target = &targets[index];
        let body = match shape {
            Shape::Mutated(mutation) => Body::Json(mutate(&target.valid, &mutation)),
            Shape::Random(value) => Body::Json(value),
            Shape::NotJson(bytes) => Body::Raw(bytes),
        };
        assert!(Instant::now() < deadline, "the fuzz run exceeded 120 s");
        let answer = runtime.block_on(send(&api, target, &body));
        *sent.lock().unwrap() += 1;
        let status = answer.map_err(|problem| {
            TestCaseError::fail(format!(
                "{} {} with {body:?}: {problem}",
                target.method, target.path
            ))
        })?;
        *statuses.lock().unwrap().entry(status).or_default() += 1;
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    println!(
        "fuzz JSON bodies: {} requests to {} operations, statuses {:?}",
        sent.lock().unwrap(),
        targets.len(),
        statuses.lock().unwrap()
    );
}
