//! The Redis connection pool (deadpool-redis). Redis is optional: without `REDIS_URL` the
//! service runs on its in-process cache and limiter.

use std::time::Duration;

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis: {0}")]
    Command(#[from] deadpool_redis::redis::RedisError),
}

/// Builds a pool. It connects lazily: a Redis that is down at start-up is not an error, the
/// cache reports `degraded` until it answers.
pub fn create_pool(url: &str, max_size: usize, timeout: Duration) -> Result<Pool, RedisError> {
    let mut config = Config::from_url(url);
    config.pool = Some(PoolConfig {
        max_size,
        timeouts: Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        },
        ..PoolConfig::default()
    });
    config
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|e| RedisError::Config(e.to_string()))
}

pub async fn ping(pool: &Pool) -> Result<(), RedisError> {
    let mut conn = pool.get().await?;
    let _: String = deadpool_redis::redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}
