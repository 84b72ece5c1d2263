//! Agent request signatures: RFC 9421 HTTP message signatures with Ed25519, and body digests
//! per RFC 9530 (`Content-Digest: sha-256=:<base64>:`), over `http::HeaderMap`.
//!
//! Pure and self-contained (no server, no domain model): [`verify`] checks one request against a
//! given `now` and says which key signed it and with which nonce. Remembering nonces (replay)
//! is the caller's job, and so is rebuilding `@target-uri` from the configured public URL.
//! [`AgentSigner`] produces the same signatures, for agents written in Rust, tests and the
//! example client (`examples/agent.rs`).
//!
//! `Signature-Input`, `Signature` and `Content-Digest` are read as HTTP Structured Field
//! dictionaries, so their parameters may come in any order; `@signature-params` is the
//! canonical serialization of the parsed inner list, as RFC 9421 §2.3 defines it.
//!
//! ```
//! use mandate_signatures::{AgentSigner, SignedMessage, verify};
//!
//! let signer = AgentSigner::from_seed([7; 32]);
//! let target = "https://mandate.example/v1/requests";
//! let body = br#"{"direction":"incoming"}"#;
//! let client = [("x-client-id", "cli_01JZ0000000000000000000000")];
//! let signed = signer.sign("POST", target, &client, body, 1_750_000_000, "nonce-1").unwrap();
//!
//! let mut headers = http::HeaderMap::new();
//! for (name, value) in client.into_iter().chain(signed.pairs()) {
//!     headers.append(
//!         http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
//!         http::HeaderValue::from_str(value).unwrap(),
//!     );
//! }
//! let message = SignedMessage { method: "POST", target_uri: target, headers: &headers, body };
//! let now = chrono::DateTime::from_timestamp(1_750_000_010, 0).unwrap();
//! let verified = verify(&message, now).unwrap();
//! assert_eq!(verified.key, signer.public_key());
//! assert_eq!(verified.key_id(), signer.key_id());
//! ```

mod base;
mod error;
mod fields;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

pub use error::{SignatureError, SigningError};
pub use fields::{content_digest, key_id};
pub use sign::{AgentSigner, SignatureHeaders};
pub use verify::{SignedMessage, VerifiedSignature, verify};

/// The key type of `keyid`: an Ed25519 public key (`ed25519:<base64 of its 32 bytes>`).
pub use ed25519_dalek::VerifyingKey;

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
pub(crate) const LABEL: &str = "sig1";
/// The digest algorithm this crate computes and requires in `Content-Digest`.
pub(crate) const SHA_256: &str = "sha-256";
/// The prefix of a `keyid`: the algorithm, then the standard base64 of the public key.
pub const KEY_ID_PREFIX: &str = "ed25519:";
