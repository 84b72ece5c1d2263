//! `database_outage`: PostgreSQL is cut off for a while by a TCP proxy between the server and
//! PostgreSQL.

use super::*;

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
