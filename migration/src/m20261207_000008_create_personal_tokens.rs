//! Personal access tokens: one row per token, holding the SHA-256 of its secret (never the
//! secret), its scopes (bits: 1 read, 2 write, 4 admin), the projects it is limited to (a
//! JSON array of ids, `NULL` for every project), its expiry and the minute of its last use.
//! Audit entries gain the id of the token a change was made with.

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
                    .table(PersonalTokens::Table)
                    .col(pk_uuid(PersonalTokens::Id))
                    .col(uuid(PersonalTokens::UserId))
                    .col(string_len(PersonalTokens::Name, 100))
                    .col(small_integer(PersonalTokens::Scopes))
                    .col(json_null(PersonalTokens::ProjectIds))
                    .col(string_len(PersonalTokens::SecretHash, 64))
                    .col(timestamp_with_time_zone(PersonalTokens::ExpiresAt))
                    .col(timestamp_with_time_zone(PersonalTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(PersonalTokens::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_personal_tokens_user")
                            .from(PersonalTokens::Table, PersonalTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_personal_tokens_user")
                    .table(PersonalTokens::Table)
                    .col(PersonalTokens::UserId)
                    .col(PersonalTokens::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .add_column(uuid_null(AuditLog::TokenId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(AuditLog::TokenId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(PersonalTokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PersonalTokens {
    Table,
    Id,
    UserId,
    Name,
    Scopes,
    ProjectIds,
    SecretHash,
    ExpiresAt,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    TokenId,
}
