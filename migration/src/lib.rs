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
mod m20261207_000008_create_personal_tokens;
mod m20261207_000009_task_lifecycle;
mod m20261207_000010_create_task_links;
mod m20261207_000011_create_task_relations;
mod m20261207_000014_audit_resource_history;
mod m20261207_000016_task_search;
mod m20261207_000018_create_event_feed;
mod m20261207_000019_create_notifications;
mod m20261207_000020_account_mail;
mod m20261207_000021_workflow_states;
mod m20261207_000023_task_parents;
mod m20261207_000025_create_invitations;
mod m20261207_000027_task_title_search;

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
            Box::new(m20261207_000008_create_personal_tokens::Migration),
            Box::new(m20261207_000009_task_lifecycle::Migration),
            Box::new(m20261207_000010_create_task_links::Migration),
            Box::new(m20261207_000011_create_task_relations::Migration),
            Box::new(m20261207_000014_audit_resource_history::Migration),
            Box::new(m20261207_000016_task_search::Migration),
            Box::new(m20261207_000018_create_event_feed::Migration),
            Box::new(m20261207_000019_create_notifications::Migration),
            Box::new(m20261207_000020_account_mail::Migration),
            Box::new(m20261207_000021_workflow_states::Migration),
            Box::new(m20261207_000023_task_parents::Migration),
            Box::new(m20261207_000025_create_invitations::Migration),
            Box::new(m20261207_000027_task_title_search::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `src/m*.rs` file is a migration the migrator runs: a file left out of
    /// `migrations()` (or of the `mod` list) would never be applied, and nothing else would
    /// say so.
    #[test]
    fn every_migration_file_is_in_the_migrator() {
        let listed: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| {
                let path = entry.unwrap().path();
                let stem = path.file_stem()?.to_str()?.to_owned();
                (path.extension()? == "rs" && stem.starts_with('m')).then_some(stem)
            })
            .collect();
        files.sort();
        assert_eq!(listed, files, "the migrator's list (in order) against src/m*.rs");
    }
}
