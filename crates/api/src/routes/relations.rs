//! Relations between tasks (docs/api/tracking.md): `/api/v1/tasks/{id}/relations`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::inputs::CreateRelationBody;
use keel_application::tracking::relations::{create_relation, delete_relation, list_relations};
use keel_application::tracking::views::RelationView;
use uuid::Uuid;

use super::projects::created;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{CursorParams, RelationPage};
use crate::state::AppState;

use super::tasks::TASK_REF;

/// The task's relations to tasks the caller can see, oldest first, each as this task sees it.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/relations", operation_id = "listTaskRelations", tag = "relations",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), CursorParams),
    responses(
        (status = 200, description = "One page of the task's relations, oldest first", body = RelationPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn list_relations_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok().json(list_relations(&state.tracking, &user.0, &id.into_inner(), cursor).await?))
}

/// Relates the task to another one the caller can see, in any project (members and up of
/// this task's project).
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/relations", operation_id = "createTaskRelation", tag = "relations",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)), request_body = CreateRelationBody,
    responses(
        (status = 201, description = "The new relation, as this task sees it", body = RelationView,
            headers(("Location" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such task (either of the two) in a project the caller is a member of", body = ErrorBody),
        (status = 409, description = "`CONFLICT`: a task related to itself, the same relation again, or a cycle of `blocks`", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_relation_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
    body: JsonObject<CreateRelationBody>,
) -> Result<HttpResponse, ApiError> {
    let task = id.into_inner();
    let view = create_relation(&state.tracking, &user.0, &task, body.into_inner(), &ctx.0).await?;
    Ok(created(
        format!("/api/v1/tasks/{task}/relations/{}", view.id),
        None,
        &view,
    ))
}

/// Deletes a relation of the task (members and up), from either of its two tasks.
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}/relations/{relationId}", operation_id = "deleteTaskRelation", tag = "relations",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), ("relationId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such task in a project the caller is a member of, or no such relation of it to a task the caller can see", body = ErrorBody)
    )
)]
pub async fn delete_relation_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (task, relation) = path.into_inner();
    delete_relation(&state.tracking, &user.0, &task, relation, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
