//! Links on tasks (`/tasks/{id}/links`): one row per URL on a task, the URL stored
//! normalised (ASCII, at most 2048 bytes, so the unique index holds it on PostgreSQL).
//! Links go with their task (`ON DELETE CASCADE`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskLinks::Table)
                    .col(pk_uuid(TaskLinks::Id))
                    .col(uuid(TaskLinks::TaskId))
                    .col(string_len(TaskLinks::Url, 2048))
                    .col(text_null(TaskLinks::Title))
                    .col(uuid(TaskLinks::CreatedBy))
                    .col(timestamp_with_time_zone(TaskLinks::CreatedAt))
                    .col(timestamp_with_time_zone(TaskLinks::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_links_task")
                            .from(TaskLinks::Table, TaskLinks::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_links_creator")
                            .from(TaskLinks::Table, TaskLinks::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // One link per URL on a task; a concurrent second create of the same URL fails here.
        manager
            .create_index(
                Index::create()
                    .name("ux_task_links_task_url")
                    .table(TaskLinks::Table)
                    .col(TaskLinks::TaskId)
                    .col(TaskLinks::Url)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The list: a task's links oldest first, the id breaking ties.
        manager
            .create_index(
                Index::create()
                    .name("ix_task_links_task_created")
                    .table(TaskLinks::Table)
                    .col(TaskLinks::TaskId)
                    .col(TaskLinks::CreatedAt)
                    .col(TaskLinks::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskLinks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TaskLinks {
    Table,
    Id,
    TaskId,
    Url,
    Title,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
