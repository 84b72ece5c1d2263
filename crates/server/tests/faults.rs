//! The fault suite: the real `mandate` binary on PostgreSQL under a load of request creations
//! and payments from two tenants, each with a webhook endpoint, while something fails:
//!
//! - `crash`: the server is killed with SIGKILL mid-load (and mid-delivery) and restarted;
//! - `database_outage`: PostgreSQL is cut off for a while (a TCP proxy between the server and
//!   PostgreSQL drops every connection and refuses new ones; the shared PostgreSQL itself keeps
//!   running for everyone else);
//! - `receiver_outage`: both receivers refuse connections for a while; a third endpoint answers
//!   410 and must be disabled;
//! - `replica_loss`: three servers share the database and one is killed with SIGKILL mid-load;
//! - `postgres_crash`: on a PostgreSQL cluster of its own, PostgreSQL itself is killed with
//!   SIGKILL mid-load (postmaster and backends), restarted, and replays its WAL;
//! - `failover`: on a primary and a synchronous standby of its own, the primary is killed with
//!   SIGKILL mid-load and the standby promoted; the server, given both hosts, moves over;
//! - `keyed_crash`: on a PostgreSQL cluster of its own, every call carries an `Idempotency-Key`
//!   and is retried until a 2xx; the server crashes right after one payment's commit (a crash
//!   point), then is SIGKILLed.
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
//! the ordinary test suite runs in seconds.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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

