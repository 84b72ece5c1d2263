//! Agent request signatures: RFC 9421 HTTP message signatures with Ed25519, and body digests
//! per RFC 9530 (`Content-Digest: sha-256=:<base64>:`).
//!
//! Pure: [`verify`] checks one request against a given `now` and says which key signed it and
//! with which nonce. Remembering nonces (replay) is the caller's job, and so is rebuilding
//! `@target-uri` from the configured public URL. [`AgentSigner`] produces the same signatures,
//! for tests and example clients.
//!
//! `Signature-Input`, `Signature` and `Content-Digest` are read as HTTP Structured Field
//! dictionaries, so their parameters may come in any order; `@signature-params` is the
//! canonical serialization of the parsed inner list, as RFC 9421 §2.3 defines it.

use std::fmt;

use actix_web::http::Uri;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ToStrError};
use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{Signer, SigningKey};
use mandate_domain::agents::AgentKey;
use sfv::{
    BareItem, DictSerializer, Dictionary, InnerList, Item, ListEntry, ListSerializer, Parser,
    key_ref,
};
use sha2::{Digest, Sha256};

/// The header naming the covered components and the signature parameters.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// The header carrying the signature itself.
pub const SIGNATURE: &str = "signature";
/// The RFC 9530 body digest header.
pub const CONTENT_DIGEST: &str = "content-digest";
/// The client ID header: covered whenever a signed request sends it.
pub const CLIENT_ID: &str = "x-client-id";
/// The one signature algorithm accepted (`alg`, when given).
pub const ALGORITHM: &str = "ed25519";
/// How old (by `created`) a signature may be.
pub const MAX_AGE_SECONDS: i64 = 300;
/// How far ahead of the server's clock `created` may be (clock skew).
pub const MAX_AHEAD_SECONDS: i64 = 60;
/// The longest nonce accepted, in characters.
pub const MAX_NONCE_CHARS: usize = 256;
/// The largest `Signature-Input`, `Signature` or `Content-Digest` accepted, in bytes (all its
/// field lines together). A genuine one is a few hundred bytes; the cap bounds the parsing a
/// caller can ask for before anything is known about it.
pub const MAX_HEADER_BYTES: usize = 4096;
/// The most components one signature may cover.
pub const MAX_COMPONENTS: usize = 32;
/// The most signature parameters accepted (six are known: `created`, `expires`, `keyid`,
/// `alg`, `nonce`, `tag`).
pub const MAX_PARAMETERS: usize = 8;

/// The label [`AgentSigner`] gives its signature (the verifier accepts any label).
const LABEL: &str = "sig1";
/// The digest algorithm this module computes and requires in `Content-Digest`.
const SHA_256: &str = "sha-256";

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
    pub key: AgentKey,
    /// The signature's nonce, to be accepted once per key.
    pub nonce: String,
    /// When the agent says it signed (`created`).
    pub created: DateTime<Utc>,
    /// The covered components, in the signed order (`@method`, `content-digest`, …).
    pub covered: Vec<String>,
}

