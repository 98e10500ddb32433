//! A full-text index of task titles alone on PostgreSQL (adr/0020-search-index.md, "Common
//! words"). `tasks.search_vector` holds title and description together, the title's words
//! weighted `A`; its GIN index cannot tell weights apart, so "these words in the title"
//! read every task holding them anywhere and dropped those where they were only in the
//! description — hundreds of thousands of rows for a word common in descriptions. This
//! expression index holds the title's words only (the same `to_tsvector` of the folded
//! title as the weighted part of `search_vector`). SQLite's FTS5 table already indexes the
//! title as a column of its own: nothing to do there.
//!
//! Also, on both databases, `ix_tasks_number` on `tasks.number`: a search or a list's `q`
//! that is a number or an identifier matches that number in every visible project, beside
//! the words; with this index PostgreSQL reads both from indexes (a bitmap OR) instead of
//! scanning every task for the number.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_tasks_title_search";
const NUMBER_INDEX: &str = "ix_tasks_number";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NUMBER_INDEX)
                    .table(Alias::new("tasks"))
                    .col(Alias::new("number"))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX \"{INDEX}\" ON \"tasks\" USING gin \
                 (to_tsvector('pg_catalog.simple'::regconfig, keel_fold(\"title\")))"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NUMBER_INDEX)
                    .table(Alias::new("tasks"))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS \"{INDEX}\""))
            .await?;
        Ok(())
    }
}
