//! Boots the real `mandate` binary on a free port, on SQLite or on a fresh PostgreSQL
//! database, and talks to it over HTTP.

#![allow(dead_code)] // each test binary uses part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod agent_signing;
pub mod console;
pub mod proxy;
pub mod receiver;

/// Where `cargo xtask` puts the directory of PostgreSQL's `initdb` and `pg_ctl`.
const POSTGRES_BIN_ENV: &str = "MANDATE_TEST_PG_BIN";

pub const ADMIN_TOKEN: &str = "test-admin-token-that-is-long-enough";

/// Which database a server runs on.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite,
    Postgres(String),
}

#[allow(unused_imports)] // each test binary uses part of the harness
pub use mandate_test_support::{FreshDatabase, connect};

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn free_port() -> u16 {
    mandate_test_support::free_port().unwrap()
}

/// A PostgreSQL cluster of the test's own, which it may crash or kill without touching anyone
/// else's databases; started with the binaries `cargo xtask test` (or `faults`) found.
pub fn own_cluster() -> mandate_test_support::Cluster {
    let bin = std::env::var_os(POSTGRES_BIN_ENV).unwrap_or_else(|| {
        panic!(
            "{POSTGRES_BIN_ENV} is not set: run `cargo xtask test` (or `faults`), which finds \
             PostgreSQL's initdb and pg_ctl"
        )
    });
    mandate_test_support::Cluster::start(Path::new(&bin)).unwrap()
}

/// A temporary directory removed afterwards.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("mandate-test-{}", random_hex(8)));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary under test, with the environment of a test server.
pub fn mandate_command(data_dir: &Path, database: &Database) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mandate"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MANDATE__DATA__DIR", data_dir)
        .env("MANDATE__ADMIN__TOKEN", ADMIN_TOKEN)
        // Tests refuse bad credentials by the hundred from one address; the throttle of
        // failed authentication has its own test (`hardening.rs`).
        .env("MANDATE__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "0")
        .env("MANDATE__LOG__LEVEL", "warn");
    if let Database::Postgres(url) = database {
        command.env("MANDATE__DATABASE__URL", url);
    }
    command
}

/// A running server, killed when dropped.
pub struct Server {
    pub base: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl Server {
    pub async fn start(data_dir: &Path, database: &Database) -> Self {
        Self::start_with(mandate_command(data_dir, database), data_dir).await
    }

    pub async fn start_with(command: Command, data_dir: &Path) -> Self {
        Self::start_with_output(command, data_dir, Stdio::null(), Stdio::inherit()).await
    }

    /// Like [`Server::start_with`], with the server's standard output and error sent where
    /// the caller says (a file, to read the logs afterwards).
    pub async fn start_with_output(
        mut command: Command,
        data_dir: &Path,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Self {
        let port = free_port();
        let child = command
            .env("MANDATE__SERVER__BIND", format!("127.0.0.1:{port}"))
            .arg("serve")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut server = Self {
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            child,
        };
        server.wait_until_healthy().await;
        server
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited during start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become healthy within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.base.clone(),
            client: reqwest::Client::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A thin JSON client: every call returns the status and the parsed body.
#[derive(Clone)]
pub struct Api {
    base: String,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Api {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send("POST", path, Some(token), Some(body), &[]).await
    }
}

/// The objects most tests start from.
pub struct Tenant {
    pub organization_id: String,
    pub platform_key: String,
    pub destination_id: String,
    pub destination_key: String,
}

pub async fn tenant(api: &Api) -> Tenant {
    let created = api
        .post(
            "/v1/admin/organizations",
            ADMIN_TOKEN,
            serde_json::json!({"name": "Acme"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let platform_key = created.body["platform_key"].as_str().unwrap().to_owned();
    let slug = format!("shop-{}", random_hex(6));
    let destination = api
        .post(
            "/v1/destinations",
            &platform_key,
            serde_json::json!({"slug": slug, "display_name": "Shop"}),
        )
        .await;
    assert_eq!(destination.status, 201, "{}", destination.body);
    let destination_id = destination.body["id"].as_str().unwrap().to_owned();
    let key = api
        .post(
            &format!("/v1/destinations/{destination_id}/keys"),
            &platform_key,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    Tenant {
        organization_id: created.body["organization"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        platform_key,
        destination_id,
        destination_key: key.body["key"].as_str().unwrap().to_owned(),
    }
}

/// Every item of a paginated list.
pub async fn list_all(api: &Api, path: &str, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(after) => format!("{path}?limit=100&starting_after={after}"),
            None => format!("{path}?limit=100"),
        };
        let page = api.get(&page_path, key).await;
        assert_eq!(page.status, 200, "{page_path}: {}", page.body);
        items.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// The ids of a list response's items, in order.
pub fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}
