//! Finds a PostgreSQL for the test suite, starting a throwaway cluster when none is running,
//! and the binaries with which the fault scenarios start clusters of their own.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mandate_test_support::Cluster;
pub(crate) use mandate_test_support::is_root;

/// Where the tests find PostgreSQL's binaries (`initdb`, `pg_ctl`).
pub const BIN_ENV: &str = "MANDATE_TEST_PG_BIN";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Skips the probe of 127.0.0.1:5432, to exercise the throwaway cluster by hand.
const FORCE_LOCAL_CLUSTER: &str = "MANDATE_XTASK_FORCE_LOCAL_CLUSTER";

const HOW_TO_INSTALL: &str = "\
no PostgreSQL binaries found: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin \
(the suite starts PostgreSQL clusters of its own with them, and one to test against when \
nothing answers on 127.0.0.1:5432 and TEST_DATABASE_URL is unset).
Install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql`).";

/// The database the tests use; a throwaway cluster lives as long as this value.
pub enum Database {
    Given { url: String, source: &'static str },
    Running { url: String },
    Throwaway(Cluster),
}

impl Database {
    pub fn url(&self) -> &str {
        match self {
            Database::Given { url, .. } | Database::Running { url } => url,
            Database::Throwaway(cluster) => cluster.url(),
        }
    }

    /// One line for the log; never contains a password.
    pub fn describe(&self) -> String {
        let url = redact(self.url());
        match self {
            Database::Given { source, .. } => format!("{url} (from {source})"),
            Database::Running { .. } => format!("{url} (server already running)"),
            Database::Throwaway(cluster) => format!(
                "{url} (throwaway cluster, binaries from {})",
                cluster.bin().display()
            ),
        }
    }
}

pub fn resolve() -> Result<Database> {
    for (var, value) in [
        ("TEST_DATABASE_URL", std::env::var("TEST_DATABASE_URL")),
        ("DATABASE_URL", std::env::var("DATABASE_URL")),
    ] {
        let Ok(url) = value else { continue };
        if url.is_empty() {
            continue;
        }
        // The server also accepts SQLite in DATABASE_URL; the tests need PostgreSQL.
        if var == "DATABASE_URL" && !is_postgres_url(&url) {
            println!("xtask: ignoring DATABASE_URL, it is not a postgres:// URL");
            continue;
        }
        return Ok(Database::Given { url, source: var });
    }
    resolve_local()
}

fn resolve_local() -> Result<Database> {
    if std::env::var_os(FORCE_LOCAL_CLUSTER).is_none_or(|v| v.is_empty()) && default_port_answers()
    {
        return Ok(Database::Running {
            url: DEFAULT_URL.to_owned(),
        });
    }
    Cluster::start(&binaries()?).map(Database::Throwaway)
}

/// The directory of the machine's `initdb` and `pg_ctl`, which the scenarios that need a
/// PostgreSQL of their own use; installs Debian's package when they are missing.
pub fn binaries() -> Result<PathBuf> {
    if let Some(bin) = find_bin_dir() {
        return Ok(bin);
    }
    if is_root() && on_path("apt-get").is_some() {
        println!("xtask: no initdb/pg_ctl found; installing Debian's postgresql package");
        apt_install("postgresql")?;
        if let Some(bin) = find_bin_dir() {
            return Ok(bin);
        }
    }
    bail!(HOW_TO_INSTALL)
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn default_port_answers() -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5432));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Removes the password from a URL's user info and from `password=` parameters.
fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    let user = user_info.split(':').next().unwrap_or_default();
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        // A libpq key=value string rather than a URL.
        None => head
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("password="))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

pub(crate) fn on_path(program: &str) -> Option<PathBuf> {
    on_search_path(std::env::var_os("PATH")?, program)
}

fn on_search_path(path: impl AsRef<OsStr>, program: &str) -> Option<PathBuf> {
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A directory holding both `initdb` and `pg_ctl`: PATH first, then Debian's layout.
fn find_bin_dir() -> Option<PathBuf> {
    find_bin_dir_in(
        &std::env::var_os("PATH").unwrap_or_default(),
        Path::new("/usr/lib/postgresql"),
    )
}

fn find_bin_dir_in(path: &OsStr, debian_root: &Path) -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(initdb) = on_search_path(path, "initdb") {
        // Follow symlinks so that pg_ctl and pg_isready come from the same installation.
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = initdb.parent().filter(|d| has_both(d)) {
            return Some(dir.to_path_buf());
        }
    }
    let versions = std::fs::read_dir(debian_root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = parse_version(e.file_name().to_str()?)?;
            Some((version, e.path().join("bin")))
        });
    highest(versions.filter(|(_, bin)| has_both(bin)))
}

fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn highest(candidates: impl Iterator<Item = (Vec<u32>, PathBuf)>) -> Option<PathBuf> {
    candidates.max_by(|a, b| a.0.cmp(&b.0)).map(|(_, bin)| bin)
}

/// Installs one Debian package, refreshing the package lists first.
pub(crate) fn apt_install(package: &str) -> Result<()> {
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("could not run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    apt(&["update"])?;
    apt(&["install", "-y", package])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_passwords_only() {
        assert_eq!(
            redact("postgres://alice:s3cret@db.example:5432/app"),
            "postgres://alice@db.example:5432/app"
        );
        assert_eq!(redact(DEFAULT_URL), DEFAULT_URL);
        assert_eq!(
            redact("postgres://alice@h/db?sslmode=require&password=x"),
            "postgres://alice@h/db?sslmode=require"
        );
        assert_eq!(redact("postgres://a:p@w:rd@h/db"), "postgres://a@h/db");
        assert_eq!(
            redact("host=h user=u password=x dbname=d"),
            "host=h user=u dbname=d"
        );
    }

    #[test]
    fn only_postgres_urls_are_taken_from_database_url() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("sqlite://data/mandate.db"));
        assert!(!is_postgres_url("data/mandate.db"));
    }

    #[test]
    fn highest_version_wins_numerically() {
        let dirs = ["9.6", "15", "16", "10"]
            .into_iter()
            .filter_map(|v| Some((parse_version(v)?, PathBuf::from(v))));
        assert_eq!(highest(dirs), Some(PathBuf::from("16")));
        assert_eq!(parse_version("common"), None);
    }

    #[test]
    fn binaries_are_found_on_path_first_then_in_the_highest_debian_version() {
        let root = std::env::temp_dir().join(format!("xtask-find-bin-{}", std::process::id()));
        let install = |dir: &Path, programs: &[&str]| {
            std::fs::create_dir_all(dir).unwrap();
            for program in programs {
                std::fs::write(dir.join(program), "").unwrap();
            }
        };
        let debian = root.join("debian");
        install(&debian.join("9.6/bin"), &["initdb", "pg_ctl"]);
        install(&debian.join("15/bin"), &["initdb", "pg_ctl"]);
        // Incomplete installations do not count.
        install(&debian.join("16/bin"), &["initdb"]);
        install(&debian.join("common/bin"), &["initdb", "pg_ctl"]);
        let on_path = root.join("path");
        install(&on_path, &["initdb", "pg_ctl"]);
        let empty = root.join("empty");
        install(&empty, &[]);

        let found = |path: &Path, debian: &Path| find_bin_dir_in(path.as_os_str(), debian);
        assert_eq!(found(&empty, &debian), Some(debian.join("15/bin")));
        assert_eq!(
            found(&on_path, &debian),
            Some(on_path.canonicalize().unwrap())
        );
        assert_eq!(found(&empty, &root.join("missing")), None);

        std::fs::remove_dir_all(&root).unwrap();
    }
}
