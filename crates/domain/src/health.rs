//! Health of the components the service depends on, and the ports that probe them.

use async_trait::async_trait;

/// The state of one dependency as seen by a readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    /// Answering normally.
    Ok,
    /// Not answering, but the service can go on without it (for example Redis: requests
    /// fall back to the in-process cache and the database).
    Degraded,
    /// Not answering, and the service cannot serve requests without it.
    Down,
}

/// Probes the primary database.
///
/// # Contract
/// Returns within a bounded time (the adapter applies its own timeout) and never panics:
/// [`ComponentStatus::Ok`] when a trivial query succeeds, [`ComponentStatus::Down`]
/// otherwise. It never answers `Degraded`: without its database the service cannot work.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DatabaseProbe: Send + Sync {
    async fn check(&self) -> ComponentStatus;
}

/// Probes the shared cache (Redis), when one is configured.
///
/// # Contract
/// Returns within a bounded time and never panics: [`ComponentStatus::Ok`] when the cache
/// answers or when no shared cache is configured (the in-process cache cannot fail), and
/// [`ComponentStatus::Degraded`] when a configured shared cache does not answer. It never
/// answers `Down`: the service keeps working on its in-process cache.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CacheProbe: Send + Sync {
    async fn check(&self) -> ComponentStatus;
}
