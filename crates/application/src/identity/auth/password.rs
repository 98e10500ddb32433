//! `POST /auth/password`: needs the current password; revokes every other session.
//! Attempts are limited like sign-ins (a stolen access token must not buy unlimited guesses
//! of the password it cannot change without).

use keel_domain::identity::{Password, Principal};

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;

#[derive(Clone)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for ChangePasswordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePasswordInput").finish_non_exhaustive()
    }
}

pub async fn change_password(
    ports: &IdentityPorts,
    principal: &Principal,
    input: ChangePasswordInput,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    crate::identity::tokens::require_session(principal)?;
    let new_password =
        Password::parse(&input.new_password, "newPassword").map_err(|e| AppError::Validation(vec![e]))?;
    ports.limit_password_guess(principal.user_id, meta).await?;
    let mut user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !ports
        .hasher
        .verify(&input.current_password, Some(&user.password_hash))
        .await?
    {
        ports
            .audit(
                meta,
                Some(user.id),
                "auth.password.change_failed",
                ("user", Some(user.id.to_string())),
                None,
            )
            .await?;
        return Err(AppError::InvalidCredentials);
    }
    user.password_hash = ports.hasher.hash(&new_password).await?;
    let now = ports.clock.now();
    user.updated_at = now;
    ports.update_user(&user).await?;
    let revoked = ports
        .revoke_sessions_of(user.id, Some(principal.session_id), now)
        .await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.password.changed",
            ("user", Some(user.id.to_string())),
            Some(serde_json::json!({ "otherSessionsRevoked": revoked })),
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::{Role, UserStatus};
    use uuid::Uuid;

    use super::*;
    use crate::identity::fixtures::{Fixture, limit, meta, principal, user};

    fn input(current: &str, new: &str) -> ChangePasswordInput {
        ChangePasswordInput {
            current_password: current.into(),
            new_password: new.into(),
        }
    }

    #[tokio::test]
    async fn changes_the_hash_and_revokes_the_other_sessions() {
        let u = user(Role::User, UserStatus::Active);
        let p = principal(u.id, Role::User);
        let mut f = Fixture::new();
        limit(&mut f, "nothing");
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(u.clone())));
        f.hasher
            .expect_verify()
            .withf(|c, _| c == "Old-passw0rd")
            .returning(|_, _| Ok(true));
        f.hasher
            .expect_hash()
            .returning(|_| Ok(keel_domain::identity::PasswordHash::new("$argon2id$new".into())));
        f.users
            .expect_update()
            .withf(|u| u.password_hash.as_str() == "$argon2id$new")
            .times(1)
            .returning(|_| Ok(()));
        f.sessions
            .expect_revoke_all()
            .withf(move |uid, except, _| *uid == p.user_id && *except == Some(p.session_id))
            .times(1)
            .returning(|_, _, _| Ok(vec![Uuid::from_u128(5)]));
        f.expect_audit("auth.password.changed");
        let cache = f.cache.clone();
        let uid = p.user_id;
        change_password(
            &f.into_ports(),
            &p,
            input("Old-passw0rd", "New-passw0rd"),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(
            cache.invalidated(),
            [format!("user:{uid}"), format!("user:{uid}")]
        );
    }

    #[tokio::test]
    async fn a_wrong_current_password_changes_nothing() {
        let u = user(Role::User, UserStatus::Active);
        let p = principal(u.id, Role::User);
        let mut f = Fixture::new();
        limit(&mut f, "nothing");
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(u.clone())));
        f.hasher.expect_verify().returning(|_, _| Ok(false));
        f.expect_audit("auth.password.change_failed");
        let err = change_password(&f.into_ports(), &p, input("nope", "New-passw0rd"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::InvalidCredentials));
    }

    #[tokio::test]
    async fn guesses_beyond_the_login_quota_per_user_or_per_address_are_refused_unchecked() {
        for refused in ["password:user:", "password:ip:203.0.113.7"] {
            let u = user(Role::User, UserStatus::Active);
            let p = principal(u.id, Role::User);
            let mut f = Fixture::new();
            limit(&mut f, refused);
            // Neither the account nor the hasher is touched.
            f.users.expect_find_by_id().never();
            f.hasher.expect_verify().never();
            f.expect_audit("auth.password.limited");
            let err = change_password(
                &f.into_ports(),
                &p,
                input("Old-passw0rd", "New-passw0rd"),
                &meta(),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, AppError::RateLimited(d) if d.retry_after_secs == 42),
                "{refused}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_weak_new_password_is_a_validation_error_on_new_password() {
        let f = Fixture::new();
        let p = principal(uuid::Uuid::now_v7(), Role::User);
        let err = change_password(&f.into_ports(), &p, input("x", "weak"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Validation(ref d) if d[0].field == "newPassword"));
    }
}
