//! Project automation, run as `cargo xtask <task>`.

mod bench;
mod chromium;
mod faults;
mod node;
mod postgres;
mod python;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use mandate_test_support::describe;

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test [cargo-test-args]  run every test of the workspace against a PostgreSQL
                          (TEST_DATABASE_URL, DATABASE_URL, 127.0.0.1:5432, or a
                          throwaway cluster; the fault scenarios start clusters of
                          their own with initdb/pg_ctl, installed when missing)
                          and a headless Chromium with its chromedriver
                          (CHROME_BIN, CHROMEDRIVER_BIN, or on PATH, or
                          installed) and a Python with the
                          standardwebhooks, http-message-signatures,
                          schemathesis, openapi-spec-validator and
                          openapi-python-client packages (MANDATE_TEST_PYTHON, or
                          python3 on PATH, installed with pip) and the npm packages
                          openapi-typescript, typescript and openapi-fetch
                          (MANDATE_TEST_NODE_TOOLS, or installed under
                          target/node-tools); extra args go to `cargo test`
  faults [full|short|soak]
                          the fault suite against the real server on PostgreSQL
                          (crash, database outage, PostgreSQL crash, failover,
                          receiver outage, receiver isolation, replica loss, keyed
                          crash): prints a table of lost, duplicated and leaked
                          events and fails on any lost or leaked; full by default
                          (minutes), `cargo xtask test` runs the short form
                          (seconds, without receiver isolation); `soak`: 30 minutes
                          of load (MANDATE_SOAK_MINUTES to shorten it) checking that
                          memory, descriptors and queues stay flat
  lint                    cargo fmt --check, clippy -D warnings, cargo deny check (advisories when the database can be fetched)
  openapi                 regenerate docs/openapi.json
  bench [--smoke] [--rounds N] [--seconds N] [--no-write]
                          release build; Mandate against the bare actix-web +
                          diesel-async baseline in alternating rounds (wrk,
                          installed when missing), webhooks end to end,
                          authorize() with criterion; writes docs/benchmarks.md
                          (--smoke: tiny counts, writes nothing)";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let task = args.next();
    let rest: Vec<OsString> = args.collect();
    let result = match task.as_ref().and_then(|t| t.to_str()) {
        Some("test") => test(&rest),
        Some("faults") if rest.len() <= 1 => faults::run(
            rest.first()
                .map_or("full".into(), |scale| scale.to_string_lossy())
                .as_ref(),
        ),
        Some("lint") if rest.is_empty() => lint(),
        Some("bench") => bench::bench(&rest),
        Some("openapi") if rest.is_empty() => openapi(),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// A `cargo` command for the same toolchain that runs xtask, in the workspace root.
fn cargo() -> Result<Command> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()?);
    Ok(cmd)
}

/// Runs `cmd` with inherited stdio; returns whether it succeeded.
fn run_status(cmd: &mut Command) -> Result<bool> {
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", describe(cmd)))?;
    Ok(status.success())
}

fn run(cmd: &mut Command) -> Result<()> {
    if run_status(cmd)? {
        Ok(())
    } else {
        bail!("{} failed", describe(cmd))
    }
}

fn test(extra: &[OsString]) -> Result<ExitCode> {
    // The payment page is checked in a real headless browser; never skip that for lack of one.
    let chrome = chromium::resolve()?;
    println!("xtask: using Chromium {}", chrome.display());
    let chromedriver = chromium::resolve_driver()?;
    println!("xtask: using chromedriver {}", chromedriver.display());
    // Webhook and agent request signatures are checked by independent Python libraries; never
    // skip them.
    let python = python::resolve()?;
    println!("xtask: using Python {}", python.display());
    // Clients generated from the OpenAPI document are compiled and run; never skip that.
    let node_tools = node::resolve()?;
    println!("xtask: using the npm tools in {}", node_tools.display());
    // Held until the tests finish; dropping it stops a throwaway cluster, also on failure.
    let database = postgres::resolve()?;
    println!("xtask: using PostgreSQL {}", database.describe());
    let postgres_bin = postgres::binaries()?;

    let mut cmd = cargo()?;
    cmd.arg("test");
    // `--workspace` would override a package selection passed through.
    if !selects_packages(extra) {
        cmd.arg("--workspace");
    }
    // Every test binary runs even when an earlier one fails, so one run shows every failure.
    cmd.args(["--all-features", "--no-fail-fast"])
        .args(extra)
        .env("TEST_DATABASE_URL", database.url())
        .env(postgres::BIN_ENV, &postgres_bin)
        // The fault suite's short form; `cargo xtask faults` runs the full one.
        .env("MANDATE_FAULTS_SCALE", "short")
        .env(chromium::ENV, &chrome)
        .env(chromium::DRIVER_ENV, &chromedriver)
        .env(python::ENV, &python)
        .env(node::ENV, &node_tools);
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", describe(&cmd)))?;
    drop(database);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        None => ExitCode::FAILURE,
    })
}

