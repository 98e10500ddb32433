//! Task subscriptions and notifications as stored (docs/api/notifications.md, adr/0025), and
//! the fan-out the outbox dispatcher runs in its batch transaction ([`fan_out`]).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_application::notifications::{
    Mailbox, MarkRead, Notification, NotificationStore, UserNotification, fanout, recipients,
};
use keel_domain::StoreError;
use keel_domain::events::Envelope;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::{notifications, project_members, task_subscriptions, tasks, users};

fn to_view(row: notifications::Model) -> Notification {
    Notification {
        id: row.id,
        event_type: row.event_type,
        task_id: row.task_id,
        project_id: row.project_id,
        actor_id: row.actor_id,
        event_id: row.event_id,
        summary: row.summary,
        read_at: row.read_at,
        created_at: row.created_at,
    }
}

/// On the dispatcher's batch transaction `txn`, for each of `events` (in feed order): the
/// automatic subscriptions it makes, then one notification per subscribed member of its
/// project but its actor — none made twice for one (event, user), whatever was done before.
/// Answers the notifications made now, to be pushed once the transaction commits.
pub async fn fan_out(
    txn: &impl ConnectionTrait,
    events: &[Envelope],
    now: DateTime<Utc>,
) -> Result<Vec<UserNotification>, StoreError> {
    let plans: Vec<_> = events
        .iter()
        .filter_map(|e| fanout(&e.event).map(|f| (e, f)))
        .collect();
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    let mut made = Vec::new();
    for (envelope, plan) in plans {
        let event = &envelope.event;
        if !plan.subscribe.is_empty() {
            // Subscriptions point at a live task and users: `INSERT … SELECT` from both, so a
            // purged task or a missing user is skipped rather than failing the batch. An
            // explicit choice (either way) stands.
            let rows = Query::select()
                .column((tasks::Entity, tasks::Column::Id))
                .column((users::Entity, users::Column::Id))
                .expr(Expr::val(true))
                .expr(Expr::val(now))
                .from(tasks::Entity)
                .from(users::Entity)
                .and_where(Expr::col((tasks::Entity, tasks::Column::Id)).eq(plan.task_id))
                .and_where(
                    Expr::col((users::Entity, users::Column::Id)).is_in(plan.subscribe.iter().copied()),
                )
                .to_owned();
            let insert = Query::insert()
                .into_table(task_subscriptions::Entity)
                .columns([
                    task_subscriptions::Column::TaskId,
                    task_subscriptions::Column::UserId,
                    task_subscriptions::Column::Subscribed,
                    task_subscriptions::Column::UpdatedAt,
                ])
                .select_from(rows)
                .map_err(|e| StoreError::Unexpected(Box::new(e)))?
                .on_conflict(
                    OnConflict::columns([
                        task_subscriptions::Column::TaskId,
                        task_subscriptions::Column::UserId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .to_owned();
            txn.execute(&insert).await.map_err(store_error)?;
        }
        let members = Query::select()
            .column(project_members::Column::UserId)
            .from(project_members::Entity)
            .and_where(project_members::Column::ProjectId.eq(event.project_id))
            .to_owned();
        let subscribed: Vec<Uuid> = task_subscriptions::Entity::find()
            .select_only()
            .column(task_subscriptions::Column::UserId)
            .filter(task_subscriptions::Column::TaskId.eq(plan.task_id))
            .filter(task_subscriptions::Column::Subscribed.eq(true))
            .filter(task_subscriptions::Column::UserId.in_subquery(members))
            .into_tuple::<Uuid>()
            .all(txn)
            .await
            .map_err(store_error)?;
        let to = recipients(&subscribed, event.actor_id);
        if to.is_empty() {
            continue;
        }
        // Made before (a batch moved again after a lost lease cannot be, but the unique
        // index is the rule): skipped.
        let already: HashSet<Uuid> = notifications::Entity::find()
            .select_only()
            .column(notifications::Column::UserId)
            .filter(notifications::Column::EventId.eq(event.id))
            .into_tuple::<Uuid>()
            .all(txn)
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
        let mut rows = Vec::new();
        for user in to.into_iter().filter(|u| !already.contains(u)) {
            let notification = Notification {
                id: Uuid::now_v7(),
                event_type: event.event_type.as_str().to_owned(),
                task_id: plan.task_id,
                project_id: event.project_id,
                actor_id: event.actor_id,
                event_id: event.id,
                summary: plan.summary.clone(),
                read_at: None,
                created_at: now,
            };
            rows.push(notifications::ActiveModel {
                id: Set(notification.id),
                user_id: Set(user),
                event_id: Set(notification.event_id),
                event_type: Set(notification.event_type.clone()),
                task_id: Set(notification.task_id),
                project_id: Set(notification.project_id),
                actor_id: Set(notification.actor_id),
                summary: Set(notification.summary.clone()),
                read_at: Set(None),
                created_at: Set(now),
            });
            made.push(UserNotification {
                user_id: user,
                notification,
            });
        }
        if !rows.is_empty() {
            notifications::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([notifications::Column::EventId, notifications::Column::UserId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(made)
}

/// The notifications store.
#[derive(Debug, Clone)]
pub struct SeaOrmNotificationStore {
    db: Database,
}

impl SeaOrmNotificationStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The notifications `mailbox` reaches.
fn of(mailbox: &Mailbox) -> Condition {
    let mut c = Condition::all().add(notifications::Column::UserId.eq(mailbox.user_id));
    if let Some(projects) = &mailbox.projects {
        c = c.add(notifications::Column::ProjectId.is_in(projects.iter().copied()));
    }
    c
}

#[async_trait]
impl NotificationStore for SeaOrmNotificationStore {
    async fn set_subscription(
        &self,
        task: Uuid,
        user: Uuid,
        subscribed: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        task_subscriptions::Entity::insert(task_subscriptions::ActiveModel {
            task_id: Set(task),
            user_id: Set(user),
            subscribed: Set(subscribed),
            updated_at: Set(at),
        })
        .on_conflict(
            OnConflict::columns([
                task_subscriptions::Column::TaskId,
                task_subscriptions::Column::UserId,
            ])
            .update_columns([
                task_subscriptions::Column::Subscribed,
                task_subscriptions::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(self.db.connection())
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn list(
        &self,
        mailbox: &Mailbox,
        unread_only: bool,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut filter = of(mailbox);
        if unread_only {
            filter = filter.add(notifications::Column::ReadAt.is_null());
        }
        if let Some(after) = after {
            filter = filter.add(notifications::Column::Id.lt(after));
        }
        Ok(notifications::Entity::find()
            .filter(filter)
            .order_by_desc(notifications::Column::Id)
            .limit(limit)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_view)
            .collect())
    }

    async fn unread_count(&self, mailbox: &Mailbox) -> Result<u64, StoreError> {
        notifications::Entity::find()
            .filter(of(mailbox).add(notifications::Column::ReadAt.is_null()))
            .count(self.db.connection())
            .await
            .map_err(store_error)
    }

    async fn mark_read(
        &self,
        mailbox: &Mailbox,
        which: &MarkRead,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut filter = of(mailbox).add(notifications::Column::ReadAt.is_null());
        if let MarkRead::Ids(ids) = which {
            filter = filter.add(notifications::Column::Id.is_in(ids.iter().copied()));
        }
        Ok(notifications::Entity::update_many()
            .col_expr(notifications::Column::ReadAt, Expr::value(at))
            .filter(filter)
            .exec(self.db.connection())
            .await
            .map_err(store_error)?
            .rows_affected)
    }
}
