//! Webhooks end to end with real loopback receivers: each party receives exactly what it may
//! read — the same set its event feed shows — signed, retried, and never after a revocation.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::Receiver;
use support::{ADMIN_TOKEN, Api, Database, Reply, Server, TempDir, tenant};

const WAIT: Duration = Duration::from_secs(30);

fn webhook_server_command(data: &TempDir) -> std::process::Command {
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", "0s,1s,1s,1s")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    command
}

/// A credential: a key, optionally acting through a client ID.
#[derive(Clone)]
struct Caller {
    key: String,
    client_id: Option<String>,
}

impl Caller {
    async fn send(&self, api: &Api, method: &str, path: &str, body: Option<Value>) -> Reply {
        let headers: Vec<(&str, &str)> = self
            .client_id
            .iter()
            .map(|id| ("x-client-id", id.as_str()))
            .collect();
        api.send(method, path, Some(&self.key), body, &headers)
            .await
    }

    async fn endpoint(&self, api: &Api, receiver: &Receiver, types: Value) -> (String, String) {
        let created = self
            .send(
                api,
                "POST",
                "/v1/webhook-endpoints",
                Some(json!({"url": receiver.url, "event_types": types})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        (
            created.body["id"].as_str().unwrap().to_owned(),
            created.body["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn feed(&self, api: &Api) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(after) => format!("/v1/events?limit=100&starting_after={after}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let page = self.send(api, "GET", &path, None).await;
            assert_eq!(page.status, 200, "{}", page.body);
            for event in page.body["data"].as_array().unwrap() {
                ids.insert(event["id"].as_str().unwrap().to_owned());
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }

    /// Waits until none of the endpoint's attempts is pending: everything fanned out to it
    /// so far has been delivered (or given up).
    async fn settled(&self, api: &Api, endpoint_id: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let log = self
                .send(
                    api,
                    "GET",
                    &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=100"),
                    None,
                )
                .await;
            assert_eq!(log.status, 200, "{}", log.body);
            let pending = log.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|attempt| attempt["status"] == "pending");
            if !pending {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries to {endpoint_id} did not settle"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the events delivered to the endpoint after `since` (an event id; "" for all)
/// are exactly the caller's feed after it (events are fanned out and sent concurrently, so the
/// two converge), failing at the deadline.
async fn agree(api: &Api, caller: &Caller, receiver: &Receiver, endpoint: &str, since: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    let after = |ids: BTreeSet<String>| -> BTreeSet<String> {
        ids.into_iter().filter(|id| id.as_str() > since).collect()
    };
    loop {
        caller.settled(api, endpoint).await;
        let (received, feed) = (after(receiver.event_ids()), after(caller.feed(api).await));
        if received == feed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhooks {received:?} and feed {feed:?} disagree"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create_request(api: &Api, caller: &Caller, direction: &str) -> String {
    let reply = caller
        .send(
            api,
            "POST",
            "/v1/requests",
            Some(json!({"direction": direction, "amount": "5", "currency": "USD"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_party_receives_exactly_what_its_feed_shows() {
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = Caller {
        key: tenant.destination_key.clone(),
        client_id: None,
    };
    // Endpoints receive the events created after them: register before anything happens.
    let owner_receiver = Receiver::start(&[]).await;
    let (owner_endpoint, _) = owner.endpoint(&api, &owner_receiver, json!(["*"])).await;

    let mut parties = Vec::new();
    for name in ["a", "b"] {
        let slug = format!("orc-{name}-{}", support::random_hex(3));
        let orchestrator = api
            .post(
                "/v1/admin/orchestrators",
                ADMIN_TOKEN,
                json!({"slug": slug, "name": name}),
            )
            .await;
        let key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
        let client = api
            .post(
                "/v1/client-ids",
                &tenant.destination_key,
                json!({"orchestrator": slug}),
            )
            .await;
        let client_id = client.body["id"].as_str().unwrap().to_owned();
        let caller = Caller {
            key: key.clone(),
            client_id: Some(client_id),
        };
        let receiver = Receiver::start(&[]).await;
        let (endpoint_id, _) = caller
            .endpoint(&api, &receiver, json!(["payment_request.*"]))
            .await;
        parties.push((caller, receiver, endpoint_id));
    }
    // Each orchestrator creates requests; each receives its own and nothing of the other's.
    let (a, b) = (&parties[0], &parties[1]);
    let a_incoming = create_request(&api, &a.0, "incoming").await;
    let a_outgoing = create_request(&api, &a.0, "outgoing").await;
    let b_incoming = create_request(&api, &b.0, "incoming").await;
    for (caller, receiver, endpoint) in &parties {
        agree(&api, caller, receiver, endpoint, "").await;
    }
    let objects = |receiver: &Receiver| -> BTreeSet<String> {
        receiver
            .received()
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap()["data"]["object"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        objects(&a.1),
        BTreeSet::from([a_incoming.clone(), a_outgoing.clone()])
    );
    assert_eq!(objects(&b.1), BTreeSet::from([b_incoming.clone()]));

    // Granted read:incoming, B also receives A's incoming events, never the outgoing ones.
    let b_client = b.0.client_id.clone().unwrap();
    // The feed follows current visibility, webhooks go out as events happen: after the grant
    // the two agree on the events that follow it.
    let grant_cutoff = owner.feed(&api).await.into_iter().max().unwrap();
    api.post(
        &format!("/v1/client-ids/{b_client}/permissions"),
        &tenant.destination_key,
        json!({"permission": "read:incoming"}),
    )
    .await;
    let paid = owner
        .send(
            &api,
            "POST",
            &format!("/v1/requests/{a_incoming}/payments"),
            Some(json!({"amount": "5", "reference": "r"})),
        )
        .await;
    assert_eq!(paid.status, 201);
    owner
        .send(
            &api,
            "POST",
            &format!("/v1/requests/{a_outgoing}/cancel"),
            None,
        )
        .await;
    for (caller, receiver, endpoint) in &parties {
        caller.settled(&api, endpoint).await;
        receiver
            .wait_for(WAIT, "the payment event", |all| {
                all.iter().any(|r| r.body.contains("payment_request.paid"))
            })
            .await;
    }
    assert!(
        b.1.received().iter().all(|r| !r.body.contains(&a_outgoing)),
        "B never sees outgoing requests it did not create"
    );

    // After A's client ID is revoked, nothing more reaches A. Everything A may see so far
    // (the cancellation too, which can still be on its way) has arrived before counting.
    agree(&api, &a.0, &a.1, &a.2, "").await;
    let a_client = a.0.client_id.clone().unwrap();
    let before = a.1.received().len();
    api.post(
        &format!("/v1/client-ids/{a_client}/revoke"),
        &tenant.destination_key,
        json!({}),
    )
    .await;
    let later = owner
        .send(
            &api,
            "POST",
            "/v1/requests",
            Some(json!({"direction": "incoming", "amount": "1", "currency": "USD"})),
        )
        .await;
    owner
        .send(
            &api,
            "POST",
            &format!("/v1/requests/{a_incoming}/payments"),
            Some(json!({"amount": "1", "reference": "x"})),
        )
        .await;
    let later_id = later.body["id"].as_str().unwrap().to_owned();
    // Fan-out decides every endpoint of an event at once: once B has the last event, A's
    // share of it was decided too.
    let paid_twice = |all: &[support::receiver::Received]| {
        all.iter()
            .filter(|r| r.body.contains("payment_request.paid") && r.body.contains(&a_incoming))
            .count()
            >= 2
    };
    b.1.wait_for(WAIT, "the later events", |all| {
        paid_twice(all) && all.iter().any(|r| r.body.contains(&later_id))
    })
    .await;
    assert_eq!(
        a.1.received().len(),
        before,
        "a revoked client ID receives nothing more"
    );

    // The owner's endpoint received exactly its feed too.
    agree(&api, &owner, &owner_receiver, &owner_endpoint, "").await;
    agree(&api, &b.0, &b.1, &b.2, &grant_cutoff).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_with_the_same_webhook_id_and_logged() {
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = Caller {
        key: tenant.destination_key.clone(),
        client_id: None,
    };
    let receiver = Receiver::start(&[500, 500, 200]).await;
    let (endpoint, _) = owner
        .endpoint(&api, &receiver, json!(["payment_request.created"]))
        .await;
    create_request(&api, &owner, "incoming").await;
    receiver
        .wait_for(WAIT, "three attempts", |all| all.len() >= 3)
        .await;
    owner.settled(&api, &endpoint).await;
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.webhook_id == received[0].webhook_id),
        "one webhook-id across retries"
    );
    let log = owner
        .send(
            &api,
            "GET",
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
            None,
        )
        .await;
    let attempts: Vec<(u64, String, u64)> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_str().unwrap().to_owned(),
                a["response_status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            (3, "succeeded".into(), 200),
            (2, "failed".into(), 500),
            (1, "failed".into(), 500)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn private_and_plain_http_targets_are_refused_by_default() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    for url in [
        "http://127.0.0.1/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
    ] {
        let reply = api
            .post(
                "/v1/webhook-endpoints",
                &tenant.destination_key,
                json!({"url": url}),
            )
            .await;
        assert_eq!(
            (
                reply.status,
                reply.body["error"]["details"]["field"].as_str()
            ),
            (400, Some("url")),
            "{url}"
        );
    }
    let unknown_type = api.post("/v1/webhook-endpoints", &tenant.destination_key, json!({"url": "https://93.184.216.34/h", "event_types": ["payment_request.teleported"]})).await;
    assert_eq!(unknown_type.status, 400);
    assert!(ids_empty(
        &api.get("/v1/webhook-endpoints", &tenant.destination_key)
            .await
            .body
    ));
}

fn ids_empty(list: &Value) -> bool {
    list["data"].as_array().is_some_and(Vec::is_empty)
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_disables_the_endpoint_and_a_delivery_can_be_sent_again() {
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = Caller {
        key: tenant.destination_key.clone(),
        client_id: None,
    };

    // A manual retry sends the same event again, as a new attempt.
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = owner
        .endpoint(&api, &receiver, json!(["payment_request.created"]))
        .await;
    create_request(&api, &owner, "incoming").await;
    receiver
        .wait_for(WAIT, "the first delivery", |all| all.len() == 1)
        .await;
    owner.settled(&api, &endpoint).await;
    let log = owner
        .send(
            &api,
            "GET",
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
            None,
        )
        .await;
    let delivery = log.body["data"][0]["id"].as_str().unwrap().to_owned();
    let retried = owner
        .send(
            &api,
            "POST",
            &format!("/v1/webhook-deliveries/{delivery}/retry"),
            None,
        )
        .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    receiver
        .wait_for(WAIT, "the re-sent delivery", |all| all.len() == 2)
        .await;
    let received = receiver.received();
    assert_eq!(received[0].webhook_id, received[1].webhook_id);

    // A receiver answering 410 Gone disables its endpoint at once.
    let gone = Receiver::start(&[410]).await;
    let (gone_endpoint, _) = owner
        .endpoint(&api, &gone, json!(["payment_request.created"]))
        .await;
    create_request(&api, &owner, "incoming").await;
    gone.wait_for(WAIT, "the refused delivery", |all| all.len() == 1)
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = owner
            .send(
                &api,
                "GET",
                &format!("/v1/webhook-endpoints/{gone_endpoint}"),
                None,
            )
            .await;
        if state.body["enabled"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint was not disabled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    create_request(&api, &owner, "incoming").await;
    receiver
        .wait_for(WAIT, "the next event at the healthy endpoint", |all| {
            all.len() == 3
        })
        .await;
    assert_eq!(
        gone.received().len(),
        1,
        "a disabled endpoint is not called again"
    );
}

/// An access token for `client_id`, narrowed to `scope`.
async fn narrowed_token(api: &Api, client_id: &str, orchestrator_key: &str, scope: &str) -> String {
    let reply = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", orchestrator_key),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "issuing an access token");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["scope"], scope);
    body["access_token"].as_str().unwrap().to_owned()
}

/// SPEC §4: an endpoint registered through a narrowed token receives only what the token may
/// fetch, and the token manages only endpoints whose scope fits inside its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_of_a_narrowed_token_receives_only_what_the_token_may_read() {
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let owner = Caller {
        key: tenant.destination_key.clone(),
        client_id: None,
    };
    let slug = format!("orc-{}", support::random_hex(3));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "narrowed"}),
        )
        .await;
    let key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
    let client = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": slug}),
        )
        .await;
    let client_id = client.body["id"].as_str().unwrap().to_owned();
    // The client ID itself may read every outgoing request and the customer pool.
    for permission in ["read:outgoing", "customers:read"] {
        let granted = api
            .post(
                &format!("/v1/client-ids/{client_id}/permissions"),
                &tenant.destination_key,
                json!({"permission": permission}),
            )
            .await;
        assert!(granted.status < 300, "{}", granted.body);
    }
    let full = Caller {
        key: key.clone(),
        client_id: Some(client_id.clone()),
    };
    let narrowed = Caller {
        key: narrowed_token(&api, &client_id, &key, "create:incoming").await,
        client_id: None,
    };
    let full_receiver = Receiver::start(&[]).await;
    let (full_endpoint, _) = full.endpoint(&api, &full_receiver, json!(["*"])).await;
    let narrowed_receiver = Receiver::start(&[]).await;
    let (narrowed_endpoint, _) = narrowed
        .endpoint(&api, &narrowed_receiver, json!(["*"]))
        .await;
    // What the token may never read, it may not subscribe to by name either.
    let customers = narrowed
        .send(
            &api,
            "POST",
            "/v1/webhook-endpoints",
            Some(json!({"url": narrowed_receiver.url, "event_types": ["customer.*"]})),
        )
        .await;
    assert_eq!(customers.status, 403, "{}", customers.body);

    // The owner creates an outgoing request and a customer: the client ID may read both,
    // the token neither.
    let outgoing = create_request(&api, &owner, "outgoing").await;
    let customer = owner
        .send(
            &api,
            "POST",
            "/v1/customers",
            Some(json!({"email": "narrowed@example.com", "name": "Narrowed"})),
        )
        .await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    let customer = customer.body["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/requests/{outgoing}"),
        format!("/v1/customers/{customer}"),
    ] {
        let fetched = narrowed.send(&api, "GET", &path, None).await;
        assert!(
            fetched.status == 404 || fetched.status == 403,
            "the token may not fetch {path}: {} {}",
            fetched.status,
            fetched.body
        );
    }
    // Then the token creates a request of its own, which it may read.
    let own = create_request(&api, &narrowed, "incoming").await;

    // Fan-out decides every endpoint of an event at once: once the full credential's endpoint
    // has all three, the narrowed one's share of them was decided too.
    full_receiver
        .wait_for(
            WAIT,
            "the outgoing request, the customer and the own request",
            |all| {
                [&outgoing, &customer, &own]
                    .iter()
                    .all(|id| all.iter().any(|r| r.body.contains(id.as_str())))
            },
        )
        .await;
    narrowed_receiver
        .wait_for(WAIT, "the token's own request", |all| {
            all.iter().any(|r| r.body.contains(&own))
        })
        .await;
    narrowed.settled(&api, &narrowed_endpoint).await;
    for received in narrowed_receiver.received() {
        assert!(
            !received.body.contains(&outgoing) && !received.body.contains(&customer),
            "the narrowed token's endpoint received what the token may not read: {}",
            received.body
        );
    }
    // Its endpoint receives exactly its feed.
    agree(&api, &narrowed, &narrowed_receiver, &narrowed_endpoint, "").await;

    // The token may not see or manage the full credential's endpoint; the full credential
    // manages both.
    let full_path = format!("/v1/webhook-endpoints/{full_endpoint}");
    for (method, path, body) in [
        ("GET", full_path.clone(), None),
        (
            "PATCH",
            full_path.clone(),
            Some(json!({"url": narrowed_receiver.url})),
        ),
        ("POST", format!("{full_path}/rotate-secret"), None),
        ("POST", format!("{full_path}/test"), None),
        ("GET", format!("{full_path}/deliveries"), None),
        ("DELETE", full_path.clone(), None),
    ] {
        let reply = narrowed.send(&api, method, &path, body).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
    }
    let listed = narrowed
        .send(&api, "GET", "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(support::ids(&listed.body), vec![narrowed_endpoint.clone()]);
    let own_path = format!("/v1/webhook-endpoints/{narrowed_endpoint}");
    assert_eq!(
        narrowed.send(&api, "GET", &own_path, None).await.status,
        200
    );
    assert_eq!(full.send(&api, "GET", &own_path, None).await.status, 200);
    assert_eq!(full.send(&api, "GET", &full_path, None).await.status, 200);
}

/// Whether `value` has the shape `schema` (a resolved JSON Schema of an object) describes:
/// its required properties, no others when `additionalProperties` is false, and the type and
/// enum of each (enough to catch a catalogue that names the wrong object).
fn conforms(value: &Value, schema: &Value) -> Result<(), String> {
    let object = value.as_object().ok_or("not an object")?;
    let properties = schema["properties"].as_object().ok_or("no properties")?;
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        if !object.contains_key(name) {
            return Err(format!("{name} is missing"));
        }
    }
    for (name, field) in object {
        let Some(declared) = properties.get(name) else {
            return Err(format!("{name} is not in the schema"));
        };
        if let Some(allowed) = declared["enum"].as_array() {
            if !allowed.contains(field) {
                return Err(format!("{name} = {field} is not one of {allowed:?}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_catalogue_is_public_and_describes_the_events_sent() {
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let catalogue = api.send("GET", "/v1/event-types", None, None, &[]).await;
    assert_eq!(
        catalogue.status, 200,
        "public, no credential: {}",
        catalogue.body
    );
    assert_eq!(catalogue.body["object"], "list");
    assert_eq!(catalogue.body["has_more"], false);
    let types = catalogue.body["data"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["type"].as_str().unwrap()).collect();
    let expected: Vec<&str> = mandate_domain::events::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(names, expected, "every type, in the catalogue's order");
    // The served document describes the same types as webhooks, one entry each.
    let document = api.send("GET", "/openapi.json", None, None, &[]).await;
    let mut documented: Vec<&str> = document.body["webhooks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = expected.clone();
    sorted.sort_unstable();
    documented.sort_unstable();
    assert_eq!(
        documented, sorted,
        "the document's webhooks are the catalogue"
    );
    for event_type in types {
        assert_eq!(event_type["object"], "event_type");
        assert!(
            event_type["description"]
                .as_str()
                .is_some_and(|d| d.len() > 10)
        );
        assert!(!event_type["subscribers"].as_array().unwrap().is_empty());
        assert_eq!(
            event_type["schema"]["properties"]["object"]["enum"][0], event_type["data_object"],
            "{}: the schema is of the object it names",
            event_type["type"]
        );
    }
    let by_type = |name: &str| {
        types
            .iter()
            .find(|t| t["type"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue"))
    };
    assert_eq!(
        by_type("webhook_endpoint.disabled")["subscribers"],
        json!(["platform", "destination"])
    );
    assert_eq!(
        by_type("claim.submitted")["subscribers"],
        json!(["orchestrator", "platform", "destination"])
    );

    // The events the server sends carry objects of the schema their type names.
    let tenant = tenant(&api).await;
    let owner = Caller {
        key: tenant.destination_key.clone(),
        client_id: None,
    };
    create_request(&api, &owner, "incoming").await;
    let customer = owner
        .send(
            &api,
            "POST",
            "/v1/customers",
            Some(json!({"email": "c@example.com"})),
        )
        .await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    let events = api.get("/v1/events", &tenant.destination_key).await;
    let events = events.body["data"].as_array().unwrap();
    assert!(events.len() >= 2, "{events:?}");
    for event in events {
        let described = by_type(event["type"].as_str().unwrap());
        if let Err(problem) = conforms(&event["data"]["object"], &described["schema"]) {
            panic!(
                "{} does not match its catalogue schema: {problem}",
                event["type"]
            );
        }
    }
}
