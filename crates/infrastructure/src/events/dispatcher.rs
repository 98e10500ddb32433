//! The outbox dispatcher: publishes committed events to the bus and queues their webhook
//! deliveries, at least once and in commit order per project.
//!
//! One instance dispatches at a time: the holder of a lease row that it renews while it runs
//! (`lease_ttl`, 10 s by default). Every instance runs the loop; the others only try to take
//! the lease, so when the holder dies another takes over within one lease. A batch is moved,
//! in one transaction that commits only while the lease is still held, from the outbox into
//! the feed, where each event gets its position (`feed.rs`), with its webhook deliveries;
//! then what the feed holds above the `published` mark is published and the mark moved. A
//! crash before the move's commit leaves the batch in the outbox; one between the commit
//! and the mark publishes it again (at least once), never loses it.
//!
//! Latency: a change committed on this instance wakes the loop at once; one committed on
//! another instance is seen at the next poll (`poll_interval`, 200 ms by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use keel_application::events::EventBus;
use keel_domain::StoreError;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::outbox::Outbox;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    pub poll_interval: Duration,
    pub lease_ttl: Duration,
    pub batch_size: u64,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(10),
            batch_size: 256,
        }
    }
}

/// What one pass over the outbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    /// Events moved from the outbox into the feed.
    pub moved: usize,
    /// Events handed to the bus.
    pub published: usize,
    pub deliveries: usize,
    /// The lease was lost before the batch could be marked: another instance goes on.
    pub lost_lease: bool,
}

pub struct Dispatcher {
    outbox: Outbox,
    bus: Arc<dyn EventBus>,
    metrics: Option<Arc<Metrics>>,
    settings: DispatcherSettings,
    /// This instance's identity as a lease holder.
    holder: Uuid,
    leading: Arc<AtomicBool>,
    /// When the lease was last claimed, renewed or found taken: the lease row is touched
    /// only every third of a lease, not at every poll.
    lease_checked: std::sync::Mutex<Option<std::time::Instant>>,
    /// Rung when deliveries were queued (the webhook sender waits on it).
    deliveries_queued: Arc<Notify>,
    /// The feed may hold events above the `published` mark: set at start, when the lease
    /// is taken (a holder may have died between storing and publishing) and after each
    /// move; the feed is read only then, not at every poll.
    unpublished: AtomicBool,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(
        outbox: Outbox,
        bus: Arc<dyn EventBus>,
        metrics: Option<Arc<Metrics>>,
        settings: DispatcherSettings,
    ) -> Self {
        Self {
            outbox,
            bus,
            metrics,
            settings,
            holder: Uuid::now_v7(),
            leading: Arc::new(AtomicBool::new(false)),
            lease_checked: std::sync::Mutex::new(None),
            deliveries_queued: Arc::new(Notify::new()),
            unpublished: AtomicBool::new(true),
        }
    }

    /// This instance's identity as a lease holder.
    pub fn holder(&self) -> Uuid {
        self.holder
    }

