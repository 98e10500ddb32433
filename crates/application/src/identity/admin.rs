//! Admin use cases (403 for non-admins): the user list, a user, role and status changes,
//! the audit log, and `keel admin create`.

use keel_domain::audit::AuditFilter;
use keel_domain::identity::account_tokens::TokenPurpose;
use keel_domain::identity::ports::{MetricsSort, MetricsSortKey, UserFilter};
use keel_domain::identity::{Principal, Role, UserStatus};
use keel_domain::text::{self, SearchTerm, TextRule};
use uuid::Uuid;

use super::views::{AuditEntryView, UserMetricsView, UserView};
use super::{IdentityPorts, collect};
use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;
use crate::pagination::{Page, PageRequest};

fn require_admin(principal: &Principal) -> Result<(), AppError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// Raw filters of `GET /admin/users`.
#[derive(Debug, Clone, Default)]
pub struct UserListQuery {
    pub q: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
}

pub async fn list_users(
    ports: &IdentityPorts,
    principal: &Principal,
    query: UserListQuery,
    page: PageRequest,
) -> Result<Page<UserView>, AppError> {
    require_admin(principal)?;
    let role = query.role.as_deref().map(|r| Role::parse(r, "role")).transpose();
    let status = query
        .status
        .as_deref()
        .map(|s| UserStatus::parse(s, "status"))
        .transpose();
    // The length rule applies to the value as sent, as the OpenAPI document states it.
    let q = query
        .q
        .map(|q| SearchTerm::parse(&q, "q", 100))
        .transpose()
        .map(|term| term.flatten().map(SearchTerm::into_inner));
    let (role, status, q) = collect(role, status, q)?;
    let filter = UserFilter { q, role, status };
    let (users, total) = ports
        .users
        .list(&filter, page.offset(), u64::from(page.limit()))
        .await?;
    Ok(Page::new(users.iter().map(UserView::from).collect(), page, total))
}

pub async fn get_user(ports: &IdentityPorts, principal: &Principal, id: Uuid) -> Result<UserView, AppError> {
    require_admin(principal)?;
    let user = ports
        .users
        .find_by_id(id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    Ok(UserView::from(&user))
}

#[derive(Debug, Clone, Default)]
pub struct UpdateUserInput {
    pub role: Option<String>,
    pub status: Option<String>,
}

/// Changes a user's role and/or status. Disabling revokes every session; taking away the
/// last active admin (by demotion or by disabling) is a 409.
pub async fn update_user(
    ports: &IdentityPorts,
    principal: &Principal,
    id: Uuid,
    input: UpdateUserInput,
    meta: &RequestMeta,
) -> Result<UserView, AppError> {
    require_admin(principal)?;
    let role = input.role.as_deref().map(|r| Role::parse(r, "role")).transpose();
    let status = input
        .status
        .as_deref()
        .map(|s| UserStatus::parse(s, "status"))
        .transpose();
    let (role, status, ()) = collect(role, status, Ok(()))?;
    let mut user = ports
        .users
        .find_by_id(id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let new_role = role.unwrap_or(user.role);
    let new_status = status.unwrap_or(user.status);
    let now = ports.clock.now();
    let disabling = user.status == UserStatus::Active && new_status == UserStatus::Disabled;
    user.role = new_role;
    user.status = new_status;
    user.updated_at = now;
    if !ports.users.update_keeping_an_admin(&user).await? {
        return Err(AppError::Conflict(
            "the last active admin cannot be demoted or disabled".into(),
        ));
    }
    // A demotion or a disabling applies to the next request, on every instance.
    ports.cache.invalidate(&[CacheKey::user(user.id)]).await;
    if disabling {
        ports.revoke_sessions_of(user.id, None, now).await?;
    }
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "user.updated",
            ("user", Some(user.id.to_string())),
            Some(serde_json::json!({ "role": new_role.as_str(), "status": new_status.as_str() })),
        )
        .await?;
    Ok(UserView::from(&user))
}

/// `POST /admin/users`, as sent.
#[derive(Debug, Clone, Default)]
pub struct CreateUserInput {
    pub email: String,
    pub name: String,
    pub role: String,
}

/// `POST /admin/users`: an active account with `role`, whose owner gets a mail with a link
/// to set the first password (a one-time token valid 7 days, redeemed by the password
/// reset route). Until then the account has a random password nobody knows. The way in
/// when registration is closed.
pub async fn create_user(
    ports: &IdentityPorts,
    principal: &Principal,
    input: CreateUserInput,
    meta: &RequestMeta,
) -> Result<UserView, AppError> {
    require_admin(principal)?;
    let role = Role::parse(&input.role, "role").map_err(|e| AppError::Validation(vec![e]))?;
    // A password nobody knows (it meets the policy: lower, upper, digit), replaced through
    // the mailed link.
    let unknown = format!("Aa1{}", ports.token_secrets.generate());
    let user = ports
        .create_account(
            &input.email,
            &unknown,
            &input.name,
            role,
            Some(TokenPurpose::PasswordSetup),
        )
        .await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "user.created",
            ("user", Some(user.id.to_string())),
            Some(serde_json::json!({ "role": role.as_str() })),
        )
        .await?;
    Ok(UserView::from(&user))
}

