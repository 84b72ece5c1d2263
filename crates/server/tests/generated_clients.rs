//! The served `/openapi.json` as a team generating a client from it would use it: it passes
//! `openapi-spec-validator`; the TypeScript types `openapi-typescript` generates compile under
//! `tsc --strict` with a program of ours (`clients/journey.ts`) that creates, reads and lists
//! payment requests and obtains a token; and the Python client `openapi-python-client`
//! generates runs a payment request's journey (`clients/journey.py`) against this server. The
//! generators' output goes to a temporary directory, never into the repository.
//!
//! `cargo xtask test` installs the tools: the Python packages for `MANDATE_TEST_PYTHON`, the
//! npm packages under `target/` (`MANDATE_TEST_NODE_TOOLS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Database, Server, TempDir, random_hex};

const PYTHON_ENV: &str = "MANDATE_TEST_PYTHON";
const NODE_TOOLS_ENV: &str = "MANDATE_TEST_NODE_TOOLS";
/// Where our programs are.
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

fn required_env(name: &str, what: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{name} is not set: run `cargo xtask test`, which installs {what} and sets it")
        })
}

/// Runs `command`, panicking with its output when it fails.
fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what} could not run: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The document the server serves, written to `dir`.
async fn served_document(server: &Server, dir: &Path) -> PathBuf {
    let document = server
        .api()
        .send("GET", "/openapi.json", None, None, &[])
        .await;
    assert_eq!(document.status, 200);
    assert_eq!(
        document.body["servers"][0]["url"], server.base,
        "servers names the public URL"
    );
    let path = dir.join("openapi.json");
    std::fs::write(&path, document.body.to_string()).unwrap();
    path
}

async fn start() -> (TempDir, Server) {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command.env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    let server = Server::start_with(command, &data.0).await;
    (data, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_passes_the_openapi_validator() {
    let python = required_env(PYTHON_ENV, "openapi-spec-validator");
    let (data, server) = start().await;
    let document = served_document(&server, &data.0).await;
    let output = run(
        "openapi-spec-validator",
        Command::new(&python)
            .args(["-m", "openapi_spec_validator"])
            .arg(&document),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_typescript_types_compile_strictly_with_our_program() {
    let tools = required_env(NODE_TOOLS_ENV, "openapi-typescript and typescript");
    let (data, server) = start().await;
    let document = served_document(&server, &data.0).await;
    let work = data.0.join("typescript");
    std::fs::create_dir_all(&work).unwrap();
    let bin = tools.join("node_modules").join(".bin");
    run(
        "openapi-typescript",
        Command::new(bin.join("openapi-typescript"))
            .arg(&document)
            .arg("--output")
            .arg(work.join("schema.d.ts"))
            .current_dir(&work),
    );
    std::fs::copy(
        Path::new(CLIENTS).join("journey.ts"),
        work.join("journey.ts"),
    )
    .unwrap();
    // The program imports openapi-fetch, resolved from the tools' node_modules.
    std::os::unix::fs::symlink(tools.join("node_modules"), work.join("node_modules")).unwrap();
    run(
        "tsc --strict",
        Command::new(bin.join("tsc"))
            .args([
                "--strict",
                "--noEmit",
                "--target",
                "es2022",
                "--module",
                "nodenext",
                "--moduleResolution",
                "nodenext",
                "journey.ts",
                "schema.d.ts",
            ])
            .current_dir(&work),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_python_client_runs_a_payment_request_journey() {
    let python = required_env(PYTHON_ENV, "openapi-python-client");
    let (data, server) = start().await;
    let document = served_document(&server, &data.0).await;
    let work = data.0.join("python");
    std::fs::create_dir_all(&work).unwrap();
    run(
        "openapi-python-client",
        Command::new(&python)
            .args(["-m", "openapi_python_client", "generate", "--path"])
            .arg(&document)
            .arg("--output-path")
            .arg(work.join("mandate_api_client"))
            .args(["--meta", "none"])
            .current_dir(&work),
    );

    // The tenant: a destination, an orchestrator, and a client ID it was issued.
    let api = server.api();
    let tenant = support::tenant(&api).await;
    let slug = format!("orc-{}", random_hex(6));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Generated client"}),
        )
        .await;
    assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
    let issued = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": slug, "permissions": ["create:incoming", "read:incoming"]}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let output = run(
        "the Python journey",
        Command::new(&python)
            .arg(Path::new(CLIENTS).join("journey.py"))
            .env("PYTHONPATH", &work)
            .env("MANDATE_URL", &server.base)
            .env("MANDATE_CLIENT_ID", issued.body["id"].as_str().unwrap())
            .env(
                "MANDATE_ORCHESTRATOR_KEY",
                orchestrator.body["api_key"].as_str().unwrap(),
            )
            .env("MANDATE_DESTINATION_KEY", &tenant.destination_key)
            .current_dir(&work),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(stdout.contains("journey: paid"), "{stdout}");

    // The server agrees.
    let requests = api
        .get("/v1/requests?status=paid", &tenant.destination_key)
        .await;
    let paid: Vec<&Value> = requests.body["data"].as_array().unwrap().iter().collect();
    assert_eq!(paid.len(), 1, "{}", requests.body);
    assert_eq!(paid[0]["amount_paid"], "42.50");
}
