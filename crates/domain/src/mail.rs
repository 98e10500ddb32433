//! Mail the service sends (docs/api/identity.md, "Mail"; adr/0018): what a use case asks
//! to be sent. A [`Mail`] names a template and the values it is filled with; the stores
//! write it to the mail outbox in the transaction of the change that causes it, and a
//! background sender renders and delivers it later, with retries.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::identity::{Email, UserName};

/// The templates mails are written from (kept in the repository, rendered by the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailTemplate {
    /// "Confirm your e-mail address": a link with an e-mail verification token.
    EmailVerification,
    /// "Reset your password": a link with a password reset token.
    PasswordReset,
    /// "Your account is ready": an admin created it; a link to set the first password.
    AccountCreated,
    /// "You are invited to a project": a link with a project invitation token.
    Invitation,
}

impl MailTemplate {
    pub const ALL: [Self; 4] = [
        Self::EmailVerification,
        Self::PasswordReset,
        Self::AccountCreated,
        Self::Invitation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
            Self::AccountCreated => "account_created",
            Self::Invitation => "invitation",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// One mail to send: its recipient, its template and the template's values. The values
/// may hold a secret (a one-time token): `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: Uuid,
    /// The recipient's address.
    pub to: String,
    pub template: MailTemplate,
    /// Placeholder name → value, as the template names them (`name`, `token`, ...).
    pub values: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("id", &self.id)
            .field("template", &self.template)
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Mail {
    /// A mail to `to` (named `name`) carrying a one-time `token` valid for `valid_for`
    /// (words: "30 minutes").
    pub fn with_token(
        template: MailTemplate,
        to: &Email,
        name: &UserName,
        token: String,
        valid_for: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let values = BTreeMap::from([
            ("name".to_owned(), name.as_str().to_owned()),
            ("token".to_owned(), token),
            ("validFor".to_owned(), valid_for.to_owned()),
        ]);
        Self {
            id: Uuid::now_v7(),
            to: to.as_str().to_owned(),
            template,
            values,
            created_at: now,
        }
    }
}

impl Mail {
    /// The invitation of `to` to the project `project` as `role`, sent by `inviter`,
    /// carrying its one-time `token`: the invitee may have no account, so no name.
    pub fn invitation(
        to: &Email,
        project: &str,
        inviter: &str,
        role: &str,
        token: String,
        now: DateTime<Utc>,
    ) -> Self {
        let values = BTreeMap::from([
            ("project".to_owned(), project.to_owned()),
            ("inviter".to_owned(), inviter.to_owned()),
            ("role".to_owned(), role.to_owned()),
            ("token".to_owned(), token),
            (
                "validFor".to_owned(),
                crate::tracking::invitations::INVITATION_LIFETIME_WORDS.to_owned(),
            ),
        ]);
        Self {
            id: Uuid::now_v7(),
            to: to.as_str().to_owned(),
            template: MailTemplate::Invitation,
            values,
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_values() {
        let mail = Mail::with_token(
            MailTemplate::PasswordReset,
            &Email::parse("ann@example.com").unwrap(),
            &UserName::parse("Ann").unwrap(),
            "s3cret-token".into(),
            "30 minutes",
            Utc::now(),
        );
        let shown = format!("{mail:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("ann@example.com"), "{shown}");
        assert!(shown.contains("token"), "{shown}");
    }

    #[test]
    fn templates_round_trip_through_their_names() {
        for t in MailTemplate::ALL {
            assert_eq!(MailTemplate::parse(t.as_str()), Some(t));
        }
        assert_eq!(MailTemplate::parse("nope"), None);
    }
}
