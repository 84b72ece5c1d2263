//! `soak`: the usual mixed load (requests and payments under `Idempotency-Key`, webhooks to two
//! tenants' receivers) at a fixed moderate rate on PostgreSQL for 30 minutes
//! (`MANDATE_SOAK_MINUTES` to shorten it). Every 30 s it records the server's resident memory
//! and open file descriptors (from `/proc`), its pool waiters and queue depth (from
//! `/metrics`) and the sizes of the fast-growing tables; at the end the usual audit, and the
//! check that memory and descriptors stay flat: their mean over the last third of the run
//! (the last 10 minutes) within 10 % of their mean over minutes 5–15 (the second sixth to the
//! half). Not part of `cargo xtask test`: `cargo xtask faults soak` runs it.

use std::path::Path;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::*;

/// Operations (a creation, and a payment of every other) started each second.
const RATE: u32 = 20;
/// How often the server is measured.
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// How far the last third's mean may stray from the baseline's.
const FLAT_WITHIN: f64 = 0.10;
/// The tables that grow with traffic.
const TABLES: [&str; 5] = [
    "events",
    "webhook_deliveries",
    "idempotency_keys",
    "payment_requests",
    "payments",
];

fn minutes() -> f64 {
    match std::env::var("MANDATE_SOAK_MINUTES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("MANDATE_SOAK_MINUTES is a number, not {text:?}")),
        Err(_) => 30.0,
    }
}

