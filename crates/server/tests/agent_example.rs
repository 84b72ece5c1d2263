//! The agent example (`cargo run -p mandate-signatures --example agent`), which signs with
//! `mandate-signatures` alone, against a real server: it submits its claim,
//! the destination's owner approves it while the example polls, and the example then acts with
//! its signature alone and creates a payment request that the owner can read. Run again with
//! the same seed file, it is the same agent with the same claim. A rejected claim and missing
//! arguments end it with a non-zero status.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, Server, TempDir, tenant};

/// The example's crate, and the folders of its sources: a binary older than any of them is
/// rebuilt.
const EXAMPLE_CRATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../signatures");
const SOURCES: [&str; 2] = ["examples", "src"];

/// When the newest file under `folder` (or `folder` itself, if a file) was modified.
fn newest_modification(folder: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(folder).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| newest_modification(&entry.ok()?.path()))
        .max()
}

/// The compiled example. `cargo test` builds a package's examples next to its test binaries
/// (`target/<profile>/examples/`), but not another package's; so (when the binary is missing
/// or older than the example crate's sources) it is built here with the same profile.
fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().unwrap();
    // target/<profile>/deps/agent_example-<hash>
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("agent{}", std::env::consts::EXE_SUFFIX));
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let crate_dir = Path::new(EXAMPLE_CRATE);
    let source = SOURCES
        .iter()
        .filter_map(|folder| newest_modification(&crate_dir.join(folder)))
        .chain(newest_modification(&crate_dir.join("Cargo.toml")))
        .max();
    let fresh = match (modified(&binary), source) {
        (Some(built), Some(source)) => built >= source,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !fresh {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "-p",
            "mandate-signatures",
            "--example",
            "agent",
        ]);
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
            None => {}
        }
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        let status = build.status().unwrap();
        assert!(
            status.success(),
            "building the agent example failed: {status}"
        );
    }
    assert!(
        binary.is_file(),
        "the agent example is not at {}: build it with `cargo build -p mandate-signatures \
         --example agent` (same profile as the tests)",
        binary.display()
    );
    binary
}

/// A running example, its standard output collected on the side.
struct Example {
    child: Child,
    stdout: Option<JoinHandle<String>>,
}

impl Example {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(example_binary())
            // Only what is passed here: no MANDATE_* variable of the machine running the test.
            .env_clear()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut pipe = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            child,
            stdout: Some(stdout),
        }
    }

    fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the exit, for at most 60 s: the status and everything it printed.
    async fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let printed = self.stdout.take().unwrap().join().unwrap();
                panic!("the example did not exit within 60 s; it printed:\n{printed}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let printed = self.stdout.take().unwrap().join().unwrap();
        (status, printed)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An orchestrator and a destination ready for claims.
struct Setup {
    server: Server,
    data: TempDir,
    api: Api,
    owner: String,
    service: String,
    orchestrator_key: String,
    namespace: String,
}

async fn setup() -> Setup {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let service = format!("agents-{}", support::random_hex(4));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": service, "name": "Agent runner"}),
        )
        .await;
    assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
    let destination = api
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.destination_key,
        )
        .await;
    Setup {
        data,
        api,
        owner: tenant.destination_key,
        service,
        orchestrator_key: orchestrator.body["api_key"].as_str().unwrap().to_owned(),
        namespace: destination.body["slug"].as_str().unwrap().to_owned(),
        server,
    }
}

impl Setup {
    fn example(&self, seed_file: &Path) -> Example {
        Example::start(&[
            "--url",
            &self.server.base,
            "--orchestrator-key",
            &self.orchestrator_key,
            "--service",
            &self.service,
            "--namespace",
            &self.namespace,
            "--seed-file",
            seed_file.to_str().unwrap(),
            "--timeout",
            "60",
        ])
    }

    /// The one pending claim, as the owner sees it once the example has submitted it.
    async fn pending_claim(&self, example: &mut Example) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pending = self.api.get("/v1/claims?status=pending", &self.owner).await;
            assert_eq!(pending.status, 200, "{}", pending.body);
            if let Some(claim) = pending.body["data"].get(0) {
                return claim.clone();
            }
            assert!(
                !example.has_exited(),
                "the example exited before submitting a claim"
            );
            assert!(Instant::now() < deadline, "no pending claim within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The destination's payment requests, newest first.
    async fn requests(&self) -> Vec<Value> {
        let listed = self.api.get("/v1/requests", &self.owner).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        listed.body["data"].as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_agent_is_approved_while_it_polls_and_creates_a_payment_request() {
    let setup = setup().await;
    let seed_file = setup.data.0.join("agent.seed");
    let mut example = setup.example(&seed_file);

    // The owner approves while the example polls, with fewer permissions than asked.
    let claim = setup.pending_claim(&mut example).await;
    let claim_id = claim["id"].as_str().unwrap().to_owned();
    assert_eq!(claim["service"], setup.service.as_str());
    assert_eq!(claim["namespace"], setup.namespace.as_str());
    let approved = setup
        .api
        .post(
            &format!("/v1/claims/{claim_id}/approve"),
            &setup.owner,
            json!({"permissions": ["create:incoming"]}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let client_id = approved.body["client_id"].as_str().unwrap().to_owned();

    let (status, printed) = example.finish().await;
    assert!(
        status.success(),
        "the example failed ({status}):\n{printed}"
    );
    assert!(printed.contains(&claim_id), "{printed}");
    assert!(
        printed.contains(&format!(
            "{}/v1/claims/{claim_id}/approve",
            setup.server.base
        )),
        "the owner's command is shown: {printed}"
    );

    // The request exists, created through the agent's client ID; the owner reads it.
    let requests = setup.requests().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request_id = requests[0]["id"].as_str().unwrap();
    assert!(printed.contains(request_id), "{printed}");
    let read = setup
        .api
        .get(&format!("/v1/requests/{request_id}"), &setup.owner)
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["client_id"], client_id.as_str());
    assert_eq!(read.body["direction"], "incoming");
    assert_eq!(read.body["amount"], "25");
    assert_eq!(read.body["currency"], "USD");

    // The key was kept: a second run is the same agent, already approved, and acts at once.
    let seed = std::fs::read_to_string(&seed_file).unwrap();
    assert_eq!(seed.trim().len(), 64, "{seed:?}");
    let (status, printed) = setup.example(&seed_file).finish().await;
    assert!(
        status.success(),
        "the second run failed ({status}):\n{printed}"
    );
    assert!(
        printed.contains(&format!("Claim {claim_id} already exists")),
        "{printed}"
    );
    assert_eq!(setup.requests().await.len(), 2);
    let claims = setup.api.get("/v1/claims", &setup.owner).await;
    assert_eq!(support::ids(&claims.body), vec![claim_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_claim_or_missing_arguments_end_the_example_with_a_failure() {
    let setup = setup().await;
    let seed_file = setup.data.0.join("rejected.seed");
    let mut example = setup.example(&seed_file);
    let claim = setup.pending_claim(&mut example).await;
    let claim_id = claim["id"].as_str().unwrap();
    let rejected = setup
        .api
        .post(
            &format!("/v1/claims/{claim_id}/reject"),
            &setup.owner,
            json!({}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    let (status, printed) = example.finish().await;
    assert!(!status.success(), "a rejected agent must fail:\n{printed}");
    assert!(setup.requests().await.is_empty());

    // No arguments: clap's usage message, a non-zero status, no panic.
    let output = Command::new(example_binary()).env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let usage = String::from_utf8_lossy(&output.stderr);
    assert!(usage.contains("Usage:"), "{usage}");
    assert!(!usage.contains("panicked"), "{usage}");
}
