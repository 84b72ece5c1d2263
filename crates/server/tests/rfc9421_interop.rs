//! Agent request signatures checked against an independent RFC 9421 implementation, the
//! Python package http-message-signatures: what it signs, our verifier accepts (whatever its
//! label, parameter order and covered components); what our signer signs, it verifies; and a
//! tampered request fails on both sides.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{DateTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use mandate_signatures::{
    self as signatures, AgentSigner, SignatureError, SignedMessage, VerifiedSignature,
};
use serde_json::Value;
use support::agent_signing::{AgentRequest, PythonVerdict, python_sign, python_verify};

const SEED: [u8; 32] = [42; 32];
const URL: &str = "https://mandate.example/v1/claims?expand=client";
const CLIENT_ID: &str = "cli_01JZ8X5V6Q9R2T3W4Y5Z6A7B8C";
const BODY: &[u8] =
    br#"{"destination":"shop","agent_id":"agent-7","public_key":"ed25519:...","permissions":["create:incoming"]}"#;
const JSON_AND_CLIENT: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("X-Client-Id", CLIENT_ID),
];

fn now() -> DateTime<Utc> {
    // Whole seconds, like `created`.
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

/// Our verifier on `request` sent with `signature_headers`.
fn rust_verify(
    request: &AgentRequest<'_>,
    signature_headers: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Result<VerifiedSignature, SignatureError> {
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers.iter().chain(signature_headers) {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    signatures::verify(
        &SignedMessage {
            method: request.method,
            target_uri: request.url,
            headers: &headers,
            body: request.body,
        },
        now,
    )
}

fn post(
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
) -> AgentRequest<'static> {
    AgentRequest {
        method: "POST",
        url: URL,
        headers,
        body,
    }
}

#[test]
fn python_signatures_with_a_body_and_a_client_id_verify() {
    let request = post(JSON_AND_CLIENT, BODY);
    let covered = request.required_components();
    assert_eq!(
        covered,
        ["@method", "@target-uri", "content-digest", "x-client-id"]
    );
    let now = now();
    let signed = python_sign(&request, &SEED, &covered, now.timestamp(), "python-nonce-1");

    // The digest computed in Python (hashlib) is ours, byte for byte.
    assert_eq!(
        signed.header("Content-Digest"),
        Some(signatures::content_digest(BODY).as_str())
    );
    // The library's own label and parameter order, not ours.
    let input = signed.header("Signature-Input").unwrap();
    assert!(
        input.starts_with(
            "pyhms=(\"@method\" \"@target-uri\" \"content-digest\" \"x-client-id\");created="
        ),
        "{input}"
    );
    let verified = rust_verify(&request, &signed.pairs(), now).unwrap();
    let signer = AgentSigner::from_seed(SEED);
    assert_eq!(verified.key, signer.public_key());
    assert_eq!(signed.key_id, signer.key_id());
    assert_eq!(verified.nonce, "python-nonce-1");
    assert_eq!(verified.created, now);
    assert_eq!(verified.covered, covered);
}

#[test]
fn python_signatures_without_a_body_verify() {
    let request = AgentRequest {
        method: "GET",
        url: "https://mandate.example/v1/claims/clm_01JZ8X5V6Q9R2T3W4Y5Z6A7B8C",
        headers: &[],
        body: b"",
    };
    let covered = request.required_components();
    assert_eq!(covered, ["@method", "@target-uri"]);
    let now = now();
    let signed = python_sign(&request, &SEED, &covered, now.timestamp(), "n2");
    assert_eq!(signed.header("Content-Digest"), None);
    let verified = rust_verify(&request, &signed.pairs(), now).unwrap();
    assert_eq!(verified.covered, covered);
}

#[test]
fn python_signatures_covering_more_in_another_order_verify() {
    // Derived components are computed by each side from the URL: port, path and query included.
    let request = AgentRequest {
        url: "http://127.0.0.1:8080/v1/claims?expand=client&limit=5",
        ..post(JSON_AND_CLIENT, BODY)
    };
    let covered = [
        "x-client-id",
        "@authority",
        "content-type",
        "@path",
        "@query",
        "@scheme",
        "content-digest",
        "@target-uri",
        "@method",
    ];
    let now = now();
    let signed = python_sign(&request, &SEED, &covered, now.timestamp(), "n3");
    let verified = rust_verify(&request, &signed.pairs(), now).unwrap();
    assert_eq!(verified.covered, covered);
}

#[test]
fn a_tampered_python_signed_request_is_refused() {
    let request = post(JSON_AND_CLIENT, BODY);
    let now = now();
    let signed = python_sign(
        &request,
        &SEED,
        &request.required_components(),
        now.timestamp(),
        "n4",
    );
    let headers = signed.pairs();
    rust_verify(&request, &headers, now).unwrap();

    let mut body = BODY.to_vec();
    body[2] ^= 1;
    let altered = AgentRequest {
        body: &body,
        ..request
    };
    assert_eq!(
        rust_verify(&altered, &headers, now),
        Err(SignatureError::DigestMismatch)
    );
    let other_client = [
        ("Content-Type", "application/json"),
        ("X-Client-Id", "cli_01JZ8X5V6Q9R2T3W4Y5Z6A7B8D"),
    ];
    let altered = AgentRequest {
        headers: &other_client,
        ..request
    };
    assert_eq!(
        rust_verify(&altered, &headers, now),
        Err(SignatureError::BadSignature)
    );
    let altered = AgentRequest {
        url: "https://mandate.example/v1/claims",
        ..request
    };
    assert_eq!(
        rust_verify(&altered, &headers, now),
        Err(SignatureError::BadSignature)
    );
    let altered = AgentRequest {
        method: "PUT",
        ..request
    };
    assert_eq!(
        rust_verify(&altered, &headers, now),
        Err(SignatureError::BadSignature)
    );
    // A client ID added after signing is not covered.
    let unsigned_client = post(JSON_AND_CLIENT, BODY);
    let signed = python_sign(
        &post(&[("Content-Type", "application/json")], BODY),
        &SEED,
        &["@method", "@target-uri", "content-digest"],
        now.timestamp(),
        "n5",
    );
    assert_eq!(
        rust_verify(&unsigned_client, &signed.pairs(), now),
        Err(SignatureError::MissingComponent("x-client-id"))
    );
}

fn verified_by_python(verdict: PythonVerdict) -> (String, Vec<String>, Value) {
    match verdict {
        PythonVerdict::Verified {
            label,
            covered,
            parameters,
        } => (label, covered, parameters),
        PythonVerdict::Rejected(reason) => panic!("the Python library refused: {reason}"),
    }
}

#[test]
fn rust_signatures_verify_with_python() {
    let signer = AgentSigner::from_seed(SEED);
    let key = signer.key_id().to_owned();
    let created = now().timestamp();

    let request = post(JSON_AND_CLIENT, BODY);
    let signed = signer
        .sign(
            request.method,
            request.url,
            &[("x-client-id", CLIENT_ID)],
            request.body,
            created,
            "rust-nonce-1",
        )
        .unwrap();
    let required = request.required_components();
    let (label, covered, parameters) = verified_by_python(python_verify(
        &request,
        &signed.pairs(),
        key.as_str(),
        &required,
    ));
    assert_eq!(label, "sig1");
    assert_eq!(covered, required);
    assert_eq!(parameters["keyid"], key.as_str());
    assert_eq!(parameters["alg"], "ed25519");
    assert_eq!(parameters["created"], created);
    assert_eq!(parameters["nonce"], "rust-nonce-1");

    let request = AgentRequest {
        method: "GET",
        url: "https://mandate.example/v1/claims?status=pending",
        headers: &[],
        body: b"",
    };
    let signed = signer
        .sign(
            request.method,
            request.url,
            &[],
            b"",
            created,
            "rust-nonce-2",
        )
        .unwrap();
    assert_eq!(signed.content_digest, None);
    let (_, covered, _) = verified_by_python(python_verify(
        &request,
        &signed.pairs(),
        key.as_str(),
        &request.required_components(),
    ));
    assert_eq!(covered, ["@method", "@target-uri"]);
}

#[test]
fn a_tampered_rust_signed_request_fails_in_python() {
    let signer = AgentSigner::from_seed(SEED);
    let key = signer.key_id().to_owned();
    let request = post(JSON_AND_CLIENT, BODY);
    let required = request.required_components();
    let signed = signer
        .sign(
            request.method,
            request.url,
            &[("x-client-id", CLIENT_ID)],
            request.body,
            now().timestamp(),
            "rust-nonce-3",
        )
        .unwrap();
    let headers = signed.pairs();
    let rejected =
        |request: &AgentRequest<'_>, headers: &[(&str, &str)], key: &str| match python_verify(
            request, headers, key, &required,
        ) {
            PythonVerdict::Rejected(reason) => reason,
            verified => panic!("the Python library accepted a tampered request: {verified:?}"),
        };

    let mut body = BODY.to_vec();
    body[2] ^= 1;
    rejected(
        &AgentRequest {
            body: &body,
            ..request
        },
        &headers,
        key.as_str(),
    );
    let other_client = [
        ("Content-Type", "application/json"),
        ("X-Client-Id", "cli_01JZ8X5V6Q9R2T3W4Y5Z6A7B8D"),
    ];
    rejected(
        &AgentRequest {
            headers: &other_client,
            ..request
        },
        &headers,
        key.as_str(),
    );
    rejected(
        &AgentRequest {
            url: "https://mandate.example/v1/claims",
            ..request
        },
        &headers,
        key.as_str(),
    );
    // Another key, named as the keyid: the signature does not verify.
    let impostor = AgentSigner::generate();
    let forged = impostor
        .sign(
            request.method,
            request.url,
            &[("x-client-id", CLIENT_ID)],
            request.body,
            now().timestamp(),
            "rust-nonce-4",
        )
        .unwrap();
    let forged_input = forged
        .signature_input
        .replace(impostor.key_id(), key.as_str());
    let mut forged_headers = forged.pairs();
    for (name, value) in &mut forged_headers {
        if *name == "Signature-Input" {
            *value = &forged_input;
        }
    }
    rejected(&request, &forged_headers, key.as_str());
    // Signed without the client ID it then sends: the library requires it covered, as we do.
    let uncovered = signer
        .sign(
            request.method,
            request.url,
            &[],
            request.body,
            now().timestamp(),
            "rust-nonce-5",
        )
        .unwrap();
    rejected(&request, &uncovered.pairs(), key.as_str());
    assert_eq!(
        rust_verify(&request, &uncovered.pairs(), now()),
        Err(SignatureError::MissingComponent("x-client-id"))
    );
}
