//! Identity and access use cases (docs/api/identity.md). One file per use case; they share
//! [`IdentityPorts`], injected at start-up.

pub mod account;
pub mod admin;
pub mod auth;
pub mod tokens;
pub mod views;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::{AuditEntry, AuditLog};
use keel_domain::clock::Clock;
use keel_domain::identity::account_tokens::{AccountToken, PresentedAccountToken, TokenPurpose};
use keel_domain::identity::personal_data::PersonalDataStore;
use keel_domain::identity::ports::{
    AccessClaims, AccountTokenRepository, HashError, PasswordHasher, PersonalTokenRepository, RefreshClaims,
    SessionRepository, TokenError, TokenSecrets, TokenService, UserMetricsQuery, UserRepository,
};
use keel_domain::identity::{Email, Password, RefreshToken, Role, Session, User, UserName, UserStatus};
use keel_domain::mail::{Mail, MailTemplate};
use keel_domain::rate_limit::{Quota, RateLimiter};
use keel_domain::tracking::invitations::InvitationRepository;
use uuid::Uuid;

use crate::AppError;
use crate::cache::{Cache, CacheKey};
use crate::context::RequestMeta;
use views::TokensView;

/// Who may register (`KEEL_REGISTRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// Anyone (the default); an `invitationToken` also joins its project.
    #[default]
    Open,
    /// Only with a valid invitation for the registered address (which it joins).
    Invite,
    /// Nobody: admins create accounts (`POST /admin/users`).
    Closed,
}

/// The ports every identity use case may need.
#[derive(Clone)]
pub struct IdentityPorts {
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenService>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<dyn RateLimiter>,
    pub user_metrics: Arc<dyn UserMetricsQuery>,
    /// Personal access tokens: the store, and how their secrets are made and checked.
    pub personal_tokens: Arc<dyn PersonalTokenRepository>,
    pub token_secrets: Arc<dyn TokenSecrets>,
    /// The last minute each token's use was recorded by this instance.
    pub token_uses: Arc<tokens::TokenUses>,
    /// Everything held about one user: the export and the erasure.
    pub personal_data: Arc<dyn PersonalDataStore>,
    /// One-time tokens (password reset, e-mail verification) and the mails carrying them.
    pub account_tokens: Arc<dyn AccountTokenRepository>,
    /// Sessions and users as authentication reads them; invalidated by every revocation
    /// and user change below.
    pub cache: Arc<dyn Cache>,
    /// `KEEL_REGISTRATION`: who may use `POST /auth/register`.
    pub registration: RegistrationMode,
    /// Project invitations: a register with an `invitationToken` uses one up.
    pub invitations: Arc<dyn InvitationRepository>,
    /// Login attempts per IP and e-mail; also every other guess of a password
    /// ([`IdentityPorts::limit_password_guess`]).
    pub login_quota: Quota,
}

impl std::fmt::Debug for IdentityPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPorts")
            .field("login_quota", &self.login_quota)
            .finish_non_exhaustive()
    }
}

impl IdentityPorts {
    /// Writes one audit entry. A failure fails the use case: an unrecorded change is not
    /// acceptable.
    pub(crate) async fn audit(
        &self,
        meta: &RequestMeta,
        actor_id: Option<Uuid>,
        action: &str,
        resource: (&str, Option<String>),
        details: Option<serde_json::Value>,
    ) -> Result<(), AppError> {
        let entry = AuditEntry {
            id: Uuid::now_v7(),
            occurred_at: self.clock.now(),
            actor_id,
            action: action.to_owned(),
            resource_type: resource.0.to_owned(),
            resource_id: resource.1,
            project_id: None,
            request_id: meta.request_id.clone(),
            ip: meta.ip.clone(),
            details,
            restricted: None,
            authority: None,
            token_id: meta.token_id,
        };
        Ok(self.audit.record(&entry).await?)
    }

    /// Revokes one session of `user_id` and drops what authentication cached of the user
    /// everywhere: the access tokens naming it are refused by every instance from now on.
    /// `false` when it was not active.
    pub(crate) async fn revoke_session(
        &self,
        user_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let revoked = self.sessions.revoke(id, at).await?;
        self.cache.invalidate(&[CacheKey::user(user_id)]).await;
        Ok(revoked)
    }

    /// Revokes every active session of `user_id` but `except`, as [`Self::revoke_session`];
    /// returns how many.
    pub(crate) async fn revoke_sessions_of(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let revoked = self.sessions.revoke_all(user_id, except, at).await?;
        self.cache.invalidate(&[CacheKey::user(user_id)]).await;
        Ok(revoked.len())
    }

    /// Stores a changed user and drops what was cached of it (sessions' checks, profile).
    pub(crate) async fn update_user(&self, user: &User) -> Result<(), AppError> {
        self.users.update(user).await?;
        self.cache.invalidate(&[CacheKey::user(user.id)]).await;
        Ok(())
    }

    /// Validates the input (every bad field reported), hashes the password and stores a new
    /// active account with `role`, its e-mail not verified. With `mailed`, a one-time token
    /// of that purpose (e-mail verification, first password) is stored with it and mailed
    /// (through the mail outbox, in the same transaction). A taken e-mail is a 409.
    pub(crate) async fn create_account(
        &self,
        email: &str,
        password: &str,
        name: &str,
        role: Role,
        mailed: Option<TokenPurpose>,
    ) -> Result<User, AppError> {
        let (email, password, name) = collect(
            Email::parse(email),
            Password::parse(password, "password"),
            UserName::parse(name),
        )?;
        let password_hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        let user = User {
            id: Uuid::now_v7(),
            email,
            name,
            role,
            status: UserStatus::Active,
            password_hash,
            email_verified: false,
            created_at: now,
            updated_at: now,
        };
        let created = match mailed {
            Some(purpose) => {
                let (token, mail) = self.mailed_token(&user, purpose, now);
                self.users.create_with_token(&user, &token, &mail).await
            }
            None => self.users.create(&user).await,
        };
        created.map_err(|e| match e {
            StoreError::Conflict(_) => {
                AppError::Conflict("an account with this e-mail already exists".into())
            }
            other => other.into(),
        })?;
        Ok(user)
    }

