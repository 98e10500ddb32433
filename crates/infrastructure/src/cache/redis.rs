//! L2 on Redis, and the pub/sub channel that carries invalidations between instances.
//!
//! # Layout
//! One hash per key name: `<prefix>:c:<epoch>:<name>` with the field `g` (the name's
//! generation, absent = 0), and per variant `v:<variant>` (the encoded value) and
//! `w:<variant>` (the generation it was written in). A read is one `HMGET`; a value counts
//! only if `w` equals `g`. A fill is a script that writes only if `g` is still the
//! generation the miss saw. An invalidation is a script that increments `g`, drops the old
//! values and publishes the names on `<prefix>:cache` — one round trip for any number of
//! keys.
//!
//! # Acknowledgements
//! `PUBLISH` returns once Redis has queued the message for every subscriber, but another
//! instance may still serve a request from its L1 before its subscriber task reads the
//! message (measured: a logout on one instance was, about once in 25 runs, not yet refused by
//! the other on the client's next request). So each invalidation names a list
//! `<prefix>:ack:<id>`; every subscriber pushes to it once it has moved its generations, and
//! the writer waits until as many acknowledgements as `PUBLISH` counted receivers are there
//! (at most [`ACK_WAIT`]; an instance slower than that is logged, not waited for) before its
//! request answers. A client that got its answer is then refused or served fresh by every
//! instance.
//!
//! # Epochs
//! An instance that could not deliver an invalidation (Redis unreachable) cannot trust L2
//! afterwards, nor can anyone else. So after every (re)connection of its subscriber, or
//! after a failed invalidation, it raises `<prefix>:c:epoch` above its own and Redis's
//! value and publishes it: every instance moves to the highest epoch seen — a fresh key
//! space — and flushes its L1. The first connection of a new process only reads the epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use futures::StreamExt;
use keel_application::cache::CacheKey;
use keel_domain::health::{CacheProbe, ComponentStatus};
use tokio::task::JoinHandle;

use super::{Generations, L2Read, SharedTier};
use crate::redis::SharedConnection;

/// A Redis command slower than this counts as a failure (the request goes on without L2).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed read or fill, L2 is skipped for this long.
const BACKOFF: Duration = Duration::from_secs(1);
/// Subscriber reconnection delays: doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often a connected subscriber retries a pending epoch change.
const TICK: Duration = Duration::from_millis(500);
/// How long an invalidation waits for every subscribed instance to acknowledge it.
const ACK_WAIT: Duration = Duration::from_millis(250);
/// How long an acknowledgement list outlives its invalidation.
const ACK_TTL_SECS: u64 = 10;

const FILL: &str = r"
local g = redis.call('HGET', KEYS[1], 'g') or '0'
if g ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], ARGV[4], g)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
";

/// The next epoch: above both Redis's and this instance's (Redis may have restarted empty
/// while instances kept their epoch), then published.
const ADVANCE_EPOCH: &str = r"
local e = redis.call('INCR', KEYS[1])
local mine = tonumber(ARGV[1])
if e <= mine then
  e = mine + 1
  redis.call('SET', KEYS[1], e)
end
redis.call('PUBLISH', ARGV[2], 'e ' .. e)
return e
";

const INVALIDATE: &str = r"
for _, key in ipairs(KEYS) do
  local g = redis.call('HINCRBY', key, 'g', 1)
  redis.call('DEL', key)
  redis.call('HSET', key, 'g', g)
  redis.call('EXPIRE', key, ARGV[1])
end
return redis.call('PUBLISH', ARGV[2], ARGV[3])
";

/// `REDIS_URL` cannot open a subscriber connection.
pub type RedisUrlError = redis::RedisError;

