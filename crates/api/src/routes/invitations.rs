//! Project invitations (docs/api/tracking.md, "Invitations"): the admins' routes under
//! `/api/v1/projects/{id}/invitations`, and the invitee's under `/api/v1/auth/invitations`.

use actix_web::{HttpResponse, web};
use keel_application::tracking::invitations::{
    AcceptInvitationBody, InvitationView, InviteBody, ReceivedInvitationList, accept_invitation, invite,
    list_invitations, received_invitations, withdraw_invitation,
};
use keel_application::tracking::views::ProjectView;
use uuid::Uuid;

use super::projects::created;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{InvitationPage, PageParams};
use crate::state::AppState;

/// Invites an e-mail address to the project as `admin`, `member` or `viewer` (project
/// admins), and mails it a link with a one-time token valid 7 days. The answer is the same
/// whether or not the address has an account; a pending invitation of the same address is
/// replaced (its link stops working).
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/invitations", operation_id = "createInvitation", tag = "invitations",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = InviteBody,
    responses(
        (status = 201, description = "Invited; the mail is on its way", body = InvitationView,
            headers(("Location" = String, description = "The invitation (`DELETE` withdraws it)"))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_invitation_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let project = id.into_inner();
    let view = invite(&state.tracking, &user.0, project, body.into_inner(), &ctx.0).await?;
    let location = format!("/api/v1/projects/{project}/invitations/{}", view.id);
    Ok(created(location, None, &view))
}

/// The project's pending invitations, oldest first (project admins).
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/invitations", operation_id = "listProjectInvitations", tag = "invitations",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "One page of the project's pending invitations", body = InvitationPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_invitations_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    let page = list_invitations(&state.tracking, &user.0, id.into_inner(), page).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Withdraws an invitation (project admins): its link stops working.
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}/invitations/{invitationId}", operation_id = "deleteInvitation",
    tag = "invitations", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("invitationId" = Uuid, Path)),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such \
            invitation in it (accepted, withdrawn or never made)", body = ErrorBody)
    )
)]
pub async fn delete_invitation_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, invitation) = path.into_inner();
    withdraw_invitation(&state.tracking, &user.0, project, invitation, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's pending invitations, newest first, with the project each is to: matched by
/// the account's e-mail address once it is verified (an unverified address lists none).
#[utoipa::path(
    get, path = "/api/v1/auth/invitations", operation_id = "listMyInvitations", tag = "invitations",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's pending invitations", body = ReceivedInvitationList),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody)
    )
)]
pub async fn list_my_invitations_route(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(received_invitations(&state.tracking, &user.0).await?))
}

/// Accepts an invitation with the token of its mail: the caller (signed in with the invited
/// address) joins the project with the invited role, and the invitation is used up.
#[utoipa::path(
    post, path = "/api/v1/auth/invitations/accept", operation_id = "acceptInvitation", tag = "invitations",
    security(("bearerAuth" = [])), request_body = AcceptInvitationBody,
    responses(
        (status = 200, description = "Joined: the project as the new member sees it", body = ProjectView),
        (status = 400, description = "`INVALID_TOKEN`: the token is unknown, used, withdrawn, expired, malformed or for \
            another e-mail address than the caller's (one answer for all), or `VALIDATION_ERROR`", body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the caller is a member of the project already (the invitation \
            stays)", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn accept_invitation_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<AcceptInvitationBody>,
) -> Result<HttpResponse, ApiError> {
    let view = accept_invitation(&state.tracking, &user.0, body.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(view))
}
