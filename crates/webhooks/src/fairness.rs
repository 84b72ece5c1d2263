//! Fairness between endpoints inside one worker: no endpoint holds more than its share of the
//! sends, and an endpoint that keeps failing is backed off on its own schedule, so that
//! receivers that hang or fail cannot hold back anyone else's webhooks.
//!
//! The store's claim already leaves each endpoint at most its share in flight over every
//! worker; attempts fanned out here come leased without a claim, and are checked here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mandate_domain::ids::EndpointId;

/// Consecutive failures after which an endpoint is backed off.
pub const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// The first backoff; each failure after a backoff ended doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff: a receiver that comes back waits at most this long for its next try.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long an endpoint that has failed `streak` times in a row waits before its next
/// attempt: nothing below [`FAILURES_BEFORE_BACKOFF`], then [`FIRST_BACKOFF`] doubling up to
/// [`MAX_BACKOFF`].
pub fn endpoint_backoff(streak: u32) -> Option<Duration> {
    let beyond = streak.checked_sub(FAILURES_BEFORE_BACKOFF)?;
    let factor = 2u32.checked_pow(beyond).unwrap_or(u32::MAX);
    Some(FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF))
}

/// How many shares of attempts an endpoint that answers may have waiting in a worker beyond
/// the share it sends: as many as its share sends within `lease` when every send takes the
/// full `timeout`, less the wave in flight, and at least one. An attempt waiting in the worker
/// is leased, and the claim counts leased attempts against the endpoint's share; one handed
/// back instead would wait behind every later fan-out's, which keep the endpoint's share
/// leased while events keep coming, so a burst is kept rather than handed back.
pub(crate) fn waiting_shares(lease: Duration, timeout: Duration) -> usize {
    let waves = lease.as_millis() / timeout.as_millis().max(1);
    usize::try_from(waves.saturating_sub(1))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Whether an attempt may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Yes: it counts towards its endpoint's share until [`Shares::finished`].
    Send,
    /// Its endpoint has its share of sends here already: hand it back for a later claim.
    OverShare,
    /// Its endpoint is backed off until then: put it off until then.
    BackedOff(DateTime<Utc>),
}

/// An endpoint that failed last time.
#[derive(Debug, Clone, Copy)]
struct Failing {
    streak: u32,
    until: Option<DateTime<Utc>>,
}

/// What each endpoint holds of this worker: sends running or waiting, and the failure streak
/// of those that failed last.
#[derive(Debug)]
pub(crate) struct Shares {
    per_endpoint: usize,
    held: HashMap<EndpointId, usize>,
    failing: HashMap<EndpointId, Failing>,
}

