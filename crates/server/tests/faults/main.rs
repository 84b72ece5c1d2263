//! The fault suite: the real `mandate` binary on PostgreSQL under a load of request creations
//! and payments from two tenants, each with a webhook endpoint, while something fails:
//!
//! - `crash`: the server is killed with SIGKILL mid-load (and mid-delivery) and restarted;
//! - `database_outage`: PostgreSQL is cut off for a while (a TCP proxy between the server and
//!   PostgreSQL drops every connection and refuses new ones; the shared PostgreSQL itself keeps
//!   running for everyone else);
//! - `receiver_outage`: both receivers refuse connections for a while; a third endpoint answers
//!   410 and must be disabled;
//! - `receiver_isolation`: a healthy endpoint at 50 events/s beside five whose receivers hang
//!   until the send timeout keeps its commit → arrival p99 within 3× of its p99 alone;
//! - `replica_loss`: three servers share the database and one is killed with SIGKILL mid-load;
//! - `postgres_crash`: on a PostgreSQL cluster of its own, PostgreSQL itself is killed with
//!   SIGKILL mid-load (postmaster and backends), restarted, and replays its WAL;
//! - `failover`: on a primary and a synchronous standby of its own, the primary is killed with
//!   SIGKILL mid-load and the standby promoted; the server, given both hosts, moves over;
//! - `keyed_crash`: on a PostgreSQL cluster of its own, every call carries an `Idempotency-Key`
//!   and is retried until a 2xx; the server crashes right after one payment's commit (a crash
//!   point), then is SIGKILLed;
//! - `soak`: half an hour of load, with memory, descriptors, queues and tables measured.
//!
//! One module per scenario; the load, the audit and the helpers they share are here.
//!
//! Afterwards each scenario audits what happened against what the database holds, read through
//! each tenant's own API: every request a client saw 201 for exists, every committed change has
//! exactly one event, every event of a tenant reached that tenant's receiver (`lost` counts
//! those that did not), deliveries beyond the first of an event are `duplicated` (at-least-once
//! allows them), and anything a receiver got that its owner's feed does not hold — another
//! tenant's event, or one never committed — is `leaked`. Each scenario prints one line
//! `FAULTS<TAB>scenario<TAB>operations<TAB>lost<TAB>duplicated<TAB>leaked<TAB>notes`, which
//! `cargo xtask faults` collects into a table, and fails when anything is lost or leaked.
//!
//! Size: `MANDATE_FAULTS_SCALE=full` (what `cargo xtask faults` runs: a 30 s database outage,
//! receivers down for two minutes, a thousand operations per load) or `short`, the default, which
//! the ordinary test suite runs in seconds. `receiver_isolation` (a minute even when short) and
//! `soak` (30 minutes, `MANDATE_SOAK_MINUTES`) are ignored by the ordinary suite: `cargo xtask
//! faults` includes the first, `cargo xtask faults soak` runs the second.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod crash;
mod database_outage;
mod failover;
mod keyed_crash;
mod postgres_crash;
mod receiver_isolation;
mod receiver_outage;
mod replica_loss;
mod soak;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mandate_test_support::address_of;
use serde_json::{Value, json};
use support::proxy::Proxy;
use support::receiver::Receiver;
use support::{Api, Database, FreshDatabase, Server, TempDir, Tenant, list_all, tenant};

/// How big each scenario is.
struct Scale {
    name: &'static str,
    /// Operations (a creation, and a payment of every other request) per load.
    operations: usize,
    /// Operations in flight at once.
    in_flight: usize,
    database_outage: Duration,
    receiver_outage: Duration,
}

fn scale() -> Scale {
    match std::env::var("MANDATE_FAULTS_SCALE").as_deref() {
        Ok("full") => Scale {
            name: "full",
            operations: 1_000,
            in_flight: 16,
            database_outage: Duration::from_secs(30),
            receiver_outage: Duration::from_secs(120),
        },
        Ok("short") | Err(_) => Scale {
            name: "short",
            operations: 60,
            in_flight: 8,
            database_outage: Duration::from_secs(3),
            receiver_outage: Duration::from_secs(5),
        },
        Ok(other) => panic!("MANDATE_FAULTS_SCALE is full or short, not {other:?}"),
    }
}

/// Retries reach past a two-minute outage: attempts at about 0, 1, 3, 8, 18, 38, 68, 98, 128,
/// 158, 188 and 218 s (±20 %).
const RETRY_SCHEDULE: &str = "0s,1s,2s,5s,10s,20s,30s,30s,30s,30s,30s,30s";
/// How long a pool checkout may wait before the API answers 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long every event may take to arrive once the fault is over: a lease running out (6 s)
/// or the next retry (up to 36 s), with room.
const SETTLE: Duration = Duration::from_secs(90);