/// `GET /admin/users/metrics`: every user's activity figures, from one aggregate query.
/// Default order: by name.
pub async fn users_metrics(
    ports: &IdentityPorts,
    principal: &Principal,
    sort: Option<&str>,
    page: PageRequest,
) -> Result<Page<UserMetricsView>, AppError> {
    require_admin(principal)?;
    // An empty `sort=` is a value, and not one of the allowed ones (as the document says).
    let sort = match sort {
        Some(raw) => MetricsSort::parse(raw).map_err(|e| AppError::Validation(vec![e]))?,
        None => MetricsSort {
            key: MetricsSortKey::Name,
            descending: false,
        },
    };
    let (rows, total) = ports
        .user_metrics
        .page(sort, page.offset(), u64::from(page.limit()))
        .await?;
    Ok(Page::new(
        rows.into_iter().map(UserMetricsView::from).collect(),
        page,
        total,
    ))
}

/// Raw filters of `GET /admin/audit-log`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor_id: Option<String>,
    pub action: Option<String>,
}

pub async fn audit_log(
    ports: &IdentityPorts,
    principal: &Principal,
    query: AuditQuery,
    page: PageRequest,
) -> Result<Page<AuditEntryView>, AppError> {
    require_admin(principal)?;
    let actor_id = query.actor_id.as_deref().map(parse_hyphenated_uuid).transpose();
    // An exact action name, so not trimmed; checked by the text policy like a search term.
    let action = match query.action.filter(|a| !a.is_empty()) {
        Some(a) if a.chars().count() > 100 => Err(keel_domain::FieldError::new(
            "action",
            "must be at most 100 characters",
        )),
        Some(a) => text::check(&a, "action", TextRule::Line).map(|()| Some(a)),
        None => Ok(None),
    };
    let (actor_id, action, ()) = collect(actor_id, action, Ok(()))?;
    let filter = AuditFilter {
        actor_id,
        action,
        project_id: None,
    };
    let (entries, total) = ports
        .audit
        .list(&filter, page.offset(), u64::from(page.limit()))
        .await?;
    Ok(Page::new(
        entries.into_iter().map(AuditEntryView::from).collect(),
        page,
        total,
    ))
}

/// A UUID in its canonical hyphenated form only (the `uuid` format of the document), not
/// the braced, URN or bare-hex forms `Uuid::parse_str` also takes.
fn parse_hyphenated_uuid(raw: &str) -> Result<Uuid, keel_domain::FieldError> {
    let invalid = || {
        keel_domain::FieldError::new(
            "actorId",
            "must be a UUID like 0190c8a2-7d4b-7c1e-9f3a-2b5d6e7f8a9b",
        )
    };
    if raw.len() != 36 {
        return Err(invalid());
    }
    Uuid::parse_str(raw).map_err(|_| invalid())
}

