//! Task lifecycle: a task can be archived (`archived_at`) and moved to its project's trash
//! (`deleted_at`); both are NULL for a live task.
//!
//! Every task list leaves trashed tasks out, and archived ones unless asked for. The sort
//! indexes of the lists (`ix_tasks_project_*`, `ix_tasks_created`) are replaced by the same
//! with `archived_at` and `deleted_at` appended after the id (`ix_tasks_life_*`; the choice,
//! the alternatives and the plans: docs/performance.md, "Archived and trashed tasks"): the
//! lists still read them in their order, and the two tests are made on the index entry, so
//! a skipped archived or trashed task costs no table read on PostgreSQL. The trash page and the background purge read
//! `ix_tasks_trash`, a partial index holding trashed tasks only.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(old name, new name, columns before this migration)` of the list indexes this migration
/// replaces with ones that have `archived_at` and `deleted_at` appended. The new index is
/// created before the old one is dropped (no moment without an index for the lists), hence
/// the new names.
fn list_indexes() -> Vec<(&'static str, &'static str, Vec<Tasks>)> {
    vec![
        (
            "ix_tasks_project_created",
            "ix_tasks_life_project_created",
            vec![Tasks::ProjectId, Tasks::CreatedAt, Tasks::Id],
        ),
        (
            "ix_tasks_project_updated",
            "ix_tasks_life_project_updated",
            vec![Tasks::ProjectId, Tasks::UpdatedAt, Tasks::Id],
        ),
        (
            "ix_tasks_project_priority",
            "ix_tasks_life_project_priority",
            vec![Tasks::ProjectId, Tasks::PriorityRank, Tasks::Id],
        ),
        (
            "ix_tasks_project_due",
            "ix_tasks_life_project_due",
            vec![Tasks::ProjectId, Tasks::DueDate, Tasks::Id],
        ),
        (
            "ix_tasks_created",
            "ix_tasks_life_created",
            vec![Tasks::CreatedAt, Tasks::Id],
        ),
    ]
}

const TRASH_INDEX: &str = "ix_tasks_trash";

async fn create_index(manager: &SchemaManager<'_>, name: &str, cols: &[Tasks]) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(Tasks::Table);
    for col in cols {
        index.col(*col);
    }
    manager.create_index(index.to_owned()).await
}

async fn drop_index(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    manager
        .drop_index(Index::drop().name(name).table(Tasks::Table).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [Tasks::ArchivedAt, Tasks::DeletedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tasks::Table)
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        for (old, new, mut cols) in list_indexes() {
            cols.extend([Tasks::ArchivedAt, Tasks::DeletedAt]);
            create_index(manager, new, &cols).await?;
            drop_index(manager, old).await?;
        }
        // Partial (`WHERE deleted_at IS NOT NULL`): both databases use it for a query that
        // says `deleted_at IS NOT NULL` or compares `deleted_at`. Written out, as the index
        // builder has no portable WHERE.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX \"{TRASH_INDEX}\" ON \"tasks\" (\"project_id\", \"deleted_at\", \"id\") \
                 WHERE \"deleted_at\" IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Indexes first: SQLite refuses to drop a column an index uses.
        drop_index(manager, TRASH_INDEX).await?;
        for (old, new, cols) in list_indexes() {
            create_index(manager, old, &cols).await?;
            drop_index(manager, new).await?;
        }
        // Trashed tasks become live ones and archived ones unarchived: a rollback deletes no
        // task (docs/operations.md). DROP COLUMN needs SQLite 3.35 or later (the bundled
        // SQLite is newer).
        for column in [Tasks::DeletedAt, Tasks::ArchivedAt] {
            manager
                .alter_table(Table::alter().table(Tasks::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    ProjectId,
    PriorityRank,
    DueDate,
    CreatedAt,
    UpdatedAt,
    ArchivedAt,
    DeletedAt,
}
