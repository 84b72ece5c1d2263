//! The metrics recorder: installed once per process, rendered by `GET /metrics`, and fed
//! with the gauges no request or delivery updates by itself (the webhook queue, the
//! connection pool).

use std::time::Duration;

use anyhow::Context;
use mandate_domain::usecases::Mandate;
use mandate_http::MetricsRenderer;
use mandate_store::DbStore;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the queue gauges are read from the database and histograms are compacted.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Request latency buckets, in seconds: from a cached read to a request near the connection
/// acquire timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide recorder and describes every metric Mandate records.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(mandate_http::metrics::REQUEST_DURATION.to_owned()),
            LATENCY_BUCKETS,
        )
        .context("invalid latency buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        mandate_http::metrics::REQUESTS_TOTAL,
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        mandate_http::metrics::REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_counter!(
        mandate_http::metrics::AUTH_FAILURES_TOTAL,
        "Credentials refused by the authentication pipeline, by reason"
    );
    describe_counter!(
        "mandate_webhook_deliveries_total",
        "Webhook attempts by outcome: succeeded, retrying, gave_up, disabled, skipped, released, unrecorded"
    );
    describe_gauge!(
        "mandate_webhook_queue_depth",
        "Pending webhook attempts: due (waiting for a worker) or scheduled (retries due later)"
    );
    describe_gauge!(
        "mandate_webhook_oldest_pending_age_seconds",
        Unit::Seconds,
        "How long the longest-waiting due webhook attempt has been due (0 when none)"
    );
    describe_gauge!(
        "mandate_webhook_events_awaiting_fanout",
        "Events not yet turned into webhook attempts"
    );
    describe_gauge!(
        "mandate_db_pool_connections",
        "Database connections of this process by state: idle or in_use"
    );
    describe_gauge!(
        "mandate_db_pool_max_connections",
        "The most database connections this process may hold"
    );
    describe_gauge!(
        "mandate_db_pool_waiting",
        "Operations of this process waiting for a database connection"
    );
}

/// What `GET /metrics` answers: the pool gauges as they are at the scrape, then everything.
pub fn renderer(handle: PrometheusHandle, store: DbStore) -> MetricsRenderer {
    MetricsRenderer::new(move || {
        record_pool(&store);
        handle.render()
    })
}

#[allow(clippy::cast_precision_loss)] // connection counts are far below 2^52
fn record_pool(store: &DbStore) {
    let pool = store.pool_status();
    let in_use = pool.size.saturating_sub(pool.idle);
    metrics::gauge!("mandate_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("mandate_db_pool_connections", "state" => "in_use").set(in_use as f64);
    metrics::gauge!("mandate_db_pool_max_connections").set(pool.max_size as f64);
    metrics::gauge!("mandate_db_pool_waiting").set(pool.waiting as f64);
}

/// Reads the webhook queue every few seconds (every replica reports the same shared queue:
/// aggregate with `max`), refreshes the pool gauges and compacts histograms. Runs until the
/// process ends; a failed read keeps the previous values and is retried at the next round.
#[allow(clippy::cast_precision_loss)] // queue lengths are far below 2^52
pub async fn refresh(mandate: Mandate, store: DbStore, handle: PrometheusHandle) {
    let mut interval = tokio::time::interval(REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        handle.run_upkeep();
        record_pool(&store);
        let now = mandate_domain::now();
        match mandate.delivery_queue_stats(now).await {
            Ok(stats) => {
                metrics::gauge!("mandate_webhook_queue_depth", "state" => "due")
                    .set(stats.due as f64);
                metrics::gauge!("mandate_webhook_queue_depth", "state" => "scheduled")
                    .set(stats.scheduled as f64);
                let oldest = stats
                    .oldest_due_at
                    .map(|due| (now - due).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("mandate_webhook_oldest_pending_age_seconds").set(oldest);
                metrics::gauge!("mandate_webhook_events_awaiting_fanout")
                    .set(stats.events_awaiting_fanout as f64);
            }
            Err(error) => {
                tracing::warn!(error = %error, "reading the webhook queue for metrics failed")
            }
        }
    }
}