/// `keel admin create`: a new account with the admin role.
pub async fn create_admin(
    ports: &IdentityPorts,
    email: &str,
    name: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<UserView, AppError> {
    let user = ports
        .create_account(email, password, name, Role::Admin, None)
        .await?;
    ports
        .audit(
            meta,
            None,
            "user.admin_created",
            ("user", Some(user.id.to_string())),
            None,
        )
        .await?;
    Ok(UserView::from(&user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::{Fixture, meta, principal, user};

    fn new_user(role: &str) -> CreateUserInput {
        CreateUserInput {
            email: "Bea@Example.com".into(),
            name: "Bea".into(),
            role: role.into(),
        }
    }

    #[tokio::test]
    async fn an_admin_creates_an_account_whose_owner_is_mailed_a_first_password_link() {
        let mut f = Fixture::new();
        f.token_secrets
            .expect_generate()
            .times(2)
            .returning(|| "random-secret".into());
        f.token_secrets
            .expect_hash()
            .times(1)
            .returning(|s| format!("hash({s})"));
        f.hasher
            .expect_hash()
            .withf(|p| p.expose() == "Aa1random-secret")
            .times(1)
            .returning(|_| Ok(Fixture::hash()));
        f.users
            .expect_create_with_token()
            .withf(|u, token, mail| {
                u.role == Role::Admin
                    && u.email.as_str() == "bea@example.com"
                    && !u.email_verified
                    && token.user_id == u.id
                    && token.purpose == TokenPurpose::PasswordSetup
                    && token.expires_at == u.created_at + chrono::Duration::days(7)
                    && mail.template == keel_domain::mail::MailTemplate::AccountCreated
                    && mail.to == "bea@example.com"
                    && mail.values["validFor"] == "7 days"
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        f.expect_audit("user.created");
        let view = create_user(&f.into_ports(), &admin(), new_user("admin"), &meta())
            .await
            .unwrap();
        assert_eq!((view.role, view.email.as_str()), ("admin", "bea@example.com"));
    }

    #[tokio::test]
    async fn only_an_admin_creates_accounts_and_every_field_is_checked() {
        let f = Fixture::new();
        let err = create_user(
            &f.into_ports(),
            &principal(Uuid::now_v7(), Role::User),
            new_user("user"),
            &meta(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, AppError::Forbidden), "{err:?}");
        let f = Fixture::new();
        let err = create_user(&f.into_ports(), &admin(), new_user("root"), &meta())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppError::Validation(ref d) if d[0].field == "role"),
            "{err:?}"
        );
    }

    fn admin() -> Principal {
        principal(Uuid::now_v7(), Role::Admin)
    }

    #[tokio::test]
    async fn non_admins_are_forbidden_everywhere() {
        let p = principal(Uuid::now_v7(), Role::User);
        let page = PageRequest::parse(None, None).unwrap();
        let ports = Fixture::new().into_ports();
        assert!(matches!(
            list_users(&ports, &p, UserListQuery::default(), page).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            get_user(&ports, &p, Uuid::now_v7()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            update_user(&ports, &p, Uuid::now_v7(), UpdateUserInput::default(), &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            audit_log(&ports, &p, AuditQuery::default(), page).await,
            Err(AppError::Forbidden)
        ));
    }

    #[tokio::test]
    async fn list_users_passes_filters_and_paging_to_the_store() {
        let page = PageRequest::parse(Some("3"), Some("5")).unwrap();
        let mut f = Fixture::new();
        f.users
            .expect_list()
            .withf(|filter, offset, limit| {
                filter.q.as_deref() == Some("ann")
                    && filter.role == Some(Role::Admin)
                    && filter.status == Some(UserStatus::Active)
                    && *offset == 10
                    && *limit == 5
            })
            .times(1)
            .returning(|_, _, _| Ok((vec![user(Role::Admin, UserStatus::Active)], 11)));
        let query = UserListQuery {
            q: Some("  ann ".into()),
            role: Some("admin".into()),
            status: Some("active".into()),
        };
        let result = list_users(&f.into_ports(), &admin(), query, page).await.unwrap();
        assert_eq!(
            (
                result.data.len(),
                result.pagination.total,
                result.pagination.total_pages
            ),
            (1, 11, 3)
        );
    }

    #[tokio::test]
    async fn get_user_is_not_found_for_an_unknown_id() {
        let mut f = Fixture::new();
        f.users.expect_find_by_id().returning(|_| Ok(None));
        let err = get_user(&f.into_ports(), &admin(), Uuid::now_v7())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::NotFound("user")));
    }

    #[tokio::test]
    async fn audit_log_filters_by_actor_and_action() {
        let actor = Uuid::now_v7();
        let page = PageRequest::parse(None, Some("50")).unwrap();
        let mut f = Fixture::new();
        f.audit
            .expect_list()
            .withf(move |filter, offset, limit| {
                filter.actor_id == Some(actor)
                    && filter.action.as_deref() == Some("auth.login")
                    && *offset == 0
                    && *limit == 50
            })
            .times(1)
            .returning(|_, _, _| Ok((vec![], 0)));
        let query = AuditQuery {
            actor_id: Some(actor.to_string()),
            action: Some("auth.login".into()),
        };
        let result = audit_log(&f.into_ports(), &admin(), query, page).await.unwrap();
        assert_eq!(result.pagination.total, 0);
    }

    #[tokio::test]
    async fn the_last_active_admin_cannot_be_demoted_or_disabled() {
        for input in [
            UpdateUserInput {
                role: Some("user".into()),
                status: None,
            },
            UpdateUserInput {
                role: None,
                status: Some("disabled".into()),
            },
        ] {
            let target = user(Role::Admin, UserStatus::Active);
            let mut f = Fixture::new();
            f.users
                .expect_find_by_id()
                .returning(move |_| Ok(Some(target.clone())));
            f.users
                .expect_update_keeping_an_admin()
                .times(1)
                .returning(|_| Ok(false));
            let err = update_user(&f.into_ports(), &admin(), Uuid::now_v7(), input, &meta())
                .await
                .unwrap_err();
            assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn disabling_a_user_revokes_every_session() {
        let target = user(Role::User, UserStatus::Active);
        let tid = target.id;
        let mut f = Fixture::new();
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(target.clone())));
        f.users
            .expect_update_keeping_an_admin()
            .withf(|u| u.status == UserStatus::Disabled)
            .times(1)
            .returning(|_| Ok(true));
        f.sessions
            .expect_revoke_all()
            .withf(move |uid, except, _| *uid == tid && except.is_none())
            .times(1)
            .returning(|_, _, _| Ok(vec![Uuid::from_u128(1), Uuid::from_u128(2)]));
        f.expect_audit("user.updated");
        let cache = f.cache.clone();
        let view = update_user(
            &f.into_ports(),
            &admin(),
            tid,
            UpdateUserInput {
                role: None,
                status: Some("disabled".into()),
            },
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.status, "disabled");
        assert_eq!(
            cache.invalidated(),
            // The status change, then the revocation: each drops the user's cached state
            // once its write is committed.
            [format!("user:{tid}"), format!("user:{tid}")],
            "the user's cached state and each revoked session are dropped"
        );
    }

    #[tokio::test]
    async fn bad_filters_are_named() {
        let page = PageRequest::parse(None, None).unwrap();
        let query = UserListQuery {
            q: None,
            role: Some("owner".into()),
            status: Some("gone".into()),
        };
        let err = list_users(&Fixture::new().into_ports(), &admin(), query, page)
            .await
            .unwrap_err();
        let AppError::Validation(d) = err else { panic!() };
        assert_eq!(
            d.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["role", "status"]
        );
    }

    #[tokio::test]
    async fn metrics_default_to_name_order_and_refuse_unknown_sorts() {
        let page = PageRequest::parse(Some("2"), Some("10")).unwrap();
        let mut f = Fixture::new();
        f.user_metrics
            .expect_page()
            .withf(|sort, offset, limit| {
                *sort
                    == MetricsSort {
                        key: MetricsSortKey::Name,
                        descending: false,
                    }
                    && *offset == 10
                    && *limit == 10
            })
            .times(1)
            .returning(|_, _, _| Ok((vec![], 12)));
        let result = users_metrics(&f.into_ports(), &admin(), None, page)
            .await
            .unwrap();
        assert_eq!(result.pagination.total, 12);

        let mut f = Fixture::new();
        f.user_metrics
            .expect_page()
            .withf(|sort, _, _| {
                *sort
                    == MetricsSort {
                        key: MetricsSortKey::TasksCreated,
                        descending: true,
                    }
            })
            .returning(|_, _, _| Ok((vec![], 0)));
        users_metrics(&f.into_ports(), &admin(), Some("-tasksCreated"), page)
            .await
            .unwrap();

        let err = users_metrics(&Fixture::new().into_ports(), &admin(), Some("password"), page)
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Validation(ref d) if d[0].field == "sort"));
        let user = principal(Uuid::now_v7(), Role::User);
        assert!(matches!(
            users_metrics(&Fixture::new().into_ports(), &user, None, page).await,
            Err(AppError::Forbidden)
        ));
    }

    #[test]
    fn actor_ids_must_be_hyphenated_uuids() {
        let id = Uuid::now_v7();
        assert_eq!(parse_hyphenated_uuid(&id.to_string()).unwrap(), id);
        for other_form in [
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            "x".into(),
        ] {
            assert!(parse_hyphenated_uuid(&other_form).is_err(), "{other_form}");
        }
    }

    #[tokio::test]
    async fn create_admin_makes_an_admin() {
        let mut f = Fixture::new();
        f.hasher.expect_hash().returning(|_| Ok(Fixture::hash()));
        f.users
            .expect_create()
            .withf(|u| u.role == Role::Admin)
            .times(1)
            .returning(|_| Ok(()));
        f.expect_audit("user.admin_created");
        let view = create_admin(
            &f.into_ports(),
            "root@example.com",
            "Root",
            "Adm1nistrator",
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.role, "admin");
    }
}
