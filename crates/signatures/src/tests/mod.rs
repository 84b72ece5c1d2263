//! Unit tests of signing and verification: the round trip, RFC 9421's and RFC 9530's own
//! examples, and the helpers the other test modules share.

// Assertions are how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod headers;
mod properties;
mod verification;

use chrono::{DateTime, Utc};
use ed25519_dalek::Signer;
use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use sfv::{DictSerializer, Dictionary, Item, ListEntry, Parser};

use crate::base::{
    Component, component_value, covered_components, serialize_inner_list, signature_base,
};
use crate::fields::parse_key_id;
use crate::*;

/// The server's clock in these tests.
const NOW: i64 = 1_750_000_000;
const TARGET: &str = "https://mandate.example/v1/claims?expand=client";
const BODY: &[u8] = br#"{"destination":"shop","public_key":"ed25519:..."}"#;
const CLIENT: &str = "cli_01JZ0000000000000000000000";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn signer() -> AgentSigner {
    AgentSigner::from_seed([7; 32])
}

/// A request as a client sends it: `headers`, plus the signature headers.
struct Request {
    method: &'static str,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    fn new(headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Self {
            method: "POST",
            target: TARGET.to_owned(),
            headers: map,
            body: body.to_vec(),
        }
    }

    /// Signed by `signer`'s usual signature, covering `covered` headers.
    fn signed(signer: &AgentSigner, covered: &[(&str, &str)], body: &[u8]) -> Self {
        let mut request = Self::new(covered, body);
        let signed = signer
            .sign("POST", TARGET, covered, body, NOW, "nonce-1")
            .unwrap();
        for (name, value) in signed.pairs() {
            request.set(name, value);
        }
        request
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }

    fn message(&self) -> SignedMessage<'_> {
        SignedMessage {
            method: self.method,
            target_uri: &self.target,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn verify_at(&self, now: DateTime<Utc>) -> Result<VerifiedSignature, SignatureError> {
        verify(&self.message(), now)
    }

    fn verify(&self) -> Result<VerifiedSignature, SignatureError> {
        self.verify_at(now())
    }

    /// Signs with `signer` whatever `signature_input` says (any label, parameters, order),
    /// so that a refusal is about the input and not about the signature.
    fn sign_input(&mut self, signer: &AgentSigner, signature_input: &str) {
        let inputs: Dictionary = Parser::new(signature_input).parse().unwrap();
        let (label, ListEntry::InnerList(input)) = inputs.iter().next().unwrap() else {
            panic!("not an inner list: {signature_input}");
        };
        let base = covered_components(&input.items).and_then(|components| {
            signature_base(&self.message(), &components, &serialize_inner_list(input))
        });
        let signature = match base {
            Ok(base) => signer.key.sign(base.as_bytes()).to_bytes().to_vec(),
            // Refused before the signature is checked: any bytes do.
            Err(_) => vec![0; 64],
        };
        self.set("signature-input", signature_input);
        let mut header = String::new();
        let _ = DictSerializer::with_buffer(&mut header).bare_item(label, signature.as_slice());
        self.set("signature", &header);
    }
}

/// The `Signature-Input` parameters of the usual signature, for hand-written inputs.
fn key_id(signer: &AgentSigner) -> String {
    signer.key_id().to_owned()
}

#[test]
fn a_signed_request_round_trips() {
    let signer = signer();
    let request = Request::signed(&signer, &[("x-client-id", CLIENT)], BODY);
    let verified = request.verify().unwrap();
    assert_eq!(verified.key, signer.public_key());
    assert_eq!(verified.nonce, "nonce-1");
    assert_eq!(verified.created, now());
    assert_eq!(
        verified.covered,
        ["@method", "@target-uri", "content-digest", "x-client-id"]
    );
    let input = request.headers.get("signature-input").unwrap();
    assert_eq!(
        input.to_str().unwrap(),
        format!(
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"x-client-id\");\
             created={NOW};keyid=\"{}\";alg=\"ed25519\";nonce=\"nonce-1\"",
            key_id(&signer)
        )
    );
}

#[test]
fn a_request_without_body_needs_no_digest() {
    let signer = signer();
    let request = Request::signed(&signer, &[], b"");
    let verified = request.verify().unwrap();
    assert_eq!(verified.covered, ["@method", "@target-uri"]);
    assert!(!request.headers.contains_key("content-digest"));
}

#[test]
fn parameters_and_labels_may_come_in_any_order_and_cover_more() {
    let signer = signer();
    let mut request = Request::new(
        &[
            ("content-digest", &content_digest(BODY)),
            ("content-type", "application/json"),
        ],
        BODY,
    );
    let key = key_id(&signer);
    request.sign_input(
        &signer,
        &format!(
            "agent=(\"@target-uri\" \"content-type\" \"@authority\" \"@scheme\" \"@path\" \
             \"@query\" \"content-digest\" \"@method\");nonce=\"n\";tag=\"mandate\";\
             expires={};alg=\"ed25519\";keyid=\"{key}\";created={}",
            NOW + 60,
            NOW - 10
        ),
    );
    let verified = request.verify().unwrap();
    assert_eq!(verified.nonce, "n");
    assert_eq!(verified.covered.len(), 8);

    // `alg` may be left out.
    let mut request = Request::new(&[], b"");
    request.sign_input(
        &signer,
        &format!("s=(\"@method\" \"@target-uri\");keyid=\"{key}\";nonce=\"n\";created={NOW}"),
    );
    request.verify().unwrap();
}

