//! `POST /auth/register`: a new account with the `user` role (never another), signed in,
//! and a verification mail to its address (written with the account, in one transaction).

use keel_domain::identity::Role;
use keel_domain::identity::account_tokens::TokenPurpose;

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;
use crate::identity::views::{AuthView, UserView};

#[derive(Debug, Clone)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: String,
}

/// With registration closed (`KEEL_REGISTRATION=closed`) every register is `Forbidden`:
/// admins create accounts.
pub async fn register(
    ports: &IdentityPorts,
    input: RegisterInput,
    meta: &RequestMeta,
) -> Result<AuthView, AppError> {
    if !ports.registration_open {
        return Err(AppError::Forbidden);
    }
    let user = ports
        .create_account(
            &input.email,
            &input.password,
            &input.name,
            Role::User,
            Some(TokenPurpose::EmailVerification),
        )
        .await?;
    let tokens = ports.start_session(&user, meta).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.registered",
            ("user", Some(user.id.to_string())),
            None,
        )
        .await?;
    Ok(AuthView {
        user: UserView::from(&user),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use keel_domain::StoreError;
    use keel_domain::mail::MailTemplate;

    use super::*;
    use crate::identity::fixtures::{Fixture, meta};

    fn input(email: &str, password: &str, name: &str) -> RegisterInput {
        RegisterInput {
            email: email.into(),
            password: password.into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn creates_a_user_with_the_user_role_a_session_and_a_verification_mail() {
        let mut f = Fixture::new();
        f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
        f.token_secrets
            .expect_generate()
            .times(1)
            .returning(|| "secret".into());
        f.token_secrets
            .expect_hash()
            .times(1)
            .returning(|s| format!("hash({s})"));
        f.users
            .expect_create_with_token()
            .withf(|u, token, mail| {
                u.role == Role::User
                    && u.email.as_str() == "ann@example.com"
                    && u.name.as_str() == "Ann"
                    && !u.email_verified
                    && token.user_id == u.id
                    && token.purpose == TokenPurpose::EmailVerification
                    && token.secret_hash == "hash(secret)"
                    && mail.template == MailTemplate::EmailVerification
                    && mail.to == "ann@example.com"
                    && mail.values["token"].ends_with(".secret")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        f.expect_session_start();
        f.expect_audit("auth.registered");
        let view = register(
            &f.into_ports(),
            input(" Ann@Example.com", "Passw0rdX", " Ann "),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.user.role, "user");
        assert_eq!(view.user.email, "ann@example.com");
        assert_eq!(view.tokens.token_type, "Bearer");
    }

    #[tokio::test]
    async fn reports_every_invalid_field_and_touches_nothing() {
        let f = Fixture::new();
        let err = register(&f.into_ports(), input("nope", "short", "A"), &meta())
            .await
            .unwrap_err();
        let AppError::Validation(details) = err else {
            panic!("expected validation")
        };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "name"]);
    }

    #[tokio::test]
    async fn a_taken_email_is_a_conflict() {
        let mut f = Fixture::new();
        f.hasher.expect_hash().returning(|_| Ok(Fixture::hash()));
        f.token_secrets.expect_generate().returning(|| "secret".into());
        f.token_secrets.expect_hash().returning(|s| format!("hash({s})"));
        f.users
            .expect_create_with_token()
            .returning(|_, _, _| Err(StoreError::Conflict("users_email_key".into())));
        let err = register(&f.into_ports(), input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppError::Conflict(ref m) if m.contains("already exists")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn closed_registration_refuses_every_register_and_touches_nothing() {
        let mut ports = Fixture::new().into_ports();
        ports.registration_open = false;
        let err = register(&ports, input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Forbidden), "{err:?}");
    }

    #[tokio::test]
    async fn hashing_capacity_exhausted_is_unavailable() {
        let mut f = Fixture::new();
        f.hasher
            .expect_hash()
            .returning(|_| Err(keel_domain::identity::ports::HashError::Busy));
        let err = register(&f.into_ports(), input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Unavailable(_)));
    }
}
