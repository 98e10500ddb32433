//! Everything Keel holds about one person, and how an account is erased: the export and the
//! erasure of `GET /auth/export`, `DELETE /auth/account` and `DELETE /admin/users/{id}`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::tokens::PersonalToken;
use super::{Session, User};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::tracking::ProjectRole;

/// The name an erased account shows wherever it is still named (tasks it created,
/// comments it wrote).
pub const ERASED_NAME: &str = "Deleted user";

/// One project the user is a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub project_id: Uuid,
    pub project_key: String,
    pub project_name: String,
    pub role: ProjectRole,
    pub since: DateTime<Utc>,
}

/// A task the user created or is assigned to (in the trash too: it is still held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTask {
    pub id: Uuid,
    pub project_id: Uuid,
    /// `KEY-12`.
    pub identifier: String,
    pub title: String,
    pub description: Option<String>,
    pub created_by_user: bool,
    pub assigned_to_user: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A comment the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldComment {
    pub id: Uuid,
    pub task_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A notification made for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldNotification {
    pub id: Uuid,
    pub event_type: String,
    pub task_id: Uuid,
    pub project_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub summary: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The user's choice about one task's notifications: subscribed, or explicitly not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSubscription {
    pub task_id: Uuid,
    pub subscribed: bool,
    pub updated_at: DateTime<Utc>,
}

/// A pending invitation addressed to the user's e-mail (its token is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldInvitation {
    pub id: Uuid,
    pub project_id: Uuid,
    pub role: String,
    pub invited_by: Uuid,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Everything held about one user.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalData {
    pub user: User,
    /// Every session, revoked and expired ones too, newest first.
    pub sessions: Vec<Session>,
    /// Every personal access token (their hashes are never shown), newest first.
    pub tokens: Vec<PersonalToken>,
    pub memberships: Vec<Membership>,
    pub tasks: Vec<HeldTask>,
    pub comments: Vec<HeldComment>,
    /// The audit entries where the user is the actor, oldest first.
    pub audit: Vec<AuditEntry>,
    /// Newest first.
    pub notifications: Vec<HeldNotification>,
    pub subscriptions: Vec<HeldSubscription>,
    /// The invitations addressed to the user's e-mail, newest first.
    pub invitations: Vec<HeldInvitation>,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Erased: the account is a tombstone, its credentials gone.
    Erased,
    /// Refused: the user owns these projects (their keys); ownership must be handed over
    /// first, or the projects deleted.
    OwnerOf(Vec<String>),
    /// Refused: the user is the last active instance admin.
    LastAdmin,
    /// No such user.
    NotFound,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PersonalDataStore: Send + Sync {
    /// Everything held about the user; `None` when there is no such user.
    async fn export(&self, user_id: Uuid) -> Result<Option<PersonalData>, StoreError>;

    /// In one transaction, unless the user owns a project or is the last active admin:
    /// the user becomes a tombstone (name [`ERASED_NAME`], e-mail
    /// [`super::Email::erased`], no password hash, disabled), every session is revoked and
    /// forgets its IP address and user agent, every personal access token, one-time link
    /// (reset, verification), mail not yet sent, notification, invitation addressed to the
    /// user's e-mail and stored idempotent response of the user is deleted, every task subscription becomes an unsubscription, every audit entry the user made or that
    /// is about the user forgets its IP address, and `entry` (which must hold no personal
    /// data) is recorded. Tasks and comments keep pointing at the user's id.
    async fn erase(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        entry: &AuditEntry,
    ) -> Result<Erasure, StoreError>;
}