    /// A new one-time token of `purpose` for `user` and the mail that carries it (the
    /// token's secret is in the mail only; the token keeps its hash).
    pub(crate) fn mailed_token(
        &self,
        user: &User,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> (AccountToken, Mail) {
        let secret = self.token_secrets.generate();
        let secret_hash = self.token_secrets.hash(&secret);
        self.token_mail(user, purpose, &secret, secret_hash, now)
    }

    /// [`Self::mailed_token`] with a secret made already.
    pub(crate) fn token_mail(
        &self,
        user: &User,
        purpose: TokenPurpose,
        secret: &str,
        secret_hash: String,
        now: DateTime<Utc>,
    ) -> (AccountToken, Mail) {
        let token = AccountToken::new(user.id, purpose, secret_hash, now);
        let template = match purpose {
            TokenPurpose::PasswordReset => MailTemplate::PasswordReset,
            TokenPurpose::EmailVerification => MailTemplate::EmailVerification,
            TokenPurpose::PasswordSetup => MailTemplate::AccountCreated,
        };
        let mail = Mail::with_token(
            template,
            &user.email,
            &user.name,
            PresentedAccountToken::format(token.id, secret),
            purpose.lifetime_words(),
            now,
        );
        (token, mail)
    }

    /// Counts a guess of `user_id`'s password by a signed-in caller (a password change) and
    /// refuses it (429) beyond the login quota. Two budgets, each the login quota: one per
    /// user, whatever the address (a stolen token used from many places), and one per client
    /// address, whatever the account (stolen tokens of many accounts used from one place).
    /// Both are counted on every attempt, right or wrong, before the password is checked.
    /// Every route that checks a password or another guessable secret calls this first
    /// (`docs/security.md`, "Guessing").
    pub(crate) async fn limit_password_guess(
        &self,
        user_id: Uuid,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let by_user = self
            .limiter
            .hit(&format!("password:user:{user_id}"), self.login_quota)
            .await;
        let by_address = self
            .limiter
            .hit(
                &format!("password:ip:{}", meta.ip.as_deref().unwrap_or("-")),
                self.login_quota,
            )
            .await;
        if by_user.allowed && by_address.allowed {
            return Ok(());
        }
        self.audit(
            meta,
            Some(user_id),
            "auth.password.limited",
            ("user", Some(user_id.to_string())),
            None,
        )
        .await?;
        // The refusing limit that keeps the caller waiting longest speaks for the 429.
        let refusal = [by_user, by_address]
            .into_iter()
            .filter(|d| !d.allowed)
            .max_by_key(|d| d.retry_after_secs)
            .unwrap_or(by_user);
        Err(AppError::RateLimited(refusal))
    }

    /// Opens a session for `user` and issues its first token pair.
    pub(crate) async fn start_session(
        &self,
        user: &User,
        meta: &RequestMeta,
    ) -> Result<TokensView, AppError> {
        let now = self.clock.now();
        let expires_at = now + self.tokens.refresh_ttl();
        let session = Session {
            id: Uuid::now_v7(),
            user_id: user.id,
            created_at: now,
            last_used_at: now,
            expires_at,
            revoked_at: None,
            user_agent: meta.user_agent.clone(),
            ip: meta.ip.clone(),
        };
        let refresh = RefreshToken {
            id: Uuid::now_v7(),
            session_id: session.id,
            issued_at: now,
            expires_at,
        };
        self.sessions.create(&session, &refresh).await?;
        Ok(self.token_pair(user, session.id, &refresh, now))
    }

    pub(crate) fn token_pair(
        &self,
        user: &User,
        session_id: Uuid,
        refresh: &RefreshToken,
        now: DateTime<Utc>,
    ) -> TokensView {
        let access = AccessClaims {
            user_id: user.id,
            session_id,
            role: user.role,
        };
        let (access_token, expires_in) = self.tokens.issue_access(&access, now);
        let refresh_claims = RefreshClaims {
            user_id: user.id,
            session_id,
            token_id: refresh.id,
        };
        TokensView {
            access_token,
            refresh_token: self
                .tokens
                .issue_refresh(&refresh_claims, now, refresh.expires_at),
            token_type: "Bearer",
            expires_in,
        }
    }
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => Self::TokenExpired,
            TokenError::Invalid => Self::Unauthorized,
        }
    }
}

impl From<HashError> for AppError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Unavailable(Box::new(e)),
            HashError::Failed(_) => Self::Internal(Box::new(e)),
        }
    }
}

/// Collects the results of several parsers into one validation error listing every field.
pub(crate) fn collect<A, B, C>(
    a: Result<A, keel_domain::FieldError>,
    b: Result<B, keel_domain::FieldError>,
    c: Result<C, keel_domain::FieldError>,
) -> Result<(A, B, C), AppError> {
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => Err(AppError::Validation(
            [a.err(), b.err(), c.err()].into_iter().flatten().collect(),
        )),
    }
}
