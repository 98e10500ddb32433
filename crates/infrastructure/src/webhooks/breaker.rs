//! A circuit breaker per webhook, as a pure state machine over two persisted fields.
//!
//! A receiver that keeps failing should not get a request for every event (nor keep a
//! worker busy timing out); the breaker stops deliveries to it for a while and then lets a
//! single trial through to see whether it recovered.
//!
//! # States
//!
//! The state is `(consecutive_failures, open_until)`, stored in two columns of the webhook's
//! row; [`Breaker::decide`] reads it against the clock:
//!
//! | `open_until`     | gate                   | meaning                                           |
//! |------------------|------------------------|---------------------------------------------------|
//! | `None`           | [`Gate::Closed`]       | deliver normally; failures are being counted      |
//! | `Some(t)`, now < t | [`Gate::Open`]       | do not deliver before `t` (the deliveries wait)   |
//! | `Some(t)`, now ≥ t | [`Gate::HalfOpen`]   | the cool-down is over: let exactly one trial through |
//!
//! Transitions:
//! - [`Breaker::on_success`] (any state): closed, counter reset.
//! - [`Breaker::on_failure`] below the threshold: the counter grows, still closed. At or
//!   past the threshold: open for `cooldown · 2^(failures − threshold)`, capped at
//!   `max_cooldown` — so the first opening lasts `cooldown`, and each failed trial doubles it.
//! - [`Breaker::start_trial`] on `HalfOpen`: the worker that takes the trial leases it by
//!   moving `open_until` forward, so the other workers see `Open` while it runs. Stored with a
//!   compare-and-set on the old `open_until`, only one worker wins the trial; if that worker
//!   dies, the lease expires and another trial is let through.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The persisted state of one webhook's breaker (two database columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    /// Failed deliveries in a row since the last success.
    pub consecutive_failures: u32,
    /// While set, deliveries are held until this instant; once it has passed, one trial is
    /// let through. `None` is the closed state.
    pub open_until: Option<DateTime<Utc>>,
}

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (0 counts as 1). Default 5.
    pub failure_threshold: u32,
    /// How long the first opening lasts. Default 30 s.
    pub cooldown: Duration,
    /// The longest an opening lasts, however many trials failed. Default 10 min.
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(10 * 60),
        }
    }
}

impl BreakerPolicy {
    /// `cooldown · 2^(failures − threshold)` capped at `max_cooldown`, saturating.
    fn open_for(&self, failures: u32) -> Duration {
        let threshold = self.failure_threshold.max(1);
        let exponent = failures.saturating_sub(threshold);
        let cap = self.max_cooldown.as_nanos();
        let base = self.cooldown.as_nanos();
        let grown = 1u128
            .checked_shl(exponent)
            .and_then(|factor| base.checked_mul(factor))
            .unwrap_or(if base == 0 { 0 } else { u128::MAX });
        let nanos = grown.min(cap);
        // Duration's own range (u64 seconds), not u64 nanoseconds (584 years).
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        Duration::new(secs, subsec)
    }
}

/// What the breaker says about delivering now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Deliver normally.
    Closed,
    /// The cool-down is over: let exactly one trial delivery through (lease it with
    /// [`Breaker::start_trial`]); its outcome closes or reopens the breaker.
    HalfOpen,
    /// Do not deliver before `until`.
    Open {
        /// When the breaker becomes half-open.
        until: DateTime<Utc>,
    },
}

