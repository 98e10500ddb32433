//! The background purge of expired trash: every `every`, the instance that holds the
//! `trash-purge` lease (the dispatcher's lease table and claim, [`claim_lease`]) deletes for
//! good the tasks that have been in a trash longer than the retention
//! (`KEEL_TRASH_RETENTION_DAYS`), through the use case
//! [`purge_expired_trash`] (audited and evented as `task.purged`).
//!
//! The lease is held for two intervals and renewed by every pass of its holder, so one
//! instance purges while it lives and another takes over within two intervals after it
//! stops. Correctness does not depend on it: a task is purged (and recorded) once even if
//! two instances purged at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_application::AppError;
use keel_application::tracking::TrackingPorts;
use keel_application::tracking::tasks::purge_expired_trash;
use keel_domain::clock::Clock;
use uuid::Uuid;

use crate::db::Database;
use crate::events::outbox::claim_lease;

/// The lease row of the purge.
const LEASE: &str = "trash-purge";

/// Takes or renews the purge's lease for `holder` until `now + ttl`; `false` while another
/// instance holds it.
///
/// # Errors
/// A store error.
pub async fn claim_purge_lease(
    db: &Database,
    holder: Uuid,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool, keel_domain::StoreError> {
    claim_lease(db, LEASE, holder, now, ttl).await
}

/// What one pass did: `None` when another instance holds the lease.
///
/// # Errors
/// A store error of the lease or of the purge (the pass stops there; the next one goes on).
pub async fn purge_pass(
    db: &Database,
    ports: &TrackingPorts,
    holder: Uuid,
    now: DateTime<Utc>,
    retention: chrono::Duration,
    lease_ttl: Duration,
) -> Result<Option<u64>, AppError> {
    if !claim_purge_lease(db, holder, now, lease_ttl).await? {
        return Ok(None);
    }
    purge_expired_trash(ports, now, retention).await.map(Some)
}

/// The running purge; dropping the handle stops it.
#[derive(Debug)]
pub struct TrashPurgeTask(tokio::task::JoinHandle<()>);

impl TrashPurgeTask {
    /// Purges now and then every `every`. Must be called inside a Tokio runtime.
    pub fn spawn(
        db: Database,
        ports: TrackingPorts,
        clock: Arc<dyn Clock>,
        retention: chrono::Duration,
        every: Duration,
    ) -> Self {
        let holder = Uuid::now_v7();
        Self(crate::db::spawn_background(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match purge_pass(&db, &ports, holder, clock.now(), retention, every * 2).await {
                    Ok(None | Some(0)) => {}
                    Ok(Some(purged)) => tracing::info!(purged, "purged expired tasks from the trash"),
                    Err(e) => tracing::warn!(error = %e, "purging expired trash failed"),
                }
            }
        }))
    }

    /// Stops the task (also done on drop).
    pub fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for TrashPurgeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
