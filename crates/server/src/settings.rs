//! Configuration: built-in defaults, then an optional `mandate.toml` (or `--config PATH`),
//! then `MANDATE__SECTION__KEY` environment variables; `DATABASE_URL` is honoured too.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything the server reads at start.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[server]`
    pub server: ServerSettings,
    /// `[database]`
    pub database: DatabaseSettings,
    /// `[data]`
    pub data: DataSettings,
    /// `[admin]`
    pub admin: AdminSettings,
    /// `[secrets]`
    pub secrets: SecretSettings,
    /// `[log]`
    pub log: LogSettings,
    /// `[rate_limit]`
    pub rate_limit: RateLimitSettings,
    /// `[webhooks]`
    pub webhooks: WebhookSettings,
    /// `[console]`
    pub console: ConsoleSettings,
}

/// `[console]`: the owner's console in the browser.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// How long a sign-in lasts; revoking its key ends it sooner.
    pub session_hours: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { session_hours: 12 }
    }
}

/// `[webhooks]`: delivery and the network policy for targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow `http://` targets (tests, private networks).
    pub allow_http: bool,
    /// Allow loopback, private, link-local… targets.
    pub allow_private_targets: bool,
    /// Private ranges allowed anyway, comma-separated CIDRs (e.g. `10.20.0.0/16`).
    pub allowed_cidrs: String,
    /// Delays before each attempt, comma-separated (`0s,5s,5m,…`); ±20 % jitter is applied.
    pub retry_schedule: String,
    /// An endpoint failing without success for this long is disabled.
    pub disable_after_hours: u64,
    /// How long a receiver may take to answer.
    pub timeout_seconds: u64,
    /// Deliveries sent at once by one worker.
    pub concurrency: usize,
    /// Deliveries one endpoint may have in flight at once, over every worker.
    pub per_endpoint_concurrency: usize,
    /// How long a worker holds what it claimed; a crashed worker's claims are taken again
    /// after this (raised if a full batch could take longer to send).
    pub lease_seconds: u64,
    /// Finished delivery attempts (delivered, failed, skipped) are purged this long after
    /// they were made.
    pub delivery_retention_hours: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_targets: false,
            allowed_cidrs: String::new(),
            retry_schedule: "0s,5s,5m,30m,2h,5h,10h,10h".into(),
            disable_after_hours: 5 * 24,
            timeout_seconds: 15,
            concurrency: 32,
            per_endpoint_concurrency: 4,
            lease_seconds: 60,
            delivery_retention_hours: 720,
        }
    }
}

/// `[rate_limit]`: a token bucket per credential, and one of failed authentications per
/// source address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per credential; 0 turns the limit off.
    pub per_second: u32,
    /// Requests a credential may make at once after being idle.
    pub burst: u32,
    /// Failed authentications per minute an address may keep making; 0 turns the throttle off.
    pub failed_auth_per_minute: u32,
    /// Failed authentications an address may make at once before it is throttled.
    pub failed_auth_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
            failed_auth_per_minute: 60,
            failed_auth_burst: 30,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// The URL clients reach the server at (behind a proxy, the proxy's); defaults to
    /// `http://<bind>`.
    pub public_url: Option<String>,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// After SIGTERM or SIGINT, how long requests and webhook sends in flight may take to
    /// finish; webhook attempts still unsent then are handed back for another process.
    pub shutdown_timeout_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: None,
            workers: 0,
            // Under the 30 s most orchestrators (Kubernetes, systemd, ECS) wait before SIGKILL.
            shutdown_timeout_seconds: 25,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://PATH`; defaults to an SQLite file in the data directory.
    pub url: Option<String>,
    /// Pool size.
    pub max_connections: usize,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            acquire_timeout_ms: 5_000,
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSettings {
    /// Where the SQLite database and generated secrets live.
    pub dir: PathBuf,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./data"),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The operator's bearer token (≥ 32 characters); the admin API is off when unset.
    pub token: Option<String>,
}

