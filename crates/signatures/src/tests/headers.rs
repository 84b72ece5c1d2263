//! Refusals about the signature headers themselves, the signer's own refusals and the
//! stable reasons.

use super::*;

#[test]
fn exactly_one_signature_in_both_headers() {
    let signer = signer();
    let request = Request::signed(&signer, &[], b"");
    let input = request
        .headers
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let signature = request
        .headers
        .get("signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    let mut two = Request::signed(&signer, &[], b"");
    two.set(
        "signature-input",
        &format!("{input}, {}", input.replacen("sig1", "sig2", 1)),
    );
    two.set(
        "signature",
        &format!("{signature}, {}", signature.replacen("sig1", "sig2", 1)),
    );
    assert_eq!(
        two.verify(),
        Err(SignatureError::SignatureCount { found: 2 })
    );

    let mut two = Request::signed(&signer, &[], b"");
    two.set(
        "signature",
        &format!("{signature}, {}", signature.replacen("sig1", "sig2", 1)),
    );
    assert_eq!(
        two.verify(),
        Err(SignatureError::SignatureCount { found: 2 })
    );

    let mut other_label = Request::signed(&signer, &[], b"");
    other_label.set("signature", &signature.replacen("sig1", "sig2", 1));
    assert_eq!(other_label.verify(), Err(SignatureError::LabelMismatch));

    let mut missing = Request::signed(&signer, &[], b"");
    missing.headers.remove("signature");
    assert_eq!(
        missing.verify(),
        Err(SignatureError::MissingHeader("Signature"))
    );
    let mut missing = Request::signed(&signer, &[], b"");
    missing.headers.remove("signature-input");
    assert_eq!(
        missing.verify(),
        Err(SignatureError::MissingHeader("Signature-Input"))
    );

    // The same signature header split over two field lines is one dictionary.
    let mut split = Request::signed(&signer, &[], b"");
    let (members, parameters) = input.split_once(";created").unwrap();
    split.headers.remove("signature-input");
    split.headers.append(
        HeaderName::from_static("signature-input"),
        HeaderValue::from_static("other=(\"@method\");created=1"),
    );
    split.headers.append(
        HeaderName::from_static("signature-input"),
        HeaderValue::from_str(&format!("{members};created{parameters}")).unwrap(),
    );
    assert_eq!(
        split.verify(),
        Err(SignatureError::SignatureCount { found: 2 })
    );
}

#[test]
fn malformed_headers_are_refused() {
    let signer = signer();
    let cases = [
        (
            "signature-input",
            "sig1=(",
            SignatureError::MalformedHeader("Signature-Input"),
        ),
        (
            "signature-input",
            "",
            SignatureError::SignatureCount { found: 0 },
        ),
        (
            "signature-input",
            "sig1=:AAAA:",
            SignatureError::MalformedSignatureInput,
        ),
        (
            "signature",
            "sig1=:not base64!:",
            SignatureError::MalformedHeader("Signature"),
        ),
        (
            "signature",
            "sig1=:!!!!:",
            SignatureError::MalformedHeader("Signature"),
        ),
        ("signature", "sig1=AAAA", SignatureError::MalformedSignature),
        (
            "signature",
            "sig1=(:AAAA:)",
            SignatureError::MalformedSignature,
        ),
        (
            "signature",
            "Sig1=:AAAA:",
            SignatureError::MalformedHeader("Signature"),
        ),
    ];
    for (name, value, expected) in cases {
        let mut request = Request::signed(&signer, &[], b"");
        request.set(name, value);
        assert_eq!(request.verify(), Err(expected), "{name}: {value}");
    }
    // Not visible ASCII.
    let mut request = Request::signed(&signer, &[], b"");
    request.headers.insert(
        HeaderName::from_static("signature"),
        HeaderValue::from_bytes("sig1=:ÀAAA:".as_bytes()).unwrap(),
    );
    assert_eq!(
        request.verify(),
        Err(SignatureError::MalformedHeader("Signature"))
    );
}

#[test]
fn repeated_header_lines_are_combined() {
    let signer = signer();
    let covered = [
        ("x-client-id", CLIENT),
        ("x-trace", "a"),
        ("x-trace", " b "),
    ];
    let request = Request::signed(&signer, &covered, BODY);
    let verified = request.verify().unwrap();
    assert_eq!(
        verified.covered,
        [
            "@method",
            "@target-uri",
            "content-digest",
            "x-client-id",
            "x-trace"
        ]
    );
    let components =
        covered_components(&[Item::new(sfv::string_ref("x-trace").to_owned())]).unwrap();
    let base = signature_base(&request.message(), &components, "()").unwrap();
    assert_eq!(base, "\"x-trace\": a, b\n\"@signature-params\": ()");
    // A changed or added line of a covered header breaks the signature.
    let mut added = Request::signed(&signer, &covered, BODY);
    added.headers.append(
        HeaderName::from_static("x-trace"),
        HeaderValue::from_static("c"),
    );
    assert_eq!(added.verify(), Err(SignatureError::BadSignature));
    let mut changed = Request::signed(&signer, &covered, BODY);
    changed.set("x-client-id", "cli_other");
    assert_eq!(changed.verify(), Err(SignatureError::BadSignature));
    let mut retargeted = Request::signed(&signer, &covered, BODY);
    retargeted.target = "https://mandate.example/v1/claims".to_owned();
    assert_eq!(retargeted.verify(), Err(SignatureError::BadSignature));
    let mut method = Request::signed(&signer, &covered, BODY);
    method.method = "PUT";
    assert_eq!(method.verify(), Err(SignatureError::BadSignature));
}

#[test]
fn the_signer_refuses_what_it_cannot_sign() {
    let signer = signer();
    let sign = |headers: &[(&str, &str)], created, nonce: &str| {
        signer.sign("POST", TARGET, headers, b"", created, nonce)
    };
    assert_eq!(
        sign(&[("X-Client-Id", CLIENT)], NOW, "n"),
        Err(SigningError::HeaderName("X-Client-Id".to_owned()))
    );
    assert_eq!(
        sign(&[("x-client-id", "a\nb")], NOW, "n"),
        Err(SigningError::HeaderValue("x-client-id".to_owned()))
    );
    assert_eq!(sign(&[], NOW, ""), Err(SigningError::Nonce));
    assert_eq!(sign(&[], NOW, "é"), Err(SigningError::Nonce));
    assert_eq!(sign(&[], i64::MAX, "n"), Err(SigningError::Created));
    assert_eq!(
        signer.sign("POST", "https://x/\n", &[], b"", NOW, "n"),
        Err(SigningError::Message(SignatureError::InvalidFieldValue(
            "\"@target-uri\"".to_owned()
        )))
    );
}

#[test]
fn reasons_are_distinct_snake_case_labels() {
    let errors = [
        SignatureError::MissingHeader("Signature"),
        SignatureError::MalformedHeader("Signature"),
        SignatureError::HeaderTooLarge {
            header: "Signature",
            limit: MAX_HEADER_BYTES,
        },
        SignatureError::TooManyComponents {
            limit: MAX_COMPONENTS,
        },
        SignatureError::TooManyParameters {
            limit: MAX_PARAMETERS,
        },
        SignatureError::SignatureCount { found: 2 },
        SignatureError::LabelMismatch,
        SignatureError::MalformedSignatureInput,
        SignatureError::MalformedSignature,
        SignatureError::MissingParameter("keyid"),
        SignatureError::InvalidParameter {
            name: "alg",
            expected: "a quoted string",
        },
        SignatureError::UnsupportedParameter("foo".into()),
        SignatureError::InvalidKeyId,
        SignatureError::UnsupportedAlgorithm,
        SignatureError::CreatedTooOld,
        SignatureError::CreatedInFuture,
        SignatureError::Expired,
        SignatureError::InvalidNonce,
        SignatureError::UnsupportedComponent("\"@status\"".into()),
        SignatureError::DuplicateComponent("\"@method\"".into()),
        SignatureError::MissingComponent("@method"),
        SignatureError::MissingField("\"date\"".into()),
        SignatureError::InvalidFieldValue("\"date\"".into()),
        SignatureError::InvalidTargetUri,
        SignatureError::DigestMissing,
        SignatureError::DigestMalformed,
        SignatureError::DigestAlgorithm,
        SignatureError::DigestMismatch,
        SignatureError::BadSignature,
    ];
    let reasons: std::collections::HashSet<_> = errors.iter().map(|e| e.reason()).collect();
    assert_eq!(reasons.len(), errors.len());
    for reason in reasons {
        assert!(
            reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{reason}"
        );
    }
}
