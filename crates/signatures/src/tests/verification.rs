//! Refusals about time, keys, parameters and covered components.

use super::*;

#[test]
fn created_must_be_recent_and_not_ahead() {
    let request = Request::signed(&signer(), &[], BODY);
    let at = |seconds| DateTime::from_timestamp(NOW + seconds, 0).unwrap();
    request.verify_at(at(MAX_AGE_SECONDS)).unwrap();
    assert_eq!(
        request.verify_at(at(MAX_AGE_SECONDS + 1)),
        Err(SignatureError::CreatedTooOld)
    );
    request.verify_at(at(-MAX_AHEAD_SECONDS)).unwrap();
    assert_eq!(
        request.verify_at(at(-MAX_AHEAD_SECONDS - 1)),
        Err(SignatureError::CreatedInFuture)
    );
}

#[test]
fn an_expired_signature_is_refused() {
    let signer = signer();
    let key = key_id(&signer);
    let mut request = Request::new(&[], b"");
    let input = |expires| {
        format!(
            "sig1=(\"@method\" \"@target-uri\");created={NOW};expires={expires};\
             keyid=\"{key}\";nonce=\"n\""
        )
    };
    request.sign_input(&signer, &input(NOW + 1));
    request.verify().unwrap();
    request.sign_input(&signer, &input(NOW));
    assert_eq!(request.verify(), Err(SignatureError::Expired));
}

#[test]
fn another_key_does_not_verify() {
    let signer = signer();
    let impostor = AgentSigner::generate();
    assert_ne!(impostor.public_key(), signer.public_key());
    let mut request = Request::new(&[], b"");
    // Signed by the impostor, claiming to be `signer`.
    request.sign_input(
        &impostor,
        &format!(
            "sig1=(\"@method\" \"@target-uri\");created={NOW};keyid=\"{}\";nonce=\"n\"",
            key_id(&signer)
        ),
    );
    assert_eq!(request.verify(), Err(SignatureError::BadSignature));
    // A signature of the right length for nothing in particular.
    request.set("signature", &format!("sig1=:{}:", "A".repeat(88)));
    assert_eq!(request.verify(), Err(SignatureError::BadSignature));
    request.set("signature", "sig1=:AAAA:");
    assert_eq!(request.verify(), Err(SignatureError::BadSignature));
}

#[test]
fn parameters_are_checked() {
    let signer = signer();
    let key = key_id(&signer);
    let covered = "(\"@method\" \"@target-uri\")";
    let cases = [
        (
            format!("{covered};created={NOW};keyid=\"{key}\";alg=\"rsa-pss-sha512\";nonce=\"n\""),
            SignatureError::UnsupportedAlgorithm,
        ),
        (
            format!("{covered};created={NOW};keyid=\"{key}\";alg=ed25519;nonce=\"n\""),
            SignatureError::InvalidParameter {
                name: "alg",
                expected: "a quoted string",
            },
        ),
        (
            format!("{covered};created={NOW};nonce=\"n\""),
            SignatureError::MissingParameter("keyid"),
        ),
        (
            format!("{covered};created={NOW};keyid=\"test-key\";nonce=\"n\""),
            SignatureError::InvalidKeyId,
        ),
        (
            format!("{covered};created={NOW};keyid=\"ed25519:AAAA\";nonce=\"n\""),
            SignatureError::InvalidKeyId,
        ),
        (
            format!("{covered};keyid=\"{key}\";nonce=\"n\""),
            SignatureError::MissingParameter("created"),
        ),
        (
            format!("{covered};created=\"{NOW}\";keyid=\"{key}\";nonce=\"n\""),
            SignatureError::InvalidParameter {
                name: "created",
                expected: "an integer Unix time in seconds",
            },
        ),
        (
            format!("{covered};created={NOW}.5;keyid=\"{key}\";nonce=\"n\""),
            SignatureError::InvalidParameter {
                name: "created",
                expected: "an integer Unix time in seconds",
            },
        ),
        (
            format!("{covered};created={NOW};keyid=\"{key}\""),
            SignatureError::MissingParameter("nonce"),
        ),
        (
            format!("{covered};created={NOW};keyid=\"{key}\";nonce=\"\""),
            SignatureError::InvalidNonce,
        ),
        (
            format!(
                "{covered};created={NOW};keyid=\"{key}\";nonce=\"{}\"",
                "n".repeat(MAX_NONCE_CHARS + 1)
            ),
            SignatureError::InvalidNonce,
        ),
        (
            format!("{covered};created={NOW};keyid=\"{key}\";nonce=\"n\";foo=1"),
            SignatureError::UnsupportedParameter("foo".to_owned()),
        ),
    ];
    for (parameters, expected) in cases {
        let mut request = Request::new(&[], b"");
        request.sign_input(&signer, &format!("sig1={parameters}"));
        assert_eq!(request.verify(), Err(expected), "{parameters}");
    }
    let mut request = Request::new(&[], b"");
    let longest = "n".repeat(MAX_NONCE_CHARS);
    request.sign_input(
        &signer,
        &format!("sig1={covered};created={NOW};keyid=\"{key}\";nonce=\"{longest}\""),
    );
    assert_eq!(request.verify().unwrap().nonce, longest);
}

