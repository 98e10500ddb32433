//! The rate limiters: in-process (one instance, or the fallback) and shared through Redis,
//! both on the same sliding-window-counter arithmetic ([`window`]).

mod in_process;
mod redis;
pub mod window;

pub use in_process::InProcessRateLimiter;
pub use redis::{DEFAULT_BACKOFF, DEFAULT_TIMEOUT, Evaluation, RedisRateLimiter};
