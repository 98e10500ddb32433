//! Every authenticated request: the access token must verify, and its session and user
//! must still be active — checked on each request, so revocation is immediate.
//!
//! The checks read through the cache (`session:<id>`, `user:<id>`): every revocation and
//! user change invalidates them on all instances before it answers, so the guarantee holds
//! without a database round trip per request.

use chrono::{DateTime, Utc};
use keel_domain::identity::ports::AccessClaims;
use keel_domain::identity::{Principal, Role, Session, User, UserStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::identity::IdentityPorts;

/// What authentication keeps of a session (no address, no user agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionState {
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<Session> for SessionState {
    fn from(s: Session) -> Self {
        Self {
            user_id: s.user_id,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
        }
    }
}

/// What authentication keeps of a user (never the password hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserState {
    role: Role,
    status: UserStatus,
}

impl From<User> for UserState {
    fn from(u: User) -> Self {
        Self {
            role: u.role,
            status: u.status,
        }
    }
}

pub async fn authenticate(ports: &IdentityPorts, access_token: &str) -> Result<Principal, AppError> {
    let claims = ports.tokens.verify_access(access_token)?;
    authenticate_verified(ports, claims).await
}

/// [`authenticate`] for a token whose signature and expiry were verified already in this
/// request (the rate limiter does, to count per user): the session and user checks.
pub async fn authenticate_verified(
    ports: &IdentityPorts,
    claims: AccessClaims,
) -> Result<Principal, AppError> {
    let now = ports.clock.now();
    let session = cached(
        ports.cache.as_ref(),
        &CacheKey::session(claims.session_id),
        async {
            Ok(ports
                .sessions
                .find(claims.session_id)
                .await?
                .map(SessionState::from))
        },
    )
    .await?;
    let session_ok =
        session.is_some_and(|s| s.user_id == claims.user_id && s.revoked_at.is_none() && s.expires_at > now);
    if !session_ok {
        return Err(AppError::Unauthorized);
    }
    let user = cached(ports.cache.as_ref(), &CacheKey::user(claims.user_id), async {
        Ok(ports.users.find_by_id(claims.user_id).await?.map(UserState::from))
    })
    .await?
    .ok_or(AppError::Unauthorized)?;
    if user.status == UserStatus::Disabled {
        return Err(AppError::AccountDisabled);
    }
    // The role comes from the store, not the token: a demotion applies at once.
    Ok(Principal {
        user_id: claims.user_id,
        session_id: claims.session_id,
        role: user.role,
    })
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;
    use keel_domain::identity::ports::{AccessClaims, TokenError};

    use super::*;
    use crate::identity::fixtures::{Fixture, session, user};

    fn arrange(f: &mut Fixture, token_role: Role, stored: keel_domain::identity::User, revoked: bool) {
        let mut s = session(stored.id);
        if revoked {
            s.revoked_at = Some(s.created_at);
        }
        let (uid, sid) = (stored.id, s.id);
        f.tokens.expect_verify_access().returning(move |_| {
            Ok(AccessClaims {
                user_id: uid,
                session_id: sid,
                role: token_role,
            })
        });
        f.sessions.expect_find().returning(move |_| Ok(Some(s.clone())));
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(stored.clone())));
    }

    #[tokio::test]
    async fn an_active_session_yields_the_principal_with_the_stored_role() {
        let mut f = Fixture::new();
        let u = user(Role::User, UserStatus::Active);
        let uid = u.id;
        arrange(&mut f, Role::Admin, u, false);
        let p = authenticate(&f.into_ports(), "t").await.unwrap();
        assert_eq!(p.user_id, uid);
        assert_eq!(
            p.role,
            Role::User,
            "a demoted admin's old token carries no admin rights"
        );
    }

    #[tokio::test]
    async fn a_revoked_session_is_refused_although_the_token_is_valid() {
        let mut f = Fixture::new();
        arrange(&mut f, Role::User, user(Role::User, UserStatus::Active), true);
        assert!(matches!(
            authenticate(&f.into_ports(), "t").await,
            Err(AppError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn a_disabled_user_is_refused() {
        let mut f = Fixture::new();
        arrange(&mut f, Role::User, user(Role::User, UserStatus::Disabled), false);
        assert!(matches!(
            authenticate(&f.into_ports(), "t").await,
            Err(AppError::AccountDisabled)
        ));
    }

    #[tokio::test]
    async fn an_expired_token_is_token_expired() {
        let mut f = Fixture::new();
        f.tokens
            .expect_verify_access()
            .returning(|_| Err(TokenError::Expired));
        assert!(matches!(
            authenticate(&f.into_ports(), "t").await,
            Err(AppError::TokenExpired)
        ));
    }
}
