//! `/api/v1/projects/*` (docs/api/tracking.md): projects, their members, labels and activity feed.
//! Handlers translate HTTP to use cases and back; authorization lives in the use cases.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use keel_application::tracking::activity::list_activity;
use keel_application::tracking::inputs::{
    AddMemberBody, CreateLabelBody, CreateProjectBody, ProjectListQuery, UpdateLabelBody, UpdateMemberBody,
    UpdateProjectBody,
};
use keel_application::tracking::invitations::InvitationView;
use keel_application::tracking::labels::{create_label, delete_label, list_labels, update_label};
use keel_application::tracking::members::{
    AddedMember, add_member, list_members, remove_member, update_member,
};
use keel_application::tracking::projects::{
    create_project, delete_project, get_project, list_projects, update_project,
};
use keel_application::tracking::views::{LabelView, MemberView, ProjectView};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::conditional::{ETag, expected_versions, respond_with_etag};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::pagination::{ActivityPage, CursorParams, LabelPage, MemberPage, PageParams, ProjectPage};
use crate::state::AppState;

/// A project's tag covers the caller's role too: `myRole` is part of the body.
pub fn project_etag(view: &ProjectView) -> ETag {
    ETag::from_version(format!("{}:{}", view.id, view.my_role), view.version)
}

/// 201 with `Location` (and the resource's `ETag` when it has one).
pub fn created<T: serde::Serialize>(location: String, etag: Option<ETag>, body: &T) -> HttpResponse {
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, location));
    if let Some(tag) = etag {
        response.insert_header((header::ETAG, tag.as_str().to_owned()));
    }
    response.json(body)
}

/// 200 with the resource and its `ETag` (after a write: no `If-None-Match` logic).
pub fn ok_with_etag<T: serde::Serialize>(etag: &ETag, body: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag.as_str().to_owned()))
        .json(body)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectListParams {
    #[param(inline, value_type = Option<String>, pattern = "^(active|completed|archived)$")]
    pub status: Option<String>,
    /// Substring of the name or key, case-insensitive.
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// `name`, `createdAt` or `updatedAt`, `-` in front for descending; default `-createdAt`.
    #[param(inline, value_type = Option<String>, pattern = "^-?(name|createdAt|updatedAt)$")]
    pub sort: Option<String>,
}

/// The caller's projects (instance admins: every project).
#[utoipa::path(
    get, path = "/api/v1/projects", operation_id = "listProjects", tag = "projects", security(("bearerAuth" = [])),
    params(PageParams, ProjectListParams),
    responses(
        (status = 200, description = "One page of the caller's projects", body = ProjectPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody)
    )
)]
pub async fn list_projects_route(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<PageParams>,
    params: web::Query<ProjectListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    let ProjectListParams { status, q, sort } = params.into_inner();
    let query = ProjectListQuery { status, q, sort };
    Ok(HttpResponse::Ok().json(list_projects(&state.tracking, &user.0, query, page).await?))
}

/// Creates a project; the caller becomes its owner.
#[utoipa::path(
    post, path = "/api/v1/projects", operation_id = "createProject", tag = "projects", security(("bearerAuth" = [])),
    request_body = CreateProjectBody,
    responses(
        (status = 201, description = "The new project, owned by the caller", body = ProjectView,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 409, description = "The key is taken", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_project_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<CreateProjectBody>,
) -> Result<HttpResponse, ApiError> {
    let view = create_project(&state.tracking, &user.0, body.into_inner(), &ctx.0).await?;
    Ok(created(
        format!("/api/v1/projects/{}", view.id),
        Some(project_etag(&view)),
        &view,
    ))
}

/// One project. Non-members get 404.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}", operation_id = "getProject", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("If-None-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The project, with the caller's role in it", body = ProjectView,
            headers(("ETag" = String))),
        (status = 304, description = response::NOT_MODIFIED),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn get_project_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let view = get_project(&state.tracking, &user.0, id.into_inner()).await?;
    Ok(respond_with_etag(&req, &project_etag(&view), &view))
}

