//! The Redis rate limiter against a real Redis (`KEEL_TEST_REDIS_URL`; skipped with a note
//! when it is unset): the Lua script decides exactly as `window::decide` does, instances
//! share counts, and what lands in Redis is hashed and expires.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use keel_domain::rate_limit::{Quota, RateLimiter};
use keel_infrastructure::rate_limit::window::{WindowState, decide, window_ms};
use keel_infrastructure::rate_limit::{InProcessRateLimiter, RedisRateLimiter};
use keel_infrastructure::redis::create_pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn redis_pool(test: &str) -> Option<Pool> {
    match std::env::var("KEEL_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => Some(create_pool(&url, 8, Duration::from_secs(2)).unwrap()),
        None => {
            eprintln!("skipped {test}: KEEL_TEST_REDIS_URL is not set");
            None
        }
    }
}

fn prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[tokio::test]
async fn the_script_decides_exactly_as_the_shared_arithmetic() {
    let Some(pool) = redis_pool("the_script_decides_exactly_as_the_shared_arithmetic") else {
        return;
    };
    let limiter = RedisRateLimiter::new(pool, &prefix());
    let mut rng = StdRng::seed_from_u64(7);
    for (i, quota) in [
        Quota {
            requests: 3,
            window: Duration::from_secs(60),
        },
        Quota {
            requests: 5,
            window: Duration::from_secs(10),
        },
        Quota {
            requests: 50,
            window: Duration::from_secs(3600),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("login:203.0.113.7:case{i}@example.com");
        let w = window_ms(quota);
        // Simulated instants (the script's optional clock argument), from a window start.
        let mut now = 1_700_000_000_000 / w * w;
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let (mut admitted, mut refused) = (0, 0);
        for _ in 0..400 {
            // About twice the limit per window on average: refusals, and windows rolling over.
            now += rng.random_range(0..w / u64::from(quota.requests));
            let index = now / w;
            let state = WindowState {
                previous: counts.get(&(index - 1)).copied().unwrap_or(0),
                current: counts.get(&index).copied().unwrap_or(0),
                elapsed_ms: now - index * w,
            };
            let expected = decide(quota, state);
            if expected.allowed {
                *counts.entry(index).or_default() += 1;
                admitted += 1;
            } else {
                refused += 1;
            }
            let got = limiter.evaluate(&key, quota, Some(now)).await.unwrap();
            assert_eq!(got.state, state, "quota {quota:?} at {now}");
            assert_eq!(got.decision, expected, "quota {quota:?} at {now}");
        }
        assert!(
            admitted > 0 && refused > 0,
            "the walk must reach the limit: {quota:?}"
        );
    }
}

#[tokio::test]
async fn instances_share_counts_and_redis_holds_only_hashed_expiring_keys() {
    let Some(pool) = redis_pool("instances_share_counts_and_redis_holds_only_hashed_expiring_keys") else {
        return;
    };
    let prefix = prefix();
    let a = RedisRateLimiter::new(pool.clone(), &prefix);
    let b = RedisRateLimiter::new(pool.clone(), &prefix);
    let quota = Quota {
        requests: 4,
        window: Duration::from_secs(30),
    };
    let key = "login:198.51.100.9:ann@example.com";
    let mut remaining = Vec::new();
    for limiter in [&a, &b, &a, &b] {
        let d = limiter.hit(key, quota).await;
        assert!(d.allowed);
        remaining.push(d.remaining);
    }
    // A window boundary between two hits can round one estimate up; never up again.
    assert!(remaining.windows(2).all(|w| w[1] < w[0]), "{remaining:?}");
    assert!(!b.hit(key, quota).await.allowed);
    assert!(!a.degraded() && !b.degraded());

    let mut conn = pool.get().await.unwrap();
    let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty() && keys.len() <= 2, "{keys:?}");
    for k in &keys {
        assert!(k.starts_with(&format!("{}:", a.redis_key(key))), "{k}");
        assert!(!k.contains("ann") && !k.contains("198.51.100.9"), "{k}");
        let ttl: i64 = deadpool_redis::redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{k} expires in {ttl} ms");
    }
}

/// Not a test of behaviour: prints what one `hit` costs, one at a time and with 64 callers
/// at once (run with `--ignored --nocapture`; a debug build unless `--release`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_the_cost_of_a_hit() {
    let Some(pool) = redis_pool("measure_the_cost_of_a_hit") else {
        return;
    };
    const N: u32 = 5_000;
    let quota = Quota {
        requests: 1_000_000,
        window: Duration::from_secs(900),
    };
    let redis = RedisRateLimiter::new(pool, &prefix());
    let local = InProcessRateLimiter::new();
    for (name, limiter) in [("redis", &redis as &dyn RateLimiter), ("in-process", &local)] {
        limiter.hit("warm-up", quota).await;
        let started = Instant::now();
        for i in 0..N {
            limiter
                .hit(&format!("ip:10.0.{}.{}", i / 250, i % 250), quota)
                .await;
        }
        let per_hit = started.elapsed() / N;
        eprintln!("{name}: {N} sequential hits, {per_hit:?} per hit");
    }
    let redis = std::sync::Arc::new(redis);
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..64 {
        let redis = std::sync::Arc::clone(&redis);
        callers.spawn(async move {
            for i in 0..N / 64 {
                redis.hit(&format!("user:{caller}:{i}"), quota).await;
            }
        });
    }
    while callers.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    eprintln!(
        "redis: {} hits from 64 concurrent callers in {elapsed:?}, {:.0} hits/s",
        N / 64 * 64,
        f64::from(N / 64 * 64) / elapsed.as_secs_f64()
    );
    assert!(!redis.degraded());
}
