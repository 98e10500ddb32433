//! The resumable event feed (docs/events.md, adr/0021): every published event with its feed
//! position `seq`, kept for the retention and read back by replays and `GET /events/log`.
//!
//! - **Positions in commit order.** The outbox's own `seq` is taken at insert, and on
//!   PostgreSQL a transaction that took a lower one may commit after a higher one. Feed
//!   positions are therefore given by the dispatcher, under its lease, in the transaction
//!   that moves committed events out of the outbox ([`append`]): `MAX(seq) + 1` onwards, in
//!   the order the dispatcher found them committed. Only the lease holder appends, and its
//!   transaction starts by renewing the lease row (which serialises any two holders), so
//!   positions have no holes and become visible in order: a reader that sees `n` sees every
//!   position below it.
//! - **Stored, then published.** An event reaches the bus only after its row is committed,
//!   so a client that subscribes first and then reads the feed misses nothing: whatever was
//!   published before it subscribed is already in the feed. The mark `published` says how
//!   far the bus got; what lies above it after a crash is published by the next holder.
//! - **Retention.** [`purge`] deletes, by position, the events older than the retention,
//!   never the newest one (so the head stays known), on one instance at a time
//!   ([`FeedPurgeTask`], lease `event-feed-purge`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_application::events::{EventFeed, FeedError, FeedPage, FeedReader};
use keel_domain::StoreError;
use keel_domain::clock::Clock;
use keel_domain::events::Envelope;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::outbox::claim_lease;
use crate::db::{Database, store_error};
use crate::entities::{event_feed, event_feed_marks, event_feed_recipients, project_members};

/// The mark of the highest position handed to the bus.
const PUBLISHED: &str = "published";
/// The purge's lease row.
const PURGE_LEASE: &str = "event-feed-purge";

fn unexpected(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unexpected(Box::new(e))
}

/// The highest position in the feed (`None`: empty).
async fn max_seq(conn: &impl ConnectionTrait) -> Result<Option<i64>, StoreError> {
    event_feed::Entity::find()
        .select_only()
        .column_as(Expr::col(event_feed::Column::Seq).max(), "max")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await
        .map_err(store_error)
        .map(Option::flatten)
}

/// The lowest position still kept (`None`: empty).
async fn min_seq(conn: &impl ConnectionTrait) -> Result<Option<i64>, StoreError> {
    event_feed::Entity::find()
        .select_only()
        .column_as(Expr::col(event_feed::Column::Seq).min(), "min")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await
        .map_err(store_error)
        .map(Option::flatten)
}

/// The highest position handed to the bus.
async fn published_mark(conn: &impl ConnectionTrait) -> Result<i64, StoreError> {
    Ok(event_feed_marks::Entity::find_by_id(PUBLISHED.to_owned())
        .one(conn)
        .await
        .map_err(store_error)?
        .map_or(0, |m| m.seq))
}

/// Gives `envelopes` their feed positions, after the highest one, and stores them on `txn`
/// (the dispatcher's lease-holding transaction). Answers them with their `seq`.
pub(crate) async fn append(
    txn: &impl ConnectionTrait,
    envelopes: &[&Envelope],
    now: DateTime<Utc>,
) -> Result<Vec<Envelope>, StoreError> {
    if envelopes.is_empty() {
        return Ok(Vec::new());
    }
    // The mark too: were the feed ever empty after a purge, positions would not restart.
    let mut next = Ord::max(max_seq(txn).await?.unwrap_or(0), published_mark(txn).await?) + 1;
    let mut positioned = Vec::with_capacity(envelopes.len());
    let mut rows = Vec::with_capacity(envelopes.len());
    let mut recipients = Vec::new();
    for envelope in envelopes {
        let mut envelope = (*envelope).clone();
        envelope.event.seq = Some(next);
        rows.push(event_feed::ActiveModel {
            seq: Set(next),
            id: Set(envelope.event.id),
            project_id: Set(envelope.event.project_id),
            event_type: Set(envelope.event.event_type.as_str().to_owned()),
            envelope: Set(serde_json::to_value(&envelope).map_err(unexpected)?),
            created_at: Set(now),
        });
        let mut named = envelope.also_to.clone();
        named.sort_unstable();
        named.dedup();
        recipients.extend(
            named
                .into_iter()
                .map(|user_id| event_feed_recipients::ActiveModel {
                    seq: Set(next),
                    user_id: Set(user_id),
                }),
        );
        positioned.push(envelope);
        next += 1;
    }
    for chunk in rows.chunks(200) {
        event_feed::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(store_error)?;
    }
    for chunk in recipients.chunks(500) {
        event_feed_recipients::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(store_error)?;
    }
    Ok(positioned)
}

