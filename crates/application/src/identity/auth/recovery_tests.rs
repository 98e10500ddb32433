//! Unit tests of password reset: forgot answers alike for every e-mail, reset tokens work
//! once, for their purpose, before they expire, and revoke every session.

use keel_domain::identity::account_tokens::{AccountToken, AccountTokenRecord, PresentedAccountToken};
use keel_domain::identity::{Role, UserStatus};
use keel_domain::mail::MailTemplate;
use keel_domain::rate_limit::RateDecision;
use uuid::Uuid;

use super::*;
use crate::identity::fixtures::{Fixture, meta, now, user};

fn allow(f: &mut Fixture) {
    f.limiter.expect_hit().times(1).returning(|_, q| RateDecision {
        allowed: true,
        limit: q.requests,
        remaining: q.requests - 1,
        reset_secs: 900,
        retry_after_secs: 0,
    });
}

fn secrets(f: &mut Fixture) {
    f.token_secrets
        .expect_generate()
        .times(1)
        .returning(|| "fresh-secret".into());
    f.token_secrets
        .expect_hash()
        .times(1)
        .returning(|s| format!("hash({s})"));
}

/// An audit entry with `action` whose details hold no token.
fn audited(f: &mut Fixture, action: &'static str) {
    f.audit
        .expect_record()
        .withf(move |e| {
            let details = e.details.as_ref().map(ToString::to_string).unwrap_or_default();
            e.action == action && !details.contains("secret") && !details.contains("hash(")
        })
        .times(1)
        .returning(|_| Ok(()));
}

