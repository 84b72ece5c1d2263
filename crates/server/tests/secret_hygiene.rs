//! No secret in the logs or in the database: a server on PostgreSQL, logging at debug level as
//! JSON, goes through every credential there is — platform, destination and orchestrator keys
//! and their rotation, an OAuth access token, webhook endpoints and a secret rotation with
//! deliveries signed by both secrets, a payment link opened by a payer, a console session
//! with the endpoint secrets and the payment link it shows once — and afterwards neither its
//! captured output nor a dump of every table holds any of those secrets, the server's own
//! secrets from the data directory or the admin token.

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
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Server, TempDir, random_hex};

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
async fn dump(database: &FreshDatabase) -> (String, usize) {
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
    let database = FreshDatabase::create().await;
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

    // The console: a refused sign-in, a session used for a page and a change, a sign-out.
    let mut browser = support::console::Browser::new(&server.base);
    let wrong_key = "mnd_dest_wrong-key-for-the-console-log-check";
    let refused = browser.post("/console/login", &[("key", wrong_key)]).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    secrets.add("refused console key", wrong_key);
    browser.sign_in(destination).await;
    secrets.add("console session token", &browser.cookies["mandate_session"]);
    let csrf = browser.csrf_token().await;
    secrets.add("console csrf token", &csrf);
    let withdrawn = browser
        .post(
            &format!("/console/client-ids/{client_id}/withdraw"),
            &[
                ("permission", "read:incoming"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    // Secrets the console shows once: an endpoint's, its rotation, a payment link.
    let added = browser
        .post(
            "/console/webhooks",
            &[
                ("url", receiver.url.as_str()),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let console_endpoint = added.location().to_owned();
    let shown = browser.get(&console_endpoint).await;
    secrets.add("console webhook secret", &shown.revealed().unwrap());
    let rotated = browser
        .post(
            &format!("{console_endpoint}/rotate-secret"),
            &[("csrf_token", csrf.as_str())],
        )
        .await;
    assert_eq!(rotated.status, 303, "{}", rotated.body);
    let shown = browser.get(rotated.location()).await;
    secrets.add("console rotated webhook secret", &shown.revealed().unwrap());
    let linked = browser
        .post(
            &format!("/console/requests/{request_id}/payment-links"),
            &[("csrf_token", csrf.as_str())],
        )
        .await;
    assert_eq!(linked.status, 303, "{}", linked.body);
    let shown = browser.get(linked.location()).await;
    let console_link = shown.revealed().unwrap();
    secrets.add(
        "console payment link token",
        console_link.rsplit_once("/pay/").unwrap().1,
    );
    let opened = api.client.get(&console_link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let signed_out = browser
        .post("/console/logout", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(signed_out.status, 303, "{}", signed_out.body);

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

/// Each POST that shows a secret, sent with an `Idempotency-Key`, then replayed: the replay
/// repeats the secret (the answer is kept), and `look` finds none of them at rest.
async fn keyed_secrets(api: &Api) -> Secrets {
    let mut secrets = Secrets::default();
    let mut keyed = async |what: &str, path: &str, token: &str, body: Value, field: &str| {
        let key = format!("hygiene-{}", random_hex(8));
        let headers = [("idempotency-key", key.as_str())];
        let first = api
            .send("POST", path, Some(token), Some(body.clone()), &headers)
            .await;
        let secret = created(&first, field);
        let again = api
            .send("POST", path, Some(token), Some(body), &headers)
            .await;
        assert_eq!(again.headers["idempotent-replayed"], "true", "{what}");
        assert_eq!(again.body, first.body, "{what}: the replay differs");
        secrets.add(what, &secret);
        first
    };
    let organization = keyed(
        "platform key",
        "/v1/admin/organizations",
        ADMIN_TOKEN,
        json!({"name": "Keyed"}),
        "platform_key",
    )
    .await;
    let platform = organization.body["platform_key"]
        .as_str()
        .unwrap()
        .to_owned();
    keyed(
        "second platform key",
        "/v1/organization/keys",
        &platform,
        json!({}),
        "key",
    )
    .await;
    let slug = format!("shop-{}", random_hex(6));
    let destination = api
        .post(
            "/v1/destinations",
            &platform,
            json!({"slug": slug, "display_name": "Shop"}),
        )
        .await;
    let destination_id = created(&destination, "id");
    let destination_key = keyed(
        "destination key",
        &format!("/v1/destinations/{destination_id}/keys"),
        &platform,
        json!({}),
        "key",
    )
    .await;
    let destination_key = destination_key.body["key"].as_str().unwrap().to_owned();
    let orchestrator_slug = format!("orc-{}", random_hex(6));
    let orchestrator = keyed(
        "orchestrator key",
        "/v1/admin/orchestrators",
        ADMIN_TOKEN,
        json!({"slug": orchestrator_slug, "name": "Keyed"}),
        "api_key",
    )
    .await;
    let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
    keyed(
        "second orchestrator key",
        "/v1/orchestrator/keys",
        &orchestrator_key,
        json!({}),
        "key",
    )
    .await;
    let endpoint = keyed(
        "webhook secret",
        "/v1/webhook-endpoints",
        &destination_key,
        json!({"url": "http://127.0.0.1:9/keyed", "event_types": ["*"]}),
        "secret",
    )
    .await;
    let endpoint_id = created(&endpoint, "id");
    keyed(
        "rotated webhook secret",
        &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
        &destination_key,
        json!({}),
        "secret",
    )
    .await;
    let request = api
        .post(
            "/v1/requests",
            &destination_key,
            json!({"direction": "incoming", "amount": "5", "currency": "USD"}),
        )
        .await;
    let request_id = created(&request, "id");
    let link = keyed(
        "payment link url",
        &format!("/v1/requests/{request_id}/payment-links"),
        &destination_key,
        json!({}),
        "url",
    )
    .await;
    let url = created(&link, "url");
    secrets.add("payment link token", url.rsplit_once("/pay/").unwrap().1);
    secrets
}

/// A server that accepts loopback webhook targets.
async fn keyed_server(data_dir: &std::path::Path, database: &Database) -> Server {
    let mut command = support::mandate_command(data_dir, database);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
    Server::start_with(command, data_dir).await
}

/// The mode bits of `path` (permissions only).
#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_idempotent_answers_keep_no_secret_in_clear() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = keyed_server(&data.0, &Database::Postgres(database.url.clone())).await;
    let secrets = keyed_secrets(&server.api()).await;
    let (tables, rows) = dump(&database).await;
    assert!(
        tables
            .lines()
            .filter(|line| line.starts_with("idempotency_keys: "))
            .count()
            >= 8,
        "the dump misses the idempotency records ({rows} rows)"
    );
    let in_tables = secrets.found_in(&tables);
    assert!(
        in_tables.is_empty(),
        "secrets in plain text in the database: {in_tables:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_idempotent_answers_keep_no_secret_in_clear_and_files_are_private() {
    let parent = TempDir::new();
    // A data directory the server creates itself.
    let data_dir = parent.0.join("data");
    let server = keyed_server(&data_dir, &Database::Sqlite).await;
    let secrets = keyed_secrets(&server.api()).await;
    // Every byte the database keeps, its WAL's included, as another local user could read them.
    let mut stored = String::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mandate.db") {
            stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            files += 1;
        }
    }
    assert!(files >= 2, "the database and its WAL");
    assert!(
        stored.contains("idempotency_keys"),
        "the files hold the idempotency table"
    );
    let at_rest = secrets.found_in(&stored);
    assert!(
        at_rest.is_empty(),
        "secrets in plain text in the SQLite files: {at_rest:?}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&data_dir), 0o700, "the data directory");
        for name in ["mandate.db", "mandate.db-wal", "mandate.db-shm"] {
            assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
        }
    }
    drop(server);
}