impl Shares {
    pub(crate) fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            held: HashMap::new(),
            failing: HashMap::new(),
        }
    }

    /// Decides about one attempt of `endpoint` at `now`.
    pub(crate) fn admit(&mut self, endpoint: &EndpointId, now: DateTime<Utc>) -> Admission {
        if let Some(until) = self
            .failing
            .get(endpoint)
            .and_then(|failing| failing.until)
            .filter(|until| *until > now)
        {
            return Admission::BackedOff(until);
        }
        let held = self.held.entry(endpoint.clone()).or_default();
        if *held >= self.per_endpoint {
            return Admission::OverShare;
        }
        *held += 1;
        Admission::Send
    }

    /// Whether the last send of `endpoint` failed.
    pub(crate) fn failing(&self, endpoint: &EndpointId) -> bool {
        self.failing.contains_key(endpoint)
    }

    /// An admitted attempt ended without being sent (handed back or abandoned).
    pub(crate) fn dropped(&mut self, endpoint: &EndpointId) {
        if let Some(held) = self.held.get_mut(endpoint) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.held.remove(endpoint);
            }
        }
    }

    /// An admitted attempt was sent and `succeeded` or not, at `now`. Returns the end of the
    /// endpoint's backoff when this failure starts or lengthens one. A failure while a
    /// backoff runs is of a send made before it began and changes nothing: the backoff grows
    /// with the time an endpoint keeps failing, not with how many of its sends were running.
    pub(crate) fn finished(
        &mut self,
        endpoint: &EndpointId,
        succeeded: bool,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.dropped(endpoint);
        if succeeded {
            self.failing.remove(endpoint);
            return None;
        }
        let failing = self.failing.entry(endpoint.clone()).or_insert(Failing {
            streak: 0,
            until: None,
        });
        if failing.until.is_some_and(|until| now < until) {
            return None;
        }
        failing.streak = failing.streak.saturating_add(1);
        let backoff = endpoint_backoff(failing.streak)
            .and_then(|backoff| chrono::Duration::from_std(backoff).ok())?;
        let until = now + backoff;
        failing.until = Some(until);
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + millis)
            .unwrap()
    }

    #[test]
    fn the_backoff_starts_after_a_few_failures_and_doubles_up_to_its_bound() {
        assert_eq!(endpoint_backoff(0), None);
        assert_eq!(endpoint_backoff(FAILURES_BEFORE_BACKOFF - 1), None);
        let delays: Vec<u64> = (FAILURES_BEFORE_BACKOFF..FAILURES_BEFORE_BACKOFF + 7)
            .map(|streak| endpoint_backoff(streak).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(endpoint_backoff(u32::MAX), Some(MAX_BACKOFF));
    }

    #[test]
    fn an_endpoint_keeps_waiting_what_its_share_sends_within_the_lease() {
        let seconds = Duration::from_secs;
        // The fault suite's 35 s lease with a 2 s timeout; the defaults' 100 s with 15 s.
        assert_eq!(waiting_shares(seconds(35), seconds(2)), 16);
        assert_eq!(waiting_shares(seconds(100), seconds(15)), 5);
        assert_eq!(waiting_shares(seconds(15), seconds(15)), 1);
        assert_eq!(waiting_shares(seconds(1), Duration::ZERO), 999);
    }

    #[test]
    fn each_endpoint_holds_at_most_its_share() {
        let mut shares = Shares::new(2);
        let (busy, other) = (EndpointId::generate(), EndpointId::generate());
        assert_eq!(shares.admit(&busy, at(0)), Admission::Send);
        assert_eq!(shares.admit(&busy, at(0)), Admission::Send);
        assert_eq!(shares.admit(&busy, at(0)), Admission::OverShare);
        // Another endpoint is not held back by the busy one.
        assert_eq!(shares.admit(&other, at(0)), Admission::Send);
        shares.dropped(&busy);
        assert_eq!(shares.admit(&busy, at(0)), Admission::Send);
        assert_eq!(shares.finished(&busy, true, at(1)), None);
        assert_eq!(shares.admit(&busy, at(1)), Admission::Send);
    }

    #[test]
    fn an_endpoint_that_keeps_failing_is_backed_off_alone_until_it_succeeds() {
        let mut shares = Shares::new(8);
        let (failing, healthy) = (EndpointId::generate(), EndpointId::generate());
        for _ in 0..=FAILURES_BEFORE_BACKOFF {
            assert_eq!(shares.admit(&failing, at(0)), Admission::Send);
        }
        for _ in 0..FAILURES_BEFORE_BACKOFF - 1 {
            assert_eq!(shares.finished(&failing, false, at(0)), None);
        }
        assert_eq!(shares.finished(&failing, false, at(0)), Some(at(1000)));
        // The last send made before the backoff fails too: the backoff stays as it is.
        assert_eq!(shares.finished(&failing, false, at(500)), None);
        assert_eq!(
            shares.admit(&failing, at(999)),
            Admission::BackedOff(at(1000))
        );
        assert_eq!(shares.admit(&healthy, at(999)), Admission::Send);
        // Its backoff over, it is tried again; one more failure doubles the wait.
        assert_eq!(shares.admit(&failing, at(1000)), Admission::Send);
        assert_eq!(shares.finished(&failing, false, at(1500)), Some(at(3500)));
        assert_eq!(shares.admit(&failing, at(3500)), Admission::Send);
        // A success ends it.
        assert_eq!(shares.finished(&failing, true, at(3600)), None);
        assert!(shares.failing.is_empty());
        assert_eq!(shares.admit(&failing, at(3600)), Admission::Send);
    }
}
