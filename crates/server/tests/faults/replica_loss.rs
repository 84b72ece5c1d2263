//! `replica_loss`: three servers share the database and one is killed with SIGKILL mid-load.

use super::*;

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
