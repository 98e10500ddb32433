//! The project store on SeaORM.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::ProjectRepository;
use keel_domain::tracking::{
    Project, ProjectAccess, ProjectFilter, ProjectKey, ProjectName, ProjectRole, ProjectSort, ProjectSortKey,
    ProjectStatus, ProjectWithRole, Scope, StateKey, WorkflowState,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, JoinType, Order, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait, Set,
};
use uuid::Uuid;

use super::{
    access_from_row, commit_change, commit_recorded, corrupt, finish_guarded, hold_authority, record_change,
    roll_back, with_access,
};
use crate::db::{Database, fetch_page_as, fold, store_error};
use crate::entities::project_members;
use crate::entities::projects::{self, Column, Entity};
use crate::entities::workflow_states::Entity as WorkflowStateEntity;
use crate::identity::users::contains_pattern;

#[derive(Debug, Clone)]
pub struct SeaOrmProjectRepository {
    db: Database,
}

impl SeaOrmProjectRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

pub(super) fn to_domain(m: projects::Model) -> Result<Project, StoreError> {
    let bad = |what| corrupt("projects", m.id, what);
    Ok(Project {
        id: m.id,
        key: ProjectKey::parse(&m.key).map_err(|_| bad("key"))?,
        name: ProjectName::from_stored(m.name.clone()),
        description: m.description,
        status: ProjectStatus::parse(&m.status, "status").map_err(|_| bad("status"))?,
        owner_id: m.owner_id,
        default_state: StateKey::from_stored(m.default_state.clone()),
        state_keys: m
            .state_keys
            .split(',')
            .filter(|k| !k.is_empty())
            .map(|k| StateKey::from_stored(k.to_owned()))
            .collect(),
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(super) fn parse_role(raw: &str, project_id: Uuid) -> Result<ProjectRole, StoreError> {
    ProjectRole::parse(raw, "role").map_err(|_| corrupt("project_members", project_id, "role"))
}

/// A project and the role of the member the list is for.
#[derive(Debug, FromQueryResult)]
struct ProjectRow {
    #[sea_orm(nested)]
    project: projects::Model,
    member_role: String,
}

#[async_trait]
impl ProjectRepository for SeaOrmProjectRepository {
    async fn create(&self, project: &Project, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        Entity::insert(projects::ActiveModel {
            id: Set(project.id),
            key: Set(project.key.as_str().to_owned()),
            name: Set(project.name.as_str().to_owned()),
            name_folded: Set(fold(project.name.as_str())),
            description: Set(project.description.clone()),
            status: Set(project.status.as_str().to_owned()),
            owner_id: Set(project.owner_id),
            last_task_number: Set(0),
            default_state: Set(project.default_state.as_str().to_owned()),
            state_keys: Set(super::states::joined(&WorkflowState::defaults(
                project.id,
                project.created_at,
            ))),
            version: Set(project.version),
            created_at: Set(project.created_at),
            updated_at: Set(project.updated_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        project_members::Entity::insert(project_members::ActiveModel {
            project_id: Set(project.id),
            user_id: Set(project.owner_id),
            role: Set(ProjectRole::Owner.as_str().to_owned()),
            created_at: Set(project.created_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        // The six default states (the project's `default_state` is one of them).
        WorkflowStateEntity::insert_many(
            WorkflowState::defaults(project.id, project.created_at)
                .iter()
                .map(super::states::active_model),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await
    }

    async fn find(&self, id: Uuid) -> Result<Option<Project>, StoreError> {
        Entity::find_by_id(id)
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn find_access(
        &self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<ProjectAccess>, StoreError> {
        let mut query = Query::select();
        query
            .from(Entity)
            .and_where(Expr::col((Entity, Column::Id)).eq(project_id));
        with_access(&mut query, user_id);
        let row = self
            .db
            .connection()
            .query_one(&query)
            .await
            .map_err(store_error)?;
        row.as_ref().map(access_from_row).transpose()
    }

    async fn role_of(&self, project_id: Uuid, user_id: Uuid) -> Result<Option<ProjectRole>, StoreError> {
        let role: Option<String> = project_members::Entity::find_by_id((project_id, user_id))
            .select_only()
            .column(project_members::Column::Role)
            .into_tuple()
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        role.map(|r| parse_role(&r, project_id)).transpose()
    }

    async fn update(
        &self,
        project: &Project,
        expected_version: i64,
        default_changed: bool,
        change: &Change,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        let result = Entity::update_many()
            .col_expr(Column::Name, Expr::value(project.name.as_str()))
            .col_expr(Column::NameFolded, Expr::value(fold(project.name.as_str())))
            .col_expr(Column::Description, Expr::value(project.description.clone()))
            .col_expr(Column::Status, Expr::value(project.status.as_str()))
            .col_expr(Column::DefaultState, Expr::value(project.default_state.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(project.updated_at))
            .col_expr(Column::Version, Expr::value(expected_version + 1))
            .filter(Column::Id.eq(project.id))
            .filter(Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        // A new default must be a state of the project when the write happens; its row held
        // after the project's (the order every state write takes), so a deletion of it waits
        // and then sees it is the default. A default left as it was needs no check: a state
        // write deleting it holds the project row too, and refuses to delete the default it
        // reads there (the version guard above makes this write see the same row).
        if result.rows_affected > 0
            && default_changed
            && super::states::state_category(&txn, project.id, &project.default_state)
                .await?
                .is_none()
        {
            roll_back(txn).await?;
            return Err(StoreError::Conflict(
                "the default state is no state of the project".into(),
            ));
        }
        finish_guarded(&self.db, txn, result.rows_affected, change).await
    }

    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError> {
        // The caller's authority held first (a hand-over it waited for is seen), and the
        // change recorded before the deletion takes the memberships with it. Members, labels,
        // tasks (and with them task labels and comments) go by the foreign keys' ON DELETE
        // CASCADE; SQLite enforces them (`foreign_keys` is on for every pooled connection,
        // see `Database::connect`).
        let txn = self.db.begin_write().await?;
        hold_authority(&txn, &change.audit, None).await?;
        record_change(&txn, change, true).await?;
        let deleted = Entity::delete_by_id(id).exec(&txn).await.map_err(store_error)?;
        if deleted.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        commit_recorded(&self.db, txn).await
    }

    async fn list(
        &self,
        scope: Scope,
        filter: &ProjectFilter,
        sort: ProjectSort,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<ProjectWithRole>, u64), StoreError> {
        let mut condition = Condition::all();
        if let Some(status) = filter.status {
            condition = condition.add(Column::Status.eq(status.as_str()));
        }
        if let Some(ids) = &filter.projects {
            condition = condition.add(Expr::col((Entity, Column::Id)).is_in(ids.iter().copied()));
        }
        if let Some(q) = &filter.q {
            condition = condition.add(
                Condition::any()
                    .add(Expr::col((Entity, Column::NameFolded)).like(contains_pattern(q)))
                    .add(Expr::expr(Func::lower(Expr::col((Entity, Column::Key)))).like(contains_pattern(q))),
            );
        }
        let order = if sort.descending { Order::Desc } else { Order::Asc };
        let column = match sort.key {
            ProjectSortKey::Name => Column::Name,
            ProjectSortKey::CreatedAt => Column::CreatedAt,
            ProjectSortKey::UpdatedAt => Column::UpdatedAt,
        };
        let select = Entity::find()
            .filter(condition)
            .order_by(column, order.clone())
            .order_by(Column::Id, order);
        match scope {
            Scope::MemberOf(user_id) => {
                let select = select
                    .join(
                        JoinType::InnerJoin,
                        project_members::Relation::Project.def().rev(),
                    )
                    .filter(project_members::Column::UserId.eq(user_id))
                    .column_as(project_members::Column::Role, "member_role");
                let (rows, total) = fetch_page_as::<_, ProjectRow>(&self.db, select, offset, limit).await?;
                let projects = rows
                    .into_iter()
                    .map(|row| {
                        let role = parse_role(&row.member_role, row.project.id)?;
                        Ok(ProjectWithRole {
                            project: to_domain(row.project)?,
                            role,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok((projects, total))
            }
            // `Scope::All` names no user, so there is no membership to look up: the caller is
            // an instance admin, who acts as the owner of every project.
            Scope::All => {
                let (rows, total) =
                    fetch_page_as::<_, projects::Model>(&self.db, select, offset, limit).await?;
                let projects = rows
                    .into_iter()
                    .map(|m| {
                        Ok(ProjectWithRole {
                            project: to_domain(m)?,
                            role: ProjectRole::Owner,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok((projects, total))
            }
            Scope::Project(_) => Err(StoreError::Unexpected(
                "the project list takes Scope::MemberOf or Scope::All".into(),
            )),
        }
    }
}
