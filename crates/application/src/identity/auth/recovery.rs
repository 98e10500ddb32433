//! `POST /auth/password/forgot` and `POST /auth/password/reset` (docs/api/identity.md,
//! "Password reset").
//!
//! Forgot answers alike whatever the e-mail: the account is looked up and a token's secret
//! made and hashed in every case, and the one write that differs — the token and its mail,
//! for an active account — happens in the background, so the answer neither waits for it
//! nor takes longer because of it. Both routes count against the login limit: forgot on
//! the login's own budget (per client address and e-mail), reset on the per-address budget
//! of password guesses (its token is the guess).

use keel_domain::identity::account_tokens::{PresentedAccountToken, TokenPurpose};
use keel_domain::identity::{Email, Password, UserStatus};

use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;

/// `POST /auth/password/forgot`: mails an active account a reset link; answers `Ok` for any
/// e-mail (the route's 202), known or not.
pub async fn forgot_password(ports: &IdentityPorts, email: &str, meta: &RequestMeta) -> Result<(), AppError> {
    // An address that does not parse cannot belong to an account: treated as unknown.
    let email = Email::parse_existing(email).ok();
    let key_email = email.as_ref().map_or("-", Email::as_str);
    let key = format!("login:{}:{key_email}", meta.ip.as_deref().unwrap_or("-"));
    let decision = ports.limiter.hit(&key, ports.login_quota).await;
    if !decision.allowed {
        ports
            .audit(
                meta,
                None,
                "auth.password.forgot_limited",
                ("user", None),
                masked(email.as_ref()),
            )
            .await?;
        return Err(AppError::RateLimited(decision));
    }
    let user = match &email {
        Some(email) => ports.users.find_by_email(email).await?,
        None => None,
    };
    let user = user.filter(|u| u.status == UserStatus::Active);
    let now = ports.clock.now();
    // The same work whether or not there is an account: a secret is made and hashed either
    // way; only an active account's token and mail are stored.
    let secret = ports.token_secrets.generate();
    let secret_hash = ports.token_secrets.hash(&secret);
    let resource_id = user.as_ref().map(|u| u.id.to_string());
    if let Some(user) = &user {
        let (token, mail) = ports.token_mail(user, TokenPurpose::PasswordReset, &secret, secret_hash, now);
        ports.account_tokens.issue_in_background(token, mail);
    }
    ports
        .audit(
            meta,
            None,
            "auth.password.reset_requested",
            ("user", resource_id),
            masked(email.as_ref()),
        )
        .await
}

/// `POST /auth/password/reset`, as sent.
#[derive(Clone)]
pub struct ResetPasswordInput {
    pub token: String,
    pub new_password: String,
}

impl std::fmt::Debug for ResetPasswordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetPasswordInput").finish_non_exhaustive()
    }
}

/// `POST /auth/password/reset`: sets a new password with a mailed token (once), and revokes
/// every session of the account. An unknown, used, expired or malformed token — or one
/// whose account was disabled since — is `InvalidToken`.
pub async fn reset_password(
    ports: &IdentityPorts,
    input: ResetPasswordInput,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let new_password =
        Password::parse(&input.new_password, "newPassword").map_err(|e| AppError::Validation(vec![e]))?;
    ports.limit_token_guess(meta).await?;
    let now = ports.clock.now();
    let Some(token) = ports
        .redeemable_token(
            &input.token,
            &[TokenPurpose::PasswordReset, TokenPurpose::PasswordSetup],
            now,
        )
        .await?
    else {
        ports
            .audit(meta, None, "auth.password.reset_failed", ("user", None), None)
            .await?;
        return Err(AppError::InvalidToken);
    };
    let password_hash = ports.hasher.hash(&new_password).await?;
    let Some(revoked) = ports
        .account_tokens
        .reset_password(token.id, token.user_id, &password_hash, now)
        .await?
    else {
        // Redeemed (or expired) by a concurrent request since it was read.
        return Err(AppError::InvalidToken);
    };
    ports.cache.invalidate(&[CacheKey::user(token.user_id)]).await;
    ports
        .audit(
            meta,
            Some(token.user_id),
            "auth.password.reset",
            ("user", Some(token.user_id.to_string())),
            Some(serde_json::json!({ "sessionsRevoked": revoked.len() })),
        )
        .await
}

impl IdentityPorts {
    /// Counts a guess of a one-time token from the caller's address against the login
    /// quota (the address budget password guesses share, `limit_password_guess`), and
    /// refuses it (429) beyond it.
    pub(crate) async fn limit_token_guess(&self, meta: &RequestMeta) -> Result<(), AppError> {
        let decision = self
            .limiter
            .hit(
                &format!("password:ip:{}", meta.ip.as_deref().unwrap_or("-")),
                self.login_quota,
            )
            .await;
        if decision.allowed {
            return Ok(());
        }
        self.audit(meta, None, "auth.token.limited", ("user", None), None)
            .await?;
        Err(AppError::RateLimited(decision))
    }

    /// The stored token `raw` names, when its secret matches (compared in constant time),
    /// it has one of `purposes`, is unused, unexpired and its account active; `None`
    /// otherwise. One read by primary key.
    pub(crate) async fn redeemable_token(
        &self,
        raw: &str,
        purposes: &[TokenPurpose],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<keel_domain::identity::account_tokens::AccountToken>, AppError> {
        let Some(presented) = PresentedAccountToken::parse(raw.trim()) else {
            return Ok(None);
        };
        let Some(record) = self.account_tokens.find(presented.id).await? else {
            return Ok(None);
        };
        let matches = self
            .token_secrets
            .matches(presented.secret, &record.token.secret_hash);
        Ok(
            (matches && record.token.redeemable(purposes, now) && record.user_status == UserStatus::Active)
                .then_some(record.token),
        )
    }
}

fn masked(email: Option<&Email>) -> Option<serde_json::Value> {
    email.map(|e| serde_json::json!({ "email": e.masked() }))
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
