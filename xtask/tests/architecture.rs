//! Architecture invariants on the dependency graph: the domain is pure, adapters stay apart.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const DOMAIN: &str = "mandate-domain";
const ADAPTERS: [&str; 3] = ["mandate-store", "mandate-http", "mandate-webhooks"];
const IO_CRATES: [&str; 7] = [
    "tokio",
    "actix-web",
    "actix-rt",
    "diesel",
    "diesel-async",
    "reqwest",
    "hyper",
];

/// Violations of the dependency rules in `cargo metadata --format-version 1` output, each
/// naming the offending edge. Only normal and build dependencies count, never dev ones.
fn violations(metadata: &Value) -> Vec<String> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    // Package id -> ids of its non-dev dependencies.
    let edges: HashMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let deps = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k["kind"].as_str() != Some("dev"))
                })
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            Some((node["id"].as_str()?, deps))
        })
        .collect();
    let name = |id: &str| names.get(id).copied().unwrap_or(id).to_owned();
    let id_of = |wanted: &str| names.iter().find(|(_, n)| **n == wanted).map(|(id, _)| *id);

    let mut found = Vec::new();
    let Some(domain) = id_of(DOMAIN) else {
        return vec![format!("{DOMAIN} is missing from the metadata")];
    };
    // Breadth-first, remembering the parent so a violation shows its whole path.
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([domain]);
    while let Some(id) = queue.pop_front() {
        for &dep in edges.get(id).into_iter().flatten() {
            if dep == domain || parent.contains_key(dep) {
                continue;
            }
            parent.insert(dep, id);
            queue.push_back(dep);
            if IO_CRATES.contains(&name(dep).as_str()) {
                let mut path = vec![name(dep)];
                let mut at = dep;
                while let Some(&up) = parent.get(at) {
                    path.push(name(up));
                    at = up;
                }
                path.reverse();
                found.push(format!(
                    "{DOMAIN} must not depend on I/O crate {}: {}",
                    name(dep),
                    path.join(" -> ")
                ));
            }
        }
    }

    for adapter in ADAPTERS {
        let Some(id) = id_of(adapter) else {
            found.push(format!("{adapter} is missing from the metadata"));
            continue;
        };
        for &dep in edges.get(id).into_iter().flatten() {
            let dep = name(dep);
            if ADAPTERS.contains(&dep.as_str()) {
                found.push(format!(
                    "adapters must not depend on each other: {adapter} -> {dep}"
                ));
            }
        }
    }
    found
}

#[test]
fn dependency_directions_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--all-features"])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let found = violations(&metadata);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Hand-made metadata in cargo's shape: `edges` are (from, to, kind), kind `None` for normal.
fn metadata(packages: &[&str], edges: &[(&str, &str, Option<&str>)]) -> Value {
    let id = |name: &str| format!("path+file:///ws/{name}#0.1.0");
    let nodes: Vec<Value> = packages
        .iter()
        .map(|&pkg| {
            let deps: Vec<Value> = edges
                .iter()
                .filter(|(from, _, _)| *from == pkg)
                .map(|(_, to, kind)| {
                    json!({
                        "name": to.replace('-', "_"),
                        "pkg": id(to),
                        "dep_kinds": [{ "kind": kind, "target": null }],
                    })
                })
                .collect();
            json!({ "id": id(pkg), "deps": deps })
        })
        .collect();
    let packages: Vec<Value> = packages
        .iter()
        .map(|&name| json!({ "id": id(name), "name": name }))
        .collect();
    json!({ "packages": packages, "resolve": { "nodes": nodes } })
}

const ALL: [&str; 8] = [
    "mandate-domain",
    "mandate-store",
    "mandate-http",
    "mandate-webhooks",
    "chrono",
    "helper",
    "tokio",
    "proptest",
];

#[test]
fn clean_graph_passes() {
    let graph = metadata(
        &ALL,
        &[
            ("mandate-domain", "chrono", None),
            ("mandate-domain", "proptest", Some("dev")),
            ("proptest", "tokio", None),
            ("mandate-store", "mandate-domain", None),
            ("mandate-store", "tokio", None),
            ("mandate-http", "mandate-domain", None),
            ("mandate-webhooks", "mandate-domain", None),
            ("mandate-store", "mandate-http", Some("dev")),
        ],
    );
    assert_eq!(violations(&graph), Vec::<String>::new());
}

#[test]
fn transitive_io_dependency_of_the_domain_is_reported_with_its_path() {
    let graph = metadata(
        &ALL,
        &[
            ("mandate-domain", "helper", None),
            ("helper", "tokio", None),
        ],
    );
    assert_eq!(
        violations(&graph),
        ["mandate-domain must not depend on I/O crate tokio: mandate-domain -> helper -> tokio"]
    );
}

#[test]
fn adapter_depending_on_adapter_is_reported() {
    let graph = metadata(&ALL, &[("mandate-http", "mandate-store", None)]);
    assert_eq!(
        violations(&graph),
        ["adapters must not depend on each other: mandate-http -> mandate-store"]
    );
}

#[test]
fn missing_crates_are_reported_not_ignored() {
    let graph = metadata(&["mandate-store", "mandate-http", "mandate-webhooks"], &[]);
    assert_eq!(
        violations(&graph),
        ["mandate-domain is missing from the metadata"]
    );
}
