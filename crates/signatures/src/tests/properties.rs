//! Property tests: whatever a client sends, the verifier answers and never panics.

use proptest::prelude::*;

use super::*;

/// Header values as a client could send them: printable ASCII mostly, sometimes
/// signature-shaped, sometimes anything a header may hold.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "([a-z0-9-]{1,8}=:[A-Za-z0-9+/=]{0,90}:(, )?){0,3}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

/// A covered component, supported or not.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"@method\"",
            "\"@target-uri\"",
            "\"@authority\"",
            "\"@scheme\"",
            "\"@path\"",
            "\"@query\"",
            "\"content-digest\"",
            "\"x-client-id\"",
            "\"@status\"",
            "\"content-digest\";sf",
            "\"X-Client-Id\"",
            "@method",
        ])
        .prop_map(str::to_owned),
        "\"[a-z@-]{0,10}\"",
    ]
}

/// A signature parameter: valid ones around `NOW` and with `signer()`'s key, and others.
fn parameter() -> impl Strategy<Value = String> {
    let key = key_id(&signer());
    prop_oneof![
        (-400i64..400).prop_map(|delta| format!("created={}", NOW + delta)),
        (-400i64..400).prop_map(|delta| format!("expires={}", NOW + delta)),
        Just(format!("keyid=\"{key}\"")),
        Just("keyid=\"ed25519:AAAA\"".to_owned()),
        Just("alg=\"ed25519\"".to_owned()),
        Just("alg=\"hmac-sha256\"".to_owned()),
        "nonce=\"[a-z0-9]{0,8}\"",
        "[a-z]{1,6}=(-?[0-9]{1,4}|\"[a-z]{0,4}\"|[a-z]{1,4}|\\?[01])",
    ]
}

/// A `Signature-Input` built from those pieces, mostly well-formed.
fn signature_input() -> impl Strategy<Value = Vec<u8>> {
    let required = format!("created={NOW};keyid=\"{}\";nonce=\"n\"", key_id(&signer()));
    let structured = (
        prop_oneof![3 => Just("sig1".to_owned()), 1 => "[a-z]{1,4}"],
        proptest::collection::vec(component(), 0..6),
        proptest::collection::vec(parameter(), 0..4),
        proptest::option::weighted(0.7, Just(required)),
    )
        .prop_map(|(label, components, mut parameters, required)| {
            parameters.extend(required);
            let parameters: String = parameters
                .iter()
                .map(|parameter| format!(";{parameter}"))
                .collect();
            format!("{label}=({}){parameters}", components.join(" ")).into_bytes()
        });
    prop_oneof![3 => structured, 1 => header_value()]
}

proptest! {
    /// Whatever the signature, digest and client headers hold, the verifier answers
    /// (mostly with a refusal) and never panics.
    #[test]
    fn arbitrary_headers_never_panic(
        input in signature_input(),
        signature in prop_oneof![
            "sig1=:[A-Za-z0-9+/]{86}==:".prop_map(String::into_bytes),
            header_value(),
        ],
        digest in proptest::option::of(header_value()),
        client_id in proptest::option::of(header_value()),
        body in proptest::collection::vec(any::<u8>(), 0..16),
        target in prop_oneof![Just(TARGET.to_owned()), "[ -~]{0,40}"],
        offset in -1000i64..1000,
    ) {
        let mut headers = HeaderMap::new();
        let mut add = |name: &'static str, value: &[u8]| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static(name), value);
            }
        };
        add("signature-input", &input);
        add("signature", &signature);
        if let Some(digest) = &digest {
            add("content-digest", digest);
        }
        if let Some(client_id) = &client_id {
            add("x-client-id", client_id);
        }
        let message = SignedMessage { method: "POST", target_uri: &target, headers: &headers, body: &body };
        let now = DateTime::from_timestamp(NOW + offset, 0).unwrap();
        if let Err(error) = verify(&message, now) {
            prop_assert!(!error.reason().is_empty());
            prop_assert!(!error.to_string().is_empty());
        }
    }

    /// A genuinely signed request with one byte of one header replaced never panics the
    /// verifier, and a changed body never verifies.
    #[test]
    fn mutated_signed_requests_never_panic(
        header in prop::sample::select(vec!["signature-input", "signature", "content-digest", "x-client-id"]),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        flip_body in any::<bool>(),
    ) {
        let mut request = Request::signed(&signer(), &[("x-client-id", CLIENT)], BODY);
        let mut value = request.headers.get(header).unwrap().as_bytes().to_vec();
        let at = position.index(value.len());
        value[at] = byte;
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            request.headers.insert(HeaderName::from_static(header), value);
        }
        if flip_body {
            request.body[0] ^= 1;
            prop_assert!(request.verify().is_err());
        } else {
            let _ = request.verify();
        }
    }
}
