//! Relations between tasks (`/tasks/{id}/relations`): one row per relation, in its canonical
//! direction (`blocks`, `relates_to`, `duplicate_of`; `blocked_by` is stored as the inverse
//! `blocks`, and so on). Relations go with either task (`ON DELETE CASCADE`).

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
                    .table(TaskRelations::Table)
                    .col(pk_uuid(TaskRelations::Id))
                    .col(uuid(TaskRelations::SourceTaskId))
                    .col(uuid(TaskRelations::TargetTaskId))
                    .col(string_len(TaskRelations::Kind, 16))
                    .col(uuid(TaskRelations::CreatedBy))
                    .col(timestamp_with_time_zone(TaskRelations::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_relations_source")
                            .from(TaskRelations::Table, TaskRelations::SourceTaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_relations_target")
                            .from(TaskRelations::Table, TaskRelations::TargetTaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_relations_creator")
                            .from(TaskRelations::Table, TaskRelations::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // One row per relation; also the walk along `blocks` from a source.
        manager
            .create_index(
                Index::create()
                    .name("ux_task_relations_source_target_kind")
                    .table(TaskRelations::Table)
                    .col(TaskRelations::SourceTaskId)
                    .col(TaskRelations::TargetTaskId)
                    .col(TaskRelations::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // A task's relations where it is the target.
        manager
            .create_index(
                Index::create()
                    .name("ix_task_relations_target")
                    .table(TaskRelations::Table)
                    .col(TaskRelations::TargetTaskId)
                    .col(TaskRelations::Kind)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskRelations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TaskRelations {
    Table,
    Id,
    SourceTaskId,
    TargetTaskId,
    Kind,
    CreatedBy,
    CreatedAt,
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
