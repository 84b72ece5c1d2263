//! Operating Mandate, against the real binary on PostgreSQL: the Prometheus metrics, a
//! graceful shutdown on SIGTERM that loses no webhook, and JSON logs that carry request ids
//! and never a secret.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use support::receiver::Receiver;
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, TempDir, tenant};

const WAIT: Duration = Duration::from_secs(30);

/// A server process whose output goes to a file, stopped with SIGTERM or killed when dropped.
struct Process {
    child: Child,
    base: String,
    output: PathBuf,
}

impl Process {
    async fn start(mut command: Command, output: &Path) -> Self {
        let port = support::free_port();
        let file = std::fs::File::create(output).unwrap();
        let child = command
            .env("MANDATE__SERVER__BIND", format!("127.0.0.1:{port}"))
            .arg("serve")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            output: output.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            let healthy = client
                .get(format!("{}/healthz", process.base))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "the server exited during start: {status}\n{}",
                    process.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn api(&self) -> Api {
        support::Api::new(&self.base)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Sends SIGTERM, as an orchestrator stopping the process does.
    fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
    }

    /// The exit status, polled until `limit`.
    async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data: &TempDir, database: &FreshDatabase) -> Command {
    let mut command = support::mandate_command(&data.0, &Database::Postgres(database.url.clone()));
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", "0s,1s,1s")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    command
}

// ---------------------------------------------------------------------------------------
// Metrics

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap();
                (key.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect();
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().unwrap(),
        });
    }
    samples
}

/// The value of the series of `name` whose labels include `labels`; `None` when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .find(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|sample| sample.value)
}

