//! The committed OpenAPI document is generated, not written by hand, and covers every route.

use std::collections::BTreeSet;

use mandate_http::routes::ROUTES;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed.trim_end() == mandate_http::openapi::json().trim_end(),
        "docs/openapi.json is stale: run `cargo xtask openapi` and commit the result"
    );
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let document: serde_json::Value = serde_json::from_str(mandate_http::openapi::json()).unwrap();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.to_owned(), route.path.to_owned()))
        .collect();
    assert_eq!(documented, routed);
    for (method, path) in &routed {
        let operation = &document["paths"][path][method.to_lowercase()];
        assert!(
            operation["x-principals"].is_array(),
            "{method} {path} does not list its principals"
        );
    }
}
