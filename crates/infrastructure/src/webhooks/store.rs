//! Webhooks and their deliveries on SeaORM: the [`WebhookRepository`] of the API, and the
//! queue operations of the [`sender`](super::sender).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::events::EventType;
use keel_domain::webhooks::{Delivery, DeliveryAttempt, DeliveryStatus, Webhook, WebhookRepository};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::audit::insert_entry;
use crate::db::{Database, fetch_page, store_error};
use crate::entities::{webhook_attempts, webhook_deliveries, webhooks};
use crate::events::outbox::subscribed_types;
use crate::tracking::lock_project;

fn corrupt(table: &str, id: Uuid, what: &str) -> StoreError {
    StoreError::Unexpected(format!("{table} row {id} has an invalid {what}").into())
}

pub(crate) fn to_webhook(m: webhooks::Model) -> Webhook {
    let mut events: Vec<EventType> = subscribed_types(&m.events).into_iter().collect();
    events.sort();
    Webhook {
        id: m.id,
        project_id: m.project_id,
        url: m.url,
        events,
        enabled: m.enabled,
        disabled_reason: m.disabled_reason,
        created_by: m.created_by,
        created_at: m.created_at,
        updated_at: m.updated_at,
        consecutive_failures: u32::try_from(m.consecutive_failures).unwrap_or(0),
        open_until: m.open_until,
        failing_since: m.failing_since,
    }
}

fn events_json(events: &[EventType]) -> serde_json::Value {
    serde_json::Value::Array(
        events
            .iter()
            .map(|e| serde_json::Value::String(e.as_str().to_owned()))
            .collect(),
    )
}

fn to_attempt(m: &webhook_attempts::Model) -> DeliveryAttempt {
    DeliveryAttempt {
        number: u32::try_from(m.number).unwrap_or(0),
        started_at: m.started_at,
        duration_ms: u32::try_from(m.duration_ms).unwrap_or(0),
        status_code: m.status_code.and_then(|c| u16::try_from(c).ok()),
        error: m.error.clone(),
    }
}

fn to_delivery(m: webhook_deliveries::Model, attempts: Vec<DeliveryAttempt>) -> Result<Delivery, StoreError> {
    let status =
        DeliveryStatus::parse(&m.status).ok_or_else(|| corrupt("webhook_deliveries", m.id, "status"))?;
    let event_type =
        EventType::parse(&m.event_type).ok_or_else(|| corrupt("webhook_deliveries", m.id, "event type"))?;
    Ok(Delivery {
        id: m.id,
        webhook_id: m.webhook_id,
        event_id: m.event_id,
        event_type,
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(m.next_attempt_at),
        status,
        created_at: m.created_at,
        updated_at: m.updated_at,
        attempts,
    })
}

/// Ends a write to one webhook: nothing touched is `NotFound` (rolled back); otherwise the
/// audit entry joins the transaction and all is committed.
async fn audited_unless_missing(
    txn: DatabaseTransaction,
    rows_affected: u64,
    audit: &AuditEntry,
) -> Result<(), StoreError> {
    if rows_affected == 0 {
        txn.rollback().await.map_err(store_error)?;
        return Err(StoreError::NotFound);
    }
    insert_entry(&txn, audit).await?;
    txn.commit().await.map_err(store_error)
}

#[derive(Debug, Clone)]
pub struct SeaOrmWebhookRepository {
    db: Database,
}

impl SeaOrmWebhookRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn with_attempts(&self, rows: Vec<webhook_deliveries::Model>) -> Result<Vec<Delivery>, StoreError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut attempts: HashMap<Uuid, Vec<DeliveryAttempt>> = HashMap::new();
        if !ids.is_empty() {
            let all = webhook_attempts::Entity::find()
                .filter(webhook_attempts::Column::DeliveryId.is_in(ids))
                .order_by_asc(webhook_attempts::Column::Number)
                .all(self.db.connection())
                .await
                .map_err(store_error)?;
            for a in &all {
                attempts.entry(a.delivery_id).or_default().push(to_attempt(a));
            }
        }
        rows.into_iter()
            .map(|row| {
                let log = attempts.remove(&row.id).unwrap_or_default();
                to_delivery(row, log)
            })
            .collect()
    }
}

