//! Every authenticated request: the access token must verify, and its session and user
//! must still be active — checked on each request, so revocation is immediate. A personal
//! access token (`keel_pat_…`) takes the same path: its row and user must still be there,
//! active and unexpired.
//!
//! The check reads through the cache (`user:<id>` variant `s:<session>`, the session with
//! its user's role and status; `t:<token>` for a personal access token): every revocation,
//! token deletion and user change invalidates the user's name on all instances before it
//! answers, so the guarantee holds without a database round trip per request, and a miss
//! costs one statement.

use std::sync::Arc;

use keel_domain::identity::ports::{AccessClaims, VerifiedAccess};
use keel_domain::identity::tokens::{Grant, PresentedToken, Scope, TokenAuth};
use keel_domain::identity::{Principal, Role, UserStatus};
use uuid::Uuid;

use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::identity::IdentityPorts;
use crate::identity::tokens::TokenUses;

/// The principal of a bearer credential: an access token (verified, then its session and
/// user checked) or a personal access token (its row, secret and user checked).
pub async fn authenticate(ports: &IdentityPorts, credential: &str) -> Result<Principal, AppError> {
    if PresentedToken::is_personal(credential) {
        return authenticate_personal(ports, credential).await;
    }
    let verified = ports.tokens.verify_access(credential)?;
    authenticate_verified(ports, verified).await
}

/// Checks again that the credential `principal` was proved by is still good (an open event
/// stream does this on every invalidation of its user and every ping): its session or
/// token is still there and unexpired, and its user is not disabled.
pub async fn authenticate_again(ports: &IdentityPorts, principal: &Principal) -> Result<Principal, AppError> {
    match &principal.grant {
        None => {
            authenticate_verified(
                ports,
                VerifiedAccess {
                    claims: AccessClaims {
                        user_id: principal.user_id,
                        session_id: principal.session_id,
                        role: principal.role,
                    },
                    expires_at: principal.expires_at,
                },
            )
            .await
        }
        Some(grant) => {
            let auth = token_auth(ports, principal.user_id, grant.token_id).await?;
            live_token(ports, principal.user_id, grant.token_id, &auth)
        }
    }
}

/// A personal access token's principal: one cache read (or one statement) by the token's
/// id, then a constant-time comparison of its secret's hash.
async fn authenticate_personal(ports: &IdentityPorts, raw: &str) -> Result<Principal, AppError> {
    let presented = PresentedToken::parse(raw).ok_or(AppError::Unauthorized)?;
    let auth = token_auth(ports, presented.user_id, presented.token_id).await?;
    if !ports.token_secrets.matches(presented.secret, &auth.secret_hash) {
        return Err(AppError::Unauthorized);
    }
    let principal = live_token(ports, presented.user_id, presented.token_id, &auth)?;
    record_use(ports, presented.token_id, &auth);
    Ok(principal)
}

/// The token's authentication record, through the cache, if it belongs to `user_id`.
async fn token_auth(
    ports: &IdentityPorts,
    user_id: Uuid,
    token_id: Uuid,
) -> Result<Arc<TokenAuth>, AppError> {
    cached(
        ports.cache.as_ref(),
        &CacheKey::token_of(user_id, token_id),
        ports.personal_tokens.find_auth(token_id),
    )
    .await?
    .filter(|t| t.user_id == user_id)
    .ok_or(AppError::Unauthorized)
}

/// The principal of a token found and matched: refused once expired or its user disabled.
fn live_token(
    ports: &IdentityPorts,
    user_id: Uuid,
    token_id: Uuid,
    auth: &TokenAuth,
) -> Result<Principal, AppError> {
    if auth.expires_at <= ports.clock.now() {
        return Err(AppError::TokenExpired);
    }
    if auth.status == UserStatus::Disabled {
        return Err(AppError::AccountDisabled);
    }
    // An admin's token without the `admin` scope acts as a plain user: instance admins act
    // as owners of every project, which only a token meant for administration may do.
    let role = if auth.scopes.contains(Scope::Admin) {
        auth.role
    } else {
        Role::User
    };
    Ok(Principal {
        user_id,
        session_id: token_id,
        role,
        expires_at: auth.expires_at,
        grant: Some(Arc::new(Grant {
            token_id,
            scopes: auth.scopes,
            project_ids: auth.project_ids.clone(),
        })),
    })
}

