//! Schemathesis against the served `/openapi.json`: every operation is called with generated
//! inputs by a caller it admits, on real objects (each path parameter names one that exists,
//! made for that operation), and every answer must be no 5xx and match the documented schema
//! of its status (`not_a_server_error`, `response_schema_conformance`). Bounded for the test
//! suite: a fixed seed and few examples per operation (`MANDATE_SCHEMATHESIS_EXAMPLES`
//! raises it for a deeper run). Prints the number of cases, for the record in
//! `docs/security.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fmt::Write as _;
use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use mandate_signatures::AgentSigner;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, Reply, Server, TempDir, random_hex};

const PYTHON_ENV: &str = "MANDATE_TEST_PYTHON";
/// Examples per operation and phase in the test suite; the environment may raise it.
const EXAMPLES: u32 = 5;
const SEED: u64 = 9421;
/// The whole run must finish in this time.
const LIMIT: Duration = Duration::from_secs(600);

fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{PYTHON_ENV} is not set: run `cargo xtask test`, which installs `schemathesis` \
                 and names the Python interpreter that has it"
            )
        })
}

fn created_id(reply: &Reply, what: &str) -> String {
    assert_eq!(reply.status, 201, "creating {what}: {}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// The credentials and objects the operations are called with.
struct World<'a> {
    api: &'a Api,
    base: String,
    platform_key: String,
    destination_id: String,
    destination_slug: String,
    destination_key: String,
    orchestrator_slug: String,
    orchestrator_key: String,
    client_id: String,
    access_token: String,
    link_token: String,
    event_id: String,
}

/// Who calls an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Public,
    Admin,
    Platform,
    Destination,
    Orchestrator,
    /// The orchestrator's key with `X-Client-Id`.
    ClientByHeader,
    /// An OAuth access token.
    ClientByToken,
}

impl Caller {
    /// The caller for an operation admitting `kinds`: clients on payment requests and
    /// customers (by key) and events (by token), so that every credential kind is exercised;
    /// else the destination's owner, else the only kind admitted.
    fn choose(path: &str, kinds: &[&str]) -> Self {
        let admits = |kind: &str| kinds.contains(&kind);
        if admits("public") {
            Caller::Public
        } else if admits("client")
            && (path.starts_with("/v1/requests") || path.starts_with("/v1/customers"))
        {
            Caller::ClientByHeader
        } else if admits("client") && path.starts_with("/v1/events") {
            Caller::ClientByToken
        } else if admits("destination") {
            Caller::Destination
        } else if admits("platform") {
            Caller::Platform
        } else if admits("orchestrator") {
            Caller::Orchestrator
        } else {
            assert!(admits("admin"), "{path} admits {kinds:?}");
            Caller::Admin
        }
    }
}

