//! Search (docs/api/search.md): `GET /api/v1/search`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::search::{SearchParams, search};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::extractors::AuthUser;
use crate::openapi::response;
use crate::pagination::{CursorParams, SearchResultPage};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SearchQueryParams {
    /// The words to find (each as a prefix, any case, accents ignored; punctuation separates
    /// words), or a task's identifier (`KEEL-12`) or number (`12`). 1–200 characters, not
    /// blank.
    #[param(required = true, min_length = 1, max_length = 200)]
    pub q: Option<String>,
    /// Only this project (404 when the caller cannot see it).
    #[param(value_type = Option<uuid::Uuid>, format = Uuid)]
    pub project_id: Option<String>,
    /// What to find: `task`, `comment` or both (the default), comma-separated.
    #[param(inline, value_type = Option<String>, pattern = "^(task|comment)(,(task|comment))*$")]
    pub types: Option<String>,
}

/// Tasks and comments of the projects the caller can see, best match first.
#[utoipa::path(
    get, path = "/api/v1/search", operation_id = "search", tag = "search",
    security(("bearerAuth" = [])),
    params(SearchQueryParams, CursorParams),
    responses(
        (status = 200, description = "One page of results, best first: the task named by identifier or number, \
            tasks with every word in the title, in the title and description, then comments", body = SearchResultPage),
        (status = 400, description = "`VALIDATION_ERROR`: `q` missing, empty, too long or with a control character; \
            a bad `types`, `projectId`, `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn search_route(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<SearchQueryParams>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    let params = params.into_inner();
    let page = search(
        &state.tracking,
        &user.0,
        SearchParams {
            q: params.q,
            project_id: params.project_id,
            types: params.types,
        },
        cursor,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}
