//! Verification of one signed request.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderMap;
use sfv::{BareItem, Item, ListEntry};

use crate::base::{covered_components, serialize_inner_list, signature_base};
use crate::fields::{SignatureParameters, check_content_digest, dictionary};
use crate::{CLIENT_ID, CONTENT_DIGEST, SIGNATURE, SIGNATURE_INPUT, SignatureError};

/// One request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct SignedMessage<'a> {
    /// The request method, as sent (`POST`).
    pub method: &'a str,
    /// The absolute target URI: the server's public URL (scheme and authority) with the
    /// request's path and query, so that it holds behind a TLS proxy.
    pub target_uri: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request body, as received (before any decoding).
    pub body: &'a [u8],
}

/// A signature that verified: who signed, and what the caller must still check (the nonce,
/// once per key within the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The agent's public key (`keyid`).
    pub key: VerifyingKey,
    /// The signature's nonce, to be accepted once per key.
    pub nonce: String,
    /// When the agent says it signed (`created`).
    pub created: DateTime<Utc>,
    /// The covered components, in the signed order (`@method`, `content-digest`, …).
    pub covered: Vec<String>,
}

impl VerifiedSignature {
    /// The `keyid` that signed, in its canonical written form (`ed25519:<base64>`).
    pub fn key_id(&self) -> String {
        crate::key_id(&self.key)
    }
}

/// Verifies the one signature of `message` at `now`. See SPEC §8 for the rules; in short:
/// one label, `keyid` an Ed25519 key, `alg` absent or `ed25519`, `created` within 300 s past
/// and 60 s ahead, `expires` (if any) after `now`, a nonce, and at least `@method`,
/// `@target-uri`, `content-digest` (with a body) and `x-client-id` (when sent) covered.
pub fn verify(
    message: &SignedMessage<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedSignature, SignatureError> {
    let inputs = dictionary(message.headers, SIGNATURE_INPUT, "Signature-Input")?;
    let signatures = dictionary(message.headers, SIGNATURE, "Signature")?;
    let mut labels = inputs.iter();
    let (label, input) = match (labels.next(), labels.next()) {
        (Some(only), None) => only,
        _ => {
            return Err(SignatureError::SignatureCount {
                found: inputs.len(),
            });
        }
    };
    if signatures.len() != 1 {
        return Err(SignatureError::SignatureCount {
            found: signatures.len(),
        });
    }
    let Some(signature) = signatures.get(label) else {
        return Err(SignatureError::LabelMismatch);
    };
    let ListEntry::InnerList(input) = input else {
        return Err(SignatureError::MalformedSignatureInput);
    };
    let ListEntry::Item(Item {
        bare_item: BareItem::ByteSequence(signature),
        ..
    }) = signature
    else {
        return Err(SignatureError::MalformedSignature);
    };

    let parameters = SignatureParameters::read(input, now)?;
    let components = covered_components(&input.items)?;
    check_content_digest(message.headers, message.body)?;
    let mut required = vec!["@method", "@target-uri"];
    if !message.body.is_empty() {
        required.push(CONTENT_DIGEST);
    }
    if message.headers.contains_key(CLIENT_ID) {
        required.push(CLIENT_ID);
    }
    for name in required {
        if !components.iter().any(|component| component.name() == name) {
            return Err(SignatureError::MissingComponent(name));
        }
    }

    let base = signature_base(message, &components, &serialize_inner_list(input))?;
    // Strict: weak keys and malleable signatures are refused.
    Signature::from_slice(signature)
        .and_then(|signature| parameters.key.verify_strict(base.as_bytes(), &signature))
        .map_err(|_| SignatureError::BadSignature)?;
    Ok(VerifiedSignature {
        key: parameters.key,
        nonce: parameters.nonce,
        created: parameters.created,
        covered: components
            .iter()
            .map(|component| component.name().to_owned())
            .collect(),
    })
}
