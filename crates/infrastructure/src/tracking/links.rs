//! The store of task links on SeaORM.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::LinkRepository;
use keel_domain::tracking::{Link, LinkTitle, LinkUrl};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait, Select, Set,
};
use uuid::Uuid;

use super::{commit_change, roll_back};
use crate::db::{Database, store_error};
use crate::entities::task_links::{self, Column, Entity};
use crate::entities::tasks;

#[derive(Debug, Clone)]
pub struct SeaOrmLinkRepository {
    db: Database,
}

impl SeaOrmLinkRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A link with the project of its task.
#[derive(Debug, FromQueryResult)]
struct LinkRow {
    #[sea_orm(nested)]
    link: task_links::Model,
    project_id: Uuid,
}

fn to_domain(row: LinkRow) -> Link {
    let m = row.link;
    Link {
        id: m.id,
        task_id: m.task_id,
        project_id: row.project_id,
        url: LinkUrl::from_stored(m.url),
        title: m.title.map(LinkTitle::from_stored),
        created_by: m.created_by,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// Links joined with their tasks' projects.
fn with_projects() -> Select<Entity> {
    Entity::find()
        .join(JoinType::InnerJoin, task_links::Relation::Task.def())
        .column_as(tasks::Column::ProjectId, "project_id")
}

impl SeaOrmLinkRepository {
    async fn one(&self, select: Select<Entity>) -> Result<Option<Link>, StoreError> {
        Ok(select
            .into_model::<LinkRow>()
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain))
    }
}

/// Locks the task `id` against deletion until the end of the transaction (`FOR KEY SHARE`
/// on PostgreSQL, what the foreign key's own check takes; SQLite's write transactions hold
/// the whole database). `false` when there is no such task.
pub(super) async fn task_exists(conn: &impl ConnectionTrait, id: Uuid) -> Result<bool, StoreError> {
    let found: Option<Uuid> = tasks::Entity::find_by_id(id)
        .select_only()
        .column(tasks::Column::Id)
        .lock(LockType::KeyShare)
        .into_tuple()
        .one(conn)
        .await
        .map_err(store_error)?;
    Ok(found.is_some())
}

#[async_trait]
impl LinkRepository for SeaOrmLinkRepository {
    async fn list(
        &self,
        task_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Link>, StoreError> {
        let mut select = with_projects().filter(Column::TaskId.eq(task_id));
        if let Some((at, id)) = after {
            select = select.filter(
                Condition::any().add(Column::CreatedAt.gt(at)).add(
                    Condition::all()
                        .add(Column::CreatedAt.eq(at))
                        .add(Column::Id.gt(id)),
                ),
            );
        }
        Ok(select
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .into_model::<LinkRow>()
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect())
    }

    async fn find_by_url(&self, task_id: Uuid, url: &str) -> Result<Option<Link>, StoreError> {
        self.one(
            with_projects()
                .filter(Column::TaskId.eq(task_id))
                .filter(Column::Url.eq(url)),
        )
        .await
    }

    async fn find(&self, task_id: Uuid, link_id: Uuid) -> Result<Option<Link>, StoreError> {
        self.one(
            with_projects()
                .filter(Column::Id.eq(link_id))
                .filter(Column::TaskId.eq(task_id)),
        )
        .await
    }

    async fn create(&self, link: &Link, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        if !task_exists(&txn, link.task_id).await? {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        // `ux_task_links_task_url` turns a second link of the same URL into `Conflict`.
        Entity::insert(task_links::ActiveModel {
            id: Set(link.id),
            task_id: Set(link.task_id),
            url: Set(link.url.as_str().to_owned()),
            title: Set(link.title.as_ref().map(|t| t.as_str().to_owned())),
            created_by: Set(link.created_by),
            created_at: Set(link.created_at),
            updated_at: Set(link.updated_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await
    }

    async fn update(&self, link: &Link, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let result = Entity::update_many()
            .col_expr(
                Column::Title,
                Expr::value(link.title.as_ref().map(|t| t.as_str().to_owned())),
            )
            .col_expr(Column::UpdatedAt, Expr::value(link.updated_at))
            .filter(Column::Id.eq(link.id))
            .filter(Column::TaskId.eq(link.task_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if result.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        commit_change(&self.db, txn, change).await
    }

    async fn delete(&self, task_id: Uuid, link_id: Uuid, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let result = Entity::delete_many()
            .filter(Column::Id.eq(link_id))
            .filter(Column::TaskId.eq(task_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if result.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        commit_change(&self.db, txn, change).await
    }
}
