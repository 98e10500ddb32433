//! A resource's history (`GET /tasks/{id}/history`) reads the audit entries about one
//! resource, newest first: an index on (resource_type, resource_id, occurred_at, id) serves
//! each page as one index range scan, stopped at the page's size.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_audit_log_resource";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AuditLog::Table)
                    .col(AuditLog::ResourceType)
                    .col(AuditLog::ResourceId)
                    .col(AuditLog::OccurredAt)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OccurredAt,
    ResourceType,
    ResourceId,
}
