//! Per-credential rate limiting: a token bucket (GCRA) per key or client ID, in this process.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mandate_domain::principal::Principal;

/// The limiter shared by all workers of one server.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit(..)")
    }
}

impl RateLimit {
    /// `per_second` requests per second with bursts of `burst`; `None` (no limit) when
    /// `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
        })
    }

    /// `Ok` when the credential may go ahead; otherwise the seconds to wait.
    pub fn check(&self, principal: &Principal) -> Result<(), u64> {
        self.limiter
            .check_key(&credential(principal))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }

    /// Forgets credentials whose buckets are full again, so memory follows active callers.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// What a bucket belongs to: the key, or the client ID acting.
fn credential(principal: &Principal) -> String {
    match principal {
        Principal::Admin => "admin".to_owned(),
        Principal::Platform { key_id, .. }
        | Principal::Destination { key_id, .. }
        | Principal::Orchestrator { key_id, .. } => key_id.to_string(),
        Principal::Client(client) => client.client_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use mandate_domain::ids::{KeyId, OrchestratorId};

    use super::*;

    #[test]
    fn a_credential_past_its_burst_waits_and_others_do_not() {
        let limit = RateLimit::new(1, 2).unwrap();
        let one = Principal::Orchestrator {
            orchestrator_id: OrchestratorId::generate(),
            key_id: KeyId::generate(),
        };
        let two = Principal::Orchestrator {
            orchestrator_id: OrchestratorId::generate(),
            key_id: KeyId::generate(),
        };
        assert_eq!(limit.check(&one), Ok(()));
        assert_eq!(limit.check(&one), Ok(()));
        assert_eq!(limit.check(&one), Err(1));
        assert_eq!(limit.check(&two), Ok(()));
        assert!(RateLimit::new(0, 200).is_none());
    }
}
