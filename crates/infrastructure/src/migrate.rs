//! Schema migrations, applied at start-up or through `keel migrate`.

use keel_domain::StoreError;
use keel_migration::{Migrator, MigratorTrait};
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
    Migrator::up(db.connection().pool(), None)
        .await
        .map_err(store_error)
}

/// Rolls back the last `steps` applied migrations.
pub async fn down(db: &Database, steps: u32) -> Result<(), StoreError> {
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
