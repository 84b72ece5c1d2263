//! The committed OpenAPI document is generated, not written by hand, and covers every route;
//! every operation has its own id and declares what the pipeline reads and answers.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use mandate_http::routes::ROUTES;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
/// The server's default public URL, which the committed document is rendered for.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

#[test]
fn committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed.trim_end() == mandate_http::openapi::json(DEFAULT_PUBLIC_URL).trim_end(),
        "docs/openapi.json is stale: run `cargo xtask openapi` and commit the result"
    );
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let document = mandate_http::openapi::document(DEFAULT_PUBLIC_URL);
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

fn operations(document: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    operations
}

#[test]
fn every_route_has_a_unique_descriptive_operation_id() {
    let mut seen = BTreeSet::new();
    for route in ROUTES {
        let id = route.operation_id;
        assert!(
            id.len() > 3
                && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{} {}: operation id {id:?} is not lowerCamelCase",
            route.method,
            route.path
        );
        assert!(seen.insert(id), "operation id {id} is used twice");
    }
    let document = mandate_http::openapi::document(DEFAULT_PUBLIC_URL);
    let mut documented = BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"].as_str();
        let route = ROUTES
            .iter()
            .find(|route| route.method == method && route.path == path)
            .unwrap();
        assert_eq!(id, Some(route.operation_id), "{method} {path}");
        assert!(
            documented.insert(id),
            "{method} {path}: duplicate id {id:?}"
        );
    }
}

#[test]
fn operations_name_their_own_bodies() {
    let document = mandate_http::openapi::document(DEFAULT_PUBLIC_URL);
    let body = |path: &str, method: &str| {
        document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"]
            .clone()
    };
    let answer = |path: &str, method: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"]["$ref"]
            .clone()
    };
    assert_eq!(
        body("/v1/requests", "post"),
        "#/components/schemas/CreateRequest"
    );
    assert_eq!(
        body("/v1/client-ids", "post"),
        "#/components/schemas/CreateClient"
    );
    assert_eq!(
        answer("/v1/requests/{id}", "get", "200"),
        "#/components/schemas/PaymentRequestView"
    );
    assert_eq!(
        answer("/v1/requests", "get", "200"),
        "#/components/schemas/PaymentRequestList"
    );
    assert_eq!(
        answer("/v1/claims/{id}", "get", "200"),
        "#/components/schemas/ClaimView"
    );
    let list = &document["components"]["schemas"]["PaymentRequestList"];
    assert_eq!(
        list["properties"]["data"]["items"]["$ref"],
        "#/components/schemas/PaymentRequestView"
    );
}

#[test]
fn the_pipeline_declares_its_headers_and_statuses_on_every_operation() {
    let document = mandate_http::openapi::document("https://pay.example.com/api");
    assert_eq!(document["servers"][0]["url"], "https://pay.example.com/api");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(
        schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"],
        "https://pay.example.com/api/v1/oauth/token"
    );
    assert!(
        schemes["oauth2"]["flows"]["clientCredentials"]["scopes"]["payments:report"].is_string()
    );
    for (method, path, operation) in operations(&document) {
        let route = ROUTES
            .iter()
            .find(|route| route.method == method && route.path == path)
            .unwrap();
        let headers: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "header")
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        let principals: Vec<&str> = operation["x-principals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|kind| kind.as_str())
            .collect();
        let authenticated = principals != ["public"];
        assert!(headers.contains("X-Request-Id"), "{method} {path}");
        assert_eq!(
            headers.contains("X-Client-Id"),
            principals.contains(&"client"),
            "{method} {path}: X-Client-Id"
        );
        assert_eq!(
            headers.contains("X-Destination-Id"),
            principals.contains(&"platform"),
            "{method} {path}: X-Destination-Id"
        );
        assert_eq!(
            headers.contains("Idempotency-Key"),
            authenticated && method == "POST",
            "{method} {path}: Idempotency-Key"
        );
        let responses = &operation["responses"];
        let mut required = vec!["415"];
        if authenticated {
            required.extend(["400", "401", "403", "429", "500", "503"]);
            assert!(
                operation["security"].is_array(),
                "{method} {path}: security"
            );
        }
        if authenticated && method == "POST" {
            required.push("409");
        }
        if path.contains('{') {
            required.push("404");
        }
        if method != "GET" && method != "DELETE" {
            required.push("413");
        }
        for status in required {
            let response = &responses[status];
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path}: {status} is not declared"
            );
        }
        if authenticated {
            assert_eq!(
                responses["429"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope"
            );
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: Retry-After"
            );
        }
        let _ = route;
    }
}