#[tokio::test]
async fn forgot_for_an_active_account_stores_a_token_and_mails_its_link_in_the_background() {
    let mut f = Fixture::new();
    allow(&mut f);
    let ann = user(Role::User, UserStatus::Active);
    let id = ann.id;
    f.users
        .expect_find_by_email()
        .times(1)
        .returning(move |_| Ok(Some(ann.clone())));
    secrets(&mut f);
    f.account_tokens
        .expect_issue_in_background()
        .withf(move |token, mail| {
            let link = mail.values.get("token").cloned().unwrap_or_default();
            let presented = PresentedAccountToken::parse(&link);
            token.user_id == id
                && token.purpose == TokenPurpose::PasswordReset
                && token.secret_hash == "hash(fresh-secret)"
                && token.expires_at == now() + chrono::Duration::minutes(30)
                && mail.template == MailTemplate::PasswordReset
                && mail.to == "ann@example.com"
                && presented.is_some_and(|p| p.id == token.id && p.secret == "fresh-secret")
        })
        .times(1)
        .return_const(());
    audited(&mut f, "auth.password.reset_requested");
    forgot_password(&f.into_ports(), "Ann@Example.com", &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn forgot_for_an_unknown_e_mail_does_the_same_work_and_stores_nothing() {
    let mut f = Fixture::new();
    allow(&mut f);
    f.users.expect_find_by_email().times(1).returning(|_| Ok(None));
    // The secret is made and hashed all the same; nothing is issued (no expectation).
    secrets(&mut f);
    audited(&mut f, "auth.password.reset_requested");
    forgot_password(&f.into_ports(), "nobody@example.com", &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn forgot_for_a_disabled_account_or_a_malformed_address_sends_nothing() {
    let mut f = Fixture::new();
    allow(&mut f);
    let off = user(Role::User, UserStatus::Disabled);
    f.users
        .expect_find_by_email()
        .times(1)
        .returning(move |_| Ok(Some(off.clone())));
    secrets(&mut f);
    audited(&mut f, "auth.password.reset_requested");
    forgot_password(&f.into_ports(), "ann@example.com", &meta())
        .await
        .unwrap();

    let mut f = Fixture::new();
    allow(&mut f);
    secrets(&mut f);
    audited(&mut f, "auth.password.reset_requested");
    forgot_password(&f.into_ports(), "not an address", &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn forgot_counts_against_the_login_limit_of_the_address_and_e_mail() {
    let mut f = Fixture::new();
    f.limiter
        .expect_hit()
        .withf(|key, q| key == "login:203.0.113.7:ann@example.com" && q.requests == 10)
        .times(1)
        .returning(|_, q| RateDecision {
            allowed: false,
            limit: q.requests,
            remaining: 0,
            reset_secs: 600,
            retry_after_secs: 600,
        });
    audited(&mut f, "auth.password.forgot_limited");
    let err = forgot_password(&f.into_ports(), "ann@example.com", &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::RateLimited(_)), "{err:?}");
}

fn stored(purpose: TokenPurpose, user_id: Uuid) -> AccountToken {
    AccountToken::new(
        user_id,
        purpose,
        "hash(the-secret)".into(),
        now() - chrono::Duration::minutes(5),
    )
}

fn find(f: &mut Fixture, token: AccountToken, status: UserStatus) {
    f.account_tokens.expect_find().times(1).returning(move |_| {
        Ok(Some(AccountTokenRecord {
            token: token.clone(),
            user_status: status,
        }))
    });
}

fn real_matching(f: &mut Fixture) {
    f.token_secrets
        .expect_matches()
        .returning(|secret, hash| hash == format!("hash({secret})"));
}

fn reset_input(token: &str) -> ResetPasswordInput {
    ResetPasswordInput {
        token: token.into(),
        new_password: "N3w-passw0rd".into(),
    }
}

#[tokio::test]
async fn a_valid_reset_token_sets_the_password_and_revokes_every_session() {
    let mut f = Fixture::new();
    allow(&mut f);
    let user_id = Uuid::now_v7();
    let token = stored(TokenPurpose::PasswordReset, user_id);
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    let token_id = token.id;
    find(&mut f, token, UserStatus::Active);
    real_matching(&mut f);
    f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
    f.account_tokens
        .expect_reset_password()
        .withf(move |t, u, h, at| *t == token_id && *u == user_id && *h == Fixture::hash() && *at == now())
        .times(1)
        .returning(|_, _, _, _| Ok(Some(vec![Uuid::now_v7(), Uuid::now_v7()])));
    audited(&mut f, "auth.password.reset");
    let cache = std::sync::Arc::clone(&f.cache);
    reset_password(&f.into_ports(), reset_input(&raw), &meta())
        .await
        .unwrap();
    assert!(
        cache
            .invalidated()
            .contains(&crate::cache::CacheKey::user(user_id).name().to_owned()),
        "authentication's cached view of the user is dropped"
    );
}

#[tokio::test]
async fn a_wrong_secret_an_unknown_token_or_a_malformed_one_is_invalid_and_changes_nothing() {
    let user_id = Uuid::now_v7();
    // Wrong secret.
    let mut f = Fixture::new();
    allow(&mut f);
    let token = stored(TokenPurpose::PasswordReset, user_id);
    let raw = PresentedAccountToken::format(token.id, "guess");
    find(&mut f, token, UserStatus::Active);
    real_matching(&mut f);
    audited(&mut f, "auth.password.reset_failed");
    let err = reset_password(&f.into_ports(), reset_input(&raw), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
    // Unknown id.
    let mut f = Fixture::new();
    allow(&mut f);
    f.account_tokens.expect_find().times(1).returning(|_| Ok(None));
    audited(&mut f, "auth.password.reset_failed");
    let raw = PresentedAccountToken::format(Uuid::now_v7(), "the-secret");
    let err = reset_password(&f.into_ports(), reset_input(&raw), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
    // Malformed: not even looked up.
    let mut f = Fixture::new();
    allow(&mut f);
    audited(&mut f, "auth.password.reset_failed");
    let err = reset_password(&f.into_ports(), reset_input("nope"), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
}

#[tokio::test]
async fn a_used_an_expired_a_verification_or_a_disabled_account_s_token_is_invalid() {
    let user_id = Uuid::now_v7();
    let mut used = stored(TokenPurpose::PasswordReset, user_id);
    used.used_at = Some(now() - chrono::Duration::minutes(1));
    let mut expired = stored(TokenPurpose::PasswordReset, user_id);
    expired.expires_at = now();
    let other_purpose = stored(TokenPurpose::EmailVerification, user_id);
    let cases = [
        (used, UserStatus::Active),
        (expired, UserStatus::Active),
        (other_purpose, UserStatus::Active),
        (stored(TokenPurpose::PasswordReset, user_id), UserStatus::Disabled),
    ];
    for (token, status) in cases {
        let mut f = Fixture::new();
        allow(&mut f);
        let raw = PresentedAccountToken::format(token.id, "the-secret");
        find(&mut f, token, status);
        real_matching(&mut f);
        audited(&mut f, "auth.password.reset_failed");
        let err = reset_password(&f.into_ports(), reset_input(&raw), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::InvalidToken), "{err:?}");
    }
}

#[tokio::test]
async fn a_token_redeemed_concurrently_is_invalid_for_the_second_request() {
    let mut f = Fixture::new();
    allow(&mut f);
    let token = stored(TokenPurpose::PasswordReset, Uuid::now_v7());
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    find(&mut f, token, UserStatus::Active);
    real_matching(&mut f);
    f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
    f.account_tokens
        .expect_reset_password()
        .times(1)
        .returning(|_, _, _, _| Ok(None));
    let err = reset_password(&f.into_ports(), reset_input(&raw), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InvalidToken), "{err:?}");
}

#[tokio::test]
async fn a_weak_new_password_is_a_validation_error_before_the_token_is_looked_at() {
    let f = Fixture::new();
    let err = reset_password(
        &f.into_ports(),
        ResetPasswordInput {
            token: "whatever".into(),
            new_password: "short".into(),
        },
        &meta(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, AppError::Validation(ref d) if d[0].field == "newPassword"),
        "{err:?}"
    );
}

#[tokio::test]
async fn reset_counts_against_the_login_quota_per_address() {
    let mut f = Fixture::new();
    f.limiter
        .expect_hit()
        .withf(|key, _| key == "password:ip:203.0.113.7")
        .times(1)
        .returning(|_, q| RateDecision {
            allowed: false,
            limit: q.requests,
            remaining: 0,
            reset_secs: 600,
            retry_after_secs: 600,
        });
    audited(&mut f, "auth.token.limited");
    let err = reset_password(&f.into_ports(), reset_input("x"), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::RateLimited(_)), "{err:?}");
}

#[tokio::test]
async fn a_first_password_token_of_an_account_an_admin_made_is_redeemed_like_a_reset_token() {
    let mut f = Fixture::new();
    allow(&mut f);
    let user_id = Uuid::now_v7();
    let token = stored(TokenPurpose::PasswordSetup, user_id);
    let raw = PresentedAccountToken::format(token.id, "the-secret");
    find(&mut f, token, UserStatus::Active);
    real_matching(&mut f);
    f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
    f.account_tokens
        .expect_reset_password()
        .times(1)
        .returning(|_, _, _, _| Ok(Some(Vec::new())));
    audited(&mut f, "auth.password.reset");
    reset_password(&f.into_ports(), reset_input(&raw), &meta())
        .await
        .unwrap();
}
