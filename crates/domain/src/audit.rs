//! The audit log: who did what to which resource, when, from where (SPEC §4). Entries
//! never hold passwords or tokens; e-mails in details are masked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// `None` for anonymous events (a failed login of an unknown e-mail).
    pub actor_id: Option<Uuid>,
    /// Dotted: `auth.login.failed`, `user.updated`, `project.updated`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub project_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// Small JSON object with what changed.
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub project_id: Option<Uuid>,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Newest first (id as tiebreaker), with the total count.
    async fn list(
        &self,
        filter: &AuditFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError>;
}
