//! `crash`: the server is killed with SIGKILL mid-load (and mid-delivery) and restarted on the
//! same data.

use super::*;

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
