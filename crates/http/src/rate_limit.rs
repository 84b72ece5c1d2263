//! Rate limiting: a token bucket (GCRA) per key or client ID, and one per key owner
//! (organization, destination, orchestrator) shared by all its keys, in this process. The
//! owner's bucket is what stops a second key from doubling the rate.

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

    /// `Ok` when the credential and its owner may go ahead; otherwise the seconds to wait.
    pub fn check(&self, principal: &Principal) -> Result<(), u64> {
        let wait = |not_until: governor::NotUntil<_>| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        };
        if let Some(owner) = owner(principal) {
            self.limiter.check_key(&owner).map_err(wait)?;
        }
        self.limiter.check_key(&credential(principal)).map_err(wait)
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

/// The bucket shared by every key of the key's owner; `None` for the admin token and client
/// IDs (a client ID is its own owner's only credential).
fn owner(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Platform {
            organization_id, ..
        } => Some(format!("owner:{organization_id}")),
        Principal::Destination { destination_id, .. } => Some(format!("owner:{destination_id}")),
        Principal::Orchestrator {
            orchestrator_id, ..
        } => Some(format!("owner:{orchestrator_id}")),
        Principal::Admin | Principal::Client(_) => None,
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

    #[test]
    fn the_keys_of_one_owner_share_its_bucket() {
        let limit = RateLimit::new(1, 2).unwrap();
        let orchestrator_id = OrchestratorId::generate();
        let key = || Principal::Orchestrator {
            orchestrator_id: orchestrator_id.clone(),
            key_id: KeyId::generate(),
        };
        let (first, second) = (key(), key());
        assert_eq!(limit.check(&first), Ok(()));
        assert_eq!(limit.check(&first), Ok(()));
        assert_eq!(limit.check(&second), Err(1), "the owner's burst is spent");
    }
}
