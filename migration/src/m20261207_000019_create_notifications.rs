//! Task subscriptions and notifications (docs/api/notifications.md, adr/0025):
//! - `task_subscriptions`: who follows a task. `subscribed` false is an explicit
//!   unsubscription, which the automatic subscriptions (creator, assignee, commenters) leave
//!   alone. Rows go with their task.
//! - `notifications`: one per (event, user), made by the outbox dispatcher in the transaction
//!   that moves the event into the feed; the unique index makes a redelivered event make none
//!   twice.

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
                    .table(TaskSubscriptions::Table)
                    .col(uuid(TaskSubscriptions::TaskId))
                    .col(uuid(TaskSubscriptions::UserId))
                    .col(boolean(TaskSubscriptions::Subscribed))
                    .col(timestamp_with_time_zone(TaskSubscriptions::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(TaskSubscriptions::TaskId)
                            .col(TaskSubscriptions::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_subscriptions_task")
                            .from(TaskSubscriptions::Table, TaskSubscriptions::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_subscriptions_user")
                            .from(TaskSubscriptions::Table, TaskSubscriptions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid(Notifications::UserId))
                    .col(uuid(Notifications::EventId))
                    .col(string_len(Notifications::EventType, 32))
                    // No foreign keys to the task or project: a notification outlives them.
                    .col(uuid(Notifications::TaskId))
                    .col(uuid(Notifications::ProjectId))
                    .col(uuid_null(Notifications::ActorId))
                    .col(string_len(Notifications::Summary, 300))
                    .col(timestamp_with_time_zone_null(Notifications::ReadAt))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_notifications_user")
                            .from(Notifications::Table, Notifications::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One notification per event and user, whatever happens to the dispatcher.
        manager
            .create_index(
                Index::create()
                    .name("ux_notifications_event_user")
                    .table(Notifications::Table)
                    .col(Notifications::EventId)
                    .col(Notifications::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // A user's list, newest first (ids are time-ordered), and their unread ones.
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_user_id")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_user_read")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::ReadAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notifications::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TaskSubscriptions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TaskSubscriptions {
    Table,
    TaskId,
    UserId,
    Subscribed,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    UserId,
    EventId,
    EventType,
    TaskId,
    ProjectId,
    ActorId,
    Summary,
    ReadAt,
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
