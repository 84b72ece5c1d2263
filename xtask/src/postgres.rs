//! Finds a PostgreSQL for the test suite, starting a throwaway cluster when none is running.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Skips the probe of 127.0.0.1:5432, to exercise the throwaway cluster by hand.
const FORCE_LOCAL_CLUSTER: &str = "MANDATE_XTASK_FORCE_LOCAL_CLUSTER";
const START_DEADLINE: Duration = Duration::from_secs(30);

const HOW_TO_INSTALL: &str = "\
no PostgreSQL found: nothing answers on 127.0.0.1:5432 and no initdb/pg_ctl is on PATH \
or in /usr/lib/postgresql/*/bin.
Install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql`) \
or point TEST_DATABASE_URL at one, e.g. TEST_DATABASE_URL=postgres://user:password@host:5432/postgres";

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
            Database::Throwaway(cluster) => &cluster.url,
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
                cluster.bin.display()
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
    resolve_local(true)
}

fn resolve_local(may_install: bool) -> Result<Database> {
    if std::env::var_os(FORCE_LOCAL_CLUSTER).is_none_or(|v| v.is_empty()) && default_port_answers()
    {
        return Ok(Database::Running {
            url: DEFAULT_URL.to_owned(),
        });
    }
    if let Some(bin) = find_bin_dir() {
        return Cluster::start(bin).map(Database::Throwaway);
    }
    if may_install && is_root() && on_path("apt-get").is_some() {
        println!("xtask: no PostgreSQL found; installing Debian's postgresql package");
        apt_install("postgresql")?;
        return resolve_local(false);
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

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
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

/// A PostgreSQL cluster in a temporary directory, stopped and deleted on drop.
pub struct Cluster {
    url: String,
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    /// Set when running as root: initdb refuses root, so the cluster belongs to `postgres`.
    run_as: Option<&'static str>,
    started: bool,
}

impl Cluster {
    fn start(bin: PathBuf) -> Result<Self> {
        let run_as = is_root().then_some("postgres");
        let root = std::env::temp_dir().join(format!(
            "mandate-xtask-pg-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        ));
        let sockets = root.join("sockets");
        std::fs::create_dir_all(&sockets)
            .with_context(|| format!("creating {}", sockets.display()))?;
        // From here on, dropping the guard removes the directory.
        let mut cluster = Cluster {
            url: String::new(),
            data: root.join("data"),
            root,
            bin,
            run_as,
            started: false,
        };
        if let Some(user) = run_as {
            chown_to(user, &[&cluster.root, &sockets])?;
        }

        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdout(Stdio::null());
        cluster.run_quiet(&mut initdb)?;

        let port = free_port()?;
        let log = cluster.root.join("postgres.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k '{}' -c fsync=off",
            sockets.display()
        );
        let mut pg_ctl = cluster.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options])
            .args(["-W", "start"])
            .stdout(Stdio::null());
        cluster.started = true;
        cluster.run_quiet(&mut pg_ctl)?;
        cluster.wait_until_ready(port, &log)?;
        cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Ok(cluster)
    }

    /// A command from the cluster's bin dir, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        // The owner may not be allowed into the caller's working directory.
        cmd.current_dir(&self.root);
        cmd
    }

    fn run_quiet(&self, cmd: &mut Command) -> Result<()> {
        let output = cmd
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("could not run {:?}", cmd.get_program()))?;
        if !output.status.success() {
            bail!(
                "{} failed: {}",
                crate::describe(cmd),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Polls until the server accepts connections on its TCP port, or the deadline passes.
    fn wait_until_ready(&self, port: u16, log: &Path) -> Result<()> {
        let pg_isready = self.bin.join("pg_isready");
        let port_arg = port.to_string();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            // pg_isready speaks the protocol, so a server still starting up does not count.
            let ready = if pg_isready.is_file() {
                Command::new(&pg_isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port_arg, "-U", "postgres"])
                    .status()
                    .is_ok_and(|s| s.success())
            } else {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "the throwaway PostgreSQL did not accept connections on port {port} within {}s; \
                     its log:\n{log}",
                    START_DEADLINE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null());
            if let Err(err) = self.run_quiet(&mut stop) {
                eprintln!("xtask: warning: stopping the throwaway PostgreSQL: {err:#}");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.root) {
            eprintln!(
                "xtask: warning: could not remove {}: {err}",
                self.root.display()
            );
        }
    }
}

fn chown_to(user: &str, paths: &[&Path]) -> Result<()> {
    let id = |flag: &str| -> Result<u32> {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .context("could not run id")?;
        if !output.status.success() {
            bail!(
                "running as root, so initdb must run as the `{user}` OS user, which does not exist; \
                 create it, run as another user, or set TEST_DATABASE_URL"
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .with_context(|| format!("unexpected output of id {flag} {user}"))
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    for path in paths {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {user} {}", path.display()))?;
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
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
