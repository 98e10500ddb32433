//! The Redis limiter without a Redis: key hashing, the fallback and its back-off.

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