#[test]
fn derived_components_follow_rfc_9421() {
    let request = Request {
        method: "GET",
        target: "HTTPS://Mandate.Example:443/v1/claims/clm_1?a=1&b=two".to_owned(),
        headers: HeaderMap::new(),
        body: Vec::new(),
    };
    let uri = request.target.parse::<Uri>().unwrap();
    let value = |component| component_value(&request.message(), &component, Some(&uri));
    assert_eq!(value(Component::Authority).unwrap(), "mandate.example");
    assert_eq!(value(Component::Scheme).unwrap(), "https");
    assert_eq!(value(Component::Path).unwrap(), "/v1/claims/clm_1");
    assert_eq!(value(Component::Query).unwrap(), "?a=1&b=two");
    let other = "http://127.0.0.1:8080".parse::<Uri>().unwrap();
    let value = |component| component_value(&request.message(), &component, Some(&other));
    assert_eq!(value(Component::Authority).unwrap(), "127.0.0.1:8080");
    assert_eq!(value(Component::Path).unwrap(), "/");
    assert_eq!(value(Component::Query).unwrap(), "?");
}

/// RFC 9421 Appendix B.2.6 ("Signing a Request Using ed25519"): our signature base of the
/// RFC's test request is byte for byte the RFC's, and the RFC's signature verifies on it.
#[test]
fn the_rfc_9421_ed25519_example_verifies() {
    let request = Request {
        method: "POST",
        target: "https://example.com/foo?param=Value&Pet=dog".to_owned(),
        ..Request::new(
            &[
                ("host", "example.com"),
                ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
                ("content-type", "application/json"),
                (
                    "content-digest",
                    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYl\
                     lu7BNNyealdVLvRwEmTHWXvJwew==:",
                ),
                ("content-length", "18"),
            ],
            br#"{"hello": "world"}"#,
        )
    };
    let inputs: Dictionary = Parser::new(
        "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \
         \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"",
    )
    .parse()
    .unwrap();
    let Some(ListEntry::InnerList(input)) = inputs.get("sig-b26") else {
        panic!("no inner list");
    };
    let components = covered_components(&input.items).unwrap();
    let base = signature_base(
        &request.message(),
        &components,
        &serialize_inner_list(input),
    )
    .unwrap();
    assert_eq!(
        base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
         \"@method\": POST\n\
         \"@path\": /foo\n\
         \"@authority\": example.com\n\
         \"content-type\": application/json\n\
         \"content-length\": 18\n\
         \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \
         \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let key = parse_key_id("ed25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=").unwrap();
    let signature: Dictionary = Parser::new(
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5l\
         Ip5WPpBKRCw==:",
    )
    .parse()
    .unwrap();
    let Some(ListEntry::Item(item)) = signature.get("sig-b26") else {
        panic!("no signature");
    };
    let signature = item.bare_item.as_byte_sequence().unwrap();
    let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
    assert!(key.verify_strict(base.as_bytes(), &signature).is_ok());
    // The RFC's private key (its PKCS#8 seed) is our signer's key too.
    let seed: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        "n4Ni+HpISpVObnQMW0wOhCKROaIKqKtW/2ZYb2p9KcU=",
    )
    .unwrap()
    .try_into()
    .unwrap();
    assert_eq!(AgentSigner::from_seed(seed).public_key(), key);
}

#[test]
fn content_digest_is_rfc_9530_sha_256() {
    // RFC 9530 §2's example body.
    assert_eq!(
        content_digest(br#"{"hello": "world"}"#),
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    assert_eq!(
        content_digest(b""),
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
}

#[test]
fn an_altered_body_or_digest_is_refused() {
    let signer = signer();
    let mut request = Request::signed(&signer, &[], BODY);
    request.body.push(b' ');
    assert_eq!(request.verify(), Err(SignatureError::DigestMismatch));

    let mut request = Request::signed(&signer, &[], BODY);
    request.set("content-digest", &content_digest(b"{}"));
    assert_eq!(request.verify(), Err(SignatureError::DigestMismatch));

    // Body and digest changed together: the signature covers the digest.
    let mut request = Request::signed(&signer, &[], BODY);
    request.body = b"{}".to_vec();
    request.set("content-digest", &content_digest(b"{}"));
    assert_eq!(request.verify(), Err(SignatureError::BadSignature));

    // Other algorithms are ignored; sha-256 must be there and match.
    let mut request = Request::signed(&signer, &[], BODY);
    let both = format!("sha-512=:AAAA:, {}", content_digest(BODY));
    request.set("content-digest", &both);
    assert_eq!(request.verify(), Err(SignatureError::BadSignature));
    request.set("content-digest", "sha-512=:AAAA:");
    assert_eq!(request.verify(), Err(SignatureError::DigestAlgorithm));
    request.set("content-digest", "sha-256=AAAA");
    assert_eq!(request.verify(), Err(SignatureError::DigestMalformed));
    request.set("content-digest", "sha-256=:AAAA");
    assert_eq!(request.verify(), Err(SignatureError::DigestMalformed));
}

#[test]
fn a_body_without_digest_is_refused() {
    let signer = signer();
    let mut request = Request::signed(&signer, &[], BODY);
    request.headers.remove("content-digest");
    assert_eq!(request.verify(), Err(SignatureError::DigestMissing));
    // Without a body a digest is optional, but when sent it must match.
    let mut request = Request::signed(&signer, &[], b"");
    request.set("content-digest", &content_digest(b"x"));
    assert_eq!(request.verify(), Err(SignatureError::DigestMismatch));
    request.set("content-digest", &content_digest(b""));
    request.verify().unwrap();
}