/// Why a signed request was refused. The messages are safe to return to the caller; each
/// variant also has a stable [`reason`](SignatureError::reason) for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `Signature-Input` or `Signature` is absent.
    #[error("a signed request carries both Signature-Input and Signature; {0} is missing")]
    MissingHeader(&'static str),
    /// A signature header is larger than [`MAX_HEADER_BYTES`].
    #[error("{header} must be at most {limit} bytes")]
    HeaderTooLarge {
        /// The header.
        header: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// More covered components than [`MAX_COMPONENTS`].
    #[error("a signature may cover at most {limit} components")]
    TooManyComponents {
        /// The limit.
        limit: usize,
    },
    /// More signature parameters than [`MAX_PARAMETERS`].
    #[error("a signature may have at most {limit} parameters")]
    TooManyParameters {
        /// The limit.
        limit: usize,
    },
    /// A signature header is not a Structured Field dictionary.
    #[error("{0} is not a valid structured field dictionary")]
    MalformedHeader(&'static str),
    /// Not exactly one signature.
    #[error("send exactly one signature (found {found})")]
    SignatureCount {
        /// How many labels one of the two headers names.
        found: usize,
    },
    /// `Signature-Input` and `Signature` name different labels.
    #[error("Signature-Input and Signature must name the same one signature label")]
    LabelMismatch,
    /// The `Signature-Input` member is not an inner list of component names.
    #[error(
        "the Signature-Input member must be an inner list of quoted component names with \
         parameters, like (\"@method\" \"@target-uri\");created=…;keyid=\"ed25519:…\";nonce=\"…\""
    )]
    MalformedSignatureInput,
    /// The `Signature` member is not a byte sequence.
    #[error("the Signature member must be a byte sequence (:<base64>:)")]
    MalformedSignature,
    /// A required signature parameter is absent.
    #[error("the signature parameters must include {0}")]
    MissingParameter(&'static str),
    /// A signature parameter has the wrong type.
    #[error("the {name} parameter must be {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A signature parameter this server does not know.
    #[error(
        "the signature parameter {0} is not supported (use created, expires, keyid, alg, nonce, tag)"
    )]
    UnsupportedParameter(String),
    /// `keyid` is not an Ed25519 public key.
    #[error("keyid must be ed25519:<base64 of a 32-byte Ed25519 public key>")]
    InvalidKeyId,
    /// `alg` names another algorithm.
    #[error("alg must be \"ed25519\" (or be left out)")]
    UnsupportedAlgorithm,
    /// `created` is too far in the past.
    #[error("the signature was created more than 300 seconds ago")]
    CreatedTooOld,
    /// `created` is too far in the future.
    #[error("the signature was created more than 60 seconds in the future; check the clock")]
    CreatedInFuture,
    /// `expires` has passed.
    #[error("the signature has expired")]
    Expired,
    /// The nonce is empty or too long.
    #[error("nonce must be 1 to 256 characters")]
    InvalidNonce,
    /// A covered component this server does not support (component parameters, unknown
    /// derived components, header names that are not lowercase).
    #[error(
        "the covered component {0} is not supported: use @method, @target-uri, @authority, \
         @scheme, @path, @query and lowercase header names, without component parameters"
    )]
    UnsupportedComponent(String),
    /// A component is covered twice.
    #[error("the covered component {0} is listed twice")]
    DuplicateComponent(String),
    /// A component that must be covered is not.
    #[error("the signature must cover \"{0}\"")]
    MissingComponent(&'static str),
    /// A covered header is not in the request.
    #[error("the covered header {0} is not in the request")]
    MissingField(String),
    /// A covered value holds characters a signature base cannot (controls, non-ASCII).
    #[error("the covered component {0} holds characters other than visible ASCII")]
    InvalidFieldValue(String),
    /// The target URI given by the caller is not absolute.
    #[error("the request's target URI could not be rebuilt")]
    InvalidTargetUri,
    /// A request with a body has no `Content-Digest`.
    #[error("a request with a body must send Content-Digest: sha-256=:<base64>:")]
    DigestMissing,
    /// `Content-Digest` is not a dictionary of byte sequences.
    #[error("Content-Digest must be a structured field dictionary like sha-256=:<base64>:")]
    DigestMalformed,
    /// `Content-Digest` has no `sha-256` member.
    #[error("Content-Digest must include sha-256")]
    DigestAlgorithm,
    /// `Content-Digest` does not match the body.
    #[error("Content-Digest does not match the body")]
    DigestMismatch,
    /// The signature does not verify with `keyid`.
    #[error("the signature does not verify with the keyid's key")]
    BadSignature,
}

