//! Property tests of the credential parsers that face the network, beyond the unit tests of
//! `mandate-signatures` (which already throw arbitrary and one-byte-mutated headers at the verifier):
//! random genuine agent signatures round-trip, any change to what they cover is refused,
//! `Content-Digest` accepts exactly the body's SHA-256, and access tokens — random, mutated
//! or signed by another key — never verify and never panic. Each test prints how many cases
//! it ran, for the record in `docs/security.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use mandate_domain::ids::{ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId};
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::values::{Permission, PermissionSet};
use mandate_http::tokens::{TokenService, looks_like_jwt};
use mandate_signatures::{AgentSigner, SignedMessage, content_digest, verify};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};

/// Runs `test` on `cases` values of `strategy`, fails on the first (shrunk) counterexample,
/// and prints how many cases ran.
fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = AtomicU32::new(0);
    let outcome = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
    }
    println!("fuzz {name}: {} cases", ran.load(Ordering::Relaxed));
}

const NOW: i64 = 1_760_000_000;

/// A request an agent signs: method, target, optional client id, body, when, nonce.
#[derive(Debug, Clone)]
struct Signed {
    seed: [u8; 32],
    method: String,
    target: String,
    client_id: Option<String>,
    body: Vec<u8>,
    created: i64,
    nonce: String,
}

fn signed_request() -> impl Strategy<Value = Signed> {
    (
        any::<[u8; 32]>(),
        prop::sample::select(vec!["GET", "POST", "PATCH", "DELETE", "PUT"]),
        "/v1/[a-z0-9/_-]{0,30}(\\?[a-z]{1,5}=[a-zA-Z0-9%_.-]{0,10}(&[a-z]{1,5}=[0-9]{0,4})?)?",
        proptest::option::of("cli_[0-9A-Z]{26}|[!-~]{1,40}"),
        proptest::collection::vec(any::<u8>(), 0..512),
        -59i64..=299,
        "[!-~]{1,64}",
    )
        .prop_map(|(seed, method, path, client_id, body, age, nonce)| Signed {
            seed,
            method: method.to_owned(),
            target: format!("https://mandate.example{path}"),
            client_id,
            body,
            created: NOW - age,
            nonce,
        })
}

