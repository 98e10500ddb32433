//! Identity and access: users, sessions, refresh tokens, and the ports the identity use
//! cases need (stores, password hashing, tokens).

pub mod account_tokens;
pub mod personal_data;
pub mod ports;
pub mod tokens;
pub mod values;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use values::{Email, Password, PasswordHash, Role, UserName, UserStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: Email,
    pub name: UserName,
    pub role: Role,
    pub status: UserStatus,
    pub password_hash: PasswordHash,
    /// Whether the owner of the address has proved it (a verification link, or a password
    /// reset link, which reached the same inbox).
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One login of one user on one device. Access tokens name it (`sid`); revoking it refuses
/// them at once, although the JWT itself has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Session {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What authentication needs of a session and of its user, read together (one statement):
/// never the password hash, the address or the user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAuth {
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The user's current role (a demotion applies at once, whatever the token says).
    pub role: Role,
    pub status: UserStatus,
}

impl SessionAuth {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A single-use refresh token, identified by its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: Uuid,
    pub session_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// It was unused: it is now used, and its successor is stored.
    Rotated,
    /// It had been used before: a replay; the session must be revoked.
    AlreadyUsed,
    /// No such token.
    Unknown,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    /// The session the access token names, or the personal access token's id.
    pub session_id: Uuid,
    pub role: Role,
    /// When the credential that proved this principal expires: nothing it opened (an event
    /// stream) outlives it.
    pub expires_at: DateTime<Utc>,
    /// What a personal access token limits the caller to; `None` for a signed-in session.
    pub grant: Option<std::sync::Arc<tokens::Grant>>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The personal access token this principal came with, if it did not sign in.
    pub fn token_id(&self) -> Option<Uuid> {
        self.grant.as_ref().map(|g| g.token_id)
    }

    /// Whether the credential reaches `project_id` at all: a token limited to some projects
    /// does not reach the others (they answer 404, as to a stranger).
    pub fn reaches(&self, project_id: Uuid) -> bool {
        self.grant.as_ref().is_none_or(|g| g.allows_project(project_id))
    }

    /// The projects the credential is limited to; `None`: every project of the user.
    pub fn project_limit(&self) -> Option<&[Uuid]> {
        self.grant.as_ref().and_then(|g| g.project_ids.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_session_is_active_until_revoked_or_expired() {
        let now = Utc::now();
        let mut s = Session {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            created_at: now,
            last_used_at: now,
            expires_at: now + Duration::hours(1),
            revoked_at: None,
            user_agent: None,
            ip: None,
        };
        assert!(s.is_active(now));
        assert!(!s.is_active(now + Duration::hours(2)));
        s.revoked_at = Some(now);
        assert!(!s.is_active(now));
    }
}
