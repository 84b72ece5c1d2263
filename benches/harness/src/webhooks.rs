//! The webhook load, end to end: API calls that each emit one event, delivered by Mandate's
//! worker to one loopback receiver running in this process.
//!
//! - Throughput: `--events` requests are created as fast as `--concurrency` connections allow;
//!   the figure is events divided by the time from the first API call to the arrival of the
//!   last webhook, and every event must arrive.
//! - Latency: one request every `1/--rate` seconds for `--seconds`; for each, the time from the
//!   API response (the transaction committed before Mandate answered) to the webhook's arrival
//!   at the receiver, and, as an upper bound, from the moment the API call was sent. All
//!   instants come from one monotonic clock in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::seed::Api;

#[derive(clap::Args)]
pub struct Args {
    /// Mandate's base URL.
    #[arg(long)]
    server: String,
    /// A destination key: requests are created, and the endpoint registered, as that destination.
    #[arg(long)]
    destination_key: String,
    /// Events in the throughput run.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// API calls in flight during the throughput run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Length of the latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long to wait for the last deliveries.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Default)]
struct Arrivals {
    /// First arrival of the event about each request id.
    first: HashMap<String, Instant>,
    /// Every delivery, repeats included.
    total: usize,
}

type Shared = Arc<Mutex<Arrivals>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Arrivals> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(state: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let at = Instant::now();
    let request_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|event| {
            event
                .pointer("/data/object/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let mut arrivals = lock(&state);
    arrivals.total += 1;
    arrivals.first.entry(request_id).or_insert(at);
    HttpResponse::NoContent().finish()
}

async fn start_receiver(shared: Shared) -> anyhow::Result<String> {
    let state = web::Data::new(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .context("binding the receiver")?;
    let port = server
        .addrs()
        .first()
        .map(|addr| addr.port())
        .context("the receiver has no address")?;
    tokio::spawn(server.run());
    Ok(format!("http://127.0.0.1:{port}/hook"))
}

async fn create(api: &Api, key: &str, n: usize) -> anyhow::Result<String> {
    let created = api
        .post(
            "/v1/requests",
            key,
            &[],
            json!({"direction": "incoming", "amount": "1.00", "currency": "USD",
                   "reference": format!("WH-{n}")}),
        )
        .await?;
    created
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no id in the created request")
}

/// Waits until every id in `ids` has arrived; returns the latest arrival.
async fn wait_for(shared: &Shared, ids: &[String], timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let arrivals = lock(shared);
            let missing = ids
                .iter()
                .filter(|id| !arrivals.first.contains_key(*id))
                .count();
            if missing == 0 {
                return ids
                    .iter()
                    .filter_map(|id| arrivals.first.get(id).copied())
                    .max()
                    .context("no events");
            }
            if Instant::now() > deadline {
                bail!(
                    "{missing} of {} events were not delivered within {timeout:?}",
                    ids.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    json!({
        "p50_ms": percentile(&values, 50.0),
        "p99_ms": percentile(&values, 99.0),
        "max_ms": values.last().copied().unwrap_or(f64::NAN),
    })
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    let shared = Shared::default();
    let url = start_receiver(shared.clone()).await?;
    let api = Arc::new(Api::new(&args.server));
    let key: Arc<str> = args.destination_key.into();
    api.post(
        "/v1/webhook-endpoints",
        &key,
        &[],
        json!({"url": url, "event_types": ["payment_request.created"]}),
    )
    .await?;
    let timeout = Duration::from_secs(args.timeout);

    // Warm up the connections, the worker and the receiver.
    let mut warm = Vec::new();
    for n in 0..20 {
        warm.push(create(&api, &key, n).await?);
    }
    wait_for(&shared, &warm, timeout).await?;

    // Throughput.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (api, key, next) = (api.clone(), key.clone(), next.clone());
        let events = args.events;
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    return anyhow::Ok(ids);
                }
                ids.push(create(&api, &key, n).await?);
            }
        });
    }
    let mut ids = Vec::with_capacity(args.events);
    while let Some(done) = tasks.join_next().await {
        ids.extend(done??);
    }
    let api_done = started.elapsed();
    let last = wait_for(&shared, &ids, timeout).await?;
    let elapsed = last.duration_since(started).as_secs_f64();
    let throughput = json!({
        "events": ids.len(),
        "delivered": ids.len(),
        "seconds": elapsed,
        "events_per_second": ids.len() as f64 / elapsed,
        "api_calls_per_second": ids.len() as f64 / api_done.as_secs_f64(),
    });

    // Latency at a fixed rate.
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let count = (args.seconds * u64::from(args.rate.max(1))) as usize;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..count {
        ticker.tick().await;
        let (api, key) = (api.clone(), key.clone());
        calls.spawn(async move {
            let sent = Instant::now();
            let id = create(&api, &key, n).await?;
            anyhow::Ok((id, sent, Instant::now()))
        });
    }
    let mut timed = Vec::with_capacity(count);
    while let Some(done) = calls.join_next().await {
        timed.push(done??);
    }
    let latency_ids: Vec<String> = timed.iter().map(|(id, _, _)| id.clone()).collect();
    wait_for(&shared, &latency_ids, timeout).await?;
    let (after_response, after_sent, api_call) = {
        let arrivals = lock(&shared);
        let mut after_response = Vec::new();
        let mut after_sent = Vec::new();
        let mut api_call = Vec::new();
        for (id, sent, responded) in &timed {
            let Some(arrived) = arrivals.first.get(id).copied() else {
                continue;
            };
            let ms = |from: Instant| {
                if arrived >= from {
                    arrived.duration_since(from).as_secs_f64() * 1e3
                } else {
                    -(from.duration_since(arrived).as_secs_f64() * 1e3)
                }
            };
            after_response.push(ms(*responded));
            after_sent.push(ms(*sent));
            api_call.push(responded.duration_since(*sent).as_secs_f64() * 1e3);
        }
        (after_response, after_sent, api_call)
    };
    let total = lock(&shared).total;
    Ok(json!({
        "throughput": throughput,
        "latency": {
            "rate": args.rate,
            "events": timed.len(),
            "commit_to_arrival": summary(after_response),
            "sent_to_arrival": summary(after_sent),
            "api_call": summary(api_call),
        },
        "deliveries_received": total,
    }))
}
