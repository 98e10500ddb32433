//! `GET /auth/sessions` and `DELETE /auth/sessions/{id}`.

use keel_domain::identity::Principal;
use uuid::Uuid;

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;
use crate::identity::views::SessionView;

pub async fn list_sessions(
    ports: &IdentityPorts,
    principal: &Principal,
) -> Result<Vec<SessionView>, AppError> {
    crate::identity::tokens::require_session(principal)?;
    let sessions = ports
        .sessions
        .list_active(principal.user_id, ports.clock.now())
        .await?;
    Ok(sessions
        .iter()
        .map(|s| SessionView::new(s, principal.session_id))
        .collect())
}

/// Revokes one of the caller's sessions. Someone else's session, or one already ended, is a
/// 404: its existence is not revealed.
pub async fn revoke_session(
    ports: &IdentityPorts,
    principal: &Principal,
    session_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    crate::identity::tokens::require_session(principal)?;
    let now = ports.clock.now();
    let owned = ports
        .sessions
        .find(session_id)
        .await?
        .is_some_and(|s| s.user_id == principal.user_id && s.is_active(now));
    if !owned || !ports.revoke_session(principal.user_id, session_id, now).await? {
        return Err(AppError::NotFound("session"));
    }
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "auth.session.revoked",
            ("session", Some(session_id.to_string())),
            None,
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;

    use super::*;
    use crate::identity::fixtures::{Fixture, meta, session};

    #[tokio::test]
    async fn lists_sessions_marking_the_current_one() {
        let uid = Uuid::now_v7();
        let (a, b) = (session(uid), session(uid));
        let current = b.id;
        let mut f = Fixture::new();
        f.sessions
            .expect_list_active()
            .returning(move |_, _| Ok(vec![a.clone(), b.clone()]));
        let p = Principal {
            user_id: uid,
            session_id: current,
            role: Role::User,
            expires_at: crate::identity::fixtures::now() + chrono::Duration::minutes(15),
            grant: None,
        };
        let views = list_sessions(&f.into_ports(), &p).await.unwrap();
        assert_eq!(views.iter().filter(|v| v.current).count(), 1);
        assert!(views.iter().any(|v| v.current && v.id == current));
    }

    #[tokio::test]
    async fn someone_elses_session_is_not_found() {
        let other = session(Uuid::now_v7());
        let mut f = Fixture::new();
        f.sessions
            .expect_find()
            .returning(move |_| Ok(Some(other.clone())));
        let p = Principal {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            role: Role::User,
            expires_at: crate::identity::fixtures::now() + chrono::Duration::minutes(15),
            grant: None,
        };
        let err = revoke_session(&f.into_ports(), &p, Uuid::now_v7(), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::NotFound(_)));
    }
}
