//! The audit log: one row per auth event and per change (docs/api/identity.md, docs/api/tracking.md activity feed).
//! Rows are append-only; they never hold passwords or tokens.

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
                    .table(AuditLog::Table)
                    .col(pk_uuid(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                    .col(uuid_null(AuditLog::ActorId))
                    .col(string_len(AuditLog::Action, 100))
                    .col(string_len(AuditLog::ResourceType, 50))
                    .col(string_len_null(AuditLog::ResourceId, 100))
                    .col(uuid_null(AuditLog::ProjectId))
                    .col(string_len_null(AuditLog::RequestId, 128))
                    .col(string_len_null(AuditLog::Ip, 45))
                    .col(json_null(AuditLog::Details))
                    .to_owned(),
            )
            .await?;
        // Every listing is newest first with the id as unique tiebreaker (keyset pages).
        for (name, cols) in [
            (
                "ix_audit_log_occurred_at",
                vec![AuditLog::OccurredAt, AuditLog::Id],
            ),
            (
                "ix_audit_log_actor",
                vec![AuditLog::ActorId, AuditLog::OccurredAt, AuditLog::Id],
            ),
            (
                "ix_audit_log_action",
                vec![AuditLog::Action, AuditLog::OccurredAt, AuditLog::Id],
            ),
            (
                "ix_audit_log_project",
                vec![AuditLog::ProjectId, AuditLog::OccurredAt, AuditLog::Id],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditLog::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OccurredAt,
    ActorId,
    Action,
    ResourceType,
    ResourceId,
    ProjectId,
    RequestId,
    Ip,
    Details,
}