/// `at + duration`, saturating at the largest representable instant.
fn add(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Breaker {
    /// The gate at `now`: closed, open until some instant, or half-open once that instant
    /// has passed.
    pub fn decide(&self, now: DateTime<Utc>) -> Gate {
        match self.open_until {
            None => Gate::Closed,
            Some(until) if now < until => Gate::Open { until },
            Some(_) => Gate::HalfOpen,
        }
    }

    /// A delivery succeeded: the breaker closes and forgets past failures.
    #[must_use]
    pub fn on_success(self) -> Breaker {
        Breaker::default()
    }

    /// A delivery failed at `now`: counted; at or past the threshold the breaker (re)opens
    /// for `cooldown · 2^(failures − threshold)`, capped at `max_cooldown`.
    #[must_use]
    pub fn on_failure(self, now: DateTime<Utc>, policy: &BreakerPolicy) -> Breaker {
        let consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open_until = if consecutive_failures >= policy.failure_threshold.max(1) {
            Some(add(now, policy.open_for(consecutive_failures)))
        } else {
            None
        };
        Breaker {
            consecutive_failures,
            open_until,
        }
    }

    /// Takes the half-open trial at `now`: the breaker stays open until `now + lease` for
    /// everyone else (choose a lease longer than a delivery's timeout). Persist it only if
    /// `open_until` still holds the value read (compare-and-set), so that exactly one worker
    /// runs the trial; then report its outcome with [`on_success`](Self::on_success) or
    /// [`on_failure`](Self::on_failure).
    #[must_use]
    pub fn start_trial(self, now: DateTime<Utc>, lease: Duration) -> Breaker {
        Breaker {
            consecutive_failures: self.consecutive_failures,
            open_until: Some(add(now, lease)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    fn fail_times(mut breaker: Breaker, n: u32, now: DateTime<Utc>) -> Breaker {
        for _ in 0..n {
            breaker = breaker.on_failure(now, &BreakerPolicy::default());
        }
        breaker
    }

    #[test]
    fn a_new_breaker_is_closed() {
        assert_eq!(Breaker::default().decide(t0()), Gate::Closed);
    }

    #[test]
    fn failures_below_the_threshold_are_counted_and_stay_closed() {
        let breaker = fail_times(Breaker::default(), 4, t0());
        assert_eq!(breaker.consecutive_failures, 4);
        assert_eq!(breaker.open_until, None);
        assert_eq!(breaker.decide(t0()), Gate::Closed);
    }

    #[test]
    fn the_threshold_failure_opens_for_the_cooldown() {
        let breaker = fail_times(Breaker::default(), 5, t0());
        assert_eq!(breaker.consecutive_failures, 5);
        assert_eq!(breaker.open_until, Some(t0() + secs(30)));
        assert_eq!(
            breaker.decide(t0()),
            Gate::Open {
                until: t0() + secs(30)
            }
        );
    }

    #[test]
    fn open_refuses_until_the_instant_then_is_half_open() {
        let breaker = fail_times(Breaker::default(), 5, t0());
        let until = t0() + secs(30);
        assert_eq!(breaker.decide(t0() + secs(29)), Gate::Open { until });
        assert_eq!(
            breaker.decide(until - TimeDelta::nanoseconds(1)),
            Gate::Open { until }
        );
        assert_eq!(breaker.decide(until), Gate::HalfOpen);
        assert_eq!(breaker.decide(until + secs(3600)), Gate::HalfOpen);
    }

    #[test]
    fn a_success_closes_and_resets_from_any_state() {
        let open = fail_times(Breaker::default(), 7, t0());
        assert_eq!(open.on_success(), Breaker::default());
        let counting = fail_times(Breaker::default(), 3, t0());
        let closed = counting.on_success();
        assert_eq!(closed.consecutive_failures, 0);
        // The count starts again from zero: four more failures do not open it.
        assert_eq!(fail_times(closed, 4, t0()).decide(t0()), Gate::Closed);
    }

    #[test]
    fn the_trial_is_leased_so_other_workers_see_open() {
        let breaker = fail_times(Breaker::default(), 5, t0());
        let later = t0() + secs(31);
        assert_eq!(breaker.decide(later), Gate::HalfOpen);
        let leased = breaker.start_trial(later, Duration::from_secs(60));
        assert_eq!(leased.consecutive_failures, 5);
        assert_eq!(
            leased.decide(later + secs(1)),
            Gate::Open {
                until: later + secs(60)
            }
        );
        // A trial whose worker vanished is offered again once the lease is over.
        assert_eq!(leased.decide(later + secs(60)), Gate::HalfOpen);
    }

    #[test]
    fn a_successful_trial_closes() {
        let breaker = fail_times(Breaker::default(), 5, t0());
        let later = t0() + secs(31);
        let closed = breaker.start_trial(later, Duration::from_secs(60)).on_success();
        assert_eq!(closed, Breaker::default());
        assert_eq!(closed.decide(later), Gate::Closed);
    }

    #[test]
    fn each_failed_trial_reopens_twice_as_long() {
        let policy = BreakerPolicy::default();
        let mut breaker = fail_times(Breaker::default(), 5, t0());
        let mut now = t0();
        let mut openings = Vec::new();
        for _ in 0..4 {
            let Some(until) = breaker.open_until else {
                panic!("breaker should be open: {breaker:?}");
            };
            openings.push((until - now).num_seconds());
            now = until;
            assert_eq!(breaker.decide(now), Gate::HalfOpen);
            breaker = breaker
                .start_trial(now, Duration::from_secs(60))
                .on_failure(now, &policy);
        }
        assert_eq!(openings, vec![30, 60, 120, 240]);
    }

    #[test]
    fn openings_are_capped_at_max_cooldown() {
        let policy = BreakerPolicy::default();
        // 5 + 5 failures: 30 s · 2^5 = 16 min > 10 min.
        let breaker = fail_times(Breaker::default(), 9, t0()).on_failure(t0(), &policy);
        assert_eq!(breaker.open_until, Some(t0() + secs(600)));
        let saturated = Breaker {
            consecutive_failures: u32::MAX,
            open_until: None,
        }
        .on_failure(t0(), &policy);
        assert_eq!(saturated.consecutive_failures, u32::MAX);
        assert_eq!(saturated.open_until, Some(t0() + secs(600)));
    }

    #[test]
    fn extreme_policies_do_not_panic() {
        let zero_threshold = BreakerPolicy {
            failure_threshold: 0,
            ..BreakerPolicy::default()
        };
        let once = Breaker::default().on_failure(t0(), &zero_threshold);
        assert_eq!(once.open_until, Some(t0() + secs(30)));

        let huge = BreakerPolicy {
            failure_threshold: 1,
            cooldown: Duration::MAX,
            max_cooldown: Duration::MAX,
        };
        let open = Breaker::default().on_failure(t0(), &huge);
        assert_eq!(open.open_until, Some(DateTime::<Utc>::MAX_UTC));
        assert_eq!(
            open.decide(t0()),
            Gate::Open {
                until: DateTime::<Utc>::MAX_UTC
            }
        );

        let no_cooldown = BreakerPolicy {
            cooldown: Duration::ZERO,
            ..BreakerPolicy::default()
        };
        let instant = fail_times(Breaker::default(), 4, t0()).on_failure(t0(), &no_cooldown);
        assert_eq!(instant.decide(t0()), Gate::HalfOpen);
    }
}
