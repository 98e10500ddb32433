//! Project invitations (docs/api/tracking.md, "Invitations"): a project admin invites an
//! e-mail address with a role; the address gets a mail with a one-time link; its owner
//! accepts it signed in with that address (or registers with it, `identity::auth::register`),
//! which adds the membership and uses the invitation up.
//!
//! Rules:
//! - Inviting never looks the address up: the answer, and the work done, are the same
//!   whether or not it has an account (or is a member already).
//! - One pending invitation per project and address: a new one replaces it (a new token;
//!   the old link stops working; seven days from now again).
//! - The token is `<invitation id>.<secret>`; only the secret's SHA-256 is stored, compared
//!   in constant time. A used, withdrawn, expired, unknown or malformed token — or one for
//!   another address than the caller's — is one `INVALID_TOKEN`: the answer tells nothing
//!   about an invitation the caller cannot use, and a token for another address is not
//!   used up.
//! - Invitations are audited (`invitation.created`, `invitation.deleted`; the address in the
//!   admins-only part of the details) and emit no event: only admins see them. Accepting is
//!   the `member.added` change (audit entry and event) of the new member.

use chrono::{DateTime, Utc};
use futures::TryFutureExt;
use keel_domain::StoreError;
use keel_domain::audit::{AuditEntry, Authority};
use keel_domain::events::EventType;
use keel_domain::identity::account_tokens::PresentedAccountToken;
use keel_domain::identity::{Email, Principal};
use keel_domain::mail::Mail;
use keel_domain::tracking::invitations::{Invitation, ReceivedInvitation};
use keel_domain::tracking::{Member, Permission, ProjectAccess, ProjectRole};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::members::assignable_role;
use super::views::{MemberView, ProjectView, event_data};
use super::{TrackingPorts, check, validated};
use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;
use crate::pagination::{Page, PageRequest};

/// `POST /projects/{id}/invitations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteBody {
    /// The address to invite: trimmed and lower-cased; it needs no account.
    #[cfg_attr(
        feature = "openapi",
        schema(format = "email", example = "bea@example.com", max_length = 254)
    )]
    pub email: String,
    /// `admin`, `member` or `viewer`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(admin|member|viewer)$"))]
    pub role: String,
}

/// `POST /auth/invitations/accept`.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptInvitationBody {
    /// The token of the invitation's mail (the link's `token` parameter).
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = "^[0-9a-f]{32}\\.[A-Za-z0-9_-]{1,128}$")
    )]
    pub token: String,
}

impl std::fmt::Debug for AcceptInvitationBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptInvitationBody").finish_non_exhaustive()
    }
}

/// A pending invitation as the project's admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "member"))]
    pub role: &'static str,
    /// The admin who sent it.
    pub invited_by: Uuid,
    /// Seven days after it was sent.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<&Invitation> for InvitationView {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id,
            email: i.email.as_str().to_owned(),
            role: i.role.as_str(),
            invited_by: i.invited_by,
            expires_at: i.expires_at,
            created_at: i.created_at,
        }
    }
}

/// A pending invitation of the caller's address, with what it invites them to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceivedInvitationView {
    pub id: Uuid,
    pub project_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "KEEL"))]
    pub project_key: String,
    pub project_name: String,
    #[cfg_attr(feature = "openapi", schema(example = "member"))]
    pub role: &'static str,
    pub invited_by: Uuid,
    /// The name of the admin who sent it.
    pub invited_by_name: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<&ReceivedInvitation> for ReceivedInvitationView {
    fn from(r: &ReceivedInvitation) -> Self {
        Self {
            id: r.invitation.id,
            project_id: r.invitation.project_id,
            project_key: r.project_key.clone(),
            project_name: r.project_name.clone(),
            role: r.invitation.role.as_str(),
            invited_by: r.invitation.invited_by,
            invited_by_name: r.invited_by_name.clone(),
            expires_at: r.invitation.expires_at,
            created_at: r.invitation.created_at,
        }
    }
}

