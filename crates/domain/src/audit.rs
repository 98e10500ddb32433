//! The audit log: who did what to which resource, when, from where. Entries never hold
//! passwords or tokens; e-mails in details are masked.
//!
//! An entry's details come in two parts: `details`, which every member of its project may
//! read in the project's activity feed, and `restricted`, which only the project's admins
//! (and instance admins) may read — anything secret-ish (a webhook's URL, which often holds
//! a token) and anything about a resource only admins may see goes there.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StoreError;
use crate::identity::Principal;
use crate::tracking::{Permission, ProjectRole};

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
    /// Small JSON object with what changed, for every member of the project to read.
    pub details: Option<serde_json::Value>,
    /// Small JSON object with what only the project's admins may read (its keys are not in
    /// `details`). `None` for most entries.
    pub restricted: Option<serde_json::Value>,
    /// The authority the actor exercised: the entry, and with it the change it records, is
    /// written only if the actor still holds it when the change's transaction commits.
    /// `None` when nothing but being signed in was needed (creating a project, an
    /// account's own changes) or when there is no actor.
    pub authority: Option<Authority>,
    /// The personal access token the actor used, when it used one.
    pub token_id: Option<Uuid>,
}

impl AuditEntry {
    /// `details` with the `restricted` keys added: what a project admin reads.
    pub fn all_details(&self) -> Option<serde_json::Value> {
        match (&self.details, &self.restricted) {
            (details, None) => details.clone(),
            (None, Some(restricted)) => Some(restricted.clone()),
            (Some(details), Some(restricted)) => {
                let mut merged = details.clone();
                if let (Some(into), Some(from)) = (merged.as_object_mut(), restricted.as_object()) {
                    for (key, value) in from {
                        into.insert(key.clone(), value.clone());
                    }
                }
                Some(merged)
            }
        }
    }
}

/// What an actor needed for a change in a project, re-checked in the change's transaction:
/// a change authorized a moment ago, while the actor held a role, is refused if that role
/// was taken away before the change committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// A member of the entry's project whose role grants this permission.
    Member(Permission),
    /// An instance admin (who acts as the owner of every project).
    InstanceAdmin,
}

impl Authority {
    /// The authority `principal` exercises with `permission`: an instance admin's account,
    /// or a membership role.
    pub fn of(principal: &Principal, permission: Permission) -> Self {
        if principal.is_admin() {
            Self::InstanceAdmin
        } else {
            Self::Member(permission)
        }
    }

    /// The project roles that hold a [`Authority::Member`] authority (none for an instance
    /// admin's: that one is about the account, not a membership).
    pub fn roles(self) -> Vec<ProjectRole> {
        match self {
            Self::Member(permission) => ProjectRole::ALL
                .iter()
                .copied()
                .filter(|role| role.allows(permission))
                .collect(),
            Self::InstanceAdmin => Vec::new(),
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn admins_read_the_restricted_details_merged_in() {
        let mut e = AuditEntry {
            id: Uuid::nil(),
            occurred_at: DateTime::<Utc>::MIN_UTC,
            actor_id: None,
            action: "webhook.created".into(),
            resource_type: "webhook".into(),
            resource_id: None,
            project_id: None,
            request_id: None,
            ip: None,
            details: Some(json!({"events": ["*"]})),
            restricted: Some(json!({"url": "https://x.example/t0ken"})),
            authority: None,
            token_id: None,
        };
        assert_eq!(
            e.all_details(),
            Some(json!({"events": ["*"], "url": "https://x.example/t0ken"}))
        );
        e.details = None;
        assert_eq!(e.all_details(), Some(json!({"url": "https://x.example/t0ken"})));
        e.restricted = None;
        assert_eq!(e.all_details(), None);
    }

    #[test]
    fn a_permission_is_held_by_the_roles_that_grant_it() {
        use ProjectRole::*;
        assert_eq!(Authority::Member(Permission::Own).roles(), vec![Owner]);
        assert_eq!(
            Authority::Member(Permission::Administer).roles(),
            vec![Owner, Admin]
        );
        assert_eq!(
            Authority::Member(Permission::Read).roles(),
            vec![Owner, Admin, Member, Viewer]
        );
        assert!(Authority::InstanceAdmin.roles().is_empty());
    }
}
