//! The project activity feed and a resource's history: audit entries (of the project, of
//! the resource), newest first, keyset-paged. The entries are written by every tracking
//! store in the transaction of their change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::tracking::ports::ActivityFeed;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use crate::audit::{SeaOrmAuditLog, to_domain};
use crate::db::store_error;
use crate::entities::audit_log::{Column, Entity};

#[async_trait]
impl ActivityFeed for SeaOrmAuditLog {
    async fn list(
        &self,
        project_id: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Served by `ix_audit_log_project` (project_id, occurred_at, id).
        let select = Entity::find().filter(Column::ProjectId.eq(project_id));
        page(self, select, before, limit).await
    }

    async fn history(
        &self,
        resource_type: &str,
        resource_id: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Served by `ix_audit_log_resource` (resource_type, resource_id, occurred_at, id).
        let select = Entity::find()
            .filter(Column::ResourceType.eq(resource_type))
            .filter(Column::ResourceId.eq(resource_id.to_string()));
        page(self, select, before, limit).await
    }
}

/// Up to `limit` entries of `select` before `(occurred_at, id)`, newest first.
async fn page(
    log: &SeaOrmAuditLog,
    mut select: Select<Entity>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<AuditEntry>, StoreError> {
    if let Some((at, id)) = before {
        select = select.filter(
            Condition::any().add(Column::OccurredAt.lt(at)).add(
                Condition::all()
                    .add(Column::OccurredAt.eq(at))
                    .add(Column::Id.lt(id)),
            ),
        );
    }
    let rows = select
        .order_by_desc(Column::OccurredAt)
        .order_by_desc(Column::Id)
        .limit(limit)
        .all(log.db.connection())
        .await
        .map_err(store_error)?;
    Ok(rows.into_iter().map(to_domain).collect())
}
