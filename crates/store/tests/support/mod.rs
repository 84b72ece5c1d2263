//! Fresh databases for tests, and a TCP proxy that can cut or freeze the way to PostgreSQL.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use mandate_domain::ports::Store;
use mandate_store::{DbStore, StoreOptions};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use mandate_test_support::FreshDatabase;

/// A store on a fresh SQLite file in a temporary directory, removed with the guard.
pub async fn sqlite_store() -> (Arc<dyn Store>, TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("mandate.db").display());
    let store = DbStore::open(&url, &StoreOptions::default()).await.unwrap();
    (Arc::new(store), directory)
}

/// A store on a fresh PostgreSQL database, dropped with the guard.
pub async fn postgres_store() -> (Arc<dyn Store>, FreshDatabase) {
    let database = FreshDatabase::create().await;
    let store = DbStore::open(&database.url, &StoreOptions::default())
        .await
        .unwrap();
    (Arc::new(store), database)
}

/// A TCP proxy in front of a server, that can stop answering (`freeze`) or go away (`cut`).
pub struct Proxy {
    pub port: u16,
    upstream: String,
    frozen: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, _) = watch::channel(false);
        let proxy = Proxy {
            port,
            upstream,
            frozen,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let frozen = self.frozen.subscribe();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if *frozen.borrow() {
                    // Accepted, never answered.
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut tasks = tasks.lock().unwrap();
                tasks.push(tokio::spawn(pipe(
                    client_read,
                    server_write,
                    frozen.clone(),
                )));
                tasks.push(tokio::spawn(pipe(
                    server_read,
                    client_write,
                    frozen.clone(),
                )));
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops forwarding and answering, keeping every connection open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Closes every connection and the listening port: new connections are refused.
    pub async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again after a [`cut`](Self::cut).
    pub async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if *frozen.borrow() {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