    /// Whether this instance holds the lease (the webhook sender runs only then).
    pub fn leading(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.leading)
    }

    /// Rung whenever deliveries are queued.
    pub fn deliveries_queued(&self) -> Arc<Notify> {
        Arc::clone(&self.deliveries_queued)
    }

    /// Takes or keeps the lease; `false` while another instance holds it. The row is read
    /// at most every third of a lease: in between, the last answer stands (a holder's
    /// lease cannot lapse in that time; a waiting instance takes over at most a third of a
    /// lease late).
    pub async fn claim(&self) -> Result<bool, StoreError> {
        let recent = self
            .lease_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < self.settings.lease_ttl / 3);
        if recent {
            return Ok(self.leading.load(Ordering::Acquire));
        }
        let held = self
            .outbox
            .claim_lease(self.holder, Utc::now(), self.settings.lease_ttl)
            .await;
        let leading = matches!(held, Ok(true));
        if held.is_ok() {
            self.lease_checked(Some(std::time::Instant::now()));
        }
        if self.leading.swap(leading, Ordering::AcqRel) != leading {
            if leading {
                self.unpublished.store(true, Ordering::Release);
            }
            tracing::info!(holder = %self.holder, leading, "outbox dispatcher lease changed hands");
        }
        held
    }

    /// Moves one batch of committed events into the feed (giving them their positions and
    /// queueing their webhook deliveries), then publishes what the feed holds above the
    /// `published` mark, if this instance holds the lease (call [`Dispatcher::claim`] first).
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let batch = self.outbox.next_batch(self.settings.batch_size).await?;
        let mut deliveries = 0;
        let mut notifications = Vec::new();
        if !batch.is_empty() {
            let Some(moved) = self
                .outbox
                .finish(self.holder, Utc::now(), self.settings.lease_ttl, &batch)
                .await?
            else {
                self.leading.store(false, Ordering::Release);
                self.lease_checked(None);
                tracing::warn!("outbox dispatcher lost its lease mid-batch; the next holder moves it");
                return Ok(Pass {
                    lost_lease: true,
                    ..Pass::default()
                });
            };
            // The batch's transaction renewed the lease.
            self.lease_checked(Some(std::time::Instant::now()));
            deliveries = moved.deliveries;
            if deliveries > 0 {
                self.deliveries_queued.notify_one();
            }
            self.unpublished.store(true, Ordering::Release);
            notifications = moved.notifications;
        }
        // Stored first, published second: a client that subscribes and then reads the feed
        // misses nothing. Left unpublished by a holder that died in between: published now.
        let mut published = 0;
        if self.unpublished.swap(false, Ordering::AcqRel) {
            let events = match self.outbox.unpublished(self.settings.batch_size).await {
                Ok(events) => events,
                Err(e) => {
                    self.unpublished.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            if let Some(last) = events.last().and_then(|e| e.event.seq) {
                if let Err(e) = self.bus.publish(&events).await {
                    tracing::warn!(error = %e, events = events.len(), "events reached only this instance's clients");
                }
                if let Err(e) = self.outbox.mark_published(last).await {
                    self.unpublished.store(true, Ordering::Release);
                    return Err(e);
                }
                published = events.len();
                if u64::try_from(published).unwrap_or(u64::MAX) >= self.settings.batch_size {
                    self.unpublished.store(true, Ordering::Release);
                }
            }
        }
        // Pushed once, after their events: a notification lost here is still in its user's
        // list (the list is the record; the push is a courtesy).
        if !notifications.is_empty()
            && let Err(e) = self.bus.publish_notifications(&notifications).await
        {
            tracing::warn!(error = %e, notifications = notifications.len(), "notifications reached only this instance's clients");
        }
        if batch.is_empty() && published == 0 {
            self.report_pending(0);
        } else {
            self.report_pending(self.outbox.pending().await?);
        }
        Ok(Pass {
            moved: batch.len(),
            published,
            deliveries,
            lost_lease: false,
        })
    }

    /// Claims, then publishes until the outbox is empty (or the lease is lost).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        if !self.claim().await? {
            return Ok(0);
        }
        let mut published = 0;
        loop {
            let pass = self.pass().await?;
            published += pass.published;
            let full =
                u64::try_from(pass.published.max(pass.moved)).unwrap_or(u64::MAX) >= self.settings.batch_size;
            if pass.lost_lease || !full {
                return Ok(published);
            }
        }
    }

    fn lease_checked(&self, at: Option<std::time::Instant>) {
        *self
            .lease_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    fn report_pending(&self, pending: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.set_outbox_pending(pending);
        }
    }

    /// Runs until `stop` turns `true`; then publishes what is committed and gives the lease
    /// up.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        crate::db::spawn_background(async move {
            let mut failing = false;
            loop {
                match self.drain().await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "outbox dispatch failed; retrying");
                    }
                    Err(e) => tracing::debug!(error = %e, "outbox dispatch still failing"),
                }
                tokio::select! {
                    () = self.outbox.database().outbox_wait() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = stop.changed() => break,
                }
            }
            if let Err(e) = self.drain().await {
                tracing::warn!(error = %e, "outbox not drained at shutdown; another instance or the next start publishes it");
            }
            if self.leading.load(Ordering::Acquire) {
                if let Err(e) = self.outbox.release_lease(self.holder).await {
                    tracing::debug!(error = %e, "outbox lease not released; it expires by itself");
                }
                self.leading.store(false, Ordering::Release);
            }
        })
    }
}
