//! One action on many tasks (docs/api/tracking.md, "Bulk changes"): `POST /api/v1/tasks/bulk`.

use actix_web::{HttpRequest, HttpResponse, web};
use keel_application::tracking::inputs::BulkTasksBody;
use keel_application::tracking::tasks::{BulkItem, bulk_tasks};
use keel_application::tracking::views::TaskView;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, error_mapping};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::middleware::request_context::error_chain;
use crate::openapi::response;
use crate::state::AppState;

/// One task's outcome in a bulk request: what its single route would have answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    /// The task as the request named it (id or identifier).
    #[schema(example = "KEEL-12")]
    pub id: String,
    /// The status the single route would have answered: 200 (the task), 204 (`delete`:
    /// no task), or the error's (400, 403, 404, 409, 503, …).
    #[schema(example = 200)]
    pub status: u16,
    /// The task after the action (every success but `delete`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskView>,
    /// The error body the single route would have answered (on a failure only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The answer of a bulk request: one result per id, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
}

impl BulkResult {
    fn new(item: BulkItem, path: &str, request_id: &str) -> Self {
        match item.outcome {
            Ok(Some(task)) => Self {
                id: item.id,
                status: 200,
                task: Some(task),
                error: None,
            },
            Ok(None) => Self {
                id: item.id,
                status: 204,
                task: None,
                error: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                let (status, _) = error_mapping(&e);
                if status.is_server_error() {
                    tracing::error!(item = %item.id, error = %error_chain(&e), "server error in a bulk item");
                }
                Self {
                    id: item.id,
                    status: status.as_u16(),
                    task: None,
                    error: Some(ErrorBody::from_error(&e, path, request_id)),
                }
            }
        }
    }
}

/// Applies one action to up to 100 tasks, each by id or identifier, in the order given.
/// Each task is validated, authorized, changed, audited and evented as its single route
/// does it (`PATCH /tasks/{id}`, `POST /tasks/{id}/archive|unarchive|restore`,
/// `DELETE /tasks/{id}`), and succeeds or fails on its own: the answer is 200 with one
/// result per id, each with the status and the body (task or error) its route would have
/// answered.
#[utoipa::path(
    post, path = "/api/v1/tasks/bulk", operation_id = "changeTasksInBulk", tag = "tasks",
    security(("bearerAuth" = [])),
    request_body = BulkTasksBody,
    responses(
        (status = 200, description = "One result per id, in the order given (each with its own status)", body = BulkResponse),
        (status = 400, description = "`VALIDATION_ERROR` for the whole request, which changes nothing: `ids` empty or over 100, an unknown `action`, `update` without `patch`, or `patch` with another action", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn bulk_tasks_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<BulkTasksBody>,
) -> Result<HttpResponse, ApiError> {
    let items = bulk_tasks(&state.tracking, &user.0, body.into_inner(), &ctx.0).await?;
    let request_id = ctx.0.request_id.as_deref().unwrap_or_default();
    let results = items
        .into_iter()
        .map(|item| BulkResult::new(item, req.path(), request_id))
        .collect();
    Ok(HttpResponse::Ok().json(BulkResponse { results }))
}
