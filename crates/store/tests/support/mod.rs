//! Fresh databases for tests, and a TCP proxy that can cut or freeze the way to PostgreSQL.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use mandate_domain::ports::Store;
use mandate_store::{DbStore, StoreOptions};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The PostgreSQL server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: run `cargo xtask test`, or set it to a PostgreSQL \
             URL whose user may create databases, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail
        .split_once('?')
        .map(|(_, query)| format!("?{query}"))
        .unwrap_or_default();
    format!("{scheme}://{authority}/{name}{query}")
}

/// `url` with its host and port replaced by `address`.
fn with_address(url: &str, address: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{address}{tail}")
}

/// The `host:port` of a PostgreSQL URL.
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// An empty PostgreSQL database, dropped (sessions and all) when this is dropped.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let name = format!(
            "mandate_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot reach TEST_DATABASE_URL: {error}"));
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        TestDatabase {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }

    /// The database's URL through another `host:port`, e.g. a [`Proxy`].
    pub fn url_via(&self, address: &str) -> String {
        with_address(&self.url, address)
    }

    /// The PostgreSQL server's `host:port`.
    pub fn server_address(&self) -> String {
        address_of(&self.admin_url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await: drop the database from a thread with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&admin_url).await?;
                admin.batch_execute(&sql).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the dropping thread panicked",
                self.name
            ),
        }
    }
}

/// A store on a fresh SQLite file in a temporary directory, removed with the guard.
pub async fn sqlite_store() -> (Arc<dyn Store>, TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("mandate.db").display());
    let store = DbStore::open(&url, &StoreOptions::default()).await.unwrap();
    (Arc::new(store), directory)
}

/// A store on a fresh PostgreSQL database, dropped with the guard.
pub async fn postgres_store() -> (Arc<dyn Store>, TestDatabase) {
    let database = TestDatabase::create().await;
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
