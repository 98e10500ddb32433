//! The shared rate limiter: the sliding-window counter of [`super::window`], kept in Redis so
//! every instance counts against the same numbers (adr/0008).
//!
//! One Lua script per request reads both windows' counters, decides and increments,
//! atomically: two instances cannot both admit the last request. It runs on one multiplexed
//! connection taken from the pool, so a hit is one round trip (a pooled connection would add
//! the pool's `PING` on every checkout) and concurrent hits are pipelined. It reads the time from
//! Redis (`TIME`), so window boundaries are the same for every instance whatever their clocks
//! say. Keys are `{prefix}:rl:{<sha-256 of the key>}:<window index>`: no e-mail or address
//! is stored in clear, and the braces keep both windows of a key in one cluster slot. They
//! expire after two windows.
//!
//! When Redis fails or is slower than the timeout, the request is counted by an in-process
//! limiter instead and Redis is left alone for a back-off, so a dead Redis costs one timeout
//! per back-off rather than one per request; after it, one request probes Redis again. One
//! warning per outage, one info line on recovery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use keel_domain::rate_limit::{Quota, RateDecision, RateLimiter};
use sha2::{Digest, Sha256};

use super::in_process::InProcessRateLimiter;
use super::window::{WindowState, decide, window_ms};
use crate::redis::{RedisError, SharedConnection};

/// How long one hit may wait for Redis before it is counted in-process.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failure.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// KEYS[1]: the key's base name. ARGV: limit, window (ms), and optionally the instant (ms
/// since the epoch; tests) instead of Redis's clock. Returns {admitted (0|1), previous count,
/// current count before this request, ms into the current window}: the inputs of
/// `window::decide`, which computes the rest of the decision on the caller's side. The
/// admission test is `decide`'s, in the same integer terms.
const SCRIPT: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local index = math.floor(now / window)
local elapsed = now - index * window
local current_key = KEYS[1] .. ':' .. string.format('%d', index)
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. string.format('%d', index - 1))) or 0
local current = tonumber(redis.call('GET', current_key)) or 0
local admitted = 0
if previous * (window - elapsed) + (current + 1) * window <= limit * window then
  admitted = 1
  if redis.call('INCR', current_key) == 1 then
    redis.call('PEXPIRE', current_key, 2 * window)
  end
end
return {admitted, previous, current, elapsed}
";

pub struct RedisRateLimiter {
    /// One socket for every hit, taken from the pool on first use and after a failure.
    connection: SharedConnection,
    prefix: String,
    script: Script,
    timeout: Duration,
    backoff: Duration,
    fallback: InProcessRateLimiter,
    /// The origin of `retry_at_ms`.
    epoch: Instant,
    /// 0 while Redis answers; after a failure, the instant (ms since `epoch`) from which one
    /// request may try Redis again.
    retry_at_ms: AtomicU64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("degraded", &self.degraded())
            .finish_non_exhaustive()
    }
}

/// What the script answered, and the decision computed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: RateDecision,
    /// The counters the script saw before counting this request.
    pub state: WindowState,
}

