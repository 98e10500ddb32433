//! Tasks and comments (docs/api/tracking.md): `/api/v1/projects/{id}/tasks`, `/api/v1/tasks/*`,
//! `/api/v1/comments/*`.

use actix_web::{HttpRequest, HttpResponse, web};
use keel_application::tracking::comments::{create_comment, delete_comment, list_comments, update_comment};
use keel_application::tracking::inputs::{CommentBodyInput, CreateTaskBody, TaskListQuery, UpdateTaskBody};
use keel_application::tracking::tasks::{
    create_task, delete_task, get_task, list_project_tasks, list_task_children, list_tasks, purge_task,
    update_task,
};
use keel_application::tracking::views::{CommentView, TaskView};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::projects::{created, ok_with_etag};
use crate::conditional::{ETag, expected_versions, respond_with_etag};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{CommentPage, CursorParams, TaskPage};
use crate::state::AppState;

/// How a task is addressed in a path.
pub(super) const TASK_REF: &str = "The task's id, or its identifier (`KEEL-12`, any case)";

/// A task's tag changes with its version and with what its view counts without it: its
/// open blockers (a blocker finished elsewhere) and its sub-tasks (a child added, completed,
/// moved away).
pub(super) fn task_etag(view: &TaskView) -> ETag {
    ETag::from_version(
        format!(
            "{}:{}:{}:{}",
            view.id, view.blocked_by_count, view.child_count, view.child_done_count
        ),
        view.version,
    )
}

fn comment_etag(view: &CommentView) -> ETag {
    ETag::from_version(view.id, view.version)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct TaskListParams {
    /// Comma list of state keys (`todo,in_review`): each must be the key of a state of the
    /// listed projects.
    #[param(inline, value_type = Option<String>,
        pattern = "^[a-z][a-z0-9_]{0,29}(,[a-z][a-z0-9_]{0,29})*$")]
    pub status: Option<String>,
    /// Comma list of state categories: tasks in a state of any of them.
    #[param(inline, value_type = Option<String>,
        pattern = "^(backlog|unstarted|started|completed|canceled)(,(backlog|unstarted|started|completed|canceled))*$")]
    pub category: Option<String>,
    /// Comma list of priorities (0 none, 1 urgent … 4 low).
    #[param(inline, value_type = Option<String>, pattern = "^[0-4](,[0-4])*$")]
    pub priority: Option<String>,
    /// A user id, `me` or `none` (unassigned).
    #[param(inline, value_type = Option<String>,
        pattern = "^(me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")]
    pub assignee: Option<String>,
    /// Comma list of label names or ids (an item that is a UUID is an id): tasks with any of
    /// them.
    pub label: Option<String>,
    /// Words of the title or description, each as a prefix (any case, accents ignored), or
    /// the task's identifier (`KEEL-12`) or number.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Tasks changed at or after this instant.
    #[param(value_type = Option<String>, format = DateTime)]
    pub updated_since: Option<String>,
    /// `createdAt`, `updatedAt`, `priority` (urgent first, none last) or `dueDate` (undated
    /// last); `-` in front reverses; default `-createdAt`.
    #[param(inline, value_type = Option<String>, pattern = "^-?(createdAt|updatedAt|priority|dueDate)$")]
    pub sort: Option<String>,
    /// `include` shows archived tasks too, `only` archived tasks alone; absent, archived
    /// tasks are left out. (Tasks in the trash are in no list but the trash.)
    #[param(inline, value_type = Option<String>, pattern = "^(include|only)$")]
    pub archived: Option<String>,
    /// `true`: only tasks with an open blocker (`blockedByCount` above 0); `false`: only
    /// tasks without one.
    #[param(inline, value_type = Option<String>, pattern = "^(true|false)$")]
    pub blocked: Option<String>,
    /// The sub-tasks of one task (its id, or its identifier `KEEL-12`), or `none`: top-level
    /// tasks only.
    #[param(inline, value_type = Option<String>,
        pattern = "^(none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z][A-Za-z0-9]{1,9}-[1-9][0-9]{0,17})$")]
    pub parent: Option<String>,
}

impl From<TaskListParams> for TaskListQuery {
    fn from(p: TaskListParams) -> Self {
        Self {
            status: p.status,
            category: p.category,
            priority: p.priority,
            assignee: p.assignee,
            label: p.label,
            q: p.q,
            updated_since: p.updated_since,
            sort: p.sort,
            archived: p.archived,
            blocked: p.blocked,
            parent: p.parent,
        }
    }
}

/// The project's tasks, filtered and sorted, cursor-paginated.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/tasks", operation_id = "listProjectTasks", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), TaskListParams, CursorParams),
    responses(
        (status = 200, description = "One page of the project's tasks", body = TaskPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_project_tasks_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    params: web::Query<TaskListParams>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    let page = list_project_tasks(
        &state.tracking,
        &user.0,
        id.into_inner(),
        params.into_inner().into(),
        cursor,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Creates a task with the project's next number (members and up).
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/tasks", operation_id = "createTask", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = CreateTaskBody,
    responses(
        (status = 201, description = "The new task, numbered in its project (`KEY-12`)", body = TaskView,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "`VALIDATION_ERROR`: a field is invalid, the assignee is not a member, a label does not exist or the parent breaks a sub-task rule (`parentId`)", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_task_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<CreateTaskBody>,
) -> Result<HttpResponse, ApiError> {
    let view = create_task(
        &state.tracking,
        &user.0,
        id.into_inner(),
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(created(
        format!("/api/v1/tasks/{}", view.id),
        Some(task_etag(&view)),
        &view,
    ))
}

/// Tasks across every project the caller belongs to.
#[utoipa::path(
    get, path = "/api/v1/tasks", operation_id = "listTasks", tag = "tasks", security(("bearerAuth" = [])),
    params(TaskListParams, CursorParams),
    responses(
        (status = 200, description = "One page of tasks across the caller's projects", body = TaskPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody)
    )
)]
pub async fn list_tasks_route(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<TaskListParams>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok()
        .json(list_tasks(&state.tracking, &user.0, params.into_inner().into(), cursor).await?))
}

/// A task by id or identifier (`KEEL-12`).
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}", operation_id = "getTask", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), ("If-None-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The task", body = TaskView, headers(("ETag" = String))),
        (status = 304, description = response::NOT_MODIFIED),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn get_task_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = get_task(&state.tracking, &user.0, &id.into_inner()).await?;
    Ok(respond_with_etag(&req, &task_etag(&view), &view))
}

