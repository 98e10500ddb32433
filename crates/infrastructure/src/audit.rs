//! The audit log store on SeaORM.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::audit::{AuditEntry, AuditFilter, AuditLog};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::db::{Database, fetch_page, store_error};
use crate::entities::audit_log::{self, Column, Entity};

#[derive(Debug, Clone)]
pub struct SeaOrmAuditLog {
    /// Also read by its `ActivityFeed` implementation (`tracking::activity`).
    pub(crate) db: Database,
}

impl SeaOrmAuditLog {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Inserts one audit entry on `conn`: the pool, or the transaction of the change it records.
pub(crate) async fn insert_entry(conn: &impl ConnectionTrait, e: &AuditEntry) -> Result<(), StoreError> {
    Entity::insert(audit_log::ActiveModel {
        id: Set(e.id),
        occurred_at: Set(e.occurred_at),
        actor_id: Set(e.actor_id),
        action: Set(e.action.clone()),
        resource_type: Set(e.resource_type.clone()),
        resource_id: Set(e.resource_id.clone()),
        project_id: Set(e.project_id),
        request_id: Set(e.request_id.clone()),
        ip: Set(e.ip.clone()),
        details: Set(e.details.clone()),
    })
    .exec_without_returning(conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

pub(crate) fn to_domain(m: audit_log::Model) -> AuditEntry {
    AuditEntry {
        id: m.id,
        occurred_at: m.occurred_at,
        actor_id: m.actor_id,
        action: m.action,
        resource_type: m.resource_type,
        resource_id: m.resource_id,
        project_id: m.project_id,
        request_id: m.request_id,
        ip: m.ip,
        details: m.details,
    }
}

#[async_trait]
impl AuditLog for SeaOrmAuditLog {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        insert_entry(self.db.connection(), entry).await
    }

    async fn list(
        &self,
        filter: &AuditFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let mut condition = Condition::all();
        if let Some(actor) = filter.actor_id {
            condition = condition.add(Column::ActorId.eq(actor));
        }
        if let Some(action) = &filter.action {
            condition = condition.add(Column::Action.eq(action.as_str()));
        }
        if let Some(project) = filter.project_id {
            condition = condition.add(Column::ProjectId.eq(project));
        }
        let select = Entity::find()
            .filter(condition)
            .order_by_desc(Column::OccurredAt)
            .order_by_desc(Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect(), total))
    }
}
