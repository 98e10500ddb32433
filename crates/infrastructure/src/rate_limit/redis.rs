//! The shared rate limiter: the sliding-window counter of [`super::window`], kept in Redis so
//! every instance counts against the same numbers (adr/0008), spent through leases
//! (adr/0014, [`super::lease`]).
//!
//! A request this instance holds leased budget for is decided locally. Otherwise one Lua
//! script gives back what an ended lease left unspent, reads both windows' counters, and
//! grants a lease — the asking request plus a share of the room left, sized by the key's rate —
//! or refuses, atomically: instances cannot together take more than the limit. A refusal is
//! repeated locally for a moment. The script runs on one multiplexed connection taken from the
//! pool (a pooled connection would add the pool's `PING` on every checkout) and concurrent
//! calls are pipelined. It reads the time from Redis (`TIME`), so window boundaries are the same
//! for every instance whatever their clocks say. Keys are
//! `{prefix}:rl:{<sha-256 of the key>}:<window index>`: no e-mail or address is stored in
//! clear, and the braces keep both windows of a key in one cluster slot. They expire after two
//! windows. A sweeper task gives back the budget of leases whose time is up.
//!
//! When Redis fails or is slower than the timeout, the request is counted by an in-process
//! limiter instead, this instance's leases are forgotten (they stay counted in Redis until their
//! windows slide out), and Redis is left alone for a back-off, so a dead Redis costs one timeout
//! per back-off rather than one per request; after it, one request probes Redis again. One
//! warning per outage, one info line on recovery.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use keel_domain::rate_limit::{Quota, RateDecision, RateLimiter};
use sha2::{Digest, Sha256};

use super::in_process::InProcessRateLimiter;
use super::lease::{Ask, Book, GiveBack, Grant, LeaseSettings, Step};
use super::window::{WindowState, decide, window_ms};
use crate::redis::{RedisError, SharedConnection};

/// How long one hit may wait for Redis before it is counted in-process.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failure.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// KEYS[1]: the key's base name. ARGV: limit, window (ms), want, divisor, give-back window
/// index, give-back units, and optionally the instant (ms since the epoch; tests) instead of
/// Redis's clock.
///
/// 1. The give-back lowers its window's counter (never below zero, only if that window is the
///    current or the previous one and still exists).
/// 2. The room is `window::room`: the largest g with `previous × (w - e) + (current + g) × w ≤
///    limit × w`. The grant is `lease::lease_size(room, want, divisor)`: 0 without room (a
///    refusal) or when nothing is asked (a give-back alone), else at least 1, at most `want`,
///    at most `room / divisor` unless that is below 1, at most the room.
/// 3. The grant is added to the current window's counter (2-window expiry on creation).
///
/// Returns {granted, previous, current before the grant, ms into the window, window index}.
/// Numbers are doubles, exact below 2^53 (see `window`).
const SCRIPT: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local divisor = tonumber(ARGV[4])
local back_index = tonumber(ARGV[5])
local back_units = tonumber(ARGV[6])
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local index = math.floor(now / window)
local elapsed = now - index * window
local function name(i)
  return KEYS[1] .. ':' .. string.format('%d', i)
end
if back_units > 0 and (back_index == index or back_index == index - 1) then
  local held = tonumber(redis.call('GET', name(back_index)))
  if held and held > 0 then
    redis.call('DECRBY', name(back_index), math.min(held, back_units))
  end
end
local previous = tonumber(redis.call('GET', name(index - 1))) or 0
local current = tonumber(redis.call('GET', name(index))) or 0
local granted = 0
local room = math.floor((limit * window - previous * (window - elapsed)) / window) - current
if want > 0 and room > 0 then
  granted = math.min(want, math.max(1, math.floor(room / divisor)), room)
  if redis.call('INCRBY', name(index), granted) == granted then
    redis.call('PEXPIRE', name(index), 2 * window)
  end
end
return {granted, previous, current, elapsed, index}
";

pub struct RedisRateLimiter {
    shared: Arc<Shared>,
    timeout: Duration,
    backoff: Duration,
    leases: LeaseSettings,
    fallback: InProcessRateLimiter,
    /// Requests counted by the fallback.
    fallback_hits: AtomicU64,
    /// The origin of `retry_at_ms`.
    epoch: Instant,
    /// Whether the sweeper task runs (started by the first request to Redis).
    sweeping: AtomicBool,
}