/// Whether cargo-test arguments (before any `--`) name packages with `-p`/`--package`.
fn selects_packages(args: &[OsString]) -> bool {
    args.iter()
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

fn lint() -> Result<ExitCode> {
    ensure_cargo_deny()?;
    let checks: [&[&str]; 3] = [
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &["deny", "check", "bans", "licenses", "sources"],
    ];
    // Run every check so one run reports all problems.
    let mut failed = Vec::new();
    for args in checks {
        let mut cmd = cargo()?;
        cmd.args(args);
        if !run_status(&mut cmd)? {
            failed.push(format!("cargo {}", args.join(" ")));
        }
    }
    // The advisory database lives outside the package registries; where it cannot be fetched,
    // say so plainly instead of failing every offline lint or pretending it was checked.
    let mut fetch = cargo()?;
    fetch.args(["deny", "fetch"]);
    if run_status(&mut fetch)? {
        let mut advisories = cargo()?;
        advisories.args(["deny", "check", "advisories"]);
        if !run_status(&mut advisories)? {
            failed.push("cargo deny check advisories".to_owned());
        }
    } else {
        eprintln!(
            "xtask: warning: the advisory database could not be fetched; advisories were NOT checked"
        );
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: lint failed: {}", failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_cargo_deny() -> Result<()> {
    let mut probe = cargo()?;
    probe.args(["deny", "--version"]);
    let installed = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !installed {
        println!("xtask: installing cargo-deny");
        run(cargo()?.args(["install", "--locked", "cargo-deny"]))?;
    }
    Ok(())
}

fn openapi() -> Result<ExitCode> {
    let mut cmd = cargo()?;
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "mandate-server",
        "--bin",
        "mandate",
        "--",
        "openapi",
    ])
    // The committed document is the default server's (`servers`: http://127.0.0.1:8080),
    // whatever this shell configures.
    .env_remove("MANDATE__SERVER__PUBLIC_URL")
    .env_remove("MANDATE__SERVER__BIND")
    .stderr(std::process::Stdio::inherit());
    let output = cmd
        .output()
        .with_context(|| format!("could not run {}", describe(&cmd)))?;
    if !output.status.success() {
        bail!("{} failed", describe(&cmd));
    }
    // Refuse to commit stray log lines or an empty document as the API contract.
    serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .context("`mandate openapi` did not print a JSON document")?;

    let docs = workspace_root()?.join("docs");
    std::fs::create_dir_all(&docs).with_context(|| format!("creating {}", docs.display()))?;
    let target = docs.join("openapi.json");
    // Write then rename, so a failed write never leaves a truncated file behind.
    let tmp = docs.join(".openapi.json.tmp");
    std::fs::write(&tmp, &output.stdout).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("writing {}", target.display()))?;
    println!("xtask: wrote {}", target.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn package_selection_is_detected() {
        assert!(selects_packages(&args(&["-p", "xtask"])));
        assert!(selects_packages(&args(&["-pxtask"])));
        assert!(selects_packages(&args(&["--package", "xtask"])));
        assert!(selects_packages(&args(&["--package=xtask"])));
        assert!(!selects_packages(&args(&["some_test_name"])));
        assert!(!selects_packages(&args(&["--exclude", "xtask"])));
        assert!(!selects_packages(&args(&["--", "-p"])));
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root().unwrap();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("xtask").is_dir());
    }
}
