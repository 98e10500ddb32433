use std::sync::Arc;

use keel_domain::identity::tokens::PresentedToken;
use keel_domain::identity::{Role, UserStatus};

use super::*;
use crate::identity::fixtures::{Fixture, meta, now, principal, token_principal, user};

fn input(scopes: &[&str]) -> CreateTokenInput {
    CreateTokenInput {
        name: " ci ".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        project_ids: None,
        expires_at: None,
    }
}

fn expect_secret(f: &mut Fixture) {
    f.token_secrets.expect_generate().returning(|| "s".repeat(43));
    f.token_secrets.expect_hash().returning(|s| format!("hash({s})"));
}

#[tokio::test]
async fn creating_a_token_stores_only_the_hash_and_shows_the_token_once() {
    let uid = Uuid::now_v7();
    let mut f = Fixture::new();
    expect_secret(&mut f);
    f.personal_tokens
        .expect_create()
        .withf(|t| {
            t.secret_hash == format!("hash({})", "s".repeat(43))
                && t.name.as_str() == "ci"
                && t.expires_at == now() + Duration::days(90)
                && t.project_ids.is_none()
        })
        .times(1)
        .returning(|_| Ok(()));
    f.audit
        .expect_record()
        .withf(|e| {
            e.action == "auth.token.created"
                && !e
                    .details
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
                    .contains("sss")
        })
        .times(1)
        .returning(|_| Ok(()));
    let created = create_token(
        &f.into_ports(),
        &principal(uid, Role::User),
        input(&["read"]),
        &meta(),
    )
    .await
    .unwrap();
    let parsed = PresentedToken::parse(&created.token).unwrap();
    assert_eq!((parsed.user_id, parsed.token_id), (uid, created.token_view.id));
    assert_eq!(parsed.secret, "s".repeat(43));
    assert_eq!(created.token_view.scopes, ["read"]);
    assert!(!format!("{created:?}").contains("sss"), "Debug hides the token");
}

#[tokio::test]
async fn only_an_admin_may_create_an_admin_token() {
    let mut f = Fixture::new();
    f.personal_tokens.expect_create().never();
    let err = create_token(
        &f.into_ports(),
        &principal(Uuid::now_v7(), Role::User),
        input(&["read", "admin"]),
        &meta(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AppError::Validation(d) if d[0].field == "scopes"),
        "{err:?}"
    );

    let mut f = Fixture::new();
    expect_secret(&mut f);
    f.personal_tokens.expect_create().times(1).returning(|_| Ok(()));
    f.expect_audit("auth.token.created");
    let created = create_token(
        &f.into_ports(),
        &principal(Uuid::now_v7(), Role::Admin),
        input(&["admin"]),
        &meta(),
    )
    .await
    .unwrap();
    assert_eq!(created.token_view.scopes, ["admin"]);
}

#[tokio::test]
async fn bad_input_is_refused_with_every_field_and_nothing_is_stored() {
    let mut f = Fixture::new();
    f.personal_tokens.expect_create().never();
    let ports = f.into_ports();
    let p = principal(Uuid::now_v7(), Role::User);
    let err = create_token(
        &ports,
        &p,
        CreateTokenInput {
            name: " ".into(),
            scopes: vec!["root".into()],
            project_ids: None,
            expires_at: Some(now() + Duration::days(367)),
        },
        &meta(),
    )
    .await
    .unwrap_err();
    let AppError::Validation(details) = err else {
        panic!("{err:?}")
    };
    let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["name", "scopes", "expiresAt"]);

    for (expires_at, project_ids) in [
        (Some(now()), None),
        (Some(now() - Duration::days(1)), None),
        (None, Some(vec![])),
        (None, Some(vec![Uuid::now_v7(); MAX_TOKEN_PROJECTS + 1])),
    ] {
        let err = create_token(
            &ports,
            &p,
            CreateTokenInput {
                expires_at,
                project_ids,
                ..input(&["read"])
            },
            &meta(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, AppError::Validation(_)), "{err:?}");
    }
}

