//! The seed's stories end to end: two orchestrators on one destination, each seeing only
//! what it created until granted more, and losing access the moment it is taken away.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Reply, Server, TempDir, ids, tenant};

/// An orchestrator's key acting through one client ID.
struct Acting<'a> {
    api: &'a Api,
    key: String,
    client_id: String,
}

impl Acting<'_> {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let headers = [("x-client-id", self.client_id.as_str())];
        self.api
            .send(method, path, Some(&self.key), body, &headers)
            .await
    }

    async fn create(&self, direction: &str) -> Reply {
        let body = json!({"direction": direction, "amount": "10.50", "currency": "USD", "reference": "INV-1"});
        self.send("POST", "/v1/requests", Some(body)).await
    }

    async fn listed_ids(&self) -> Vec<String> {
        let listed = self.send("GET", "/v1/requests?limit=100", None).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        ids(&listed.body)
    }
}

async fn orchestrator(api: &Api, slug: &str) -> String {
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": slug}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["api_key"].as_str().unwrap().to_owned()
}

async fn stories(api: &Api) {
    let tenant = tenant(api).await;
    let suffix = support::random_hex(3);
    let (slug_a, slug_b) = (format!("orc-a-{suffix}"), format!("orc-b-{suffix}"));
    let key_a = orchestrator(api, &slug_a).await;
    let key_b = orchestrator(api, &slug_b).await;

    // The destination owner issues one client ID to each orchestrator.
    let issue = |slug: String| {
        let key = tenant.destination_key.clone();
        async move {
            api.post(
                "/v1/client-ids",
                &key,
                json!({"orchestrator": slug, "label": "shop"}),
            )
            .await
        }
    };
    let client_a = issue(slug_a.clone()).await;
    assert_eq!(client_a.status, 201, "{}", client_a.body);
    assert_eq!(
        client_a.body["permissions"],
        json!(["create:incoming", "create:outgoing"])
    );
    assert_eq!(client_a.body["version"], 1);
    let client_b = issue(slug_b.clone()).await;
    let a = Acting {
        api,
        key: key_a.clone(),
        client_id: client_a.body["id"].as_str().unwrap().to_owned(),
    };
    let b = Acting {
        api,
        key: key_b.clone(),
        client_id: client_b.body["id"].as_str().unwrap().to_owned(),
    };

    // A creates incoming and outgoing requests and a payment link, and reads their status.
    let incoming = a.create("incoming").await;
    assert_eq!(incoming.status, 201, "{}", incoming.body);
    assert_eq!(incoming.body["client_id"], a.client_id.as_str());
    assert_eq!(
        (
            incoming.body["status"].as_str(),
            incoming.body["amount"].as_str()
        ),
        (Some("open"), Some("10.50"))
    );
    let incoming_id = incoming.body["id"].as_str().unwrap().to_owned();
    let outgoing = a.create("outgoing").await;
    assert_eq!(outgoing.status, 201);
    let outgoing_id = outgoing.body["id"].as_str().unwrap().to_owned();
    let link = a
        .send(
            "POST",
            &format!("/v1/requests/{incoming_id}/payment-links"),
            Some(json!({})),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    assert!(link.body["url"].as_str().unwrap().contains("/pay/"));
    for id in [&incoming_id, &outgoing_id] {
        let read = a.send("GET", &format!("/v1/requests/{id}"), None).await;
        assert_eq!(
            (read.status, read.body["status"].as_str()),
            (200, Some("open"))
        );
    }
    assert_eq!(
        a.listed_ids().await,
        vec![outgoing_id.clone(), incoming_id.clone()]
    );

    // B sees none of it: 404 by id, absent from its list.
    for id in [&incoming_id, &outgoing_id] {
        let hidden = b.send("GET", &format!("/v1/requests/{id}"), None).await;
        assert_eq!((hidden.status, hidden.code()), (404, "NOT_FOUND"));
        let no_link = b
            .send(
                "POST",
                &format!("/v1/requests/{id}/payment-links"),
                Some(json!({})),
            )
            .await;
        assert_eq!(no_link.status, 404);
    }
    assert!(b.listed_ids().await.is_empty());

    // B with A's client ID header is refused.
    let borrowed = Acting {
        api,
        key: key_b.clone(),
        client_id: a.client_id.clone(),
    };
    let refused = borrowed.send("GET", "/v1/requests", None).await;
    assert_eq!((refused.status, refused.code()), (403, "FORBIDDEN"));

    // After create:incoming is withdrawn, A cannot create incoming but can create outgoing
    // and still reads its own requests.
    let withdrawn = api
        .send(
            "DELETE",
            &format!("/v1/client-ids/{}/permissions/create:incoming", a.client_id),
            Some(&tenant.destination_key),
            None,
            &[],
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    assert_eq!(
        (
            withdrawn.body["permissions"].clone(),
            withdrawn.body["version"].clone()
        ),
        (json!(["create:outgoing"]), json!(2))
    );
    let no_incoming = a.create("incoming").await;
    assert_eq!((no_incoming.status, no_incoming.code()), (403, "FORBIDDEN"));
    let second_outgoing = a.create("outgoing").await;
    assert_eq!(second_outgoing.status, 201);
    assert_eq!(
        a.send("GET", &format!("/v1/requests/{incoming_id}"), None)
            .await
            .status,
        200
    );

    // After B is granted read:incoming, B sees A's incoming requests, never the outgoing ones.
    let granted = api
        .post(
            &format!("/v1/client-ids/{}/permissions", b.client_id),
            &tenant.destination_key,
            json!({"permission": "read:incoming"}),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(b.listed_ids().await, vec![incoming_id.clone()]);
    assert_eq!(
        b.send("GET", &format!("/v1/requests/{incoming_id}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        b.send("GET", &format!("/v1/requests/{outgoing_id}"), None)
            .await
            .status,
        404
    );
    // Seeing is not acting: B may not cancel A's request or report payments without the permission.
    let cancel = b
        .send("POST", &format!("/v1/requests/{incoming_id}/cancel"), None)
        .await;
    assert_eq!((cancel.status, cancel.code()), (403, "FORBIDDEN"));
    let pay = b
        .send(
            "POST",
            &format!("/v1/requests/{incoming_id}/payments"),
            Some(json!({"amount": "1", "reference": "x"})),
        )
        .await;
    assert_eq!(pay.status, 403);

    // The owner records payments: partial, then full, then over.
    let owner_pay = |amount: &'static str| {
        let key = tenant.destination_key.clone();
        let id = incoming_id.clone();
        async move {
            api.post(
                &format!("/v1/requests/{id}/payments"),
                &key,
                json!({"amount": amount, "reference": "0xfeed"}),
            )
            .await
        }
    };
    let partial = owner_pay("4").await;
    assert_eq!(partial.status, 201, "{}", partial.body);
    assert_eq!(partial.body["payment_request"]["status"], "partially_paid");
    let full = owner_pay("6.5").await;
    assert_eq!(
        (
            full.body["payment_request"]["status"].as_str(),
            full.body["payment_request"]["amount_paid"].as_str()
        ),
        (Some("paid"), Some("10.50"))
    );
    let over = owner_pay("1").await;
    assert_eq!(over.body["payment_request"]["amount_paid"], "11.50");
    let closed = api
        .post(
            &format!("/v1/requests/{outgoing_id}/cancel"),
            &tenant.destination_key,
            json!({}),
        )
        .await;
    assert_eq!(
        (closed.status, closed.body["status"].as_str()),
        (200, Some("cancelled"))
    );
    let late = api
        .post(
            &format!("/v1/requests/{outgoing_id}/payments"),
            &tenant.destination_key,
            json!({"amount": "1", "reference": "x"}),
        )
        .await;
    assert_eq!((late.status, late.code()), (409, "CONFLICT"));

    // A revoked client ID is refused everywhere, also with an access token issued before.
    let token_reply = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", a.client_id.as_str()),
            ("client_secret", key_a.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token_reply.status(), 200);
    let token_body: Value = token_reply.json().await.unwrap();
    let token = token_body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get(&format!("/v1/requests/{incoming_id}"), &token)
            .await
            .status,
        200
    );
    let revoked = api
        .post(
            &format!("/v1/client-ids/{}/revoke", a.client_id),
            &tenant.destination_key,
            json!({}),
        )
        .await;
    assert_eq!(
        (revoked.status, revoked.body["status"].as_str()),
        (200, Some("revoked"))
    );
    for (method, path) in [
        ("GET", format!("/v1/requests/{incoming_id}")),
        ("GET", "/v1/requests".to_owned()),
        ("POST", "/v1/requests".to_owned()),
    ] {
        let body = (method == "POST")
            .then(|| json!({"direction": "outgoing", "amount": "1", "currency": "USD"}));
        let reply = a.send(method, &path, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (403, "FORBIDDEN"),
            "{method} {path}"
        );
    }
    for path in [
        format!("/v1/requests/{incoming_id}"),
        "/v1/requests".to_owned(),
    ] {
        let reply = api.get(&path, &token).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "UNAUTHENTICATED"),
            "token on {path}"
        );
    }
    let regrant = api
        .post(
            &format!("/v1/client-ids/{}/permissions", a.client_id),
            &tenant.destination_key,
            json!({"permission": "read:incoming"}),
        )
        .await;
    assert_eq!(regrant.status, 409, "a revoked client ID stays revoked");

    // The orchestrator sees its client IDs, revoked ones too, and nobody else's.
    let listed = api.get("/v1/client-ids", &key_a).await;
    assert_eq!(ids(&listed.body), vec![a.client_id.clone()]);
    let only_active = api.get("/v1/client-ids?status=active", &key_a).await;
    assert!(ids(&only_active.body).is_empty());
    assert_eq!(
        api.get(&format!("/v1/client-ids/{}", b.client_id), &key_a)
            .await
            .status,
        404
    );

    // A platform key must name the destination to create; with it, it acts as the owner.
    let unnamed = api
        .post(
            "/v1/requests",
            &tenant.platform_key,
            json!({"direction": "incoming", "amount": "1", "currency": "USD"}),
        )
        .await;
    assert_eq!(
        (
            unnamed.status,
            unnamed.body["error"]["details"]["field"].as_str()
        ),
        (400, Some("X-Destination-Id"))
    );
    let named = api
        .send(
            "POST",
            "/v1/requests",
            Some(&tenant.platform_key),
            Some(json!({"direction": "incoming", "amount": "1", "currency": "USD"})),
            &[("x-destination-id", tenant.destination_id.as_str())],
        )
        .await;
    assert_eq!(
        (named.status, named.body["client_id"].clone()),
        (201, Value::Null)
    );
    let everything = api
        .get("/v1/requests?limit=100", &tenant.platform_key)
        .await;
    assert_eq!(ids(&everything.body).len(), 4);
    let filtered = api
        .get(
            "/v1/requests?direction=outgoing&status=cancelled",
            &tenant.platform_key,
        )
        .await;
    assert_eq!(ids(&filtered.body), vec![outgoing_id.clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_orchestrators_on_one_destination_on_sqlite() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    stories(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_orchestrators_on_one_destination_on_postgres() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    stories(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_input_is_validated_and_changes_nothing() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let cases = [
        (
            json!({"direction": "sideways", "amount": "1", "currency": "USD"}),
            "direction",
        ),
        (
            json!({"direction": "incoming", "amount": "0", "currency": "USD"}),
            "amount",
        ),
        (
            json!({"direction": "incoming", "amount": "1.0000000000000000001", "currency": "USD"}),
            "amount",
        ),
        (
            json!({"direction": "incoming", "amount": "-1", "currency": "USD"}),
            "amount",
        ),
        (
            json!({"direction": "incoming", "amount": "1", "currency": "U S D"}),
            "currency",
        ),
        (
            json!({"direction": "incoming", "amount": "1", "currency": "USD", "expires_at": "2000-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"direction": "incoming", "amount": "1", "currency": "USD", "reference": "x".repeat(129)}),
            "reference",
        ),
    ];
    for (body, field) in cases {
        let reply = api
            .post("/v1/requests", &tenant.destination_key, body.clone())
            .await;
        assert_eq!(
            (
                reply.status,
                reply.body["error"]["details"]["field"].as_str()
            ),
            (400, Some(field)),
            "{body}"
        );
    }
    let too_much_metadata: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let reply = api.post("/v1/requests", &tenant.destination_key, json!({"direction": "incoming", "amount": "1", "currency": "USD", "metadata": too_much_metadata})).await;
    assert_eq!(reply.status, 400);
    let numeric_amount = api
        .post(
            "/v1/requests",
            &tenant.destination_key,
            json!({"direction": "incoming", "amount": 1, "currency": "USD"}),
        )
        .await;
    assert_eq!(
        numeric_amount.status, 400,
        "amounts are strings, never floats"
    );
    let listed = api.get("/v1/requests", &tenant.destination_key).await;
    assert!(ids(&listed.body).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_expire_in_the_background_and_on_read() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let created = api
        .post(
            "/v1/requests",
            &tenant.destination_key,
            json!({"direction": "incoming", "amount": "5", "currency": "EUR", "expires_at": soon}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // Only the stored status answers a status filter, so this sees the background job's work.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let expired = api
            .get("/v1/requests?status=expired", &tenant.destination_key)
            .await;
        if ids(&expired.body).contains(&id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request was not expired in the background"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let late = api
        .post(
            &format!("/v1/requests/{id}/payments"),
            &tenant.destination_key,
            json!({"amount": "5", "reference": "r"}),
        )
        .await;
    assert_eq!((late.status, late.code()), (409, "CONFLICT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_over_its_rate_gets_429_with_retry_after() {
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
    let key = created.body["platform_key"].as_str().unwrap().to_owned();
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(api.get("/v1/organization", &key).await);
    }
    // The burst passes; right after it the bucket is empty (one token refills per second, so
    // a slow machine may let one more through, never all).
    assert!(replies[..3].iter().all(|reply| reply.status == 200));
    let limited = replies[3..]
        .iter()
        .find(|reply| reply.status == 429)
        .expect("a request past the burst is limited");
    assert_eq!(limited.code(), "RATE_LIMITED");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_replay_refuse_and_deduplicate() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let body = json!({"direction": "incoming", "amount": "7", "currency": "USD"});
    let post = |key: &'static str, body: Value, token: String| {
        let api = &api;
        async move {
            api.send(
                "POST",
                "/v1/requests",
                Some(&token),
                Some(body),
                &[("idempotency-key", key)],
            )
            .await
        }
    };

    let first = post("order-1", body.clone(), tenant.destination_key.clone()).await;
    let again = post("order-1", body.clone(), tenant.destination_key.clone()).await;
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(
        first.body, again.body,
        "the same key and body get the first response again"
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let different = post(
        "order-1",
        json!({"direction": "incoming", "amount": "8", "currency": "USD"}),
        tenant.destination_key.clone(),
    )
    .await;
    assert_eq!((different.status, different.code()), (409, "CONFLICT"));

    // A refusal is kept too: the same key and body get it again, another body gets 409.
    let invalid = json!({"direction": "incoming", "amount": "-1", "currency": "USD"});
    let refused = post("order-3", invalid.clone(), tenant.destination_key.clone()).await;
    let refused_again = post("order-3", invalid, tenant.destination_key.clone()).await;
    assert_eq!((refused.status, refused_again.status), (400, 400));
    assert_eq!(refused.body, refused_again.body);
    assert_eq!(refused_again.headers["idempotent-replayed"], "true");
    let corrected = post("order-3", body.clone(), tenant.destination_key.clone()).await;
    assert_eq!((corrected.status, corrected.code()), (409, "CONFLICT"));

    // Concurrent duplicates create one resource; the others replay it or are told to retry.
    let attempts = (0..8).map(|_| post("order-2", body.clone(), tenant.destination_key.clone()));
    let replies = futures_util::future::join_all(attempts).await;
    let created: std::collections::BTreeSet<String> = replies
        .iter()
        .filter(|reply| reply.status == 201)
        .map(|reply| reply.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created.len(), 1, "one resource for one key");
    assert!(
        replies
            .iter()
            .all(|reply| reply.status == 201 || reply.code() == "CONFLICT")
    );

    // Keys belong to the credential: another credential's same key is its own.
    let platform = api
        .send(
            "POST",
            "/v1/requests",
            Some(&tenant.platform_key),
            Some(body.clone()),
            &[
                ("idempotency-key", "order-1"),
                ("x-destination-id", tenant.destination_id.as_str()),
            ],
        )
        .await;
    assert_eq!(platform.status, 201);
    assert_ne!(platform.body["id"], first.body["id"]);

    let listed = api
        .get("/v1/requests?limit=100", &tenant.platform_key)
        .await;
    assert_eq!(ids(&listed.body).len(), 3);
    let too_long = "k".repeat(256);
    let refused = api
        .send(
            "POST",
            "/v1/requests",
            Some(&tenant.destination_key),
            Some(body),
            &[("idempotency-key", too_long.as_str())],
        )
        .await;
    assert_eq!(refused.status, 400);
}