/// The server's settings for the suite; `shared` are what replicas must agree on.
fn server_command(dir: &TempDir, database_url: &str, shared: &[(&str, String)]) -> Command {
    let mut command = support::mandate_command(&dir.0, &Database::Postgres(database_url.into()));
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", RETRY_SCHEDULE)
        // A killed worker's claims are taken again within seconds (the worker raises the lease
        // to cover a wave of sends: 1 s + 5 s).
        .env("MANDATE__WEBHOOKS__LEASE_SECONDS", "5")
        .env("MANDATE__WEBHOOKS__TIMEOUT_SECONDS", "1")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0")
        .env("MANDATE__DATABASE__MAX_CONNECTIONS", "8")
        .env(
            "MANDATE__DATABASE__ACQUIRE_TIMEOUT_MS",
            ACQUIRE_TIMEOUT.as_millis().to_string(),
        );
    for (name, value) in shared {
        command.env(name, value);
    }
    command
}

/// A tenant (its own organization and destination) with an endpoint for `payment_request.*`.
struct Party {
    tenant: Tenant,
    receiver: Receiver,
    endpoint: String,
}

/// Registers a tenant whose endpoint points at `url` (the receiver, or a proxy in front of it).
async fn party(api: &Api, receiver: Receiver, url: &str) -> Party {
    let tenant = tenant(api).await;
    let endpoint = endpoint(api, &tenant, url, "payment_request.*").await;
    Party {
        tenant,
        receiver,
        endpoint,
    }
}

async fn two_parties(api: &Api) -> Vec<Party> {
    let mut parties = Vec::new();
    for _ in 0..2 {
        let receiver = Receiver::start(&[]).await;
        let url = receiver.url.clone();
        parties.push(party(api, receiver, &url).await);
    }
    parties
}

/// Where the clients send their calls: the servers that are up (empty while none is).
struct Target(Mutex<Vec<String>>);

impl Target {
    fn new(bases: Vec<String>) -> Self {
        Self(Mutex::new(bases))
    }

    fn set(&self, bases: Vec<String>) {
        *self.0.lock().unwrap() = bases;
    }

    fn pick(&self, index: usize) -> Option<String> {
        let bases = self.0.lock().unwrap();
        (!bases.is_empty()).then(|| bases[index % bases.len()].clone())
    }
}

/// What the clients saw.
#[derive(Default, Clone)]
struct Seen {
    /// Requests answered 201, with the index of their party.
    created: Vec<(usize, String)>,
    /// Payments answered 201: the paid request, with the index of its party.
    paid: Vec<(usize, String)>,
    /// Calls cut off without an answer (their outcome is unknown to the client).
    unanswered: usize,
    /// 503 `SERVICE_UNAVAILABLE` answers (retried).
    unavailable: usize,
    /// The slowest 503.
    slowest_unavailable: Duration,
    /// Any other answer, which the audit reports.
    unexpected: Vec<String>,
}

/// What a client got for one call.
struct KeyedAnswer {
    body: Value,
    replayed: bool,
    attempts: usize,
}

/// How clients send: every call under its `Idempotency-Key`, retried — on a cut connection, a
/// 503 or a 409 "still in progress" — until a 2xx or two minutes, as a client should.
struct Client<'a> {
    http: reqwest::Client,
    target: &'a Target,
    seen: Mutex<Seen>,
}

impl<'a> Client<'a> {
    fn new(target: &'a Target) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            target,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Sends call `i` (which picks the server) as `token`.
    async fn send(
        &self,
        i: usize,
        token: &str,
        path: &str,
        key: &str,
        body: &Value,
    ) -> Option<KeyedAnswer> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut attempts = 0;
        while Instant::now() < deadline {
            attempts += 1;
            let Some(base) = self.target.pick(i + attempts) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let started = Instant::now();
            let sent = self
                .http
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let replayed = response.headers().contains_key("idempotent-replayed");
                    let in_flight = response.headers().contains_key("retry-after");
                    response.text().await.ok().map(|text| {
                        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                        (status, replayed, in_flight, body)
                    })
                }
                Err(_) => None,
            };
            // The guard ends with this block, before the pause.
            {
                let mut seen = self.seen.lock().unwrap();
                match answer {
                    Some((200 | 201, replayed, _, body)) => {
                        return Some(KeyedAnswer {
                            body,
                            replayed,
                            attempts,
                        });
                    }
                    Some((503, _, _, body)) if body["error"]["code"] == "SERVICE_UNAVAILABLE" => {
                        seen.unavailable += 1;
                        seen.slowest_unavailable = seen.slowest_unavailable.max(started.elapsed());
                    }
                    Some((409, _, true, _)) => {}
                    Some((status, _, _, body)) => {
                        seen.unexpected
                            .push(format!("{path} ({key}): {status} {body}"));
                        return None;
                    }
                    None => seen.unanswered += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen
            .lock()
            .unwrap()
            .unexpected
            .push(format!("{path} ({key}): no 2xx within 120 s"));
        None
    }
}

/// A load of clients: `in_flight` of them take operation numbers until `operations` are done
/// or `stop` is set. Operation `i` creates a request for party `i % 2` and, for even `i`, pays
/// it in full; each call carries an `Idempotency-Key` of its own and is retried on a cut
/// connection or a 503 until a server answers, as a client should.
struct Load<'a> {
    client: Client<'a>,
    parties: &'a [Party],
    operations: usize,
    in_flight: usize,
    stop: AtomicBool,
    next: AtomicUsize,
    /// Operations finished.
    done: AtomicUsize,
}

