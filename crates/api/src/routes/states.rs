//! Workflow states of a project (docs/api/tracking.md): `/api/v1/projects/{id}/states`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::inputs::{CreateStateBody, UpdateStateBody};
use keel_application::tracking::states::{create_state, delete_state, list_states, update_state};
use keel_application::tracking::views::{StateList, StateView};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::projects::created;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::state::AppState;

const NO_STATE: &str =
    "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such state in it";

/// The project's workflow states, by position.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/states", operation_id = "listProjectStates", tag = "states",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Every state of the project, by position", body = StateList),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_states_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list_states(&state.tracking, &user.0, id.into_inner()).await?))
}

/// Adds a workflow state to the project (project admins).
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/states", operation_id = "createState", tag = "states",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = CreateStateBody,
    responses(
        (status = 201, description = "The new state", body = StateView, headers(("Location" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the key is taken in the project, or the project has 50 states", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_state_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<CreateStateBody>,
) -> Result<HttpResponse, ApiError> {
    let project = id.into_inner();
    let view = create_state(&state.tracking, &user.0, project, body.into_inner(), &ctx.0).await?;
    Ok(created(
        format!("/api/v1/projects/{project}/states/{}", view.id),
        None,
        &view,
    ))
}

/// Renames, recolours, moves or recategorises a state (project admins); a new category
/// reaches every task in the state (`statusCategory`, `completedAt`, a new version).
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}/states/{stateId}", operation_id = "updateState", tag = "states",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("stateId" = Uuid, Path)), request_body = UpdateStateBody,
    responses(
        (status = 200, description = "The state as it is now", body = StateView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = NO_STATE, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_state_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject<UpdateStateBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, state_id) = path.into_inner();
    let view = update_state(
        &state.tracking,
        &user.0,
        project,
        state_id,
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Where the tasks of a deleted state go.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeleteStateParams {
    /// The key of another state of the project; absent: the project's `defaultState`.
    #[param(pattern = "^[a-z][a-z0-9_]{0,29}$")]
    pub move_to: Option<String>,
}

/// Deletes a state (project admins); its tasks move to `moveTo` first, in the same
/// transaction.
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}/states/{stateId}", operation_id = "deleteState", tag = "states",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("stateId" = Uuid, Path), DeleteStateParams),
    responses(
        (status = 204, description = "Deleted; its tasks are in the `moveTo` state"),
        (status = 400, description = "`VALIDATION_ERROR`: an id in the path is not a UUID, or `moveTo` is no other state of the project", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = NO_STATE, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: it is the project's last state, or its default state", body = ErrorBody)
    )
)]
pub async fn delete_state_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
    params: web::Query<DeleteStateParams>,
) -> Result<HttpResponse, ApiError> {
    let (project, state_id) = path.into_inner();
    delete_state(
        &state.tracking,
        &user.0,
        project,
        state_id,
        params.move_to.as_deref(),
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
