//! A task's lifecycle (docs/api/tracking.md, "Archive and trash"): archive, unarchive,
//! restore from the trash, and the project's trash. `DELETE /tasks/{id}` (to the trash, or
//! for good with `?permanent=true`) is in `tasks` with the task's other routes.

use actix_web::{HttpResponse, web};
use keel_application::tracking::tasks::{archive_task, list_project_trash, restore_task, unarchive_task};
use keel_application::tracking::views::TaskView;
use uuid::Uuid;

use super::projects::ok_with_etag;
use crate::error::{ApiError, ErrorBody};
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{CursorParams, TaskPage};
use crate::state::AppState;

use super::tasks::{TASK_REF, task_etag};

/// Archives a task (members and up): lists leave it out unless `archived=include|only`.
/// Archiving an archived task changes nothing.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/archive", operation_id = "archiveTask", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)),
    responses(
        (status = 200, description = "The task, archived (`archivedAt` set)", body = TaskView, headers(("ETag" = String))),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody)
    )
)]
pub async fn archive_task_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = archive_task(&state.tracking, &user.0, &id.into_inner(), &ctx.0).await?;
    Ok(ok_with_etag(&task_etag(&view), &view))
}

/// Takes a task out of the archive (members and up); a task not archived stays as it is.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/unarchive", operation_id = "unarchiveTask", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)),
    responses(
        (status = 200, description = "The task, not archived (`archivedAt` null)", body = TaskView, headers(("ETag" = String))),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody)
    )
)]
pub async fn unarchive_task_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = unarchive_task(&state.tracking, &user.0, &id.into_inner(), &ctx.0).await?;
    Ok(ok_with_etag(&task_etag(&view), &view))
}

/// Takes a task out of its project's trash (members and up), with its number and
/// identifier.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/restore", operation_id = "restoreTask", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)),
    responses(
        (status = 200, description = "The task, back in its project's lists (`deletedAt` null)", body = TaskView, headers(("ETag" = String))),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such task in the trash of a project the caller is a member of", body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody)
    )
)]
pub async fn restore_task_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = restore_task(&state.tracking, &user.0, &id.into_inner(), &ctx.0).await?;
    Ok(ok_with_etag(&task_etag(&view), &view))
}

/// The project's trash, the most recently deleted first (members and up).
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/trash", operation_id = "listProjectTrash", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), CursorParams),
    responses(
        (status = 200, description = "One page of the project's trash (each task with `deletedAt`)", body = TaskPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_project_trash_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    let page = list_project_trash(&state.tracking, &user.0, id.into_inner(), cursor).await?;
    Ok(HttpResponse::Ok().json(page))
}
