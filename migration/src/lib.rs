//! Keel's schema migrations. Each one runs on SQLite and PostgreSQL and has a working
//! `down`; `tests/` applies every migration up, down and up again on both databases.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_audit_log;
mod m20261122_000002_create_identity;
mod m20261122_000003_create_tracking;
mod m20261122_000004_tracking_lists;
mod m20261122_000005_create_idempotency_keys;
mod m20261123_000006_create_events;
mod m20261207_000007_audit_restricted_details;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_audit_log::Migration),
            Box::new(m20261122_000002_create_identity::Migration),
            Box::new(m20261122_000003_create_tracking::Migration),
            Box::new(m20261122_000004_tracking_lists::Migration),
            Box::new(m20261122_000005_create_idempotency_keys::Migration),
            Box::new(m20261123_000006_create_events::Migration),
            Box::new(m20261207_000007_audit_restricted_details::Migration),
        ]
    }
}
