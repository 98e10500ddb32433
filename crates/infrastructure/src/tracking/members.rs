//! The project membership store on SeaORM.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::identity::Email;
use keel_domain::tracking::ports::MemberRepository;
use keel_domain::tracking::{Account, Acquaintance, Member, ProjectRole};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait, Set,
};
use uuid::Uuid;

use super::projects::parse_role;
use super::{commit_change, commit_held_change, hold_authority, roll_back};
use crate::db::fetch_page_as;
use crate::db::{Database, store_error};
use crate::entities::project_members::{self, Column, Entity};
use crate::entities::{projects, tasks, users};

#[derive(Debug, Clone)]
pub struct SeaOrmMemberRepository {
    db: Database,
}

impl SeaOrmMemberRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A membership with its user's public fields.
#[derive(Debug, FromQueryResult)]
struct MemberRow {
    #[sea_orm(nested)]
    membership: project_members::Model,
    user_name: String,
    user_email: String,
}

fn to_domain(row: MemberRow) -> Result<Member, StoreError> {
    let m = row.membership;
    Ok(Member {
        role: parse_role(&m.role, m.project_id)?,
        project_id: m.project_id,
        user_id: m.user_id,
        name: row.user_name,
        email: row.user_email,
        joined_at: m.created_at,
    })
}

/// Memberships joined with their users.
fn with_users() -> sea_orm::Select<Entity> {
    Entity::find()
        .join(JoinType::InnerJoin, project_members::Relation::User.def())
        .column_as(users::Column::Name, "user_name")
        .column_as(users::Column::Email, "user_email")
}

