//! Personal access tokens (docs/api/identity.md, "Personal access tokens"): create, list
//! and delete one's own; an admin lists and deletes anyone's.
//!
//! A token is shown once, at creation; the store keeps only the SHA-256 of its secret.
//! Deleting one drops its user's cached authentication on every instance (the same
//! invalidation as a session's revocation): the token is refused at once everywhere.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, DurationRound, Utc};
use keel_domain::identity::tokens::{
    MAX_TOKEN_PROJECTS, PersonalToken, PresentedToken, Scope, Scopes, TokenName,
};
use keel_domain::identity::{Principal, Role};
use serde::Serialize;
use uuid::Uuid;

use super::IdentityPorts;
use crate::AppError;
use crate::cache::CacheKey;
use crate::context::RequestMeta;

/// How long a token lives when its creator does not say.
pub const DEFAULT_LIFETIME_DAYS: i64 = 90;
/// The furthest ahead a token may expire.
pub const MAX_LIFETIME_DAYS: i64 = 366;

/// `POST /auth/tokens`, as sent.
#[derive(Debug, Clone, Default)]
pub struct CreateTokenInput {
    pub name: String,
    pub scopes: Vec<String>,
    pub project_ids: Option<Vec<Uuid>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as its owner sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonalTokenView {
    pub id: Uuid,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = json!(["read"])))]
    pub scopes: Vec<&'static str>,
    /// The projects the token is limited to; `null`: every project of its user.
    pub project_ids: Option<Vec<Uuid>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The last use, to the minute; `null` before the first.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&PersonalToken> for PersonalTokenView {
    fn from(t: &PersonalToken) -> Self {
        Self {
            id: t.id,
            name: t.name.as_str().to_owned(),
            scopes: t.scopes.iter().map(Scope::as_str).collect(),
            project_ids: t.project_ids.clone(),
            expires_at: t.expires_at,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A token just created: the view and, this once, the token itself.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedTokenView {
    #[serde(flatten)]
    pub token_view: PersonalTokenView,
    /// `keel_pat_…`: shown this once, never again. Send it as `Authorization: Bearer …`.
    #[cfg_attr(feature = "openapi", schema(example = "keel_pat_…"))]
    pub token: String,
}

impl std::fmt::Debug for CreatedTokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedTokenView")
            .field("token_view", &self.token_view)
            .finish_non_exhaustive()
    }
}

/// Personal access tokens act for their user but never manage credentials: the token,
/// session, password and account routes need a signed-in session.
pub fn require_session(principal: &Principal) -> Result<(), AppError> {
    if principal.grant.is_some() {
        Err(AppError::InsufficientScope)
    } else {
        Ok(())
    }
}

fn require_admin(principal: &Principal) -> Result<(), AppError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// Creates a token for the caller. Only an admin may give it the `admin` scope; it expires
/// at `expiresAt` (in the future, at most 366 days ahead), 90 days from now by default.
pub async fn create_token(
    ports: &IdentityPorts,
    principal: &Principal,
    input: CreateTokenInput,
    meta: &RequestMeta,
) -> Result<CreatedTokenView, AppError> {
    require_session(principal)?;
    let now = ports.clock.now();
    let name = TokenName::parse(&input.name);
    let scopes = Scopes::parse(&input.scopes).and_then(|s| {
        if s.contains(Scope::Admin) && principal.role != Role::Admin {
            Err(keel_domain::FieldError::new(
                "scopes",
                "only an instance admin may create a token with the admin scope",
            ))
        } else {
            Ok(s)
        }
    });
    let expires_at = match input.expires_at {
        None => Ok(now + Duration::days(DEFAULT_LIFETIME_DAYS)),
        Some(at) if at <= now => Err(keel_domain::FieldError::new("expiresAt", "must be in the future")),
        Some(at) if at > now + Duration::days(MAX_LIFETIME_DAYS) => Err(keel_domain::FieldError::new(
            "expiresAt",
            format!("must be at most {MAX_LIFETIME_DAYS} days ahead"),
        )),
        Some(at) => Ok(at),
    };
    let (name, scopes, expires_at) = super::collect(name, scopes, expires_at)?;
    let project_ids = match input.project_ids {
        None => None,
        Some(ids) if ids.is_empty() => {
            return Err(AppError::invalid(
                "projectIds",
                "must name at least one project (omit it for every project)",
            ));
        }
        Some(ids) if ids.len() > MAX_TOKEN_PROJECTS => {
            return Err(AppError::invalid(
                "projectIds",
                format!("must name at most {MAX_TOKEN_PROJECTS} projects"),
            ));
        }
        Some(mut ids) => {
            ids.sort_unstable();
            ids.dedup();
            Some(ids)
        }
    };
    let secret = ports.token_secrets.generate();
    let token = PersonalToken {
        id: Uuid::now_v7(),
        user_id: principal.user_id,
        name,
        scopes,
        project_ids,
        secret_hash: ports.token_secrets.hash(&secret),
        expires_at,
        created_at: now,
        last_used_at: None,
    };
    ports.personal_tokens.create(&token).await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "auth.token.created",
            ("token", Some(token.id.to_string())),
            Some(serde_json::json!({
                "name": token.name.as_str(),
                "scopes": token.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
                "projectIds": token.project_ids,
                "expiresAt": token.expires_at,
            })),
        )
        .await?;
    Ok(CreatedTokenView {
        token_view: PersonalTokenView::from(&token),
        token: PresentedToken::format(principal.user_id, token.id, &secret),
    })
}

