//! What Keel holds about one person, read for the export and erased in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::identity::personal_data::{
    ERASED_NAME, Erasure, HeldComment, HeldInvitation, HeldNotification, HeldSubscription, HeldTask,
    Membership, PersonalData, PersonalDataStore,
};
use keel_domain::identity::{Email, Role, UserStatus};
use keel_domain::tracking::ProjectRole;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait,
};
use uuid::Uuid;

use super::users::another_admin_remains;
use crate::audit::insert_entry;
use crate::db::{Database, store_error};
use crate::entities::{
    account_tokens, audit_log, comments, idempotency_keys, invitations, mail_outbox, notifications,
    personal_tokens, project_members, projects, sessions, task_subscriptions, tasks, users,
};

#[derive(Debug, Clone)]
pub struct SeaOrmPersonalDataStore {
    db: Database,
}

impl SeaOrmPersonalDataStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn corrupt(what: &str, id: Uuid) -> StoreError {
    StoreError::Unexpected(format!("{what} row {id} does not parse").into())
}

async fn memberships(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<Membership>, StoreError> {
    let rows: Vec<(Uuid, String, String, String, DateTime<Utc>)> = project_members::Entity::find()
        .select_only()
        .column(project_members::Column::ProjectId)
        .column(projects::Column::Key)
        .column(projects::Column::Name)
        .column(project_members::Column::Role)
        .column(project_members::Column::CreatedAt)
        .join(JoinType::InnerJoin, project_members::Relation::Project.def())
        .filter(project_members::Column::UserId.eq(user_id))
        .order_by_asc(projects::Column::Key)
        .into_tuple()
        .all(conn)
        .await
        .map_err(store_error)?;
    rows.into_iter()
        .map(|(project_id, project_key, project_name, role, since)| {
            Ok(Membership {
                project_id,
                project_key,
                project_name,
                role: ProjectRole::parse(&role, "role")
                    .map_err(|_| corrupt("project_members", project_id))?,
                since,
            })
        })
        .collect()
}

async fn held_tasks(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<HeldTask>, StoreError> {
    type Row = (
        Uuid,
        Uuid,
        i64,
        String,
        Option<String>,
        Uuid,
        Option<Uuid>,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
    );
    let rows: Vec<Row> = tasks::Entity::find()
        .select_only()
        .columns([
            tasks::Column::Id,
            tasks::Column::ProjectId,
            tasks::Column::Number,
            tasks::Column::Title,
            tasks::Column::Description,
            tasks::Column::CreatedBy,
            tasks::Column::AssigneeId,
            tasks::Column::CreatedAt,
            tasks::Column::UpdatedAt,
        ])
        .column(projects::Column::Key)
        .join(JoinType::InnerJoin, tasks::Relation::Project.def())
        .filter(
            Condition::any()
                .add(tasks::Column::CreatedBy.eq(user_id))
                .add(tasks::Column::AssigneeId.eq(user_id)),
        )
        .order_by_asc(tasks::Column::CreatedAt)
        .order_by_asc(tasks::Column::Id)
        .into_tuple()
        .all(conn)
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                project_id,
                number,
                title,
                description,
                created_by,
                assignee_id,
                created_at,
                updated_at,
                key,
            )| {
                HeldTask {
                    id,
                    project_id,
                    identifier: format!("{key}-{number}"),
                    title,
                    description,
                    created_by_user: created_by == user_id,
                    assigned_to_user: assignee_id == Some(user_id),
                    created_at,
                    updated_at,
                }
            },
        )
        .collect())
}

