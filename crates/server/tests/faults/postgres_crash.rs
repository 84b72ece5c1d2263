//! `postgres_crash`: on a cluster of its own, PostgreSQL itself is killed with SIGKILL
//! mid-load, restarted, and replays its WAL.

use super::*;

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
