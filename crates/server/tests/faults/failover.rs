//! `failover`: on a primary and a synchronous standby of its own, the primary is killed with
//! SIGKILL mid-load and the standby promoted; the server, given both hosts, moves over.

use super::*;

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