/// Keeps `lastUsedAt` to the minute without a write per request: only the first use in a
/// minute the token's row and this instance do not have yet writes, in the background.
fn record_use(ports: &IdentityPorts, token_id: Uuid, auth: &TokenAuth) {
    let minute = TokenUses::minute(ports.clock.now());
    if !ports.token_uses.needs_write(token_id, auth.last_used_at, minute) {
        return;
    }
    ports.personal_tokens.record_use(token_id, minute);
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
        grant: None,
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

    mod personal_tokens {
        use keel_domain::identity::tokens::{PresentedToken, Scopes, TokenAuth};
        use uuid::Uuid;

        use super::*;

        fn auth(user_id: Uuid, role: Role, status: UserStatus, scopes: &[&str]) -> TokenAuth {
            TokenAuth {
                user_id,
                secret_hash: "hash-of-secret".into(),
                scopes: Scopes::parse(scopes).unwrap(),
                project_ids: None,
                expires_at: now() + chrono::Duration::days(1),
                last_used_at: None,
                role,
                status,
            }
        }

        /// The store answers `stored` for the token, the secret matches when it is `secret`,
        /// and uses are recorded `uses` times.
        fn arrange(f: &mut Fixture, stored: TokenAuth, uses: usize) {
            f.personal_tokens
                .expect_find_auth()
                .returning(move |_| Ok(Some(stored.clone())));
            f.token_secrets
                .expect_matches()
                .returning(|secret, hash| secret == "secret" && hash == "hash-of-secret");
            f.personal_tokens.expect_record_use().times(uses).return_const(());
        }

        #[tokio::test]
        async fn a_live_token_yields_a_principal_with_its_grant_and_records_one_use_a_minute() {
            let (uid, tid) = (Uuid::now_v7(), Uuid::now_v7());
            let mut f = Fixture::new();
            let mut stored = auth(uid, Role::User, UserStatus::Active, &["read"]);
            stored.project_ids = Some(vec![Uuid::from_u128(7)]);
            arrange(&mut f, stored, 1);
            f.tokens.expect_verify_access().never();
            let cache = Arc::clone(&f.cache);
            let ports = f.into_ports();
            let raw = PresentedToken::format(uid, tid, "secret");
            let p = authenticate(&ports, &raw).await.unwrap();
            assert_eq!((p.user_id, p.token_id()), (uid, Some(tid)));
            assert!(p.reaches(Uuid::from_u128(7)));
            assert!(!p.reaches(Uuid::from_u128(8)));
            // Again in the same minute (the row still says never used): not written again.
            authenticate(&ports, &raw).await.unwrap();
            assert_eq!(
                cache.reads(),
                vec![format!("user:{uid}#t:{tid}"); 2],
                "read through the cache, under the user like a session"
            );
        }

        #[tokio::test]
        async fn a_wrong_secret_or_another_users_id_part_is_unauthorized() {
            let (uid, tid) = (Uuid::now_v7(), Uuid::now_v7());
            let mut f = Fixture::new();
            arrange(&mut f, auth(uid, Role::User, UserStatus::Active, &["read"]), 0);
            let ports = f.into_ports();
            assert!(matches!(
                authenticate(&ports, &PresentedToken::format(uid, tid, "guess")).await,
                Err(AppError::Unauthorized)
            ));
            assert!(matches!(
                authenticate(&ports, &PresentedToken::format(Uuid::now_v7(), tid, "secret")).await,
                Err(AppError::Unauthorized)
            ));
            assert!(matches!(
                authenticate(&ports, "keel_pat_malformed").await,
                Err(AppError::Unauthorized)
            ));
        }

        #[tokio::test]
        async fn an_expired_token_or_a_disabled_user_is_refused() {
            let uid = Uuid::now_v7();
            let mut f = Fixture::new();
            let mut stored = auth(uid, Role::User, UserStatus::Active, &["read"]);
            stored.expires_at = now();
            arrange(&mut f, stored, 0);
            let raw = PresentedToken::format(uid, Uuid::now_v7(), "secret");
            assert!(matches!(
                authenticate(&f.into_ports(), &raw).await,
                Err(AppError::TokenExpired)
            ));

            let mut f = Fixture::new();
            arrange(&mut f, auth(uid, Role::User, UserStatus::Disabled, &["read"]), 0);
            assert!(matches!(
                authenticate(&f.into_ports(), &raw).await,
                Err(AppError::AccountDisabled)
            ));
        }

        #[tokio::test]
        async fn an_admins_token_acts_as_an_admin_only_with_the_admin_scope() {
            let uid = Uuid::now_v7();
            for (scopes, role) in [
                (&["read", "write"][..], Role::User),
                (&["admin"][..], Role::Admin),
            ] {
                let mut f = Fixture::new();
                arrange(&mut f, auth(uid, Role::Admin, UserStatus::Active, scopes), 1);
                let raw = PresentedToken::format(uid, Uuid::now_v7(), "secret");
                assert_eq!(
                    authenticate(&f.into_ports(), &raw).await.unwrap().role,
                    role,
                    "{scopes:?}"
                );
            }
        }

        #[tokio::test]
        async fn a_use_already_stored_for_this_minute_is_not_written() {
            let uid = Uuid::now_v7();
            let mut f = Fixture::new();
            let mut stored = auth(uid, Role::User, UserStatus::Active, &["read"]);
            stored.last_used_at = Some(now());
            arrange(&mut f, stored, 0);
            let raw = PresentedToken::format(uid, Uuid::now_v7(), "secret");
            authenticate(&f.into_ports(), &raw).await.unwrap();
        }

        #[tokio::test]
        async fn a_deleted_token_is_refused_on_the_stream_recheck() {
            let (uid, tid) = (Uuid::now_v7(), Uuid::now_v7());
            let mut f = Fixture::new();
            f.personal_tokens.expect_find_auth().returning(|_| Ok(None));
            let p = Principal {
                user_id: uid,
                session_id: tid,
                role: Role::User,
                expires_at: now() + chrono::Duration::days(1),
                grant: Some(std::sync::Arc::new(keel_domain::identity::tokens::Grant {
                    token_id: tid,
                    scopes: Scopes::parse(&["read"]).unwrap(),
                    project_ids: None,
                })),
            };
            assert!(matches!(
                authenticate_again(&f.into_ports(), &p).await,
                Err(AppError::Unauthorized)
            ));
        }
    }
}
