//! The comment store on SeaORM.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::CommentRepository;
use keel_domain::tracking::{Comment, CommentBody};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait, Set,
};
use uuid::Uuid;

use super::{commit_change, delete_recorded, finish_guarded};
use crate::db::{Database, store_error};
use crate::entities::comments::{self, Column, Entity};
use crate::entities::tasks;

#[derive(Debug, Clone)]
pub struct SeaOrmCommentRepository {
    db: Database,
}

impl SeaOrmCommentRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A comment with the project of its task.
#[derive(Debug, FromQueryResult)]
struct CommentRow {
    #[sea_orm(nested)]
    comment: comments::Model,
    project_id: Uuid,
}

fn to_domain(row: CommentRow) -> Result<Comment, StoreError> {
    let m = row.comment;
    Ok(Comment {
        body: CommentBody::from_stored(m.body.clone()),
        id: m.id,
        task_id: m.task_id,
        project_id: row.project_id,
        author_id: m.author_id,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    })
}

/// Comments joined with their tasks' projects; the comments of a task in the trash are
/// found by no read, as the task is not.
fn with_projects() -> sea_orm::Select<Entity> {
    Entity::find()
        .join(JoinType::InnerJoin, comments::Relation::Task.def())
        .column_as(tasks::Column::ProjectId, "project_id")
        .filter(tasks::Column::DeletedAt.is_null())
}

#[async_trait]
impl CommentRepository for SeaOrmCommentRepository {
    async fn create(&self, comment: &Comment, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        Entity::insert(comments::ActiveModel {
            id: Set(comment.id),
            task_id: Set(comment.task_id),
            author_id: Set(comment.author_id),
            body: Set(comment.body.as_str().to_owned()),
            created_at: Set(comment.created_at),
            updated_at: Set(comment.updated_at),
            version: Set(comment.version),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await
    }

    async fn find(&self, id: Uuid) -> Result<Option<Comment>, StoreError> {
        with_projects()
            .filter(Column::Id.eq(id))
            .into_model::<CommentRow>()
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn update(
        &self,
        comment: &Comment,
        expected_version: i64,
        change: &Change,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        let result = Entity::update_many()
            .col_expr(Column::Body, Expr::value(comment.body.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(comment.updated_at))
            .col_expr(Column::Version, Expr::value(expected_version + 1))
            .filter(Column::Id.eq(comment.id))
            .filter(Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        finish_guarded(&self.db, txn, result.rows_affected, change).await
    }

    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError> {
        delete_recorded::<Entity>(&self.db, id, change).await
    }

    async fn list(
        &self,
        task_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Comment>, StoreError> {
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
        select
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .into_model::<CommentRow>()
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect()
    }
}
