//! `POST /auth/refresh`: single-use rotation. Presenting a used refresh token is a replay:
//! the whole session is revoked (`TOKEN_REUSED`), so the newest token dies too.

use keel_domain::identity::{RefreshToken, Rotation, UserStatus};
use uuid::Uuid;

use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;
use crate::identity::views::TokensView;

pub async fn refresh(
    ports: &IdentityPorts,
    refresh_token: &str,
    meta: &RequestMeta,
) -> Result<TokensView, AppError> {
    let claims = ports.tokens.verify_refresh(refresh_token)?;
    let now = ports.clock.now();
    let session = ports
        .sessions
        .find(claims.session_id)
        .await?
        .filter(|s| s.user_id == claims.user_id && s.is_active(now))
        .ok_or(AppError::Unauthorized)?;
    let user = ports
        .users
        .find_by_id(session.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(AppError::Unauthorized)?;

    let next = RefreshToken {
        id: Uuid::now_v7(),
        session_id: session.id,
        issued_at: now,
        expires_at: now + ports.tokens.refresh_ttl(),
    };
    let rotation = ports.sessions.rotate(claims.token_id, &next, now).await?;
    if rotation == Rotation::Rotated {
        // Rotation touches the session: no instance may keep the old state.
        ports.cache.invalidate(&[CacheKey::user(session.user_id)]).await;
    }
    match rotation {
        Rotation::Rotated => {
            ports
                .audit(
                    meta,
                    Some(user.id),
                    "auth.token.refreshed",
                    ("session", Some(session.id.to_string())),
                    None,
                )
                .await?;
            Ok(ports.token_pair(&user, session.id, &next, now))
        }
        Rotation::AlreadyUsed => {
            ports.revoke_session(session.user_id, session.id, now).await?;
            ports
                .audit(
                    meta,
                    Some(user.id),
                    "auth.token.reused",
                    ("session", Some(session.id.to_string())),
                    None,
                )
                .await?;
            Err(AppError::TokenReused)
        }
        Rotation::Unknown => Err(AppError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;
    use keel_domain::identity::ports::{RefreshClaims, TokenError};

    use super::*;
    use crate::identity::fixtures::{Fixture, meta, session, user};

    fn arrange(f: &mut Fixture, rotation: Rotation) -> (Uuid, Uuid) {
        let u = user(Role::User, UserStatus::Active);
        let s = session(u.id);
        let (uid, sid) = (u.id, s.id);
        let token_id = Uuid::now_v7();
        f.tokens.expect_verify_refresh().returning(move |_| {
            Ok(RefreshClaims {
                user_id: uid,
                session_id: sid,
                token_id,
            })
        });
        f.tokens
            .expect_refresh_ttl()
            .returning(|| chrono::Duration::days(7));
        f.sessions.expect_find().returning(move |_| Ok(Some(s.clone())));
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(u.clone())));
        f.sessions
            .expect_rotate()
            .withf(move |used, next, _| *used == token_id && next.session_id == sid)
            .times(1)
            .returning(move |_, _, _| Ok(rotation));
        (uid, sid)
    }

    #[tokio::test]
    async fn an_unused_token_rotates_into_a_new_pair() {
        let mut f = Fixture::new();
        arrange(&mut f, Rotation::Rotated);
        f.tokens
            .expect_issue_access()
            .times(1)
            .returning(|_, _| ("a2".into(), 900));
        f.tokens
            .expect_issue_refresh()
            .times(1)
            .returning(|_, _, _| "r2".into());
        f.expect_audit("auth.token.refreshed");
        let pair = refresh(&f.into_ports(), "r1", &meta()).await.unwrap();
        assert_eq!(
            (pair.access_token.as_str(), pair.refresh_token.as_str()),
            ("a2", "r2")
        );
    }

    #[tokio::test]
    async fn a_reused_token_revokes_the_whole_session() {
        let mut f = Fixture::new();
        let (_, sid) = arrange(&mut f, Rotation::AlreadyUsed);
        f.sessions
            .expect_revoke()
            .withf(move |id, _| *id == sid)
            .times(1)
            .returning(|_, _| Ok(true));
        f.expect_audit("auth.token.reused");
        let err = refresh(&f.into_ports(), "r1", &meta()).await.unwrap_err();
        assert!(matches!(err, AppError::TokenReused));
    }

    #[tokio::test]
    async fn a_revoked_session_refuses_refresh() {
        let mut f = Fixture::new();
        let u = user(Role::User, UserStatus::Active);
        let mut s = session(u.id);
        s.revoked_at = Some(s.created_at);
        let (uid, sid) = (u.id, s.id);
        f.tokens.expect_verify_refresh().returning(move |_| {
            Ok(RefreshClaims {
                user_id: uid,
                session_id: sid,
                token_id: Uuid::now_v7(),
            })
        });
        f.sessions.expect_find().returning(move |_| Ok(Some(s.clone())));
        let err = refresh(&f.into_ports(), "r1", &meta()).await.unwrap_err();
        assert!(matches!(err, AppError::Unauthorized));
    }

    #[tokio::test]
    async fn expired_and_forged_tokens_are_told_apart() {
        let mut f = Fixture::new();
        f.tokens
            .expect_verify_refresh()
            .returning(|_| Err(TokenError::Expired));
        assert!(matches!(
            refresh(&f.into_ports(), "x", &meta()).await,
            Err(AppError::TokenExpired)
        ));
        let mut f = Fixture::new();
        f.tokens
            .expect_verify_refresh()
            .returning(|_| Err(TokenError::Invalid));
        assert!(matches!(
            refresh(&f.into_ports(), "x", &meta()).await,
            Err(AppError::Unauthorized)
        ));
    }
}
