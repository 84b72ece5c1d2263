//! Mandate's webhook adapter: Standard Webhooks signatures
//! (`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), the retry policy,
//! the network policy against server-side request forgery, the sender and the delivery worker.
//!
//! Wiring, from the server's settings:
//!
//! - `NetworkPolicy { allow_http, allow_private_targets, allowed_cidrs: parse_cidrs(text)? }`;
//! - `SsrfGuard::new(policy.clone())` is the domain's `TargetGuard` (registration checks);
//! - `Sender::new(policy, timeout)?` (`DEFAULT_TIMEOUT`: 15 s) applies it at every send;
//! - `WorkerConfig { schedule: RetrySchedule::parse(text)?, ..WorkerConfig::default() }`;
//! - `tokio::spawn(worker::run(mandate, sender, config, shutdown))`.

pub mod fairness;
pub mod guard;
pub mod retry;
pub mod sender;
pub mod worker;

pub use guard::{InvalidCidr, NetworkPolicy, PolicyResolver, SsrfGuard, parse_cidrs};
pub use retry::{InvalidSchedule, RetrySchedule, next_attempt_delay};
pub use sender::{DEFAULT_TIMEOUT, SendResult, Sender, SenderError};
pub use worker::{WorkerConfig, run};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why an endpoint secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct InvalidSecret;

/// An endpoint's signing secret (`whsec_…`).
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.strip_prefix("whsec_").ok_or(InvalidSecret)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        if bytes.is_empty() {
            Err(InvalidSecret)
        } else {
            Ok(Self(bytes))
        }
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector published with the Standard Webhooks specification.
    #[test]
    fn signs_the_standard_webhooks_reference_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(InvalidSecret)
        );
        assert_eq!(WebhookSecret::parse("whsec_!!!").err(), Some(InvalidSecret));
        assert_eq!(WebhookSecret::parse("whsec_").err(), Some(InvalidSecret));
    }
}
