//! `/api/v1/admin/*` (docs/api/identity.md): instance administration, 403 for non-admins.

use actix_web::{HttpResponse, web};
use keel_application::identity::account::erase_user;
use keel_application::identity::admin::{
    AuditQuery, CreateUserInput, UpdateUserInput, UserListQuery, audit_log, create_user, get_user,
    list_users, update_user, users_metrics,
};
use keel_application::identity::views::UserView;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{AuditEntryPage, PageParams, UserMetricsPage, UserPage};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// Substring of the e-mail or name, case-insensitive.
    #[param(max_length = 100)]
    pub q: Option<String>,
    #[param(inline, value_type = Option<String>, pattern = "^(user|admin)$")]
    pub role: Option<String>,
    #[param(inline, value_type = Option<String>, pattern = "^(active|disabled)$")]
    pub status: Option<String>,
}

/// Users, oldest first, with filters.
#[utoipa::path(
    get, path = "/api/v1/admin/users", operation_id = "listUsers", tag = "admin", security(("bearerAuth" = [])),
    params(PageParams, UserListParams),
    responses(
        (status = 200, description = "One page of users", body = UserPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody)
    )
)]
pub async fn list_users_route(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<PageParams>,
    filter: web::Query<UserListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    let UserListParams { q, role, status } = filter.into_inner();
    let result = list_users(&state.identity, &user.0, UserListQuery { q, role, status }, page).await?;
    Ok(HttpResponse::Ok().json(result))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// One of `name` (default), `email`, `projectsOwned`, `tasksCreated`, `tasksOpenAssigned`,
    /// `tasksCompleted`, `commentsPosted`, `lastActiveAt`; `-` in front for descending.
    #[param(inline, value_type = Option<String>,
        pattern = "^-?(name|email|projectsOwned|tasksCreated|tasksOpenAssigned|tasksCompleted|commentsPosted|lastActiveAt)$")]
    pub sort: Option<String>,
}

/// Every user's activity figures, computed by one aggregate query.
#[utoipa::path(
    get, path = "/api/v1/admin/users/metrics", operation_id = "listUserMetrics", tag = "admin",
    security(("bearerAuth" = [])),
    params(PageParams, MetricsParams),
    responses(
        (status = 200, description = "One page of users with their activity figures", body = UserMetricsPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody)
    )
)]
pub async fn users_metrics_route(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<PageParams>,
    params: web::Query<MetricsParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    let result = users_metrics(&state.identity, &user.0, params.sort.as_deref(), page).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// One user.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}", operation_id = "getUser", tag = "admin", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 404, description = response::NO_USER, body = ErrorBody)
    )
)]
pub async fn get_user_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(get_user(&state.identity, &user.0, id.into_inner()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[schema(pattern = "^(user|admin)$")]
    pub role: Option<String>,
    #[schema(pattern = "^(active|disabled)$")]
    pub status: Option<String>,
}

/// Changes a user's role or status. Disabling revokes every session at once; removing the
/// last active admin is a 409.
#[utoipa::path(
    patch, path = "/api/v1/admin/users/{id}", operation_id = "updateUser", tag = "admin", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The changed user", body = UserView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 404, description = response::NO_USER, body = ErrorBody),
        (status = 409, description = "The last active admin cannot be demoted or disabled", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_user_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<UpdateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let UpdateUserBody { role, status } = body.into_inner();
    let view = update_user(
        &state.identity,
        &user.0,
        id.into_inner(),
        UpdateUserInput { role, status },
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// Trimmed and lower-cased; unique.
    #[schema(format = "email", max_length = 254, example = "bea@example.com")]
    pub email: String,
    /// 2–50 characters after trimming white space; no control characters.
    #[schema(example = "Bea")]
    pub name: String,
    #[schema(pattern = "^(user|admin)$", example = "user")]
    pub role: String,
}

/// Creates an account (the way in when registration is closed): its owner is mailed a link
/// to set the first password (valid 7 days, once, through `POST /auth/password/reset`).
#[utoipa::path(
    post, path = "/api/v1/admin/users", operation_id = "createUser", tag = "admin", security(("bearerAuth" = [])),
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "The new account; a mail with a link to set its password is on its way", body = UserView,
            headers(("Location" = String, description = "The new user"))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the e-mail is taken", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn create_user_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<CreateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let CreateUserBody { email, name, role } = body.into_inner();
    let view = create_user(
        &state.identity,
        &user.0,
        CreateUserInput { email, name, role },
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/admin/users/{}", view.id),
        ))
        .json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuditParams {
    #[param(value_type = Option<Uuid>)]
    pub actor_id: Option<String>,
    /// Exact action, e.g. `auth.login.failed`.
    #[param(max_length = 100)]
    pub action: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/api/v1/admin/audit-log", operation_id = "listAuditLog", tag = "admin", security(("bearerAuth" = [])),
    params(PageParams, AuditParams),
    responses(
        (status = 200, description = "One page of the audit log, newest first", body = AuditEntryPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody)
    )
)]
pub async fn audit_log_route(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<PageParams>,
    filter: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    let AuditParams { actor_id, action } = filter.into_inner();
    let result = audit_log(&state.identity, &user.0, AuditQuery { actor_id, action }, page).await?;
    Ok(HttpResponse::Ok().json(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_refuses_unknown_fields() {
        assert!(serde_json::from_str::<UpdateUserBody>(r#"{"role":"admin","email":"x"}"#).is_err());
    }
}

/// Erases a user's account as `DELETE /auth/account` does (instance admins; never the last
/// active admin, nor a user who owns projects).
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{id}", operation_id = "eraseUser", tag = "admin", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 404, description = response::NO_USER, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the user owns projects (the message names them), or is the last active admin", body = ErrorBody),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn erase_user_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    erase_user(&state.identity, &user.0, id.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
