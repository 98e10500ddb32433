//! Every authenticated request: the access token must verify, and its session and user
//! must still be active — checked on each request, so revocation is immediate.
//!
//! The check reads through the cache (`user:<id>` variant `s:<session>`, the session with
//! its user's role and status): every revocation and user change invalidates the user's
//! name on all instances before it answers, so the guarantee holds without a database round
//! trip per request, and a miss costs one statement.

use keel_domain::identity::ports::VerifiedAccess;
use keel_domain::identity::{Principal, UserStatus};

use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::identity::IdentityPorts;

/// The principal of an access token: verifies it, then checks its session and user.
pub async fn authenticate(ports: &IdentityPorts, access_token: &str) -> Result<Principal, AppError> {
    let verified = ports.tokens.verify_access(access_token)?;
    authenticate_verified(ports, verified).await
}

/// [`authenticate`] for a token verified already (an open event stream re-checks its
/// session with it): the token must not have expired since, the session must be active and
/// the user not disabled. One cache read (`user:<id>` variant `s:<session>`), or one
/// statement when it misses.
pub async fn authenticate_verified(
    ports: &IdentityPorts,
    verified: VerifiedAccess,
) -> Result<Principal, AppError> {
    let now = ports.clock.now();
    if verified.expires_at <= now {
        return Err(AppError::TokenExpired);
    }
    let claims = verified.claims;
    let state = cached(
        ports.cache.as_ref(),
        &CacheKey::session_of(claims.user_id, claims.session_id),
        ports.sessions.find_auth(claims.session_id),
    )
    .await?
    .filter(|s| s.user_id == claims.user_id && s.is_active(now))
    .ok_or(AppError::Unauthorized)?;
    if state.status == UserStatus::Disabled {
        return Err(AppError::AccountDisabled);
    }
    // The role comes from the store, not the token: a demotion applies at once.
    Ok(Principal {
        user_id: claims.user_id,
        session_id: claims.session_id,
        role: state.role,
        expires_at: verified.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::Role;
    use keel_domain::identity::ports::{AccessClaims, TokenError};

    use crate::identity::fixtures::now;

    use super::*;
    use crate::identity::fixtures::{Fixture, session, user};

    fn arrange(f: &mut Fixture, token_role: Role, stored: keel_domain::identity::User, revoked: bool) {
        let mut s = session(stored.id);
        if revoked {
            s.revoked_at = Some(s.created_at);
        }
        let (uid, sid) = (stored.id, s.id);
        f.tokens.expect_verify_access().returning(move |_| {
            Ok(VerifiedAccess {
                claims: AccessClaims {
                    user_id: uid,
                    session_id: sid,
                    role: token_role,
                },
                expires_at: now() + chrono::Duration::minutes(15),
            })
        });
        let auth = keel_domain::identity::SessionAuth {
            user_id: s.user_id,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            role: stored.role,
            status: stored.status,
        };
        f.sessions.expect_find_auth().returning(move |_| Ok(Some(auth)));
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
