//! The rate limiters: in-process (one instance, or the fallback) and shared through Redis,
//! both on the same sliding-window-counter arithmetic ([`window`]); the Redis one spends
//! budget leased per key ([`lease`], adr/0014) so a hot key does not pay a round trip per
//! request.

mod in_process;
pub mod lease;
mod redis;
pub mod window;

pub use in_process::InProcessRateLimiter;
pub use lease::LeaseSettings;
pub use redis::{DEFAULT_BACKOFF, DEFAULT_TIMEOUT, Evaluation, RedisRateLimiter};
