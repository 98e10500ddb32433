//! `/api/v1/projects/{id}/webhooks/*` (docs/api/events-and-webhooks.md): a project's webhooks and their delivery
//! logs, for its admins. Members below admin get 403, strangers 404.
//!
//! `POST` here does not honour `Idempotency-Key`: replaying it would mean storing the
//! signing secret, which is shown once (see `docs/api/conventions.md`).

use actix_web::{HttpRequest, HttpResponse, web};
use keel_application::webhooks::{
    CreateWebhookBody, CreatedWebhookView, DeliveryView, UpdateWebhookBody, WebhookView, create_webhook,
    delete_webhook, get_webhook, list_deliveries, list_webhooks, redeliver, update_webhook,
};
use uuid::Uuid;

use super::projects::created;
use crate::conditional::{ETag, respond_with_etag};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::middleware::CarriesSecret;
use crate::openapi::response;
use crate::pagination::{CursorParams, DeliveryPage, PageParams, WebhookPage};
use crate::state::AppState;

/// A webhook's tag covers everything shown, breaker state included.
fn webhook_etag(view: &WebhookView) -> ETag {
    ETag::from_bytes(&serde_json::to_vec(view).unwrap_or_default())
}

/// The project's webhooks, oldest first (project admins).
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/webhooks", operation_id = "listProjectWebhooks", tag = "webhooks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "One page of the project's webhooks", body = WebhookPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_webhooks_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    Ok(HttpResponse::Ok().json(list_webhooks(&state.tracking, &user.0, id.into_inner(), page).await?))
}

/// Creates a webhook (project admins). The response holds its signing secret, this once.
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/webhooks", operation_id = "createWebhook", tag = "webhooks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "The new webhook with its signing secret, shown this once", body = CreatedWebhookView,
            headers(("Location" = String))),
        (status = 400, description = "Bad fields; `url` also when it resolves to loopback, private, link-local or \
            metadata addresses (unless the operator allows private ones)", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 409, description = "The project has the most webhooks it may have", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_webhook_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<CreateWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let project = id.into_inner();
    let view = create_webhook(&state.tracking, &user.0, project, body.into_inner(), &ctx.0).await?;
    let mut response = created(
        format!("/api/v1/projects/{project}/webhooks/{}", view.webhook.id),
        None,
        &view,
    );
    // It holds the signing secret: no cache may store it.
    response.extensions_mut().insert(CarriesSecret);
    Ok(response)
}

#[utoipa::path(
    get, path = "/api/v1/projects/{id}/webhooks/{webhookId}", operation_id = "getWebhook", tag = "webhooks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses(
        (status = 200, description = "The webhook (never its secret) and its breaker state", body = WebhookView,
            headers(("ETag" = String))),
        (status = 304, description = response::NOT_MODIFIED),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_WEBHOOK, body = ErrorBody)
    )
)]
pub async fn get_webhook_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, webhook) = path.into_inner();
    let view = get_webhook(&state.tracking, &user.0, project, webhook).await?;
    Ok(respond_with_etag(&req, &webhook_etag(&view), &view))
}

/// Changes the URL, the events or `enabled` (project admins). Enabling a webhook disabled
/// after a day of failures closes its breaker.
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}/webhooks/{webhookId}", operation_id = "updateWebhook", tag = "webhooks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("webhookId" = Uuid, Path)), request_body = UpdateWebhookBody,
    responses(
        (status = 200, description = "The changed webhook", body = WebhookView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_WEBHOOK, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_webhook_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject<UpdateWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, webhook) = path.into_inner();
    let view = update_webhook(
        &state.tracking,
        &user.0,
        project,
        webhook,
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a webhook and its delivery log (project admins).
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}/webhooks/{webhookId}", operation_id = "deleteWebhook", tag = "webhooks",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted, with its delivery log"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_WEBHOOK, body = ErrorBody)
    )
)]
pub async fn delete_webhook_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, webhook) = path.into_inner();
    delete_webhook(&state.tracking, &user.0, project, webhook, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The delivery log, newest first: each delivery with its attempts, status codes and errors.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/webhooks/{webhookId}/deliveries", operation_id = "listWebhookDeliveries",
    tag = "webhooks", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("webhookId" = Uuid, Path), CursorParams),
    responses(
        (status = 200, description = "One page of the webhook's deliveries, newest first", body = DeliveryPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_WEBHOOK, body = ErrorBody)
    )
)]
pub async fn list_deliveries_route(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let (project, webhook) = path.into_inner();
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok().json(list_deliveries(&state.tracking, &user.0, project, webhook, cursor).await?))
}

/// Sends a delivery again: same delivery id and body, a fresh attempt budget (project
/// admins). 409 while it is still pending.
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
    operation_id = "redeliverWebhookDelivery", tag = "webhooks", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("webhookId" = Uuid, Path), ("deliveryId" = Uuid, Path)),
    responses(
        (status = 202, description = "Queued", body = DeliveryView),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), webhook or delivery", body = ErrorBody),
        (status = 409, description = "Still pending", body = ErrorBody)
    )
)]
pub async fn redeliver_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, webhook, delivery) = path.into_inner();
    let view = redeliver(&state.tracking, &user.0, project, webhook, delivery, &ctx.0).await?;
    Ok(HttpResponse::Accepted().json(view))
}
