//! The label store on SeaORM.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::LabelRepository;
use keel_domain::tracking::{Color, Label, LabelName};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use super::{commit_change, corrupt, roll_back};
use crate::db::fetch_page_as;
use crate::db::{Database, store_error};
use crate::entities::labels::{self, Column, Entity};
use crate::entities::{task_labels, tasks};

#[derive(Debug, Clone)]
pub struct SeaOrmLabelRepository {
    db: Database,
}

impl SeaOrmLabelRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn to_domain(m: labels::Model) -> Result<Label, StoreError> {
    let bad = |what| corrupt("labels", m.id, what);
    Ok(Label {
        id: m.id,
        project_id: m.project_id,
        name: LabelName::from_stored(m.name.clone()),
        color: Color::parse(&m.color).map_err(|_| bad("color"))?,
        created_at: m.created_at,
    })
}

#[async_trait]
impl LabelRepository for SeaOrmLabelRepository {
    async fn list(&self, project_id: Uuid, offset: u64, limit: u64) -> Result<(Vec<Label>, u64), StoreError> {
        let select = Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .order_by_asc(Column::Name)
            .order_by_asc(Column::Id);
        let (rows, total) = fetch_page_as::<_, labels::Model>(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect::<Result<_, _>>()?, total))
    }

    async fn create(&self, label: &Label, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        // `ux_labels_project_name` turns a second label of the same name into `Conflict`.
        Entity::insert(labels::ActiveModel {
            id: Set(label.id),
            project_id: Set(label.project_id),
            name: Set(label.name.as_str().to_owned()),
            color: Set(label.color.as_str().to_owned()),
            created_at: Set(label.created_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await
    }

    async fn find(&self, project_id: Uuid, label_id: Uuid) -> Result<Option<Label>, StoreError> {
        Entity::find_by_id(label_id)
            .filter(Column::ProjectId.eq(project_id))
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn find_by_names(&self, project_id: Uuid, names: &[LabelName]) -> Result<Vec<Label>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::Name.is_in(names.iter().map(LabelName::as_str)))
            .order_by_asc(Column::Name)
            .order_by_asc(Column::Id)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn find_by_ids(&self, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<Label>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(Column::Name)
            .order_by_asc(Column::Id)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn update(&self, label: &Label, renamed: bool, change: &Change) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.db.begin_write().await?;
        // `ux_labels_project_name` turns a rename to a taken name into `Conflict`.
        let updated = Entity::update_many()
            .col_expr(Column::Name, Expr::value(label.name.as_str()))
            .col_expr(Column::Color, Expr::value(label.color.as_str()))
            .filter(Column::Id.eq(label.id))
            .filter(Column::ProjectId.eq(label.project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if updated.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        let mut relabeled = Vec::new();
        if renamed {
            relabeled = task_labels::Entity::find()
                .select_only()
                .column(task_labels::Column::TaskId)
                .filter(task_labels::Column::LabelId.eq(label.id))
                .into_tuple()
                .all(&txn)
                .await
                .map_err(store_error)?;
            let carrying = Query::select()
                .column(task_labels::Column::TaskId)
                .from(task_labels::Entity)
                .and_where(Expr::col(task_labels::Column::LabelId).eq(label.id))
                .to_owned();
            // The tasks show the new name: a new version (hence a new `ETag`) and
            // `updated_at`, so `updatedSince` lists them.
            tasks::Entity::update_many()
                .col_expr(tasks::Column::Version, Expr::col(tasks::Column::Version).add(1))
                .col_expr(tasks::Column::UpdatedAt, Expr::value(change.audit.occurred_at))
                .filter(tasks::Column::ProjectId.eq(label.project_id))
                .filter(tasks::Column::Id.in_subquery(carrying))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        commit_change(&self.db, txn, change).await?;
        Ok(relabeled)
    }

    async fn delete(
        &self,
        project_id: Uuid,
        label_id: Uuid,
        change: &Change,
    ) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.db.begin_write().await?;
        let relabeled: Vec<Uuid> = task_labels::Entity::find()
            .select_only()
            .column(task_labels::Column::TaskId)
            .filter(task_labels::Column::LabelId.eq(label_id))
            .into_tuple()
            .all(&txn)
            .await
            .map_err(store_error)?;
        // Only a label of this project: anything else is rolled back below as `NotFound`.
        let carrying = Query::select()
            .column(task_labels::Column::TaskId)
            .from(task_labels::Entity)
            .and_where(Expr::col(task_labels::Column::LabelId).eq(label_id))
            .to_owned();
        // Taking the label off a task changes the task: a new version (hence a new `ETag`)
        // and `updated_at`, so `updatedSince` lists it.
        tasks::Entity::update_many()
            .col_expr(tasks::Column::Version, Expr::col(tasks::Column::Version).add(1))
            .col_expr(tasks::Column::UpdatedAt, Expr::value(change.audit.occurred_at))
            .filter(tasks::Column::ProjectId.eq(project_id))
            .filter(tasks::Column::Id.in_subquery(carrying))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // The foreign key cascades too; explicit, so it never depends on the pragma.
        task_labels::Entity::delete_many()
            .filter(task_labels::Column::LabelId.eq(label_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        let deleted = Entity::delete_many()
            .filter(Column::Id.eq(label_id))
            .filter(Column::ProjectId.eq(project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if deleted.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        commit_change(&self.db, txn, change).await?;
        Ok(relabeled)
    }
}
