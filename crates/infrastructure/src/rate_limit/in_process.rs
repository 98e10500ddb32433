//! The in-process rate limiter: a sliding-window counter per key (see [`super::window`]),
//! used without Redis and as the Redis limiter's fallback. Each key's fixed windows start at
//! its first request. Keys idle for two of their windows are swept once the map holds
//! [`SWEEP_AT`] keys, and then only when it has doubled since the last sweep, so a flood of
//! distinct keys costs no scan per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keel_domain::rate_limit::{Quota, RateDecision, RateLimiter};

use super::window::{WindowState, decide};

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    /// The key's window length (its quota's): what "idle for two windows" means for it.
    len: Duration,
    current: u32,
    previous: u32,
}

#[derive(Debug, Default)]
struct Windows {
    by_key: HashMap<String, Window>,
    /// The size at which the next sweep runs (0: [`SWEEP_AT`]).
    sweep_at: usize,
}

#[derive(Debug, Default)]
pub struct InProcessRateLimiter {
    windows: Mutex<Windows>,
}

/// Sweep idle keys once the map holds this many.
const SWEEP_AT: usize = 10_000;

impl InProcessRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys counted (tests).
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // A poisoned lock only means another thread panicked mid-update of a counter.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn hit_at(&self, key: &str, quota: Quota, now: Instant) -> RateDecision {
        let len = quota.window.max(Duration::from_millis(1));
        let mut guard = self.lock();
        let Windows {
            by_key: windows,
            sweep_at,
        } = &mut *guard;
        if windows.len() >= (*sweep_at).max(SWEEP_AT) {
            windows.retain(|_, w| now.saturating_duration_since(w.started) < w.len * 2);
            *sweep_at = windows.len().saturating_mul(2);
        }
        let fresh = Window {
            started: now,
            len,
            current: 0,
            previous: 0,
        };
        // Looked up by `&str`: no allocation for a key already counted.
        if !windows.contains_key(key) {
            windows.insert(key.to_owned(), fresh);
        }
        let Some(w) = windows.get_mut(key) else {
            // Just inserted under the lock; unreachable, and harmless: nothing counted.
            return decide(
                quota,
                WindowState {
                    previous: 0,
                    current: 0,
                    elapsed_ms: 0,
                },
            );
        };
        let elapsed = now.saturating_duration_since(w.started);
        if w.len != len {
            // Another quota on the same key (a configuration change): start over.
            *w = fresh;
        } else if elapsed >= len * 2 {
            *w = fresh;
        } else if elapsed >= len {
            w.previous = w.current;
            w.current = 0;
            w.started += len;
        }
        let elapsed_ms =
            u64::try_from(now.saturating_duration_since(w.started).as_millis()).unwrap_or(u64::MAX);
        let decision = decide(
            quota,
            WindowState {
                previous: u64::from(w.previous),
                current: u64::from(w.current),
                elapsed_ms,
            },
        );
        if decision.allowed {
            w.current = w.current.saturating_add(1);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn hit(&self, key: &str, quota: Quota) -> RateDecision {
        self.hit_at(key, quota, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        requests: 3,
        window: Duration::from_secs(60),
    };

    #[test]
    fn allows_up_to_the_limit_then_refuses_with_a_retry_after() {
        let l = InProcessRateLimiter::new();
        let t0 = Instant::now();
        let remaining: Vec<u32> = (0..3)
            .map(|i| l.hit_at("k", Q, t0 + Duration::from_secs(i)).remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = l.hit_at("k", Q, t0 + Duration::from_secs(10));
        assert!(!refused.allowed);
        // 50 s to the end of the window, then a third of the next (see `window`).
        assert_eq!(refused.retry_after_secs, 70);
    }

    #[test]
    fn keys_are_counted_apart() {
        let l = InProcessRateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.hit_at("a", Q, t0).allowed);
        }
        assert!(l.hit_at("b", Q, t0).allowed);
        assert!(!l.hit_at("a", Q, t0).allowed);
    }

    #[test]
    fn a_flood_of_keys_is_swept_by_each_key_s_own_window_without_a_scan_per_request() {
        let l = InProcessRateLimiter::new();
        let t0 = Instant::now();
        let login = Quota {
            requests: 1,
            window: Duration::from_secs(900),
        };
        assert!(l.hit_at("login:ann", login, t0).allowed);
        // 60 000 one-minute keys over 6 minutes: the map is swept as it grows, by each key's
        // own window, and not on every request.
        let mut largest = 0;
        for i in 0..60_000_u64 {
            l.hit_at(&format!("ip:{i}"), Q, t0 + Duration::from_millis(i * 6));
            largest = largest.max(l.len());
        }
        assert!(largest <= 40_001, "{largest}");
        assert!(l.len() < 60_000, "idle one-minute keys were swept");
        // The 15-minute key was not forgotten with the one-minute ones.
        assert!(
            !l.hit_at("login:ann", login, t0 + Duration::from_secs(360))
                .allowed
        );
    }

    #[test]
    fn the_previous_window_still_weighs_in_then_fades() {
        let l = InProcessRateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.hit_at("k", Q, t0);
        }
        // 10 s into the next window, 5/6 of the previous 3 still count: 2.5 + 1 > 3.
        assert!(!l.hit_at("k", Q, t0 + Duration::from_secs(70)).allowed);
        // 40 s in, only 1/3 counts: 1 + 1 ≤ 3.
        assert!(l.hit_at("k", Q, t0 + Duration::from_secs(100)).allowed);
        // Two windows later everything is forgotten.
        let fresh = l.hit_at("k", Q, t0 + Duration::from_secs(300));
        assert_eq!(fresh.remaining, 2);
    }
}
