//! The resumable event feed (docs/events.md, adr/0021):
//! - `event_feed`: every published event with its feed position `seq`, assigned by the
//!   outbox dispatcher under its lease in the order it finds events committed, and kept for
//!   `KEEL_EVENT_RETENTION_HOURS`. The envelope stored carries its `seq`.
//! - `event_feed_recipients`: the users an event names although they may no longer be
//!   members (the removed member, the members of a deleted project), so that a replay can
//!   find them in its one statement.
//! - `event_feed_marks`: `published`, the highest `seq` handed to the bus; what lies above it
//!   is published by the dispatcher (again, after a crash).

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
                    .table(EventFeed::Table)
                    .col(big_integer(EventFeed::Seq).primary_key())
                    .col(uuid_uniq(EventFeed::Id))
                    // No foreign key: a project's events outlive it by the retention.
                    .col(uuid(EventFeed::ProjectId))
                    .col(string_len(EventFeed::EventType, 32))
                    .col(json(EventFeed::Envelope))
                    // When the event got its place in the feed: the retention counts from it.
                    .col(timestamp_with_time_zone(EventFeed::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A replay of one user's projects: the member's projects, then their events by seq.
        manager
            .create_index(
                Index::create()
                    .name("ix_event_feed_project_seq")
                    .table(EventFeed::Table)
                    .col(EventFeed::ProjectId)
                    .col(EventFeed::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventFeedRecipients::Table)
                    .col(big_integer(EventFeedRecipients::Seq))
                    .col(uuid(EventFeedRecipients::UserId))
                    .primary_key(
                        Index::create()
                            .col(EventFeedRecipients::Seq)
                            .col(EventFeedRecipients::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_event_feed_recipients_user_seq")
                    .table(EventFeedRecipients::Table)
                    .col(EventFeedRecipients::UserId)
                    .col(EventFeedRecipients::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventFeedMarks::Table)
                    .col(string_len(EventFeedMarks::Name, 32).primary_key())
                    .col(big_integer(EventFeedMarks::Seq))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventFeedMarks::Table)
                    .columns([EventFeedMarks::Name, EventFeedMarks::Seq])
                    .values_panic(["published".into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventFeedMarks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventFeedRecipients::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventFeed::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EventFeed {
    Table,
    Seq,
    Id,
    ProjectId,
    EventType,
    Envelope,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EventFeedRecipients {
    Table,
    Seq,
    UserId,
}

#[derive(DeriveIden)]
enum EventFeedMarks {
    Table,
    Name,
    Seq,
}
