//! A TCP proxy the test can cut and restore: in front of PostgreSQL it is a database outage as
//! the server sees it, in front of a receiver a receiver that is down (connections refused).

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct Proxy {
    pub port: u16,
    upstream: String,
    connections: Option<JoinSet<()>>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`), open.
    pub async fn start(upstream: String) -> Self {
        let mut proxy = Self {
            port: super::free_port(),
            upstream,
            connections: None,
        };
        proxy.open().await;
        proxy
    }

    /// Listens again and forwards new connections.
    pub async fn open(&mut self) {
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
    pub async fn cut(&mut self) {
        if let Some(mut tasks) = self.connections.take() {
            tasks.shutdown().await;
        }
    }

    /// `url` (pointing at the upstream) through the proxy.
    pub fn rewrite(&self, url: &str) -> String {
        mandate_test_support::with_address(url, &format!("127.0.0.1:{}", self.port)).unwrap()
    }
}