/// One measurement of the server.
struct Sample {
    at: Duration,
    rss_kib: u64,
    descriptors: usize,
    pool_waiting: f64,
    due: f64,
    scheduled: f64,
    /// Bytes of each of [`TABLES`], with their indexes.
    tables: Vec<i64>,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The value of the series `series` (`name` or `name{labels}`) in a Prometheus text page.
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn sample(
    api: &Api,
    pid: u32,
    database: &tokio_postgres::Client,
    started: Instant,
) -> Sample {
    let page = api
        .client
        .get(format!("{}/metrics", api.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sizes: BTreeMap<String, i64> = database
        .query(
            "SELECT relname::text, pg_total_relation_size(oid) FROM pg_class \
             WHERE relname = ANY($1) AND relkind = 'r'",
            &[&TABLES.to_vec()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Sample {
        at: started.elapsed(),
        rss_kib: rss_kib(pid),
        descriptors: descriptors(pid),
        pool_waiting: metric(&page, "mandate_db_pool_waiting"),
        due: metric(&page, "mandate_webhook_queue_depth{state=\"due\"}"),
        scheduled: metric(&page, "mandate_webhook_queue_depth{state=\"scheduled\"}"),
        tables: TABLES
            .iter()
            .map(|table| sizes.get(*table).copied().unwrap_or(0))
            .collect(),
    }
}

/// The mean of `value` over the samples taken between `from` and `to` (fractions of the run).
fn mean(
    samples: &[Sample],
    length: Duration,
    from: f64,
    to: f64,
    value: fn(&Sample) -> f64,
) -> f64 {
    let inside: Vec<f64> = samples
        .iter()
        .filter(|s| {
            let at = s.at.as_secs_f64() / length.as_secs_f64();
            // A sample may land a moment after the end of the run.
            (from..=to + 0.01).contains(&at)
        })
        .map(value)
        .collect();
    inside.iter().sum::<f64>() / inside.len().max(1) as f64
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn table(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| at | RSS (MiB) | descriptors | pool waiters | queue due | queue scheduled |",
    );
    for name in TABLES {
        out.push_str(&format!(" {name} (MiB) |"));
    }
    out.push_str("\n|---|---:|---:|---:|---:|---:|");
    out.push_str(&"---:|".repeat(TABLES.len()));
    out.push('\n');
    let picks = [0, samples.len() / 2, samples.len().saturating_sub(1)];
    for (label, index) in ["start", "middle", "end"].into_iter().zip(picks) {
        let s = &samples[index];
        out.push_str(&format!(
            "| {label} ({:.1} min) | {:.1} | {} | {} | {} | {} |",
            s.at.as_secs_f64() / 60.0,
            s.rss_kib as f64 / 1024.0,
            s.descriptors,
            s.pool_waiting,
            s.due,
            s.scheduled
        ));
        for bytes in &s.tables {
            out.push_str(&format!(" {:.1} |", mib(*bytes)));
        }
        out.push('\n');
    }
    out
}

/// `command` with its environment, running the program at `program` instead: the soak runs
/// a copy of the server, so that the binary may be rebuilt meanwhile.
fn running_copy(command: &Command, program: &Path) -> Command {
    let mut copy = Command::new(program);
    copy.env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            copy.env(name, value);
        }
    }
    copy
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "30 minutes: cargo xtask faults soak runs it"]
async fn soak() {
    let length = Duration::from_secs_f64(minutes() * 60.0);
    let started = Instant::now();
    let database = FreshDatabase::create().await;
    let dir = TempDir::new();
    let program = dir.0.join("mandate");
    std::fs::copy(env!("CARGO_BIN_EXE_mandate"), &program).unwrap();
    let command = running_copy(&server_command(&dir, &database.url, &[]), &program);
    let server = Server::start_with(command, &dir.0).await;
    let api = server.api();
    let parties = two_parties(&api).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, usize::MAX, 0);
    let stats = support::connect(&database.url).await;
    let running = AtomicBool::new(true);

    let paced = async {
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
        let mut operations = FuturesUnordered::new();
        let mut next = 0;
        while running.load(Ordering::SeqCst) {
            tokio::select! {
                _ = ticks.tick() => {
                    let (load, i) = (&load, next);
                    next += 1;
                    operations.push(async move {
                        load.operation(i).await;
                        load.done.fetch_add(1, Ordering::SeqCst);
                    });
                }
                Some(()) = operations.next(), if !operations.is_empty() => {}
            }
        }
        while operations.next().await.is_some() {}
    };
    let measured = async {
        let mut samples = Vec::new();
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        loop {
            ticks.tick().await;
            let sample = sample(&api, server.pid(), &stats, started).await;
            println!(
                "soak: {:.1} min, RSS {:.1} MiB, {} descriptors, {} pool waiters, {} due, \
                 {} operations",
                sample.at.as_secs_f64() / 60.0,
                sample.rss_kib as f64 / 1024.0,
                sample.descriptors,
                sample.pool_waiting,
                sample.due,
                load.done.load(Ordering::SeqCst)
            );
            let over = sample.at >= length;
            samples.push(sample);
            if over {
                running.store(false, Ordering::SeqCst);
                return samples;
            }
        }
    };
    let ((), samples) = tokio::join!(paced, measured);
    let mut outcome = audit(&api, &load, "soak").await;

    let rss = |s: &Sample| s.rss_kib as f64;
    let fds = |s: &Sample| s.descriptors as f64;
    let (rss_base, rss_last) = (
        mean(&samples, length, 1.0 / 6.0, 0.5, rss),
        mean(&samples, length, 2.0 / 3.0, 1.0, rss),
    );
    let (fds_base, fds_last) = (
        mean(&samples, length, 1.0 / 6.0, 0.5, fds),
        mean(&samples, length, 2.0 / 3.0, 1.0, fds),
    );
    let drift = |base: f64, last: f64| (last - base) / base.max(f64::EPSILON);
    println!("\nSoak ({:.0} min):\n\n{}", minutes(), table(&samples));
    let m = minutes();
    outcome.notes.insert(
        0,
        format!(
            "{m:.0} min at {RATE} operations/s; RSS {:.1} MiB (minutes {:.1}–{:.1}) → {:.1} MiB \
             (last {:.1} minutes), {:+.1} %; descriptors {:.1} → {:.1}, {:+.1} %; \
             webhook_deliveries {:.1} MiB at the end",
            rss_base / 1024.0,
            m / 6.0,
            m / 2.0,
            rss_last / 1024.0,
            m / 3.0,
            drift(rss_base, rss_last) * 100.0,
            fds_base,
            fds_last,
            drift(fds_base, fds_last) * 100.0,
            samples.last().map_or(0.0, |s| mib(s.tables[1])),
        ),
    );
    outcome
        .notes
        .push(format!("{:.0} s", started.elapsed().as_secs_f64()));
    outcome.check(
        drift(rss_base, rss_last).abs() <= FLAT_WITHIN,
        "resident memory of the last third strays more than 10 % from the second sixth to the half",
    );
    outcome.check(
        drift(fds_base, fds_last).abs() <= FLAT_WITHIN,
        "open descriptors of the last third stray more than 10 % from the second sixth to the half",
    );
    outcome.report();
}
