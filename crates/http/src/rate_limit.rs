//! Rate limiting: a token bucket (GCRA) per key or client ID, and one per key owner
//! (organization, destination, orchestrator) shared by all its keys, in this process (the
//! owner's bucket is what stops a second key from doubling the rate); and the throttle of
//! failed authentication per source address, which applies before any credential is resolved.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

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
        self.limiter
            .check_key(&principal.credential_id())
            .map_err(wait)
    }

    /// Forgets credentials whose buckets are full again, so memory follows active callers.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// Failed authentication per source address: each failure takes a token from the address's
/// bucket (`burst` tokens, refilled at `per_minute`); while the bucket is empty every request
/// from the address that needs a credential is refused before it is read, so a flood of bad
/// keys, signatures, admin-token guesses or client secrets costs no lookup, no signature check
/// and no write. IPv6 addresses count by their /64, which one host usually holds whole.
#[derive(Clone)]
pub struct FailedAuthThrottle {
    /// Per address, the GCRA "theoretical arrival time": the bucket is full again then.
    buckets: Arc<RwLock<HashMap<IpAddr, Instant>>>,
    /// The time one token takes to come back.
    interval: Duration,
    /// How far ahead of now the full-again time may be while failures are still allowed.
    tolerance: Duration,
}

impl std::fmt::Debug for FailedAuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailedAuthThrottle(..)")
    }
}

/// The most addresses tracked at once; past it a new address is not throttled (memory stays
/// bounded, and the addresses already throttled stay so).
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl FailedAuthThrottle {
    /// `burst` failures at once, then `per_minute`; `None` (no throttle) when `per_minute` is 0.
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        let interval = Duration::from_secs(60) / per_minute.get();
        let burst = burst.max(1);
        Some(Self {
            buckets: Arc::new(RwLock::new(HashMap::new())),
            interval,
            tolerance: interval * burst,
        })
    }

    fn key(address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(prefix.into())
                }
            },
            v4 => v4,
        }
    }

    /// `Err(seconds to wait)` while `address` has no failure left.
    pub fn check(&self, address: IpAddr) -> Result<(), u64> {
        self.check_at(address, Instant::now())
    }

    fn check_at(&self, address: IpAddr, now: Instant) -> Result<(), u64> {
        // Every authenticated request asks: a read lock, so that they do not queue.
        let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        let Some(full_at) = buckets.get(&Self::key(address)) else {
            return Ok(());
        };
        // One more failure must still fit under the tolerance.
        let allowed_until = now + self.tolerance - self.interval;
        match full_at.checked_duration_since(allowed_until) {
            Some(wait) if !wait.is_zero() => {
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed authentication from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        self.record_failure_at(address, Instant::now());
    }

    fn record_failure_at(&self, address: IpAddr, now: Instant) {
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        let key = Self::key(address);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, full_at| *full_at > now);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                return;
            }
        }
        let full_at = buckets.entry(key).or_insert(now);
        // The full-again time never runs more than the tolerance ahead: failures sent while
        // refused do not lengthen the wait beyond one burst.
        *full_at = ((*full_at).max(now) + self.interval).min(now + self.tolerance);
    }

    /// Forgets addresses whose buckets are full again.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        self.buckets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, full_at| *full_at > now);
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
    fn an_address_past_its_failures_waits_and_others_do_not() {
        let throttle = FailedAuthThrottle::new(1, 3).unwrap();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.check_at(one, now), Ok(()));
            throttle.record_failure_at(one, now);
        }
        assert_eq!(throttle.check_at(one, now), Err(60));
        assert_eq!(throttle.check_at(two, now), Ok(()));
        // Failures while refused do not lengthen the wait; a minute later one more is allowed.
        throttle.record_failure_at(one, now);
        assert_eq!(
            throttle.check_at(one, now + Duration::from_secs(30)),
            Err(30)
        );
        assert_eq!(
            throttle.check_at(one, now + Duration::from_secs(60)),
            Ok(())
        );
        assert!(FailedAuthThrottle::new(0, 10).is_none());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let throttle = FailedAuthThrottle::new(1, 1).unwrap();
        let now = Instant::now();
        throttle.record_failure_at("2001:db8::1".parse().unwrap(), now);
        assert!(
            throttle
                .check_at("2001:db8::ffff:1".parse().unwrap(), now)
                .is_err()
        );
        assert!(
            throttle
                .check_at("2001:db8:0:1::1".parse().unwrap(), now)
                .is_ok()
        );
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
