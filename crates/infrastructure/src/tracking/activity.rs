//! The project activity feed: the project's audit entries, newest first, keyset-paged. The
//! entries are written by every tracking store in the transaction of their change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::tracking::ports::ActivityFeed;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
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
        let mut select = Entity::find().filter(Column::ProjectId.eq(project_id));
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
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(rows.into_iter().map(to_domain).collect())
    }
}