impl RedisRateLimiter {
    /// A limiter on `pool` whose keys start with `prefix` (`KEEL_REDIS_PREFIX`).
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            connection: SharedConnection::new(pool),
            prefix: prefix.to_owned(),
            script: Script::new(SCRIPT),
            timeout: DEFAULT_TIMEOUT,
            backoff: DEFAULT_BACKOFF,
            fallback: InProcessRateLimiter::new(),
            epoch: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
        }
    }

    /// Changes how long a hit waits for Redis and how long Redis is left alone after a failure.
    #[must_use]
    pub fn with_timing(mut self, timeout: Duration, backoff: Duration) -> Self {
        self.timeout = timeout;
        self.backoff = backoff.max(Duration::from_millis(1));
        self
    }

    /// True while Redis is being left alone after a failure (hits are counted in-process).
    pub fn degraded(&self) -> bool {
        self.retry_at_ms.load(Ordering::Acquire) != 0
    }

    /// The Redis name of `key` without the window index: `{prefix}:rl:{<32 hex digits>}`,
    /// the first 128 bits of its SHA-256.
    pub fn redis_key(&self, key: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(key.as_bytes());
        let mut out = String::with_capacity(self.prefix.len() + 40);
        out.push_str(&self.prefix);
        out.push_str(":rl:{");
        for byte in &digest[..16] {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out.push('}');
        out
    }

    /// Runs the script once, without timeout or fallback: at Redis's clock, or at `now_ms`
    /// (milliseconds since the Unix epoch) when given — tests compare the script with
    /// [`decide`] that way.
    pub async fn evaluate(
        &self,
        key: &str,
        quota: Quota,
        now_ms: Option<u64>,
    ) -> Result<Evaluation, RedisError> {
        let mut conn = self.connection.get().await?;
        let mut invocation = self.script.key(self.redis_key(key));
        invocation.arg(quota.requests).arg(window_ms(quota));
        if let Some(now) = now_ms {
            invocation.arg(now);
        }
        let reply: Result<(u8, u64, u64, u64), _> = invocation.invoke_async(&mut conn).await;
        let (admitted, previous, current, elapsed_ms) = match reply {
            Ok(reply) => reply,
            Err(e) => {
                // Whatever went wrong, the next attempt starts on a fresh connection.
                self.connection.reset();
                return Err(e.into());
            }
        };
        let state = WindowState {
            previous,
            current,
            elapsed_ms,
        };
        let mut decision = decide(quota, state);
        // The script counted (or not) already: its admission stands. Both compute it with the
        // same integer arithmetic, so they agree (the integration tests check it).
        decision.allowed = admitted == 1;
        Ok(Evaluation { decision, state })
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means "healthy" in `retry_at_ms`.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn backoff_ms(&self) -> u64 {
        u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// Whether this request may use Redis: always while it is healthy; after a failure, only
    /// the first request once the back-off has passed (it moves the back-off on, so concurrent
    /// requests keep to the fallback while it probes).
    fn may_use_redis(&self) -> bool {
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        if retry_at == 0 {
            return true;
        }
        let now = self.now_ms();
        now >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(
                    retry_at,
                    now.saturating_add(self.backoff_ms()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn succeeded(&self) {
        if self.retry_at_ms.load(Ordering::Acquire) != 0 && self.retry_at_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis answers again: rate limits are shared across instances again");
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        let until = self.now_ms().saturating_add(self.backoff_ms());
        if self.retry_at_ms.swap(until, Ordering::AcqRel) == 0 {
            tracing::warn!(
                error = %error,
                backoff_ms = self.backoff_ms(),
                "redis rate limiter unavailable: counting in-process on this instance until it answers"
            );
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, quota: Quota) -> RateDecision {
        if self.may_use_redis() {
            match tokio::time::timeout(self.timeout, self.evaluate(key, quota, None)).await {
                Ok(Ok(evaluation)) => {
                    self.succeeded();
                    return evaluation.decision;
                }
                Ok(Err(e)) => self.failed(&e),
                Err(_) => {
                    // The connection may be half-open: the next probe starts on a fresh one.
                    self.connection.reset();
                    self.failed(&format_args!("no answer within {} ms", self.timeout.as_millis()));
                }
            }
        }
        self.fallback.hit(key, quota).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::create_pool;

    const Q: Quota = Quota {
        requests: 2,
        window: Duration::from_secs(60),
    };

    /// A pool on a port nothing listens on (the discard port, refused at once).
    fn dead_pool() -> Pool {
        create_pool("redis://127.0.0.1:9/", 2, Duration::from_millis(200)).unwrap()
    }

    #[test]
    fn keys_are_hashed_under_the_prefix_without_the_raw_key() {
        let limiter = RedisRateLimiter::new(dead_pool(), "keel-a");
        let key = limiter.redis_key("login:203.0.113.7:ann@example.com");
        assert!(key.starts_with("keel-a:rl:{"), "{key}");
        assert!(key.ends_with('}'));
        assert_eq!(key.len(), "keel-a:rl:{}".len() + 32);
        assert!(!key.contains("ann") && !key.contains("203.0.113.7"));
        assert_eq!(key, limiter.redis_key("login:203.0.113.7:ann@example.com"));
        assert_ne!(key, limiter.redis_key("login:203.0.113.7:bob@example.com"));
    }

    #[tokio::test]
    async fn a_dead_redis_falls_back_to_counting_in_process_and_backs_off() {
        let limiter = RedisRateLimiter::new(dead_pool(), "t")
            .with_timing(Duration::from_millis(250), Duration::from_secs(60));
        assert!(!limiter.degraded());
        let first = limiter.hit("k", Q).await;
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert!(limiter.degraded());
        // Within the back-off Redis is not tried: counting goes on in-process.
        assert!(!limiter.may_use_redis());
        assert!(limiter.hit("k", Q).await.allowed);
        let refused = limiter.hit("k", Q).await;
        assert!(!refused.allowed);
        assert!(refused.retry_after_secs >= 1);
    }

    #[tokio::test]
    async fn a_redis_that_never_answers_costs_one_timeout_then_counting_goes_on_in_process() {
        // Accepts connections and never answers, like a host behind a dropped route.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let pool = create_pool(&format!("redis://127.0.0.1:{port}/"), 2, Duration::from_secs(5)).unwrap();
        let limiter =
            RedisRateLimiter::new(pool, "t").with_timing(Duration::from_millis(50), Duration::from_secs(60));
        assert!(limiter.hit("k", Q).await.allowed);
        assert!(limiter.degraded(), "the timeout counts as a failure");
        assert_eq!(
            limiter.hit("k", Q).await.remaining,
            0,
            "counted in-process, Redis not tried"
        );
        held.abort();
    }

    #[tokio::test]
    async fn after_the_back_off_exactly_one_request_probes_redis() {
        let limiter = RedisRateLimiter::new(dead_pool(), "t")
            .with_timing(Duration::from_millis(250), Duration::from_millis(20));
        limiter.hit("k", Q).await;
        assert!(limiter.degraded());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            limiter.may_use_redis(),
            "the first request after the back-off probes"
        );
        assert!(
            !limiter.may_use_redis(),
            "the others keep to the fallback meanwhile"
        );
        limiter.succeeded();
        assert!(!limiter.degraded());
        assert!(limiter.may_use_redis());
    }
}
