//! The retry policy: a schedule of delays, ±20 % jitter, and `Retry-After` honoured within
//! bounds. Pure functions, so that the whole policy is tested without a clock or a network.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The schedule the specification names: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// How far jitter moves a scheduled delay, either way: 20 %.
pub const JITTER_FRACTION: f64 = 0.2;

/// The longest wait a receiver's `Retry-After` can ask for: one hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The longest delay one schedule entry may name: 30 days.
pub const MAX_ENTRY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The most entries (attempts) a schedule may have.
pub const MAX_ENTRIES: usize = 100;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchedule {
    /// No entries.
    #[error("a retry schedule names at least one delay, e.g. \"0s,5s,5m\"")]
    Empty,
    /// An entry is not `<digits><s|m|h|d>`.
    #[error("{0:?} is not a delay: use whole numbers with s, m, h or d, e.g. \"5m\"")]
    Entry(String),
    /// An entry is longer than [`MAX_ENTRY`].
    #[error("{0:?} is longer than 30 days")]
    TooLong(String),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("a retry schedule has at most 100 entries")]
    TooMany,
    /// The first entry is the first attempt, which is always made at once.
    #[error("the first entry is the first attempt and must be \"0s\"")]
    FirstNotImmediate,
}

/// When each attempt of one event to one endpoint is made.
///
/// Entry `k` (counting from 0) is the wait before attempt `k + 1`, measured from the failure of
/// attempt `k`. The first entry is therefore the first attempt, which is made as soon as the
/// event is fanned out, so it must be `0s`; the schedule's length is the number of attempts.
/// The default, `0s,5s,5m,30m,2h,5h,10h,10h`, makes 8 attempts over about 28 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// Parses a comma-separated list of delays, each a whole number followed by `s`, `m`, `h`
    /// or `d` (spaces around entries are ignored).
    pub fn parse(text: &str) -> Result<Self, InvalidSchedule> {
        if text.trim().is_empty() {
            return Err(InvalidSchedule::Empty);
        }
        let delays = text
            .split(',')
            .map(|entry| parse_delay(entry.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays)
    }

    /// A schedule from its delays (see the type's documentation for their meaning).
    pub fn new(delays: Vec<Duration>) -> Result<Self, InvalidSchedule> {
        match delays.first() {
            None => Err(InvalidSchedule::Empty),
            Some(first) if !first.is_zero() => Err(InvalidSchedule::FirstNotImmediate),
            Some(_) if delays.len() > MAX_ENTRIES => Err(InvalidSchedule::TooMany),
            Some(_) => match delays.iter().find(|delay| **delay > MAX_ENTRY) {
                Some(delay) => Err(InvalidSchedule::TooLong(format!("{}s", delay.as_secs()))),
                None => Ok(Self(delays)),
            },
        }
    }

    /// The delays, first attempt first.
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// How many attempts the schedule makes.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(
            [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl FromStr for RetrySchedule {
    type Err = InvalidSchedule;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for RetrySchedule {
    /// The schedule in the form [`RetrySchedule::parse`] reads, in the largest exact units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, delay) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let seconds = delay.as_secs();
            match seconds {
                0 => f.write_str("0s")?,
                _ if seconds % 86_400 == 0 => write!(f, "{}d", seconds / 86_400)?,
                _ if seconds % 3600 == 0 => write!(f, "{}h", seconds / 3600)?,
                _ if seconds % 60 == 0 => write!(f, "{}m", seconds / 60)?,
                _ => write!(f, "{seconds}s")?,
            }
        }
        Ok(())
    }
}

fn parse_delay(entry: &str) -> Result<Duration, InvalidSchedule> {
    let invalid = || InvalidSchedule::Entry(entry.to_owned());
    let split = entry.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = (entry.get(..split).ok_or_else(invalid)?, &entry[split..]);
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let too_long = || InvalidSchedule::TooLong(entry.to_owned());
    let seconds = number
        .parse::<u64>()
        .map_err(|_| too_long())?
        .checked_mul(unit_seconds)
        .ok_or_else(too_long)?;
    let delay = Duration::from_secs(seconds);
    if delay > MAX_ENTRY {
        return Err(too_long());
    }
    Ok(delay)
}

/// The wait before the next attempt, after attempt number `attempt_just_failed` (1 for the
/// first) failed; `None` when the schedule is exhausted.
///
/// - The scheduled delay is moved by `jitter × 20 %`; `jitter` is a random number in
///   `[-1, 1]` chosen by the caller (values outside are clamped, `NaN` counts as 0), so that
///   retries of many deliveries that failed together spread out.
/// - A receiver's `Retry-After` can lengthen the wait but never shorten it, and never beyond
///   one hour: the result is `max(jittered delay, min(retry_after, 1 h))`. A receiver thus
///   cannot make us retry sooner than the schedule, nor park its deliveries for longer than an
///   hour beyond what the schedule would do.
pub fn next_attempt_delay(
    schedule: &RetrySchedule,
    attempt_just_failed: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let index = usize::try_from(attempt_just_failed).ok()?;
    let scheduled = *schedule.delays().get(index)?;
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    let factor = 1.0 + JITTER_FRACTION * jitter;
    let jittered =
        Duration::try_from_secs_f64(scheduled.as_secs_f64() * factor).unwrap_or(scheduled);
    Some(match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    })
}