/// The caller's tokens, newest first.
pub async fn list_tokens(
    ports: &IdentityPorts,
    principal: &Principal,
) -> Result<Vec<PersonalTokenView>, AppError> {
    require_session(principal)?;
    tokens_of(ports, principal.user_id).await
}

/// Deletes one of the caller's tokens; someone else's, or none, is a 404.
pub async fn delete_token(
    ports: &IdentityPorts,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    require_session(principal)?;
    remove(ports, principal.user_id, id).await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "auth.token.deleted",
            ("token", Some(id.to_string())),
            None,
        )
        .await
}

/// `GET /admin/users/{id}/tokens`: a user's tokens (404 for an unknown user).
pub async fn list_user_tokens(
    ports: &IdentityPorts,
    principal: &Principal,
    user_id: Uuid,
) -> Result<Vec<PersonalTokenView>, AppError> {
    require_admin(principal)?;
    ports
        .users
        .find_by_id(user_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    tokens_of(ports, user_id).await
}

/// `DELETE /admin/users/{id}/tokens/{tokenId}`: revokes a user's token.
pub async fn delete_user_token(
    ports: &IdentityPorts,
    principal: &Principal,
    user_id: Uuid,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    require_admin(principal)?;
    remove(ports, user_id, id).await?;
    ports
        .audit(
            meta,
            Some(principal.user_id),
            "admin.token.deleted",
            ("token", Some(id.to_string())),
            Some(serde_json::json!({ "userId": user_id })),
        )
        .await
}

async fn tokens_of(ports: &IdentityPorts, user_id: Uuid) -> Result<Vec<PersonalTokenView>, AppError> {
    Ok(ports
        .personal_tokens
        .list(user_id)
        .await?
        .iter()
        .map(PersonalTokenView::from)
        .collect())
}

/// Deletes the token and drops its user's cached authentication everywhere, before
/// answering: from now on no instance accepts it.
async fn remove(ports: &IdentityPorts, user_id: Uuid, id: Uuid) -> Result<(), AppError> {
    if !ports.personal_tokens.delete(user_id, id).await? {
        return Err(AppError::NotFound("token"));
    }
    ports.cache.invalidate(&[CacheKey::user(user_id)]).await;
    Ok(())
}

/// The minute of each token's last use this instance has recorded, so that a token used
/// many times a minute is written once: the first use in a new minute writes, the others
/// find the minute here. Bounded: emptied when it holds [`TokenUses::CAPACITY`] tokens (the
/// worst that costs is one more write per token).
#[derive(Debug, Default)]
pub struct TokenUses {
    recorded: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl TokenUses {
    pub const CAPACITY: usize = 10_000;

    /// The minute of `at`.
    pub fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(Duration::minutes(1)).unwrap_or(at)
    }

    /// Whether a use at `minute` must be written: `stored` (what the token's cached row
    /// says) and this instance's record are both older. Records it when so.
    pub fn needs_write(&self, token_id: Uuid, stored: Option<DateTime<Utc>>, minute: DateTime<Utc>) -> bool {
        if stored.is_some_and(|s| s >= minute) {
            return false;
        }
        let Ok(mut recorded) = self.recorded.lock() else {
            return true;
        };
        if recorded.get(&token_id).is_some_and(|r| *r >= minute) {
            return false;
        }
        if recorded.len() >= Self::CAPACITY {
            recorded.clear();
        }
        recorded.insert(token_id, minute);
        true
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
