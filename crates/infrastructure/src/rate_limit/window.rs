//! The sliding-window-counter arithmetic, in one pure function shared by both limiters.
//!
//! Time is cut into fixed windows of the quota's length. A key keeps two counters: the
//! requests of the current fixed window and those of the previous one. The sliding window
//! ending now overlaps the previous fixed window by `(window - elapsed) / window`, so the
//! estimate of the requests in it is `previous × (window - elapsed) / window + current`
//! (Cloudflare's approximation: O(1) memory per key, exact when requests are spread evenly
//! over the previous window). A request is admitted when the estimate plus itself stays within
//! the limit; a refused request is not counted.
//!
//! Everything is integer arithmetic in milliseconds, scaled by the window length, so the Lua
//! script of the Redis limiter (doubles, exact below 2^53) reaches the same admission for the
//! same inputs: `limit × window_ms` stays below 2^53 for any limit under 100 million per
//! day-long window.

use keel_domain::rate_limit::{Quota, RateDecision};

/// The counters of one key at one instant, before counting the request being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Requests counted in the previous fixed window.
    pub previous: u64,
    /// Requests counted so far in the current fixed window.
    pub current: u64,
    /// How far the instant is into the current fixed window, in milliseconds.
    pub elapsed_ms: u64,
}

/// The quota's window in milliseconds (at least 1).
pub fn window_ms(quota: Quota) -> u64 {
    u64::try_from(quota.window.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Decides one request against `quota` given the key's counters. When the decision allows it,
/// the caller counts it (`current + 1`); a refusal changes nothing.
///
/// - `remaining`: what the limit leaves once this request is counted (the estimate rounded up);
/// - `retry_after_secs` (refusals only, at least 1): until the estimate has decayed enough
///   for one more request, assuming no other request arrives meanwhile;
/// - `reset_secs`: until every request counted so far has slid out of the window (the end of
///   the next fixed window when the current one holds requests, else the end of this one).
pub fn decide(quota: Quota, state: WindowState) -> RateDecision {
    decide_precisely(quota, state).decision
}

/// [`decide`], with its two waits also in milliseconds (the decision rounds them up to
/// seconds). The lease limiter repeats a refusal locally until `retry_after_ms` at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precise {
    pub decision: RateDecision,
    /// Until one more request would be admitted (0 when this one is).
    pub retry_after_ms: u64,
    /// Until every request counted so far has slid out of the window.
    pub reset_ms: u64,
}

/// See [`decide`] and [`Precise`].
pub fn decide_precisely(quota: Quota, state: WindowState) -> Precise {
    let w = u128::from(window_ms(quota));
    let e = u128::from(state.elapsed_ms).min(w);
    let limit = u128::from(quota.requests);
    let previous = u128::from(state.previous);
    let current = u128::from(state.current);

    // All in request·milliseconds: the estimate × w.
    let with_this = previous * (w - e) + (current + 1) * w;
    let allowed = with_this <= limit * w;
    let counted_now = if allowed { current + 1 } else { current };
    let reset_ms = if counted_now > 0 {
        (w - e) + w
    } else if previous > 0 {
        w - e
    } else {
        0
    };

    if allowed {
        let used = with_this.div_ceil(w);
        return Precise {
            decision: RateDecision {
                allowed: true,
                limit: quota.requests,
                remaining: u32::try_from(limit.saturating_sub(used)).unwrap_or(0),
                retry_after_secs: 0,
                reset_secs: ceil_secs(reset_ms),
            },
            retry_after_ms: 0,
            reset_ms: to_u64(reset_ms),
        };
    }

    let wait_ms = if limit == 0 {
        // Nothing is ever admitted; point at the end of the window.
        reset_ms.max(w - e)
    } else if current < limit {
        // The current window has room: wait until the previous window's share has shrunk to
        // fit, i.e. `previous × (w - e') ≤ (limit - current - 1) × w`. `previous > 0` here, or
        // the request would have been admitted.
        let allowed_share = (limit - current - 1) * w / previous.max(1);
        (w - allowed_share).saturating_sub(e)
    } else {
        // The current window is full: wait for the next one, where it becomes the previous
        // one and must decay to `current × (w - e') ≤ (limit - 1) × w`.
        let allowed_share = (limit - 1) * w / current.max(1);
        (w - e) + (w - allowed_share)
    }
    .max(1);
    let retry_after_secs = ceil_secs(wait_ms).max(1);
    Precise {
        decision: RateDecision {
            allowed: false,
            limit: quota.requests,
            remaining: 0,
            retry_after_secs,
            reset_secs: ceil_secs(reset_ms).max(retry_after_secs),
        },
        retry_after_ms: to_u64(wait_ms),
        reset_ms: to_u64(reset_ms.max(wait_ms)),
    }
}

/// How many more requests the key admits right now: the largest `g` with
/// `previous × (w - e) + (current + g) × w ≤ limit × w`. At least 1 exactly when [`decide`]
/// admits a request; a lease takes at most this much.
pub fn room(quota: Quota, state: WindowState) -> u64 {
    let w = u128::from(window_ms(quota));
    let e = u128::from(state.elapsed_ms).min(w);
    let budget = u128::from(quota.requests) * w;
    let decaying = u128::from(state.previous) * (w - e);
    let fits = budget.saturating_sub(decaying) / w;
    to_u64(fits.saturating_sub(u128::from(state.current)))
}

fn to_u64(ms: u128) -> u64 {
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn ceil_secs(ms: u128) -> u64 {
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MINUTE: Quota = Quota {
        requests: 3,
        window: Duration::from_secs(60),
    };

    fn at(previous: u64, current: u64, elapsed_secs: u64) -> RateDecision {
        decide(
            MINUTE,
            WindowState {
                previous,
                current,
                elapsed_ms: elapsed_secs * 1000,
            },
        )
    }

    #[test]
    fn a_fresh_key_is_allowed_and_counts_down() {
        let d = at(0, 0, 0);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining, d.retry_after_secs), (3, 2, 0));
        assert_eq!(at(0, 1, 5).remaining, 1);
        assert_eq!(at(0, 2, 5).remaining, 0);
    }

    #[test]
    fn the_limit_is_reached_when_the_current_window_is_full() {
        let d = at(0, 3, 10);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // 50 s to the end of this window, then 1/3 of the next before 3 × 2/3 + 1 ≤ 3.
        assert_eq!(d.retry_after_secs, 70);
        assert_eq!(d.reset_secs, 110);
    }

    #[test]
    fn the_previous_window_weighs_in_by_its_overlap() {
        // 10 s in: 3 × 50/60 = 2.5, + 1 > 3.
        let d = at(3, 0, 10);
        assert!(!d.allowed);
        // Allowed once 3 × (60 - e)/60 ≤ 2, i.e. from e = 20 s: 10 s from now.
        assert_eq!(d.retry_after_secs, 10);
        assert!(at(3, 0, 20).allowed);
        assert!(!at(3, 0, 19).allowed);
        // 40 s in: 3 × 20/60 = 1, + 1 ≤ 3, leaving 1.
        let d = at(3, 0, 40);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        // The estimate is rounded up: 3 × 30/60 = 1.5 + 1 → 3 used.
        assert_eq!(at(3, 0, 30).remaining, 0);
    }

    #[test]
    fn window_boundaries_hand_the_count_over_whole() {
        // At the very start of a window the previous one counts in full.
        assert!(!at(3, 0, 0).allowed);
        assert!(at(2, 0, 0).allowed);
        assert_eq!(at(2, 0, 0).remaining, 0);
        // The last millisecond of a window: the previous one has all but vanished, but what
        // is left of it still rounds the estimate up.
        let last = |current| {
            decide(
                MINUTE,
                WindowState {
                    previous: 3,
                    current,
                    elapsed_ms: 59_999,
                },
            )
        };
        assert!(last(1).allowed);
        assert_eq!(last(1).remaining, 0);
        assert!(!last(2).allowed, "3 × 1/60000 + 2 + 1 > 3");
    }

    #[test]
    fn reset_is_when_every_counted_request_has_slid_out() {
        // This request lands in the current window: it is forgotten at the end of the next.
        assert_eq!(at(0, 0, 15).reset_secs, 105);
        // Refused with only the previous window holding requests: the end of this window.
        assert_eq!(at(3, 0, 10).reset_secs, 50);
        // Sub-second remainders round up.
        let d = decide(
            MINUTE,
            WindowState {
                previous: 0,
                current: 0,
                elapsed_ms: 59_500,
            },
        );
        assert_eq!(d.reset_secs, 61);
    }

    /// Counts 0–4 in each window, every `step` ms into the current one.
    fn states(step: usize) -> impl Iterator<Item = WindowState> {
        (0..5_u64).flat_map(move |previous| {
            (0..5_u64).flat_map(move |current| {
                (0..60_000_u64).step_by(step).map(move |elapsed_ms| WindowState {
                    previous,
                    current,
                    elapsed_ms,
                })
            })
        })
    }

    #[test]
    fn retry_after_is_never_zero_and_never_after_the_reset() {
        for state in states(977) {
            let d = decide(MINUTE, state);
            if !d.allowed {
                assert!(d.retry_after_secs >= 1);
                assert!(d.retry_after_secs <= d.reset_secs, "{state:?}: {d:?}");
            }
        }
    }

    #[test]
    fn waiting_retry_after_admits_the_next_request() {
        // For every refused state, stepping the clock by Retry-After (rolling windows over as
        // the limiters do) gives an admitted request.
        for refused in states(1_213) {
            let d = decide(MINUTE, refused);
            if d.allowed {
                continue;
            }
            let WindowState {
                previous,
                current,
                elapsed_ms,
            } = refused;
            let later = elapsed_ms + d.retry_after_secs * 1000;
            let state = if later >= 60_000 {
                WindowState {
                    previous: current,
                    current: 0,
                    elapsed_ms: later - 60_000,
                }
            } else {
                WindowState {
                    previous,
                    current,
                    elapsed_ms: later,
                }
            };
            assert!(decide(MINUTE, state).allowed, "{refused:?}: {d:?}");
        }
    }

    #[test]
    fn room_is_what_decide_would_admit_one_by_one() {
        // Counting admitted requests one at a time until refused gives `room` exactly.
        for state in states(1_931) {
            let mut admitted = 0;
            let mut counted = state;
            while decide(MINUTE, counted).allowed {
                admitted += 1;
                counted.current += 1;
            }
            assert_eq!(room(MINUTE, state), admitted, "{state:?}");
        }
    }

    #[test]
    fn the_precise_waits_round_up_to_the_decision() {
        for state in states(853) {
            let precise = decide_precisely(MINUTE, state);
            let d = precise.decision;
            assert_eq!(d, decide(MINUTE, state));
            assert_eq!(
                d.retry_after_secs,
                precise.retry_after_ms.div_ceil(1000).max(u64::from(!d.allowed))
            );
            assert_eq!(precise.reset_ms.div_ceil(1000), d.reset_secs, "{state:?}");
            assert_eq!(d.allowed, precise.retry_after_ms == 0);
        }
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let d = decide(
            Quota {
                requests: 0,
                window: Duration::from_secs(60),
            },
            WindowState {
                previous: 0,
                current: 0,
                elapsed_ms: 0,
            },
        );
        assert!(!d.allowed);
        assert!(d.retry_after_secs >= 1);
    }
}
