//! Sends one delivery: the event's body, signed the Standard Webhooks way, POSTed by a client
//! that resolves names through the network policy, follows no redirect and uses no proxy.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mandate_domain::ports::{ClaimedDelivery, TargetRefused};
use mandate_domain::usecases::AttemptOutcome;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::WebhookSecret;
use crate::guard::{NetworkPolicy, PolicyResolver};
use crate::retry::parse_retry_after;

/// The default time a receiver has to answer: 15 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a receiver's answer is kept: 4 KiB.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("Mandate-Webhooks/", env!("CARGO_PKG_VERSION"));

/// The HTTP client could not be built (its TLS backend failed to initialize).
#[derive(Debug, thiserror::Error)]
#[error("the webhook HTTP client cannot be built")]
pub struct SenderError(#[source] reqwest::Error);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// What is recorded on the attempt.
    pub outcome: AttemptOutcome,
    /// The receiver's `Retry-After`, when it failed and sent one.
    pub retry_after: Option<Duration>,
    /// The receiver answered `410 Gone`: its endpoint is to be disabled.
    pub gone: bool,
}

/// Sends deliveries. Cheap to share: hold it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    timeout: Duration,
}

/// How long an idle connection to a receiver is kept for the next send.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

impl Sender {
    /// A sender enforcing `policy` at every send, giving each receiver `timeout` (connection,
    /// request and the part of the answer that is read) — [`DEFAULT_TIMEOUT`] normally.
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> Result<Self, SenderError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(&policy))))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Many receivers close a keep-alive connection after 5 s idle (actix-web, Node.js)
            // and some answer 408 as they do: a connection is never reused that close to it,
            // so a send does not race the receiver closing it and fail for nothing.
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .user_agent(USER_AGENT)
            .https_only(!policy.allow_http)
            .build()
            .map_err(SenderError)?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// The time each receiver has to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The policy enforced at every send.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// POSTs the delivery's event to its endpoint, signed with every secret the endpoint signs
    /// with at `now`. Success is a 2xx answer within the timeout; redirects count as failures.
    pub async fn send(&self, claimed: &ClaimedDelivery, now: DateTime<Utc>) -> SendResult {
        let started = Instant::now();
        match self.attempt(claimed, now).await {
            Ok(answer) => {
                let succeeded = answer.status.is_success();
                let retry_after = if succeeded {
                    None
                } else {
                    answer
                        .retry_after
                        .and_then(|value| parse_retry_after(&value, now))
                };
                SendResult {
                    outcome: AttemptOutcome {
                        succeeded,
                        response_status: Some(answer.status.as_u16()),
                        response_body: Some(answer.body).filter(|body| !body.is_empty()),
                        duration_ms: elapsed_ms(started),
                    },
                    retry_after,
                    gone: answer.status == reqwest::StatusCode::GONE,
                }
            }
            Err(reason) => SendResult {
                outcome: AttemptOutcome {
                    succeeded: false,
                    response_status: None,
                    response_body: Some(reason),
                    duration_ms: elapsed_ms(started),
                },
                retry_after: None,
                gone: false,
            },
        }
    }

    /// One POST; `Err` carries a short description of why no answer came.
    async fn attempt(
        &self,
        claimed: &ClaimedDelivery,
        now: DateTime<Utc>,
    ) -> Result<Answer, String> {
        // Literal IP hosts never reach the resolver: the policy is applied to them here.
        let url = self
            .policy
            .check_url(&claimed.endpoint.url)
            .map_err(|refusal| format!("target refused: {refusal}"))?;
        let body = serde_json::to_vec(&claimed.event.body())
            .map_err(|_| "the event cannot be serialized".to_owned())?;
        let message_id = claimed.event.id.as_str();
        let timestamp = now.timestamp();
        let signatures: Vec<String> = claimed
            .endpoint
            .signing_secrets(now)
            .into_iter()
            .filter_map(|secret| WebhookSecret::parse(secret).ok())
            .map(|secret| secret.sign(message_id, timestamp, &body))
            .collect();
        if signatures.is_empty() {
            return Err("the endpoint has no valid signing secret".to_owned());
        }
        let mut response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(body)
            .send()
            .await
            .map_err(|error| self.describe(&error))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // Read at most MAX_RESPONSE_BODY bytes, then stop (dropping the rest of the answer).
        let mut bytes = Vec::new();
        while bytes.len() < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                // The status decided the outcome; a body cut short keeps what arrived.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body: truncated_text(&bytes, MAX_RESPONSE_BODY),
        })
    }

    /// A short, secret-free description of a transport error (the URL, which may carry a
    /// token in its query, is left out).
    fn describe(&self, error: &reqwest::Error) -> String {
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<TargetRefused>() {
                return format!("target refused: {refusal}");
            }
            source = cause.source();
        }
        if error.is_timeout() {
            return format!("timed out after {} ms", self.timeout.as_millis());
        }
        let kind = if error.is_connect() {
            "connection failed"
        } else if error.is_request() || error.is_body() {
            "request failed"
        } else {
            "transport error"
        };
        // The innermost cause is the precise one (`Connection refused`, a TLS alert…).
        let mut innermost = None;
        let mut source = error.source();
        while let Some(cause) = source {
            innermost = Some(cause);
            source = cause.source();
        }
        let text = match innermost {
            Some(cause) => format!("{kind}: {cause}"),
            None => kind.to_owned(),
        };
        truncated_text(text.as_bytes(), 300)
    }
}

struct Answer {
    status: reqwest::StatusCode,
    retry_after: Option<String>,
    body: String,
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `bytes` as text (invalid UTF-8 replaced), at most `max` bytes long, cut on a character
/// boundary.
fn truncated_text(bytes: &[u8], max: usize) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(truncated_text(b"hello", 10), "hello");
        assert_eq!(truncated_text(b"hello", 3), "hel");
        // "é" is two bytes: cutting inside it leaves a replacement character, still ≤ max.
        let cut = truncated_text("aé".as_bytes(), 2);
        assert!(cut.len() <= 2, "{cut:?}");
        let long = "é".repeat(3000);
        let cut = truncated_text(long.as_bytes(), MAX_RESPONSE_BODY);
        assert_eq!(cut.len(), MAX_RESPONSE_BODY);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = "é".repeat(3000);
        let cut = truncated_text(&odd.as_bytes()[1..], MAX_RESPONSE_BODY);
        assert!(cut.len() <= MAX_RESPONSE_BODY);
    }
}
