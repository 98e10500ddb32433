//! The cache service: L1 in-process (moka) over an optional shared L2 (Redis). ADR 0009.
//!
//! # Never stale
//! Every key has a *generation*; a value is only ever found under the generation it was
//! loaded in, and invalidating a key moves its generation on:
//! - **L1** keys carry the local generation of their name (one of [`STRIPES`] counters, so
//!   memory is fixed) plus a flush counter. A load that raced with an invalidation stores
//!   its result under the old generation, where nobody looks again; concurrent misses are
//!   coalesced per (key, generation), so a read that starts after an invalidation never
//!   waits for a load that started before it.
//! - **L2** keeps the same idea in Redis (see [`redis`]): a fill is conditional on the
//!   generation the miss saw, so a slow loader cannot put an old value back.
//! - An invalidation moves L2 first, then the local generation; other instances move theirs
//!   when the pub/sub message arrives.
//!
//! # Degraded
//! While the shared tier is unreachable, L1 entries live at most [`DEGRADED_L1_TTL`]:
//! invalidations from other instances cannot arrive, so correctness bounds the hit rate.

pub mod redis;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use keel_application::cache::{Cache, CacheKey, CachedValue, Codec, Invalidated, Loader, Watermark};
use keel_domain::StoreError;
use moka::Expiry;
use prometheus::IntCounter;
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// Local generation counters; a name maps to one of them. 4 096 × 8 bytes.
pub const STRIPES: usize = 4096;
/// How long an L1 entry may live while invalidations from other instances cannot arrive.
pub const DEGRADED_L1_TTL: Duration = Duration::from_secs(1);
/// Invalidations a watcher may fall behind before it hears "everything".
pub const WATCHER_CAPACITY: usize = 1024;
/// Bytes counted per entry on top of its encoded size (key, bookkeeping).
const ENTRY_OVERHEAD: u64 = 160;

/// The bounds of L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Settings {
    pub ttl: Duration,
    pub max_entries: u64,
    pub max_bytes: u64,
    /// `false` only to measure L2 alone: every read skips L1.
    pub enabled: bool,
}

/// The generations of this instance's L1, shared with the tier that delivers remote
/// invalidations.
#[derive(Debug)]
pub struct Generations {
    stripes: Box<[AtomicU64]>,
    flushes: AtomicU64,
    /// Counts every invalidation and flush, moved *before* the generation it changes, so a
    /// fill that reads a name's generation and then finds this unchanged since its watermark
    /// knows that no invalidation had started by then.
    invalidations: AtomicU64,
    /// Set while remote invalidations cannot arrive (shared tier unreachable).
    degraded: AtomicBool,
    /// Tells watchers (event streams) of every invalidation and flush applied here.
    watchers: broadcast::Sender<Invalidated>,
}

