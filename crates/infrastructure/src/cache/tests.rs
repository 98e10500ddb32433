//! The cache service against an in-memory shared tier that behaves like the Redis one
//! (generations, conditional fills), so the tiering logic is tested without a network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use keel_application::cache::cached;
use uuid::Uuid;

use super::*;

/// variant → (generation written in, bytes)
type Values = HashMap<String, (u64, Vec<u8>)>;

#[derive(Debug, Default)]
struct MemoryTier {
    /// name → (generation, values)
    hashes: Mutex<HashMap<String, (u64, Values)>>,
    reads: AtomicUsize,
    /// The instances told of invalidations (their generations), as pub/sub would.
    subscribers: Mutex<Vec<Arc<Generations>>>,
    down: AtomicBool,
}

impl MemoryTier {
    fn subscribe(&self, generations: Arc<Generations>) {
        self.subscribers.lock().unwrap().push(generations);
    }

    fn put_raw(&self, key: &CacheKey, bytes: &[u8]) {
        let mut hashes = self.hashes.lock().unwrap();
        let entry = hashes.entry(key.name().to_owned()).or_default();
        let g = entry.0;
        entry
            .1
            .insert(key.variant().unwrap_or_default().to_owned(), (g, bytes.to_vec()));
    }
}

#[async_trait]
impl SharedTier for MemoryTier {
    async fn read(&self, key: &CacheKey) -> Option<L2Read> {
        if self.down.load(Ordering::Acquire) {
            return None;
        }
        self.reads.fetch_add(1, Ordering::AcqRel);
        let hashes = self.hashes.lock().unwrap();
        let Some((g, values)) = hashes.get(key.name()) else {
            return Some(L2Read::Miss { generation: 0 });
        };
        match values.get(key.variant().unwrap_or_default()) {
            Some((w, bytes)) if w == g => Some(L2Read::Hit(bytes.clone())),
            _ => Some(L2Read::Miss { generation: *g }),
        }
    }

    async fn fill(&self, key: &CacheKey, generation: u64, bytes: &[u8]) {
        let mut hashes = self.hashes.lock().unwrap();
        let entry = hashes.entry(key.name().to_owned()).or_default();
        if entry.0 == generation {
            entry.1.insert(
                key.variant().unwrap_or_default().to_owned(),
                (generation, bytes.to_vec()),
            );
        }
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        {
            let mut hashes = self.hashes.lock().unwrap();
            for key in keys {
                let entry = hashes.entry(key.name().to_owned()).or_default();
                entry.0 += 1;
                entry.1.clear();
            }
        }
        for subscriber in self.subscribers.lock().unwrap().iter() {
            for key in keys {
                subscriber.bump(key.name());
            }
        }
    }
}

const SETTINGS: L1Settings = L1Settings {
    ttl: Duration::from_secs(60),
    max_entries: 1000,
    max_bytes: 1024 * 1024,
    enabled: true,
};

fn two_instances() -> (Arc<MemoryTier>, TieredCache, TieredCache, Metrics) {
    let tier = Arc::new(MemoryTier::default());
    let metrics = Metrics::new().unwrap();
    let (ga, gb) = (
        Arc::new(Generations::new(false)),
        Arc::new(Generations::new(false)),
    );
    tier.subscribe(Arc::clone(&ga));
    tier.subscribe(Arc::clone(&gb));
    let a = TieredCache::tiered(SETTINGS, ga, tier.clone(), Some(&metrics));
    let b = TieredCache::tiered(SETTINGS, gb, tier.clone(), None);
    (tier, a, b, metrics)
}

/// Reads `key` through `cache` with a loader that counts its calls and returns `value`.
async fn read(cache: &TieredCache, key: &CacheKey, value: &str, loads: &AtomicUsize) -> Option<String> {
    cached(cache, key, async {
        loads.fetch_add(1, Ordering::AcqRel);
        Ok(Some(value.to_owned()))
    })
    .await
    .unwrap()
    .map(|v| v.as_ref().clone())
}

