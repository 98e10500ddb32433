//! The cache service on a real Redis: two instances (two `TieredCache`s with their own
//! subscribers) sharing one key space, as two servers would.
//!
//! Needs `KEEL_TEST_REDIS_URL` (`make test` and CI's PostgreSQL + Redis step set it); without
//! it the tests say so and pass, as the SQLite-only step has no Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_application::cache::{Cache, CacheKey, cached};
use keel_infrastructure::cache::redis::RedisTier;
use keel_infrastructure::cache::{L1Settings, TieredCache};
use keel_infrastructure::redis::create_pool;
use uuid::Uuid;

const L1: L1Settings = L1Settings {
    ttl: Duration::from_secs(60),
    max_entries: 10_000,
    max_bytes: 16 * 1024 * 1024,
    enabled: true,
};

fn redis_url() -> Option<String> {
    let url = std::env::var("KEEL_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("KEEL_TEST_REDIS_URL is not set: the Redis cache tests are skipped");
    }
    url
}

struct Instance {
    cache: Arc<TieredCache>,
    tier: Arc<RedisTier>,
    subscriber: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

async fn instance(url: &str, prefix: &str) -> Instance {
    let pool = create_pool(url, 4, Duration::from_secs(1)).unwrap();
    let generations = TieredCache::generations();
    let tier = RedisTier::new(
        pool,
        url,
        prefix,
        Duration::from_secs(60),
        Arc::clone(&generations),
    )
    .unwrap();
    let subscriber = tier.spawn_subscriber();
    tier.first_attempt(Duration::from_secs(2)).await;
    assert!(tier.is_connected(), "the subscriber connects to {url}");
    Instance {
        cache: Arc::new(TieredCache::tiered(L1, generations, tier.clone(), None)),
        tier,
        subscriber,
    }
}

fn prefix() -> String {
    format!("cachetest{}", &Uuid::new_v4().simple().to_string()[..12])
}

async fn read(cache: &TieredCache, key: &CacheKey, value: &str, loads: &AtomicUsize) -> String {
    cached(cache, key, async {
        loads.fetch_add(1, Ordering::AcqRel);
        Ok(Some(value.to_owned()))
    })
    .await
    .unwrap()
    .map(|v| v.as_ref().clone())
    .unwrap()
}

#[tokio::test]
async fn a_value_loaded_on_one_instance_is_an_l2_hit_on_the_other() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let (a, b) = (instance(&url, &prefix).await, instance(&url, &prefix).await);
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    assert_eq!(read(&a.cache, &key, "v1", &loads).await, "v1");
    assert_eq!(read(&b.cache, &key, "other", &loads).await, "v1");
    assert_eq!(loads.load(Ordering::Acquire), 1, "b found a's value in Redis");
}

#[tokio::test]
async fn an_invalidation_reaches_the_other_instance_before_its_next_read() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let (a, b) = (instance(&url, &prefix).await, instance(&url, &prefix).await);
    let key = CacheKey::task(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    for round in 0..30 {
        let value = format!("v{round}");
        // b holds the previous value in its L1...
        read(&b.cache, &key, "stale-load", &loads).await;
        // ...a writes and invalidates...
        a.cache.invalidate(std::slice::from_ref(&key)).await;
        // ...and b's next read is the new value, whichever layer answers it.
        let deadline = Instant::now() + Duration::from_secs(1);
        let seen = loop {
            let seen = read(&b.cache, &key, &value, &loads).await;
            if seen == value || Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(
            seen, value,
            "round {round}: b still served an invalidated value after 1 s"
        );
    }
}

/// An invalidation returns only once every subscribed instance has applied it, so a client
/// that got the writer's answer is served fresh by every instance on its very next request.
/// Instance b runs on a thread of its own, which the test stalls (as a busy machine would)
/// while a invalidates: without the acknowledgements, a returned at once and b's L1 still
/// answered the old value.
#[test]
fn an_invalidation_returns_only_after_every_instance_applied_it() {
    use std::sync::mpsc;
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let (stall_b, stalls) = mpsc::channel::<Duration>();
    let (send_b, receive_b) = mpsc::channel::<Arc<TieredCache>>();
    let b_thread = std::thread::spawn({
        let (url, prefix) = (url.clone(), prefix.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let b = instance(&url, &prefix).await;
                send_b.send(Arc::clone(&b.cache)).unwrap();
                // b's tasks (its subscriber) run here, except while the test stalls the thread.
                loop {
                    match stalls.try_recv() {
                        Ok(stall) => std::thread::sleep(stall),
                        Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(1)).await,
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
            });
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = instance(&url, &prefix).await;
        let b = receive_b.recv().unwrap();
        let loads = AtomicUsize::new(0);
        for round in 0..5 {
            let key = CacheKey::user(Uuid::now_v7());
            assert_eq!(read(&b, &key, "before", &loads).await, "before");
            // b is busy for 60 ms (well inside the writer's 250 ms wait).
            stall_b.send(Duration::from_millis(60)).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            a.cache.invalidate(std::slice::from_ref(&key)).await;
            assert_eq!(
                read(&b, &key, "after", &loads).await,
                "after",
                "round {round}: b served an invalidated value after the writer's invalidation returned"
            );
        }
    });
    drop(stall_b);
    b_thread.join().unwrap();
}

#[tokio::test]
async fn a_fill_for_an_invalidated_generation_is_dropped() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let a = instance(&url, &prefix).await;
    let b = instance(&url, &prefix).await;
    let key = CacheKey::access(Uuid::now_v7(), Uuid::now_v7());
    // A slow load on a: it read the "database" before b's write was invalidated.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let a = Arc::new(a);
    let slow = {
        let (a, key) = (Arc::clone(&a), key.clone());
        tokio::spawn(async move {
            cached(&*a.cache, &key, async move {
                started_tx.send(()).ok();
                release_rx.await.ok();
                Ok(Some("old".to_owned()))
            })
            .await
            .unwrap()
        })
    };
    started_rx.await.unwrap();
    b.cache.invalidate(std::slice::from_ref(&key)).await;
    release_tx.send(()).unwrap();
    slow.await.unwrap();
    // Neither Redis nor a's L1 kept "old": a fresh instance and b both load.
    let loads = AtomicUsize::new(0);
    let c = instance(&url, &prefix).await;
    assert_eq!(read(&c.cache, &key, "new", &loads).await, "new");
    assert_eq!(
        loads.load(Ordering::Acquire),
        1,
        "L2 held nothing for the new generation"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        read(&a.cache, &key, "unused", &loads).await,
        "new",
        "a's L1 did not keep it"
    );
    assert!(a.tier.is_connected() && b.tier.is_connected());
}

#[tokio::test]
async fn instances_with_different_prefixes_share_nothing() {
    let Some(url) = redis_url() else { return };
    let (a, b) = (instance(&url, &prefix()).await, instance(&url, &prefix()).await);
    let key = CacheKey::project(Uuid::now_v7());
    let loads = AtomicUsize::new(0);
    read(&a.cache, &key, "a", &loads).await;
    assert_eq!(read(&b.cache, &key, "b", &loads).await, "b");
    assert_eq!(loads.load(Ordering::Acquire), 2);
}