/// The task's sub-tasks (archived ones included), oldest first.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/children", operation_id = "listTaskChildren", tag = "tasks",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), CursorParams),
    responses(
        (status = 200, description = "One page of the task's sub-tasks, oldest first", body = TaskPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn list_task_children_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(
        HttpResponse::Ok()
            .json(list_task_children(&state.tracking, &user.0, &id.into_inner(), cursor).await?),
    )
}

/// Changes a task (members and up); the version increments. Honours `If-Match`.
#[utoipa::path(
    patch, path = "/api/v1/tasks/{id}", operation_id = "updateTask", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), ("If-Match" = Option<String>, Header)),
    request_body = UpdateTaskBody,
    responses(
        (status = 200, description = "The changed task", body = TaskView, headers(("ETag" = String))),
        (status = 400, description = "`VALIDATION_ERROR`: a field is invalid, the assignee is not a member, a label does not exist or the parent breaks a sub-task rule (`parentId`: another project, a cycle, more than 5 levels)", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody),
        (status = 412, description = response::PRECONDITION_FAILED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_task_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
    body: JsonObject<UpdateTaskBody>,
) -> Result<HttpResponse, ApiError> {
    let expect = expected_versions(&req);
    let view = update_task(
        &state.tracking,
        &user.0,
        &id.into_inner(),
        body.into_inner(),
        expect,
        &ctx.0,
    )
    .await?;
    Ok(ok_with_etag(&task_etag(&view), &view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteTaskParams {
    /// `true`: delete for good, with its comments (project admins; a task in the trash is
    /// addressed by its id). Absent or `false`: move to the project's trash (members and up).
    pub permanent: Option<bool>,
}

/// Moves a task to its project's trash (members and up), or with `permanent=true` deletes
/// it for good (project admins), whether it is in the trash or not.
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}", operation_id = "deleteTask", tag = "tasks", security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), DeleteTaskParams),
    responses(
        (status = 204, description = "Moved to the trash (`task.deleted`), or deleted for good with its comments (`task.purged`)"),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody)
    )
)]
pub async fn delete_task_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
    params: web::Query<DeleteTaskParams>,
) -> Result<HttpResponse, ApiError> {
    if params.permanent == Some(true) {
        purge_task(&state.tracking, &user.0, &id.into_inner(), &ctx.0).await?;
    } else {
        delete_task(&state.tracking, &user.0, &id.into_inner(), &ctx.0).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The task's comments, oldest first.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/comments", operation_id = "listTaskComments", tag = "comments",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), CursorParams),
    responses(
        (status = 200, description = "One page of the task's comments, oldest first", body = CommentPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn list_comments_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok().json(list_comments(&state.tracking, &user.0, &id.into_inner(), cursor).await?))
}

/// Comments on a task (members and up).
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/comments", operation_id = "createComment", tag = "comments",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)), request_body = CommentBodyInput,
    responses(
        (status = 201, description = "The new comment", body = CommentView,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_comment_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
    body: JsonObject<CommentBodyInput>,
) -> Result<HttpResponse, ApiError> {
    let view = create_comment(
        &state.tracking,
        &user.0,
        &id.into_inner(),
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(created(
        format!("/api/v1/comments/{}", view.id),
        Some(comment_etag(&view)),
        &view,
    ))
}

/// Edits a comment (its author). Honours `If-Match`.
#[utoipa::path(
    patch, path = "/api/v1/comments/{id}", operation_id = "updateComment", tag = "comments", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)), request_body = CommentBodyInput,
    responses(
        (status = 200, description = "The edited comment", body = CommentView, headers(("ETag" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: only its author edits a comment", body = ErrorBody),
        (status = 404, description = response::NO_COMMENT, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody),
        (status = 412, description = response::PRECONDITION_FAILED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_comment_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<CommentBodyInput>,
) -> Result<HttpResponse, ApiError> {
    let expect = expected_versions(&req);
    let view = update_comment(
        &state.tracking,
        &user.0,
        id.into_inner(),
        body.into_inner(),
        expect,
        &ctx.0,
    )
    .await?;
    Ok(ok_with_etag(&comment_etag(&view), &view))
}

/// Deletes a comment (its author or a project admin).
#[utoipa::path(
    delete, path = "/api/v1/comments/{id}", operation_id = "deleteComment", tag = "comments", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: only its author or a project admin deletes a comment", body = ErrorBody),
        (status = 404, description = response::NO_COMMENT, body = ErrorBody)
    )
)]
pub async fn delete_comment_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    delete_comment(&state.tracking, &user.0, id.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