impl Signed {
    /// The headers a client sends: the covered ones and the signature's.
    fn headers(&self, signer: &AgentSigner) -> HeaderMap {
        let covered: Vec<(&str, &str)> = self
            .client_id
            .iter()
            .map(|id| ("x-client-id", id.as_str()))
            .collect();
        let signature = signer
            .sign(
                &self.method,
                &self.target,
                &covered,
                &self.body,
                self.created,
                &self.nonce,
            )
            .unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in covered.iter().copied().chain(signature.pairs()) {
            headers.append(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

#[test]
fn genuine_signatures_round_trip() {
    fuzz("signature round trip", 300, signed_request(), |request| {
        let signer = AgentSigner::from_seed(request.seed);
        let headers = request.headers(&signer);
        let message = SignedMessage {
            method: &request.method,
            target_uri: &request.target,
            headers: &headers,
            body: &request.body,
        };
        let verified = verify(&message, now()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified.key, signer.public_key());
        prop_assert_eq!(verified.nonce, request.nonce.clone());
        prop_assert_eq!(verified.created.timestamp(), request.created);
        prop_assert!(verified.covered.iter().any(|c| c == "@method"));
        prop_assert!(verified.covered.iter().any(|c| c == "@target-uri"));
        prop_assert_eq!(
            verified.covered.iter().any(|c| c == "content-digest"),
            !request.body.is_empty()
        );
        prop_assert_eq!(
            verified.covered.iter().any(|c| c == "x-client-id"),
            request.client_id.is_some()
        );
        Ok(())
    });
}

/// What an attacker changes in a genuinely signed request.
#[derive(Debug, Clone)]
enum Tamper {
    Method(String),
    Target(String),
    ClientId(String),
    /// Flip one bit of the body at this index (or append a byte to an empty body).
    Body(prop::sample::Index, u8),
    /// The signature of another key, with the same input.
    OtherKey([u8; 32]),
    /// A different `created`, re-using the signature.
    Created(i64),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        prop::sample::select(vec!["get", "HEAD", "POST ", "OPTIONS"])
            .prop_map(|m| Tamper::Method(m.to_owned())),
        "https://(mandate\\.example|evil\\.example)/v[12]/[a-z]{0,8}".prop_map(Tamper::Target),
        "cli_[0-9A-Z]{26}".prop_map(Tamper::ClientId),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, bit)| Tamper::Body(at, bit)),
        any::<[u8; 32]>().prop_map(Tamper::OtherKey),
        (-59i64..=299).prop_map(Tamper::Created),
    ]
}

#[test]
fn any_change_to_what_is_signed_is_refused() {
    let strategy = (signed_request(), tamper());
    fuzz("signature tampering", 300, strategy, |(request, tamper)| {
        let signer = AgentSigner::from_seed(request.seed);
        let mut headers = request.headers(&signer);
        let mut method = request.method.clone();
        let mut target = request.target.clone();
        let mut body = request.body.clone();
        match tamper {
            Tamper::Method(other) => method = other,
            Tamper::Target(other) => {
                prop_assume!(other != target);
                target = other;
            }
            Tamper::ClientId(other) => {
                prop_assume!(request.client_id.as_deref() != Some(other.as_str()));
                headers.insert(
                    HeaderName::from_static("x-client-id"),
                    HeaderValue::from_str(&other).unwrap(),
                );
            }
            Tamper::Body(at, bit) => {
                if body.is_empty() {
                    body.push(bit);
                } else {
                    let at = at.index(body.len());
                    body[at] ^= bit;
                }
            }
            Tamper::OtherKey(seed) => {
                prop_assume!(seed != request.seed);
                let forged = request.headers(&AgentSigner::from_seed(seed));
                headers.insert(
                    HeaderName::from_static("signature"),
                    forged.get("signature").unwrap().clone(),
                );
            }
            Tamper::Created(age) => {
                prop_assume!(NOW - age != request.created);
                let input = headers.get("signature-input").unwrap().to_str().unwrap();
                let changed = input.replace(
                    &format!("created={}", request.created),
                    &format!("created={}", NOW - age),
                );
                headers.insert(
                    HeaderName::from_static("signature-input"),
                    HeaderValue::from_str(&changed).unwrap(),
                );
            }
        }
        let message = SignedMessage {
            method: &method,
            target_uri: &target,
            headers: &headers,
            body: &body,
        };
        let refused = verify(&message, now());
        prop_assert!(
            refused.is_err(),
            "a tampered request verified: {:?}",
            refused
        );
        Ok(())
    });
}

#[test]
fn content_digest_accepts_exactly_the_body_hash() {
    let digest_value = prop_oneof![
        "[ -~]{0,100}",
        "(sha-256|sha-512|md5|SHA-256)=:[A-Za-z0-9+/]{0,64}={0,2}:",
        proptest::collection::vec(any::<u8>(), 32)
            .prop_map(|bytes| format!("sha-256=:{}:", STANDARD.encode(bytes))),
    ];
    let strategy = (
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 1..256),
        digest_value,
    );
    fuzz(
        "content-digest",
        500,
        strategy,
        |(seed, body, replacement)| {
            // The computed digest is RFC 9530: sha-256=:<base64 of SHA-256(body)>:.
            let digest = content_digest(&body);
            prop_assert_eq!(
                digest.clone(),
                format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(&body)))
            );
            prop_assume!(replacement != digest);
            // A signed request whose digest header is replaced is refused, without a panic.
            let request = Signed {
                seed,
                method: "POST".into(),
                target: "https://mandate.example/v1/claims".into(),
                client_id: None,
                body,
                created: NOW,
                nonce: "n".into(),
            };
            let signer = AgentSigner::from_seed(seed);
            let mut headers = request.headers(&signer);
            if let Ok(value) = HeaderValue::from_str(&replacement) {
                headers.insert(HeaderName::from_static("content-digest"), value);
            } else {
                headers.remove("content-digest");
            }
            let message = SignedMessage {
                method: &request.method,
                target_uri: &request.target,
                headers: &headers,
                body: &request.body,
            };
            prop_assert!(verify(&message, now()).is_err());
            Ok(())
        },
    );
}