#[tokio::test(flavor = "multi_thread")]
async fn crash() {
    let scale = scale();
    let started = Instant::now();
    let database = FreshDatabase::create().await;
    let dir = TempDir::new();
    let mut server = Server::start_with(server_command(&dir, &database.url, &[]), &dir.0).await;
    let parties = two_parties(&server.api()).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, scale.operations, scale.in_flight);

    let crash = async {
        load.reached(scale.operations * 4 / 10).await;
        let before = load.done.load(Ordering::SeqCst);
        target.set(Vec::new());
        // SIGKILL: nothing is flushed, released or finished.
        server.stop();
        let restarting = Instant::now();
        let restarted = Server::start_with(server_command(&dir, &database.url, &[]), &dir.0).await;
        target.set(vec![restarted.base.clone()]);
        (restarted, before, restarting.elapsed())
    };
    let ((server, before, restart), ()) = tokio::join!(crash, load.run());
    let mut outcome = audit(&server.api(), &load, "crash").await;
    outcome.notes.insert(
        0,
        format!(
            "SIGKILL after {before} operations, up again in {:.1} s",
            restart.as_secs_f64()
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.report();
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage() {
    let scale = scale();
    let started = Instant::now();
    let database = FreshDatabase::create().await;
    let mut proxy = Proxy::start(address_of(&database.url).unwrap()).await;
    let dir = TempDir::new();
    let server = Server::start_with(
        server_command(&dir, &proxy.rewrite(&database.url), &[]),
        &dir.0,
    )
    .await;
    let api = server.api();
    let parties = two_parties(&api).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, usize::MAX, scale.in_flight);
    let ready = || async { api.send("GET", "/readyz", None, None, &[]).await };

    // Operations before the cut, and after PostgreSQL is back, before the load ends.
    let around = (scale.operations / 10).max(20);
    let outage = async {
        load.reached(around).await;
        proxy.cut().await;
        let cut_at = Instant::now();
        // `/readyz` says so at once, and keeps saying so while PostgreSQL is away.
        let mut not_ready_after = None;
        let mut slowest_ready = Duration::ZERO;
        while cut_at.elapsed() < scale.database_outage {
            let asked = Instant::now();
            let reply = ready().await;
            slowest_ready = slowest_ready.max(asked.elapsed());
            match (reply.status, not_ready_after) {
                (503, None) => {
                    assert_eq!(reply.code(), "SERVICE_UNAVAILABLE");
                    not_ready_after = Some(cut_at.elapsed());
                }
                (503, Some(_)) => {}
                (200, None) => {}
                (status, _) => panic!("/readyz answered {status} during the outage"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let during = load.done.load(Ordering::SeqCst);
        proxy.open().await;
        let back_at = Instant::now();
        loop {
            if ready().await.status == 200 {
                break;
            }
            assert!(
                back_at.elapsed() < Duration::from_secs(30),
                "/readyz still not ready 30 s after PostgreSQL returned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let recovered = back_at.elapsed();
        // The clients' calls go through again, then the load ends.
        load.reached(during + around).await;
        load.stop.store(true, Ordering::SeqCst);
        (not_ready_after, slowest_ready, recovered)
    };
    let ((not_ready_after, slowest_ready, recovered), ()) = tokio::join!(outage, load.run());
    let mut outcome = audit(&api, &load, "database_outage").await;
    let slowest_503 = load.client.seen.lock().unwrap().slowest_unavailable;
    outcome.notes.insert(
        0,
        format!(
            "PostgreSQL cut off by a TCP proxy for {} s; /readyz 503 after {:.1} s \
             (slowest /readyz {:.1} s), slowest API 503 {:.1} s (pool timeout {} s); \
             ready again {:.1} s after PostgreSQL returned, no restart",
            scale.database_outage.as_secs(),
            not_ready_after.map_or(f64::NAN, |d| d.as_secs_f64()),
            slowest_ready.as_secs_f64(),
            slowest_503.as_secs_f64(),
            ACQUIRE_TIMEOUT.as_secs(),
            recovered.as_secs_f64()
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    let quick = ACQUIRE_TIMEOUT + Duration::from_secs(2);
    let unanswered = load.client.seen.lock().unwrap().unanswered;
    outcome.check(not_ready_after.is_some(), "/readyz never said 503");
    outcome.check(
        slowest_503 < quick && slowest_ready < quick,
        format!("503s took up to {slowest_503:?}, /readyz up to {slowest_ready:?}"),
    );
    outcome.check(
        unanswered == 0,
        format!("{unanswered} calls hung up on instead of answered"),
    );
    outcome.report();
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

#[tokio::test(flavor = "multi_thread")]
async fn postgres_crash() {
    let scale = scale();
    let started = Instant::now();
    // A cluster of its own, since it is killed: PostgreSQL itself crashes and replays its WAL.
    let cluster = support::own_cluster();
    let dir = TempDir::new();
    let server = Server::start_with(server_command(&dir, cluster.url(), &[]), &dir.0).await;
    let api = server.api();
    let parties = two_parties(&api).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, scale.operations, scale.in_flight);

    let crash = async {
        load.reached(scale.operations * 4 / 10).await;
        let before = load.done.load(Ordering::SeqCst);
        let killed_at = Instant::now();
        // Blocking, but brief: the clients go on meanwhile on the other worker threads.
        tokio::task::block_in_place(|| cluster.crash()).unwrap();
        // Down for a moment, as a supervisor would take to restart it.
        tokio::time::sleep(scale.database_outage / 3).await;
        tokio::task::block_in_place(|| cluster.restart()).unwrap();
        let restarted = killed_at.elapsed();
        // Ready again by itself, without a restart of Mandate.
        let ready = ready_again(&api, killed_at).await;
        (before, restarted, ready)
    };
    let ((before, restarted, ready), ()) = tokio::join!(crash, load.run());
    let mut outcome = audit(&api, &load, "postgres_crash").await;
    let slowest_503 = load.client.seen.lock().unwrap().slowest_unavailable;
    outcome.notes.insert(
        0,
        format!(
            "PostgreSQL's postmaster and backends killed with SIGKILL after {before} operations, \
             restarted (WAL replay) {:.1} s after the kill; Mandate ready again {:.1} s after \
             the kill, no restart; slowest API 503 {:.1} s (pool timeout {} s)",
            restarted.as_secs_f64(),
            ready.as_secs_f64(),
            slowest_503.as_secs_f64(),
            ACQUIRE_TIMEOUT.as_secs(),
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    let quick = ACQUIRE_TIMEOUT + Duration::from_secs(2);
    outcome.check(
        slowest_503 < quick,
        format!("503s took up to {slowest_503:?}"),
    );
    outcome.report();
}

#[tokio::test(flavor = "multi_thread")]
async fn failover() {
    let scale = scale();
    let started = Instant::now();
    // A primary and its synchronous standby, both of the scenario's own.
    let primary = support::own_cluster();
    let standby =
        tokio::task::block_in_place(|| mandate_test_support::Cluster::standby_of(&primary))
            .unwrap();
    // Both hosts in one URL: the driver connects to the first that accepts writes.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let dir = TempDir::new();
    let server = Server::start_with(server_command(&dir, &url, &[]), &dir.0).await;
    let api = server.api();
    let parties = two_parties(&api).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, scale.operations, scale.in_flight);
    let ready = || async { api.send("GET", "/readyz", None, None, &[]).await.status };

    let failover = async {
        load.reached(scale.operations * 4 / 10).await;
        let before = load.done.load(Ordering::SeqCst);
        let killed_at = Instant::now();
        tokio::task::block_in_place(|| primary.crash()).unwrap();
        // No primary for a while, as a failover manager takes to decide: not ready meanwhile.
        let mut not_ready = 0;
        while killed_at.elapsed() < scale.database_outage / 3 {
            not_ready += usize::from(ready().await == 503);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::task::block_in_place(|| standby.promote()).unwrap();
        let promoted = killed_at.elapsed();
        let ready_at = ready_again(&api, killed_at).await;
        (before, not_ready, promoted, ready_at)
    };
    let ((before, not_ready, promoted, ready_at), ()) = tokio::join!(failover, load.run());
    let mut outcome = audit(&api, &load, "failover").await;
    let slowest_503 = load.client.seen.lock().unwrap().slowest_unavailable;
    outcome.notes.insert(
        0,
        format!(
            "primary killed with SIGKILL after {before} operations, standby promoted {:.1} s \
             later; Mandate ready on the new primary {:.1} s after the promotion, no restart; \
             /readyz 503 {not_ready} times meanwhile; slowest API 503 {:.1} s (pool timeout {} s)",
            promoted.as_secs_f64(),
            (ready_at - promoted).as_secs_f64(),
            slowest_503.as_secs_f64(),
            ACQUIRE_TIMEOUT.as_secs(),
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    let quick = ACQUIRE_TIMEOUT + Duration::from_secs(2);
    outcome.check(not_ready > 0, "/readyz never said 503 without a primary");
    outcome.check(
        slowest_503 < quick,
        format!("503s took up to {slowest_503:?}"),
    );
    outcome.report();
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_outage() {
    let scale = scale();
    let started = Instant::now();
    let database = FreshDatabase::create().await;
    let dir = TempDir::new();
    let server = Server::start_with(server_command(&dir, &database.url, &[]), &dir.0).await;
    let api = server.api();
    let mut proxies = Vec::new();
    let mut parties = Vec::new();
    for _ in 0..2 {
        let receiver = Receiver::start(&[]).await;
        let proxy = Proxy::start(address_of(&receiver.url).unwrap()).await;
        let url = proxy.rewrite(&receiver.url);
        parties.push(party(&api, receiver, &url).await);
        proxies.push(proxy);
    }
    // A third endpoint, of the first tenant, for cancellations, whose receiver answers 410
    // Gone: the first cancellation disables it, the second is not sent to it.
    let gone = Receiver::start(&[410]).await;
    let key = parties[0].tenant.destination_key.clone();
    let gone_endpoint = endpoint(
        &api,
        &parties[0].tenant,
        &gone.url,
        "payment_request.cancelled",
    )
    .await;
    cancel_a_request(&api, &key).await;
    let disabled = wait_until(SETTLE, || async {
        let state = api
            .get(&format!("/v1/webhook-endpoints/{gone_endpoint}"), &key)
            .await;
        state.body["enabled"] == false
    })
    .await;
    // The healthy endpoint has that request's two events before its receiver goes down.
    let first = &parties[0].receiver;
    wait_until(SETTLE, || async { first.event_ids().len() == 2 }).await;

    let received = || {
        parties
            .iter()
            .map(|p| p.receiver.received().len())
            .sum::<usize>()
    };
    let before_cut = received();
    for proxy in &mut proxies {
        proxy.cut().await;
    }
    let down_at = Instant::now();
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, scale.operations / 2, scale.in_flight);
    load.run().await;
    cancel_a_request(&api, &key).await;
    tokio::time::sleep(scale.receiver_outage.saturating_sub(down_at.elapsed())).await;
    let received_while_down = received() - before_cut;
    for proxy in &mut proxies {
        proxy.open().await;
    }
    let back_at = Instant::now();
    let mut outcome = audit(&api, &load, "receiver_outage").await;
    let all_in = back_at.elapsed();
    let gone_calls = gone.received().len();
    outcome.notes.insert(
        0,
        format!(
            "receivers refusing connections for {} s ({received_while_down} deliveries got \
             through meanwhile), every event {:.1} s after they returned; an endpoint \
             answering 410 {} after one call, called {gone_calls} time(s) in all",
            scale.receiver_outage.as_secs(),
            all_in.as_secs_f64(),
            if disabled { "disabled" } else { "NOT disabled" },
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.check(
        received_while_down == 0,
        "deliveries got through a receiver that was down",
    );
    outcome.check(disabled, "the endpoint answering 410 was not disabled");
    outcome.check(gone_calls == 1, "a disabled endpoint was called again");
    outcome.report();
}

/// Creates a request of the caller's destination and cancels it.
async fn cancel_a_request(api: &Api, key: &str) {
    let created = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "5", "currency": "USD"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let cancelled = api
        .send(
            "POST",
            &format!("/v1/requests/{id}/cancel"),
            Some(key),
            None,
            &[],
        )
        .await;
    assert!(cancelled.status < 300, "{}", cancelled.body);
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

#[tokio::test(flavor = "multi_thread")]
async fn replica_loss() {
    const REPLICAS: usize = 3;
    const VICTIM: usize = 2;
    let scale = scale();
    let started = Instant::now();
    let database = FreshDatabase::create().await;
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
    let mut replicas = futures_util::future::join_all(
        dirs.iter()
            .map(|dir| Server::start_with(server_command(dir, &database.url, &shared), &dir.0)),
    )
    .await;
    let api = replicas[0].api();
    let parties = two_parties(&api).await;
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let target = Target::new(bases.clone());
    let load = Load::new(&target, &parties, scale.operations, scale.in_flight);

    let victim = &mut replicas[VICTIM];
    let kill = async {
        load.reached(scale.operations * 3 / 10).await;
        target.set(bases[..VICTIM].to_vec());
        victim.stop();
        load.done.load(Ordering::SeqCst)
    };
    let (before, ()) = tokio::join!(kill, load.run());
    let mut outcome = audit(&api, &load, "replica_loss").await;
    outcome.notes.insert(
        0,
        format!("{REPLICAS} servers, one killed with SIGKILL after {before} operations"),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.report();
}

/// The `Idempotency-Key` whose call the first server crashes after committing.
const CRASH_AFTER_COMMIT_ENV: &str = "MANDATE_FAULT_CRASH_AFTER_COMMIT";

/// A load of keyed clients: operation `i` creates a customer, a request for it, a payment link
/// and a payment of `1 + i % 4`, each call with its own `Idempotency-Key`.
struct KeyedLoad<'a> {
    client: Client<'a>,
    parties: &'a [Party],
    operations: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Per operation, what its clients were answered.
    acknowledged: Mutex<BTreeMap<usize, Acknowledged>>,
}

/// An operation of a [`KeyedLoad`], every call of it answered 2xx.
struct Acknowledged {
    request_id: String,
    customer_id: String,
    link_url: String,
    payment: KeyedAnswer,
}

impl KeyedLoad<'_> {
    async fn run(&self, in_flight: usize) {
        futures_util::future::join_all((0..in_flight).map(|_| async {
            loop {
                let i = self.next.fetch_add(1, Ordering::SeqCst);
                if i >= self.operations {
                    return;
                }
                self.operation(i).await;
                self.done.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .await;
    }

    async fn keyed(&self, i: usize, path: &str, key: &str, body: Value) -> Option<KeyedAnswer> {
        let token = &self.parties[i % self.parties.len()].tenant.destination_key;
        self.client.send(i, token, path, key, &body).await
    }

    async fn operation(&self, i: usize) {
        let customer = self
            .keyed(
                i,
                "/v1/customers",
                &format!("customer-{i}"),
                json!({"name": format!("faults-{i}")}),
            )
            .await;
        let Some(customer) = customer else { return };
        let customer_id = customer.body["id"].as_str().unwrap_or_default().to_owned();
        let request = json!({"direction": "incoming", "amount": "10", "currency": "USD",
            "reference": format!("op-{i}"), "customer_id": customer_id});
        let Some(request) = self
            .keyed(i, "/v1/requests", &format!("request-{i}"), request)
            .await
        else {
            return;
        };
        let request_id = request.body["id"].as_str().unwrap_or_default().to_owned();
        let links = format!("/v1/requests/{request_id}/payment-links");
        let Some(link) = self.keyed(i, &links, &format!("link-{i}"), json!({})).await else {
            return;
        };
        let payment = json!({"amount": (1 + i % 4).to_string(), "reference": format!("pay-{i}")});
        let payments = format!("/v1/requests/{request_id}/payments");
        let Some(paid) = self
            .keyed(i, &payments, &format!("payment-{i}"), payment)
            .await
        else {
            return;
        };
        let url = link.body["url"].as_str().unwrap_or_default().to_owned();
        self.acknowledged.lock().unwrap().insert(
            i,
            Acknowledged {
                request_id,
                customer_id,
                link_url: url,
                payment: paid,
            },
        );
    }
}

/// Counts by the first column of `query`'s rows (text, then a count).
async fn counts(client: &tokio_postgres::Client, query: &str) -> BTreeMap<String, i64> {
    client
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash point: cargo xtask test (or faults) builds it"
)]
async fn keyed_crash() {
    let scale = scale();
    let started = Instant::now();
    // A cluster of its own: nothing else's load or state is in the audit's way.
    let cluster = support::own_cluster();
    let dir = TempDir::new();
    let command = || server_command(&dir, cluster.url(), &[]);
    // The first server dies at the worst moment of one payment: committed, not answered.
    let crashed_operation = 3;
    let crash_key = format!("payment-{crashed_operation}");
    let mut first = command();
    first.env(CRASH_AFTER_COMMIT_ENV, &crash_key);
    let mut server = Server::start_with(first, &dir.0).await;
    let parties = two_parties(&server.api()).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = KeyedLoad {
        client: Client::new(&target),
        parties: &parties,
        operations: scale.operations,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        acknowledged: Mutex::new(BTreeMap::new()),
    };
    let crashes = async {
        // The crash point fires by itself; the server is replaced once it is gone.
        let status = loop {
            if let Some(status) = server.exit_status() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        target.set(Vec::new());
        let mut second = Server::start_with(command(), &dir.0).await;
        target.set(vec![second.base.clone()]);
        // Then SIGKILL under load, anywhere.
        while load.done.load(Ordering::SeqCst) < scale.operations * 6 / 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        target.set(Vec::new());
        second.stop();
        let third = Server::start_with(command(), &dir.0).await;
        target.set(vec![third.base.clone()]);
        (third, status)
    };
    // The last server lives until the audit is done.
    let ((_server, crash_status), ()) = tokio::join!(crashes, load.run(scale.in_flight));

    let mut outcome = Outcome {
        scenario: "keyed_crash",
        operations: load.done.load(Ordering::SeqCst),
        lost: 0,
        duplicated: 0,
        leaked: 0,
        notes: Vec::new(),
        problems: load.client.seen.lock().unwrap().unexpected.clone(),
    };
    #[cfg(unix)]
    outcome.check(
        std::os::unix::process::ExitStatusExt::signal(&crash_status) == Some(6),
        format!("the first server did not crash at its crash point: {crash_status}"),
    );
    let acknowledged = std::mem::take(&mut *load.acknowledged.lock().unwrap());
    outcome.check(
        acknowledged.len() == scale.operations,
        format!(
            "{} of {} operations acknowledged",
            acknowledged.len(),
            scale.operations
        ),
    );
    match acknowledged.get(&crashed_operation) {
        Some(Acknowledged { payment: paid, .. }) => outcome.check(
            paid.replayed && paid.attempts > 1,
            format!(
                "the payment committed before the crash was not replayed (attempts {}, replayed {})",
                paid.attempts, paid.replayed
            ),
        ),
        None => outcome.problems.push("the crashed operation was not acknowledged".into()),
    }
    // Every acknowledged change exactly once, nothing without an acknowledgement, amounts equal
    // to the distinct keys' payments, one event per change.
    let client = support::connect(cluster.url()).await;
    let customers = counts(
        &client,
        "SELECT name, count(*) FROM customers GROUP BY name",
    )
    .await;
    let requests = counts(
        &client,
        "SELECT reference || ' ' || id || ' ' || customer_id || ' ' || amount_paid, count(*) \
         FROM payment_requests GROUP BY 1",
    )
    .await;
    let links = counts(
        &client,
        "SELECT r.reference, count(l.id) FROM payment_requests r \
         LEFT JOIN payment_links l ON l.request_id = r.id GROUP BY 1",
    )
    .await;
    let payments = counts(
        &client,
        "SELECT r.reference, count(p.id) FROM payment_requests r \
         LEFT JOIN payments p ON p.request_id = r.id GROUP BY 1",
    )
    .await;
    let events = counts(
        &client,
        "SELECT event_type, count(*) FROM events GROUP BY 1",
    )
    .await;
    let n = scale.operations as i64;
    outcome.check(
        customers.len() == scale.operations && customers.values().all(|&c| c == 1),
        format!(
            "customers: {} names for {n} operations, {customers:?}",
            customers.len()
        ),
    );
    outcome.check(
        requests.len() == scale.operations,
        format!("{} requests for {n} operations", requests.len()),
    );
    for (i, operation) in &acknowledged {
        let (request_id, customer_id) = (&operation.request_id, &operation.customer_id);
        let row = format!("op-{i} {request_id} {customer_id} {}", 1 + i % 4);
        outcome.check(
            requests.get(&row) == Some(&1),
            format!("op-{i}: the acknowledged request, customer and amount paid are not stored once as {row}"),
        );
        let reference = format!("op-{i}");
        outcome.check(
            links.get(&reference) == Some(&1),
            format!("{reference}: {:?} links", links.get(&reference)),
        );
        outcome.check(
            payments.get(&reference) == Some(&1),
            format!("{reference}: {:?} payments", payments.get(&reference)),
        );
        outcome.check(
            operation.link_url.contains("/pay/"),
            format!("{reference}: no link url"),
        );
    }
    for kind in [
        "customer.created",
        "payment_request.created",
        "payment_request.partially_paid",
    ] {
        let count = events.get(kind).copied().unwrap_or_default();
        outcome.check(count == n, format!("{count} {kind} events for {n} changes"));
        outcome.duplicated += usize::try_from(count - n).unwrap_or(0);
    }
    outcome.lost = scale.operations - acknowledged.len();
    let replayed = acknowledged
        .values()
        .filter(|operation| operation.payment.replayed)
        .count();
    outcome.notes.push(format!(
        "crash after the commit of {crash_key} ({crash_status}), then SIGKILL at 60 %; \
         {replayed} payments answered by a replay; scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.report();
}
