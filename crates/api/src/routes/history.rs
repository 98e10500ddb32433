//! A task's history (docs/api/tracking.md, "History"): `GET /api/v1/tasks/{id}/history`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::tasks::task_history;

use crate::error::{ApiError, ErrorBody};
use crate::extractors::AuthUser;
use crate::openapi::response;
use crate::pagination::{CursorParams, HistoryPage};
use crate::state::AppState;

/// The task's changes, newest first, each with the fields it changed and their old and new
/// values (viewers and up).
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/history", operation_id = "listTaskHistory", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The task's id, or its identifier (`KEEL-12`, any case)"), CursorParams),
    responses(
        (status = 200, description = "One page of the task's history, newest first", body = HistoryPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn list_task_history_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    let page = task_history(&state.tracking, &user.0, &id.into_inner(), cursor).await?;
    Ok(HttpResponse::Ok().json(page))
}
