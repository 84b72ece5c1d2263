//! Reading the signature headers: Structured Field dictionaries of bounded size, the
//! signature parameters, the `keyid` and the body digest.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::VerifyingKey;
use http::HeaderMap;
use http::header::ToStrError;
use sfv::{BareItem, DictSerializer, Dictionary, InnerList, Item, ListEntry, Parser, key_ref};
use sha2::{Digest, Sha256};

use crate::{
    ALGORITHM, CONTENT_DIGEST, KEY_ID_PREFIX, MAX_AGE_SECONDS, MAX_AHEAD_SECONDS, MAX_HEADER_BYTES,
    MAX_NONCE_CHARS, MAX_PARAMETERS, SHA_256, SignatureError,
};

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut text = String::new();
    // A dictionary with one member: the serializer writes into `text` as it goes.
    let _ = DictSerializer::with_buffer(&mut text).bare_item(key_ref(SHA_256), digest.as_slice());
    text
}

/// The `keyid` of an Ed25519 public key: `ed25519:<standard base64 of its 32 bytes>`.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("{KEY_ID_PREFIX}{}", STANDARD.encode(key.as_bytes()))
}

/// The public key a `keyid` names; the base64 must be canonical (padded, no trailing bits).
pub(crate) fn parse_key_id(key_id: &str) -> Option<VerifyingKey> {
    let encoded = key_id.strip_prefix(KEY_ID_PREFIX)?;
    let bytes: [u8; 32] = STANDARD.decode(encoded).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The signature parameters, read and checked against `now`.
pub(crate) struct SignatureParameters {
    pub(crate) key: VerifyingKey,
    pub(crate) created: DateTime<Utc>,
    pub(crate) nonce: String,
}

impl SignatureParameters {
    pub(crate) fn read(input: &InnerList, now: DateTime<Utc>) -> Result<Self, SignatureError> {
        if input.params.len() > MAX_PARAMETERS {
            return Err(SignatureError::TooManyParameters {
                limit: MAX_PARAMETERS,
            });
        }
        let (mut key_id, mut algorithm, mut created, mut expires, mut nonce) =
            (None, None, None, None, None);
        for (name, value) in &input.params {
            match name.as_str() {
                "keyid" => key_id = Some(string_parameter("keyid", value)?),
                "alg" => algorithm = Some(string_parameter("alg", value)?),
                "created" => created = Some(time_parameter("created", value)?),
                "expires" => expires = Some(time_parameter("expires", value)?),
                "nonce" => nonce = Some(string_parameter("nonce", value)?),
                // An application tag is signed like the rest, and means nothing here.
                "tag" => {
                    string_parameter("tag", value)?;
                }
                other => return Err(SignatureError::UnsupportedParameter(other.to_owned())),
            }
        }
        let key_id = key_id.ok_or(SignatureError::MissingParameter("keyid"))?;
        let key = parse_key_id(key_id).ok_or(SignatureError::InvalidKeyId)?;
        if algorithm.is_some_and(|algorithm| algorithm != ALGORITHM) {
            return Err(SignatureError::UnsupportedAlgorithm);
        }
        let created = created.ok_or(SignatureError::MissingParameter("created"))?;
        if created < now - TimeDelta::seconds(MAX_AGE_SECONDS) {
            return Err(SignatureError::CreatedTooOld);
        }
        if created > now + TimeDelta::seconds(MAX_AHEAD_SECONDS) {
            return Err(SignatureError::CreatedInFuture);
        }
        if expires.is_some_and(|expires| expires <= now) {
            return Err(SignatureError::Expired);
        }
        let nonce = nonce.ok_or(SignatureError::MissingParameter("nonce"))?;
        if nonce.is_empty() || nonce.chars().count() > MAX_NONCE_CHARS {
            return Err(SignatureError::InvalidNonce);
        }
        Ok(Self {
            key,
            created,
            nonce: nonce.to_owned(),
        })
    }
}

fn string_parameter<'a>(
    name: &'static str,
    value: &'a BareItem,
) -> Result<&'a str, SignatureError> {
    value
        .as_string()
        .map(|text| text.as_str())
        .ok_or(SignatureError::InvalidParameter {
            name,
            expected: "a quoted string",
        })
}

fn time_parameter(name: &'static str, value: &BareItem) -> Result<DateTime<Utc>, SignatureError> {
    value
        .as_integer()
        .and_then(|seconds| DateTime::from_timestamp(i64::from(seconds), 0))
        .ok_or(SignatureError::InvalidParameter {
            name,
            expected: "an integer Unix time in seconds",
        })
}

/// The value of a header as RFC 9421 §2.1 covers it: each field line trimmed, repeated lines
/// joined with `", "`; `None` when the header is absent.
pub(crate) fn field_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ToStrError> {
    let mut combined: Option<String> = None;
    for line in headers.get_all(name) {
        let line = line.to_str()?.trim_matches([' ', '\t']);
        match &mut combined {
            None => combined = Some(line.to_owned()),
            Some(value) => {
                value.push_str(", ");
                value.push_str(line);
            }
        }
    }
    Ok(combined)
}

/// Refuses a header (`shown` in messages) whose field lines, joined, exceed
/// [`MAX_HEADER_BYTES`] — before anything reads it.
fn check_size(headers: &HeaderMap, name: &str, shown: &'static str) -> Result<(), SignatureError> {
    let mut bytes = 0;
    for line in headers.get_all(name) {
        bytes += line.len() + if bytes == 0 { 0 } else { 2 };
        if bytes > MAX_HEADER_BYTES {
            return Err(SignatureError::HeaderTooLarge {
                header: shown,
                limit: MAX_HEADER_BYTES,
            });
        }
    }
    Ok(())
}

/// A signature header (`shown` in messages) of at most [`MAX_HEADER_BYTES`], parsed as a
/// Structured Field dictionary.
pub(crate) fn dictionary(
    headers: &HeaderMap,
    name: &'static str,
    shown: &'static str,
) -> Result<Dictionary, SignatureError> {
    check_size(headers, name, shown)?;
    let value = field_value(headers, name)
        .map_err(|_| SignatureError::MalformedHeader(shown))?
        .ok_or(SignatureError::MissingHeader(shown))?;
    Parser::new(&value)
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(shown))
}

/// RFC 9530: when `Content-Digest` is sent its `sha-256` must match the body (other
/// algorithms are ignored); a non-empty body must come with one.
pub(crate) fn check_content_digest(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    check_size(headers, CONTENT_DIGEST, "Content-Digest")?;
    let Some(value) =
        field_value(headers, CONTENT_DIGEST).map_err(|_| SignatureError::DigestMalformed)?
    else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(SignatureError::DigestMissing)
        };
    };
    let digests: Dictionary = Parser::new(&value)
        .parse()
        .map_err(|_| SignatureError::DigestMalformed)?;
    match digests.get(SHA_256) {
        None => Err(SignatureError::DigestAlgorithm),
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(digest),
            ..
        })) if digest.as_slice() == Sha256::digest(body).as_slice() => Ok(()),
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(_),
            ..
        })) => Err(SignatureError::DigestMismatch),
        Some(_) => Err(SignatureError::DigestMalformed),
    }
}
