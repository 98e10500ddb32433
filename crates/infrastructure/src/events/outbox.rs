//! The outbox table: events written in their change's transaction, read in commit order by
//! the dispatcher and moved into the feed (`feed.rs`, where they get their position), and the
//! lease that makes one instance the dispatcher.
//!
//! Rows are deleted as they are published, and every batch starts at the lowest `seq` left:
//! a transaction that took a lower `seq` but committed after a higher one is published on the
//! next batch, never skipped (a high-water mark would skip it).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::{Envelope, EventType};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::{outbox_events, outbox_leases, webhook_deliveries, webhooks};

/// The dispatcher's lease row.
const LEASE: &str = "dispatcher";

/// Takes or renews the lease row `name` (one per background job that must run on one
/// instance at a time: the dispatcher's, the trash purge's) for `holder` until `now + ttl`;
/// `false` while another holder has an unexpired one. Instances' clocks must agree to well
/// within `ttl`.
pub(crate) async fn claim_lease(
    db: &Database,
    name: &str,
    holder: Uuid,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let until = now + ttl;
    let conn = db.connection();
    let renewed = outbox_leases::Entity::update_many()
        .col_expr(outbox_leases::Column::Holder, Expr::value(holder))
        .col_expr(outbox_leases::Column::ExpiresAt, Expr::value(until))
        .filter(outbox_leases::Column::Name.eq(name))
        .filter(
            Condition::any()
                .add(outbox_leases::Column::Holder.eq(holder))
                .add(outbox_leases::Column::ExpiresAt.lt(now)),
        )
        .exec(conn)
        .await
        .map_err(store_error)?;
    if renewed.rows_affected == 1 {
        return Ok(true);
    }
    // The very first claim: the row does not exist yet. Of racing inserts one wins.
    let inserted = outbox_leases::Entity::insert(outbox_leases::ActiveModel {
        name: Set(name.to_owned()),
        holder: Set(holder),
        expires_at: Set(until),
    })
    .on_conflict(
        OnConflict::column(outbox_leases::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .map_err(store_error)?;
    Ok(inserted == 1)
}

/// Writes `envelope` to the outbox on `conn`: the transaction of the change it describes.
pub(crate) async fn insert_event(conn: &impl ConnectionTrait, envelope: &Envelope) -> Result<(), StoreError> {
    insert_events(conn, &[envelope]).await
}

/// Writes `envelopes` to the outbox on `conn` in one statement, in the order given (their
/// `seq`s follow it).
pub(crate) async fn insert_events(
    conn: &impl ConnectionTrait,
    envelopes: &[&Envelope],
) -> Result<(), StoreError> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let rows = envelopes
        .iter()
        .map(|envelope| {
            let json = serde_json::to_value(envelope).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
            Ok(outbox_events::ActiveModel {
                id: Set(envelope.event.id),
                project_id: Set(envelope.event.project_id),
                event_type: Set(envelope.event.event_type.as_str().to_owned()),
                envelope: Set(json),
                created_at: Set(envelope.event.occurred_at),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    outbox_events::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// What moving a batch into the feed did.
#[derive(Debug, Default)]
pub struct Moved {
    /// Webhook deliveries queued.
    pub deliveries: usize,
    /// Notifications made, to be pushed to their users' streams.
    pub notifications: Vec<keel_application::notifications::UserNotification>,
}

/// One outbox row as the dispatcher reads it.
#[derive(Debug)]
pub struct Pending {
    pub seq: i64,
    /// `None` when the stored envelope no longer parses (it is dropped, and logged).
    pub envelope: Option<Envelope>,
}

/// The dispatcher's side of the outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Database,
}

impl Outbox {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Takes or renews the dispatcher lease for `holder` until `now + ttl`; `false` while
    /// another instance holds an unexpired one. Instances' clocks must agree to well within
    /// `ttl`.
    pub async fn claim_lease(
        &self,
        holder: Uuid,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        claim_lease(&self.db, LEASE, holder, now, ttl).await
    }

    /// Gives the lease up (at shutdown), so another instance takes over at once.
    pub async fn release_lease(&self, holder: Uuid) -> Result<(), StoreError> {
        outbox_leases::Entity::delete_many()
            .filter(outbox_leases::Column::Name.eq(LEASE))
            .filter(outbox_leases::Column::Holder.eq(holder))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The oldest `limit` events not yet published, in `seq` order.
    pub async fn next_batch(&self, limit: u64) -> Result<Vec<Pending>, StoreError> {
        let rows = outbox_events::Entity::find()
            .order_by_asc(outbox_events::Column::Seq)
            .limit(limit)
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let envelope = serde_json::from_value::<Envelope>(row.envelope)
                    .inspect_err(|e| {
                        tracing::error!(seq = row.seq, event_id = %row.id, error = %e, "an outbox event does not parse; dropping it");
                    })
                    .ok();
                Pending { seq: row.seq, envelope }
            })
            .collect())
    }

    /// Moves `batch` (read by [`Outbox::next_batch`]) into the feed: gives each event its
    /// feed position and stores it there, queues a webhook delivery of each event (carrying
    /// its position) for every enabled webhook of its project that subscribes to its type,
    /// makes the subscriptions and notifications the events call for, and deletes the events
    /// from the outbox, in one transaction that commits only while `holder` still holds the
    /// lease. Answers what it did, or `None` when the lease was lost (nothing changed; the
    /// new holder moves the batch).
    pub async fn finish(
        &self,
        holder: Uuid,
        now: DateTime<Utc>,
        ttl: Duration,
        batch: &[Pending],
    ) -> Result<Option<Moved>, StoreError> {
        let txn = self.db.begin_write().await?;
        let still_ours = outbox_leases::Entity::update_many()
            .col_expr(outbox_leases::Column::ExpiresAt, Expr::value(now + ttl))
            .filter(outbox_leases::Column::Name.eq(LEASE))
            .filter(outbox_leases::Column::Holder.eq(holder))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if still_ours.rows_affected == 0 {
            txn.rollback().await.map_err(store_error)?;
            return Ok(None);
        }
        let envelopes: Vec<&Envelope> = batch.iter().filter_map(|p| p.envelope.as_ref()).collect();
        // Their feed positions, in the order this holder found them committed.
        let positioned = super::feed::append(&txn, &envelopes, now).await?;
        let notifications = crate::notifications::fan_out(&txn, &positioned, now).await?;
        let positioned: Vec<&Envelope> = positioned.iter().collect();
        let deliveries = deliveries_for(&txn, &positioned, now).await?;
        let queued = deliveries.len();
        for chunk in deliveries.chunks(200) {
            webhook_deliveries::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
                .map_err(store_error)?;
        }
        let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
        outbox_events::Entity::delete_many()
            .filter(outbox_events::Column::Seq.is_in(seqs))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok(Some(Moved {
            deliveries: queued,
            notifications,
        }))
    }

    /// The events moved into the feed and not yet handed to the bus, in order (at most
    /// `limit`).
    pub async fn unpublished(&self, limit: u64) -> Result<Vec<Envelope>, StoreError> {
        super::feed::unpublished(&self.db, limit).await
    }

    /// Records that the bus got every event up to `seq`.
    pub async fn mark_published(&self, seq: i64) -> Result<(), StoreError> {
        super::feed::mark_published(&self.db, seq).await
    }

    /// How many events wait to be published: in the outbox, and in the feed above the
    /// `published` mark.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        let outbox = outbox_events::Entity::find()
            .count(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(outbox + super::feed::unpublished_count(&self.db).await?)
    }
}

/// One delivery row per (event, subscribed enabled webhook of its project).
async fn deliveries_for(
    conn: &impl ConnectionTrait,
    envelopes: &[&Envelope],
    now: DateTime<Utc>,
) -> Result<Vec<webhook_deliveries::ActiveModel>, StoreError> {
    let projects: HashSet<Uuid> = envelopes.iter().map(|e| e.event.project_id).collect();
    if projects.is_empty() {
        return Ok(Vec::new());
    }
    let hooks = webhooks::Entity::find()
        .filter(webhooks::Column::ProjectId.is_in(projects))
        .filter(webhooks::Column::Enabled.eq(true))
        .order_by_asc(webhooks::Column::CreatedAt)
        .all(conn)
        .await
        .map_err(store_error)?;
    let mut by_project: HashMap<Uuid, Vec<(Uuid, HashSet<EventType>)>> = HashMap::new();
    for hook in hooks {
        let types = subscribed_types(&hook.events);
        by_project
            .entry(hook.project_id)
            .or_default()
            .push((hook.id, types));
    }
    let mut rows = Vec::new();
    for envelope in envelopes {
        let event = &envelope.event;
        let Some(hooks) = by_project.get(&event.project_id) else {
            continue;
        };
        let subscribed: Vec<Uuid> = hooks
            .iter()
            .filter(|(_, types)| types.contains(&event.event_type))
            .map(|(id, _)| *id)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let payload = serde_json::to_string(event).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        for webhook_id in subscribed {
            rows.push(webhook_deliveries::ActiveModel {
                id: Set(Uuid::now_v7()),
                webhook_id: Set(webhook_id),
                event_id: Set(event.id),
                event_type: Set(event.event_type.as_str().to_owned()),
                payload: Set(payload.clone()),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                next_attempt_at: Set(now),
                last_status_code: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            });
        }
    }
    Ok(rows)
}

/// The event types a stored subscription names (unknown names, which validation keeps out,
/// are ignored).
pub(crate) fn subscribed_types(events: &serde_json::Value) -> HashSet<EventType> {
    events
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(serde_json::Value::as_str)
                .filter_map(EventType::parse)
                .collect()
        })
        .unwrap_or_default()
}