impl Generations {
    fn new(degraded: bool) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            flushes: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            degraded: AtomicBool::new(degraded),
            watchers: broadcast::Sender::new(WATCHER_CAPACITY),
        }
    }

    fn stripe(&self, name: &str) -> &AtomicU64 {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        // STRIPES is a power of two; the remainder is below it, so the index is in range.
        &self.stripes[(h.finish() as usize) & (STRIPES - 1)]
    }

    /// The current generation of `name`: moves on when the name is invalidated or L1 is
    /// flushed (both counters only grow, so their sum does too).
    pub fn of(&self, name: &str) -> u64 {
        self.stripe(name)
            .load(Ordering::SeqCst)
            .wrapping_add(self.flushes.load(Ordering::SeqCst))
    }

    /// Makes every L1 entry of `name` unreachable.
    pub fn bump(&self, name: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.stripe(name).fetch_add(1, Ordering::SeqCst);
        if self.watchers.receiver_count() > 0 {
            // No watcher listening is not an error.
            let _ = self.watchers.send(Invalidated::Name(name.into()));
        }
    }

    /// Makes every L1 entry unreachable.
    pub fn flush(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.flushes.fetch_add(1, Ordering::SeqCst);
        let _ = self.watchers.send(Invalidated::Everything);
    }

    /// Every invalidation and flush applied from now on; a watcher that falls more than
    /// [`WATCHER_CAPACITY`] behind hears [`Invalidated::Everything`].
    pub fn watch(&self) -> BoxStream<'static, Invalidated> {
        futures::stream::unfold(self.watchers.subscribe(), |mut receiver| async move {
            match receiver.recv().await {
                Ok(invalidated) => Some((invalidated, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Invalidated::Everything, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }

    /// How many invalidations and flushes have started on this instance.
    pub fn watermark(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Release);
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }
}

/// What an L2 read found.
#[derive(Debug, PartialEq, Eq)]
pub enum L2Read {
    Hit(Vec<u8>),
    /// Nothing valid; a fill must name this generation to be kept.
    Miss {
        generation: u64,
    },
}

/// The shared tier as the cache service uses it. Implementations never fail a request:
/// errors make [`SharedTier::read`] answer `None` and the tier unusable for a while.
#[async_trait]
pub trait SharedTier: Send + Sync + std::fmt::Debug {
    /// `None` when the tier cannot be used now (unreachable, or not yet trusted).
    async fn read(&self, key: &CacheKey) -> Option<L2Read>;
    /// Stores `bytes` unless `key` was invalidated since the read that saw `generation`.
    async fn fill(&self, key: &CacheKey, generation: u64, bytes: &[u8]);
    /// Moves the generations of `keys` on in L2 and tells the other instances. Returns once
    /// L2 can no longer serve the old values (or the tier has recorded that it could not
    /// tell, and will distrust its contents before using them again).
    async fn invalidate(&self, keys: &[CacheKey]);
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct L1Key {
    key: CacheKey,
    generation: u64,
}

#[derive(Clone)]
struct L1Entry {
    value: CachedValue,
    weight: u32,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<L1Key, L1Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &L1Key, value: &L1Entry, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Why a coalesced load produced no value.
#[derive(Debug)]
enum NoValue {
    Absent,
    Failed(StoreError),
}

#[derive(Debug, Clone)]
struct Counters {
    l1_hits: IntCounter,
    l1_misses: IntCounter,
    l2_hits: IntCounter,
    l2_misses: IntCounter,
}

/// The cache service.
pub struct TieredCache {
    l1: moka::future::Cache<L1Key, L1Entry>,
    generations: Arc<Generations>,
    l2: Option<Arc<dyn SharedTier>>,
    ttl: Duration,
    l1_enabled: bool,
    /// The smallest weight an entry counts for, so `max_bytes` also bounds the entries.
    min_weight: u64,
    counters: Option<Counters>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("ttl", &self.ttl)
            .field("l2", &self.l2)
            .finish_non_exhaustive()
    }
}

impl TieredCache {
    /// An L1-only cache (no shared tier: one instance, nothing to tell).
    pub fn in_process(settings: L1Settings, metrics: Option<&Metrics>) -> Self {
        Self::build(settings, Arc::new(Generations::new(false)), None, metrics)
    }

    /// L1 over `l2`; `generations` is shared with the tier, which moves them when other
    /// instances invalidate and marks them degraded while it is unreachable.
    pub fn tiered(
        settings: L1Settings,
        generations: Arc<Generations>,
        l2: Arc<dyn SharedTier>,
        metrics: Option<&Metrics>,
    ) -> Self {
        Self::build(settings, generations, Some(l2), metrics)
    }

    /// Generations for a tier that is not connected yet (degraded until it is).
    pub fn generations() -> Arc<Generations> {
        Arc::new(Generations::new(true))
    }

    fn build(
        settings: L1Settings,
        generations: Arc<Generations>,
        l2: Option<Arc<dyn SharedTier>>,
        metrics: Option<&Metrics>,
    ) -> Self {
        // Every entry weighs at least max_bytes / max_entries, so the byte bound also
        // bounds the number of entries.
        let min_weight = (settings.max_bytes / settings.max_entries.max(1)).max(1);
        let l1 = moka::future::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_: &L1Key, e: &L1Entry| e.weight)
            .expire_after(EntryTtl)
            .build();
        let counters = metrics.map(|m| Counters {
            l1_hits: m.cache_hits("l1"),
            l1_misses: m.cache_misses("l1"),
            l2_hits: m.cache_hits("l2"),
            l2_misses: m.cache_misses("l2"),
        });
        Self {
            l1,
            generations,
            l2,
            ttl: settings.ttl,
            l1_enabled: settings.enabled,
            min_weight,
            counters,
        }
    }

    fn count(&self, pick: impl Fn(&Counters) -> &IntCounter) {
        if let Some(c) = &self.counters {
            pick(c).inc();
        }
    }

    fn entry(&self, value: CachedValue, encoded_len: usize) -> L1Entry {
        let weight = (encoded_len as u64 + ENTRY_OVERHEAD).max(self.min_weight);
        L1Entry {
            value,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            ttl: if self.generations.is_degraded() {
                DEGRADED_L1_TTL.min(self.ttl)
            } else {
                self.ttl
            },
        }
    }

    /// L2, then the loader; fills L2 after a load.
    async fn load_through(&self, key: &CacheKey, codec: Codec, load: Loader<'_>) -> Result<L1Entry, NoValue> {
        let mut fill_generation = None;
        if let Some(l2) = &self.l2 {
            match l2.read(key).await {
                Some(L2Read::Hit(bytes)) => {
                    if let Some(value) = (codec.decode)(&bytes) {
                        self.count(|c| &c.l2_hits);
                        return Ok(self.entry(value, bytes.len()));
                    }
                    // Undecodable (another release's layout): overwrite it.
                    tracing::debug!(?key, "cache entry does not decode; reloading");
                    self.count(|c| &c.l2_misses);
                }
                Some(L2Read::Miss { generation }) => {
                    self.count(|c| &c.l2_misses);
                    fill_generation = Some(generation);
                }
                None => self.count(|c| &c.l2_misses),
            }
        }
        let value = load.await.map_err(NoValue::Failed)?.ok_or(NoValue::Absent)?;
        let encoded = (codec.encode)(value.as_ref());
        if let (Some(l2), Some(generation), Some(bytes)) = (&self.l2, fill_generation, &encoded) {
            l2.fill(key, generation, bytes).await;
        }
        Ok(self.entry(value, encoded.map_or(0, |b| b.len())))
    }

    /// Entries currently in L1 (after pending maintenance).
    pub async fn l1_entries(&self) -> u64 {
        self.l1.run_pending_tasks().await;
        self.l1.entry_count()
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get_or_load<'a>(
        &self,
        key: &CacheKey,
        codec: Codec,
        load: Loader<'a>,
    ) -> Result<Option<CachedValue>, StoreError> {
        if !self.l1_enabled {
            return match self.load_through(key, codec, load).await {
                Ok(entry) => Ok(Some(entry.value)),
                Err(NoValue::Absent) => Ok(None),
                Err(NoValue::Failed(e)) => Err(e),
            };
        }
        let l1_key = L1Key {
            key: key.clone(),
            generation: self.generations.of(key.name()),
        };
        if let Some(entry) = self.l1.get(&l1_key).await {
            self.count(|c| &c.l1_hits);
            return Ok(Some(entry.value));
        }
        self.count(|c| &c.l1_misses);
        match self
            .l1
            .try_get_with(l1_key, self.load_through(key, codec, load))
            .await
        {
            Ok(entry) => Ok(Some(entry.value)),
            Err(reason) => match own(reason) {
                NoValue::Absent => Ok(None),
                NoValue::Failed(e) => Err(e),
            },
        }
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        if keys.is_empty() {
            return;
        }
        // L2 first: a local read after the local move must not find the old value in L2.
        if let Some(l2) = &self.l2 {
            l2.invalidate(keys).await;
        }
        for key in keys {
            self.generations.bump(key.name());
        }
    }

    fn watermark(&self) -> Watermark {
        Watermark(self.generations.watermark())
    }

    fn invalidations(&self) -> BoxStream<'static, Invalidated> {
        self.generations.watch()
    }

    async fn fill_since(&self, mark: Watermark, key: &CacheKey, codec: Codec, value: CachedValue) {
        if !self.l1_enabled {
            return;
        }
        // The generation first, then the check: an invalidation that starts after the check
        // moves the generation after this read, so the entry lands where nobody looks.
        let generation = self.generations.of(key.name());
        if self.generations.watermark() != mark.0 {
            return;
        }
        let encoded_len = (codec.encode)(value.as_ref()).map_or(0, |b| b.len());
        let entry = self.entry(value, encoded_len);
        self.l1
            .insert(
                L1Key {
                    key: key.clone(),
                    generation,
                },
                entry,
            )
            .await;
    }
}

/// Waiters of a coalesced load share its error; each gets its own copy.
fn own(reason: Arc<NoValue>) -> NoValue {
    match Arc::try_unwrap(reason) {
        Ok(reason) => reason,
        Err(shared) => match shared.as_ref() {
            NoValue::Absent => NoValue::Absent,
            NoValue::Failed(StoreError::NotFound) => NoValue::Failed(StoreError::NotFound),
            NoValue::Failed(StoreError::Conflict(c)) => NoValue::Failed(StoreError::Conflict(c.clone())),
            NoValue::Failed(StoreError::AuthorityLost) => NoValue::Failed(StoreError::AuthorityLost),
            NoValue::Failed(StoreError::Unavailable(e)) => {
                NoValue::Failed(StoreError::Unavailable(e.to_string().into()))
            }
            NoValue::Failed(StoreError::Unexpected(e)) => {
                NoValue::Failed(StoreError::Unexpected(e.to_string().into()))
            }
        },
    }
}

#[cfg(test)]
mod tests;