/// Reads a `Retry-After` header: delay-seconds (`120`) or an HTTP date, relative to `now`.
/// A date in the past means no wait; anything unreadable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Absurdly long values saturate; the clamp in `next_attempt_delay` bounds them anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_default_is_the_specified_schedule() {
        assert_eq!(
            RetrySchedule::parse(DEFAULT_SCHEDULE).unwrap(),
            RetrySchedule::default()
        );
        assert_eq!(RetrySchedule::default().to_string(), DEFAULT_SCHEDULE);
        assert_eq!(RetrySchedule::default().attempts(), 8);
        assert_eq!(
            RetrySchedule::default().delays(),
            &[
                secs(0),
                secs(5),
                secs(300),
                secs(1800),
                secs(7200),
                secs(18_000),
                secs(36_000),
                secs(36_000)
            ]
        );
    }

    #[test]
    fn every_unit_parses_and_spaces_are_ignored() {
        let schedule: RetrySchedule = " 0s, 90s ,2m,3h , 1d".parse().unwrap();
        assert_eq!(
            schedule.delays(),
            &[secs(0), secs(90), secs(120), secs(3 * 3600), secs(86_400)]
        );
        assert_eq!(schedule.to_string(), "0s,90s,2m,3h,1d");
        assert_eq!(RetrySchedule::parse("0s").unwrap().attempts(), 1);
        assert_eq!(
            RetrySchedule::parse("0m,0s").unwrap().delays(),
            &[secs(0), secs(0)]
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(RetrySchedule::parse(""), Err(InvalidSchedule::Empty));
        assert_eq!(RetrySchedule::parse("  "), Err(InvalidSchedule::Empty));
        assert_eq!(RetrySchedule::new(Vec::new()), Err(InvalidSchedule::Empty));
        for bad in [
            "0s,", "0s,,5s", "0s,5", "0s,s", "0s,5x", "0s,-5s", "0s,1.5h", "0s,5 s", "0s,5S",
            "0s,+5s", "0s,é", "0s,5ms",
        ] {
            assert!(
                matches!(RetrySchedule::parse(bad), Err(InvalidSchedule::Entry(_))),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(
            RetrySchedule::parse("5s,5m"),
            Err(InvalidSchedule::FirstNotImmediate)
        );
        assert!(matches!(
            RetrySchedule::parse("0s,31d"),
            Err(InvalidSchedule::TooLong(_))
        ));
        assert!(matches!(
            RetrySchedule::parse("0s,99999999999999999999999s"),
            Err(InvalidSchedule::TooLong(_))
        ));
        assert!(matches!(
            RetrySchedule::parse("0s,999999999999999999d"),
            Err(InvalidSchedule::TooLong(_))
        ));
        assert_eq!(
            RetrySchedule::parse("0s,30d").unwrap().delays()[1],
            secs(30 * 86_400)
        );
        let many = vec!["0s"; MAX_ENTRIES + 1].join(",");
        assert_eq!(RetrySchedule::parse(&many), Err(InvalidSchedule::TooMany));
        assert!(RetrySchedule::parse(&vec!["0s"; MAX_ENTRIES].join(",")).is_ok());
    }

    #[test]
    fn without_jitter_the_next_entry_is_the_delay() {
        let schedule = RetrySchedule::default();
        assert_eq!(next_attempt_delay(&schedule, 1, None, 0.0), Some(secs(5)));
        assert_eq!(next_attempt_delay(&schedule, 2, None, 0.0), Some(secs(300)));
        assert_eq!(
            next_attempt_delay(&schedule, 3, None, 0.0),
            Some(secs(1800))
        );
        assert_eq!(
            next_attempt_delay(&schedule, 7, None, 0.0),
            Some(secs(36_000))
        );
    }

    #[test]
    fn the_schedule_runs_out_after_its_last_attempt() {
        let schedule = RetrySchedule::default();
        assert_eq!(next_attempt_delay(&schedule, 8, None, 0.0), None);
        assert_eq!(next_attempt_delay(&schedule, 9, None, 0.0), None);
        assert_eq!(
            next_attempt_delay(&schedule, u32::MAX, Some(secs(5)), 0.5),
            None
        );
        let single = RetrySchedule::parse("0s").unwrap();
        assert_eq!(next_attempt_delay(&single, 1, None, 0.0), None);
    }

    #[test]
    fn jitter_moves_the_delay_by_at_most_twenty_percent() {
        let schedule = RetrySchedule::default();
        assert_eq!(next_attempt_delay(&schedule, 2, None, 1.0), Some(secs(360)));
        assert_eq!(
            next_attempt_delay(&schedule, 2, None, -1.0),
            Some(secs(240))
        );
        assert_eq!(next_attempt_delay(&schedule, 2, None, 0.5), Some(secs(330)));
        // Out-of-range and non-finite jitter is clamped or ignored.
        assert_eq!(next_attempt_delay(&schedule, 2, None, 7.0), Some(secs(360)));
        assert_eq!(
            next_attempt_delay(&schedule, 2, None, -7.0),
            Some(secs(240))
        );
        assert_eq!(
            next_attempt_delay(&schedule, 2, None, f64::NAN),
            Some(secs(300))
        );
        assert_eq!(
            next_attempt_delay(&schedule, 2, None, f64::INFINITY),
            Some(secs(360))
        );
        for step in -100..=100 {
            let jitter = f64::from(step) / 100.0;
            for attempt in 1..8 {
                let base = schedule.delays()[attempt as usize].as_secs_f64();
                let delay = next_attempt_delay(&schedule, attempt, None, jitter)
                    .unwrap()
                    .as_secs_f64();
                assert!(delay >= base * 0.8 - 1e-6 && delay <= base * 1.2 + 1e-6);
            }
        }
    }

    #[test]
    fn a_zero_delay_stays_zero_whatever_the_jitter() {
        let schedule = RetrySchedule::parse("0s,0s,5s").unwrap();
        assert_eq!(
            next_attempt_delay(&schedule, 1, None, 1.0),
            Some(Duration::ZERO)
        );
        assert_eq!(
            next_attempt_delay(&schedule, 1, None, -1.0),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_one_hour() {
        let schedule = RetrySchedule::default();
        // After attempt 1 the schedule says 5 s; the receiver asks for 2 minutes.
        assert_eq!(
            next_attempt_delay(&schedule, 1, Some(secs(120)), 0.0),
            Some(secs(120))
        );
        // Asking for a day is clamped to one hour.
        assert_eq!(
            next_attempt_delay(&schedule, 1, Some(secs(86_400)), 0.0),
            Some(secs(3600))
        );
        assert_eq!(
            next_attempt_delay(&schedule, 1, Some(Duration::MAX), 0.0),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_never_shortens_the_schedule() {
        let schedule = RetrySchedule::default();
        // After attempt 3 the schedule says 30 min; `Retry-After: 0` does not hurry it.
        assert_eq!(
            next_attempt_delay(&schedule, 3, Some(secs(0)), 0.0),
            Some(secs(1800))
        );
        assert_eq!(
            next_attempt_delay(&schedule, 3, Some(secs(60)), -1.0),
            Some(secs(1440))
        );
        // Beyond one hour the schedule wins over any Retry-After.
        assert_eq!(
            next_attempt_delay(&schedule, 5, Some(secs(86_400)), 0.0),
            Some(secs(18_000))
        );
        // Retry-After between the jittered delay and one hour is taken as is.
        assert_eq!(
            next_attempt_delay(&schedule, 2, Some(secs(900)), 1.0),
            Some(secs(900))
        );
        // Retry-After does not revive an exhausted schedule.
        assert_eq!(next_attempt_delay(&schedule, 8, Some(secs(10)), 0.0), None);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(secs(0)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for unreadable in ["", "-5", "1.5", "soon", "2015-10-21T07:30:00Z"] {
            assert_eq!(parse_retry_after(unreadable, now), None, "{unreadable:?}");
        }
    }
}