/// The stored events above the `published` mark, at most `limit`, in order: what the
/// dispatcher has yet to hand to the bus.
pub(crate) async fn unpublished(db: &Database, limit: u64) -> Result<Vec<Envelope>, StoreError> {
    let conn = db.connection();
    let mark = published_mark(conn).await?;
    let rows = event_feed::Entity::find()
        .filter(event_feed::Column::Seq.gt(mark))
        .order_by_asc(event_feed::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
        .map_err(store_error)?;
    Ok(rows.into_iter().filter_map(parse).collect())
}

/// Moves the `published` mark up to `seq` (never down: a late, deposed holder cannot undo a
/// newer one's progress).
pub(crate) async fn mark_published(db: &Database, seq: i64) -> Result<(), StoreError> {
    event_feed_marks::Entity::update_many()
        .col_expr(event_feed_marks::Column::Seq, Expr::value(seq))
        .filter(event_feed_marks::Column::Name.eq(PUBLISHED))
        .filter(event_feed_marks::Column::Seq.lt(seq))
        .exec(db.connection())
        .await
        .map_err(store_error)?;
    Ok(())
}

/// How many stored events wait for the bus.
pub(crate) async fn unpublished_count(db: &Database) -> Result<u64, StoreError> {
    let conn = db.connection();
    let head = max_seq(conn).await?.unwrap_or(0);
    let mark = published_mark(conn).await?;
    Ok(u64::try_from(head - mark).unwrap_or(0))
}

fn parse(row: event_feed::Model) -> Option<Envelope> {
    serde_json::from_value::<Envelope>(row.envelope)
        .inspect_err(|e| {
            tracing::error!(seq = row.seq, event_id = %row.id, error = %e, "a feed event does not parse; skipping it");
        })
        .ok()
        .map(|mut envelope| {
            envelope.event.seq = Some(row.seq);
            envelope
        })
}

/// Deletes the events that got their position before `now - retention`, by position so that
/// what is kept has no holes, and never the newest one. Answers how many went.
///
/// # Errors
/// A store error (nothing is deleted).
pub async fn purge(
    db: &Database,
    now: DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<u64, StoreError> {
    let txn = db.begin_write().await?;
    let Some(head) = max_seq(&txn).await? else {
        txn.rollback().await.map_err(store_error)?;
        return Ok(0);
    };
    let expired: Option<i64> = event_feed::Entity::find()
        .select_only()
        .column_as(Expr::col(event_feed::Column::Seq).max(), "max")
        .filter(event_feed::Column::CreatedAt.lt(now - retention))
        .filter(event_feed::Column::Seq.lt(head))
        .into_tuple::<Option<i64>>()
        .one(&txn)
        .await
        .map_err(store_error)?
        .flatten();
    let Some(through) = expired else {
        txn.rollback().await.map_err(store_error)?;
        return Ok(0);
    };
    let purged = event_feed::Entity::delete_many()
        .filter(event_feed::Column::Seq.lte(through))
        .exec(&txn)
        .await
        .map_err(store_error)?
        .rows_affected;
    event_feed_recipients::Entity::delete_many()
        .filter(event_feed_recipients::Column::Seq.lte(through))
        .exec(&txn)
        .await
        .map_err(store_error)?;
    txn.commit().await.map_err(store_error)?;
    Ok(purged)
}

/// The feed as replays and `GET /events/log` read it.
#[derive(Debug, Clone)]
pub struct SeaOrmEventFeed {
    db: Database,
}

impl SeaOrmEventFeed {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl EventFeed for SeaOrmEventFeed {
    async fn page(&self, reader: &FeedReader, after: Option<i64>, limit: u64) -> Result<FeedPage, FeedError> {
        let conn = self.db.connection();
        // Read before the page: every position up to it is committed (positions become
        // visible in order), so a short page has seen all of them.
        let head = max_seq(conn).await?.unwrap_or(0);
        if after.is_some_and(|after| after > head) {
            return Err(FeedError::Gone);
        }
        let start = after.unwrap_or(0);
        let member_of = Query::select()
            .column(project_members::Column::ProjectId)
            .from(project_members::Entity)
            .and_where(project_members::Column::UserId.eq(reader.user_id))
            .to_owned();
        let named = Query::select()
            .column(event_feed_recipients::Column::Seq)
            .from(event_feed_recipients::Entity)
            .and_where(event_feed_recipients::Column::UserId.eq(reader.user_id))
            .and_where(event_feed_recipients::Column::Seq.gt(start))
            .to_owned();
        let mut visible = Condition::all().add(event_feed::Column::Seq.gt(start)).add(
            Condition::any()
                .add(event_feed::Column::ProjectId.in_subquery(member_of))
                .add(event_feed::Column::Seq.in_subquery(named)),
        );
        if let Some(projects) = &reader.projects {
            visible = visible.add(event_feed::Column::ProjectId.is_in(projects.iter().copied()));
        }
        let rows = event_feed::Entity::find()
            .filter(visible)
            .order_by_asc(event_feed::Column::Seq)
            .limit(limit)
            .all(conn)
            .await
            .map_err(store_error)?;
        // Read after the page: had the purge taken events after `after` meanwhile, the page
        // would have a hole.
        if let Some(after) = after
            && min_seq(conn).await?.is_some_and(|oldest| after < oldest - 1)
        {
            return Err(FeedError::Gone);
        }
        let full = u64::try_from(rows.len()).unwrap_or(u64::MAX) >= limit;
        let last = rows.last().map(|r| r.seq);
        let next_after = match last {
            Some(last) if full => last,
            last => Ord::max(last.unwrap_or(start), head),
        };
        let events = rows.into_iter().filter_map(parse).collect();
        Ok(FeedPage { events, next_after })
    }

    async fn head(&self) -> Result<i64, StoreError> {
        Ok(max_seq(self.db.connection()).await?.unwrap_or(0))
    }
}

/// What one purge pass did: `None` when another instance holds the lease.
///
/// # Errors
/// A store error of the lease or of the purge.
pub async fn purge_pass(
    db: &Database,
    holder: Uuid,
    now: DateTime<Utc>,
    retention: chrono::Duration,
    lease_ttl: Duration,
) -> Result<Option<u64>, StoreError> {
    if !claim_lease(db, PURGE_LEASE, holder, now, lease_ttl).await? {
        return Ok(None);
    }
    purge(db, now, retention).await.map(Some)
}

/// The running purge of the feed; dropping the handle stops it.
#[derive(Debug)]
pub struct FeedPurgeTask(tokio::task::JoinHandle<()>);

impl FeedPurgeTask {
    /// Purges now and then every `every`, on the instance holding the lease (held for two
    /// intervals, renewed by each pass). Must be called inside a Tokio runtime.
    pub fn spawn(db: Database, clock: Arc<dyn Clock>, retention: chrono::Duration, every: Duration) -> Self {
        let holder = Uuid::now_v7();
        Self(crate::db::spawn_background(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match purge_pass(&db, holder, clock.now(), retention, every * 2).await {
                    Ok(None | Some(0)) => {}
                    Ok(Some(purged)) => tracing::info!(purged, "purged expired events from the feed"),
                    Err(e) => tracing::warn!(error = %e, "purging the event feed failed"),
                }
            }
        }))
    }
}

impl FeedPurgeTask {
    /// Stops the task (also done on drop).
    pub fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for FeedPurgeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
