//! The caller's personal data: `GET /auth/export` (everything Keel holds about them) and
//! the erasure of an account, by its owner (`DELETE /auth/account`, with the password) or an
//! instance admin (`DELETE /admin/users/{id}`).
//!
//! An erased account stays as a tombstone so that the tasks and comments pointing at it
//! keep their meaning: name `Deleted user`, e-mail `deleted-<id>@invalid`, no password,
//! disabled, no sessions, tokens, IP addresses or user agents. The erasure is refused
//! while the user owns a project (409 naming them) and for the last active admin.

use chrono::{DateTime, Utc};
use keel_domain::audit::AuditEntry;
use keel_domain::identity::Principal;
use keel_domain::identity::personal_data::{Erasure, HeldComment, HeldTask, Membership, PersonalData};
use serde::Serialize;
use uuid::Uuid;

use super::IdentityPorts;
use super::tokens::{PersonalTokenView, require_session};
use super::views::{AuditEntryView, UserView};
use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;

/// One session as the export shows it: revoked and expired ones too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedSession {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedMembership {
    pub project_id: Uuid,
    pub project_key: String,
    pub project_name: String,
    pub role: &'static str,
    pub since: DateTime<Utc>,
}

/// A task the caller created or is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedTask {
    pub id: Uuid,
    pub project_id: Uuid,
    pub identifier: String,
    pub title: String,
    pub description: Option<String>,
    /// Whether the caller created it.
    pub created: bool,
    /// Whether the caller is its assignee.
    pub assigned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedComment {
    pub id: Uuid,
    pub task_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A notification made for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedNotification {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub task_id: Uuid,
    pub project_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub summary: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The caller's choice about one task's notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedSubscription {
    pub task_id: Uuid,
    /// `false`: the caller unsubscribed explicitly.
    pub subscribed: bool,
    pub updated_at: DateTime<Utc>,
}

/// A pending invitation to the caller's address (its secret is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedInvitation {
    pub id: Uuid,
    pub project_id: Uuid,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    pub invited_by: Uuid,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Everything Keel holds about the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountExport {
    pub exported_at: DateTime<Utc>,
    pub profile: UserView,
    pub sessions: Vec<ExportedSession>,
    /// Their metadata: a token's secret is never stored, so it cannot be exported.
    pub tokens: Vec<PersonalTokenView>,
    pub memberships: Vec<ExportedMembership>,
    pub tasks: Vec<ExportedTask>,
    pub comments: Vec<ExportedComment>,
    /// The audit entries where the caller is the actor, oldest first.
    pub audit: Vec<AuditEntryView>,
    /// Newest first.
    pub notifications: Vec<ExportedNotification>,
    pub subscriptions: Vec<ExportedSubscription>,
    /// The invitations addressed to the caller's e-mail, newest first.
    pub invitations: Vec<ExportedInvitation>,
}

impl AccountExport {
    fn new(data: PersonalData, exported_at: DateTime<Utc>) -> Self {
        Self {
            exported_at,
            profile: UserView::from(&data.user),
            sessions: data
                .sessions
                .iter()
                .map(|s| ExportedSession {
                    id: s.id,
                    created_at: s.created_at,
                    last_used_at: s.last_used_at,
                    expires_at: s.expires_at,
                    revoked_at: s.revoked_at,
                    user_agent: s.user_agent.clone(),
                    ip: s.ip.clone(),
                })
                .collect(),
            tokens: data.tokens.iter().map(PersonalTokenView::from).collect(),
            memberships: data
                .memberships
                .into_iter()
                .map(ExportedMembership::from)
                .collect(),
            tasks: data.tasks.into_iter().map(ExportedTask::from).collect(),
            comments: data.comments.into_iter().map(ExportedComment::from).collect(),
            audit: data.audit.into_iter().map(AuditEntryView::from).collect(),
            notifications: data
                .notifications
                .into_iter()
                .map(|n| ExportedNotification {
                    id: n.id,
                    event_type: n.event_type,
                    task_id: n.task_id,
                    project_id: n.project_id,
                    actor_id: n.actor_id,
                    summary: n.summary,
                    read_at: n.read_at,
                    created_at: n.created_at,
                })
                .collect(),
            subscriptions: data
                .subscriptions
                .into_iter()
                .map(|s| ExportedSubscription {
                    task_id: s.task_id,
                    subscribed: s.subscribed,
                    updated_at: s.updated_at,
                })
                .collect(),
            invitations: data
                .invitations
                .into_iter()
                .map(|i| ExportedInvitation {
                    id: i.id,
                    project_id: i.project_id,
                    role: i.role,
                    invited_by: i.invited_by,
                    expires_at: i.expires_at,
                    created_at: i.created_at,
                })
                .collect(),
        }
    }
}

impl From<Membership> for ExportedMembership {
    fn from(m: Membership) -> Self {
        Self {
            project_id: m.project_id,
            project_key: m.project_key,
            project_name: m.project_name,
            role: m.role.as_str(),
            since: m.since,
        }
    }
}

impl From<HeldTask> for ExportedTask {
    fn from(t: HeldTask) -> Self {
        Self {
            id: t.id,
            project_id: t.project_id,
            identifier: t.identifier,
            title: t.title,
            description: t.description,
            created: t.created_by_user,
            assigned: t.assigned_to_user,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl From<HeldComment> for ExportedComment {
    fn from(c: HeldComment) -> Self {
        Self {
            id: c.id,
            task_id: c.task_id,
            body: c.body,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Everything Keel holds about the caller (a signed-in session: a personal access token
/// gets 403).
pub async fn export_account(ports: &IdentityPorts, principal: &Principal) -> Result<AccountExport, AppError> {
    require_session(principal)?;
    let data = ports
        .personal_data
        .export(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    Ok(AccountExport::new(data, ports.clock.now()))
}

/// Erases the caller's account after checking the password (attempts limited like
/// sign-ins).
pub async fn erase_account(
    ports: &IdentityPorts,
    principal: &Principal,
    password: &str,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    require_session(principal)?;
    ports.limit_password_guess(principal.user_id, meta).await?;
    let user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !ports.hasher.verify(password, Some(&user.password_hash)).await? {
        ports
            .audit(
                meta,
                Some(user.id),
                "auth.account.erase_failed",
                ("user", Some(user.id.to_string())),
                None,
            )
            .await?;
        return Err(AppError::InvalidCredentials);
    }
    erase(ports, user.id, principal.user_id, meta).await
}

/// Erases any account (instance admins; never the last active admin).
pub async fn erase_user(
    ports: &IdentityPorts,
    principal: &Principal,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    if !principal.is_admin() {
        return Err(AppError::Forbidden);
    }
    erase(ports, user_id, principal.user_id, meta).await
}

/// The erasure itself, audited as `user.erased` with no personal data: no details, and no
/// IP address when the user erases themselves (it would be theirs).
async fn erase(
    ports: &IdentityPorts,
    user_id: Uuid,
    actor_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let now = ports.clock.now();
    let entry = AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: now,
        actor_id: Some(actor_id),
        action: "user.erased".to_owned(),
        resource_type: "user".to_owned(),
        resource_id: Some(user_id.to_string()),
        project_id: None,
        request_id: meta.request_id.clone(),
        ip: if actor_id == user_id {
            None
        } else {
            meta.ip.clone()
        },
        details: None,
        restricted: None,
        authority: None,
        token_id: meta.token_id,
    };
    let outcome = ports.personal_data.erase(user_id, now, &entry).await?;
    match outcome {
        Erasure::Erased => {
            // Every instance forgets the user's sessions and tokens at once.
            ports.cache.invalidate(&[CacheKey::user(user_id)]).await;
            Ok(())
        }
        Erasure::OwnerOf(keys) => Err(AppError::Conflict(format!(
            "the account owns projects {}: hand each over to another member or delete it first",
            keys.join(", ")
        ))),
        Erasure::LastAdmin => Err(AppError::Conflict(
            "the last active admin cannot be erased: make another user an admin first".into(),
        )),
        Erasure::NotFound => Err(AppError::NotFound("user")),
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::personal_data::Erasure;
    use keel_domain::identity::{Role, UserStatus};

    use super::*;
    use crate::identity::fixtures::{Fixture, limit, meta, principal, token_principal, user};

    /// A fixture whose user is `u`, whose password is `Right-passw0rd`, and whose limiter
    /// allows everything.
    fn fixture_of(u: &keel_domain::identity::User) -> Fixture {
        let mut f = Fixture::new();
        limit(&mut f, "nothing");
        let found = u.clone();
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(found.clone())));
        f.hasher
            .expect_verify()
            .returning(|candidate, _| Ok(candidate == "Right-passw0rd"));
        f
    }

    #[tokio::test]
    async fn a_token_may_neither_export_nor_erase_and_nothing_is_read() {
        let u = user(Role::User, UserStatus::Active);
        let mut f = Fixture::new();
        f.personal_data.expect_export().never();
        f.personal_data.expect_erase().never();
        let ports = f.into_ports();
        let p = token_principal(u.id);
        assert!(matches!(
            export_account(&ports, &p).await,
            Err(AppError::InsufficientScope)
        ));
        assert!(matches!(
            erase_account(&ports, &p, "Right-passw0rd", &meta()).await,
            Err(AppError::InsufficientScope)
        ));
    }

    #[tokio::test]
    async fn a_wrong_password_erases_nothing_and_is_audited() {
        let u = user(Role::User, UserStatus::Active);
        let mut f = fixture_of(&u);
        f.personal_data.expect_erase().never();
        f.expect_audit("auth.account.erase_failed");
        let cache = f.cache.clone();
        let result = erase_account(&f.into_ports(), &principal(u.id, Role::User), "wrong", &meta()).await;
        assert!(matches!(result, Err(AppError::InvalidCredentials)));
        assert!(cache.invalidated().is_empty());
    }

    #[tokio::test]
    async fn an_owner_is_told_which_projects_to_hand_over_and_nothing_is_dropped() {
        let u = user(Role::User, UserStatus::Active);
        let mut f = fixture_of(&u);
        f.personal_data
            .expect_erase()
            .times(1)
            .returning(|_, _, _| Ok(Erasure::OwnerOf(vec!["ALPHA".into(), "BETA".into()])));
        let cache = f.cache.clone();
        let result = erase_account(
            &f.into_ports(),
            &principal(u.id, Role::User),
            "Right-passw0rd",
            &meta(),
        )
        .await;
        match result {
            Err(AppError::Conflict(message)) => {
                assert!(message.contains("ALPHA, BETA"), "{message}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(cache.invalidated().is_empty());
    }

    #[tokio::test]
    async fn an_erasure_is_audited_without_personal_data_and_forgets_the_sessions_everywhere() {
        let u = user(Role::User, UserStatus::Active);
        let mut f = fixture_of(&u);
        let uid = u.id;
        f.personal_data
            .expect_erase()
            .withf(move |id, _, entry| {
                *id == uid
                    && entry.action == "user.erased"
                    && entry.actor_id == Some(uid)
                    && entry.resource_id == Some(uid.to_string())
                    && entry.ip.is_none()
                    && entry.details.is_none()
                    && entry.restricted.is_none()
            })
            .times(1)
            .returning(|_, _, _| Ok(Erasure::Erased));
        let cache = f.cache.clone();
        erase_account(
            &f.into_ports(),
            &principal(u.id, Role::User),
            "Right-passw0rd",
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(cache.invalidated(), [format!("user:{uid}")]);
    }

    #[tokio::test]
    async fn only_admins_erase_others_never_the_last_admin_and_an_unknown_user_is_404() {
        let admin = principal(Uuid::now_v7(), Role::Admin);
        let target = Uuid::now_v7();
        let mut f = Fixture::new();
        let admin_id = admin.user_id;
        let mut answers = vec![Erasure::NotFound, Erasure::LastAdmin, Erasure::Erased];
        f.personal_data
            .expect_erase()
            // The admin's own address is theirs to keep in the log.
            .withf(move |id, _, entry| {
                *id == target && entry.actor_id == Some(admin_id) && entry.ip == meta().ip
            })
            .times(3)
            .returning(move |_, _, _| Ok(answers.remove(0)));
        let ports = f.into_ports();
        assert!(matches!(
            erase_user(&ports, &principal(Uuid::now_v7(), Role::User), target, &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            erase_user(&ports, &admin, target, &meta()).await,
            Err(AppError::NotFound("user"))
        ));
        assert!(matches!(
            erase_user(&ports, &admin, target, &meta()).await,
            Err(AppError::Conflict(_))
        ));
        erase_user(&ports, &admin, target, &meta()).await.unwrap();
    }
}
