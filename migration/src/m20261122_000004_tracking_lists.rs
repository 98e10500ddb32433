//! What the tracking list routes need: the version (`ETag`) of projects and comments, the sort
//! rank of a task's priority, the case-folded task title and project name (the `q` searches:
//! SQLite's `lower()` folds ASCII only, so the application stores Unicode-lower-cased copies),
//! and an index for every list, filter and sort order.
//!
//! Every list is keyset- or offset-paged with the id as the unique tiebreaker, so each sort
//! index ends in the id. The project's activity feed is served by `ix_audit_log_project`
//! (project, occurred_at, id) of the first migration, and label names by the unique
//! `ux_labels_project_name` of the third.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(name, table, columns)` of every index this migration adds.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    let tasks = |cols: &[Tasks]| cols.iter().map(|c| c.into_iden()).collect::<Vec<_>>();
    vec![
        (
            "ix_tasks_project_created",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::ProjectId, Tasks::CreatedAt, Tasks::Id]),
        ),
        (
            "ix_tasks_project_updated",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::ProjectId, Tasks::UpdatedAt, Tasks::Id]),
        ),
        (
            "ix_tasks_project_priority",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::ProjectId, Tasks::PriorityRank, Tasks::Id]),
        ),
        (
            "ix_tasks_project_due",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::ProjectId, Tasks::DueDate, Tasks::Id]),
        ),
        (
            "ix_tasks_project_status",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::ProjectId, Tasks::Status]),
        ),
        // The cross-project lists (`/tasks` of a member or an instance admin).
        (
            "ix_tasks_created",
            Tasks::Table.into_iden(),
            tasks(&[Tasks::CreatedAt, Tasks::Id]),
        ),
        (
            "ix_members_project_created",
            ProjectMembers::Table.into_iden(),
            vec![
                ProjectMembers::ProjectId.into_iden(),
                ProjectMembers::CreatedAt.into_iden(),
                ProjectMembers::UserId.into_iden(),
            ],
        ),
        (
            "ix_projects_name",
            Projects::Table.into_iden(),
            vec![Projects::Name.into_iden(), Projects::Id.into_iden()],
        ),
        (
            "ix_projects_created",
            Projects::Table.into_iden(),
            vec![Projects::CreatedAt.into_iden(), Projects::Id.into_iden()],
        ),
        (
            "ix_projects_updated",
            Projects::Table.into_iden(),
            vec![Projects::UpdatedAt.into_iden(), Projects::Id.into_iden()],
        ),
    ]
}

/// `(table, column)` added by this migration, each with its definition.
fn columns() -> Vec<(DynIden, ColumnDef)> {
    vec![
        (
            Projects::Table.into_iden(),
            big_integer(Projects::Version).default(1).to_owned(),
        ),
        (
            Tasks::Table.into_iden(),
            small_integer(Tasks::PriorityRank).default(5).to_owned(),
        ),
        (
            Comments::Table.into_iden(),
            big_integer(Comments::Version).default(1).to_owned(),
        ),
        (
            Tasks::Table.into_iden(),
            text(Tasks::TitleFolded).default("").to_owned(),
        ),
        (
            Projects::Table.into_iden(),
            text(Projects::NameFolded).default("").to_owned(),
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for (table, mut column) in columns() {
            manager
                .alter_table(Table::alter().table(table).add_column(&mut column).to_owned())
                .await?;
        }
        // Rows written before this migration: rank their priority (0 none → 5, else itself).
        manager
            .exec_stmt(
                Query::update()
                    .table(Tasks::Table)
                    .value(
                        Tasks::PriorityRank,
                        Expr::case(Expr::col(Tasks::Priority).eq(0), 5).finally(Expr::col(Tasks::Priority)),
                    )
                    .to_owned(),
            )
            .await?;
        // And fold their searchable text (the database's `lower()`: exact for ASCII).
        for (table, from, to) in [
            (
                Tasks::Table.into_iden(),
                Tasks::Title.into_iden(),
                Tasks::TitleFolded.into_iden(),
            ),
            (
                Projects::Table.into_iden(),
                Projects::Name.into_iden(),
                Projects::NameFolded.into_iden(),
            ),
        ] {
            manager
                .exec_stmt(
                    Query::update()
                        .table(table)
                        .value(to, Func::lower(Expr::col(from)))
                        .to_owned(),
                )
                .await?;
        }
        for (name, table, cols) in indexes() {
            let mut index = Index::create();
            index.name(name).table(table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Indexes first: SQLite refuses to drop a column an index uses.
        for (name, table, _) in indexes().into_iter().rev() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        // DROP COLUMN needs SQLite 3.35 or later (the bundled SQLite is newer).
        for (table, column) in columns().into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(column.get_column_name())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Projects {
    Table,
    Id,
    Name,
    NameFolded,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProjectMembers {
    Table,
    ProjectId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    ProjectId,
    Status,
    Title,
    TitleFolded,
    Priority,
    PriorityRank,
    DueDate,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Version,
}
