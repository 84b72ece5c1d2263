//! The plan for sharding by organization (`docs/operations.md`, "Outgrowing one PostgreSQL")
//! stays honest: every query function of the store either filters by `organization_id` or is
//! listed in the guide with the reason it does not. A new query without the predicate fails
//! here until someone decides, in the guide, how it will behave on a sharded database.

// Assertions are how a test reports: a missing file is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const START: &str = "<!-- store functions without an organization_id predicate: start -->";
const END: &str = "<!-- store functions without an organization_id predicate: end -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Every `async fn` of an `impl … for DbStore` block in the store's sources, with whether its
/// body mentions `organization_id`.
fn store_functions() -> BTreeMap<String, bool> {
    let mut functions = BTreeMap::new();
    // The store's modules, those of its aggregates' folders too.
    let mut folders = vec![root().join("crates/store/src")];
    let mut sources = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("store sources") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("a readable source");
        let mut in_impl = false;
        let mut current: Option<(String, bool)> = None;
        for line in text.lines() {
            if line.starts_with("impl ") && line.contains(" for DbStore") {
                in_impl = true;
                continue;
            }
            if !in_impl {
                continue;
            }
            // Port methods are all async; `Debug` and the like are not queries.
            let function = line
                .strip_prefix("    async fn ")
                .and_then(|rest| rest.split(['(', '<']).next());
            if line == "}" || function.is_some() {
                if let Some((name, filters)) = current.take() {
                    functions.insert(name, filters);
                }
            }
            if line == "}" {
                in_impl = false;
            } else if let Some(name) = function {
                current = Some((name.to_owned(), false));
            } else if let Some((_, filters)) = current.as_mut() {
                *filters |= line.contains("organization_id");
            }
        }
    }
    functions
}

/// The guide's list: function → reason.
fn documented_exceptions() -> BTreeMap<String, String> {
    let guide = std::fs::read_to_string(root().join("docs/operations.md")).expect("the guide");
    let table = guide
        .split(START)
        .nth(1)
        .and_then(|rest| rest.split(END).next())
        .expect("the guide's table of store functions");
    table
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let reason = cells.get(2).copied().unwrap_or_default().to_owned();
            (cells[0].trim_matches('`').to_owned(), reason)
        })
        .collect()
}

#[test]
fn every_store_query_filters_by_organization_or_says_why_not_in_the_guide() {
    let functions = store_functions();
    assert!(
        functions.len() > 40,
        "the store's query functions were not found ({} of them)",
        functions.len()
    );
    let exceptions = documented_exceptions();
    let mut problems = Vec::new();
    for (name, filters) in &functions {
        match (filters, exceptions.get(name)) {
            (false, None) => problems.push(format!(
                "`{name}` has no organization_id predicate and is not in the guide's table"
            )),
            (false, Some(reason)) if reason.is_empty() => {
                problems.push(format!("`{name}` is listed without a reason"))
            }
            (true, Some(_)) => problems.push(format!(
                "`{name}` filters by organization_id now: remove it from the guide's table"
            )),
            _ => {}
        }
    }
    for name in exceptions.keys() {
        if !functions.contains_key(name) {
            problems.push(format!(
                "the guide lists `{name}`, which the store no longer has"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