#[async_trait]
impl PersonalDataStore for SeaOrmPersonalDataStore {
    async fn export(&self, user_id: Uuid) -> Result<Option<PersonalData>, StoreError> {
        let conn = self.db.connection();
        let Some(user) = users::Entity::find_by_id(user_id)
            .one(conn)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let sessions = sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id))
            .order_by_desc(sessions::Column::CreatedAt)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(super::sessions::to_domain)
            .collect();
        let tokens = personal_tokens::Entity::find()
            .filter(personal_tokens::Column::UserId.eq(user_id))
            .order_by_desc(personal_tokens::Column::CreatedAt)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(super::personal_tokens::to_domain)
            .collect::<Result<_, _>>()?;
        let comments = comments::Entity::find()
            .filter(comments::Column::AuthorId.eq(user_id))
            .order_by_asc(comments::Column::CreatedAt)
            .order_by_asc(comments::Column::Id)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|c| HeldComment {
                id: c.id,
                task_id: c.task_id,
                body: c.body,
                created_at: c.created_at,
                updated_at: c.updated_at,
            })
            .collect();
        let audit = audit_log::Entity::find()
            .filter(audit_log::Column::ActorId.eq(user_id))
            .order_by_asc(audit_log::Column::OccurredAt)
            .order_by_asc(audit_log::Column::Id)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(crate::audit::to_domain)
            .collect();
        let notifications = notifications::Entity::find()
            .filter(notifications::Column::UserId.eq(user_id))
            .order_by_desc(notifications::Column::CreatedAt)
            .order_by_desc(notifications::Column::Id)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|n| HeldNotification {
                id: n.id,
                event_type: n.event_type,
                task_id: n.task_id,
                project_id: n.project_id,
                actor_id: n.actor_id,
                summary: n.summary,
                read_at: n.read_at,
                created_at: n.created_at,
            })
            .collect();
        let subscriptions = task_subscriptions::Entity::find()
            .filter(task_subscriptions::Column::UserId.eq(user_id))
            .order_by_asc(task_subscriptions::Column::TaskId)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|s| HeldSubscription {
                task_id: s.task_id,
                subscribed: s.subscribed,
                updated_at: s.updated_at,
            })
            .collect();
        let invitations = invitations::Entity::find()
            .filter(invitations::Column::Email.eq(user.email.as_str()))
            .order_by_desc(invitations::Column::CreatedAt)
            .order_by_desc(invitations::Column::Id)
            .all(conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|i| HeldInvitation {
                id: i.id,
                project_id: i.project_id,
                role: i.role,
                invited_by: i.invited_by,
                expires_at: i.expires_at,
                created_at: i.created_at,
            })
            .collect();
        Ok(Some(PersonalData {
            user: super::users::to_domain(user)?,
            sessions,
            tokens,
            memberships: memberships(conn, user_id).await?,
            tasks: held_tasks(conn, user_id).await?,
            comments,
            audit,
            notifications,
            subscriptions,
            invitations,
        }))
    }

    async fn erase(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        entry: &AuditEntry,
    ) -> Result<Erasure, StoreError> {
        let txn = self.db.begin_write().await?;
        // Touch the user's memberships first: on PostgreSQL that locks them, so an ownership
        // handed to the user meanwhile either committed before (and is seen below) or waits
        // for this erasure.
        project_members::Entity::update_many()
            .col_expr(
                project_members::Column::Role,
                Expr::col(project_members::Column::Role),
            )
            .filter(project_members::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        let Some(user) = users::Entity::find_by_id(user_id)
            .one(&txn)
            .await
            .map_err(store_error)?
        else {
            txn.rollback().await.map_err(store_error)?;
            return Ok(Erasure::NotFound);
        };
        let owned: Vec<String> = project_members::Entity::find()
            .select_only()
            .column(projects::Column::Key)
            .join(JoinType::InnerJoin, project_members::Relation::Project.def())
            .filter(project_members::Column::UserId.eq(user_id))
            .filter(project_members::Column::Role.eq(ProjectRole::Owner.as_str()))
            .order_by_asc(projects::Column::Key)
            .into_tuple()
            .all(&txn)
            .await
            .map_err(store_error)?;
        if !owned.is_empty() {
            txn.rollback().await.map_err(store_error)?;
            return Ok(Erasure::OwnerOf(owned));
        }
        let is_active_admin = user.role == Role::Admin.as_str() && user.status == UserStatus::Active.as_str();
        if is_active_admin && !another_admin_remains(&txn, user_id).await? {
            txn.rollback().await.map_err(store_error)?;
            return Ok(Erasure::LastAdmin);
        }
        users::Entity::update_many()
            .col_expr(users::Column::Name, Expr::value(ERASED_NAME))
            .col_expr(users::Column::Email, Expr::value(Email::erased(user_id).as_str()))
            .col_expr(users::Column::PasswordHash, Expr::value(""))
            .col_expr(users::Column::Status, Expr::value(UserStatus::Disabled.as_str()))
            .col_expr(users::Column::UpdatedAt, Expr::value(at))
            .filter(users::Column::Id.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        sessions::Entity::update_many()
            .col_expr(
                sessions::Column::RevokedAt,
                Expr::col(sessions::Column::RevokedAt).if_null(at),
            )
            .col_expr(sessions::Column::Ip, Expr::value(Option::<String>::None))
            .col_expr(sessions::Column::UserAgent, Expr::value(Option::<String>::None))
            .filter(sessions::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        personal_tokens::Entity::delete_many()
            .filter(personal_tokens::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // A stored idempotent response may hold the user's data (a profile, a comment).
        idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // One-time links (reset, verification) and the mails not yet sent to the user.
        account_tokens::Entity::delete_many()
            .filter(account_tokens::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        mail_outbox::Entity::delete_many()
            .filter(mail_outbox::Column::Recipient.eq(user.email.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // Invitations to the user's address hold it; those the user sent stay (they point at
        // the tombstone, as tasks do).
        invitations::Entity::delete_many()
            .filter(invitations::Column::Email.eq(user.email.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // The user's notifications go; the subscriptions stay, as explicit unsubscriptions,
        // so that nothing made of later events reaches the tombstone.
        notifications::Entity::delete_many()
            .filter(notifications::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        task_subscriptions::Entity::update_many()
            .col_expr(task_subscriptions::Column::Subscribed, Expr::value(false))
            .col_expr(task_subscriptions::Column::UpdatedAt, Expr::value(at))
            .filter(task_subscriptions::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // The addresses the user's requests came from: entries the user made, and entries
        // about the account (a failed sign-in to it names no actor).
        audit_log::Entity::update_many()
            .col_expr(audit_log::Column::Ip, Expr::value(Option::<String>::None))
            .filter(
                Condition::any().add(audit_log::Column::ActorId.eq(user_id)).add(
                    Condition::all()
                        .add(audit_log::Column::ResourceType.eq("user"))
                        .add(audit_log::Column::ResourceId.eq(user_id.to_string())),
                ),
            )
            .exec(&txn)
            .await
            .map_err(store_error)?;
        insert_entry(&txn, entry).await?;
        txn.commit().await.map_err(store_error)?;
        Ok(Erasure::Erased)
    }
}
