//! Ports of the identity use cases. Each method documents the errors it may return.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::account_tokens::{AccountToken, AccountTokenRecord};
use super::tokens::{PersonalToken, TokenAuth};
use super::{
    Email, Password, PasswordHash, RefreshToken, Role, Rotation, Session, SessionAuth, User, UserStatus,
};
use crate::mail::Mail;
use crate::{BoxError, StoreError};

/// Filters of the admin user list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Case-insensitive substring of the e-mail or the name.
    pub q: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// # Errors
    /// `Conflict` when the e-mail is taken; `Unavailable`/`Unexpected` on store failure.
    async fn create(&self, user: &User) -> Result<(), StoreError>;
    /// Stores a new user with its e-mail verification token and the mail that carries it
    /// (to the mail outbox), in one transaction.
    /// # Errors
    /// `Conflict` when the e-mail is taken (nothing is stored).
    async fn create_with_token(
        &self,
        user: &User,
        token: &AccountToken,
        mail: &Mail,
    ) -> Result<(), StoreError>;
    async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
    /// Saves name, role, status, password hash and `updated_at`.
    /// # Errors
    /// `NotFound` when the user does not exist.
    async fn update(&self, user: &User) -> Result<(), StoreError>;
    /// Saves `user` like [`UserRepository::update`], unless the change takes away the last
    /// active admin: then nothing is saved and the answer is `false`. Race-free: of two
    /// concurrent changes that would each remove one of the last two admins, one is refused.
    /// # Errors
    /// `NotFound` when the user does not exist.
    async fn update_keeping_an_admin(&self, user: &User) -> Result<bool, StoreError>;
    /// A page of users ordered by creation (oldest first, id as tiebreaker), and the total.
    async fn list(
        &self,
        filter: &UserFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<User>, u64), StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a new session with its first refresh token, atomically.
    async fn create(&self, session: &Session, refresh: &RefreshToken) -> Result<(), StoreError>;
    async fn find(&self, id: Uuid) -> Result<Option<Session>, StoreError>;
    /// The session with its user's role and status, in one statement (every authenticated
    /// request that misses the cache reads this); `None` when there is no such session.
    async fn find_auth(&self, id: Uuid) -> Result<Option<SessionAuth>, StoreError>;
    /// Marks `used` as used if it was not, stores `next` and touches the session, in one
    /// transaction. Safe under concurrent calls with the same token: exactly one rotates.
    async fn rotate(
        &self,
        used: Uuid,
        next: &RefreshToken,
        at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;
    /// Revokes one session; `false` when it was not active.
    async fn revoke(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Revokes every active session of a user but `except`; returns their ids.
    async fn revoke_all(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Active sessions of a user, most recently used first.
    async fn list_active(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are running; the caller should answer 503 rather than queue without
    /// bound (memory stays bounded under a login flood).
    #[error("password hashing capacity exhausted")]
    Busy,
    #[error("password hashing failed")]
    Failed(#[source] BoxError),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;
    /// Verifies `candidate` against `hash`. With `None` (unknown user) it verifies against a
    /// fixed dummy hash and answers `false`, so both cost the same time.
    async fn verify<'a>(&self, candidate: &str, hash: Option<&'a PasswordHash>) -> Result<bool, HashError>;
}

/// Claims of a verified access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

/// A verified access token: its claims and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAccess {
    pub claims: AccessClaims,
    pub expires_at: DateTime<Utc>,
}

/// Claims of a verified refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaims {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong algorithm, issuer, audience or type, malformed.
    #[error("invalid token")]
    Invalid,
}

#[cfg_attr(feature = "mock", mockall::automock)]
pub trait TokenService: Send + Sync {
    /// An access token for the session; returns it and its lifetime in seconds.
    fn issue_access(&self, claims: &AccessClaims, now: DateTime<Utc>) -> (String, u64);
    fn issue_refresh(&self, claims: &RefreshClaims, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> String;
    fn verify_access(&self, token: &str) -> Result<VerifiedAccess, TokenError>;
    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError>;
    /// How long refresh tokens (and so sessions) live.
    fn refresh_ttl(&self) -> chrono::Duration;
}

/// The personal access token store.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PersonalTokenRepository: Send + Sync {
    /// # Errors
    /// `Unavailable`/`Unexpected` on store failure.
    async fn create(&self, token: &PersonalToken) -> Result<(), StoreError>;
    /// A user's tokens, newest first (expired ones included).
    async fn list(&self, user_id: Uuid) -> Result<Vec<PersonalToken>, StoreError>;
    /// The token with its user's role and status, in one statement by primary key (every
    /// request with a token that misses the cache reads this); `None` when there is none.
    async fn find_auth(&self, id: Uuid) -> Result<Option<TokenAuth>, StoreError>;
    /// Deletes the token `id` of `user_id`; `false` when the user has no such token.
    async fn delete(&self, user_id: Uuid, id: Uuid) -> Result<bool, StoreError>;
    /// Records a use of the token at `minute` (a whole minute) unless a later one is
    /// recorded already, in the background: the caller (a request being authenticated)
    /// never waits for it, and a failure is logged, not returned (the next minute's use
    /// records again).
    fn record_use(&self, id: Uuid, minute: DateTime<Utc>);
}

/// One-time account tokens (password reset, e-mail verification) and the changes they make
/// when redeemed. Each write that mails a token writes the mail to the mail outbox in the
/// same transaction.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccountTokenRepository: Send + Sync {
    /// The token with its user's status, in one statement by primary key; `None` when
    /// there is none.
    async fn find(&self, id: Uuid) -> Result<Option<AccountTokenRecord>, StoreError>;
    /// Stores `token` and `mail` in one transaction.
    async fn issue(&self, token: &AccountToken, mail: &Mail) -> Result<(), StoreError>;
    /// Stores `token` and `mail` in one transaction, in the background: the caller (an
    /// anonymous request that must answer alike whether or not there was an account to
    /// mail) never waits for it, and a failure is logged, not returned.
    fn issue_in_background(&self, token: AccountToken, mail: Mail);
    /// Redeems the password reset (or first password) token `token_id` of `user_id`, in one
    /// transaction: marks it used (only if it is unused and unexpired at `at`), and with it
    /// every other unused token of the user that sets a password; stores `password_hash`; marks the e-mail verified (the
    /// link reached the inbox); revokes every active session of the user. Answers the
    /// revoked sessions' ids, or `None` (nothing changed) when the token was used or
    /// expired meanwhile.
    async fn reset_password(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        password_hash: &PasswordHash,
        at: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError>;
    /// Redeems the e-mail verification token `token_id` of `user_id`, in one transaction:
    /// marks it used (only if unused and unexpired at `at`), and every other unused
    /// verification token of the user, and the user's e-mail verified. `false` (nothing
    /// changed) when the token was used or expired meanwhile.
    async fn verify_email(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The secrets of personal access tokens: generated, hashed and compared.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait TokenSecrets: Send + Sync {
    /// A new secret: at least 32 random bytes, URL-safe text.
    fn generate(&self) -> String;
    /// The hash kept instead of `secret` (lower-case hex SHA-256).
    fn hash(&self, secret: &str) -> String;
    /// Whether `secret` hashes to `hash`, in time independent of where they differ.
    fn matches(&self, secret: &str, hash: &str) -> bool;
}

/// The column `GET /admin/users/metrics` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSortKey {
    Name,
    Email,
    ProjectsOwned,
    TasksCreated,
    TasksOpenAssigned,
    TasksCompleted,
    CommentsPosted,
    LastActiveAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSort {
    pub key: MetricsSortKey,
    pub descending: bool,
}

impl MetricsSort {
    pub const ALLOWED: &'static str = "name, email, projectsOwned, tasksCreated, tasksOpenAssigned, tasksCompleted, \
commentsPosted, lastActiveAt (prefix - for descending)";

    /// `name` or `-tasksCreated`.
    pub fn parse(raw: &str) -> Result<Self, crate::FieldError> {
        let (descending, name) = raw.strip_prefix('-').map_or((false, raw), |rest| (true, rest));
        let key = match name {
            "name" => MetricsSortKey::Name,
            "email" => MetricsSortKey::Email,
            "projectsOwned" => MetricsSortKey::ProjectsOwned,
            "tasksCreated" => MetricsSortKey::TasksCreated,
            "tasksOpenAssigned" => MetricsSortKey::TasksOpenAssigned,
            "tasksCompleted" => MetricsSortKey::TasksCompleted,
            "commentsPosted" => MetricsSortKey::CommentsPosted,
            "lastActiveAt" => MetricsSortKey::LastActiveAt,
            _ => {
                return Err(crate::FieldError::new(
                    "sort",
                    format!("must be one of {}", Self::ALLOWED),
                ));
            }
        };
        Ok(Self { key, descending })
    }
}

/// Activity figures of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMetrics {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub projects_owned: u64,
    pub tasks_created: u64,
    /// Assigned tasks not `done` or `canceled`.
    pub tasks_open_assigned: u64,
    /// Assigned tasks that are `done`.
    pub tasks_completed: u64,
    pub comments_posted: u64,
    /// The latest use of any of the user's sessions.
    pub last_active_at: Option<DateTime<Utc>>,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserMetricsQuery: Send + Sync {
    /// One page of every user's figures, computed by one aggregate query (never one query
    /// per user), ties broken by user id; and the number of users.
    async fn page(
        &self,
        sort: MetricsSort,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<UserMetrics>, u64), StoreError>;
}