const ISSUER: &str = "https://mandate.example";

fn client() -> Client {
    let now = mandate_domain::now();
    Client {
        id: ClientId::generate(),
        organization_id: OrganizationId::generate(),
        destination_id: DestinationId::generate(),
        orchestrator_id: OrchestratorId::generate(),
        label: None,
        permissions: PermissionSet::default_for_new_client(),
        agent_key: None,
        version: 1,
        status: ClientStatus::Active,
        created_at: now,
        updated_at: now,
    }
}

/// Bearer values a client could send: anything, JWT-shaped base64url, or JSON segments.
fn token_text() -> impl Strategy<Value = String> {
    let segment = "[A-Za-z0-9_-]{0,120}";
    let json_segment = "\\{\"[a-z]{1,5}\":(\"[ -~]{0,20}\"|[0-9]{1,12}|null|true)\\}"
        .prop_map(|json| URL_SAFE_NO_PAD.encode(json));
    prop_oneof![
        "\\PC{0,200}",
        (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (json_segment.clone(), json_segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        Just(format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"cli_x"}"#)
        )),
    ]
}

#[test]
fn random_tokens_never_verify() {
    let service = TokenService::new(&[7; 32], ISSUER);
    fuzz("access token random", 2000, token_text(), |token| {
        let _ = looks_like_jwt(&token);
        prop_assert!(service.verify(&token).is_err());
        Ok(())
    });
}

#[test]
fn mutated_tokens_never_verify() {
    let service = TokenService::new(&[7; 32], ISSUER);
    let client = client();
    let scope: PermissionSet = [Permission::CreateIncoming].into_iter().collect();
    let genuine = service
        .issue(&client, &KeyId::generate(), &scope, mandate_domain::now())
        .unwrap()
        .access_token;
    assert!(service.verify(&genuine).is_ok());
    let length = genuine.len();
    let strategy = prop_oneof![
        // One byte replaced by another printable one.
        (0..length, 0x21u8..0x7f).prop_map(|(at, byte)| (at, Some(byte), None)),
        // One byte removed.
        (0..length).prop_map(|at| (at, None, None)),
        // A segment swapped for the same segment of a token from another key.
        (0..3usize).prop_map(|segment| (0, None, Some(segment))),
    ];
    let foreign = TokenService::new(&[8; 32], ISSUER)
        .issue(&client, &KeyId::generate(), &scope, mandate_domain::now())
        .unwrap()
        .access_token;
    fuzz(
        "access token mutation",
        2000,
        strategy,
        |(at, byte, segment)| {
            let mut bytes = genuine.clone().into_bytes();
            match (byte, segment) {
                (_, Some(segment)) => {
                    let mut parts: Vec<&str> = genuine.split('.').collect();
                    let theirs: Vec<&str> = foreign.split('.').collect();
                    parts[segment] = theirs[segment];
                    bytes = parts.join(".").into_bytes();
                }
                (Some(byte), None) => {
                    prop_assume!(bytes[at] != byte);
                    bytes[at] = byte;
                }
                (None, None) => {
                    bytes.remove(at);
                }
            }
            let token = String::from_utf8(bytes).unwrap();
            prop_assume!(token != genuine);
            let _ = looks_like_jwt(&token);
            prop_assert!(
                service.verify(&token).is_err(),
                "a mutated token verified: {}",
                token
            );
            Ok(())
        },
    );
}