async fn scrape(api: &Api) -> (String, Vec<Sample>) {
    let response = api
        .client
        .get(format!("{}/metrics", api.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let samples = parse_metrics(&text);
    (text, samples)
}

/// Scrapes until `done` holds, or fails after `limit` showing the last scrape.
async fn scrape_until(api: &Api, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (text, samples) = scrape(api).await;
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "no {what} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_auth_failures_and_deliveries() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Process::start(command(&data, &database), &data.0.join("output.log")).await;
    let api = server.api();
    let tenant = tenant(&api).await;

    // Two reads of one route with different ids: one series, labelled by the template.
    let destination = format!("/v1/destinations/{}", tenant.destination_id);
    assert_eq!(
        api.get(&destination, &tenant.platform_key).await.status,
        200
    );
    assert_eq!(
        api.get(&destination, &tenant.platform_key).await.status,
        200
    );
    let missing = api
        .get(
            "/v1/destinations/dst_01J0000000000000000000000",
            &tenant.platform_key,
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(
        api.get("/no/such/route/123", &tenant.platform_key)
            .await
            .status,
        404
    );

    // Refusals, one per reason.
    let unknown_key = format!("mnd_plat_{}", support::random_hex(16));
    assert_eq!(api.get("/v1/organization", &unknown_key).await.status, 401);
    let anonymous = api.send("GET", "/v1/organization", None, None, &[]).await;
    assert_eq!(anonymous.status, 401);
    let basic = api
        .send(
            "GET",
            "/v1/organization",
            None,
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    assert_eq!(basic.status, 401);
    let wrong_kind = api.get("/v1/orchestrator", &tenant.platform_key).await;
    assert_eq!(wrong_kind.status, 403, "{}", wrong_kind.body);

    // A delivery that fails once, then succeeds on its retry.
    let receiver = Receiver::start(&[500]).await;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            &tenant.platform_key,
            json!({"url": receiver.url, "event_types": ["*"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let endpoint_id = endpoint.body["id"].as_str().unwrap();
    let sent = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/test"),
            &tenant.platform_key,
            json!({}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    receiver
        .wait_for(WAIT, "the retried test event", |received| {
            received.len() >= 2
        })
        .await;

    let samples = scrape_until(&api, "recorded deliveries and queue gauges", |samples| {
        let outcome = |outcome| {
            value(
                samples,
                "mandate_webhook_deliveries_total",
                &[("outcome", outcome)],
            )
        };
        outcome("succeeded").is_some()
            && outcome("retrying").is_some()
            && value(samples, "mandate_webhook_queue_depth", &[("state", "due")]).is_some()
    })
    .await;

    let requests = |method, route, status| {
        value(
            &samples,
            "mandate_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("GET", "/v1/destinations/{id}", "200"), Some(2.0));
    assert_eq!(requests("GET", "/v1/destinations/{id}", "404"), Some(1.0));
    assert_eq!(requests("GET", "unmatched", "404"), Some(1.0));
    assert_eq!(
        requests("POST", "/v1/webhook-endpoints/{id}/test", "200"),
        Some(1.0)
    );
    assert_eq!(requests("GET", "/v1/organization", "401"), Some(3.0));
    assert!(
        samples.iter().all(|sample| sample
            .labels
            .get("route")
            .is_none_or(|route| !route.contains("dst_") && !route.contains("we_"))),
        "a raw path became a label"
    );

    let count = value(
        &samples,
        "mandate_http_request_duration_seconds_count",
        &[("method", "GET"), ("route", "/v1/destinations/{id}")],
    );
    assert_eq!(count, Some(3.0));
    let bucket = value(
        &samples,
        "mandate_http_request_duration_seconds_bucket",
        &[("route", "/v1/destinations/{id}"), ("le", "+Inf")],
    );
    assert_eq!(bucket, Some(3.0), "latency is a histogram with buckets");

    let failures = |reason| {
        value(
            &samples,
            "mandate_auth_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(failures("unknown_key"), Some(1.0));
    assert_eq!(failures("missing_credential"), Some(1.0));
    assert_eq!(failures("malformed_credential"), Some(1.0));
    assert_eq!(failures("wrong_principal_kind"), Some(1.0));

    let deliveries = |outcome| {
        value(
            &samples,
            "mandate_webhook_deliveries_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(deliveries("retrying"), Some(1.0));
    assert_eq!(deliveries("succeeded"), Some(1.0));

    for state in ["due", "scheduled"] {
        assert!(value(&samples, "mandate_webhook_queue_depth", &[("state", state)]).is_some());
    }
    assert!(value(&samples, "mandate_webhook_oldest_pending_age_seconds", &[]).is_some());
    for state in ["idle", "in_use"] {
        assert!(value(&samples, "mandate_db_pool_connections", &[("state", state)]).is_some());
    }
    assert_eq!(
        value(&samples, "mandate_db_pool_max_connections", &[]),
        Some(16.0)
    );
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown

/// A loopback receiver that answers after a delay that can change, recording event ids.
#[derive(Clone)]
struct SlowReceiver {
    url: String,
    delay_ms: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<String>>>,
}

impl SlowReceiver {
    async fn start(delay: Duration) -> Self {
        let delay_ms = Arc::new(AtomicU64::new(u64::try_from(delay.as_millis()).unwrap()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (delay_, received_) = (delay_ms.clone(), received.clone());
        let server = HttpServer::new(move || {
            let (delay, received) = (delay_.clone(), received_.clone());
            App::new().default_service(web::to(move |request: HttpRequest| {
                let (delay, received) = (delay.clone(), received.clone());
                async move {
                    let id = request
                        .headers()
                        .get("webhook-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    received.lock().unwrap().push(id);
                    let wait = Duration::from_millis(delay.load(Ordering::SeqCst));
                    actix_web::rt::time::sleep(wait).await;
                    HttpResponse::Ok().body("ok")
                }
            }))
        })
        .workers(2)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            delay_ms,
            received,
        }
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn sigterm_hands_unsent_deliveries_back_and_a_second_process_sends_them() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
    const EVENTS: usize = 12;
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let configure = || {
        let mut command = command(&data, &database);
        command
            .env("MANDATE__WEBHOOKS__CONCURRENCY", "4")
            .env(
                "MANDATE__SERVER__SHUTDOWN_TIMEOUT_SECONDS",
                SHUTDOWN_TIMEOUT.as_secs().to_string(),
            )
            // Far longer than the test: only a handed-back lease lets the second process
            // send what the first claimed.
            .env("MANDATE__WEBHOOKS__LEASE_SECONDS", "3600")
            .env("MANDATE__LOG__LEVEL", "info");
        command
    };
    // Slower than the shutdown timeout: the sends in flight cannot finish in time.
    let receiver = SlowReceiver::start(Duration::from_secs(60)).await;
    let mut first = Process::start(configure(), &data.0.join("first.log")).await;
    let api = first.api();
    let tenant = tenant(&api).await;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            &tenant.platform_key,
            json!({"url": receiver.url, "event_types": ["*"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let test_path = format!(
        "/v1/webhook-endpoints/{}/test",
        endpoint.body["id"].as_str().unwrap()
    );
    let mut expected = BTreeSet::new();
    for _ in 0..EVENTS {
        let sent = api.post(&test_path, &tenant.platform_key, json!({})).await;
        assert_eq!(sent.status, 200, "{}", sent.body);
        expected.insert(sent.body["id"].as_str().unwrap().to_owned());
    }
    // Wait until the worker is busy: four sends held by the receiver, the rest claimed.
    let deadline = Instant::now() + WAIT;
    while receiver.received().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the worker never started sending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopping = Instant::now();
    first.terminate();
    let status = first
        .exited_within(SHUTDOWN_TIMEOUT + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", first.output()));
    let took = stopping.elapsed();
    assert!(status.success(), "{status}\n{}", first.output());
    assert!(
        took < SHUTDOWN_TIMEOUT + Duration::from_secs(3),
        "took {took:?} to stop"
    );
    let log = first.output();
    assert!(log.contains("handed claimed attempts back"), "{log}");
    let delivered_by_first = receiver.received().len();
    assert!(
        delivered_by_first < EVENTS,
        "the first process sent everything"
    );

    // A second process, with a receiver that now answers at once, sends what was left.
    receiver.set_delay(Duration::ZERO);
    let _second = Process::start(configure(), &data.0.join("second.log")).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let received: BTreeSet<String> = receiver.received().into_iter().collect();
        if expected.is_subset(&received) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost events: {:?}",
            expected.difference(&received).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_a_secret() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let mut command = command(&data, &database);
    command.env("MANDATE__LOG__FORMAT", "json").env(
        "MANDATE__LOG__LEVEL",
        "mandate=debug,mandate_http=debug,mandate_webhooks=debug,mandate_store=debug,info",
    );
    let mut server = Process::start(command, &data.0.join("output.log")).await;
    let api = server.api();

    // Every kind of secret crosses the API: platform and destination keys, an orchestrator
    // key used as an OAuth client secret, an access token, webhook signing secrets.
    let tenant = tenant(&api).await;
    let slug = format!("agents-{}", support::random_hex(4));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Agents"}),
        )
        .await;
    assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
    let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
    let client = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": slug}),
        )
        .await;
    assert_eq!(client.status, 201, "{}", client.body);
    let client_id = client.body["id"].as_str().unwrap().to_owned();
    let token = api
        .send(
            "POST",
            "/v1/oauth/token",
            None,
            Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": orchestrator_key})),
            &[],
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let access_token = token.body["access_token"].as_str().unwrap().to_owned();
    let refused_grant = api
        .send(
            "POST",
            "/v1/oauth/token",
            None,
            Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": "mnd_orc_wrongwrongwrongwrongwrong"})),
            &[],
        )
        .await;
    assert_eq!(refused_grant.status, 401, "{}", refused_grant.body);
    let as_client = api
        .send(
            "GET",
            "/v1/requests",
            Some(&access_token),
            None,
            &[("x-request-id", "log-check-client")],
        )
        .await;
    assert_eq!(as_client.status, 200, "{}", as_client.body);
    // A tampered token is refused; neither it nor the original may be logged.
    let tampered = format!("{access_token}x");
    assert_eq!(api.get("/v1/requests", &tampered).await.status, 401);

    let receiver = Receiver::start(&[]).await;
    let endpoint = api
        .send(
            "POST",
            "/v1/webhook-endpoints",
            Some(&tenant.platform_key),
            Some(json!({"url": receiver.url, "event_types": ["*"]})),
            &[("x-request-id", "log-check-endpoint")],
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let endpoint_id = endpoint.body["id"].as_str().unwrap().to_owned();
    let first_secret = endpoint.body["secret"].as_str().unwrap().to_owned();
    let rotated = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
            &tenant.platform_key,
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    let sent = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/test"),
            &tenant.platform_key,
            json!({}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    receiver
        .wait_for(WAIT, "the test event", |received| !received.is_empty())
        .await;
    let unknown_key = format!("mnd_plat_{}", support::random_hex(16));
    assert_eq!(api.get("/v1/organization", &unknown_key).await.status, 401);

    // A graceful stop flushes every line.
    server.terminate();
    let status = server.exited_within(WAIT).await.expect("stops on SIGTERM");
    assert!(status.success());
    let output = server.output();

    let secrets = [
        ("the admin token", ADMIN_TOKEN.to_owned()),
        ("a platform key", tenant.platform_key.clone()),
        ("a destination key", tenant.destination_key.clone()),
        (
            "an orchestrator key (client secret)",
            orchestrator_key.clone(),
        ),
        ("an access token", access_token.clone()),
        ("a refused access token", tampered.clone()),
        ("an unknown key", unknown_key.clone()),
        ("a webhook secret", first_secret.clone()),
        ("a rotated webhook secret", second_secret.clone()),
    ];
    for (what, secret) in &secrets {
        assert!(!output.contains(secret.as_str()), "{what} was logged");
        // Nor its random part (a key with its prefix cut off, say).
        let tail = &secret[secret.len() - 16..];
        assert!(!output.contains(tail), "part of {what} was logged");
    }

    let mut request_lines = 0;
    let mut tagged = BTreeSet::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        assert!(
            entry["timestamp"].is_string() && entry["level"].is_string(),
            "{line}"
        );
        let request_span = entry["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|span| span["name"] == "request"));
        let in_request = request_span.is_some();
        let from_http = entry["target"]
            .as_str()
            .is_some_and(|target| target.starts_with("mandate_http"));
        if from_http {
            assert!(
                in_request,
                "an HTTP line outside its request's span: {line}"
            );
        }
        if in_request {
            request_lines += 1;
            let id = request_span
                .and_then(|span| span["request_id"].as_str())
                .unwrap_or_else(|| panic!("a request line without its id: {line}"));
            assert!(!id.is_empty(), "{line}");
            tagged.insert(id.to_owned());
        }
    }
    assert!(request_lines > 10, "only {request_lines} request lines");
    assert!(tagged.contains("log-check-client"), "{tagged:?}");
    assert!(tagged.contains("log-check-endpoint"), "{tagged:?}");
}
