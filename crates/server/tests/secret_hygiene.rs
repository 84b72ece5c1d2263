//! No secret in the logs or in the database: a server on PostgreSQL, logging at debug level as
//! JSON, goes through every credential there is — platform, destination and orchestrator keys
//! and their rotation, an OAuth access token, webhook endpoints and a secret rotation with
//! deliveries signed by both secrets, a payment link opened by a payer — and afterwards
//! neither its captured output nor a dump of every table holds any of those secrets, the
//! server's own secrets from the data directory or the admin token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::receiver::Receiver;
use support::{ADMIN_TOKEN, Api, Database, FreshPostgres, Server, TempDir, random_hex};

/// The secrets to look for, by what they are.
#[derive(Default)]
struct Secrets(BTreeMap<String, String>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, secret: &str) {
        assert!(secret.len() >= 16, "a secret this short is a test bug");
        self.0.insert(what.into(), secret.to_owned());
    }

    /// The secrets that occur in `haystack`, by name.
    fn found_in(&self, haystack: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, secret)| haystack.contains(secret.as_str()))
            .map(|(what, _)| what.as_str())
            .collect()
    }
}

fn created(reply: &support::Reply, field: &str) -> String {
    assert!(
        reply.status == 201 || reply.status == 200,
        "{}: {}",
        reply.status,
        reply.body
    );
    reply.body[field].as_str().unwrap().to_owned()
}