#[async_trait]
impl WebhookRepository for SeaOrmWebhookRepository {
    async fn create(
        &self,
        w: &Webhook,
        sealed_secret: &str,
        audit: &AuditEntry,
        limit: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        // The cap is counted with the project locked (`FOR UPDATE` on PostgreSQL; SQLite's
        // write lock is held from `begin_write`), so concurrent creates count one at a time.
        let project = lock_project(&txn, w.project_id).await?;
        if !project {
            txn.rollback().await.map_err(store_error)?;
            return Err(StoreError::NotFound);
        }
        let existing = webhooks::Entity::find()
            .filter(webhooks::Column::ProjectId.eq(w.project_id))
            .count(&txn)
            .await
            .map_err(store_error)?;
        if existing >= limit {
            txn.rollback().await.map_err(store_error)?;
            return Err(StoreError::Conflict("webhooks per project".into()));
        }
        webhooks::Entity::insert(webhooks::ActiveModel {
            id: Set(w.id),
            project_id: Set(w.project_id),
            url: Set(w.url.clone()),
            events: Set(events_json(&w.events)),
            secret: Set(sealed_secret.to_owned()),
            enabled: Set(w.enabled),
            disabled_reason: Set(w.disabled_reason.clone()),
            created_by: Set(w.created_by),
            created_at: Set(w.created_at),
            updated_at: Set(w.updated_at),
            consecutive_failures: Set(0),
            open_until: Set(None),
            failing_since: Set(None),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        insert_entry(&txn, audit).await?;
        txn.commit().await.map_err(store_error)
    }

    async fn find(&self, project_id: Uuid, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        Ok(webhooks::Entity::find_by_id(id)
            .filter(webhooks::Column::ProjectId.eq(project_id))
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_webhook))
    }

    async fn list(
        &self,
        project_id: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Webhook>, u64), StoreError> {
        let select = webhooks::Entity::find()
            .filter(webhooks::Column::ProjectId.eq(project_id))
            .order_by_asc(webhooks::Column::CreatedAt)
            .order_by_asc(webhooks::Column::Id);
        let (rows, total) = fetch_page(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_webhook).collect(), total))
    }

    async fn update(&self, w: &Webhook, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        if w.enabled {
            // Enabling a disabled webhook closes its breaker and restarts its failure clock.
            webhooks::Entity::update_many()
                .col_expr(webhooks::Column::ConsecutiveFailures, Expr::value(0))
                .col_expr(
                    webhooks::Column::OpenUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(
                    webhooks::Column::FailingSince,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(webhooks::Column::Id.eq(w.id))
                .filter(webhooks::Column::Enabled.eq(false))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        let update = webhooks::Entity::update_many()
            .col_expr(webhooks::Column::Url, Expr::value(w.url.clone()))
            .col_expr(webhooks::Column::Events, Expr::value(events_json(&w.events)))
            .col_expr(webhooks::Column::Enabled, Expr::value(w.enabled))
            .col_expr(
                webhooks::Column::DisabledReason,
                Expr::value(w.disabled_reason.clone()),
            )
            .col_expr(webhooks::Column::UpdatedAt, Expr::value(w.updated_at));
        let result = update
            .filter(webhooks::Column::Id.eq(w.id))
            .filter(webhooks::Column::ProjectId.eq(w.project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        audited_unless_missing(txn, result.rows_affected, audit).await
    }

    async fn delete(&self, project_id: Uuid, id: Uuid, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let result = webhooks::Entity::delete_many()
            .filter(webhooks::Column::Id.eq(id))
            .filter(webhooks::Column::ProjectId.eq(project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        audited_unless_missing(txn, result.rows_affected, audit).await
    }

    async fn deliveries(
        &self,
        webhook_id: Uuid,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut select =
            webhook_deliveries::Entity::find().filter(webhook_deliveries::Column::WebhookId.eq(webhook_id));
        if let Some(before) = before {
            select = select.filter(webhook_deliveries::Column::Id.lt(before));
        }
        let rows = select
            .order_by_desc(webhook_deliveries::Column::Id)
            .limit(limit)
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        self.with_attempts(rows).await
    }

    async fn find_delivery(&self, webhook_id: Uuid, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let row = webhook_deliveries::Entity::find_by_id(id)
            .filter(webhook_deliveries::Column::WebhookId.eq(webhook_id))
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(self.with_attempts(row.into_iter().collect()).await?.pop())
    }

    async fn redeliver(
        &self,
        webhook_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        let Some(row) = webhook_deliveries::Entity::find_by_id(id)
            .filter(webhook_deliveries::Column::WebhookId.eq(webhook_id))
            .one(&txn)
            .await
            .map_err(store_error)?
        else {
            txn.rollback().await.map_err(store_error)?;
            return Err(StoreError::NotFound);
        };
        // Guarded on the status read: a sender finishing it meanwhile does not race us.
        let result = webhook_deliveries::Entity::update_many()
            .col_expr(
                webhook_deliveries::Column::Status,
                Expr::value(DeliveryStatus::Pending.as_str()),
            )
            .col_expr(webhook_deliveries::Column::Attempts, Expr::value(0))
            .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(at))
            .col_expr(webhook_deliveries::Column::UpdatedAt, Expr::value(at))
            .filter(webhook_deliveries::Column::Id.eq(id))
            .filter(webhook_deliveries::Column::Status.eq(row.status.clone()))
            .filter(webhook_deliveries::Column::Status.ne(DeliveryStatus::Pending.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if result.rows_affected == 0 {
            txn.rollback().await.map_err(store_error)?;
            return Ok(false);
        }
        insert_entry(&txn, audit).await?;
        txn.commit().await.map_err(store_error)?;
        Ok(true)
    }
}

/// A delivery the sender is about to attempt.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_type: String,
    pub payload: String,
    /// Attempts spent from the budget (reset by a redelivery).
    pub attempts: u32,
    /// When it was due: the claim is guarded on it.
    pub next_attempt_at: DateTime<Utc>,
}

/// The sender's view of the queue.
#[derive(Debug, Clone)]
pub struct DeliveryQueue {
    db: Database,
}

/// What one attempt came to, for the queue to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started_at: DateTime<Utc>,
    pub duration_ms: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub succeeded: bool,
    /// When to try again; `None` gives up (out of attempts) unless it succeeded.
    pub retry_at: Option<DateTime<Utc>>,
}

impl DeliveryQueue {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Up to `limit` pending deliveries of enabled webhooks due by `now`, oldest due first.
    /// A disabled webhook's deliveries wait where they are: enabling it resumes them at once.
    pub async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<Due>, StoreError> {
        let enabled = Query::select()
            .column(webhooks::Column::Id)
            .from(webhooks::Entity)
            .and_where(webhooks::Column::Enabled.eq(true))
            .to_owned();
        let rows = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::WebhookId.in_subquery(enabled))
            .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(webhook_deliveries::Column::NextAttemptAt.lte(now))
            .order_by_asc(webhook_deliveries::Column::NextAttemptAt)
            .order_by_asc(webhook_deliveries::Column::Id)
            .limit(limit)
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| Due {
                id: r.id,
                webhook_id: r.webhook_id,
                event_type: r.event_type,
                payload: r.payload,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                next_attempt_at: r.next_attempt_at,
            })
            .collect())
    }

    /// The webhook with its sealed secret.
    pub async fn webhook(&self, id: Uuid) -> Result<Option<(Webhook, String)>, StoreError> {
        Ok(webhooks::Entity::find_by_id(id)
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(|m| {
                let secret = m.secret.clone();
                (to_webhook(m), secret)
            }))
    }

    /// Moves a due delivery to `until` if it is still as read (`false`: another sender has
    /// it). A claimed delivery whose sender dies is retried once `until` passes.
    pub async fn claim(&self, due: &Due, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = webhook_deliveries::Entity::update_many()
            .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(until))
            .filter(webhook_deliveries::Column::Id.eq(due.id))
            .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(webhook_deliveries::Column::NextAttemptAt.eq(due.next_attempt_at))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Sets the breaker's fields if `open_until` is still `expected` (the half-open trial is
    /// taken by one sender only).
    pub async fn set_breaker(
        &self,
        webhook_id: Uuid,
        expected: Option<DateTime<Utc>>,
        failures: u32,
        open_until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let mut update = webhooks::Entity::update_many()
            .col_expr(
                webhooks::Column::ConsecutiveFailures,
                Expr::value(i32::try_from(failures).unwrap_or(i32::MAX)),
            )
            .col_expr(webhooks::Column::OpenUntil, Expr::value(open_until))
            .filter(webhooks::Column::Id.eq(webhook_id));
        update = match expected {
            Some(at) => update.filter(webhooks::Column::OpenUntil.eq(at)),
            None => update.filter(webhooks::Column::OpenUntil.is_null()),
        };
        Ok(update
            .exec(self.db.connection())
            .await
            .map_err(store_error)?
            .rows_affected
            == 1)
    }

    /// Postpones a pending delivery (its webhook's breaker is open) without spending an
    /// attempt.
    pub async fn postpone(&self, due: &Due, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.claim(due, until).await.map(|_| ())
    }

    /// Records an attempt and its consequences in one transaction: the attempt log, the
    /// delivery's state, and the webhook's failure clock. Answers whether the webhook was
    /// disabled by this failure (it has failed for `disable_after`).
    pub async fn record(
        &self,
        due: &Due,
        webhook_id: Uuid,
        outcome: &Outcome,
        disable_after: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        let previous = webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::DeliveryId.eq(due.id))
            .count(&txn)
            .await
            .map_err(store_error)?;
        webhook_attempts::ActiveModel {
            id: Set(Uuid::now_v7()),
            delivery_id: Set(due.id),
            number: Set(i32::try_from(previous + 1).unwrap_or(i32::MAX)),
            started_at: Set(outcome.started_at),
            duration_ms: Set(i32::try_from(outcome.duration_ms).unwrap_or(i32::MAX)),
            status_code: Set(outcome.status_code.and_then(|c| i16::try_from(c).ok())),
            error: Set(outcome.error.clone()),
        }
        .insert(&txn)
        .await
        .map_err(store_error)?;
        let now = outcome.started_at + chrono::Duration::milliseconds(i64::from(outcome.duration_ms));
        let (status, next) = match (outcome.succeeded, outcome.retry_at) {
            (true, _) => (DeliveryStatus::Succeeded, now),
            (false, Some(at)) => (DeliveryStatus::Pending, at),
            (false, None) => (DeliveryStatus::Failed, now),
        };
        webhook_deliveries::Entity::update_many()
            .col_expr(webhook_deliveries::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                webhook_deliveries::Column::Attempts,
                Expr::value(i32::try_from(due.attempts + 1).unwrap_or(i32::MAX)),
            )
            .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                webhook_deliveries::Column::LastStatusCode,
                Expr::value(outcome.status_code.and_then(|c| i16::try_from(c).ok())),
            )
            .col_expr(
                webhook_deliveries::Column::LastError,
                Expr::value(outcome.error.clone()),
            )
            .col_expr(webhook_deliveries::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_deliveries::Column::Id.eq(due.id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        let mut disabled = false;
        if outcome.succeeded {
            webhooks::Entity::update_many()
                .col_expr(
                    webhooks::Column::FailingSince,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(webhooks::Column::Id.eq(webhook_id))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        } else if let Some(hook) = webhooks::Entity::find_by_id(webhook_id)
            .one(&txn)
            .await
            .map_err(store_error)?
        {
            let since = hook.failing_since.unwrap_or(outcome.started_at);
            disabled = hook.enabled && now - since >= disable_after;
            let mut update = webhooks::Entity::update_many()
                .col_expr(webhooks::Column::FailingSince, Expr::value(Some(since)))
                .filter(webhooks::Column::Id.eq(webhook_id));
            if disabled {
                update = update
                    .col_expr(webhooks::Column::Enabled, Expr::value(false))
                    .col_expr(
                        webhooks::Column::DisabledReason,
                        Expr::value(Some("every delivery attempt failed for a day".to_owned())),
                    )
                    .col_expr(webhooks::Column::UpdatedAt, Expr::value(now));
                insert_entry(&txn, &disabled_entry(&hook, now, since)).await?;
            }
            update.exec(&txn).await.map_err(store_error)?;
        }
        txn.commit().await.map_err(store_error)?;
        Ok(disabled)
    }
}

/// The audit entry of an automatic disable (no actor: Keel did it).
fn disabled_entry(hook: &webhooks::Model, at: DateTime<Utc>, failing_since: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: at,
        actor_id: None,
        action: "webhook.disabled".to_owned(),
        resource_type: "webhook".to_owned(),
        resource_id: Some(hook.id.to_string()),
        project_id: Some(hook.project_id),
        request_id: None,
        ip: None,
        details: Some(serde_json::json!({
            "reason": "every delivery attempt failed for a day",
            "failingSince": failing_since,
        })),
        restricted: None,
        authority: None,
        token_id: None,
    }
}
