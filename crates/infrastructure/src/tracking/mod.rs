//! Tracking adapters on SeaORM (docs/api/tracking.md): projects, members, labels, tasks, comments, and the
//! project activity feed.
//!
//! Every write runs in one transaction with the audit entry that describes it and its domain
//! event (the outbox), so neither the feed nor the event stream misses or invents a change. Version-guarded updates change nothing (and record
//! nothing) when the stored version differs.

pub mod activity;
pub mod comments;
pub mod invitations;
pub mod labels;
pub mod links;
pub mod members;
pub mod projects;
pub mod relations;
pub mod search;
pub mod states;
pub mod tasks;

pub use comments::SeaOrmCommentRepository;
pub use invitations::SeaOrmInvitationRepository;
pub use labels::SeaOrmLabelRepository;
pub use links::SeaOrmLinkRepository;
pub use members::SeaOrmMemberRepository;
pub use projects::SeaOrmProjectRepository;
pub use relations::SeaOrmRelationRepository;
pub use search::SeaOrmSearchIndex;
pub use states::SeaOrmStateRepository;
pub use tasks::SeaOrmTaskRepository;

use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ProjectAccess;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, IntoIden, LockType, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    PrimaryKeyTrait, QueryResult, QuerySelect,
};
use uuid::Uuid;

use crate::audit::{hold_authority, insert_entry, insert_held_entry};
use crate::db::{Database, store_error};
use crate::entities::projects as project_rows;
use crate::entities::{self, project_members};
use crate::events::outbox::insert_event;

/// A stored row that no longer parses is a bug or tampering, never a client error.
fn corrupt(table: &str, id: impl std::fmt::Display, what: &str) -> StoreError {
    StoreError::Unexpected(format!("{table} row {id} has an invalid {what}").into())
}

/// Selects every column of `E`, read from `table` (the entity's table or a subquery's alias),
/// as `<prefix><column>`: several entities' rows in one statement, each read back with
/// `Model::from_query_result(row, prefix)`.
fn select_prefixed<E: EntityTrait>(query: &mut SelectStatement, table: impl IntoIden + Clone, prefix: &str) {
    for column in E::Column::iter() {
        let name = column.as_str();
        query.expr_as(
            Expr::col((table.clone().into_iden(), Alias::new(name))),
            Alias::new(format!("{prefix}{name}")),
        );
    }
}

/// Adds the caller's project and role to `query`: the project's columns as `p_…` and the
/// membership's role as `caller_role` (NULL for a non-member). `query` must select from (or
/// join) `projects`; this left-joins `project_members` for `user_id`.
fn with_access(query: &mut SelectStatement, user_id: Uuid) {
    select_prefixed::<entities::projects::Entity>(query, entities::projects::Entity, "p_");
    query
        .expr_as(
            Expr::col((project_members::Entity, project_members::Column::Role)),
            Alias::new("caller_role"),
        )
        .left_join(
            project_members::Entity,
            Expr::col((project_members::Entity, project_members::Column::ProjectId))
                .equals((entities::projects::Entity, entities::projects::Column::Id))
                .and(project_members::Column::UserId.eq(user_id)),
        );
}

/// The [`ProjectAccess`] of a row read with [`with_access`].
fn access_from_row(row: &QueryResult) -> Result<ProjectAccess, StoreError> {
    let model = entities::projects::Model::from_query_result(row, "p_").map_err(store_error)?;
    let project = projects::to_domain(model)?;
    let role: Option<String> = row.try_get("", "caller_role").map_err(store_error)?;
    let role = role.map(|r| projects::parse_role(&r, project.id)).transpose()?;
    Ok(ProjectAccess { project, role })
}

/// Ends a transaction that must leave no trace (a guard did not hold).
async fn roll_back(txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.rollback().await.map_err(store_error)
}

/// Locks the project row `id` until the end of the transaction on `conn` (`SELECT … FOR NO
/// KEY UPDATE` on PostgreSQL: other writers of the row wait, inserts of its children do
/// not; SQLite's write transactions hold the whole database from their first statement).
/// `false` when there is no such project.
pub(crate) async fn lock_project(conn: &impl ConnectionTrait, id: Uuid) -> Result<bool, StoreError> {
    let found: Option<Uuid> = project_rows::Entity::find_by_id(id)
        .select_only()
        .column(project_rows::Column::Id)
        .lock(LockType::NoKeyUpdate)
        .into_tuple()
        .one(conn)
        .await
        .map_err(store_error)?;
    Ok(found.is_some())
}

/// Records the change's audit entry and event in its transaction, commits, and wakes the
/// outbox dispatcher. The entry's insert checks the actor's authority (see
/// [`insert_entry`]): a change whose actor lost it is rolled back (`AuthorityLost`).
async fn commit_change(db: &Database, txn: DatabaseTransaction, change: &Change) -> Result<(), StoreError> {
    record_change(&txn, change, false).await?;
    commit_recorded(db, txn).await
}

/// As [`commit_change`], for a write that holds its authority already ([`hold_authority`]).
async fn commit_held_change(
    db: &Database,
    txn: DatabaseTransaction,
    change: &Change,
) -> Result<(), StoreError> {
    record_change(&txn, change, true).await?;
    commit_recorded(db, txn).await
}

async fn commit_recorded(db: &Database, txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.commit().await.map_err(store_error)?;
    db.outbox_written();
    Ok(())
}

/// Records the change's audit entry and event in the transaction, checking the actor's
/// authority unless the transaction `held` it already. Dropping the transaction after an
/// error rolls it back.
async fn record_change(txn: &DatabaseTransaction, change: &Change, held: bool) -> Result<(), StoreError> {
    if held {
        insert_held_entry(txn, &change.audit).await?;
    } else {
        insert_entry(txn, &change.audit).await?;
    }
    insert_event(txn, &change.event).await
}

/// Ends a version-guarded write whose guarded statement touched `rows_affected` rows: none
/// (another write got there first) rolls everything back and answers `false`; otherwise the
/// change is recorded and all is committed.
async fn finish_guarded(
    db: &Database,
    txn: DatabaseTransaction,
    rows_affected: u64,
    change: &Change,
) -> Result<bool, StoreError> {
    if rows_affected == 0 {
        roll_back(txn).await?;
        return Ok(false);
    }
    commit_change(db, txn, change).await?;
    Ok(true)
}

/// Deletes the row `id` of `E` with its change recorded, in one transaction (children go by
/// the foreign keys' `ON DELETE CASCADE`). `NotFound` when there is no such row.
async fn delete_recorded<E>(db: &Database, id: Uuid, change: &Change) -> Result<(), StoreError>
where
    E: EntityTrait,
    Uuid: Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    let txn = db.begin_write().await?;
    let result = E::delete_by_id(id).exec(&txn).await.map_err(store_error)?;
    if result.rows_affected == 0 {
        roll_back(txn).await?;
        return Err(StoreError::NotFound);
    }
    commit_change(db, txn, change).await
}