impl<'a> Load<'a> {
    fn new(target: &'a Target, parties: &'a [Party], operations: usize, in_flight: usize) -> Self {
        Self {
            client: Client::new(target),
            parties,
            operations,
            in_flight,
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    async fn run(&self) {
        futures_util::future::join_all((0..self.in_flight).map(|_| self.client())).await;
    }

    async fn client(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.operations || self.stop.load(Ordering::SeqCst) {
                return;
            }
            self.operation(i).await;
            self.done.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn send(&self, i: usize, path: &str, key: &str, body: &Value) -> Option<Value> {
        let token = &self.parties[i % self.parties.len()].tenant.destination_key;
        let answer = self.client.send(i, token, path, key, body).await?;
        Some(answer.body)
    }

    async fn operation(&self, i: usize) {
        let party = i % self.parties.len();
        let request = json!({"direction": "incoming", "amount": "5", "currency": "USD"});
        let Some(created) = self
            .send(i, "/v1/requests", &format!("request-{i}"), &request)
            .await
        else {
            return;
        };
        let id = created["id"].as_str().unwrap().to_owned();
        self.client
            .seen
            .lock()
            .unwrap()
            .created
            .push((party, id.clone()));
        if i % 2 == 0 {
            let payment = json!({"amount": "5", "reference": format!("faults-{i}")});
            let path = format!("/v1/requests/{id}/payments");
            if self
                .send(i, &path, &format!("payment-{i}"), &payment)
                .await
                .is_some()
            {
                self.client.seen.lock().unwrap().paid.push((party, id));
            }
        }
    }

    /// Waits until `count` operations are done.
    async fn reached(&self, count: usize) {
        while self.done.load(Ordering::SeqCst) < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One scenario's line of the table.
struct Outcome {
    scenario: &'static str,
    operations: usize,
    lost: usize,
    duplicated: usize,
    leaked: usize,
    notes: Vec<String>,
    /// Whatever else the scenario found wrong.
    problems: Vec<String>,
}

impl Outcome {
    /// Records a problem unless `holds`.
    fn check(&mut self, holds: bool, problem: impl Into<String>) {
        if !holds {
            self.problems.push(problem.into());
        }
    }

    /// Prints the result line, then fails on anything lost or leaked, or any other problem.
    fn report(mut self) {
        self.notes
            .extend(self.problems.iter().map(|p| format!("PROBLEM: {p}")));
        println!(
            "FAULTS\t{}\t{}\t{}\t{}\t{}\t{}",
            self.scenario,
            self.operations,
            self.lost,
            self.duplicated,
            self.leaked,
            self.notes.join("; ")
        );
        assert!(
            self.lost == 0 && self.leaked == 0 && self.problems.is_empty(),
            "{}: {} lost, {} leaked: {}",
            self.scenario,
            self.lost,
            self.leaked,
            self.notes.join("; ")
        );
    }
}

/// Audits what the clients saw and the receivers got against what each tenant may read, once
/// every committed event has arrived or `SETTLE` has passed.
async fn audit(api: &Api, load: &Load<'_>, scenario: &'static str) -> Outcome {
    let seen = load.client.seen.lock().unwrap().clone();
    let mut outcome = Outcome {
        scenario,
        operations: load.done.load(Ordering::SeqCst),
        lost: 0,
        duplicated: 0,
        leaked: 0,
        notes: Vec::new(),
        problems: Vec::new(),
    };
    let mut missing_requests = 0;
    let mut undelivered = 0;
    let mut extra_events = Vec::new();
    let mut paid_twice = 0;
    let deadline = Instant::now() + SETTLE;
    for (index, party) in load.parties.iter().enumerate() {
        let key = &party.tenant.destination_key;
        let feed = list_all(api, "/v1/events", key).await;
        // Events per request: `created`, and payments (`paid`, `partially_paid`).
        let mut events: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut expected = BTreeSet::new();
        for event in &feed {
            let kind = event["type"].as_str().unwrap();
            if let Some(kind) = kind.strip_prefix("payment_request.") {
                let object = event["data"]["object"]["id"].as_str().unwrap();
                let counts = events.entry(object).or_default();
                match kind {
                    "created" => counts.0 += 1,
                    "paid" | "partially_paid" => counts.1 += 1,
                    _ => {}
                }
                expected.insert(event["id"].as_str().unwrap().to_owned());
            }
        }
        // What was committed: every request, and how many payments of 5 each holds.
        let requests: BTreeMap<String, usize> = list_all(api, "/v1/requests", key)
            .await
            .into_iter()
            .map(|request| {
                let paid: f64 = request["amount_paid"].as_str().unwrap().parse().unwrap();
                let id = request["id"].as_str().unwrap().to_owned();
                (id, (paid / 5.0).round() as usize)
            })
            .collect();
        // Exactly one event per committed change.
        for (id, payments) in &requests {
            let (created, paid) = events.get(id.as_str()).copied().unwrap_or_default();
            if created != 1 || paid != *payments {
                extra_events.push(format!(
                    "{id}: {created} created and {paid} payment events for {payments} payments"
                ));
            }
            paid_twice += usize::from(*payments > 1);
        }
        // Events about requests that do not exist were never committed.
        outcome.leaked += events
            .keys()
            .filter(|id| !requests.contains_key(**id))
            .count();
        // What the clients saw committed is there.
        for (_, id) in seen.created.iter().filter(|(owner, _)| *owner == index) {
            missing_requests += usize::from(!requests.contains_key(id));
        }
        for (_, id) in seen.paid.iter().filter(|(owner, _)| *owner == index) {
            missing_requests += usize::from(requests.get(id).is_none_or(|paid| *paid == 0));
        }
        // Every committed event reaches the tenant's receiver.
        loop {
            let missing = expected.difference(&party.receiver.event_ids()).count();
            if missing == 0 || Instant::now() >= deadline {
                undelivered += missing;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received = party.receiver.received();
        let distinct = party.receiver.event_ids();
        outcome.duplicated += received.len() - distinct.len();
        let feed_ids: BTreeSet<&str> = feed.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let foreign: BTreeSet<&str> = received
            .iter()
            .filter(|r| {
                let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                !feed_ids.contains(r.webhook_id.as_str())
                    || body["id"] != r.webhook_id.as_str()
                    || body["destination_id"] != party.tenant.destination_id.as_str()
            })
            .map(|r| r.webhook_id.as_str())
            .collect();
        outcome.leaked += foreign.len();
        let log = list_all(
            api,
            &format!("/v1/webhook-endpoints/{}/deliveries", party.endpoint),
            key,
        )
        .await;
        let failed = log.iter().filter(|a| a["status"] == "failed").count();
        outcome.notes.push(format!(
            "tenant {index}: {} events, {} deliveries, {failed} failed attempts",
            expected.len(),
            received.len()
        ));
    }
    outcome.lost = missing_requests + undelivered;
    outcome.notes.insert(
        0,
        format!(
            "{} created and {} paid with 201, {} calls cut off, {} answered 503",
            seen.created.len(),
            seen.paid.len(),
            seen.unanswered,
            seen.unavailable
        ),
    );
    if missing_requests + undelivered > 0 {
        outcome.notes.push(format!(
            "{missing_requests} acknowledged changes missing, {undelivered} events undelivered"
        ));
    }
    outcome.check(
        paid_twice == 0,
        format!("{paid_twice} requests paid twice: a retry under its key paid again"),
    );
    outcome.check(
        extra_events.is_empty(),
        format!(
            "{} requests whose events do not match their committed changes: {}",
            extra_events.len(),
            extra_events.join(", ")
        ),
    );
    if !seen.unexpected.is_empty() {
        outcome.problems.push(format!(
            "{} unexpected answers, e.g. {}",
            seen.unexpected.len(),
            seen.unexpected[0]
        ));
    }
    outcome
}

/// How long after `killed_at` the server's `/readyz` says 200 again, by itself; at most 60 s.
async fn ready_again(api: &Api, killed_at: Instant) -> Duration {
    loop {
        if api.send("GET", "/readyz", None, None, &[]).await.status == 200 {
            return killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "/readyz not ready 60 s after PostgreSQL was killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `done` until it holds (true) or `limit` passes (false).
async fn wait_until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    done: impl Fn() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Registers an endpoint of `tenant` at `url` for `types`.
async fn endpoint(api: &Api, tenant: &Tenant, url: &str, types: &str) -> String {
    let created = api
        .post(
            "/v1/webhook-endpoints",
            &tenant.destination_key,
            json!({"url": url, "event_types": [types]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}
