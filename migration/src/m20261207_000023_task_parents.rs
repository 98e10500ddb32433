//! Sub-tasks: a task may have a parent task of the same project (`parent_id`, NULL for a
//! top-level task). The rules (same project, no cycle, at most five levels) are the
//! application's, checked again in the write's transaction under the project's lock.
//!
//! No foreign key: SQLite cannot drop a column a foreign key uses (the `down`), and every
//! write that removes a parent (trash, purge) detaches its children itself, in its
//! transaction. `ix_tasks_parent` serves a task's child counts (read with every task), the
//! children list and the `parent` filter.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_tasks_parent";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(ColumnDef::new(Tasks::ParentId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Tasks::Table)
                    .col(Tasks::ParentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The index first: SQLite refuses to drop a column an index uses. Sub-tasks become
        // top-level tasks; no task is deleted.
        manager
            .drop_index(Index::drop().name(INDEX).table(Tasks::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::ParentId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    ParentId,
}
