//! Events and webhooks (docs/api/events-and-webhooks.md, adr/0010):
//! - `outbox_events`: the transactional outbox. A change writes its event here in its own
//!   transaction; the dispatcher publishes rows in `seq` order and deletes them.
//! - `outbox_leases`: which instance dispatches (one at a time, a lease with an expiry).
//! - `webhooks`, `webhook_deliveries` (one per event and webhook, retried until it succeeds
//!   or runs out of attempts) and `webhook_attempts` (the delivery log).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn cascade(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(big_pk_auto(OutboxEvents::Seq))
                    .col(uuid_uniq(OutboxEvents::Id))
                    // No foreign key: a project's `project.deleted` outlives the project.
                    .col(uuid(OutboxEvents::ProjectId))
                    .col(string_len(OutboxEvents::EventType, 32))
                    // The envelope: the event and who receives it by name.
                    .col(json(OutboxEvents::Envelope))
                    .col(timestamp_with_time_zone(OutboxEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxLeases::Table)
                    .col(string_len(OutboxLeases::Name, 32).primary_key())
                    .col(uuid(OutboxLeases::Holder))
                    .col(timestamp_with_time_zone(OutboxLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(pk_uuid(Webhooks::Id))
                    .col(uuid(Webhooks::ProjectId))
                    .col(string_len(Webhooks::Url, 2048))
                    // JSON array of event types.
                    .col(json(Webhooks::Events))
                    // AES-256-GCM, `v1.<key id>.<nonce and ciphertext>`.
                    .col(text(Webhooks::Secret))
                    .col(boolean(Webhooks::Enabled))
                    .col(string_len_null(Webhooks::DisabledReason, 200))
                    .col(uuid(Webhooks::CreatedBy))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .col(timestamp_with_time_zone(Webhooks::UpdatedAt))
                    // The circuit breaker and the failure clock (auto-disable).
                    .col(integer(Webhooks::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(Webhooks::OpenUntil))
                    .col(timestamp_with_time_zone_null(Webhooks::FailingSince))
                    .foreign_key(&mut cascade(
                        "fk_webhooks_project",
                        (Webhooks::Table, Webhooks::ProjectId),
                        (Projects::Table, Projects::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhooks_project")
                    .table(Webhooks::Table)
                    .col(Webhooks::ProjectId)
                    .col(Webhooks::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(pk_uuid(WebhookDeliveries::Id))
                    .col(uuid(WebhookDeliveries::WebhookId))
                    .col(uuid(WebhookDeliveries::EventId))
                    .col(string_len(WebhookDeliveries::EventType, 32))
                    // The body sent, byte for byte, on every attempt.
                    .col(text(WebhookDeliveries::Payload))
                    // pending | succeeded | failed
                    .col(string_len(WebhookDeliveries::Status, 16))
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(small_integer_null(WebhookDeliveries::LastStatusCode))
                    .col(string_len_null(WebhookDeliveries::LastError, 500))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookDeliveries::UpdatedAt))
                    .foreign_key(&mut cascade(
                        "fk_webhook_deliveries_webhook",
                        (WebhookDeliveries::Table, WebhookDeliveries::WebhookId),
                        (Webhooks::Table, Webhooks::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_webhook")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::WebhookId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(pk_uuid(WebhookAttempts::Id))
                    .col(uuid(WebhookAttempts::DeliveryId))
                    .col(integer(WebhookAttempts::Number))
                    .col(timestamp_with_time_zone(WebhookAttempts::StartedAt))
                    .col(integer(WebhookAttempts::DurationMs))
                    .col(small_integer_null(WebhookAttempts::StatusCode))
                    .col(string_len_null(WebhookAttempts::Error, 500))
                    .foreign_key(&mut cascade(
                        "fk_webhook_attempts_delivery",
                        (WebhookAttempts::Table, WebhookAttempts::DeliveryId),
                        (WebhookDeliveries::Table, WebhookDeliveries::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_attempts_delivery")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::DeliveryId)
                    .col(WebhookAttempts::Number)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
            OutboxLeases::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Seq,
    Id,
    ProjectId,
    EventType,
    Envelope,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OutboxLeases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    ProjectId,
    Url,
    Events,
    Secret,
    Enabled,
    DisabledReason,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    ConsecutiveFailures,
    OpenUntil,
    FailingSince,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    EventId,
    EventType,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastStatusCode,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    Number,
    StartedAt,
    DurationMs,
    StatusCode,
    Error,
}
