//! The readiness use case: is this instance able to serve traffic right now?

use std::sync::Arc;

use keel_domain::health::{CacheProbe, ComponentStatus, DatabaseProbe};

/// The verdict of a readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Readiness {
    /// Every dependency answers.
    Ok,
    /// The shared cache does not answer; requests are served from the in-process cache
    /// and the database. Still ready: load balancers keep sending traffic.
    Degraded,
    /// The database does not answer: take this instance out of rotation.
    Unavailable,
    /// The instance is shutting down: it still serves what it is sent, but load balancers
    /// should send it nothing new.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadinessReport {
    pub status: Readiness,
    pub database: ComponentStatus,
    pub cache: ComponentStatus,
}

impl ReadinessReport {
    /// Whether the instance should receive traffic (`Ok` or `Degraded`).
    pub fn is_ready(&self) -> bool {
        matches!(self.status, Readiness::Ok | Readiness::Degraded)
    }
}

/// Probes every dependency concurrently and derives one verdict.
pub struct CheckReadiness {
    database: Arc<dyn DatabaseProbe>,
    cache: Arc<dyn CacheProbe>,
}

impl std::fmt::Debug for CheckReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckReadiness").finish_non_exhaustive()
    }
}

impl CheckReadiness {
    pub fn new(database: Arc<dyn DatabaseProbe>, cache: Arc<dyn CacheProbe>) -> Self {
        Self { database, cache }
    }

    pub async fn execute(&self) -> ReadinessReport {
        let (database, cache) = futures::join!(self.database.check(), self.cache.check());
        let status = match (database, cache) {
            (ComponentStatus::Ok, ComponentStatus::Ok) => Readiness::Ok,
            (ComponentStatus::Down, _) | (ComponentStatus::Degraded, _) => Readiness::Unavailable,
            (ComponentStatus::Ok, _) => Readiness::Degraded,
        };
        ReadinessReport {
            status,
            database,
            cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::health::{MockCacheProbe, MockDatabaseProbe};

    fn handler(db: ComponentStatus, cache: ComponentStatus) -> CheckReadiness {
        let mut database = MockDatabaseProbe::new();
        database.expect_check().times(1).return_const(db);
        let mut cache_probe = MockCacheProbe::new();
        cache_probe.expect_check().times(1).return_const(cache);
        CheckReadiness::new(Arc::new(database), Arc::new(cache_probe))
    }

    #[tokio::test]
    async fn ready_when_every_dependency_answers() {
        let report = handler(ComponentStatus::Ok, ComponentStatus::Ok).execute().await;
        assert_eq!(report.status, Readiness::Ok);
        assert!(report.is_ready());
    }

    #[tokio::test]
    async fn cache_outage_degrades_but_stays_ready() {
        let report = handler(ComponentStatus::Ok, ComponentStatus::Degraded)
            .execute()
            .await;
        assert_eq!(report.status, Readiness::Degraded);
        assert_eq!(report.cache, ComponentStatus::Degraded);
        assert!(report.is_ready());
    }

    #[tokio::test]
    async fn database_outage_makes_the_instance_unavailable_whatever_the_cache_says() {
        for cache in [ComponentStatus::Ok, ComponentStatus::Degraded] {
            let report = handler(ComponentStatus::Down, cache).execute().await;
            assert_eq!(report.status, Readiness::Unavailable);
            assert_eq!(report.database, ComponentStatus::Down);
            assert!(!report.is_ready());
        }
    }

    #[test]
    fn a_draining_instance_is_not_ready_whatever_its_dependencies_say() {
        let report = ReadinessReport {
            status: Readiness::Draining,
            database: ComponentStatus::Ok,
            cache: ComponentStatus::Ok,
        };
        assert!(!report.is_ready());
        assert_eq!(
            serde_json::to_value(report.status).ok(),
            Some(serde_json::json!("draining"))
        );
    }
}
