//! Task subscriptions and notifications (docs/api/notifications.md).

use actix_web::{HttpResponse, web};
use keel_application::notifications::{
    MarkReadInput, UnreadCount, list_notifications, mark_read, set_subscription, unread_count,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::AuthUser;
use crate::openapi::response;
use crate::pagination::{CursorParams, NotificationPage};
use crate::state::AppState;

const TASK_REF: &str = "The task's id or its identifier (`KEEL-12`)";

/// Follows a task: its changes, comments, links and relations notify the caller (anyone who
/// may read the task). An explicit choice stands over the automatic subscriptions.
#[utoipa::path(
    put, path = "/api/v1/tasks/{id}/subscription", operation_id = "addTaskSubscription", tag = "notifications",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)),
    responses(
        (status = 204, description = "Subscribed"),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn subscribe_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_subscription(&state.tracking, state.notifications.as_ref(), &user.0, &id, true).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Stops following a task; automatic subscriptions (as its assignee, by commenting) no
/// longer bring it back.
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}/subscription", operation_id = "removeTaskSubscription", tag = "notifications",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)),
    responses(
        (status = 204, description = "Unsubscribed"),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn unsubscribe_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_subscription(&state.tracking, state.notifications.as_ref(), &user.0, &id, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `unread=true`: only unread notifications.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationFilter {
    #[param(value_type = Option<bool>)]
    pub unread: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get, path = "/api/v1/notifications", operation_id = "listNotifications", tag = "notifications",
    security(("bearerAuth" = [])),
    params(NotificationFilter, CursorParams),
    responses(
        (status = 200, description = "One page of the caller's notifications, newest first", body = NotificationPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody)
    )
)]
pub async fn list_notifications_route(
    state: web::Data<AppState>,
    user: AuthUser,
    filter: web::Query<NotificationFilter>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let unread = match filter.unread.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(keel_application::AppError::invalid("unread", "must be true or false").into());
        }
    };
    let cursor = cursor.validate()?;
    let page = list_notifications(state.notifications.as_ref(), &user.0, unread, cursor).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(
    get, path = "/api/v1/notifications/unread-count", operation_id = "getUnreadNotificationCount", tag = "notifications",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "`{count}`", body = UnreadCount),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody)
    )
)]
pub async fn unread_count_route(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(unread_count(state.notifications.as_ref(), &user.0).await?))
}

/// Marks notifications read: `{ids}` (others' ids are ignored) or `{all: true}`. Answers the
/// unread count after.
#[utoipa::path(
    post, path = "/api/v1/notifications/read", operation_id = "markNotificationsRead", tag = "notifications",
    security(("bearerAuth" = [])),
    request_body = MarkReadInput,
    responses(
        (status = 200, description = "Marked; `{count}` is the unread count after", body = UnreadCount),
        (status = 400, description = "`VALIDATION_ERROR`: neither or both of `ids` and `all`, `all` not true, or not 1–100 ids", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn mark_read_route(
    state: web::Data<AppState>,
    user: AuthUser,
    body: JsonObject<MarkReadInput>,
) -> Result<HttpResponse, ApiError> {
    let now = state.tracking.clock.now();
    Ok(HttpResponse::Ok()
        .json(mark_read(state.notifications.as_ref(), &user.0, body.into_inner(), now).await?))
}