/// The shared tier.
pub struct RedisTier {
    /// Reads, fills and invalidations: one multiplexed socket (one round trip each).
    connection: SharedConnection,
    client: redis::Client,
    prefix: String,
    channel: String,
    ttl_secs: u64,
    generations: Arc<Generations>,
    epoch: AtomicU64,
    /// The subscriber is connected and the epoch is current: L2 may be used.
    connected: AtomicBool,
    /// An invalidation could not be delivered: move to a new epoch before using L2 again.
    distrusted: AtomicBool,
    /// Reads and fills are skipped until this instant (milliseconds since `started`).
    backoff_until_ms: AtomicU64,
    started: Instant,
    fill: Script,
    invalidate: Script,
    advance: Script,
    /// Becomes `true` once the subscriber's first connection attempt has ended.
    attempted: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .field("epoch", &self.epoch)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// A tier on `pool`; `url` opens the dedicated subscriber connection. Call
    /// [`RedisTier::spawn_subscriber`] to connect: until then it is not used.
    pub fn new(
        pool: Pool,
        url: &str,
        prefix: &str,
        ttl: Duration,
        generations: Arc<Generations>,
    ) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            connection: SharedConnection::new(pool),
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            channel: format!("{prefix}:cache"),
            ttl_secs: ttl.as_secs().max(1),
            generations,
            epoch: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            distrusted: AtomicBool::new(false),
            backoff_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
            advance: Script::new(ADVANCE_EPOCH),
            attempted: tokio::sync::watch::Sender::new(false),
        }))
    }

    fn hash_key(&self, name: &str) -> String {
        format!("{}:c:{}:{name}", self.prefix, self.epoch.load(Ordering::Acquire))
    }

    fn epoch_key(&self) -> String {
        format!("{}:c:epoch", self.prefix)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn usable(&self) -> bool {
        self.connected.load(Ordering::Acquire)
            && !self.distrusted.load(Ordering::Acquire)
            && self.now_ms() >= self.backoff_until_ms.load(Ordering::Acquire)
    }

    /// Waits (at most `timeout`) for the subscriber's first connection attempt, so a server
    /// that starts beside a healthy Redis is ready with its L2 at once.
    pub async fn first_attempt(&self, timeout: Duration) {
        let mut attempted = self.attempted.subscribe();
        let _ = tokio::time::timeout(timeout, attempted.wait_for(|done| *done)).await;
    }

    /// Whether L2 is in use (subscriber connected, epoch current).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire) && !self.distrusted.load(Ordering::Acquire)
    }

    fn back_off(&self, what: &str, error: &dyn std::fmt::Display) {
        let until = self.now_ms() + u64::try_from(BACKOFF.as_millis()).unwrap_or(1000);
        let previous = self.backoff_until_ms.swap(until, Ordering::AcqRel);
        if previous <= self.now_ms() {
            tracing::warn!(%error, "redis cache {what} failed; using L1 and the database for a while");
        }
    }

    /// Runs `command` within the timeout; any failure drops the shared connection (it may be
    /// half-open), so the next command starts on a fresh one.
    async fn run<T>(&self, command: impl Future<Output = Result<T, redis::RedisError>>) -> Result<T, String> {
        let failure = match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("timed out after {} ms", COMMAND_TIMEOUT.as_millis()),
        };
        self.connection.reset();
        Err(failure)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.connection.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no connection within the timeout".into()),
        }
    }

    /// Moves every instance to a new key space (see the module's "Epochs").
    async fn advance_epoch(&self) -> Result<u64, String> {
        let mut conn = self.connection().await?;
        let mut invocation = self.advance.key(self.epoch_key());
        invocation
            .arg(self.epoch.load(Ordering::Acquire))
            .arg(&self.channel);
        self.run(invocation.invoke_async::<u64>(&mut conn)).await
    }

    async fn current_epoch(&self) -> Result<u64, String> {
        let mut conn = self.connection().await?;
        let epoch: Option<u64> = self.run(conn.get(self.epoch_key())).await?;
        Ok(epoch.unwrap_or(0))
    }

    fn adopt_epoch(&self, epoch: u64) {
        self.epoch.fetch_max(epoch, Ordering::AcqRel);
        self.generations.flush();
    }

    /// Applies one message; an invalidation's acknowledgement list, if it names one.
    fn on_message<'m>(&self, payload: &'m str) -> Option<&'m str> {
        if let Some((ack, names)) = payload.strip_prefix('i').and_then(|rest| rest.split_once('\n')) {
            for name in names.split('\n') {
                self.generations.bump(name);
            }
            return Some(ack.trim_start()).filter(|ack| !ack.is_empty());
        } else if let Some(epoch) = payload.strip_prefix("e ").and_then(|e| e.parse().ok()) {
            self.adopt_epoch(epoch);
        } else {
            tracing::warn!("unexpected message on the cache channel; flushing L1");
            self.generations.flush();
        }
        None
    }

    /// Tells the writer of an invalidation that this instance applied it (off the
    /// subscriber's loop: one push per message, never delaying the next message).
    async fn acknowledge(&self, list: &str) {
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let list = list.to_owned();
        tokio::spawn(async move {
            let pushed = tokio::time::timeout(
                COMMAND_TIMEOUT,
                redis::pipe()
                    .rpush(&list, 1)
                    .ignore()
                    .expire(&list, ACK_TTL_SECS as i64)
                    .ignore()
                    .query_async::<()>(&mut conn),
            )
            .await;
            if !matches!(pushed, Ok(Ok(()))) {
                tracing::debug!("a cache invalidation could not be acknowledged");
            }
        });
    }

    /// Waits until `receivers` instances acknowledged on `list`, at most [`ACK_WAIT`].
    async fn await_acknowledgements(&self, list: &str, receivers: i64) {
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        loop {
            let acknowledged = match self.connection().await {
                Ok(mut conn) => self.run(conn.llen::<_, i64>(list)).await.unwrap_or(0),
                Err(_) => 0,
            };
            if acknowledged >= receivers {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    receivers,
                    acknowledged,
                    "an instance did not acknowledge a cache invalidation in time; it applies it when it reads it"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn disconnected(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            tracing::warn!("redis cache subscription lost; L1 entries now live at most 1 s until it is back");
        }
        // Invalidations may be missed from now on: nothing cached before is trusted, and
        // what is cached meanwhile lives briefly.
        self.generations.set_degraded(true);
        self.generations.flush();
    }

    /// Subscribes, then keeps the subscription (reconnecting with back-off) until the
    /// returned task is aborted.
    pub fn spawn_subscriber(self: &Arc<Self>) -> JoinHandle<()> {
        let tier = Arc::clone(self);
        tokio::spawn(async move {
            let mut first = true;
            let mut delay = RECONNECT_FIRST;
            loop {
                match tier.subscribe_once(first).await {
                    Ok(()) => delay = RECONNECT_FIRST,
                    Err(e) => tracing::debug!(error = %e, "redis cache subscriber not connected"),
                }
                first = false;
                tier.disconnected();
                tier.attempted.send_replace(true);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        })
    }

    /// One connection's life: subscribe, sync the epoch, deliver messages until it drops.
    async fn subscribe_once(&self, first: bool) -> Result<(), String> {
        let mut pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        pubsub.subscribe(&self.channel).await.map_err(|e| e.to_string())?;
        // Subscribed first, so no invalidation published after this point is missed.
        let epoch = if first && !self.distrusted.load(Ordering::Acquire) {
            self.current_epoch().await?
        } else {
            self.advance_epoch().await?
        };
        self.adopt_epoch(epoch);
        self.distrusted.store(false, Ordering::Release);
        self.generations.set_degraded(false);
        self.connected.store(true, Ordering::Release);
        self.attempted.send_replace(true);
        if !first {
            tracing::info!(epoch, "redis cache subscription restored");
        }
        let mut messages = pubsub.into_on_message();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return Ok(()) };
                    match message.get_payload::<String>() {
                        Ok(payload) => {
                            if let Some(list) = self.on_message(&payload) {
                                self.acknowledge(list).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable message on the cache channel; flushing L1");
                            self.generations.flush();
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.distrusted.load(Ordering::Acquire) {
                        match self.advance_epoch().await {
                            Ok(epoch) => {
                                self.adopt_epoch(epoch);
                                self.distrusted.store(false, Ordering::Release);
                                tracing::info!(epoch, "redis cache trusted again after a failed invalidation");
                            }
                            Err(e) => tracing::debug!(error = %e, "cannot advance the cache epoch yet"),
                        }
                    }
                }
            }
        }
    }
}

fn value_field(key: &CacheKey) -> String {
    format!("v:{}", key.variant().unwrap_or_default())
}

fn written_field(key: &CacheKey) -> String {
    format!("w:{}", key.variant().unwrap_or_default())
}

#[async_trait]
impl SharedTier for RedisTier {
    async fn read(&self, key: &CacheKey) -> Option<L2Read> {
        if !self.usable() {
            return None;
        }
        let result = async {
            let mut conn = self.connection().await?;
            let cmd = redis::cmd("HMGET")
                .arg(self.hash_key(key.name()))
                .arg("g")
                .arg(value_field(key))
                .arg(written_field(key))
                .to_owned();
            self.run(cmd.query_async::<(Option<u64>, Option<Vec<u8>>, Option<u64>)>(&mut conn))
                .await
        }
        .await;
        match result {
            Ok((generation, Some(value), Some(written))) if written == generation.unwrap_or(0) => {
                Some(L2Read::Hit(value))
            }
            Ok((generation, _, _)) => Some(L2Read::Miss {
                generation: generation.unwrap_or(0),
            }),
            Err(e) => {
                self.back_off("read", &e);
                None
            }
        }
    }

    async fn fill(&self, key: &CacheKey, generation: u64, bytes: &[u8]) {
        if !self.usable() {
            return;
        }
        let result = async {
            let mut conn = self.connection().await?;
            let mut invocation = self.fill.key(self.hash_key(key.name()));
            invocation
                .arg(generation)
                .arg(value_field(key))
                .arg(bytes)
                .arg(written_field(key))
                .arg(self.ttl_secs);
            self.run(invocation.invoke_async::<i64>(&mut conn)).await
        }
        .await;
        if let Err(e) = result {
            self.back_off("fill", &e);
        }
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        let mut names: Vec<&str> = keys.iter().map(CacheKey::name).collect();
        names.sort_unstable();
        names.dedup();
        if !self.is_connected() {
            // Nobody can be told now; the reconnection moves everyone to a new epoch.
            self.distrusted.store(true, Ordering::Release);
            return;
        }
        let ack = format!("{}:ack:{}", self.prefix, uuid::Uuid::new_v4().simple());
        let message = format!("i {ack}\n{}", names.join("\n"));
        let result = async {
            let mut conn = self.connection().await?;
            let mut invocation = self.invalidate.prepare_invoke();
            for name in &names {
                invocation.key(self.hash_key(name));
            }
            invocation.arg(self.ttl_secs).arg(&self.channel).arg(&message);
            self.run(invocation.invoke_async::<i64>(&mut conn)).await
        }
        .await;
        match result {
            Ok(receivers) if receivers > 0 => self.await_acknowledgements(&ack, receivers).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, keys = names.len(), "cache invalidation not delivered; L2 is distrusted until the epoch moves");
                self.distrusted.store(true, Ordering::Release);
            }
        }
    }
}

/// Readiness of the shared cache: `ok` when the subscriber is connected and Redis answers
/// a `PING`, `degraded` otherwise (requests go on from L1 and the database).
#[derive(Debug, Clone)]
pub struct RedisTierProbe(pub Arc<RedisTier>);

#[async_trait]
impl CacheProbe for RedisTierProbe {
    async fn check(&self) -> ComponentStatus {
        if !self.0.is_connected() {
            return ComponentStatus::Degraded;
        }
        let ping = async {
            let mut conn = self.0.connection().await?;
            self.0
                .run(redis::cmd("PING").query_async::<String>(&mut conn))
                .await
        };
        match ping.await {
            Ok(_) => ComponentStatus::Ok,
            Err(e) => {
                tracing::warn!(error = %e, "redis readiness check failed; running on L1 and the database");
                ComponentStatus::Degraded
            }
        }
    }
}
