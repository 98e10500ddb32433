//! The Redis connection pool (deadpool-redis). Redis is optional: without `REDIS_URL` the
//! service runs on its in-process cache and limiter.

use std::time::Duration;

/// The pool [`create_pool`] makes.
pub use deadpool_redis::Pool;
use deadpool_redis::{Config, PoolConfig, Runtime, Timeouts};

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

/// One multiplexed connection taken out of the pool and shared by every caller: a command is
/// one round trip, where a pool checkout would first spend one on its recycle `PING`. After
/// any failure the caller [`SharedConnection::reset`]s it; the next use takes a fresh one
/// (the old one may be half-open).
#[derive(Debug)]
pub struct SharedConnection {
    pool: Pool,
    current: std::sync::Mutex<Option<deadpool_redis::redis::aio::MultiplexedConnection>>,
}

impl SharedConnection {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            current: std::sync::Mutex::new(None),
        }
    }

    /// The shared connection (a cheap clone of its handle), connecting first if needed.
    pub async fn get(&self) -> Result<deadpool_redis::redis::aio::MultiplexedConnection, RedisError> {
        if let Some(conn) = self.lock().as_ref() {
            return Ok(conn.clone());
        }
        let conn = deadpool_redis::Connection::take(self.pool.get().await?);
        *self.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a failure.
    pub fn reset(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<deadpool_redis::redis::aio::MultiplexedConnection>> {
        // A poisoned lock only means a panic while swapping a handle: the value is whole.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