#[tokio::test]
async fn an_expiry_366_days_ahead_and_a_project_limit_are_kept() {
    let mut f = Fixture::new();
    expect_secret(&mut f);
    let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
    f.personal_tokens
        .expect_create()
        .withf(move |t| t.expires_at == now() + Duration::days(366) && t.project_ids == Some(vec![b, a]))
        .times(1)
        .returning(|_| Ok(()));
    f.expect_audit("auth.token.created");
    create_token(
        &f.into_ports(),
        &principal(Uuid::now_v7(), Role::User),
        CreateTokenInput {
            expires_at: Some(now() + Duration::days(366)),
            project_ids: Some(vec![a, b, a]),
            ..input(&["read"])
        },
        &meta(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_token_cannot_manage_tokens() {
    let mut f = Fixture::new();
    f.personal_tokens.expect_create().never();
    f.personal_tokens.expect_list().never();
    f.personal_tokens.expect_delete().never();
    let ports = f.into_ports();
    let p = token_principal(Uuid::now_v7());
    assert!(matches!(
        create_token(&ports, &p, input(&["read"]), &meta()).await,
        Err(AppError::InsufficientScope)
    ));
    assert!(matches!(
        list_tokens(&ports, &p).await,
        Err(AppError::InsufficientScope)
    ));
    assert!(matches!(
        delete_token(&ports, &p, Uuid::now_v7(), &meta()).await,
        Err(AppError::InsufficientScope)
    ));
}

#[tokio::test]
async fn deleting_a_token_drops_its_users_cached_authentication() {
    let uid = Uuid::now_v7();
    let mut f = Fixture::new();
    f.personal_tokens
        .expect_delete()
        .withf(move |u, _| *u == uid)
        .times(1)
        .returning(|_, _| Ok(true));
    f.expect_audit("auth.token.deleted");
    let cache = Arc::clone(&f.cache);
    delete_token(
        &f.into_ports(),
        &principal(uid, Role::User),
        Uuid::now_v7(),
        &meta(),
    )
    .await
    .unwrap();
    assert_eq!(cache.invalidated(), vec![format!("user:{uid}")]);
}

#[tokio::test]
async fn someone_elses_or_an_unknown_token_is_a_404_and_nothing_is_invalidated() {
    let mut f = Fixture::new();
    f.personal_tokens.expect_delete().returning(|_, _| Ok(false));
    f.audit.expect_record().never();
    let cache = Arc::clone(&f.cache);
    let err = delete_token(
        &f.into_ports(),
        &principal(Uuid::now_v7(), Role::User),
        Uuid::now_v7(),
        &meta(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::NotFound("token")));
    assert!(cache.invalidated().is_empty());
}

#[tokio::test]
async fn admins_list_and_delete_a_users_tokens_and_others_may_not() {
    let target = user(Role::User, UserStatus::Active);
    let tid = target.id;
    let mut f = Fixture::new();
    f.users
        .expect_find_by_id()
        .returning(move |_| Ok(Some(target.clone())));
    f.personal_tokens.expect_list().times(1).returning(|_| Ok(vec![]));
    f.personal_tokens
        .expect_delete()
        .times(1)
        .returning(|_, _| Ok(true));
    f.expect_audit("admin.token.deleted");
    let cache = Arc::clone(&f.cache);
    let ports = f.into_ports();
    let admin = principal(Uuid::now_v7(), Role::Admin);
    assert!(list_user_tokens(&ports, &admin, tid).await.unwrap().is_empty());
    delete_user_token(&ports, &admin, tid, Uuid::now_v7(), &meta())
        .await
        .unwrap();
    assert_eq!(cache.invalidated(), vec![format!("user:{tid}")]);

    let someone = principal(Uuid::now_v7(), Role::User);
    assert!(matches!(
        list_user_tokens(&ports, &someone, tid).await,
        Err(AppError::Forbidden)
    ));
    assert!(matches!(
        delete_user_token(&ports, &someone, tid, Uuid::now_v7(), &meta()).await,
        Err(AppError::Forbidden)
    ));
}

#[tokio::test]
async fn an_unknown_user_has_no_token_list() {
    let mut f = Fixture::new();
    f.users.expect_find_by_id().returning(|_| Ok(None));
    let err = list_user_tokens(
        &f.into_ports(),
        &principal(Uuid::now_v7(), Role::Admin),
        Uuid::now_v7(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::NotFound("user")));
}

#[test]
fn a_use_is_written_once_a_minute_whatever_the_traffic() {
    let uses = TokenUses::default();
    let (t, minute) = (Uuid::now_v7(), TokenUses::minute(now() + Duration::seconds(42)));
    assert_eq!(minute, now());
    assert!(uses.needs_write(t, None, minute));
    assert!(!uses.needs_write(t, None, minute), "recorded by this instance");
    assert!(
        !uses.needs_write(Uuid::now_v7(), Some(minute), minute),
        "stored already"
    );
    assert!(uses.needs_write(t, Some(minute), minute + Duration::minutes(1)));
}

#[tokio::test]
async fn a_token_cannot_sign_out_change_the_password_or_manage_sessions() {
    use crate::identity::auth::logout::{logout, logout_all};
    use crate::identity::auth::password::{ChangePasswordInput, change_password};
    use crate::identity::auth::sessions::{list_sessions, revoke_session};

    // No expectation is set: any store, hasher, limiter or audit call fails the test.
    let ports = Fixture::new().into_ports();
    let p = token_principal(Uuid::now_v7());
    let refused = |r: Result<(), AppError>| matches!(r, Err(AppError::InsufficientScope));
    assert!(refused(logout(&ports, &p, &meta()).await));
    assert!(refused(logout_all(&ports, &p, &meta()).await));
    assert!(refused(
        change_password(
            &ports,
            &p,
            ChangePasswordInput {
                current_password: "Correct-h0rse".into(),
                new_password: "Another-h0rse".into(),
            },
            &meta(),
        )
        .await
    ));
    assert!(matches!(
        list_sessions(&ports, &p).await,
        Err(AppError::InsufficientScope)
    ));
    assert!(refused(revoke_session(&ports, &p, Uuid::now_v7(), &meta()).await));
}