fn counter(metrics: &Metrics, line: &str) -> u64 {
    metrics
        .render()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

#[tokio::test]
async fn a_second_read_is_an_l1_hit_and_loads_nothing() {
    let (tier, a, _, metrics) = two_instances();
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&a, &key, "v1", &loads).await.as_deref(), Some("v1"));
    assert_eq!(read(&a, &key, "other", &loads).await.as_deref(), Some("v1"));
    assert_eq!(loads.load(Ordering::Acquire), 1);
    assert_eq!(tier.reads.load(Ordering::Acquire), 1, "the hit never reached L2");
    assert_eq!(counter(&metrics, r#"cache_hits_total{cache_layer="l1"}"#), 1);
    assert_eq!(counter(&metrics, r#"cache_misses_total{cache_layer="l1"}"#), 1);
    assert_eq!(counter(&metrics, r#"cache_misses_total{cache_layer="l2"}"#), 1);
}

#[tokio::test]
async fn an_l2_hit_fills_l1_without_loading() {
    let (tier, a, b, metrics) = two_instances();
    let key = CacheKey::task(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    read(&b, &key, "from-b", &loads).await;
    // A has never seen it: L2 answers, then A's L1 does.
    assert_eq!(read(&a, &key, "unused", &loads).await.as_deref(), Some("from-b"));
    assert_eq!(read(&a, &key, "unused", &loads).await.as_deref(), Some("from-b"));
    assert_eq!(loads.load(Ordering::Acquire), 1, "only b's first read loaded");
    assert_eq!(
        tier.reads.load(Ordering::Acquire),
        2,
        "b's miss and a's first read"
    );
    assert_eq!(counter(&metrics, r#"cache_hits_total{cache_layer="l2"}"#), 1);
    assert_eq!(counter(&metrics, r#"cache_hits_total{cache_layer="l1"}"#), 1);
}

#[tokio::test]
async fn concurrent_misses_of_one_key_load_once() {
    let cache = Arc::new(TieredCache::in_process(SETTINGS, None));
    let key = CacheKey::project(Uuid::now_v7());
    let loads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let (cache, key, loads) = (Arc::clone(&cache), key.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                cached(cache.as_ref(), &key, async {
                    loads.fetch_add(1, Ordering::AcqRel);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(7_u32))
                })
                .await
                .unwrap()
                .map(|v| *v)
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), Some(7));
    }
    assert_eq!(loads.load(Ordering::Acquire), 1);
}

#[tokio::test]
async fn an_invalidation_on_one_instance_is_seen_by_the_other() {
    let (_, a, b, _) = two_instances();
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    read(&a, &key, "v1", &loads).await;
    read(&b, &key, "v1", &loads).await;
    a.invalidate(std::slice::from_ref(&key)).await;
    assert_eq!(read(&b, &key, "v2", &loads).await.as_deref(), Some("v2"));
    assert_eq!(
        read(&a, &key, "v3", &loads).await.as_deref(),
        Some("v2"),
        "b's load filled L2"
    );
}

#[tokio::test]
async fn invalidating_a_name_drops_all_its_variants_and_nothing_else() {
    let cache = TieredCache::in_process(SETTINGS, None);
    let user = Uuid::now_v7();
    let (page1, page2) = (
        CacheKey::projects_of(user).with_variant("p1"),
        CacheKey::projects_of(user).with_variant("p2"),
    );
    let other = CacheKey::projects_of(Uuid::now_v7()).with_variant("p1");
    let loads = AtomicUsize::new(0);
    for key in [&page1, &page2, &other] {
        read(&cache, key, "old", &loads).await;
    }
    cache.invalidate(&[CacheKey::projects_of(user)]).await;
    assert_eq!(read(&cache, &page1, "new", &loads).await.as_deref(), Some("new"));
    assert_eq!(read(&cache, &page2, "new", &loads).await.as_deref(), Some("new"));
    assert_eq!(read(&cache, &other, "new", &loads).await.as_deref(), Some("old"));
}

#[tokio::test]
async fn a_load_that_raced_an_invalidation_does_not_put_the_old_value_back() {
    let (tier, a, _, _) = two_instances();
    let key = CacheKey::task(Uuid::now_v7());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let a = Arc::new(a);
    let slow = {
        let (a, key) = (Arc::clone(&a), key.clone());
        tokio::spawn(async move {
            cached(a.as_ref(), &key, async move {
                // Read the "database" before the write...
                let old = "old".to_owned();
                started_tx.send(()).ok();
                // ...and finish after it was committed and invalidated.
                release_rx.await.ok();
                Ok(Some(old))
            })
            .await
            .unwrap()
        })
    };
    started_rx.await.unwrap();
    a.invalidate(std::slice::from_ref(&key)).await;
    release_tx.send(()).unwrap();
    assert_eq!(
        slow.await.unwrap().as_deref().map(String::as_str),
        Some("old"),
        "a read that began before the write may see the old value"
    );
    let loads = AtomicUsize::new(0);
    assert_eq!(
        read(&a, &key, "new", &loads).await.as_deref(),
        Some("new"),
        "but nothing after the invalidation does: not L1, not L2"
    );
    assert!(matches!(tier.read(&key).await, Some(L2Read::Hit(b)) if b == b"\"new\""));
}

#[tokio::test]
async fn absence_and_errors_are_not_cached() {
    let cache = TieredCache::in_process(SETTINGS, None);
    let key = CacheKey::session_of(Uuid::now_v7(), Uuid::now_v7());
    let none = cached::<String, _>(&cache, &key, async { Ok(None) })
        .await
        .unwrap();
    assert!(none.is_none());
    let failed = cached::<String, _>(&cache, &key, async {
        Err(StoreError::Unavailable("database down".into()))
    })
    .await;
    assert!(matches!(failed, Err(StoreError::Unavailable(_))));
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&cache, &key, "now", &loads).await.as_deref(), Some("now"));
    assert_eq!(loads.load(Ordering::Acquire), 1);
}

#[tokio::test]
async fn an_undecodable_l2_value_is_reloaded_and_replaced() {
    let (tier, a, _, _) = two_instances();
    let key = CacheKey::project(Uuid::now_v7());
    tier.put_raw(&key, b"{not json");
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&a, &key, "good", &loads).await.as_deref(), Some("good"));
    assert_eq!(loads.load(Ordering::Acquire), 1);
}

#[tokio::test]
async fn with_the_shared_tier_down_reads_go_on_and_l1_entries_are_short_lived() {
    let tier = Arc::new(MemoryTier::default());
    let generations = TieredCache::generations();
    let cache = TieredCache::tiered(
        L1Settings {
            ttl: Duration::from_secs(300),
            ..SETTINGS
        },
        Arc::clone(&generations),
        tier.clone(),
        None,
    );
    tier.down.store(true, Ordering::Release);
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&cache, &key, "v1", &loads).await.as_deref(), Some("v1"));
    assert_eq!(read(&cache, &key, "v2", &loads).await.as_deref(), Some("v1"));
    tokio::time::sleep(DEGRADED_L1_TTL + Duration::from_millis(200)).await;
    assert_eq!(
        read(&cache, &key, "v3", &loads).await.as_deref(),
        Some("v3"),
        "a degraded L1 entry expires within the bound"
    );
    assert_eq!(loads.load(Ordering::Acquire), 2);
}

#[tokio::test]
async fn l1_is_bounded_by_entries_through_the_minimum_weight() {
    let cache = TieredCache::in_process(
        L1Settings {
            ttl: Duration::from_secs(60),
            max_entries: 100,
            max_bytes: 100 * 1024,
            enabled: true,
        },
        None,
    );
    let loads = AtomicUsize::new(0);
    for _ in 0..1000 {
        read(&cache, &CacheKey::task(Uuid::now_v7()), "x", &loads).await;
    }
    let entries = cache.l1_entries().await;
    assert!(entries <= 100, "{entries} entries kept");
}

#[test]
fn generations_only_move_forward_and_per_name() {
    let g = Generations::new(false);
    let (a, b) = (g.of("project:a"), g.of("project:b"));
    g.bump("project:a");
    assert!(g.of("project:a") > a);
    // Another name shares the stripe only by a 1-in-4096 chance; these two do not.
    assert_eq!(g.of("project:b"), b);
    let before = g.of("project:b");
    g.flush();
    assert!(g.of("project:b") > before);
}

#[tokio::test]
async fn with_l1_disabled_every_read_goes_to_l2() {
    let tier = Arc::new(MemoryTier::default());
    let cache = TieredCache::tiered(
        L1Settings {
            enabled: false,
            ..SETTINGS
        },
        Arc::new(Generations::new(false)),
        tier.clone(),
        None,
    );
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        assert_eq!(read(&cache, &key, "v", &loads).await.as_deref(), Some("v"));
    }
    assert_eq!(loads.load(Ordering::Acquire), 1);
    assert_eq!(tier.reads.load(Ordering::Acquire), 3);
}

