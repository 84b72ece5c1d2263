//! `cargo xtask faults`: runs the fault suite (`crates/server/tests/faults/`) at full size and
//! prints its results as a table; `cargo xtask faults soak` runs the soak on its own.

use std::io::{BufRead, BufReader};
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};

/// The scenarios the suite must report, in the table's order.
const SCENARIOS: [&str; 8] = [
    "crash",
    "database_outage",
    "postgres_crash",
    "failover",
    "receiver_outage",
    "receiver_isolation",
    "replica_loss",
    "keyed_crash",
];

/// The soak's scenario: half an hour, so run only when asked for (`cargo xtask faults soak`).
const SOAK: &str = "soak";

/// One scenario's result line: `FAULTS\tscenario\toperations\tlost\tduplicated\tleaked\tnotes`
/// (after the test harness's `test name ... ` when tests run one at a time).
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub scenario: String,
    pub operations: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub leaked: u64,
    pub notes: String,
}

pub fn parse(line: &str) -> Option<Row> {
    let start = line.find("FAULTS\t")? + "FAULTS\t".len();
    let mut fields = line[start..].splitn(6, '\t');
    let mut next = || fields.next();
    let scenario = next()?.to_owned();
    let mut number = || next().and_then(|field| field.parse().ok());
    Some(Row {
        scenario,
        operations: number()?,
        lost: number()?,
        duplicated: number()?,
        leaked: number()?,
        notes: next().unwrap_or_default().to_owned(),
    })
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | operations | lost | duplicated | leaked | notes |\n|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.operations,
            row.lost,
            row.duplicated,
            row.leaked,
            row.notes.replace('|', "\\|")
        ));
    }
    out
}

pub fn run(scale: &str) -> Result<ExitCode> {
    if ![SOAK, "full", "short"].contains(&scale) {
        bail!("the fault suite's scale is full or short (or the soak), not {scale:?}");
    }
    // Scenarios too long for `cargo xtask test` are ignored there and included here; the
    // soak is run alone.
    let selection: &[&str] = if scale == SOAK {
        &["--ignored", "--exact", "soak::soak"]
    } else {
        &["--include-ignored", "--skip", "soak::soak"]
    };
    let expected: &[&str] = if scale == SOAK { &[SOAK] } else { &SCENARIOS };
    let database = super::postgres::resolve()?;
    println!("xtask: using PostgreSQL {}", database.describe());
    let postgres_bin = super::postgres::binaries()?;
    let mut cmd = super::cargo()?;
    cmd.args([
        "test",
        "-p",
        "mandate-server",
        "--features",
        "fault-injection",
        "--test",
        "faults",
        "--",
        "--nocapture",
        // One scenario at a time, so that none slows another's timings.
        "--test-threads=1",
    ])
    .args(selection)
    .env(
        "MANDATE_FAULTS_SCALE",
        if scale == SOAK { "full" } else { scale },
    )
    .env("TEST_DATABASE_URL", database.url())
    .env(super::postgres::BIN_ENV, &postgres_bin)
    .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not run {}", mandate_test_support::describe(&cmd)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut rows = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        rows.extend(parse(&line));
    }
    let status = child.wait()?;
    drop(database);
    rows.sort_by_key(|row| expected.iter().position(|s| *s == row.scenario));
    println!("\nFault suite ({scale}):\n\n{}", table(&rows));
    let mut failures = Vec::new();
    for &scenario in expected {
        match rows.iter().find(|row| row.scenario == scenario) {
            None => failures.push(format!("{scenario} reported no result")),
            Some(row) if row.lost > 0 || row.leaked > 0 => failures.push(format!(
                "{scenario}: {} lost, {} leaked",
                row.lost, row.leaked
            )),
            Some(_) => {}
        }
    }
    if !status.success() {
        failures.push("the fault suite's tests failed".to_owned());
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: faults failed: {}", failures.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_parsed_and_tabled() {
        let row = parse("FAULTS\tcrash\t60\t0\t2\t0\tkilled | restarted").unwrap();
        assert_eq!(
            row,
            Row {
                scenario: "crash".into(),
                operations: 60,
                lost: 0,
                duplicated: 2,
                leaked: 0,
                notes: "killed | restarted".into()
            }
        );
        let after_harness = parse("test crash ... FAULTS\tcrash\t60\t0\t2\t0\tkilled | restarted");
        assert_eq!(after_harness.as_ref(), Some(&row));
        assert_eq!(parse("test crash ... ok"), None);
        assert_eq!(parse("FAULTS\tcrash\tmany"), None);
        assert!(table(&[row]).contains("| crash | 60 | 0 | 2 | 0 | killed \\| restarted |"));
    }
}