/// Changes name, description or status (project admins). Honours `If-Match`.
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}", operation_id = "updateProject", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateProjectBody,
    responses(
        (status = 200, description = "The changed project", body = ProjectView, headers(("ETag" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 409, description = response::CONCURRENT, body = ErrorBody),
        (status = 412, description = response::PRECONDITION_FAILED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_project_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<UpdateProjectBody>,
) -> Result<HttpResponse, ApiError> {
    let expect = expected_versions(&req);
    let view = update_project(
        &state.tracking,
        &user.0,
        id.into_inner(),
        body.into_inner(),
        expect,
        &ctx.0,
    )
    .await?;
    Ok(ok_with_etag(&project_etag(&view), &view))
}

/// Deletes the project and everything in it (its owner or an instance admin).
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}", operation_id = "deleteProject", tag = "projects", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted, with everything in it"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: only the owner or an instance admin deletes a project", body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn delete_project_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    delete_project(&state.tracking, &user.0, id.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The project's members, oldest first.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/members", operation_id = "listProjectMembers", tag = "members",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "One page of the project's members", body = MemberPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_members_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    Ok(HttpResponse::Ok().json(list_members(&state.tracking, &user.0, id.into_inner(), page).await?))
}

/// Adds an account as `admin`, `member` or `viewer` (project admins) — directly when the
/// caller can already see it (it is a member of a project the caller is a member of; an
/// instance admin sees every account). Any other address is invited instead, as
/// `POST /projects/{id}/invitations` does: 202 with the invitation, the same answer whether
/// or not the address has an account, so the route tells nobody which accounts exist.
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/members", operation_id = "addMember", tag = "members", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = AddMemberBody,
    responses(
        (status = 201, description = "The new member: an account the caller shares a project with", body = MemberView,
            headers(("Location" = String))),
        (status = 202, description = "Invited instead (the address is not an account the caller shares a project \
            with, or no account at all): the invitation, as `createInvitation` answers it; the address joins when it \
            accepts", body = InvitationView,
            headers(("Location" = String, description = "The invitation (`DELETE` withdraws it)"))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn add_member_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<AddMemberBody>,
) -> Result<HttpResponse, ApiError> {
    let project = id.into_inner();
    match add_member(&state.tracking, &user.0, project, body.into_inner(), &ctx.0).await? {
        AddedMember::Added(view) => {
            let location = format!("/api/v1/projects/{project}/members/{}", view.user_id);
            Ok(created(location, None, &view))
        }
        AddedMember::Invited(view) => {
            let location = format!("/api/v1/projects/{project}/invitations/{}", view.id);
            Ok(HttpResponse::Accepted()
                .insert_header((header::LOCATION, location))
                .json(view))
        }
    }
}

/// Changes a member's role; `owner` hands the project over (its owner only).
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}/members/{userId}", operation_id = "updateMember", tag = "members",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)), request_body = UpdateMemberBody,
    responses(
        (status = 200, description = "The member with the new role", body = MemberView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such member", body = ErrorBody),
        (status = 409, description = "The owner's role changes only by handing ownership over", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_member_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject<UpdateMemberBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, member) = path.into_inner();
    let view = update_member(
        &state.tracking,
        &user.0,
        project,
        member,
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Removes a member (project admins), or leaves the project (yourself). Their tasks in the
/// project are unassigned; the owner cannot be removed.
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}/members/{userId}", operation_id = "removeMember", tag = "members",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such member", body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the owner cannot be removed; hand ownership over first", body = ErrorBody)
    )
)]
pub async fn remove_member_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, member) = path.into_inner();
    remove_member(&state.tracking, &user.0, project, member, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The project's labels, by name.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/labels", operation_id = "listProjectLabels", tag = "labels",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "One page of the project's labels", body = LabelPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn list_labels_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page.validate()?;
    Ok(HttpResponse::Ok().json(list_labels(&state.tracking, &user.0, id.into_inner(), page).await?))
}

/// Creates a label (project admins).
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/labels", operation_id = "createLabel", tag = "labels", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path)), request_body = CreateLabelBody,
    responses(
        (status = 201, description = "The new label", body = LabelView, headers(("Location" = String))),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn create_label_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: JsonObject<CreateLabelBody>,
) -> Result<HttpResponse, ApiError> {
    let project = id.into_inner();
    let view = create_label(&state.tracking, &user.0, project, body.into_inner(), &ctx.0).await?;
    Ok(created(
        format!("/api/v1/projects/{project}/labels/{}", view.id),
        None,
        &view,
    ))
}

/// Renames or recolours a label (project admins); a rename shows on every task carrying it,
/// each with a new version.
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}/labels/{labelId}", operation_id = "updateLabel", tag = "labels",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("labelId" = Uuid, Path)), request_body = UpdateLabelBody,
    responses(
        (status = 200, description = "The label as it is now", body = LabelView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such label in it", body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the project has another label of this name", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_label_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject<UpdateLabelBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, label) = path.into_inner();
    let view = update_label(
        &state.tracking,
        &user.0,
        project,
        label,
        body.into_inner(),
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a label and takes it off every task (project admins).
#[utoipa::path(
    delete, path = "/api/v1/projects/{id}/labels/{labelId}", operation_id = "deleteLabel", tag = "labels",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), ("labelId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted and taken off every task"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ROLE_FORBIDS, body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such label in it", body = ErrorBody)
    )
)]
pub async fn delete_label_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, label) = path.into_inner();
    delete_label(&state.tracking, &user.0, project, label, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The project's activity feed: its audit entries, newest first.
#[utoipa::path(
    get, path = "/api/v1/projects/{id}/activity", operation_id = "listProjectActivity", tag = "projects",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path), CursorParams),
    responses(
        (status = 200, description = "One page of the project's activity, newest first", body = ActivityPage),
        (status = 400, description = response::INVALID_LIST, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = response::NO_PROJECT, body = ErrorBody)
    )
)]
pub async fn activity_route(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    cursor: web::Query<CursorParams>,
) -> Result<HttpResponse, ApiError> {
    let cursor = cursor.validate()?;
    Ok(HttpResponse::Ok().json(list_activity(&state.tracking, &user.0, id.into_inner(), cursor).await?))
}
