//! One-time account tokens (docs/api/identity.md, "Password reset" and "E-mail
//! verification"): mailed to the account's address, single-use, with an expiry, stored
//! only as the SHA-256 of their secret.
//!
//! A token reads `<token id: 32 hex>.<secret>`: the id finds its row by primary key (one
//! indexed read), the secret (at least 32 random bytes) is compared with the stored hash in
//! constant time, as personal access tokens are (adr/0016).

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::UserStatus;

/// What a one-time token is for: a token of one purpose is refused by the other's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    PasswordReset,
    EmailVerification,
    /// The first password of an account an admin created (`POST /admin/users`): redeemed
    /// by the password reset route like a reset token.
    PasswordSetup,
}

impl TokenPurpose {
    pub const ALL: [Self; 3] = [Self::PasswordReset, Self::EmailVerification, Self::PasswordSetup];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
            Self::PasswordSetup => "password_setup",
        }
    }

    /// Whether a token of this purpose sets a password (the reset route takes it).
    pub fn sets_password(self) -> bool {
        matches!(self, Self::PasswordReset | Self::PasswordSetup)
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// How long a token of this purpose is valid: a reset 30 minutes (docs/api), a
    /// verification 48 hours (it may be read days later; a new one can be asked for), a
    /// new account's first password 7 days (its owner learns of it from the mail).
    pub fn lifetime(self) -> Duration {
        match self {
            Self::PasswordReset => Duration::minutes(30),
            Self::EmailVerification => Duration::hours(48),
            Self::PasswordSetup => Duration::days(7),
        }
    }

    /// [`Self::lifetime`] in the words a mail says it with.
    pub fn lifetime_words(self) -> &'static str {
        match self {
            Self::PasswordReset => "30 minutes",
            Self::EmailVerification => "48 hours",
            Self::PasswordSetup => "7 days",
        }
    }
}

/// A one-time token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: TokenPurpose,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_hash: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When it was redeemed (or given up for a newer one); a used token is refused.
    pub used_at: Option<DateTime<Utc>>,
}

impl AccountToken {
    /// A new token of `purpose` for `user_id`, whose secret hashes to `secret_hash`.
    pub fn new(user_id: Uuid, purpose: TokenPurpose, secret_hash: String, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id,
            purpose,
            secret_hash,
            expires_at: now + purpose.lifetime(),
            created_at: now,
            used_at: None,
        }
    }

    /// Whether it may still be redeemed for one of `purposes` at `now` (its secret checked
    /// apart).
    pub fn redeemable(&self, purposes: &[TokenPurpose], now: DateTime<Utc>) -> bool {
        purposes.contains(&self.purpose) && self.used_at.is_none() && self.expires_at > now
    }
}

/// A stored token with its user's status, read together in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTokenRecord {
    pub token: AccountToken,
    pub user_status: UserStatus,
}

/// The parts of a presented one-time token.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedAccountToken<'a> {
    pub id: Uuid,
    pub secret: &'a str,
}

impl fmt::Debug for PresentedAccountToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedAccountToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'a> PresentedAccountToken<'a> {
    /// `<32 hex>.<secret>`; `None` when malformed (answered like an unknown token).
    pub fn parse(raw: &'a str) -> Option<Self> {
        let id = raw.get(..32)?;
        let secret = raw.get(32..)?.strip_prefix('.')?;
        if secret.is_empty()
            || secret.len() > 128
            || !id.bytes().all(|b| b.is_ascii_hexdigit())
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        Some(Self {
            id: Uuid::try_parse(id).ok()?,
            secret,
        })
    }

    /// The token a mail carries: the id part and `secret` (URL-safe as it is).
    pub fn format(id: Uuid, secret: &str) -> String {
        format!("{}.{secret}", id.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_format_and_debug_hides_the_secret() {
        let id = Uuid::now_v7();
        let raw = PresentedAccountToken::format(id, "s3cr_et-X");
        let parsed = PresentedAccountToken::parse(&raw).unwrap();
        assert_eq!((parsed.id, parsed.secret), (id, "s3cr_et-X"));
        assert!(!format!("{parsed:?}").contains("s3cr"));
    }

    #[test]
    fn malformed_tokens_parse_to_nothing() {
        let ok = PresentedAccountToken::format(Uuid::nil(), "abc");
        for bad in [
            "",
            "abc",
            &ok[..33],
            &ok.replacen('0', "g", 1),
            &ok.replace('.', "_"),
            &format!("{ok}/x"),
            &format!("{ok}{}", "a".repeat(200)),
            "é0000000000000000000000000000000.x",
        ] {
            assert!(PresentedAccountToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_redeemable_once_for_its_purpose_until_it_expires() {
        let now = Utc::now();
        let mut t = AccountToken::new(Uuid::nil(), TokenPurpose::PasswordReset, "h".into(), now);
        assert_eq!(t.expires_at, now + Duration::minutes(30));
        assert!(t.redeemable(&[TokenPurpose::PasswordReset], now));
        assert!(!t.redeemable(&[TokenPurpose::EmailVerification], now));
        assert!(!t.redeemable(&[TokenPurpose::PasswordReset], now + Duration::minutes(30)));
        t.used_at = Some(now);
        assert!(!t.redeemable(&[TokenPurpose::PasswordReset], now));
        let v = AccountToken::new(Uuid::nil(), TokenPurpose::EmailVerification, "h".into(), now);
        assert_eq!(v.expires_at, now + Duration::hours(48));
    }

    #[test]
    fn purposes_round_trip_through_their_names() {
        for p in TokenPurpose::ALL {
            assert_eq!(TokenPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(TokenPurpose::parse("x"), None);
    }
}
