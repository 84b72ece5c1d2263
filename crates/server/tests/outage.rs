//! The database going away and coming back: `/readyz` and the API answer 503 quickly, and
//! everything works again without a restart.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mandate_test_support::address_of;
use support::proxy::Proxy;
use support::{Database, FreshDatabase, Server, TempDir};

#[tokio::test(flavor = "multi_thread")]
async fn readyz_and_the_api_report_a_lost_database_and_recover_without_restart() {
    let database = FreshDatabase::create().await;
    let mut proxy = Proxy::start(address_of(&database.url).unwrap()).await;
    let proxied = proxy.rewrite(&database.url);
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Postgres(proxied));
    command.env("MANDATE__DATABASE__ACQUIRE_TIMEOUT_MS", "1000");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let tenant = support::tenant(&api).await;
    assert_eq!(
        api.send("GET", "/readyz", None, None, &[]).await.status,
        200
    );

    proxy.cut().await;
    let started = Instant::now();
    let ready = api.send("GET", "/readyz", None, None, &[]).await;
    assert_eq!((ready.status, ready.code()), (503, "SERVICE_UNAVAILABLE"));
    let call = api.get("/v1/destinations", &tenant.platform_key).await;
    assert_eq!((call.status, call.code()), (503, "SERVICE_UNAVAILABLE"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "503s came after {:?}",
        started.elapsed()
    );

    proxy.open().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = api.get("/v1/destinations", &tenant.platform_key).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 30 s: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.send("GET", "/readyz", None, None, &[]).await.status,
        200
    );
}
