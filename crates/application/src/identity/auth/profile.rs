//! `GET /auth/profile` and `PATCH /auth/profile` `{name}`.

use chrono::{DateTime, Utc};
use keel_domain::identity::{Principal, Role, User, UserName, UserStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::context::RequestMeta;
use crate::identity::IdentityPorts;
use crate::identity::views::UserView;

/// What the profile cache keeps of a user: the view's fields, never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Profile {
    id: Uuid,
    email: String,
    name: String,
    role: Role,
    status: UserStatus,
    /// Absent from entries cached by a release before it: read as not verified.
    #[serde(default)]
    email_verified: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<User> for Profile {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            role: u.role,
            status: u.status,
            email_verified: u.email_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<&Profile> for UserView {
    fn from(p: &Profile) -> Self {
        Self {
            id: p.id,
            email: p.email.clone(),
            name: p.name.clone(),
            role: p.role.as_str(),
            status: p.status.as_str(),
            email_verified: p.email_verified,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The caller's profile, through the cache (`user:<id>`, dropped by every change of the
/// user: profile, password, role, status).
pub async fn profile(ports: &IdentityPorts, principal: &Principal) -> Result<UserView, AppError> {
    let user_id = principal.user_id;
    let profile = cached(ports.cache.as_ref(), &CacheKey::profile(user_id), async {
        Ok(ports.users.find_by_id(user_id).await?.map(Profile::from))
    })
    .await?
    .ok_or(AppError::Unauthorized)?;
    Ok(UserView::from(profile.as_ref()))
}

pub async fn update_profile(
    ports: &IdentityPorts,
    principal: &Principal,
    name: &str,
    meta: &RequestMeta,
) -> Result<UserView, AppError> {
    let name = UserName::parse(name).map_err(|e| AppError::Validation(vec![e]))?;
    let mut user = ports
        .users
        .find_by_id(principal.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    user.name = name;
    user.updated_at = ports.clock.now();
    ports.update_user(&user).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "user.profile_updated",
            ("user", Some(user.id.to_string())),
            Some(serde_json::json!({ "fields": ["name"] })),
        )
        .await?;
    Ok(UserView::from(&user))
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::{Role, UserStatus};

    use super::*;
    use crate::identity::fixtures::{Fixture, meta, now, principal, user};

    #[tokio::test]
    async fn renames_the_caller() {
        let u = user(Role::User, UserStatus::Active);
        let p = principal(u.id, Role::User);
        let mut f = Fixture::new();
        f.users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(u.clone())));
        f.users
            .expect_update()
            .withf(|u| u.name.as_str() == "Annie" && u.updated_at == now())
            .times(1)
            .returning(|_| Ok(()));
        f.expect_audit("user.profile_updated");
        let view = update_profile(&f.into_ports(), &p, "  Annie ", &meta())
            .await
            .unwrap();
        assert_eq!(view.name, "Annie");
    }

    #[tokio::test]
    async fn profile_reads_the_callers_account() {
        let u = user(Role::User, UserStatus::Active);
        let p = principal(u.id, Role::User);
        let mut f = Fixture::new();
        let uid = u.id;
        f.users
            .expect_find_by_id()
            .withf(move |id| *id == uid)
            .returning(move |_| Ok(Some(u.clone())));
        let view = profile(&f.into_ports(), &p).await.unwrap();
        assert_eq!((view.id, view.email.as_str()), (uid, "ann@example.com"));
    }

    #[tokio::test]
    async fn an_invalid_name_changes_nothing() {
        let f = Fixture::new();
        let p = principal(uuid::Uuid::now_v7(), Role::User);
        let err = update_profile(&f.into_ports(), &p, "A", &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Validation(ref d) if d[0].field == "name"));
    }
}