/// Why a write to a membership that skips the owner touched no row: `Conflict` when the
/// user owns the project, `NotFound` when they are not a member. Rolls the transaction back.
async fn untouched(
    txn: DatabaseTransaction,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<StoreError, StoreError> {
    let role: Option<String> = Entity::find()
        .select_only()
        .column(Column::Role)
        .filter(Column::ProjectId.eq(project_id))
        .filter(Column::UserId.eq(user_id))
        .into_tuple()
        .one(&txn)
        .await
        .map_err(store_error)?;
    roll_back(txn).await?;
    Ok(match role {
        Some(_) => StoreError::Conflict("the project's owner".into()),
        None => StoreError::NotFound,
    })
}

#[async_trait]
impl MemberRepository for SeaOrmMemberRepository {
    async fn list(
        &self,
        project_id: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Member>, u64), StoreError> {
        let select = with_users()
            .filter(Column::ProjectId.eq(project_id))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::UserId);
        let (rows, total) = fetch_page_as::<_, MemberRow>(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect::<Result<_, _>>()?, total))
    }

    async fn find(&self, project_id: Uuid, user_id: Uuid) -> Result<Option<Member>, StoreError> {
        with_users()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::UserId.eq(user_id))
            .into_model::<MemberRow>()
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn user_ids(&self, project_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Entity::find()
            .select_only()
            .column(Column::UserId)
            .filter(Column::ProjectId.eq(project_id))
            .into_tuple()
            .all(self.db.connection())
            .await
            .map_err(store_error)
    }

    async fn find_acquaintance(
        &self,
        email: &Email,
        seen_by: &Acquaintance,
    ) -> Result<Option<Account>, StoreError> {
        // `theirs`: a membership of the account; `mine`: the viewer's in the same project.
        let (theirs, mine) = (Alias::new("theirs"), Alias::new("mine"));
        let mut shared = Query::select();
        shared
            .expr(Expr::val(1))
            .from_as(Entity, theirs.clone())
            .join_as(
                JoinType::InnerJoin,
                Entity,
                mine.clone(),
                Expr::col((mine.clone(), Column::ProjectId)).equals((theirs.clone(), Column::ProjectId)),
            )
            .and_where(Expr::col((theirs, Column::UserId)).equals((users::Entity, users::Column::Id)))
            .and_where(Expr::col((mine.clone(), Column::UserId)).eq(seen_by.user_id));
        if let Some(within) = &seen_by.within {
            shared.and_where(Expr::col((mine, Column::ProjectId)).is_in(within.iter().copied()));
        }
        let row: Option<(Uuid, String, String)> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .column(users::Column::Name)
            .column(users::Column::Email)
            .filter(users::Column::Email.eq(email.as_str()))
            .filter(Expr::exists(shared.to_owned()))
            .into_tuple()
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(row.map(|(id, name, email)| Account { id, name, email }))
    }

    async fn add(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        // The primary key (project_id, user_id) turns a second membership into `Conflict`.
        Entity::insert(project_members::ActiveModel {
            project_id: Set(project_id),
            user_id: Set(user_id),
            role: Set(role.as_str().to_owned()),
            created_at: Set(at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await
    }

    async fn set_role(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        change: &Change,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        hold_authority(&txn, &change.audit, Some(user_id)).await?;
        // Never the owner's row, even if they became the owner since the caller read it.
        let result = Entity::update_many()
            .col_expr(Column::Role, Expr::value(role.as_str()))
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::UserId.eq(user_id))
            .filter(Column::Role.ne(ProjectRole::Owner.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if result.rows_affected == 0 {
            return Err(untouched(txn, project_id, user_id).await?);
        }
        commit_held_change(&self.db, txn, change).await
    }

    async fn transfer_ownership(
        &self,
        project_id: Uuid,
        to: Uuid,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        // The caller's authority (`Own`) first: a transfer that waits here for another one
        // that demoted its caller reads the role it left, and is refused.
        hold_authority(&txn, &change.audit, Some(to)).await?;
        // Then the project row: on PostgreSQL that locks it, so concurrent transfers of one
        // project run one after the other; on SQLite the write lock is held already.
        let project = projects::Entity::update_many()
            .col_expr(
                projects::Column::Version,
                Expr::col(projects::Column::Version).add(1),
            )
            .col_expr(projects::Column::UpdatedAt, Expr::value(at))
            .filter(projects::Column::Id.eq(project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if project.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        let promoted = Entity::update_many()
            .col_expr(Column::Role, Expr::value(ProjectRole::Owner.as_str()))
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::UserId.eq(to))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if promoted.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        Entity::update_many()
            .col_expr(Column::Role, Expr::value(ProjectRole::Admin.as_str()))
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::Role.eq(ProjectRole::Owner.as_str()))
            .filter(Column::UserId.ne(to))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // Only now: `to` is a member, hence a user, so the owner's foreign key holds.
        projects::Entity::update_many()
            .col_expr(projects::Column::OwnerId, Expr::value(to))
            .filter(projects::Column::Id.eq(project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        commit_held_change(&self.db, txn, change).await
    }

    async fn remove(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.db.begin_write().await?;
        hold_authority(&txn, &change.audit, Some(user_id)).await?;
        // Never the owner, even if they became the owner since the caller read their role.
        let removed = Entity::delete_many()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::UserId.eq(user_id))
            .filter(Column::Role.ne(ProjectRole::Owner.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if removed.rows_affected == 0 {
            return Err(untouched(txn, project_id, user_id).await?);
        }
        // Exactly the tasks named here are unassigned, so the caller can invalidate them.
        let unassigned: Vec<Uuid> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::Id)
            .filter(tasks::Column::ProjectId.eq(project_id))
            .filter(tasks::Column::AssigneeId.eq(user_id))
            .into_tuple()
            .all(&txn)
            .await
            .map_err(store_error)?;
        if !unassigned.is_empty() {
            tasks::Entity::update_many()
                .col_expr(tasks::Column::AssigneeId, Expr::value(Option::<Uuid>::None))
                .col_expr(tasks::Column::Version, Expr::col(tasks::Column::Version).add(1))
                .col_expr(tasks::Column::UpdatedAt, Expr::value(at))
                .filter(tasks::Column::Id.is_in(unassigned.iter().copied()))
                .filter(tasks::Column::AssigneeId.eq(user_id))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        commit_held_change(&self.db, txn, change).await?;
        Ok(unassigned)
    }
}