/// The caller's pending invitations (`GET /auth/invitations`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceivedInvitationList {
    pub data: Vec<ReceivedInvitationView>,
}

/// An audit entry of an invitation in `project_id` by `principal`, who needed to administer
/// the project (re-checked in the write's transaction). The address is in the admins-only
/// part of the details: members reading the activity feed see the role only.
fn invitation_entry(
    ports: &TrackingPorts,
    meta: &RequestMeta,
    principal: &Principal,
    action: &str,
    project_id: Uuid,
    invitation: &Invitation,
) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: ports.clock.now(),
        actor_id: Some(principal.user_id),
        action: action.to_owned(),
        resource_type: "invitation".to_owned(),
        resource_id: Some(invitation.id.to_string()),
        project_id: Some(project_id),
        request_id: meta.request_id.clone(),
        ip: meta.ip.clone(),
        details: Some(json!({ "role": invitation.role.as_str() })),
        restricted: Some(json!({ "email": invitation.email.as_str() })),
        authority: Some(Authority::of(principal, Permission::Administer)),
        token_id: principal.token_id(),
    }
}

/// Invites `body.email` to the project as `body.role` (project admins), replacing a pending
/// invitation of the same address; mails it a link with a one-time token, valid 7 days.
pub async fn invite(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: InviteBody,
    meta: &RequestMeta,
) -> Result<InvitationView, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Administer, "project", None)
        .await?;
    let mut errors = Vec::new();
    let email = check(&mut errors, Email::parse(&body.email));
    let role = check(&mut errors, assignable_role(&body.role));
    validated(errors)?;
    let (Some(email), Some(role)) = (email, role) else {
        return Err(AppError::internal("validated input missing"));
    };
    send_invitation(ports, principal, &access, email, role, meta).await
}

/// Invites `email` to `access.project` as `role` once the caller's authority to
/// administer it was checked (`invite`, and `members::add_member` for an address the
/// caller cannot see): the same work whatever the address.
pub(crate) async fn send_invitation(
    ports: &TrackingPorts,
    principal: &Principal,
    access: &ProjectAccess,
    email: Email,
    role: ProjectRole,
    meta: &RequestMeta,
) -> Result<InvitationView, AppError> {
    let project_id = access.project.id;
    // The inviter's name for the mail: the caller's own account, never the invitee's.
    let inviter = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let now = ports.clock.now();
    let secret = ports.token_secrets.generate();
    let invitation = Invitation::new(
        project_id,
        email,
        role,
        principal.user_id,
        ports.token_secrets.hash(&secret),
        now,
    );
    let mail = Mail::invitation(
        &invitation.email,
        access.project.name.as_str(),
        inviter.name.as_str(),
        role.as_str(),
        PresentedAccountToken::format(invitation.id, &secret),
        now,
    );
    let entry = invitation_entry(
        ports,
        meta,
        principal,
        "invitation.created",
        project_id,
        &invitation,
    );
    ports
        .invitations
        .create(&invitation, &mail, &entry)
        .await
        .map_err(lost_as_not_found)?;
    Ok(InvitationView::from(&invitation))
}

/// A project deleted meanwhile is a 404; a role lost meanwhile, as the authorization says.
fn lost_as_not_found(e: StoreError) -> AppError {
    match e {
        StoreError::NotFound => AppError::NotFound("project"),
        other => other.into(),
    }
}

/// The project's pending invitations, oldest first (project admins).
pub async fn list_invitations(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    page: PageRequest,
) -> Result<Page<InvitationView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let (invitations, total) = ports
        .invitations
        .list_for_project(
            project_id,
            ports.clock.now(),
            page.offset(),
            u64::from(page.limit()),
        )
        .await?;
    Ok(Page::new(
        invitations.iter().map(InvitationView::from).collect(),
        page,
        total,
    ))
}

