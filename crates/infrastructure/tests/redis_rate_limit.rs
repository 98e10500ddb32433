//! The Redis rate limiter against a real Redis (`KEEL_TEST_REDIS_URL`; skipped with a note
//! when it is unset): the Lua script decides exactly as `window::decide` and grants exactly as
//! `lease::grant` do, instances share counts and never admit more than the limit together,
//! leases save round trips on hot keys and none on cold ones, a Redis that goes away is
//! replaced by in-process counting until it is back, and what lands in Redis is hashed and
//! expires.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use keel_domain::rate_limit::{Quota, RateLimiter};
use keel_infrastructure::rate_limit::lease::{GiveBack, grant};
use keel_infrastructure::rate_limit::window::{WindowState, decide, window_ms};
use keel_infrastructure::rate_limit::{
    DEFAULT_BACKOFF, InProcessRateLimiter, LeaseSettings, RedisRateLimiter,
};
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

#[tokio::test]
async fn the_script_grants_and_gives_back_exactly_as_the_lease_arithmetic() {
    let Some(pool) = redis_pool("the_script_grants_and_gives_back_exactly_as_the_lease_arithmetic") else {
        return;
    };
    let limiter = RedisRateLimiter::new(pool, &prefix());
    let divisor = LeaseSettings::default().divisor;
    let mut rng = StdRng::seed_from_u64(11);
    for (i, quota) in [
        Quota {
            requests: 10,
            window: Duration::from_secs(60),
        },
        Quota {
            requests: 50,
            window: Duration::from_secs(10),
        },
        Quota {
            requests: 1_000,
            window: Duration::from_secs(3600),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("user:lease-walk-{i}");
        let w = window_ms(quota);
        let mut now = 1_700_000_000_000 / w * w;
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let (mut granted_some, mut refused, mut gave_back) = (0, 0, 0);
        for _ in 0..400 {
            now += rng.random_range(0..w / 40);
            let index = now / w;
            let want = rng.random_range(0..=u64::from(quota.requests) / 4 + 10);
            // Give back to this window, the previous one, or one that no longer counts.
            let give_back = rng.random_bool(0.3).then(|| GiveBack {
                index: index - rng.random_range(0..=2),
                units: rng.random_range(1..=20),
            });
            // The model: what the script must do.
            if let Some(back) = give_back
                && back.index + 1 >= index
                && let Some(count) = counts.get_mut(&back.index)
            {
                gave_back += u64::from(back.units.min(*count) > 0);
                *count -= back.units.min(*count);
            }
            let state = WindowState {
                previous: counts.get(&(index - 1)).copied().unwrap_or(0),
                current: counts.get(&index).copied().unwrap_or(0),
                elapsed_ms: now - index * w,
            };
            let expected = grant(quota, state, want, divisor);
            if expected > 0 {
                *counts.entry(index).or_default() += expected;
                granted_some += 1;
            } else if want > 0 {
                refused += 1;
            }
            let got = limiter
                .lease(&key, quota, want, give_back, Some(now))
                .await
                .unwrap();
            assert_eq!(
                got.state, state,
                "quota {quota:?} at {now}, want {want}, {give_back:?}"
            );
            assert_eq!(got.granted, expected, "quota {quota:?} at {now}, want {want}");
            assert_eq!(got.index, index);
        }
        assert!(
            granted_some > 0 && refused > 0 && gave_back > 0,
            "the walk must grant, refuse and give back: {quota:?}"
        );
    }
}

/// Sums every rate-limit counter under `prefix`: what Redis holds as used (leases included).
async fn counted(pool: &Pool, prefix: &str) -> u64 {
    let mut conn = pool.get().await.unwrap();
    let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{prefix}:rl:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut total = 0;
    for key in keys {
        let n: u64 = deadpool_redis::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// A day: no window boundary (at midnight UTC) in the middle of a test but once in ~86 400.
const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_hit_by_200_concurrent_tasks_never_admit_more_than_the_limit_together() {
    let Some(pool) =
        redis_pool("two_instances_hit_by_200_concurrent_tasks_never_admit_more_than_the_limit_together")
    else {
        return;
    };
    for (limit, hits_per_task) in [(50_u32, 3), (2_000, 12)] {
        let prefix = prefix();
        // A timeout no loaded machine reaches: counting in-process after one would admit more
        // than the limit by design (each instance alone), which is not what this tests.
        let instance = || {
            Arc::new(
                RedisRateLimiter::new(pool.clone(), &prefix)
                    .with_timing(Duration::from_secs(10), DEFAULT_BACKOFF),
            )
        };
        let instances = [instance(), instance()];
        let quota = Quota {
            requests: limit,
            window: DAY,
        };
        let admitted = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..200_u64 {
            let limiter = Arc::clone(&instances[usize::from(task % 2 == 1)]);
            let admitted = Arc::clone(&admitted);
            tasks.spawn(async move {
                for hit in 0..hits_per_task {
                    if limiter.hit("user:shared", quota).await.allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    if (task + hit) % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let during = admitted.load(Ordering::Relaxed);
        let hits = 200 * hits_per_task;
        assert_eq!(instances[0].fallback_hits() + instances[1].fallback_hits(), 0);
        assert!(
            during <= u64::from(limit),
            "{during} admitted of {hits} against a limit of {limit}"
        );

        // Once the leases have expired and been given back (time-to-live + a sweep: ≈ 0.4 s),
        // Redis holds only what was admitted, and what is left of the limit is admitted:
        // exactly the limit in all, none of it lost.
        let given_back = Instant::now() + Duration::from_secs(10);
        while counted(&pool, &prefix).await != during && Instant::now() < given_back {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            counted(&pool, &prefix).await,
            during,
            "Redis holds only what was admitted"
        );
        // Past any refusal repeated locally (250 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut after = 0;
        for limiter in &instances {
            while limiter.hit("user:shared", quota).await.allowed {
                after += 1;
            }
        }
        assert_eq!(during + after, u64::from(limit), "{during} + {after}");
        let calls = instances[0].round_trips() + instances[1].round_trips();
        eprintln!("limit {limit}: {hits} concurrent hits, {during} admitted, {calls} script calls in all");
    }
}

#[tokio::test]
async fn a_cold_key_costs_one_round_trip_per_request_and_leases_nothing() {
    let Some(pool) = redis_pool("a_cold_key_costs_one_round_trip_per_request_and_leases_nothing") else {
        return;
    };
    let prefix = prefix();
    let limiter = RedisRateLimiter::new(pool.clone(), &prefix);
    let quota = Quota {
        requests: 1_000,
        window: DAY,
    };
    for i in 0..5 {
        let d = limiter.hit(&format!("ip:192.0.2.{i}"), quota).await;
        assert!(d.allowed && d.remaining == 999);
    }
    assert_eq!(limiter.round_trips(), 5);
    // One key, a request every 150 ms (slower than a lease's target of 100 ms): each asks Redis
    // for itself alone.
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert_eq!(limiter.hit("user:cold", quota).await.remaining, 999 - i);
    }
    assert_eq!(limiter.round_trips(), 9);
    assert_eq!(
        counted(&pool, &prefix).await,
        9,
        "nothing leased beyond the requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_asks_redis_for_a_small_fraction_of_its_requests() {
    let Some(pool) = redis_pool("a_hot_key_asks_redis_for_a_small_fraction_of_its_requests") else {
        return;
    };
    let quota = Quota {
        requests: 1_000_000,
        window: DAY,
    };
    // One caller after the other.
    let limiter = RedisRateLimiter::new(pool.clone(), &prefix());
    for _ in 0..5_000 {
        assert!(limiter.hit("user:hot", quota).await.allowed);
    }
    let sequential = limiter.round_trips();
    assert!(
        sequential < 5_000 / 20,
        "{sequential} round trips for 5 000 requests"
    );

    // 64 callers at once on another key.
    const N: u64 = 1_000;
    let limiter = Arc::new(RedisRateLimiter::new(pool, &prefix()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let limiter = Arc::clone(&limiter);
        tasks.spawn(async move {
            for _ in 0..N {
                assert!(limiter.hit("user:hot", quota).await.allowed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // While the leases grow, callers that find none ask for themselves; then refills keep up.
    let concurrent = limiter.round_trips();
    assert!(
        concurrent < 64 * N / 20,
        "{concurrent} round trips for {} concurrent requests",
        64 * N
    );
    eprintln!(
        "hot key: {sequential} round trips per 5 000 sequential hits, {concurrent} per {} from 64 callers",
        64 * N
    );
}

/// A TCP relay to Redis that can be cut (every connection dropped, new ones refused) and
/// restored on the same port: Redis going away and coming back, as the limiter sees it.
struct Relay {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let mut relay = Self {
            port: 0,
            upstream,
            task: None,
        };
        relay.restore().await;
        relay
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                links.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Drops the listener and every relayed connection (the `JoinSet` aborts them).
    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn with_redis_gone_hits_are_counted_in_process_and_shared_again_once_it_is_back() {
    let Some(direct) =
        redis_pool("with_redis_gone_hits_are_counted_in_process_and_shared_again_once_it_is_back")
    else {
        return;
    };
    let url = std::env::var("KEEL_TEST_REDIS_URL").unwrap();
    let mut relay = Relay::start(&url).await;
    let prefix = prefix();
    let through_relay = create_pool(&relay.url(), 2, Duration::from_millis(500)).unwrap();
    let limiter = RedisRateLimiter::new(through_relay, &prefix)
        .with_timing(Duration::from_millis(250), Duration::from_millis(100));
    let witness = RedisRateLimiter::new(direct.clone(), &prefix);
    let quota = Quota {
        requests: 10,
        window: DAY,
    };
    for expected in [9, 8] {
        assert_eq!(limiter.hit("user:ann", quota).await.remaining, expected);
    }
    let before = limiter.round_trips();

    relay.cut().await;
    // The first request finds Redis gone, and it and the next are counted in-process: allowed,
    // with their own count, and no round trip while the back-off lasts.
    for expected in [9, 8, 7] {
        let d = limiter.hit("user:ann", quota).await;
        assert!(d.allowed, "Redis gone must not refuse requests");
        assert_eq!(d.remaining, expected);
    }
    assert!(limiter.degraded());
    assert_eq!(limiter.fallback_hits(), 3);
    assert_eq!(
        limiter.round_trips(),
        before + 1,
        "one attempt, then the back-off"
    );

    relay.restore().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Shared again: the count Redis kept (2) goes on, and another instance sees it.
    let d = limiter.hit("user:ann", quota).await;
    assert!(
        !limiter.degraded(),
        "the probe after the back-off found Redis back"
    );
    assert_eq!(d.remaining, 7);
    assert_eq!(limiter.fallback_hits(), 3, "counted in Redis again");
    assert_eq!(witness.hit("user:ann", quota).await.remaining, 6);
    relay.cut().await;
}

/// Not a test of behaviour: prints what one `hit` costs and how many script calls it makes,
/// for cold keys (a new key each time) and for one hot key, one caller at a time and 64 at once
/// (run with `--ignored --nocapture`; a debug build unless `--release`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_the_cost_of_a_hit() {
    let Some(pool) = redis_pool("measure_the_cost_of_a_hit") else {
        return;
    };
    const N: u32 = 20_000;
    let quota = Quota {
        requests: 1_000_000_000,
        window: Duration::from_secs(900),
    };
    let report = |name: &str, hits: u32, elapsed: Duration, calls: u64| {
        eprintln!(
            "{name:<44} {hits:>6} hits {:>9.2?}/hit {:>8.0} hits/s {calls:>6} script calls ({:.4} per hit)",
            elapsed / hits,
            f64::from(hits) / elapsed.as_secs_f64(),
            calls as f64 / f64::from(hits),
        );
    };
    let local = InProcessRateLimiter::new();
    for (name, hot) in [("cold keys", false), ("one hot key", true)] {
        let redis = RedisRateLimiter::new(pool.clone(), &prefix());
        let key = |i: u32| {
            if hot {
                "user:hot".to_owned()
            } else {
                format!("ip:10.{}.{}.{}", i / 62_500, i / 250 % 250, i % 250)
            }
        };
        for (limiter_name, limiter) in [("redis", &redis as &dyn RateLimiter), ("in-process", &local)] {
            let started = Instant::now();
            for i in 0..N {
                limiter.hit(&key(i), quota).await;
            }
            let calls = if limiter_name == "redis" {
                redis.round_trips()
            } else {
                0
            };
            report(
                &format!("{limiter_name}, {name}, sequential"),
                N,
                started.elapsed(),
                calls,
            );
        }
        let redis = Arc::new(RedisRateLimiter::new(pool.clone(), &prefix()));
        let started = Instant::now();
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..64 {
            let redis = Arc::clone(&redis);
            callers.spawn(async move {
                for i in 0..N / 64 {
                    let key = if hot {
                        "user:hot".to_owned()
                    } else {
                        format!("user:{caller}:{i}")
                    };
                    redis.hit(&key, quota).await;
                }
            });
        }
        while callers.join_next().await.is_some() {}
        report(
            &format!("redis, {name}, 64 concurrent callers"),
            N / 64 * 64,
            started.elapsed(),
            redis.round_trips(),
        );
        assert!(!redis.degraded());
    }
}