impl SignatureError {
    /// A stable snake_case label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::TooManyComponents { .. } => "too_many_components",
            Self::TooManyParameters { .. } => "too_many_parameters",
            Self::MalformedHeader(_) => "malformed_header",
            Self::SignatureCount { .. } => "signature_count",
            Self::LabelMismatch => "label_mismatch",
            Self::MalformedSignatureInput => "malformed_signature_input",
            Self::MalformedSignature => "malformed_signature",
            Self::MissingParameter(_) => "missing_parameter",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::UnsupportedParameter(_) => "unsupported_parameter",
            Self::InvalidKeyId => "invalid_key_id",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::CreatedTooOld => "created_too_old",
            Self::CreatedInFuture => "created_in_future",
            Self::Expired => "expired",
            Self::InvalidNonce => "invalid_nonce",
            Self::UnsupportedComponent(_) => "unsupported_component",
            Self::DuplicateComponent(_) => "duplicate_component",
            Self::MissingComponent(_) => "missing_component",
            Self::MissingField(_) => "missing_field",
            Self::InvalidFieldValue(_) => "invalid_field_value",
            Self::InvalidTargetUri => "invalid_target_uri",
            Self::DigestMissing => "digest_missing",
            Self::DigestMalformed => "digest_malformed",
            Self::DigestAlgorithm => "digest_algorithm",
            Self::DigestMismatch => "digest_mismatch",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Whether the request carries a signature at all (either signature header), so that the
/// pipeline counts it as a credential and refuses a half-signed request instead of ignoring it.
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key(SIGNATURE_INPUT) || headers.contains_key(SIGNATURE)
}

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut text = String::new();
    // A dictionary with one member: the serializer writes into `text` as it goes.
    let _ = DictSerializer::with_buffer(&mut text).bare_item(key_ref(SHA_256), digest.as_slice());
    text
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
    parameters
        .key
        .verify(base.as_bytes(), signature)
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

/// A covered component this module supports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Method,
    TargetUri,
    Authority,
    Scheme,
    Path,
    Query,
    /// A header field, by its lowercase name, without component parameters.
    Field(HeaderName),
}

impl Component {
    /// The component of one item of the `Signature-Input` inner list.
    fn from_item(item: &Item) -> Result<Self, SignatureError> {
        let Some(name) = item.bare_item.as_string() else {
            return Err(SignatureError::MalformedSignatureInput);
        };
        let name = name.as_str();
        if !item.params.is_empty() {
            let shown = sfv::FieldType::serialize(item);
            return Err(SignatureError::UnsupportedComponent(shown));
        }
        let unsupported = || SignatureError::UnsupportedComponent(format!("\"{name}\""));
        Ok(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@scheme" => Self::Scheme,
            "@path" => Self::Path,
            "@query" => Self::Query,
            derived if derived.starts_with('@') => return Err(unsupported()),
            field => Self::Field(
                HeaderName::from_lowercase(field.as_bytes()).map_err(|_| unsupported())?,
            ),
        })
    }

    /// The component's name, as covered (`@method`, `content-digest`).
    fn name(&self) -> &str {
        match self {
            Self::Method => "@method",
            Self::TargetUri => "@target-uri",
            Self::Authority => "@authority",
            Self::Scheme => "@scheme",
            Self::Path => "@path",
            Self::Query => "@query",
            Self::Field(name) => name.as_str(),
        }
    }

    /// Whether the value comes from the parsed target URI.
    fn is_part_of_uri(&self) -> bool {
        matches!(
            self,
            Self::Authority | Self::Scheme | Self::Path | Self::Query
        )
    }
}

/// The covered components, at most [`MAX_COMPONENTS`], each supported and listed once.
fn covered_components(items: &[Item]) -> Result<Vec<Component>, SignatureError> {
    if items.len() > MAX_COMPONENTS {
        return Err(SignatureError::TooManyComponents {
            limit: MAX_COMPONENTS,
        });
    }
    let mut components: Vec<Component> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let component = Component::from_item(item)?;
        if !seen.insert(component.name().to_owned()) {
            return Err(SignatureError::DuplicateComponent(format!(
                "\"{}\"",
                component.name()
            )));
        }
        components.push(component);
    }
    Ok(components)
}

/// The signature parameters, read and checked against `now`.
struct SignatureParameters {
    key: AgentKey,
    created: DateTime<Utc>,
    nonce: String,
}