#[test]
fn required_components_must_be_covered() {
    let signer = signer();
    let key = key_id(&signer);
    let parameters = format!(";created={NOW};keyid=\"{key}\";nonce=\"n\"");
    // (covered, X-Client-Id sent, body, the component reported missing)
    let cases = [
        ("(\"@target-uri\")", None, &b""[..], "@method"),
        (
            "(\"@method\" \"@path\" \"@query\")",
            None,
            b"",
            "@target-uri",
        ),
        (
            "(\"@method\" \"@target-uri\")",
            None,
            BODY,
            "content-digest",
        ),
        (
            "(\"@method\" \"@target-uri\")",
            Some(CLIENT),
            b"",
            "x-client-id",
        ),
    ];
    for (covered, client_id, body, missing) in cases {
        let mut request = Request::new(&[], body);
        if let Some(client_id) = client_id {
            request.set("x-client-id", client_id);
        }
        if !body.is_empty() {
            request.set("content-digest", &content_digest(body));
        }
        request.sign_input(&signer, &format!("sig1={covered}{parameters}"));
        assert_eq!(
            request.verify(),
            Err(SignatureError::MissingComponent(missing)),
            "{covered}"
        );
    }
}

#[test]
fn unsupported_components_are_refused() {
    let signer = signer();
    let key = key_id(&signer);
    let parameters = format!(";created={NOW};keyid=\"{key}\";nonce=\"n\"");
    let mut request = Request::new(&[("content-digest", &content_digest(BODY))], BODY);
    let refused = |request: &mut Request, extra: &str| {
        let input = format!("sig1=(\"@method\" \"@target-uri\" {extra}){parameters}");
        request.sign_input(&signer, &input);
        request.verify().unwrap_err()
    };
    for (extra, shown) in [
        ("\"content-digest\";sf", "\"content-digest\";sf"),
        (
            "\"content-digest\";key=\"sha-256\"",
            "\"content-digest\";key=\"sha-256\"",
        ),
        ("\"@method\";req", "\"@method\";req"),
        (
            "\"@query-param\";name=\"expand\"",
            "\"@query-param\";name=\"expand\"",
        ),
        ("\"@request-target\"", "\"@request-target\""),
        ("\"@status\"", "\"@status\""),
        ("\"@signature-params\"", "\"@signature-params\""),
        ("\"Content-Digest\"", "\"Content-Digest\""),
        ("\"\"", "\"\""),
    ] {
        assert_eq!(
            refused(&mut request, extra),
            SignatureError::UnsupportedComponent(shown.to_owned()),
            "{extra}"
        );
    }
    assert_eq!(
        refused(&mut request, "content-digest"),
        SignatureError::MalformedSignatureInput
    );
    assert_eq!(
        refused(&mut request, "\"@method\""),
        SignatureError::DuplicateComponent("\"@method\"".to_owned())
    );
    request.headers.remove("content-digest");
    request.body.clear();
    assert_eq!(
        refused(&mut request, "\"content-digest\""),
        SignatureError::MissingField("\"content-digest\"".to_owned())
    );
}

#[test]
fn header_sizes_components_and_parameters_are_bounded() {
    let signer = signer();
    let key = key_id(&signer);
    let parameters = format!(";created={NOW};keyid=\"{key}\";nonce=\"n\"");
    let mut request = Request::new(&[], b"");
    // Exactly at the limits: still read (and refused for what it covers, not its size).
    let fields: Vec<String> = (0..MAX_COMPONENTS - 2)
        .map(|index| format!("\"x-{index}\""))
        .collect();
    let input = format!(
        "sig1=(\"@method\" \"@target-uri\" {}){parameters}",
        fields.join(" ")
    );
    request.sign_input(&signer, &input);
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::MissingField("\"x-0\"".to_owned())
    );
    // One component more.
    let input = format!(
        "sig1=(\"@method\" \"@target-uri\" {} \"x-last\"){parameters}",
        fields.join(" ")
    );
    request.sign_input(&signer, &input);
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::TooManyComponents {
            limit: MAX_COMPONENTS
        }
    );
    // Parameters past the limit, even repeated ones.
    let input = format!("sig1=(\"@method\" \"@target-uri\"){parameters};a=1;b=2;c=3;d=4;e=5;f=6");
    request.set("signature-input", &input);
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::TooManyParameters {
            limit: MAX_PARAMETERS
        }
    );
    // Headers past the limit, counted over all their lines.
    let padding = format!(";tag=\"{}\"", "t".repeat(MAX_HEADER_BYTES));
    let input = format!("sig1=(\"@method\" \"@target-uri\"){parameters}{padding}");
    request.set("signature-input", &input);
    let too_large = |header| SignatureError::HeaderTooLarge {
        header,
        limit: MAX_HEADER_BYTES,
    };
    assert_eq!(request.verify().unwrap_err(), too_large("Signature-Input"));
    let mut request = Request::signed(&signer, &[], BODY);
    let half = format!("md5=:{}:", "A".repeat(MAX_HEADER_BYTES / 2));
    request.headers.append(
        HeaderName::from_static("content-digest"),
        HeaderValue::from_str(&half).unwrap(),
    );
    request.headers.append(
        HeaderName::from_static("content-digest"),
        HeaderValue::from_str(&half).unwrap(),
    );
    assert_eq!(request.verify().unwrap_err(), too_large("Content-Digest"));
    let mut request = Request::signed(&signer, &[], BODY);
    let signature = format!("sig1=:{}:", "A".repeat(MAX_HEADER_BYTES));
    request.set("signature", &signature);
    assert_eq!(request.verify().unwrap_err(), too_large("Signature"));
}
