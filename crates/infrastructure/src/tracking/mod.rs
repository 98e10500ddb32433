//! Tracking adapters on SeaORM (SPEC §5): projects, members, labels, tasks, comments, and the
//! project activity feed.
//!
//! Every write runs in one transaction with the audit entry that describes it, so the feed
//! never misses or invents a change. Version-guarded updates change nothing (and record
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
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, PaginatorTrait, QuerySelect,
};

use crate::db::store_error;

/// A stored row that no longer parses is a bug or tampering, never a client error.
fn corrupt(table: &str, id: impl std::fmt::Display, what: &str) -> StoreError {
    StoreError::Unexpected(format!("{table} row {id} has an invalid {what}").into())
}

/// Ends a transaction that must leave no trace (a guard did not hold).
async fn roll_back(txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.rollback().await.map_err(store_error)
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
