//! `receiver_isolation`: one tenant's healthy endpoint gets 50 events a second, first alone, then
//! beside five endpoints whose receivers never answer (each request is held until the sender's
//! timeout). The healthy endpoint's commit → arrival time must not suffer for them (p99 within
//! 3× of its p99 alone), and once the hanging receivers answer, every event reaches every
//! endpoint. Attempts that failed while their receiver hung wait for their retry (up to 30 s
//! with the suite's schedule), so the scenario lasts a minute even in its short form: only
//! `cargo xtask faults` runs it.

use std::time::SystemTime;

use super::*;

/// Events a second, as the issue names.
const RATE: u32 = 50;
/// Endpoints whose receivers hang.
const HANGING: usize = 5;
/// How long the hanging receivers hold a request: the server's send timeout.
const SEND_TIMEOUT_SECONDS: &str = "2";

/// Creates requests of `tenant` at [`RATE`] a second for `length`; the ids of their events'
/// requests (`payment_request.created`), in creation order.
async fn paced_requests(api: &Api, tenant: &Tenant, length: Duration) -> Vec<String> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    while started.elapsed() < length {
        ticks.tick().await;
        let (api, key) = (api.clone(), tenant.destination_key.clone());
        calls.spawn(async move {
            let body = json!({"direction": "incoming", "amount": "5", "currency": "USD"});
            let created = api.post("/v1/requests", &key, body).await;
            assert_eq!(created.status, 201, "{}", created.body);
            created.body["id"].as_str().unwrap().to_owned()
        });
    }
    calls.join_all().await
}

/// Commit → arrival of each event whose request is in `requests`, as `receiver` got it first.
fn latencies(receiver: &Receiver, requests: &BTreeSet<String>) -> Vec<Duration> {
    let mut first: BTreeMap<String, Duration> = BTreeMap::new();
    for received in receiver.received() {
        let body: Value = serde_json::from_str(&received.body).unwrap();
        if !requests.contains(body["data"]["object"]["id"].as_str().unwrap_or_default()) {
            continue;
        }
        let created: chrono::DateTime<chrono::Utc> =
            body["created_at"].as_str().unwrap().parse().unwrap();
        let created = SystemTime::from(created);
        let latency = received
            .arrived_at
            .duration_since(created)
            .unwrap_or_default();
        first
            .entry(received.webhook_id)
            .and_modify(|known| *known = (*known).min(latency))
            .or_insert(latency);
    }
    let mut latencies: Vec<Duration> = first.into_values().collect();
    latencies.sort();
    latencies
}