/// Withdraws an invitation (project admins): its link stops working.
pub async fn withdraw_invitation(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    invitation_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let invitation = ports
        .invitations
        .find(invitation_id)
        .await?
        .filter(|i| i.project_id == project_id)
        .ok_or(AppError::NotFound("invitation"))?;
    let entry = invitation_entry(
        ports,
        meta,
        principal,
        "invitation.deleted",
        project_id,
        &invitation,
    );
    ports
        .invitations
        .delete(project_id, invitation_id, &entry)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound("invitation"),
            other => other.into(),
        })
}

/// The signed-in caller's pending invitations, newest first, matched by the account's
/// e-mail address — once that address is verified (or the account was made with an
/// invitation): an account registered with someone else's address learns nothing of their
/// invitations.
pub async fn received_invitations(
    ports: &TrackingPorts,
    principal: &Principal,
) -> Result<ReceivedInvitationList, AppError> {
    let user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !user.email_verified {
        return Ok(ReceivedInvitationList { data: Vec::new() });
    }
    let received = ports
        .invitations
        .list_for_email(&user.email, ports.clock.now())
        .await?;
    let data = received
        .iter()
        .filter(|r| principal.reaches(r.invitation.project_id))
        .map(ReceivedInvitationView::from)
        .collect();
    Ok(ReceivedInvitationList { data })
}

/// The invitation `raw` names, when its secret matches (compared in constant time) and it
/// is pending at `now`; `None` otherwise (malformed, unknown, expired, wrong secret).
pub(crate) async fn redeemable_invitation(
    ports: &TrackingPorts,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<Option<Invitation>, AppError> {
    let Some(presented) = PresentedAccountToken::parse(raw.trim()) else {
        return Ok(None);
    };
    let Some(invitation) = ports.invitations.find(presented.id).await? else {
        return Ok(None);
    };
    let matches = ports
        .token_secrets
        .matches(presented.secret, &invitation.secret_hash);
    Ok((matches && invitation.pending(now)).then_some(invitation))
}

/// Accepts an invitation with its mailed token (a signed-in session whose account has the
/// invited address): adds the caller to the project with the invited role and uses the
/// invitation up, in one transaction; answers the project as the new member sees it.
pub async fn accept_invitation(
    ports: &TrackingPorts,
    principal: &Principal,
    body: AcceptInvitationBody,
    meta: &RequestMeta,
) -> Result<ProjectView, AppError> {
    crate::identity::tokens::require_session(principal)?;
    let user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let now = ports.clock.now();
    let invitation = redeemable_invitation(ports, &body.token, now)
        .await?
        .filter(|i| i.is_for(&user.email))
        .ok_or(AppError::InvalidToken)?;
    let joined = Member {
        project_id: invitation.project_id,
        user_id: user.id,
        role: invitation.role,
        name: user.name.as_str().to_owned(),
        email: user.email.as_str().to_owned(),
        joined_at: now,
    };
    // No permission is re-checked: the invitation is the authority, and the store uses it
    // up in the membership's transaction.
    let change = ports
        .change(meta, principal, EventType::MemberAdded, invitation.project_id)
        .resource(user.id)
        .details(json!({
            "userId": user.id,
            "role": invitation.role.as_str(),
            "invitationId": invitation.id,
        }))
        .data(event_data(&MemberView::from(&joined)))
        .build();
    let accepted = ports
        .commit(
            &change,
            ports
                .invitations
                .accept(invitation.id, user.id, invitation.role, now, None, &change)
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        AppError::Conflict("you are a member of this project already".into())
                    }
                    other => other.into(),
                }),
        )
        .await?;
    if !accepted {
        // Used, withdrawn or expired since it was read.
        return Err(AppError::InvalidToken);
    }
    super::projects::get_project(ports, principal, invitation.project_id).await
}

/// The cache keys a membership added outside [`TrackingPorts::commit`] makes stale (a
/// registration with an invitation, in the identity use cases): the same as `member.added`.
pub fn stale_after_joining(project_id: Uuid, user_id: Uuid) -> [CacheKey; 2] {
    [CacheKey::project(project_id), CacheKey::projects_of(user_id)]
}

#[cfg(test)]
#[path = "invitations_tests.rs"]
mod tests;