impl<'a> World<'a> {
    async fn new(api: &'a Api, base: &str) -> Self {
        let tenant = support::tenant(api).await;
        let destination = api
            .get(
                &format!("/v1/destinations/{}", tenant.destination_id),
                &tenant.destination_key,
            )
            .await;
        let destination_slug = destination.body["slug"].as_str().unwrap().to_owned();
        let orchestrator_slug = format!("orc-{}", random_hex(6));
        let orchestrator = api
            .post(
                "/v1/admin/orchestrators",
                ADMIN_TOKEN,
                json!({"slug": orchestrator_slug, "name": "Schemathesis"}),
            )
            .await;
        assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
        let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
        let all = [
            "create:incoming",
            "create:outgoing",
            "read:incoming",
            "read:outgoing",
            "customers:read",
            "customers:write",
            "payments:report",
        ];
        let issued = api
            .post(
                "/v1/client-ids",
                &tenant.destination_key,
                json!({"orchestrator": orchestrator_slug, "permissions": all}),
            )
            .await;
        let client_id = created_id(&issued, "a client ID");
        let token = api
            .client
            .post(format!("{base}/v1/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", orchestrator_key.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(token.status(), 200);
        let token: Value = token.json().await.unwrap();
        let mut world = Self {
            api,
            base: base.to_owned(),
            platform_key: tenant.platform_key,
            destination_id: tenant.destination_id,
            destination_slug,
            destination_key: tenant.destination_key,
            orchestrator_slug,
            orchestrator_key,
            client_id,
            access_token: token["access_token"].as_str().unwrap().to_owned(),
            link_token: String::new(),
            event_id: String::new(),
        };
        let request = world.request().await;
        let link = api
            .post(
                &format!("/v1/requests/{request}/payment-links"),
                &world.destination_key,
                json!({}),
            )
            .await;
        assert_eq!(link.status, 201, "{}", link.body);
        world.link_token = link.body["url"]
            .as_str()
            .unwrap()
            .rsplit_once("/pay/")
            .unwrap()
            .1
            .to_owned();
        let events = api.get("/v1/events", &world.access_token).await;
        world.event_id = events.body["data"][0]["id"].as_str().unwrap().to_owned();
        world
    }

    /// The bearer credential and headers of a caller.
    fn headers(&self, caller: Caller) -> Vec<(&'static str, String)> {
        let bearer = |token: &str| ("Authorization", format!("Bearer {token}"));
        match caller {
            Caller::Public => vec![],
            Caller::Admin => vec![bearer(ADMIN_TOKEN)],
            Caller::Platform => vec![
                bearer(&self.platform_key),
                ("X-Destination-Id", self.destination_id.clone()),
            ],
            Caller::Destination => vec![bearer(&self.destination_key)],
            Caller::Orchestrator => vec![bearer(&self.orchestrator_key)],
            Caller::ClientByHeader => vec![
                bearer(&self.orchestrator_key),
                ("X-Client-Id", self.client_id.clone()),
            ],
            Caller::ClientByToken => vec![bearer(&self.access_token)],
        }
    }

    /// A payment request of the client, open.
    async fn request(&self) -> String {
        let reply = self
            .api
            .send(
                "POST",
                "/v1/requests",
                Some(&self.orchestrator_key),
                Some(json!({"direction": "incoming", "amount": "25", "currency": "USD"})),
                &[("x-client-id", self.client_id.as_str())],
            )
            .await;
        created_id(&reply, "a payment request")
    }

    async fn claim(&self) -> String {
        let signer = AgentSigner::generate();
        let body = json!({
            "namespace": self.destination_slug,
            "public_key": signer.key_id(),
            "service": self.orchestrator_slug,
            "ip_address": "203.0.113.7",
            "nonce": format!("nonce-{}", random_hex(8)),
            "agent_id": format!("agent-{}", random_hex(4)),
            "agent_name": "Schemathesis agent",
        })
        .to_string();
        let url = format!("{}/v1/claims", self.base);
        let nonce = random_hex(12);
        let signed = signer
            .sign(
                "POST",
                &url,
                &[],
                body.as_bytes(),
                chrono::Utc::now().timestamp(),
                &nonce,
            )
            .unwrap();
        let mut request = self
            .api
            .client
            .post(&url)
            .bearer_auth(&self.orchestrator_key)
            .header("content-type", "application/json");
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        let reply = request.body(body).send().await.unwrap();
        assert_eq!(reply.status(), 201, "submitting a claim");
        let reply: Value = reply.json().await.unwrap();
        reply["id"].as_str().unwrap().to_owned()
    }

    /// The value of path parameter `name` for `method path`: an object made for it when the
    /// operation changes or ends it.
    async fn parameter(&self, method: &str, path: &str, name: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let position = segments
            .iter()
            .position(|segment| *segment == format!("{{{name}}}"))
            .unwrap();
        let collection = segments[position - 1];
        match (collection, name) {
            ("pay", "token") => self.link_token.clone(),
            ("permissions", "permission") => "read:outgoing".to_owned(),
            ("destinations", "id") => self.destination_id.clone(),
            ("keys", "key_id") if path.starts_with("/v1/destinations") => {
                self.key(
                    &format!("/v1/destinations/{}/keys", self.destination_id),
                    &self.platform_key,
                )
                .await
            }
            ("keys", "key_id") if path.starts_with("/v1/organization") => {
                self.key("/v1/organization/keys", &self.platform_key).await
            }
            ("keys", "key_id") => {
                self.key("/v1/orchestrator/keys", &self.orchestrator_key)
                    .await
            }
            ("client-ids", "id") if method == "GET" => self.client_id.clone(),
            ("client-ids", "id") => {
                let issued = self
                    .api
                    .post(
                        "/v1/client-ids",
                        &self.destination_key,
                        json!({"orchestrator": self.orchestrator_slug}),
                    )
                    .await;
                created_id(&issued, "a client ID")
            }
            ("requests", "id") => self.request().await,
            ("customers", "id") => {
                let created = self
                    .api
                    .post(
                        "/v1/customers",
                        &self.destination_key,
                        json!({"email": format!("st-{}@example.com", random_hex(4))}),
                    )
                    .await;
                created_id(&created, "a customer")
            }
            ("claims", "id") => self.claim().await,
            ("webhook-endpoints", "id") => self.endpoint().await,
            ("webhook-deliveries", "id") => {
                let endpoint = self.endpoint().await;
                let tested = self
                    .api
                    .post(
                        &format!("/v1/webhook-endpoints/{endpoint}/test"),
                        &self.destination_key,
                        json!({}),
                    )
                    .await;
                assert_eq!(tested.status, 200, "{}", tested.body);
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let deliveries = self
                        .api
                        .get(
                            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
                            &self.destination_key,
                        )
                        .await;
                    if let Some(id) = deliveries.body["data"][0]["id"].as_str() {
                        return id.to_owned();
                    }
                    assert!(Instant::now() < deadline, "no delivery within 20 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            ("events", "id") => self.event_id.clone(),
            _ => panic!("no value for {{{name}}} in {method} {path}"),
        }
    }

    /// A new key, never the one the operations are called with.
    async fn key(&self, path: &str, token: &str) -> String {
        created_id(&self.api.post(path, token, json!({})).await, "a key")
    }

    async fn endpoint(&self) -> String {
        let created = self
            .api
            .post(
                "/v1/webhook-endpoints",
                &self.destination_key,
                json!({"url": "http://127.0.0.1:9/schemathesis", "event_types": ["*"]}),
            )
            .await;
        created_id(&created, "a webhook endpoint")
    }
}

/// A TOML basic string.
fn toml(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_documented_to_generated_requests() {
    let python = python();
    let examples = std::env::var("MANDATE_SCHEMATHESIS_EXAMPLES")
        .ok()
        .and_then(|value| value.parse::<u32>().ok())
        .unwrap_or(EXAMPLES);
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    // Webhook endpoints point at a closed local port: nothing resolves names in the tests.
    command
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0")
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let world = World::new(&api, &server.base).await;

    let document = api.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(document.status, 200);
    let mut config = String::new();
    let mut operations = 0;
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let kinds: Vec<&str> = operation["x-principals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kind| kind.as_str().unwrap())
                .collect();
            let caller = Caller::choose(path, &kinds);
            writeln!(config, "[[operations]]").unwrap();
            writeln!(
                config,
                "include-name = {}",
                toml(&format!("{method} {path}"))
            )
            .unwrap();
            let headers: Vec<String> = world
                .headers(caller)
                .iter()
                .map(|(name, value)| format!("{} = {}", toml(name), toml(value)))
                .collect();
            writeln!(config, "headers = {{ {} }}", headers.join(", ")).unwrap();
            let mut parameters = Vec::new();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().unwrap();
                    let value = world.parameter(&method, path, name).await;
                    parameters.push(format!(
                        "{} = {}",
                        toml(&format!("path.{name}")),
                        toml(&value)
                    ));
                }
            }
            writeln!(config, "parameters = {{ {} }}", parameters.join(", ")).unwrap();
            operations += 1;
        }
    }
    let config_path = data.0.join("schemathesis.toml");
    std::fs::write(&config_path, &config).unwrap();

    let started = Instant::now();
    let stdout_path = data.0.join("schemathesis.out");
    let stderr_path = data.0.join("schemathesis.err");
    let mut child = Command::new(&python)
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config_path)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            // One worker: with several threads, Hypothesis parses lambda sources concurrently,
            // and CPython 3.11's `ast` recursion-depth bookkeeping is not thread-safe (it fails
            // at random with "AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--max-examples",
            &examples.to_string(),
            "--seed",
            &SEED.to_string(),
            "--request-timeout",
            "10",
        ])
        .current_dir(&data.0)
        .env("NO_COLOR", "1")
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .expect("schemathesis could not run; is it installed for MANDATE_TEST_PYTHON?");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis did not finish within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let cases = stdout
        .lines()
        .find(|line| line.contains(" generated, "))
        .map(str::trim)
        .unwrap_or("<no case count>");
    println!(
        "schemathesis: {operations} operations, {examples} examples per operation and phase, \
         seed {SEED}: {cases} in {:.0?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not every operation was tested:\n{stdout}"
    );
}
