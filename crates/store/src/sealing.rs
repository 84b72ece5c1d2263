//! Webhook signing secrets and idempotent answers at rest. Standard Webhooks signs with the
//! secret itself, and a replayed answer must repeat the key or token it first showed, so the
//! store must give both back; it keeps them sealed (ChaCha20-Poly1305) under a key derived
//! from the server's secret, bound to the endpoint's id or to the answer's credential and key,
//! so that a copy of the database alone reveals no secret and a sealed value moved to another
//! row does not open.
//!
//! Stored form: `sealed:v1:` + base64 of the 12-byte nonce followed by the ciphertext and tag.
//! A value without the prefix was written before sealing existed (or by a store without a
//! key) and is read as it is; it is sealed the next time its endpoint is written.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_domain::ports::StoreError;
use mandate_domain::webhooks::WebhookEndpoint;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";
/// HKDF salt and info: separate this key from every other use of the server secret (which
/// is also the HMAC key of API-key hashes, so the key is never an HMAC under that secret).
const SALT: &[u8] = b"mandate webhook secret sealing";
const INFO: &[u8] = b"v1";

/// Seals and opens webhook secrets.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Arc<LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

fn failure(message: &str) -> StoreError {
    StoreError::Other(message.to_owned().into())
}

impl Sealer {
    /// The sealer whose key is derived from `server_secret` with HKDF-SHA256.
    pub(crate) fn new(server_secret: &[u8]) -> Self {
        let secret = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(server_secret);
        let key = secret
            .expand(&[INFO], &CHACHA20_POLY1305)
            .map(UnboundKey::from)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 gives the 32 bytes ChaCha20 needs"));
        Self {
            key: Arc::new(LessSafeKey::new(key)),
            random: SystemRandom::new(),
        }
    }

    fn seal(&self, secret: &str, context: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| failure("no randomness to seal a webhook secret"))?;
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| failure("a webhook secret could not be sealed"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(stored)))
    }

    fn open(&self, stored: &str, context: &str) -> Result<String, StoreError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let unreadable = || failure("a stored webhook secret does not open with this server's key");
        let mut bytes = STANDARD.decode(encoded).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| unreadable())?;
        let mut sealed = sealed;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }

    /// The stored form of an idempotent answer's body: answers carry keys, webhook secrets
    /// and payment-link tokens. Bound to the answer's credential and key.
    pub(crate) fn seal_answer(
        &self,
        body: &str,
        scope: &str,
        key: &str,
    ) -> Result<String, StoreError> {
        self.seal(body, &answer_context(scope, key))
    }

    /// Opens a stored answer's body.
    pub(crate) fn open_answer(
        &self,
        stored: &str,
        scope: &str,
        key: &str,
    ) -> Result<String, StoreError> {
        self.open(stored, &answer_context(scope, key))
    }

    /// A copy of `endpoint` with its secrets sealed, to be written.
    pub(crate) fn sealed(&self, endpoint: &WebhookEndpoint) -> Result<WebhookEndpoint, StoreError> {
        let context = endpoint.id.to_string();
        let mut sealed = endpoint.clone();
        sealed.secret = self.seal(&endpoint.secret, &context)?;
        sealed.previous_secret = endpoint
            .previous_secret
            .as_deref()
            .map(|secret| self.seal(secret, &context))
            .transpose()?;
        Ok(sealed)
    }

    /// Opens the secrets of an endpoint as read.
    pub(crate) fn open_endpoint(&self, endpoint: &mut WebhookEndpoint) -> Result<(), StoreError> {
        let context = endpoint.id.to_string();
        endpoint.secret = self.open(&endpoint.secret, &context)?;
        if let Some(previous) = &endpoint.previous_secret {
            endpoint.previous_secret = Some(self.open(previous, &context)?);
        }
        Ok(())
    }
}

/// What an answer's seal is bound to; never an endpoint id (`we_…`), so that neither kind of
/// sealed value opens in the other's place.
fn answer_context(scope: &str, key: &str) -> String {
    format!("idempotency {} {scope} {key}", scope.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn secrets_round_trip_and_are_bound_to_their_key_and_endpoint() {
        let sealer = Sealer::new(b"server secret of at least 32 bytes!!");
        let secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=";
        let sealed = sealer.seal(secret, "we_1").unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains(secret));
        assert_ne!(
            sealed,
            sealer.seal(secret, "we_1").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed, "we_1").unwrap(), secret);
        assert!(
            sealer.open(&sealed, "we_2").is_err(),
            "moved to another endpoint"
        );
        let other = Sealer::new(b"another server secret, 32 bytes long");
        assert!(other.open(&sealed, "we_1").is_err(), "another server's key");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            sealer
                .open(&String::from_utf8(tampered).unwrap(), "we_1")
                .is_err()
        );
        assert!(sealer.open("sealed:v1:AAAA", "we_1").is_err());
        // A value written before sealing reads as it is.
        assert_eq!(sealer.open(secret, "we_1").unwrap(), secret);
    }
}
