//! What the tests, the fault suite and the benchmarks need from the machine: fresh databases on
//! a running PostgreSQL, or cloned from a template migrated once (feature `database`), a PostgreSQL cluster of their own (started with
//! the machine's `initdb` and `pg_ctl`, stopped and deleted on drop), PostgreSQL URLs pointed
//! elsewhere, and a free loopback port.

#[cfg(feature = "database")]
mod database;
#[cfg(feature = "database")]
mod template;
mod urls;

#[cfg(feature = "database")]
pub use database::{FreshDatabase, connect};
#[cfg(feature = "database")]
pub use template::{FreshSqlite, PostgresTemplate, SqliteTemplate};
pub use urls::{address_of, with_address, with_database};

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

const START_DEADLINE: Duration = Duration::from_secs(30);

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A command as one would type it, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Whether this process runs as root (then the clusters belong to the `postgres` user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

/// A PostgreSQL cluster in a temporary directory, on a loopback port of its own, with trust
/// authentication for the `postgres` user; stopped and deleted on drop.
pub struct Cluster {
    url: String,
    port: u16,
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    /// Set when running as root: initdb refuses root, so the cluster belongs to `postgres`.
    run_as: Option<&'static str>,
    started: bool,
}

impl Cluster {
    /// Initializes and starts a cluster with the `initdb`, `pg_ctl` (and, when present,
    /// `pg_isready`) in `bin`. `fsync` is off: the cluster outlives no machine crash, and a
    /// crash of its processes loses nothing the operating system already holds.
    pub fn start(bin: &Path) -> Result<Self> {
        let mut cluster = Cluster::empty(bin)?;
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdout(Stdio::null());
        cluster.run_quiet(&mut initdb)?;
        cluster.started = true;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`) on a port of its own, which
    /// `primary` then waits for at every commit (`synchronous_standby_names = '*'`), so that
    /// what the primary acknowledged survives its loss.
    pub fn standby_of(primary: &Cluster) -> Result<Self> {
        let mut standby = Cluster::empty(&primary.bin)?;
        let mut basebackup = standby.command("pg_basebackup");
        basebackup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&standby.data)
            .args(["-R", "-X", "stream", "--no-sync"])
            .stdout(Stdio::null());
        standby.run_quiet(&mut basebackup)?;
        standby.started = true;
        standby.pg_ctl_start()?;
        primary.set("synchronous_standby_names", "'*'")?;
        Ok(standby)
    }

    /// Promotes a standby to primary, once it is promoted.
    pub fn promote(&self) -> Result<()> {
        let mut promote = self.command("pg_ctl");
        promote
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "promote"])
            .stdout(Stdio::null());
        self.run_quiet(&mut promote)
    }

    /// A directory and a port for a cluster, owned by the cluster's user; nothing started.
    fn empty(bin: &Path) -> Result<Self> {
        let run_as = is_root().then_some("postgres");
        let root = std::env::temp_dir().join(format!(
            "mandate-pg-{}-{}",
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
        let port = free_port()?;
        let cluster = Cluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            data: root.join("data"),
            root,
            bin: bin.to_path_buf(),
            run_as,
            started: false,
        };
        if let Some(user) = run_as {
            chown_to(user, &[&cluster.root, &sockets])?;
        }
        Ok(cluster)
    }

    /// Sets a server parameter in the cluster's configuration and reloads it.
    fn set(&self, name: &str, value: &str) -> Result<()> {
        let conf = self.data.join("postgresql.auto.conf");
        let mut settings = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        settings.push_str(&format!("{name} = {value}\n"));
        std::fs::write(&conf, settings).with_context(|| format!("writing {}", conf.display()))?;
        let mut reload = self.command("pg_ctl");
        reload
            .arg("-D")
            .arg(&self.data)
            .arg("reload")
            .stdout(Stdio::null());
        self.run_quiet(&mut reload)
    }

    /// Starts the postmaster and waits until it accepts connections (after any crash recovery).
    fn pg_ctl_start(&self) -> Result<()> {
        let log = self.root.join("postgres.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k '{}' -c fsync=off",
            self.port,
            self.root.join("sockets").display()
        );
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options])
            .args(["-W", "start"])
            .stdout(Stdio::null());
        self.run_quiet(&mut pg_ctl)?;
        self.wait_until_ready(self.port, &log)
    }

    /// Kills the postmaster and every process it started with SIGKILL, as a crash of the
    /// machine's PostgreSQL would: nothing is shut down, flushed or checkpointed.
    pub fn crash(&self) -> Result<()> {
        let postmaster = self
            .running_postmaster()
            .context("PostgreSQL is not running")?;
        // The postmaster first, so that it starts nothing new; then what it had started.
        let children = children_of(postmaster);
        let mut all = vec![postmaster];
        all.extend(children);
        for pid in &all {
            let status = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .context("could not run kill")?;
            // A backend may have ended by itself in between.
            if !status.success() && alive(*pid) {
                bail!("could not kill PostgreSQL process {pid}");
            }
        }
        let deadline = Instant::now() + START_DEADLINE;
        while all.iter().any(|pid| alive(*pid)) {
            if Instant::now() >= deadline {
                bail!(
                    "PostgreSQL's processes outlived SIGKILL for {}s",
                    START_DEADLINE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The postmaster's process, while it runs.
    fn running_postmaster(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let pid = pid_file.lines().next()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Starts the cluster again after [`crash`](Self::crash): PostgreSQL replays its WAL
    /// before it accepts connections.
    pub fn restart(&self) -> Result<()> {
        // A killed postmaster nobody has reaped yet still answers `kill(pid, 0)`, which
        // PostgreSQL would take for a running one in its lock files and refuse to start; it is
        // dead all the same.
        if self.running_postmaster().is_none() {
            let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
            for lock_file in [
                self.data.join("postmaster.pid"),
                self.root.join("sockets").join(socket_lock),
            ] {
                if lock_file.exists() {
                    std::fs::remove_file(&lock_file)
                        .with_context(|| format!("removing {}", lock_file.display()))?;
                }
            }
        }
        self.pg_ctl_start()
    }

    /// The `postgres` database of the cluster.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The loopback port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the cluster's binaries come from.
    pub fn bin(&self) -> &Path {
        &self.bin
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
                describe(cmd),
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
                    "PostgreSQL did not accept connections on port {port} within {}s; its log:\n{log}",
                    START_DEADLINE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A crashed cluster has nothing left to stop.
        if self.started && self.running_postmaster().is_some() {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null());
            if let Err(err) = self.run_quiet(&mut stop) {
                eprintln!("warning: stopping the cluster's PostgreSQL: {err:#}");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.root) {
            eprintln!("warning: could not remove {}: {err}", self.root.display());
        }
    }
}

/// `/proc/<pid>/stat` split after the command name (which may hold spaces and parentheses):
/// state, parent, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` runs: a killed process nobody has reaped yet (a zombie) does not.
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|fields| fields.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == parent)
        })
        .collect()
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
                 create it, or run as another user"
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
