//! The tracking schema of docs/api/tracking.md: projects, members, labels, tasks, task labels, comments.
//! The indexes here serve ownership, membership and per-user aggregates; the list routes add
//! their own keyset indexes with their migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(col);
    }
    index.to_owned()
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(pk_uuid(Projects::Id))
                    .col(string_len_uniq(Projects::Key, 10))
                    .col(string_len(Projects::Name, 100))
                    .col(text_null(Projects::Description))
                    .col(string_len(Projects::Status, 16))
                    .col(uuid(Projects::OwnerId))
                    // The last task number handed out: incremented in the creating transaction,
                    // so numbers are sequential and gap-free per project.
                    .col(big_integer(Projects::LastTaskNumber).default(0))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_projects_owner",
                        (Projects::Table, Projects::OwnerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_projects_owner",
                Projects::Table,
                vec![Projects::OwnerId.into_iden()],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProjectMembers::Table)
                    .col(uuid(ProjectMembers::ProjectId))
                    .col(uuid(ProjectMembers::UserId))
                    .col(string_len(ProjectMembers::Role, 16))
                    .col(timestamp_with_time_zone(ProjectMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(ProjectMembers::ProjectId)
                            .col(ProjectMembers::UserId),
                    )
                    .foreign_key(&mut fk(
                        "fk_members_project",
                        (ProjectMembers::Table, ProjectMembers::ProjectId),
                        (Projects::Table, Projects::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_members_user",
                        (ProjectMembers::Table, ProjectMembers::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_members_user",
                ProjectMembers::Table,
                vec![
                    ProjectMembers::UserId.into_iden(),
                    ProjectMembers::ProjectId.into_iden(),
                ],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Labels::Table)
                    .col(pk_uuid(Labels::Id))
                    .col(uuid(Labels::ProjectId))
                    .col(string_len(Labels::Name, 30))
                    .col(string_len(Labels::Color, 7))
                    .col(timestamp_with_time_zone(Labels::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_labels_project",
                        (Labels::Table, Labels::ProjectId),
                        (Projects::Table, Projects::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_labels_project_name",
                    Labels::Table,
                    vec![Labels::ProjectId.into_iden(), Labels::Name.into_iden()],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(pk_uuid(Tasks::Id))
                    .col(uuid(Tasks::ProjectId))
                    .col(big_integer(Tasks::Number))
                    .col(string_len(Tasks::Title, 200))
                    .col(text_null(Tasks::Description))
                    .col(string_len(Tasks::Status, 16))
                    .col(small_integer(Tasks::Priority))
                    .col(uuid_null(Tasks::AssigneeId))
                    .col(date_null(Tasks::DueDate))
                    .col(uuid(Tasks::CreatedBy))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Tasks::CompletedAt))
                    .col(big_integer(Tasks::Version).default(1))
                    .foreign_key(&mut fk(
                        "fk_tasks_project",
                        (Tasks::Table, Tasks::ProjectId),
                        (Projects::Table, Projects::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_tasks_assignee",
                        (Tasks::Table, Tasks::AssigneeId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .foreign_key(&mut fk(
                        "fk_tasks_creator",
                        (Tasks::Table, Tasks::CreatedBy),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_tasks_project_number",
                    Tasks::Table,
                    vec![Tasks::ProjectId.into_iden(), Tasks::Number.into_iden()],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_tasks_creator",
                Tasks::Table,
                vec![Tasks::CreatedBy.into_iden()],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_tasks_assignee_status",
                Tasks::Table,
                vec![Tasks::AssigneeId.into_iden(), Tasks::Status.into_iden()],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TaskLabels::Table)
                    .col(uuid(TaskLabels::TaskId))
                    .col(uuid(TaskLabels::LabelId))
                    .primary_key(Index::create().col(TaskLabels::TaskId).col(TaskLabels::LabelId))
                    .foreign_key(&mut fk(
                        "fk_task_labels_task",
                        (TaskLabels::Table, TaskLabels::TaskId),
                        (Tasks::Table, Tasks::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_labels_label",
                        (TaskLabels::Table, TaskLabels::LabelId),
                        (Labels::Table, Labels::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_task_labels_label",
                TaskLabels::Table,
                vec![TaskLabels::LabelId.into_iden()],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .col(pk_uuid(Comments::Id))
                    .col(uuid(Comments::TaskId))
                    .col(uuid(Comments::AuthorId))
                    .col(text(Comments::Body))
                    .col(timestamp_with_time_zone(Comments::CreatedAt))
                    .col(timestamp_with_time_zone(Comments::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_comments_task",
                        (Comments::Table, Comments::TaskId),
                        (Tasks::Table, Tasks::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_comments_author",
                        (Comments::Table, Comments::AuthorId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_comments_task",
                Comments::Table,
                vec![
                    Comments::TaskId.into_iden(),
                    Comments::CreatedAt.into_iden(),
                    Comments::Id.into_iden(),
                ],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_comments_author",
                Comments::Table,
                vec![Comments::AuthorId.into_iden()],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Comments::Table.into_iden(),
            TaskLabels::Table.into_iden(),
            Tasks::Table.into_iden(),
            Labels::Table.into_iden(),
            ProjectMembers::Table.into_iden(),
            Projects::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Key,
    Name,
    Description,
    Status,
    OwnerId,
    LastTaskNumber,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProjectMembers {
    Table,
    ProjectId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Labels {
    Table,
    Id,
    ProjectId,
    Name,
    Color,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    ProjectId,
    Number,
    Title,
    Description,
    Status,
    Priority,
    AssigneeId,
    DueDate,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
    Version,
}

#[derive(DeriveIden)]
enum TaskLabels {
    Table,
    TaskId,
    LabelId,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    TaskId,
    AuthorId,
    Body,
    CreatedAt,
    UpdatedAt,
}
