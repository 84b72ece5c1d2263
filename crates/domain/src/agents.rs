//! Agents: software holding an Ed25519 key. The key is the agent's identity (`keyid` of its
//! HTTP message signatures, which the HTTP adapter verifies) and, once a claim is approved, the
//! only credential of its client ID.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentKeyError {
    /// Not `ed25519:<base64 of 32 bytes>`, or not a point on the curve.
    #[error("expected ed25519:<base64 of a 32-byte Ed25519 public key>")]
    Malformed,
}

/// An agent's Ed25519 public key, written `ed25519:<standard base64 of the 32 bytes>`.
///
/// ```
/// use mandate_domain::agents::AgentKey;
/// let key = AgentKey::parse("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
/// assert_eq!(key.to_string(), "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
/// assert!(AgentKey::parse("ed25519:AAAA").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentKey {
    key: VerifyingKey,
    text: String,
}

impl AgentKey {
    /// The prefix of the written form.
    pub const PREFIX: &'static str = "ed25519:";

    /// Parses `ed25519:<base64>`; the base64 must be canonical standard base64 with padding.
    pub fn parse(value: &str) -> Result<Self, AgentKeyError> {
        let encoded = value
            .strip_prefix(Self::PREFIX)
            .ok_or(AgentKeyError::Malformed)?;
        let bytes: [u8; 32] = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(AgentKeyError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    /// The key with these 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, AgentKeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| AgentKeyError::Malformed)?;
        Ok(Self::from(key))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The written form, `ed25519:<base64>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AgentKey").field(&self.text).finish()
    }
}

impl fmt::Display for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The key of a signature that verified: already a valid point, so nothing to check again.
impl From<VerifyingKey> for AgentKey {
    fn from(key: VerifyingKey) -> Self {
        Self {
            text: format!("{}{}", Self::PREFIX, STANDARD.encode(key.as_bytes())),
            key,
        }
    }
}

impl TryFrom<String> for AgentKey {
    type Error = AgentKeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AgentKey> for String {
    fn from(key: AgentKey) -> String {
        key.text
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    fn agent_key() -> AgentKey {
        AgentKey::from_bytes(&signing_key().verifying_key().to_bytes()).unwrap()
    }

    #[test]
    fn written_form_round_trips() {
        let key = agent_key();
        assert_eq!(AgentKey::parse(key.as_str()), Ok(key.clone()));
        assert!(key.as_str().starts_with("ed25519:"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = agent_key();
        let encoded = key.as_str().trim_start_matches("ed25519:");
        for bad in [
            encoded.to_owned(),
            format!("ed448:{encoded}"),
            "ed25519:".to_owned(),
            format!("ed25519:{}", &encoded[..encoded.len() - 4]),
            format!("ed25519:{encoded}AAAA"),
            "ed25519:not base64!".to_owned(),
        ] {
            assert_eq!(
                AgentKey::parse(&bad),
                Err(AgentKeyError::Malformed),
                "{bad}"
            );
        }
    }
}
