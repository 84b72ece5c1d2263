//! Webhook delivery across replicas: several `mandate serve` processes on one PostgreSQL
//! database share the outbox. A burst of events is delivered exactly once when nothing fails,
//! and nothing is lost when one replica is killed in the middle of it: the deliveries its
//! worker had claimed are claimed again by the others once its lease has run out.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use support::{Api, Database, FreshDatabase, Server, TempDir, Tenant, list_all, tenant};

/// Payment requests created per burst.
const BURST: usize = 1_000;
/// Creations in flight at once, spread over the replicas.
const IN_FLIGHT: usize = 16;
const REPLICAS: usize = 3;
/// How long the deliveries of a burst may take after its last creation. Covers a lease of
/// a killed worker running out (6 s, see `replica_command`) with plenty of room.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(90);

/// Replicas on one database, sharing what replicas must share.
struct Cluster {
    replicas: Vec<Server>,
    bases: Vec<String>,
    _dirs: Vec<TempDir>,
}

fn replica_command(
    dir: &TempDir,
    database: &Database,
    shared: &[(&str, String)],
) -> std::process::Command {
    let mut command = support::mandate_command(&dir.0, database);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", "0s,1s,2s,5s")
        // A short lease, so a killed worker's claims are taken again within seconds: the worker
        // raises it to cover one wave of sends at this timeout (1 s + 5 s).
        .env("MANDATE__WEBHOOKS__LEASE_SECONDS", "5")
        .env("MANDATE__WEBHOOKS__TIMEOUT_SECONDS", "1")
        .env("MANDATE__WEBHOOKS__CONCURRENCY", "100")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0")
        // Two tests of three replicas each stay well within the server's connection limit.
        .env("MANDATE__DATABASE__MAX_CONNECTIONS", "10");
    for (name, value) in shared {
        command.env(name, value);
    }
    command
}

impl Cluster {
    /// Starts the replicas together (each `serve` runs both the API and a worker).
    async fn start(database: &FreshDatabase) -> Self {
        let db = Database::Postgres(database.url.clone());
        let shared = [
            ("MANDATE__SECRETS__KEY_HASH_SECRET", support::random_hex(32)),
            (
                "MANDATE__SECRETS__TOKEN_SIGNING_KEY",
                support::random_hex(32),
            ),
            (
                "MANDATE__SERVER__PUBLIC_URL",
                "http://mandate.test".to_owned(),
            ),
        ];
        let dirs: Vec<TempDir> = (0..REPLICAS).map(|_| TempDir::new()).collect();
        let replicas = futures_util::future::join_all(
            dirs.iter()
                .map(|dir| Server::start_with(replica_command(dir, &db, &shared), &dir.0)),
        )
        .await;
        let bases = replicas
            .iter()
            .map(|replica| replica.base.clone())
            .collect();
        Self {
            replicas,
            bases,
            _dirs: dirs,
        }
    }

    fn api(&self, index: usize) -> Api {
        self.replicas[index].api()
    }
}

/// What the receiver saw of one `webhook-id`.
#[derive(Debug, Clone)]
struct Seen {
    count: u32,
    event_type: String,
    object_id: String,
    first_at: Instant,
}

#[derive(Default)]
struct Tally {
    seen: HashMap<String, Seen>,
    total: usize,
    /// Deliveries whose body does not match their headers.
    malformed: Vec<String>,
}

/// A loopback receiver that counts deliveries per `webhook-id`, answering 200 after `delay`.
struct Receiver {
    url: String,
    tally: Arc<Mutex<Tally>>,
}

impl Receiver {
    async fn start(delay: Duration) -> Self {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let state = tally.clone();
        let server = HttpServer::new(move || {
            let state = state.clone();
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                let state = state.clone();
                async move {
                    record(&state, &request, &body);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    HttpResponse::Ok().body("ok")
                }
            }))
        })
        .workers(2)
        .backlog(4096)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        // The server task ends with the test's runtime.
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            tally,
        }
    }

    fn snapshot(&self) -> (HashMap<String, Seen>, usize, Vec<String>) {
        let tally = self.tally.lock().unwrap();
        (tally.seen.clone(), tally.total, tally.malformed.clone())
    }

    fn distinct(&self) -> BTreeSet<String> {
        self.tally.lock().unwrap().seen.keys().cloned().collect()
    }
}