/// What the request path and the sweeper share.
struct Shared {
    /// One socket for every call, taken from the pool on first use and after a failure.
    connection: SharedConnection,
    prefix: String,
    script: Script,
    book: Mutex<Book>,
    /// Script calls made (requests' and the sweeper's): what the leases save.
    calls: AtomicU64,
    /// 0 while Redis answers; after a failure, the instant (ms since `epoch`) from which one
    /// request may try Redis again.
    retry_at_ms: AtomicU64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.shared.prefix)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("leases", &self.leases)
            .field("degraded", &self.degraded())
            .finish_non_exhaustive()
    }
}

/// What the script answered for a request alone, and the decision computed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: RateDecision,
    /// The counters the script saw before counting this request.
    pub state: WindowState,
}

impl RedisRateLimiter {
    /// A limiter on `pool` whose keys start with `prefix` (`KEEL_REDIS_PREFIX`).
    pub fn new(pool: Pool, prefix: &str) -> Self {
        let leases = LeaseSettings::default();
        Self {
            shared: Arc::new(Shared {
                connection: SharedConnection::new(pool),
                prefix: prefix.to_owned(),
                script: Script::new(SCRIPT),
                book: Mutex::new(Book::new(leases)),
                calls: AtomicU64::new(0),
                retry_at_ms: AtomicU64::new(0),
            }),
            timeout: DEFAULT_TIMEOUT,
            backoff: DEFAULT_BACKOFF,
            leases,
            fallback: InProcessRateLimiter::new(),
            fallback_hits: AtomicU64::new(0),
            epoch: Instant::now(),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Changes how long a hit waits for Redis and how long Redis is left alone after a failure.
    #[must_use]
    pub fn with_timing(mut self, timeout: Duration, backoff: Duration) -> Self {
        self.timeout = timeout;
        self.backoff = backoff.max(Duration::from_millis(1));
        self
    }

    /// Changes how leases are sized and how long they live (before the first hit).
    #[must_use]
    pub fn with_leases(mut self, leases: LeaseSettings) -> Self {
        self.leases = leases;
        *self.shared.book() = Book::new(leases);
        self
    }

    /// True while Redis is being left alone after a failure (hits are counted in-process).
    pub fn degraded(&self) -> bool {
        self.shared.retry_at_ms.load(Ordering::Acquire) != 0
    }

    /// Script calls made so far, by requests and by the sweeper.
    pub fn round_trips(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// Requests counted in-process so far, because Redis failed or was being left alone.
    pub fn fallback_hits(&self) -> u64 {
        self.fallback_hits.load(Ordering::Relaxed)
    }

    /// The Redis name of `key` without the window index: `{prefix}:rl:{<32 hex digits>}`,
    /// the first 128 bits of its SHA-256.
    pub fn redis_key(&self, key: &str) -> String {
        self.shared.redis_key(key)
    }

    /// Runs the script once for one request, without lease, timeout or fallback: at Redis's
    /// clock, or at `now_ms` (milliseconds since the Unix epoch) when given — tests compare the
    /// script with [`decide`] that way.
    pub async fn evaluate(
        &self,
        key: &str,
        quota: Quota,
        now_ms: Option<u64>,
    ) -> Result<Evaluation, RedisError> {
        let grant = self.lease(key, quota, 1, None, now_ms).await?;
        let mut decision = decide(quota, grant.state);
        decision.allowed = grant.granted == 1;
        Ok(Evaluation {
            decision,
            state: grant.state,
        })
    }

    /// Runs the script once: gives `give_back` back, then asks for `want` requests (0: none).
    /// At Redis's clock or at `now_ms`, without timeout or fallback (tests).
    pub async fn lease(
        &self,
        key: &str,
        quota: Quota,
        want: u64,
        give_back: Option<GiveBack>,
        now_ms: Option<u64>,
    ) -> Result<Grant, RedisError> {
        self.shared
            .lease(key, quota, want, give_back, self.leases.divisor, now_ms)
            .await
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
        let retry_at_ms = &self.shared.retry_at_ms;
        let retry_at = retry_at_ms.load(Ordering::Acquire);
        if retry_at == 0 {
            return true;
        }
        let now = self.now_ms();
        now >= retry_at
            && retry_at_ms
                .compare_exchange(
                    retry_at,
                    now.saturating_add(self.backoff_ms()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn succeeded(&self) {
        let retry_at_ms = &self.shared.retry_at_ms;
        if retry_at_ms.load(Ordering::Acquire) != 0 && retry_at_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis answers again: rate limits are shared across instances again");
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        // What this instance leased is unknown now; it stays counted in Redis (the safe side).
        self.shared.book().clear();
        let until = self.now_ms().saturating_add(self.backoff_ms());
        if self.shared.retry_at_ms.swap(until, Ordering::AcqRel) == 0 {
            tracing::warn!(
                error = %error,
                backoff_ms = self.backoff_ms(),
                "redis rate limiter unavailable: counting in-process on this instance until it answers"
            );
        }
    }

    /// Starts the task that gives back the budget of expired leases, once, on the runtime of
    /// the first request that asks Redis. It ends when the limiter is dropped.
    fn start_sweeper(&self) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let every = (self.leases.ttl / 2).max(Duration::from_millis(10));
        runtime.spawn(sweep(
            Arc::downgrade(&self.shared),
            every,
            self.timeout,
            self.leases.divisor,
        ));
    }
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A poisoned lock only means a panic while updating one key's entry.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn redis_key(&self, key: &str) -> String {
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

    async fn lease(
        &self,
        key: &str,
        quota: Quota,
        want: u64,
        give_back: Option<GiveBack>,
        divisor: u64,
        now_ms: Option<u64>,
    ) -> Result<Grant, RedisError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.get().await?;
        let back = give_back.unwrap_or(GiveBack { index: 0, units: 0 });
        let mut invocation = self.script.key(self.redis_key(key));
        invocation
            .arg(quota.requests)
            .arg(window_ms(quota))
            .arg(want)
            .arg(divisor.max(1))
            .arg(back.index)
            .arg(back.units);
        if let Some(now) = now_ms {
            invocation.arg(now);
        }
        let reply: Result<(u64, u64, u64, u64, u64), _> = invocation.invoke_async(&mut conn).await;
        match reply {
            Ok((granted, previous, current, elapsed_ms, index)) => Ok(Grant {
                granted,
                state: WindowState {
                    previous,
                    current,
                    elapsed_ms,
                },
                index,
            }),
            Err(e) => {
                // Whatever went wrong, the next attempt starts on a fresh connection.
                self.connection.reset();
                Err(e.into())
            }
        }
    }
}

/// A leader's ask in flight: if it ends without an answer (failure, timeout, or the request
/// dropped), the key may size a lease again.
struct InFlight<'a> {
    shared: &'a Shared,
    key: &'a str,
    leader: bool,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.leader && !self.answered {
            self.shared.book().abandon(self.key);
        }
    }
}

/// Every `every`, gives back what expired leases left unspent (one script call each, pipelined
/// on the shared connection), unless Redis is being left alone. Failures only reset the
/// connection: the budget stays counted, and requests notice a dead Redis themselves.
async fn sweep(shared: Weak<Shared>, every: Duration, timeout: Duration, divisor: u64) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.retry_at_ms.load(Ordering::Acquire) != 0 {
            continue;
        }
        let backs = shared.book().sweep(Instant::now());
        if backs.is_empty() {
            continue;
        }
        let calls = backs
            .iter()
            .map(|(key, quota, back)| shared.lease(key, *quota, 0, Some(*back), divisor, None));
        match tokio::time::timeout(timeout, futures::future::join_all(calls)).await {
            Ok(results) => {
                if let Some(e) = results.into_iter().find_map(Result::err) {
                    tracing::debug!(error = %e, "rate limiter: giving back leased budget failed");
                }
            }
            Err(_) => shared.connection.reset(),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, quota: Quota) -> RateDecision {
        if self.may_use_redis() {
            let step = self.shared.book().begin(key, quota, Instant::now());
            let (admitted, ask) = match step {
                Step::Decided(decision) => return decision,
                Step::Ask(ask) => (None, ask),
                Step::Refill(decision, ask) => (Some(decision), ask),
            };
            match (admitted, self.ask(key, quota, ask).await) {
                // Admitted from the lease already: the refill only fills the book (or failed).
                (Some(decision), _) | (None, Some(decision)) => return decision,
                (None, None) => {}
            }
        }
        self.fallback_hits.fetch_add(1, Ordering::Relaxed);
        self.fallback.hit(key, quota).await
    }
}

impl RedisRateLimiter {
    /// Runs `ask` against Redis and settles it in the book; `None` after a failure or a timeout
    /// (already handled: Redis is left alone for the back-off).
    async fn ask(&self, key: &str, quota: Quota, ask: Ask) -> Option<RateDecision> {
        self.start_sweeper();
        let mut in_flight = InFlight {
            shared: &self.shared,
            key,
            leader: ask.leader,
            answered: false,
        };
        let sent = Instant::now();
        let call = self
            .shared
            .lease(key, quota, ask.want, ask.give_back, self.leases.divisor, None);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(grant)) => {
                in_flight.answered = true;
                self.succeeded();
                Some(
                    self.shared
                        .book()
                        .settle(key, quota, &ask, grant, sent, Instant::now()),
                )
            }
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(_) => {
                // The connection may be half-open: the next probe starts on a fresh one.
                self.shared.connection.reset();
                self.failed(&format_args!("no answer within {} ms", self.timeout.as_millis()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
