//! `POST /auth/email/verify` and `POST /auth/email/verify/resend` (docs/api/identity.md,
//! "E-mail verification"). Register mails the first link; resend mails a new one (the
//! earlier ones stay valid until one of them is used or they expire).

use keel_domain::identity::Principal;
use keel_domain::identity::account_tokens::TokenPurpose;

use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;

/// `POST /auth/email/verify`: marks the account's e-mail verified with a mailed token
/// (once). An unknown, used, expired or malformed token is `InvalidToken`. Needs no
/// sign-in: the link may be opened on any device.
pub async fn verify_email(ports: &IdentityPorts, token: &str, meta: &RequestMeta) -> Result<(), AppError> {
    ports.limit_token_guess(meta).await?;
    let now = ports.clock.now();
    let Some(token) = ports
        .redeemable_token(token, &[TokenPurpose::EmailVerification], now)
        .await?
    else {
        ports
            .audit(meta, None, "auth.email.verify_failed", ("user", None), None)
            .await?;
        return Err(AppError::InvalidToken);
    };
    if !ports
        .account_tokens
        .verify_email(token.id, token.user_id, now)
        .await?
    {
        return Err(AppError::InvalidToken);
    }
    ports.cache.invalidate(&[CacheKey::user(token.user_id)]).await;
    ports
        .audit(
            meta,
            Some(token.user_id),
            "auth.email.verified",
            ("user", Some(token.user_id.to_string())),
            None,
        )
        .await
}

/// `POST /auth/email/verify/resend`: mails the signed-in caller a new verification link —
/// unless the address is verified already (then nothing is sent; the answer is the same).
/// Needs a signed-in session (a personal access token is refused), and counts against the
/// login quota per user, so it cannot be used to flood an inbox.
pub async fn resend_verification(
    ports: &IdentityPorts,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    crate::identity::tokens::require_session(principal)?;
    let decision = ports
        .limiter
        .hit(&format!("mail:user:{}", principal.user_id), ports.login_quota)
        .await;
    if !decision.allowed {
        return Err(AppError::RateLimited(decision));
    }
    let user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if user.email_verified {
        return Ok(());
    }
    let (token, mail) = ports.mailed_token(&user, TokenPurpose::EmailVerification, ports.clock.now());
    ports.account_tokens.issue(&token, &mail).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.email.verification_sent",
            ("user", Some(user.id.to_string())),
            None,
        )
        .await
}

#[cfg(test)]
#[path = "verification_tests.rs"]
mod tests;