impl SignatureParameters {
    fn read(input: &InnerList, now: DateTime<Utc>) -> Result<Self, SignatureError> {
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
        let key = AgentKey::parse(key_id).map_err(|_| SignatureError::InvalidKeyId)?;
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
fn field_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ToStrError> {
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
fn dictionary(
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
fn check_content_digest(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
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

/// The canonical serialization of an inner list with its parameters (`@signature-params`).
fn serialize_inner_list(input: &InnerList) -> String {
    let mut text = String::new();
    // A list of one inner list serializes exactly as that inner list.
    let mut list = ListSerializer::with_buffer(&mut text);
    let mut inner = list.inner_list();
    inner.items(&input.items);
    let _ = inner.finish().parameters(&input.params);
    text
}

/// The signature base of RFC 9421 §2.5: one line per covered component, then
/// `"@signature-params"`, with no trailing newline.
fn signature_base(
    message: &SignedMessage<'_>,
    components: &[Component],
    signature_params: &str,
) -> Result<String, SignatureError> {
    let uri = if components.iter().any(Component::is_part_of_uri) {
        let uri = message.target_uri.parse::<Uri>();
        Some(uri.map_err(|_| SignatureError::InvalidTargetUri)?)
    } else {
        None
    };
    let mut base = String::new();
    for component in components {
        let value = component_value(message, component, uri.as_ref())?;
        // The base is ASCII text of lines: no controls (a tab inside a header is allowed).
        if !value
            .bytes()
            .all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
        {
            return Err(SignatureError::InvalidFieldValue(format!(
                "\"{}\"",
                component.name()
            )));
        }
        // Component names need no escaping: the derived ones are fixed and header names
        // cannot hold quotes or backslashes.
        base.push('"');
        base.push_str(component.name());
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(signature_params);
    Ok(base)
}

/// The value of one covered component (RFC 9421 §2.1 and §2.2).
fn component_value(
    message: &SignedMessage<'_>,
    component: &Component,
    uri: Option<&Uri>,
) -> Result<String, SignatureError> {
    let uri = || uri.ok_or(SignatureError::InvalidTargetUri);
    Ok(match component {
        Component::Method => message.method.to_owned(),
        Component::TargetUri => message.target_uri.to_owned(),
        Component::Authority => {
            let uri = uri()?;
            let authority = uri.authority().ok_or(SignatureError::InvalidTargetUri)?;
            let host = authority.host().to_ascii_lowercase();
            let default_port = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => None,
            };
            match authority.port_u16() {
                Some(port) if Some(port) != default_port => format!("{host}:{port}"),
                _ => host,
            }
        }
        Component::Scheme => uri()?
            .scheme_str()
            .ok_or(SignatureError::InvalidTargetUri)?
            .to_ascii_lowercase(),
        Component::Path => match uri()?.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        },
        Component::Query => format!("?{}", uri()?.query().unwrap_or_default()),
        Component::Field(name) => field_value(message.headers, name.as_str())
            .map_err(|_| SignatureError::InvalidFieldValue(format!("\"{name}\"")))?
            .ok_or_else(|| SignatureError::MissingField(format!("\"{name}\"")))?,
    })
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Content-Digest`, when there is a body.
    pub content_digest: Option<String>,
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

impl SignatureHeaders {
    /// The headers to send, as (name, value) pairs.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = Vec::with_capacity(3);
        if let Some(digest) = &self.content_digest {
            pairs.push(("Content-Digest", digest.as_str()));
        }
        pairs.push(("Signature-Input", self.signature_input.as_str()));
        pairs.push(("Signature", self.signature.as_str()));
        pairs
    }
}

/// Why [`AgentSigner::sign`] could not sign (a mistake of the caller, not of a peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// A covered header name is not a valid lowercase header name.
    #[error("{0:?} is not a lowercase header name")]
    HeaderName(String),
    /// A covered header value is not visible ASCII.
    #[error("the value of {0} must be visible ASCII")]
    HeaderValue(String),
    /// `created` is outside the range of a Structured Field integer.
    #[error("created must be a Unix time in seconds")]
    Created,
    /// The nonce is empty, too long, or not printable ASCII.
    #[error("the nonce must be 1 to 256 printable ASCII characters")]
    Nonce,
    /// The message cannot be signed (control characters in the method or target URI).
    #[error(transparent)]
    Message(#[from] SignatureError),
}

/// An agent's signing key: signs requests as an agent would (`keyid` = its public key).
pub struct AgentSigner {
    key: SigningKey,
    public: AgentKey,
}

impl fmt::Debug for AgentSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl AgentSigner {
    /// The signer for the Ed25519 key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let public = AgentKey::from_bytes(&key.verifying_key().to_bytes())
            .unwrap_or_else(|_| unreachable!("a key derived from a seed is a valid point"));
        Self { key, public }
    }

    /// A signer with a fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut seed = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The public key, the signatures' `keyid`.
    pub fn public_key(&self) -> AgentKey {
        self.public.clone()
    }

    /// Signs a request: covers `@method`, `@target-uri`, `content-digest` (computed here when
    /// `body` is not empty) and each of `headers` (lowercase names, such as `x-client-id`;
    /// a repeated name is one component with several field lines), with parameters
    /// `created`, `keyid`, `alg="ed25519"` and `nonce`. The caller sends `headers` and the
    /// returned headers with the request.
    pub fn sign(
        &self,
        method: &str,
        target_uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        created: i64,
        nonce: &str,
    ) -> Result<SignatureHeaders, SigningError> {
        let digest = (!body.is_empty()).then(|| content_digest(body));
        let mut covered_headers = HeaderMap::new();
        let mut components = vec![Component::Method, Component::TargetUri];
        let digest_header = digest
            .as_deref()
            .map(|digest| (CONTENT_DIGEST, digest))
            .into_iter();
        for (name, value) in digest_header.chain(headers.iter().copied()) {
            let header = HeaderName::from_lowercase(name.as_bytes())
                .map_err(|_| SigningError::HeaderName(name.to_owned()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| SigningError::HeaderValue(name.to_owned()))?;
            let component = Component::Field(header.clone());
            if !components.contains(&component) {
                components.push(component);
            }
            covered_headers.append(header, value);
        }

        let created = sfv::Integer::try_from(created).map_err(|_| SigningError::Created)?;
        let nonce = match nonce.chars().count() {
            1..=MAX_NONCE_CHARS => {
                sfv::StringRef::from_str(nonce).map_err(|_| SigningError::Nonce)?
            }
            _ => return Err(SigningError::Nonce),
        };
        let key_id = sfv::StringRef::from_str(self.public.as_str())
            .unwrap_or_else(|_| unreachable!("ed25519:<base64> is printable ASCII"));
        let items = components
            .iter()
            .map(|component| {
                sfv::String::from_string(component.name().to_owned())
                    .map(Item::new)
                    .unwrap_or_else(|_| unreachable!("component names are printable ASCII"))
            })
            .collect();
        let mut parameters = sfv::Parameters::new();
        let parameter = |name: &'static str| key_ref(name).to_owned();
        parameters.insert(parameter("created"), BareItem::Integer(created));
        parameters.insert(parameter("keyid"), BareItem::String(key_id.to_owned()));
        parameters.insert(
            parameter("alg"),
            BareItem::String(sfv::string_ref(ALGORITHM).to_owned()),
        );
        parameters.insert(parameter("nonce"), BareItem::String(nonce.to_owned()));
        let input = InnerList::with_params(items, parameters);

        let message = SignedMessage {
            method,
            target_uri,
            headers: &covered_headers,
            body,
        };
        let base = signature_base(&message, &components, &serialize_inner_list(&input))?;
        let signature = self.key.sign(base.as_bytes()).to_bytes();

        let mut signature_input = String::new();
        DictSerializer::with_buffer(&mut signature_input)
            .members([(key_ref(LABEL), &ListEntry::InnerList(input))]);
        let mut signature_header = String::new();
        let _ = DictSerializer::with_buffer(&mut signature_header)
            .bare_item(key_ref(LABEL), signature.as_slice());
        Ok(SignatureHeaders {
            content_digest: digest,
            signature_input,
            signature: signature_header,
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

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
        signer.public_key().as_str().to_owned()
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
        let key = AgentKey::parse("ed25519:JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=").unwrap();
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
        assert_eq!(key.verify(base.as_bytes(), signature), Ok(()));
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
                format!(
                    "{covered};created={NOW};keyid=\"{key}\";alg=\"rsa-pss-sha512\";nonce=\"n\""
                ),
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
        let input =
            format!("sig1=(\"@method\" \"@target-uri\"){parameters};a=1;b=2;c=3;d=4;e=5;f=6");
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
        assert!(is_signed(&missing.headers));
        assert_eq!(
            missing.verify(),
            Err(SignatureError::MissingHeader("Signature"))
        );
        let mut missing = Request::signed(&signer, &[], b"");
        missing.headers.remove("signature-input");
        assert!(is_signed(&missing.headers));
        assert_eq!(
            missing.verify(),
            Err(SignatureError::MissingHeader("Signature-Input"))
        );
        assert!(!is_signed(
            &Request::new(&[("x-client-id", CLIENT)], b"").headers
        ));

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
}
