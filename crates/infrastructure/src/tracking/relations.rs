//! The store of task relations on SeaORM.
//!
//! `blocks` relations are written one at a time: on PostgreSQL each such write first takes
//! one transaction-scoped advisory lock, on SQLite every write transaction holds the whole
//! database. The cycle check and the insert therefore see every `blocks` relation committed
//! before them, and two creates that would close a cycle together cannot both commit
//! (adr/0017-task-relations-serialized-blocks-writes.md).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::RelationRepository;
use keel_domain::tracking::{RelatedTask, Relation, RelationType};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, Order, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Set,
    Statement,
};
use uuid::Uuid;

use super::links::task_exists;
use super::{commit_change, corrupt, delete_recorded, roll_back, select_prefixed};
use crate::db::{Database, store_error};
use crate::entities::task_relations::{self, Column, Entity};
use crate::entities::{project_members, projects, tasks};

/// The advisory lock every `blocks` write takes on PostgreSQL ("keelrels").
const BLOCKS_LOCK: i64 = 0x6b65_656c_7265_6c73;

#[derive(Debug, Clone)]
pub struct SeaOrmRelationRepository {
    db: Database,
}

impl SeaOrmRelationRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn to_domain(m: task_relations::Model) -> Result<Relation, StoreError> {
    let kind = RelationType::parse(&m.kind)
        .ok()
        .filter(|k| k.is_canonical())
        .ok_or_else(|| corrupt("task_relations", m.id, "kind"))?;
    Ok(Relation {
        id: m.id,
        source_task_id: m.source_task_id,
        target_task_id: m.target_task_id,
        kind,
        created_by: m.created_by,
        created_at: m.created_at,
    })
}

/// Whether `source` is reachable from `target` along `blocks` relations: then `source blocks
/// target` would close a cycle. One recursive statement on both databases.
async fn closes_cycle(conn: &impl ConnectionTrait, source: Uuid, target: Uuid) -> Result<bool, StoreError> {
    let backend = conn.get_database_backend();
    let (from, to) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let sql = format!(
        "WITH RECURSIVE reach(id) AS ( \
           SELECT target_task_id FROM task_relations WHERE kind = 'blocks' AND source_task_id = {from} \
           UNION \
           SELECT r.target_task_id FROM task_relations r JOIN reach ON r.source_task_id = reach.id \
           WHERE r.kind = 'blocks' \
         ) SELECT 1 AS hit FROM reach WHERE id = {to} LIMIT 1"
    );
    let found = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [target.into(), source.into()],
        ))
        .await
        .map_err(store_error)?;
    Ok(found.is_some())
}

