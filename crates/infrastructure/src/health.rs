//! Readiness probes of the database and the shared cache.

use std::time::Duration;

use async_trait::async_trait;
use keel_domain::health::{CacheProbe, ComponentStatus, DatabaseProbe};
use sea_orm::{ConnectionTrait, Statement};

use crate::db::Database;

/// Runs `SELECT 1` within a timeout.
#[derive(Debug, Clone)]
pub struct SqlDatabaseProbe {
    db: Database,
    timeout: Duration,
}

impl SqlDatabaseProbe {
    pub fn new(db: Database, timeout: Duration) -> Self {
        Self { db, timeout }
    }
}

#[async_trait]
impl DatabaseProbe for SqlDatabaseProbe {
    async fn check(&self) -> ComponentStatus {
        let conn = self.db.connection();
        let stmt = Statement::from_string(conn.get_database_backend(), "SELECT 1");
        match tokio::time::timeout(self.timeout, conn.query_one_raw(stmt)).await {
            Ok(Ok(_)) => ComponentStatus::Ok,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database readiness check failed");
                ComponentStatus::Down
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "database readiness check timed out"
                );
                ComponentStatus::Down
            }
        }
    }
}

/// The probe when no shared cache is configured: the in-process cache cannot fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessCacheProbe;

#[async_trait]
impl CacheProbe for InProcessCacheProbe {
    async fn check(&self) -> ComponentStatus {
        ComponentStatus::Ok
    }
}
