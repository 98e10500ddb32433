//! Tracking adapters on SeaORM (SPEC §5): projects, members, labels, tasks, comments, and the
//! project activity feed.
//!
//! Every write runs in one transaction with the audit entry that describes it and its domain
//! event (the outbox), so neither the feed nor the event stream misses or invents a change. Version-guarded updates change nothing (and record
//! nothing) when the stored version differs.

pub mod activity;
pub mod comments;
pub mod labels;
pub mod members;
pub mod projects;
pub mod tasks;

pub use comments::SeaOrmCommentRepository;
pub use labels::SeaOrmLabelRepository;
pub use members::SeaOrmMemberRepository;
pub use projects::SeaOrmProjectRepository;
pub use tasks::SeaOrmTaskRepository;

use keel_domain::StoreError;
use keel_domain::events::Change;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, PaginatorTrait, PrimaryKeyTrait,
    QuerySelect,
};
use uuid::Uuid;

use crate::audit::insert_entry;
use crate::db::{Database, store_error};
use crate::events::outbox::insert_event;

/// A stored row that no longer parses is a bug or tampering, never a client error.
fn corrupt(table: &str, id: impl std::fmt::Display, what: &str) -> StoreError {
    StoreError::Unexpected(format!("{table} row {id} has an invalid {what}").into())
}

/// Ends a transaction that must leave no trace (a guard did not hold).
async fn roll_back(txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.rollback().await.map_err(store_error)
}

/// Records the change's audit entry and event in its transaction, commits, and wakes the
/// outbox dispatcher.
async fn commit_change(db: &Database, txn: DatabaseTransaction, change: &Change) -> Result<(), StoreError> {
    insert_entry(&txn, &change.audit).await?;
    insert_event(&txn, &change.event).await?;
    txn.commit().await.map_err(store_error)?;
    db.outbox_written();
    Ok(())
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

/// One offset page of `select` (filtered and ordered with a unique tiebreaker), read as `M`,
/// and the number of rows the filter matches.
async fn fetch_page_as<E, M>(
    conn: &impl ConnectionTrait,
    select: sea_orm::Select<E>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<M>, u64), StoreError>
where
    E: EntityTrait,
    E::Model: Sync,
    M: FromQueryResult + Send + Sync,
{
    let total = select.clone().count(conn).await.map_err(store_error)?;
    let rows = select
        .offset(offset)
        .limit(limit)
        .into_model::<M>()
        .all(conn)
        .await
        .map_err(store_error)?;
    Ok((rows, total))
}
