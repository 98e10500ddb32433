//! `POST /auth/logout` (this session) and `POST /auth/logout-all` (every session).

use keel_domain::identity::Principal;

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;

pub async fn logout(
    ports: &IdentityPorts,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    crate::identity::tokens::require_session(principal)?;
    ports
        .revoke_session(principal.user_id, principal.session_id, ports.clock.now())
        .await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "auth.logout",
            ("session", Some(principal.session_id.to_string())),
            None,
        )
        .await
}

pub async fn logout_all(
    ports: &IdentityPorts,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    crate::identity::tokens::require_session(principal)?;
    let revoked = ports
        .revoke_sessions_of(principal.user_id, None, ports.clock.now())
        .await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "auth.logout_all",
            ("user", Some(principal.user_id.to_string())),
            Some(serde_json::json!({ "sessionsRevoked": revoked })),
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;
    use uuid::Uuid;

    use super::*;
    use crate::identity::fixtures::{Fixture, meta, principal};

    #[tokio::test]
    async fn logout_revokes_only_the_current_session() {
        let p = principal(Uuid::now_v7(), Role::User);
        let mut f = Fixture::new();
        f.sessions
            .expect_revoke()
            .withf(move |id, _| *id == p.session_id)
            .times(1)
            .returning(|_, _| Ok(true));
        f.expect_audit("auth.logout");
        let cache = f.cache.clone();
        logout(&f.into_ports(), &p, &meta()).await.unwrap();
        // Every cached session check of the user goes (one name: `user:<id>`).
        assert_eq!(cache.invalidated(), [format!("user:{}", p.user_id)]);
    }

    #[tokio::test]
    async fn logout_all_revokes_every_session_of_the_user() {
        let p = principal(Uuid::now_v7(), Role::User);
        let mut f = Fixture::new();
        f.sessions
            .expect_revoke_all()
            .withf(move |user, except, _| *user == p.user_id && except.is_none())
            .times(1)
            .returning(|_, _, _| Ok(vec![Uuid::from_u128(7), Uuid::from_u128(8)]));
        f.audit
            .expect_record()
            .withf(|e| {
                e.action == "auth.logout_all"
                    && e.details == Some(serde_json::json!({ "sessionsRevoked": 2 }))
            })
            .times(1)
            .returning(|_| Ok(()));
        let cache = f.cache.clone();
        logout_all(&f.into_ports(), &p, &meta()).await.unwrap();
        assert_eq!(cache.invalidated(), [format!("user:{}", p.user_id)]);
    }
}