#[tokio::test]
async fn a_value_read_with_another_key_is_kept_only_if_nothing_was_invalidated_since_its_watermark() {
    use keel_application::cache::store_since;
    let (_tier, a, b, _metrics) = two_instances();
    let loads = AtomicUsize::new(0);
    let kept = CacheKey::access(Uuid::now_v7(), Uuid::now_v7());
    // Nothing invalidated between the watermark and the fill: the next read is a hit.
    let mark = a.watermark();
    store_since(&a, mark, &kept, Arc::new("fresh".to_owned())).await;
    assert_eq!(read(&a, &kept, "loaded", &loads).await.as_deref(), Some("fresh"));
    assert_eq!(loads.load(Ordering::Acquire), 0);

    // Any invalidation on this instance after the watermark (here another instance's, through
    // pub/sub, of an unrelated name) drops the fill: the value may predate it.
    let dropped = CacheKey::access(Uuid::now_v7(), Uuid::now_v7());
    let mark = a.watermark();
    b.invalidate(&[CacheKey::task(Uuid::now_v7())]).await;
    store_since(&a, mark, &dropped, Arc::new("maybe stale".to_owned())).await;
    assert_eq!(
        read(&a, &dropped, "loaded", &loads).await.as_deref(),
        Some("loaded")
    );
    assert_eq!(loads.load(Ordering::Acquire), 1);

    // A fill that was kept is dropped by the invalidation of its name like any other entry.
    a.invalidate(std::slice::from_ref(&kept)).await;
    assert_eq!(
        read(&a, &kept, "reloaded", &loads).await.as_deref(),
        Some("reloaded")
    );
}
