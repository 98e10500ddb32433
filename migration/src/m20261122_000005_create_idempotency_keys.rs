//! Remembered `Idempotency-Key`s (docs/api/conventions.md, adr/0006): one row per user and key. The primary
//! key makes a claim race-free: of concurrent inserts of one key exactly one succeeds.

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
                    .table(IdempotencyKeys::Table)
                    // No foreign key to `users`: rows live 24 h and are purged by age, and the
                    // claim must not take a lock on the user's row.
                    .col(uuid(IdempotencyKeys::UserId))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    // SHA-256 of method, path and body, lower-case hex.
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(uuid(IdempotencyKeys::ClaimId))
                    // The response: all three are null while the claiming request runs.
                    .col(small_integer_null(IdempotencyKeys::Status))
                    .col(json_null(IdempotencyKeys::Headers))
                    .col(blob_null(IdempotencyKeys::Body))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::UserId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_keys_created_at")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Key,
    Fingerprint,
    ClaimId,
    Status,
    Headers,
    Body,
    CreatedAt,
}
