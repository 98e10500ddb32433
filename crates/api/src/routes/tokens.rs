//! Personal access tokens (docs/api/identity.md, "Personal access tokens"):
//! `/api/v1/auth/tokens*` for one's own, `/api/v1/admin/users/{id}/tokens*` for an admin.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_application::identity::tokens::{
    CreateTokenInput, CreatedTokenView, PersonalTokenView, create_token, delete_token, delete_user_token,
    list_tokens, list_user_tokens,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::state::AppState;

/// A scope of a personal access token.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the names the use case parses
pub enum TokenScope {
    /// Safe methods (`GET`, `HEAD`) everywhere but `/admin/*`.
    Read,
    /// Every method everywhere but `/admin/*`.
    Write,
    /// The `/admin/*` routes, whatever the method (instance admins only).
    Admin,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTokenBody {
    /// 1–100 characters after trimming white space; no control characters.
    #[schema(example = "CI deploy")]
    pub name: String,
    /// At least one; `admin` only for instance admins.
    #[schema(value_type = Vec<TokenScope>, min_items = 1, example = json!(["read"]))]
    pub scopes: Vec<String>,
    /// Limits the token to these projects (1–100); omitted: every project of the user.
    #[schema(min_items = 1, max_items = 100)]
    pub project_ids: Option<Vec<Uuid>>,
    /// In the future, at most 366 days ahead; default 90 days from now.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<PersonalTokenView>,
}

/// Creates a personal access token. The token is in this response only: it is stored as a
/// hash and never shown again.
#[utoipa::path(
    post, path = "/api/v1/auth/tokens", operation_id = "createToken", tag = "tokens",
    security(("bearerAuth" = [])), request_body = CreateTokenBody,
    responses(
        (status = 201, description = "Created; `token` is shown this once", body = CreatedTokenView,
            headers(("Location" = String, description = "The new token (it can be deleted there)"))),
        (status = 400, description = "`VALIDATION_ERROR`: a field is invalid (a non-admin asking for `admin`, \
            an expiry in the past or more than 366 days ahead); `details` names each", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_token_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<CreateTokenBody>,
) -> Result<HttpResponse, ApiError> {
    let CreateTokenBody {
        name,
        scopes,
        project_ids,
        expires_at,
    } = body.into_inner();
    let created = create_token(
        &state.identity,
        &user.0,
        CreateTokenInput {
            name,
            scopes,
            project_ids,
            expires_at,
        },
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/auth/tokens/{}", created.token_view.id),
        ))
        .json(created))
}

/// The caller's personal access tokens, newest first (expired ones included), never their
/// secrets.
#[utoipa::path(
    get, path = "/api/v1/auth/tokens", operation_id = "listTokens", tag = "tokens", security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's tokens", body = TokenList),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody)
    )
)]
pub async fn list_tokens_route(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let data = list_tokens(&state.identity, &user.0).await?;
    Ok(HttpResponse::Ok().json(TokenList { data }))
}

/// Deletes one of the caller's tokens: every instance refuses it from now on.
#[utoipa::path(
    delete, path = "/api/v1/auth/tokens/{id}", operation_id = "deleteToken", tag = "tokens",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such token of the caller", body = ErrorBody)
    )
)]
pub async fn delete_token_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    delete_token(&state.identity, &user.0, id.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A user's personal access tokens (admins only), never their secrets.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}/tokens", operation_id = "listUserTokens", tag = "tokens",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's tokens", body = TokenList),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 404, description = response::NO_USER, body = ErrorBody)
    )
)]
pub async fn list_user_tokens_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let data = list_user_tokens(&state.identity, &user.0, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(TokenList { data }))
}

/// Deletes a user's token (admins only): every instance refuses it from now on.
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{id}/tokens/{tokenId}", operation_id = "deleteUserToken", tag = "tokens",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path, description = "User id"), ("tokenId" = Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::NOT_ADMIN, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such token of that user", body = ErrorBody)
    )
)]
pub async fn delete_user_token_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, token_id) = path.into_inner();
    delete_user_token(&state.identity, &user.0, user_id, token_id, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