/// The shortest admin token accepted, in characters (like the server's other secrets).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// `[secrets]`
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSettings {
    /// Key for the keyed hash of API keys (≥ 32 characters). Generated into the data
    /// directory when unset; replicas sharing a database must share it.
    pub key_hash_secret: Option<String>,
    /// Seed of the Ed25519 key that signs access tokens (≥ 32 characters). Generated into the
    /// data directory when unset; replicas must share it.
    pub token_signing_key: Option<String>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mandate=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Loads the layers; `file` is `--config PATH` (required then), else `mandate.toml` if present.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file_source = match file {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name("mandate.toml").required(false),
        };
        let environment = config::Environment::with_prefix("MANDATE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        let mut settings: Settings = config::Config::builder()
            .add_source(file_source)
            .add_source(environment)
            .build()
            .and_then(config::Config::try_deserialize)
            .context("invalid configuration")?;
        if settings.database.url.is_none() {
            settings.database.url = std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty());
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses what would start an unsafe server. An empty admin token is no token (the
    /// admin API stays off); a shorter one than [`MIN_ADMIN_TOKEN_CHARS`] is refused, without
    /// being shown.
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.admin.token {
            let length = token.chars().count();
            if length > 0 && length < MIN_ADMIN_TOKEN_CHARS {
                anyhow::bail!(
                    "invalid configuration: admin.token (MANDATE__ADMIN__TOKEN) must be at least \
                     {MIN_ADMIN_TOKEN_CHARS} characters, it has {length}; generate one with \
                     `openssl rand -hex 32`"
                );
            }
        }
        Ok(())
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data.dir.join("mandate.db").display()),
        }
    }

    /// The public URL in force.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.bind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_on_loopback_with_sqlite_in_the_data_directory() {
        let settings = Settings::default();
        assert_eq!(settings.server.bind, "127.0.0.1:8080");
        assert_eq!(settings.database_url(), "sqlite://./data/mandate.db");
        assert_eq!(settings.public_url(), "http://127.0.0.1:8080");
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn an_admin_token_shorter_than_32_characters_is_refused() {
        let mut settings = Settings::default();
        settings.admin.token = Some("x".repeat(31));
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("at least 32 characters"), "{error}");
        assert!(!error.contains(&"x".repeat(31)), "{error}");
        settings.admin.token = Some("x".repeat(32));
        assert!(settings.validate().is_ok());
        settings.admin.token = Some(String::new());
        assert!(settings.validate().is_ok(), "empty: the admin API is off");
    }

    #[test]
    fn a_file_sets_values_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("mandate-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[server]\nbind = \"0.0.0.0:9000\"\n[database]\nmax_connections = 4\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&good)).unwrap();
        assert_eq!(settings.server.bind, "0.0.0.0:9000");
        assert_eq!(settings.database.max_connections, 4);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[server]\nbindd = \"typo\"\n").unwrap();
        assert!(Settings::load(Some(&bad)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The rows of the configuration table in `docs/operations.md`: key → (environment, default).
    fn documented_settings() -> std::collections::BTreeMap<String, (String, String)> {
        let guide = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md"),
        )
        .unwrap();
        let section = guide
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
                (
                    cells[0].trim_matches('`').to_owned(),
                    (cells[1].to_owned(), cells[2].to_owned()),
                )
            })
            .collect()
    }

    /// Every key of the configuration with its default, flattened to `section.key`.
    fn configured_settings() -> std::collections::BTreeMap<String, serde_json::Value> {
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let mut keys = std::collections::BTreeMap::new();
        for (section, values) in defaults.as_object().unwrap() {
            for (key, value) in values.as_object().unwrap() {
                keys.insert(format!("{section}.{key}"), value.clone());
            }
        }
        keys
    }

    #[test]
    fn the_operations_guide_lists_every_setting_with_its_environment_name_and_default() {
        let documented = documented_settings();
        let configured = configured_settings();
        let undocumented: Vec<&String> = configured
            .keys()
            .filter(|key| !documented.contains_key(*key))
            .collect();
        let unknown: Vec<&String> = documented
            .keys()
            .filter(|key| !configured.contains_key(*key))
            .collect();
        assert!(
            undocumented.is_empty(),
            "missing from docs/operations.md: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "documented but not a setting: {unknown:?}"
        );
        for (key, default) in &configured {
            let (environment, documented_default) = &documented[key];
            let variable = format!("`MANDATE__{}`", key.replace('.', "__").to_uppercase());
            assert!(
                environment.starts_with(&variable),
                "{key}: environment {environment}, expected {variable}"
            );
            // Unset defaults (null) are explained in words; every other default is shown as it is.
            let shown = match default {
                serde_json::Value::Null => continue,
                serde_json::Value::String(text) if text.is_empty() => "empty".to_owned(),
                serde_json::Value::String(text) => format!("`{text}`"),
                other => format!("`{other}`"),
            };
            assert!(
                documented_default.starts_with(&shown),
                "{key}: documented default {documented_default}, configured {shown}"
            );
        }
    }
}