/// The `share` quantile (0.5, 0.99) of sorted `values`.
fn quantile(values: &[Duration], share: f64) -> Duration {
    let last = values.len().saturating_sub(1);
    let index = ((values.len() as f64 * share).ceil() as usize).saturating_sub(1);
    values.get(index.min(last)).copied().unwrap_or_default()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a minute even in its short form: cargo xtask faults runs it"]
async fn receiver_isolation() {
    let scale = scale();
    let started = Instant::now();
    let phase = match scale.name {
        "full" => Duration::from_secs(20),
        _ => Duration::from_secs(4),
    };
    let database = FreshDatabase::create().await;
    let dir = TempDir::new();
    let timeout = [(
        "MANDATE__WEBHOOKS__TIMEOUT_SECONDS",
        SEND_TIMEOUT_SECONDS.to_owned(),
    )];
    let server = Server::start_with(server_command(&dir, &database.url, &timeout), &dir.0).await;
    let api = server.api();
    let receiver = Receiver::start(&[]).await;
    let url = receiver.url.clone();
    let healthy = party(&api, receiver, &url).await;

    // Alone.
    let alone: BTreeSet<String> = paced_requests(&api, &healthy.tenant, phase)
        .await
        .into_iter()
        .collect();
    // Counting ids is cheap next to reading every body: the wait takes no time from the
    // receivers it measures.
    let alone_arrived = wait_until(SETTLE, || async {
        healthy.receiver.event_ids().len() >= alone.len()
    })
    .await;

    // Beside five endpoints of the same tenant, for the same events, whose receivers hang.
    let mut hanging = Vec::new();
    for _ in 0..HANGING {
        let receiver = Receiver::start_holding().await;
        let id = endpoint(&api, &healthy.tenant, &receiver.url, "payment_request.*").await;
        hanging.push((receiver, id));
    }
    let beside: BTreeSet<String> = paced_requests(&api, &healthy.tenant, phase)
        .await
        .into_iter()
        .collect();
    let beside_arrived = wait_until(SETTLE, || async {
        healthy.receiver.event_ids().len() >= alone.len() + beside.len()
    })
    .await;
    let hung_while_held: usize = hanging.iter().map(|(r, _)| r.received().len()).sum();

    // The hanging receivers answer: every event reaches every endpoint.
    for (receiver, _) in &hanging {
        receiver.answer();
    }
    let answering_at = Instant::now();
    let events: BTreeSet<String> = list_all(&api, "/v1/events", &healthy.tenant.destination_key)
        .await
        .into_iter()
        .filter(|event| event["type"] == "payment_request.created")
        .filter(|event| beside.contains(event["data"]["object"]["id"].as_str().unwrap_or_default()))
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let everything_in = wait_until(Duration::from_secs(180), || async {
        hanging
            .iter()
            .all(|(receiver, _)| receiver.event_ids().is_superset(&events))
    })
    .await;
    let drained = answering_at.elapsed();

    let without = latencies(&healthy.receiver, &alone);
    let with = latencies(&healthy.receiver, &beside);
    let (p50_without, p99_without) = (quantile(&without, 0.5), quantile(&without, 0.99));
    let (p50_with, p99_with) = (quantile(&with, 0.5), quantile(&with, 0.99));
    let mut lost = alone.len() - without.len() + beside.len() - with.len();
    let mut duplicated = 0;
    for (receiver, _) in &hanging {
        let ids = receiver.event_ids();
        lost += events.difference(&ids).count();
        duplicated += receiver.received().len() - ids.len();
    }
    duplicated += healthy.receiver.received().len() - healthy.receiver.event_ids().len();
    let mut outcome = Outcome {
        scenario: "receiver_isolation",
        operations: alone.len() + beside.len(),
        lost,
        duplicated,
        leaked: 0,
        notes: vec![
            format!(
                "healthy endpoint at {RATE} events/s, commit → arrival: alone p50 {:.0} ms, \
                 p99 {:.0} ms; beside {HANGING} endpoints whose receivers hang until the {} s \
                 timeout p50 {:.0} ms, p99 {:.0} ms (p99 {:.2}× alone)",
                millis(p50_without),
                millis(p99_without),
                SEND_TIMEOUT_SECONDS,
                millis(p50_with),
                millis(p99_with),
                p99_with.as_secs_f64() / p99_without.as_secs_f64().max(f64::EPSILON),
            ),
            format!(
                "{} events per phase; once the hanging receivers answered, all {} events \
                 reached each of them in {:.1} s",
                beside.len(),
                events.len(),
                drained.as_secs_f64()
            ),
            format!(
                "scale {}, {:.0} s",
                scale.name,
                started.elapsed().as_secs_f64()
            ),
        ],
        problems: Vec::new(),
    };
    outcome.check(
        alone_arrived && beside_arrived,
        "the healthy endpoint did not get every event",
    );
    outcome.check(
        hung_while_held == 0,
        "a hanging receiver recorded a request",
    );
    outcome.check(
        events.len() == beside.len(),
        format!(
            "{} requests but {} created events",
            beside.len(),
            events.len()
        ),
    );
    outcome.check(
        everything_in,
        "the hanging endpoints did not get every event once they answered",
    );
    outcome.check(
        p99_with <= p99_without * 3,
        format!("p99 beside the hanging endpoints {p99_with:?} > 3 × {p99_without:?} alone"),
    );
    outcome.report();
}