async fn access_token(api: &Api, client_id: &str, secret: &str) -> String {
    let reply = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Every row of every table of the database, as text.
async fn dump(database: &FreshPostgres) -> (String, usize) {
    let client = database.client().await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 10, "only {} tables", tables.len());
    let mut text = String::new();
    let mut rows = 0;
    for table in &tables {
        let name: String = table.get(0);
        let query = format!("SELECT t::text FROM \"{name}\" t");
        for row in client.query(query.as_str(), &[]).await.unwrap() {
            let line: String = row.get(0);
            text.push_str(&name);
            text.push_str(": ");
            text.push_str(&line);
            text.push('\n');
            rows += 1;
        }
    }
    (text, rows)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_logs_or_the_database() {
    let database = FreshPostgres::create().await;
    let data = TempDir::new();
    let log_path = data.0.join("server.log");
    let log = File::create(&log_path).unwrap();
    let mut command = support::mandate_command(&data.0, &Database::Postgres(database.url.clone()));
    command
        .env("MANDATE__LOG__LEVEL", "debug")
        .env("MANDATE__LOG__FORMAT", "json")
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    let mut server = Server::start_with_output(
        command,
        &data.0,
        Stdio::from(log.try_clone().unwrap()),
        Stdio::from(log),
    )
    .await;
    let api = server.api();
    let mut secrets = Secrets::default();
    secrets.add("admin token", ADMIN_TOKEN);

    // Keys of every kind, each rotated.
    let tenant = support::tenant(&api).await;
    secrets.add("platform key", &tenant.platform_key);
    secrets.add("destination key", &tenant.destination_key);
    let platform = tenant.platform_key.as_str();
    let destination = tenant.destination_key.as_str();
    let second_platform = api.post("/v1/organization/keys", platform, json!({})).await;
    secrets.add("rotated platform key", &created(&second_platform, "key"));
    let second_destination = api
        .post(
            &format!("/v1/destinations/{}/keys", tenant.destination_id),
            destination,
            json!({}),
        )
        .await;
    secrets.add(
        "rotated destination key",
        &created(&second_destination, "key"),
    );
    let revoked = api
        .send(
            "DELETE",
            &format!("/v1/organization/keys/{}", created(&second_platform, "id")),
            Some(platform),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    let slug = format!("orc-{}", random_hex(6));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Hygiene"}),
        )
        .await;
    let orchestrator_key = created(&orchestrator, "api_key");
    secrets.add("orchestrator key", &orchestrator_key);
    let second_orchestrator = api
        .post("/v1/orchestrator/keys", &orchestrator_key, json!({}))
        .await;
    secrets.add(
        "rotated orchestrator key",
        &created(&second_orchestrator, "key"),
    );

    // A client ID used by key and by access token (the key is the OAuth client secret).
    let client = api
        .post(
            "/v1/client-ids",
            destination,
            json!({"orchestrator": slug, "permissions": ["create:incoming", "read:incoming"]}),
        )
        .await;
    let client_id = created(&client, "id");
    let token = access_token(&api, &client_id, &orchestrator_key).await;
    secrets.add("access token", &token);
    let listed = api.get("/v1/requests", &token).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    // A refused secret is not logged either.
    let refused = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", "mnd_orch_wrong-secret-for-the-log-check"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    secrets.add(
        "refused client secret",
        "mnd_orch_wrong-secret-for-the-log-check",
    );

    // Webhook endpoints: a destination's and a client's, one secret rotated while events go out.
    let receiver = Receiver::start(&[]).await;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            destination,
            json!({"url": receiver.url, "event_types": ["*"]}),
        )
        .await;
    let endpoint_id = created(&endpoint, "id");
    secrets.add("webhook secret", &created(&endpoint, "secret"));
    let client_endpoint = api
        .send(
            "POST",
            "/v1/webhook-endpoints",
            Some(&orchestrator_key),
            Some(json!({"url": receiver.url, "event_types": ["payment_request.*"]})),
            &[("x-client-id", client_id.as_str())],
        )
        .await;
    secrets.add(
        "client's webhook secret",
        &created(&client_endpoint, "secret"),
    );
    let rotated = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
            destination,
            json!({}),
        )
        .await;
    secrets.add("rotated webhook secret", &created(&rotated, "secret"));

    // A payment request by the client, a payment link, and the payer opening it.
    let request = api
        .send(
            "POST",
            "/v1/requests",
            Some(&token),
            Some(json!({"direction": "incoming", "amount": "12.50", "currency": "USD"})),
            &[],
        )
        .await;
    let request_id = created(&request, "id");
    let link = api
        .post(
            &format!("/v1/requests/{request_id}/payment-links"),
            destination,
            json!({}),
        )
        .await;
    let url = created(&link, "url");
    let link_token = url.rsplit_once("/pay/").unwrap().1.to_owned();
    secrets.add("payment link token", &link_token);
    let page = api
        .client
        .get(server.url(&format!("/pay/{link_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let as_json = api
        .client
        .get(server.url(&format!("/pay/{link_token}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), 200);
    let tested = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/test"),
            destination,
            json!({}),
        )
        .await;
    assert_eq!(tested.status, 200, "{}", tested.body);

    // Wait until the deliveries (signed with the secrets) went out and were logged.
    receiver
        .wait_for(
            Duration::from_secs(30),
            "the created event for both endpoints and the test event",
            |received| {
                let about =
                    |needle: &str| received.iter().filter(|r| r.body.contains(needle)).count();
                about(&request_id) >= 2 && about("webhook.test") >= 1
            },
        )
        .await;
    // During the grace period the rotated endpoint signs with both secrets.
    assert!(
        receiver
            .received()
            .iter()
            .any(|r| r.signature.split(' ').count() == 2),
        "no delivery carried both signatures"
    );

    // The server's own secrets, as stored in the data directory and as raw bytes in hex.
    for name in ["key_hash_secret", "token_signing_key"] {
        let stored = std::fs::read_to_string(data.0.join(name)).unwrap();
        let stored = stored.trim();
        secrets.add(format!("{name} (as stored)"), stored);
        let raw = STANDARD.decode(stored).unwrap();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        secrets.add(format!("{name} (hex)"), &hex);
        secrets.add(
            format!("{name} (base64url)"),
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw),
        );
    }

    server.stop();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines = logs.lines().count();
    assert!(lines > 50, "only {lines} log lines: is debug logging on?");
    assert!(
        logs.lines().all(|line| line.starts_with('{')),
        "not every log line is JSON"
    );
    assert!(logs.contains("\"DEBUG\""), "no debug line was logged");
    let in_logs = secrets.found_in(&logs);
    assert!(
        in_logs.is_empty(),
        "secrets in the server's output: {in_logs:?}"
    );

    let (tables, rows) = dump(&database).await;
    assert!(rows > 20, "only {rows} rows dumped");
    for id in [&request_id, &endpoint_id, &client_id] {
        assert!(tables.contains(id.as_str()), "the dump misses {id}");
    }
    let in_tables = secrets.found_in(&tables);
    assert!(
        in_tables.is_empty(),
        "secrets in plain text in the database: {in_tables:?}"
    );
    println!(
        "secret hygiene: {} secrets checked against {lines} log lines and {rows} rows",
        secrets.0.len()
    );
}
