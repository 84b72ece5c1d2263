//! A case is collected where it is written: every `case!(…)` in the sources is a trial, under
//! the name of its port's module.

use std::path::Path;

/// How many cases the sources register: the lines that are a `case!(…)` invocation.
fn registered_in_sources(directory: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(directory).unwrap_or_else(|error| panic!("{error}")) {
        let path = entry.unwrap_or_else(|error| panic!("{error}")).path();
        if path.is_dir() {
            count += registered_in_sources(&path);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
            count += text
                .lines()
                .filter(|line| line.trim_start().starts_with("case!("))
                .count();
        }
    }
    count
}

#[test]
fn every_registered_case_is_collected_by_name() {
    let names: Vec<String> = mandate_contract::cases()
        .iter()
        .map(|case| case.name())
        .collect();
    assert!(
        names.contains(&"webhooks::webhook_endpoints_round_trip_per_owner_kind".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"claims::claim_lists_follow_the_scope_and_status".to_owned()));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(names.len(), registered_in_sources(&sources));
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "case names are unique");
}

#[test]
fn trials_are_named_after_backend_port_and_case() {
    let trials = mandate_contract::trials("somewhere", || async {
        let store: std::sync::Arc<dyn mandate_domain::ports::Store> =
            std::sync::Arc::new(mandate_contract::memory::MemoryStore::new());
        (store, ())
    });
    assert_eq!(trials.len(), mandate_contract::cases().len());
    assert!(
        trials
            .iter()
            .any(|trial| trial.name() == "somewhere::health::health_answers")
    );
}
