//! Project invitations (docs/api/tracking.md, "Invitations"): an e-mail address invited to
//! a project with a role. The invitation mails a one-time token of the account tokens'
//! format (`<invitation id: 32 hex>.<secret>`, see
//! [`PresentedAccountToken`](crate::identity::account_tokens::PresentedAccountToken)): the
//! id finds the row by primary key, the secret is compared with the stored SHA-256 in
//! constant time. Accepting it (signed in with that address, or registering with it)
//! deletes the row in the transaction that adds the membership: a token works once.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ProjectRole;
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::events::Change;
use crate::identity::account_tokens::AccountToken;
use crate::identity::{Email, User};
use crate::mail::Mail;

/// How long an invitation waits for its answer.
pub const INVITATION_LIFETIME_DAYS: i64 = 7;

/// [`INVITATION_LIFETIME_DAYS`] in the words a mail says it with.
pub const INVITATION_LIFETIME_WORDS: &str = "7 days";

/// A pending invitation as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub project_id: Uuid,
    /// The invited address (trimmed, lower-cased).
    pub email: Email,
    /// `admin`, `member` or `viewer`: never `owner`.
    pub role: ProjectRole,
    /// The project admin who sent it.
    pub invited_by: Uuid,
    /// Lower-case hex SHA-256 of the mailed secret.
    pub secret_hash: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Invitation {
    /// A new invitation of `email` to `project_id` by `invited_by`, valid
    /// [`INVITATION_LIFETIME_DAYS`] from `now`.
    pub fn new(
        project_id: Uuid,
        email: Email,
        role: ProjectRole,
        invited_by: Uuid,
        secret_hash: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            project_id,
            email,
            role,
            invited_by,
            secret_hash,
            expires_at: now + Duration::days(INVITATION_LIFETIME_DAYS),
            created_at: now,
        }
    }

    /// Whether it is still pending at `now` (not expired; an accepted or withdrawn one is
    /// gone from the store).
    pub fn pending(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }

    /// Whether `email` is the invited address (both are normalised: trimmed, lower-case).
    pub fn is_for(&self, email: &Email) -> bool {
        self.email.as_str() == email.as_str()
    }
}

/// A pending invitation as its invitee sees it: with what they are invited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedInvitation {
    pub invitation: Invitation,
    pub project_key: String,
    pub project_name: String,
    /// The name of the admin who sent it.
    pub invited_by_name: String,
}

/// A new account made with an invitation: the user, the token and mail of its e-mail
/// verification (when one is sent), stored with the membership.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub user: &'a User,
    pub verification: Option<(&'a AccountToken, &'a Mail)>,
}

/// The invitation store. Each write records its audit entry (and, when it adds a
/// membership, its change: audit entry and `member.added` event) in its transaction.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InvitationRepository: Send + Sync {
    /// Stores `invitation` and the `mail` that carries its token, and `audit`, in one
    /// transaction, deleting first any other invitation of the same address to the same
    /// project (a new invitation replaces the pending one: its token stops working).
    /// # Errors
    /// `NotFound` when the project is gone; `AuthorityLost` when the actor lost the right.
    async fn create(
        &self,
        invitation: &Invitation,
        mail: &Mail,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The invitation `id` (pending or expired); `None` when there is none.
    async fn find(&self, id: Uuid) -> Result<Option<Invitation>, StoreError>;
    /// A page of the project's invitations pending at `now`, oldest first, and their total.
    async fn list_for_project(
        &self,
        project_id: Uuid,
        now: DateTime<Utc>,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Invitation>, u64), StoreError>;
    /// Every invitation of `email` pending at `now`, newest first, with its project.
    async fn list_for_email(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReceivedInvitation>, StoreError>;
    /// Withdraws the invitation `id` of `project_id` with `audit`, in one transaction.
    /// # Errors
    /// `NotFound` when the project has no such invitation (nothing recorded).
    async fn delete(&self, project_id: Uuid, id: Uuid, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Accepts the invitation `id` for the user `user_id`, in one transaction: deletes it
    /// if it is still there and unexpired at `at`, adds the membership with its role and
    /// records `change` (the `member.added` change). With `account`, the account is stored
    /// first in the same transaction (register with an invitation). `false` (nothing
    /// stored) when the invitation was used, withdrawn or expired meanwhile.
    /// # Errors
    /// `Conflict` when the user is a member already, or (with `account`) the e-mail is
    /// taken; nothing is stored.
    async fn accept<'a>(
        &self,
        id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        at: DateTime<Utc>,
        account: Option<NewAccount<'a>>,
        change: &Change,
    ) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_is_pending_for_seven_days_and_for_its_address_only() {
        let now = Utc::now();
        let email = Email::parse("bea@example.com").unwrap();
        let i = Invitation::new(
            Uuid::nil(),
            email,
            ProjectRole::Member,
            Uuid::nil(),
            "h".into(),
            now,
        );
        assert_eq!(i.expires_at, now + Duration::days(7));
        assert!(i.pending(now + Duration::days(7) - Duration::seconds(1)));
        assert!(!i.pending(now + Duration::days(7)));
        assert!(i.is_for(&Email::parse(" Bea@Example.com ").unwrap()));
        assert!(!i.is_for(&Email::parse("ann@example.com").unwrap()));
    }
}
