//! When to retry a failed delivery: exponential backoff with "equal jitter".
//!
//! Retry number `n` (1 = the first retry) waits `d = min(base · 2^(n−1), 6 h)` scaled into
//! `[d/2, d]` by a jitter `j ∈ [0, 1)`: `d/2 + j · d/2`. Half of the delay is guaranteed (a
//! failing receiver is not hammered), the other half is random (receivers that failed
//! together — an outage — do not get their retries back in lockstep). [`retry_delay`] is
//! pure (the jitter is an argument); [`jittered_retry_delay`] draws it.
//!
//! The arithmetic saturates: any attempt number and any base give a delay within the cap,
//! never a panic.

use std::time::Duration;

use rand::Rng;

/// The longest a single retry waits, whatever the attempt number and base.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 60 * 60);

/// `min(base · 2^(attempt−1), cap)`, in nanoseconds, saturating. Attempt 0 counts as 1.
fn exponential_nanos(attempt: u32, base: Duration, cap: Duration) -> u128 {
    let cap = cap.as_nanos();
    let base = base.as_nanos();
    let exponent = attempt.saturating_sub(1);
    let grown = 1u128
        .checked_shl(exponent)
        .and_then(|factor| base.checked_mul(factor))
        .unwrap_or(if base == 0 { 0 } else { u128::MAX });
    grown.min(cap)
}

/// The delay before retry number `attempt` (1 = the first retry; 0 is treated as 1):
/// `d = min(base · 2^(attempt−1), 6 h)`, then `d/2 + jitter · d/2`.
///
/// `jitter` should lie in `[0, 1)`; values outside are clamped into `[0, 1]` and NaN counts
/// as 0, so the result is always within `[d/2, d]`.
pub fn retry_delay(attempt: u32, base: Duration, jitter: f64) -> Duration {
    let full = exponential_nanos(attempt, base, MAX_RETRY_DELAY);
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let half = full / 2;
    let span = full - half;
    // `span` ≤ 3 h in nanoseconds (about 1.1e13), exactly representable in an f64; the
    // product is truncated towards zero and cannot exceed `span`.
    let extra = ((span as f64) * jitter) as u128;
    let nanos = half.saturating_add(extra.min(span));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// [`retry_delay`] with a jitter drawn uniformly from `[0, 1)` by the thread-local generator.
pub fn jittered_retry_delay(attempt: u32, base: Duration) -> Duration {
    retry_delay(attempt, base, rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(30);

    #[test]
    fn without_jitter_the_delay_is_half_of_a_doubling_schedule() {
        let schedule: Vec<u64> = (1..=6).map(|n| retry_delay(n, BASE, 0.0).as_secs()).collect();
        assert_eq!(schedule, vec![15, 30, 60, 120, 240, 480]);
    }

    #[test]
    fn full_jitter_reaches_the_whole_exponential_delay() {
        let schedule: Vec<u64> = (1..=6).map(|n| retry_delay(n, BASE, 1.0).as_secs()).collect();
        assert_eq!(schedule, vec![30, 60, 120, 240, 480, 960]);
        assert_eq!(retry_delay(3, BASE, 0.5), Duration::from_secs(90));
    }

    #[test]
    fn attempt_zero_counts_as_the_first_retry() {
        assert_eq!(retry_delay(0, BASE, 0.0), retry_delay(1, BASE, 0.0));
    }

    #[test]
    fn jitter_stays_within_half_and_whole_of_the_delay() {
        for attempt in 1..=20 {
            let full = exponential_nanos(attempt, BASE, MAX_RETRY_DELAY);
            for jitter in [0.0, 1e-9, 0.25, 0.5, 0.999_999, 1.0 - f64::EPSILON] {
                let delay = retry_delay(attempt, BASE, jitter).as_nanos();
                assert!(delay >= full / 2, "attempt {attempt} jitter {jitter}");
                assert!(delay <= full, "attempt {attempt} jitter {jitter}");
            }
        }
    }

    #[test]
    fn drawn_jitter_stays_in_bounds_and_varies() {
        let delays: Vec<Duration> = (0..200).map(|_| jittered_retry_delay(4, BASE)).collect();
        for delay in &delays {
            assert!(*delay >= Duration::from_secs(120) && *delay <= Duration::from_secs(240));
        }
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "200 draws were equal");
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let full = Duration::from_secs(120);
        assert_eq!(retry_delay(3, BASE, -3.0), full / 2);
        assert_eq!(retry_delay(3, BASE, f64::NAN), full / 2);
        assert_eq!(retry_delay(3, BASE, 7.0), full);
        assert_eq!(retry_delay(3, BASE, f64::INFINITY), full);
    }

    #[test]
    fn the_delay_is_capped_at_six_hours() {
        // 30 s · 2^9 = 4 h 16 min is still below the cap; 2^10 is above it.
        assert_eq!(retry_delay(10, BASE, 1.0), Duration::from_secs(30 * 512));
        assert_eq!(retry_delay(11, BASE, 1.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(11, BASE, 0.0), MAX_RETRY_DELAY / 2);
        assert_eq!(retry_delay(1, Duration::from_secs(86_400), 1.0), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_zero_base_gives_zero_at_every_attempt() {
        for attempt in [0, 1, 2, 31, 32, 64, 127, 128, 129, u32::MAX] {
            assert_eq!(retry_delay(attempt, Duration::ZERO, 0.7), Duration::ZERO);
        }
    }

    #[test]
    fn huge_attempts_and_bases_saturate_at_the_cap_without_panicking() {
        for attempt in [64, 127, 128, 129, 1_000, u32::MAX - 1, u32::MAX] {
            assert_eq!(retry_delay(attempt, BASE, 1.0), MAX_RETRY_DELAY);
            assert_eq!(
                retry_delay(attempt, Duration::from_nanos(1), 1.0),
                MAX_RETRY_DELAY
            );
            assert_eq!(retry_delay(attempt, Duration::MAX, 0.0), MAX_RETRY_DELAY / 2);
        }
        assert_eq!(retry_delay(1, Duration::MAX, 1.0), MAX_RETRY_DELAY);
        let drawn = jittered_retry_delay(u32::MAX, Duration::MAX);
        assert!(drawn >= MAX_RETRY_DELAY / 2 && drawn <= MAX_RETRY_DELAY);
    }

    #[test]
    fn tiny_bases_grow_past_32_doublings_exactly() {
        // 1 ns · 2^40 ≈ 18 min: a u32 multiplier would have saturated at 4.3 s.
        assert_eq!(
            retry_delay(41, Duration::from_nanos(1), 1.0),
            Duration::from_nanos(1 << 40)
        );
    }
}
