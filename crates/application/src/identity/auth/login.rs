//! `POST /auth/login`. An unknown e-mail and a wrong password cost the same (a dummy hash is
//! verified) and answer the same error; attempts are limited per IP and e-mail.

use keel_domain::identity::{Email, UserStatus};

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;
use crate::identity::views::{AuthView, UserView};

#[derive(Clone)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginInput").finish_non_exhaustive()
    }
}

pub async fn login(
    ports: &IdentityPorts,
    input: LoginInput,
    meta: &RequestMeta,
) -> Result<AuthView, AppError> {
    // An address that does not parse cannot belong to an account: it is treated exactly
    // like an unknown one, so the answer does not tell which inputs are well-formed.
    let email = Email::parse_existing(&input.email).ok();
    let key_email = email
        .as_ref()
        .map_or_else(|| input.email.trim().to_lowercase(), |e| e.as_str().to_owned());
    let key = format!("login:{}:{key_email}", meta.ip.as_deref().unwrap_or("-"));
    let decision = ports.limiter.hit(&key, ports.login_quota).await;
    if !decision.allowed {
        ports
            .audit(
                meta,
                None,
                "auth.login.limited",
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
    let verified = ports
        .hasher
        .verify(&input.password, user.as_ref().map(|u| &u.password_hash))
        .await?;
    let Some(user) = user.filter(|_| verified) else {
        ports
            .audit(
                meta,
                None,
                "auth.login.failed",
                ("user", None),
                masked(email.as_ref()),
            )
            .await?;
        return Err(AppError::InvalidCredentials);
    };
    if user.status == UserStatus::Disabled {
        ports
            .audit(
                meta,
                Some(user.id),
                "auth.login.disabled",
                ("user", Some(user.id.to_string())),
                None,
            )
            .await?;
        return Err(AppError::AccountDisabled);
    }
    let tokens = ports.start_session(&user, meta).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.login",
            ("user", Some(user.id.to_string())),
            None,
        )
        .await?;
    Ok(AuthView {
        user: UserView::from(&user),
        tokens,
    })
}

fn masked(email: Option<&Email>) -> Option<serde_json::Value> {
    email.map(|e| serde_json::json!({ "email": e.masked() }))
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;
    use keel_domain::rate_limit::RateDecision;

    use super::*;
    use crate::identity::fixtures::{Fixture, meta, user};

    fn input(email: &str, password: &str) -> LoginInput {
        LoginInput {
            email: email.into(),
            password: password.into(),
        }
    }

    fn allow(f: &mut Fixture) {
        f.limiter.expect_hit().times(1).returning(|_, q| RateDecision {
            allowed: true,
            limit: q.requests,
            remaining: q.requests - 1,
            retry_after_secs: 0,
            reset_secs: 900,
        });
    }

    #[tokio::test]
    async fn correct_credentials_open_a_session() {
        let mut f = Fixture::new();
        allow(&mut f);
        let u = user(Role::User, UserStatus::Active);
        let id = u.id;
        f.users
            .expect_find_by_email()
            .times(1)
            .returning(move |_| Ok(Some(u.clone())));
        f.hasher
            .expect_verify()
            .withf(|p, h| p == "Passw0rdX" && h.is_some())
            .returning(|_, _| Ok(true));
        f.expect_session_start();
        f.expect_audit("auth.login");
        let view = login(&f.into_ports(), input("ANN@example.com", "Passw0rdX"), &meta())
            .await
            .unwrap();
        assert_eq!(view.user.id, id);
        assert_eq!(view.tokens.access_token, "access-token");
    }

    #[tokio::test]
    async fn unknown_email_verifies_a_dummy_hash_and_answers_like_a_wrong_password() {
        let mut f = Fixture::new();
        allow(&mut f);
        f.users.expect_find_by_email().returning(|_| Ok(None));
        // The hasher is called with no hash: the dummy-hash path, same cost.
        f.hasher
            .expect_verify()
            .withf(|_, h| h.is_none())
            .times(1)
            .returning(|_, _| Ok(false));
        f.expect_audit("auth.login.failed");
        let unknown = login(&f.into_ports(), input("who@example.com", "Passw0rdX"), &meta())
            .await
            .unwrap_err();

        let mut f = Fixture::new();
        allow(&mut f);
        let u = user(Role::User, UserStatus::Active);
        f.users
            .expect_find_by_email()
            .returning(move |_| Ok(Some(u.clone())));
        f.hasher
            .expect_verify()
            .withf(|_, h| h.is_some())
            .times(1)
            .returning(|_, _| Ok(false));
        f.expect_audit("auth.login.failed");
        let wrong = login(&f.into_ports(), input("ann@example.com", "Wrong0ne"), &meta())
            .await
            .unwrap_err();

        assert!(matches!(unknown, AppError::InvalidCredentials));
        assert_eq!(unknown.to_string(), wrong.to_string());
    }

    #[tokio::test]
    async fn a_malformed_email_is_an_unknown_one() {
        let mut f = Fixture::new();
        allow(&mut f);
        f.hasher
            .expect_verify()
            .withf(|_, h| h.is_none())
            .times(1)
            .returning(|_, _| Ok(false));
        f.expect_audit("auth.login.failed");
        let err = login(&f.into_ports(), input("not an email", "x"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::InvalidCredentials));
    }

    #[tokio::test]
    async fn a_disabled_account_is_refused_only_after_the_password_matched() {
        let mut f = Fixture::new();
        allow(&mut f);
        let u = user(Role::User, UserStatus::Disabled);
        f.users
            .expect_find_by_email()
            .returning(move |_| Ok(Some(u.clone())));
        f.hasher.expect_verify().returning(|_, _| Ok(true));
        f.expect_audit("auth.login.disabled");
        let err = login(&f.into_ports(), input("ann@example.com", "Passw0rdX"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::AccountDisabled));
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_before_any_hashing() {
        let mut f = Fixture::new();
        f.limiter
            .expect_hit()
            .withf(|key, _| key == "login:203.0.113.7:ann@example.com")
            .returning(|_, q| RateDecision {
                allowed: false,
                limit: q.requests,
                remaining: 0,
                retry_after_secs: 42,
                reset_secs: 42,
            });
        f.expect_audit("auth.login.limited");
        let err = login(&f.into_ports(), input("Ann@Example.com", "Passw0rdX"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::RateLimited(d) if d.retry_after_secs == 42 && !d.allowed));
    }

    #[test]
    fn login_input_debug_hides_the_password() {
        assert!(!format!("{:?}", input("a@b.co", "Passw0rdX")).contains("Passw0rdX"));
    }
}
