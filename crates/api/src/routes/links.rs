//! Links on tasks (docs/api/tracking.md): `/api/v1/tasks/{id}/links`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::links::{
    CreateLinkBody, LinkView, LinkWrite, create_link, delete_link, list_links,
};
use uuid::Uuid;

use super::projects::created;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{CursorParams, list_page};
use crate::state::AppState;

use super::tasks::TASK_REF;

list_page!(
    /// One page of a task's links.
    LinkPage = CursorPage<LinkView>
);

/// The task's links, oldest first.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/links", operation_id = "listTaskLinks", tag = "links",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), CursorParams),
    responses(
        (status = 200, description = "One page of the task's links, oldest first", body = LinkPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody)
    )
)]
pub async fn list_links_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok().json(list_links(&state.tracking, &user.0, &id.into_inner(), cursor).await?))
}

/// Adds a link to a task (members and up); a URL the task has already (compared
/// normalised) sets that link's title instead: 200 with the link, since nothing new was
/// created.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/links", operation_id = "createTaskLink", tag = "links",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF)), request_body = CreateLinkBody,
    responses(
        (status = 200, description = "The task had a link with this URL: it, with the posted title", body = LinkView),
        (status = 201, description = "The new link", body = LinkView, headers(("Location" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_TASK, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_link_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<String>,
    body: JsonObject<CreateLinkBody>,
) -> Result<HttpResponse, ApiError> {
    match create_link(
        &state.tracking,
        &user.0,
        &id.into_inner(),
        body.into_inner(),
        &ctx.0,
    )
    .await?
    {
        LinkWrite::Created(view) => Ok(created(
            format!("/api/v1/tasks/{}/links/{}", view.task_id, view.id),
            None,
            &view,
        )),
        LinkWrite::Updated(view) => Ok(HttpResponse::Ok().json(view)),
    }
}

/// Deletes a task's link (members and up).
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}/links/{linkId}", operation_id = "deleteTaskLink", tag = "links",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = TASK_REF), ("linkId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such task in a project the caller is a member of, or no such link on it", body = ErrorBody)
    )
)]
pub async fn delete_link_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (task, link) = path.into_inner();
    delete_link(&state.tracking, &user.0, &task, link, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
