//! Workflow states per project (`/projects/{id}/states`): `workflow_states` holds each
//! project's states (`key` unique in the project); `projects.default_state` the key new tasks
//! get; `projects.state_keys` the keys of its states (comma-separated, read with the project);
//! `tasks.status_category` the category of the task's state, kept in step by every write
//! that changes a state's category or moves its tasks (so a task read joins nothing).
//!
//! Up: every existing project gets the six default states, whose keys are the six statuses
//! tasks had, and `default_state = 'todo'`; each task's category is backfilled from its
//! status. Down: tasks in a state that is not one of the six move to the default state of
//! their category (`completed` → `done`, `started` → `in_progress`, …; `completed_at` still
//! right), then the columns and the table go.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(key, name, category, color, position)` of the six default states (the domain's
/// `DEFAULT_STATES`, written out: a migration does not change with the code).
const DEFAULTS: [(&str, &str, &str, &str, i32); 6] = [
    ("backlog", "Backlog", "backlog", "#94A3B8", 0),
    ("todo", "Todo", "unstarted", "#64748B", 1),
    ("in_progress", "In Progress", "started", "#F59E0B", 2),
    ("in_review", "In Review", "started", "#8B5CF6", 3),
    ("done", "Done", "completed", "#22C55E", 4),
    ("canceled", "Canceled", "canceled", "#EF4444", 5),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorkflowStates::Table)
                    .col(pk_uuid(WorkflowStates::Id))
                    .col(uuid(WorkflowStates::ProjectId))
                    .col(string_len(WorkflowStates::Key, 30))
                    .col(string_len(WorkflowStates::Name, 120))
                    .col(string_len(WorkflowStates::Category, 16))
                    .col(string_len(WorkflowStates::Color, 7))
                    .col(integer(WorkflowStates::Position))
                    .col(timestamp_with_time_zone(WorkflowStates::CreatedAt))
                    .col(timestamp_with_time_zone(WorkflowStates::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_workflow_states_project")
                            .from(WorkflowStates::Table, WorkflowStates::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One key per project (a concurrent second create of a key fails here); the
        // project's states are read by it.
        manager
            .create_index(
                Index::create()
                    .name("ux_workflow_states_project_key")
                    .table(WorkflowStates::Table)
                    .col(WorkflowStates::ProjectId)
                    .col(WorkflowStates::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .add_column(string_len(Projects::DefaultState, 30).default("todo"))
                    .to_owned(),
            )
            .await?;
        // The project's state keys, comma-separated, kept in step by the state writes: a task
        // list's `status` filter is checked against them with the project's row (no
        // statement of its own).
        let six: Vec<&str> = DEFAULTS.iter().map(|d| d.0).collect();
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .add_column(text(Projects::StateKeys).default(six.join(",")))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(string_len(Tasks::StatusCategory, 16).default("unstarted"))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let mut category = String::from("CASE \"status\"");
        for (key, _, cat, _, _) in DEFAULTS {
            category.push_str(&format!(" WHEN '{key}' THEN '{cat}'"));
        }
        category.push_str(" ELSE 'unstarted' END");
        db.execute_unprepared(&format!("UPDATE \"tasks\" SET \"status_category\" = {category}"))
            .await?;
        // A new id per state: PostgreSQL's gen_random_uuid() (13+), SQLite's 16 random bytes
        // (how it stores a UUID).
        let new_id = match manager.get_database_backend() {
            DbBackend::Postgres => "gen_random_uuid()",
            _ => "randomblob(16)",
        };
        for (key, name, cat, color, position) in DEFAULTS {
            db.execute_unprepared(&format!(
                "INSERT INTO \"workflow_states\" (\"id\", \"project_id\", \"key\", \"name\", \"category\", \
                 \"color\", \"position\", \"created_at\", \"updated_at\") \
                 SELECT {new_id}, \"id\", '{key}', '{name}', '{cat}', '{color}', {position}, \
                 \"created_at\", \"created_at\" FROM \"projects\""
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The default state of each category: the first of the six in it.
        let mut fallback = String::from("CASE \"status_category\"");
        for category in ["backlog", "unstarted", "started", "completed", "canceled"] {
            if let Some((key, ..)) = DEFAULTS.iter().find(|d| d.2 == category) {
                fallback.push_str(&format!(" WHEN '{category}' THEN '{key}'"));
            }
        }
        fallback.push_str(" ELSE 'todo' END");
        let six: Vec<String> = DEFAULTS.iter().map(|d| format!("'{}'", d.0)).collect();
        db.execute_unprepared(&format!(
            "UPDATE \"tasks\" SET \"status\" = {fallback} WHERE \"status\" NOT IN ({})",
            six.join(", ")
        ))
        .await?;
        // completed_at followed the category; the six keys agree with their categories, but a
        // default state's category may have been changed: done tasks get a completion time,
        // others lose it.
        db.execute_unprepared(
            "UPDATE \"tasks\" SET \"completed_at\" = COALESCE(\"completed_at\", \"updated_at\") \
             WHERE \"status\" = 'done'",
        )
        .await?;
        db.execute_unprepared("UPDATE \"tasks\" SET \"completed_at\" = NULL WHERE \"status\" <> 'done'")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::StatusCategory)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .drop_column(Projects::StateKeys)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .drop_column(Projects::DefaultState)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(WorkflowStates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum WorkflowStates {
    Table,
    Id,
    ProjectId,
    Key,
    Name,
    Category,
    Color,
    Position,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    DefaultState,
    StateKeys,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    StatusCategory,
}