#[async_trait]
impl RelationRepository for SeaOrmRelationRepository {
    async fn list(
        &self,
        task_id: Uuid,
        viewer: Option<Uuid>,
        projects: Option<Vec<Uuid>>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<RelatedTask>, StoreError> {
        let (r, o, p) = (Alias::new("r"), Alias::new("o"), Alias::new("p"));
        let col = |c: Column| Expr::col((r.clone(), c));
        let mut query = Query::select();
        select_prefixed::<Entity>(&mut query, r.clone(), "r_");
        query
            .expr_as(
                Expr::col((o.clone(), tasks::Column::ProjectId)),
                Alias::new("other_project_id"),
            )
            .expr_as(
                Expr::col((o.clone(), tasks::Column::Number)),
                Alias::new("other_number"),
            )
            .expr_as(
                Expr::col((p.clone(), projects::Column::Key)),
                Alias::new("other_key"),
            )
            .from_as(Entity, r.clone())
            // The other task: the target when `task_id` is the source, and the other way round.
            .join_as(
                JoinType::InnerJoin,
                tasks::Entity,
                o.clone(),
                Condition::any()
                    .add(Condition::all().add(col(Column::SourceTaskId).eq(task_id)).add(
                        Expr::col((o.clone(), tasks::Column::Id)).equals((r.clone(), Column::TargetTaskId)),
                    ))
                    .add(Condition::all().add(col(Column::TargetTaskId).eq(task_id)).add(
                        Expr::col((o.clone(), tasks::Column::Id)).equals((r.clone(), Column::SourceTaskId)),
                    )),
            )
            .join_as(
                JoinType::InnerJoin,
                projects::Entity,
                p.clone(),
                Expr::col((p.clone(), projects::Column::Id)).equals((o.clone(), tasks::Column::ProjectId)),
            )
            // A task in the trash is in no relation list (restoring it shows them again).
            .and_where(Expr::col((o.clone(), tasks::Column::DeletedAt)).is_null());
        if let Some(projects) = projects {
            query.and_where(Expr::col((o.clone(), tasks::Column::ProjectId)).is_in(projects));
        }
        if let Some(user) = viewer {
            query.and_where(Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(project_members::Entity)
                    .and_where(
                        Expr::col((project_members::Entity, project_members::Column::ProjectId))
                            .equals((o.clone(), tasks::Column::ProjectId)),
                    )
                    .and_where(Expr::col((project_members::Entity, project_members::Column::UserId)).eq(user))
                    .to_owned(),
            ));
        }
        if let Some((at, id)) = after {
            query.cond_where(
                Condition::any().add(col(Column::CreatedAt).gt(at)).add(
                    Condition::all()
                        .add(col(Column::CreatedAt).eq(at))
                        .add(col(Column::Id).gt(id)),
                ),
            );
        }
        query
            .order_by((r.clone(), Column::CreatedAt), Order::Asc)
            .order_by((r.clone(), Column::Id), Order::Asc)
            .limit(limit);
        let rows = self
            .db
            .connection()
            .query_all(&query)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let model = task_relations::Model::from_query_result(row, "r_").map_err(store_error)?;
                let other_project_id: Uuid = row.try_get("", "other_project_id").map_err(store_error)?;
                let number: i64 = row.try_get("", "other_number").map_err(store_error)?;
                let key: String = row.try_get("", "other_key").map_err(store_error)?;
                Ok(RelatedTask {
                    relation: to_domain(model)?,
                    other_project_id,
                    other_identifier: format!("{key}-{number}"),
                })
            })
            .collect()
    }

    async fn find(&self, task_id: Uuid, id: Uuid) -> Result<Option<Relation>, StoreError> {
        Entity::find_by_id(id)
            .filter(
                Condition::any()
                    .add(Column::SourceTaskId.eq(task_id))
                    .add(Column::TargetTaskId.eq(task_id)),
            )
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn create(&self, relation: &Relation, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let blocks = relation.kind == RelationType::Blocks;
        if blocks && txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [BLOCKS_LOCK.into()],
            ))
            .await
            .map_err(store_error)?;
        }
        for task in [relation.source_task_id, relation.target_task_id] {
            if !task_exists(&txn, task).await? {
                roll_back(txn).await?;
                return Err(StoreError::NotFound);
            }
        }
        if blocks && closes_cycle(&txn, relation.source_task_id, relation.target_task_id).await? {
            roll_back(txn).await?;
            return Err(StoreError::Conflict("cycle".into()));
        }
        let inserted = Entity::insert(task_relations::ActiveModel {
            id: Set(relation.id),
            source_task_id: Set(relation.source_task_id),
            target_task_id: Set(relation.target_task_id),
            kind: Set(relation.kind.as_str().to_owned()),
            created_by: Set(relation.created_by),
            created_at: Set(relation.created_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error);
        match inserted {
            Ok(_) => commit_change(&self.db, txn, change).await,
            // `ux_task_relations_source_target_kind`: the same relation exists.
            Err(StoreError::Conflict(_)) => {
                roll_back(txn).await?;
                Err(StoreError::Conflict("duplicate".into()))
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError> {
        delete_recorded::<Entity>(&self.db, id, change).await
    }

    async fn blocked_by(&self, task_id: Uuid) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let query = Query::select()
            .column((tasks::Entity, tasks::Column::ProjectId))
            .column((tasks::Entity, tasks::Column::Id))
            .from(Entity)
            .inner_join(
                tasks::Entity,
                Expr::col((tasks::Entity, tasks::Column::Id)).equals((Entity, Column::TargetTaskId)),
            )
            .and_where(Expr::col((Entity, Column::SourceTaskId)).eq(task_id))
            .and_where(Expr::col((Entity, Column::Kind)).eq(RelationType::Blocks.as_str()))
            .to_owned();
        let rows = self
            .db
            .connection()
            .query_all(&query)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let project: Uuid = row.try_get("", "project_id").map_err(store_error)?;
                let task: Uuid = row.try_get("", "id").map_err(store_error)?;
                Ok((project, task))
            })
            .collect()
    }
}
