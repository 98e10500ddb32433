//! Schema migrations, applied at start-up or through `keel migrate`.
//!
//! On PostgreSQL each migration runs in a transaction of its own (SeaORM's default there).
//! On SQLite, where SeaORM would run a migration's statements one by one on whichever pooled
//! connection is free, a whole `up` or `down` runs in one write transaction on one
//! connection: all or nothing, and its DDL never runs on a connection that cached a
//! statement against a schema another connection has changed since (SQLite does not re-check
//! a cached `CREATE INDEX` then: "index … already exists" on an `up` after a `down` in one
//! process, seen in CI).

use keel_domain::StoreError;
use keel_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::MigrationStatus;

use crate::db::{Database, store_error};

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// Applies every pending migration.
pub async fn up(db: &Database) -> Result<(), StoreError> {
    if db.connection().get_database_backend() == DbBackend::Sqlite {
        let txn = db.begin_write().await?;
        Migrator::up(&txn, None).await.map_err(store_error)?;
        return txn.commit().await.map_err(store_error);
    }
    Migrator::up(db.connection().pool(), None)
        .await
        .map_err(store_error)
}

/// Rolls back the last `steps` applied migrations.
pub async fn down(db: &Database, steps: u32) -> Result<(), StoreError> {
    if db.connection().get_database_backend() == DbBackend::Sqlite {
        let txn = db.begin_write().await?;
        Migrator::down(&txn, Some(steps)).await.map_err(store_error)?;
        return txn.commit().await.map_err(store_error);
    }
    Migrator::down(db.connection().pool(), Some(steps))
        .await
        .map_err(store_error)
}

/// Every known migration in order, with its state.
pub async fn status(db: &Database) -> Result<Vec<MigrationState>, StoreError> {
    let migrations = Migrator::get_migration_with_status(db.connection().pool())
        .await
        .map_err(store_error)?;
    Ok(migrations
        .into_iter()
        .map(|m| MigrationState {
            name: m.name().to_owned(),
            applied: m.status() == MigrationStatus::Applied,
        })
        .collect())
}
