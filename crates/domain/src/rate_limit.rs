//! Rate limiting as a port: in-process without Redis, shared through Redis with it.

use std::time::Duration;

use async_trait::async_trait;

/// `requests` per sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: u32,
    pub window: Duration,
}

/// The outcome of counting one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a request would be allowed again (0 when allowed).
    pub retry_after_secs: u64,
    /// Seconds until the window has fully slid past the current requests.
    pub reset_secs: u64,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request under `key` and says whether it is within `quota`. Never fails:
    /// an implementation that loses its backing store falls back to counting in-process.
    async fn hit(&self, key: &str, quota: Quota) -> RateDecision;
}