fn record(state: &Mutex<Tally>, request: &HttpRequest, body: &[u8]) {
    let webhook_id = request
        .headers()
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut tally = state.lock().unwrap();
    tally.total += 1;
    if parsed["id"].as_str() != Some(webhook_id.as_str()) {
        tally
            .malformed
            .push(format!("webhook-id {webhook_id:?} with body {parsed}"));
    }
    let entry = tally.seen.entry(webhook_id).or_insert_with(|| Seen {
        count: 0,
        event_type: parsed["type"].as_str().unwrap_or_default().to_owned(),
        object_id: parsed["data"]["object"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        first_at: Instant::now(),
    });
    entry.count += 1;
}

/// Registers the destination's endpoint for `payment_request.created` at the receiver.
async fn subscribe(api: &Api, tenant: &Tenant, receiver: &Receiver) -> String {
    let created = api
        .post(
            "/v1/webhook-endpoints",
            &tenant.destination_key,
            json!({"url": receiver.url, "event_types": ["payment_request.created"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

/// Creates one payment request; any failure (a refused connection included) is an `Err`.
async fn create_request(http: &reqwest::Client, base: &str, key: &str) -> Result<String, String> {
    let response = http
        .post(format!("{base}/v1/requests"))
        .bearer_auth(key)
        .json(&json!({"direction": "incoming", "amount": "5", "currency": "USD"}))
        .send()
        .await
        .map_err(|error| format!("{error:?}"))?;
    let status = response.status().as_u16();
    let headers = format!("{:?}", response.headers());
    let text = response
        .text()
        .await
        .map_err(|error| format!("{status}: {error:?}"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{status} {headers} {text:?}: {error}"))?;
    match body["id"].as_str() {
        Some(id) if status == 201 => Ok(id.to_owned()),
        _ => Err(format!("{status}: {body}")),
    }
}

/// The `payment_request.created` events of the destination's feed: event id → request id.
/// What was committed, whether or not its creator heard back.
async fn created_events(api: &Api, tenant: &Tenant) -> BTreeMap<String, String> {
    list_all(api, "/v1/events", &tenant.destination_key)
        .await
        .into_iter()
        .filter(|event| event["type"] == "payment_request.created")
        .map(|event| {
            (
                event["id"].as_str().unwrap().to_owned(),
                event["data"]["object"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the endpoint's delivery log has no pending attempt, and returns the log.
async fn settled_log(api: &Api, tenant: &Tenant, endpoint: &str, deadline: Instant) -> Vec<Value> {
    let path = format!("/v1/webhook-endpoints/{endpoint}/deliveries");
    loop {
        let log = list_all(api, &path, &tenant.destination_key).await;
        let pending = log
            .iter()
            .filter(|attempt| attempt["status"] == "pending")
            .count();
        if pending == 0 {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} attempts still pending in the delivery log"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls until the receiver has seen every id of `expected`, printing progress.
async fn wait_for_all(receiver: &Receiver, expected: &BTreeSet<String>, deadline: Instant) {
    let mut last_report = Instant::now();
    loop {
        let seen = receiver.distinct();
        let missing = expected.difference(&seen).count();
        if missing == 0 {
            return;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "  … {missing} of {} events not delivered yet",
                expected.len()
            );
            last_report = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events were never delivered, e.g. {:?}",
            expected.len(),
            expected.difference(&seen).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_deliver_a_burst_exactly_once_without_crashes() {
    let database = FreshDatabase::create().await;
    let cluster = Cluster::start(&database).await;
    let api = cluster.api(0);
    let tenant = tenant(&api).await;
    let receiver = Receiver::start(Duration::ZERO).await;
    let endpoint = subscribe(&api, &tenant, &receiver).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (http, bases, key) = (&http, &cluster.bases, tenant.destination_key.as_str());
    let started = Instant::now();
    let created: Vec<(usize, String)> = stream::iter(0..BURST)
        .map(|i| async move {
            let replica = i % REPLICAS;
            match create_request(http, &bases[replica], key).await {
                Ok(id) => (replica, id),
                Err(error) => panic!("replica {replica} failed to create a request: {error}"),
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let created_in = started.elapsed();
    let during_burst = receiver.distinct().len();
    let request_ids: BTreeSet<String> = created.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(request_ids.len(), BURST, "every creation returned a new id");

    // What was committed: one event per request.
    let events = created_events(&api, &tenant).await;
    assert_eq!(
        events.len(),
        BURST,
        "one payment_request.created event per request"
    );
    let event_ids: BTreeSet<String> = events.keys().cloned().collect();
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    wait_for_all(&receiver, &event_ids, deadline).await;
    let delivered_in = started.elapsed();

    // Nothing left to send, and every attempt of the log succeeded at the first try.
    let log = settled_log(&api, &tenant, &endpoint, deadline).await;
    let (seen, total, malformed) = receiver.snapshot();
    let duplicates: Vec<(&String, u32)> = seen
        .iter()
        .filter(|(_, seen)| seen.count > 1)
        .map(|(id, seen)| (id, seen.count))
        .collect();
    println!(
        "exactly once: {BURST} requests created over {REPLICAS} replicas in {:.1} s ({:.0}/s), \
         {during_burst} delivered while they were being created, all {} events delivered \
         {:.1} s after the first creation; {total} deliveries received, {} duplicated, {} log \
         rows; per-replica share of the sends is not observable",
        created_in.as_secs_f64(),
        BURST as f64 / created_in.as_secs_f64(),
        events.len(),
        delivered_in.as_secs_f64(),
        duplicates.len(),
        log.len(),
    );
    assert!(
        malformed.is_empty(),
        "bodies disagree with headers: {malformed:?}"
    );
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );
    assert_eq!(total, BURST, "one delivery per event, none twice");
    let seen_ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(seen_ids, event_ids, "exactly the committed events arrived");
    let objects: BTreeSet<String> = seen.values().map(|seen| seen.object_id.clone()).collect();
    assert_eq!(objects, request_ids, "one event per created request");
    assert!(
        seen.values()
            .all(|seen| seen.event_type == "payment_request.created")
    );
    // The odd attempts first: they say why the count would be off.
    let bad: Vec<&Value> = log
        .iter()
        .filter(|attempt| attempt["status"] != "succeeded" || attempt["attempt"] != 1)
        .collect();
    assert!(
        bad.is_empty(),
        "attempts other than a first success: {bad:?}"
    );
    assert_eq!(log.len(), BURST, "one attempt per event in the log");
    let logged: BTreeSet<String> = log
        .iter()
        .map(|attempt| attempt["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, event_ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_worker_mid_burst_loses_nothing() {
    const VICTIM: usize = 2;
    const SURVIVORS: [usize; 2] = [0, 1];
    let database = FreshDatabase::create().await;
    let mut cluster = Cluster::start(&database).await;
    let api = cluster.api(0);
    let tenant = tenant(&api).await;
    // Each send takes a while, so that the victim holds claimed deliveries when it dies.
    let receiver = Receiver::start(Duration::from_millis(25)).await;
    let endpoint = subscribe(&api, &tenant, &receiver).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let killed = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let unanswered = AtomicUsize::new(0);
    let bases = cluster.bases.clone();
    let (http, bases, key) = (&http, &bases, tenant.destination_key.as_str());
    let (killed_ref, done_ref, unanswered_ref) = (&killed, &done, &unanswered);
    let started = Instant::now();
    let create_all = stream::iter(0..BURST)
        .map(|i| async move {
            let mut retry = 0;
            loop {
                let replica = if killed_ref.load(Ordering::SeqCst) {
                    SURVIVORS[(i + retry) % SURVIVORS.len()]
                } else {
                    i % REPLICAS
                };
                match create_request(http, &bases[replica], key).await {
                    Ok(id) => {
                        done_ref.fetch_add(1, Ordering::SeqCst);
                        return (replica, id);
                    }
                    // Cut off by the kill: the request may or may not have been committed
                    // (the feed tells); make another one on a survivor.
                    Err(_) if replica == VICTIM && killed_ref.load(Ordering::SeqCst) => {
                        unanswered_ref.fetch_add(1, Ordering::SeqCst);
                        retry += 1;
                    }
                    Err(error) => {
                        panic!("replica {replica} failed to create a request: {error}")
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>();
    let victim = &mut cluster.replicas[VICTIM];
    let kill = async {
        while done.load(Ordering::SeqCst) < BURST * 3 / 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        killed.store(true, Ordering::SeqCst);
        // SIGKILL: no shutdown, no release of anything it holds.
        victim.stop();
        (Instant::now(), done.load(Ordering::SeqCst))
    };
    let (created, (killed_at, created_before_kill)) = tokio::join!(create_all, kill);
    let created_in = started.elapsed();
    let request_ids: BTreeSet<String> = created.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(request_ids.len(), BURST, "every creation returned a new id");
    let on_victim = created
        .iter()
        .filter(|(replica, _)| *replica == VICTIM)
        .count();

    // Everything committed, including what the victim committed without answering.
    let events = created_events(&api, &tenant).await;
    let committed: BTreeSet<String> = events.values().cloned().collect();
    assert!(
        request_ids.is_subset(&committed),
        "every acknowledged request has its event"
    );
    let event_ids: BTreeSet<String> = events.keys().cloned().collect();
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    wait_for_all(&receiver, &event_ids, deadline).await;
    let delivered_at = Instant::now();
    let log = settled_log(&api, &tenant, &endpoint, deadline).await;

    let (seen, total, malformed) = receiver.snapshot();
    assert!(
        malformed.is_empty(),
        "bodies disagree with headers: {malformed:?}"
    );
    let objects: BTreeSet<String> = seen.values().map(|seen| seen.object_id.clone()).collect();
    assert!(
        committed.is_subset(&objects),
        "every committed request's event arrived"
    );
    let succeeded: BTreeSet<String> = log
        .iter()
        .filter(|attempt| attempt["status"] == "succeeded")
        .map(|attempt| attempt["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(succeeded, event_ids, "the log shows every event delivered");

    // The victim's claimed work shows as the events that arrived after the longest silence.
    let mut arrivals: Vec<Instant> = seen.values().map(|seen| seen.first_at).collect();
    arrivals.sort();
    let (gap, after_gap, gap_end) = arrivals
        .windows(2)
        .enumerate()
        .map(|(index, pair)| (pair[1] - pair[0], arrivals.len() - index - 1, pair[1]))
        .max_by_key(|(gap, _, _)| *gap)
        .unwrap_or((Duration::ZERO, 0, killed_at));
    let duplicated = seen.values().filter(|seen| seen.count > 1).count();
    println!(
        "kill -9 mid-burst: {} requests created in {:.1} s ({created_before_kill} before the kill, \
         {on_victim} acknowledged by the victim, {} creations cut off by the kill, {} events \
         committed in all); every event delivered {:.1} s after the kill; {total} deliveries \
         received for {} events ({duplicated} received more than once); longest silence \
         {:.1} s, after which {after_gap} events arrived (from {:.1} s after the kill)",
        BURST,
        created_in.as_secs_f64(),
        unanswered.load(Ordering::SeqCst),
        events.len(),
        (delivered_at - killed_at).as_secs_f64(),
        seen.len(),
        gap.as_secs_f64(),
        gap_end.saturating_duration_since(killed_at).as_secs_f64(),
    );
}
