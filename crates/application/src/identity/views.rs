//! What identity use cases return, shaped as the API contract's JSON (camelCase).

use chrono::{DateTime, Utc};
use keel_domain::audit::AuditEntry;
use keel_domain::identity::ports::UserMetrics;
use keel_domain::identity::{Session, User};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "user"))]
    pub role: &'static str,
    #[cfg_attr(feature = "openapi", schema(example = "active"))]
    pub status: &'static str,
    /// Whether the owner of the address has proved it (a verification or reset link).
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            role: u.role.as_str(),
            status: u.status.as_str(),
            email_verified: u.email_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokensView {
    pub access_token: String,
    pub refresh_token: String,
    #[cfg_attr(feature = "openapi", schema(example = "Bearer"))]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Register and login: the user and a fresh token pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthView {
    pub user: UserView,
    #[serde(flatten)]
    pub tokens: TokensView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Whether this is the session of the calling token.
    pub current: bool,
}

impl SessionView {
    pub fn new(s: &Session, current_session: Uuid) -> Self {
        Self {
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            current: s.id == current_session,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntryView {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub project_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
    /// The personal access token the actor used; `null` for a signed-in session.
    pub token_id: Option<Uuid>,
}

impl From<AuditEntry> for AuditEntryView {
    /// Instance admins read everything, the restricted details included.
    fn from(e: AuditEntry) -> Self {
        let details = e.all_details();
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor_id: e.actor_id,
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            project_id: e.project_id,
            request_id: e.request_id,
            ip: e.ip,
            details,
            token_id: e.token_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserMetricsView {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub projects_owned: u64,
    pub tasks_created: u64,
    pub tasks_open_assigned: u64,
    pub tasks_completed: u64,
    pub comments_posted: u64,
    pub last_active_at: Option<DateTime<Utc>>,
}

impl From<UserMetrics> for UserMetricsView {
    fn from(m: UserMetrics) -> Self {
        Self {
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            projects_owned: m.projects_owned,
            tasks_created: m.tasks_created,
            tasks_open_assigned: m.tasks_open_assigned,
            tasks_completed: m.tasks_completed,
            comments_posted: m.comments_posted,
            last_active_at: m.last_active_at,
        }
    }
}
