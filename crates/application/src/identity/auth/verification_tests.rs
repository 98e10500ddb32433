//! Unit tests of e-mail verification: a token verifies once; resend mails a new link to an
//! unverified signed-in caller only.

use std::sync::Arc;

use keel_domain::identity::account_tokens::{AccountToken, AccountTokenRecord, PresentedAccountToken};
use keel_domain::identity::tokens::{Grant, Scopes};
use keel_domain::identity::{Role, UserStatus};
use keel_domain::mail::MailTemplate;
use keel_domain::rate_limit::RateDecision;
use uuid::Uuid;

use super::*;
use crate::identity::fixtures::{Fixture, meta, now, principal, user};

fn allow(f: &mut Fixture) {
    f.limiter.expect_hit().times(1).returning(|_, q| RateDecision {
        allowed: true,
        limit: q.requests,
        remaining: q.requests - 1,
        reset_secs: 900,
        retry_after_secs: 0,
    });
}

fn stored(purpose: TokenPurpose, user_id: Uuid) -> AccountToken {
    AccountToken::new(
        user_id,
        purpose,
        "hash(the-secret)".into(),
        now() - chrono::Duration::hours(1),
    )
}

fn find(f: &mut Fixture, token: AccountToken) {
    f.account_tokens.expect_find().times(1).returning(move |_| {
        Ok(Some(AccountTokenRecord {
            token: token.clone(),
            user_status: UserStatus::Active,
        }))
    });
    f.token_secrets
        .expect_matches()
        .returning(|secret, hash| hash == format!("hash({secret})"));
}

#[tokio::test]
async fn a_valid_token_verifies_the_e_mail_and_drops_the_cached_profile() {
    let mut f = Fixture::new();
    allow(&mut f);
    let user_id = Uuid::now_v7();
    let token = stored(TokenPurpose::EmailVerification, user_id);
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    let token_id = token.id;
    find(&mut f, token);
    f.account_tokens
        .expect_verify_email()
        .withf(move |t, u, at| *t == token_id && *u == user_id && *at == now())
        .times(1)
        .returning(|_, _, _| Ok(true));
    f.expect_audit("auth.email.verified");
    let cache = Arc::clone(&f.cache);
    verify_email(&f.into_ports(), &raw, &meta()).await.unwrap();
    assert!(
        cache
            .invalidated()
            .contains(&CacheKey::user(user_id).name().to_owned())
    );
}

#[tokio::test]
async fn a_reset_token_a_used_one_or_a_second_use_does_not_verify() {
    let user_id = Uuid::now_v7();
    // A password reset token is not a verification token.
    let mut f = Fixture::new();
    allow(&mut f);
    let token = stored(TokenPurpose::PasswordReset, user_id);
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    find(&mut f, token);
    f.expect_audit("auth.email.verify_failed");
    let err = verify_email(&f.into_ports(), &raw, &meta()).await.unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
    // Used already.
    let mut f = Fixture::new();
    allow(&mut f);
    let mut token = stored(TokenPurpose::EmailVerification, user_id);
    token.used_at = Some(now());
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    find(&mut f, token);
    f.expect_audit("auth.email.verify_failed");
    let err = verify_email(&f.into_ports(), &raw, &meta()).await.unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
    // Used by a concurrent request between the read and the write.
    let mut f = Fixture::new();
    allow(&mut f);
    let token = stored(TokenPurpose::EmailVerification, user_id);
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    find(&mut f, token);
    f.account_tokens
        .expect_verify_email()
        .times(1)
        .returning(|_, _, _| Ok(false));
    let err = verify_email(&f.into_ports(), &raw, &meta()).await.unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
}

#[tokio::test]
async fn resend_mails_a_new_link_to_an_unverified_caller() {
    let mut f = Fixture::new();
    allow(&mut f);
    let ann = user(Role::User, UserStatus::Active);
    let id = ann.id;
    f.users
        .expect_find_by_id()
        .times(1)
        .returning(move |_| Ok(Some(ann.clone())));
    f.token_secrets.expect_generate().returning(|| "s".into());
    f.token_secrets.expect_hash().returning(|s| format!("hash({s})"));
    f.account_tokens
        .expect_issue()
        .withf(move |t, m| {
            t.user_id == id
                && t.purpose == TokenPurpose::EmailVerification
                && m.template == MailTemplate::EmailVerification
                && m.to == "ann@example.com"
        })
        .times(1)
        .returning(|_, _| Ok(()));
    f.expect_audit("auth.email.verification_sent");
    resend_verification(&f.into_ports(), &principal(id, Role::User), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn resend_to_a_verified_caller_sends_nothing() {
    let mut f = Fixture::new();
    allow(&mut f);
    let mut ann = user(Role::User, UserStatus::Active);
    ann.email_verified = true;
    let id = ann.id;
    f.users
        .expect_find_by_id()
        .times(1)
        .returning(move |_| Ok(Some(ann.clone())));
    resend_verification(&f.into_ports(), &principal(id, Role::User), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn resend_refuses_a_personal_access_token() {
    let f = Fixture::new();
    let mut caller = principal(Uuid::now_v7(), Role::User);
    caller.grant = Some(Arc::new(Grant {
        token_id: Uuid::now_v7(),
        scopes: Scopes::parse(&["write"]).unwrap(),
        project_ids: None,
    }));
    let err = resend_verification(&f.into_ports(), &caller, &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InsufficientScope), "{err:?}");
}
