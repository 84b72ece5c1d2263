//! The database going away and coming back: `/readyz` and the API answer 503 quickly, and
//! everything works again without a restart.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{Database, FreshPostgres, Server, TempDir};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    upstream: String,
    connections: Option<JoinSet<()>>,
}

impl Proxy {
    fn new(upstream: String) -> Self {
        Self {
            port: support::free_port(),
            upstream,
            connections: None,
        }
    }

    async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let upstream = self.upstream.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut pipes = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                pipes.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        self.connections = Some(tasks);
    }

    /// Stops listening and drops every open connection.
    async fn cut(&mut self) {
        if let Some(mut tasks) = self.connections.take() {
            tasks.shutdown().await;
        }
    }
}

fn host_and_port(url: &str) -> (String, u16) {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap()),
        None => (host_port.to_owned(), 5432),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_and_the_api_report_a_lost_database_and_recover_without_restart() {
    let database = FreshPostgres::create().await;
    let (host, port) = host_and_port(&database.url);
    let mut proxy = Proxy::new(format!("{host}:{port}"));
    proxy.open().await;
    let proxied = database.url.replacen(
        &format!("{host}:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
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
