//! The route table: every endpoint of the service, registered in one place.
//!
//! Routes are registered with `web::resource(path).route(...)` rather than actix's
//! `#[get]` macros, so a known path with a wrong method answers 405 with `Allow` (the
//! macros answer 404). The same table feeds the test that every registered route is in the
//! OpenAPI document and every documented route is registered.

pub mod admin;
pub mod auth;
pub mod events;
pub mod ops;
pub mod projects;
pub mod tasks;
pub mod webhooks;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, Route, web};

use crate::error::ApiError;

/// One method on one path. `path` uses the same `{param}` syntax as actix and OpenAPI.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    route: fn() -> Route,
}

macro_rules! endpoint {
    ($method:ident $path:literal => $handler:path) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            route: || web::route().to($handler),
        }
    };
}

/// The `POST` routes that create a resource: they honour `Idempotency-Key` (SPEC §3).
/// `POST /auth/register` is left out on purpose: replaying it would mean storing the issued
/// tokens (see `docs/api-conventions.md`).
pub const IDEMPOTENT_CREATES: &[&str] = &[
    "/api/v1/projects",
    "/api/v1/projects/{id}/members",
    "/api/v1/projects/{id}/labels",
    "/api/v1/projects/{id}/tasks",
    "/api/v1/tasks/{id}/comments",
];

/// Every endpoint. A new route is added here and documented with `#[utoipa::path]` in
/// `crate::openapi`; `routes_and_document_agree` fails when either is forgotten.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!(GET "/health" => ops::health),
        endpoint!(GET "/ready" => ops::ready),
        endpoint!(GET "/metrics" => ops::metrics),
        endpoint!(GET "/api/v1/openapi.json" => ops::openapi_json),
        endpoint!(POST "/api/v1/auth/register" => auth::register_route),
        endpoint!(POST "/api/v1/auth/login" => auth::login_route),
        endpoint!(POST "/api/v1/auth/refresh" => auth::refresh_route),
        endpoint!(POST "/api/v1/auth/logout" => auth::logout_route),
        endpoint!(POST "/api/v1/auth/logout-all" => auth::logout_all_route),
        endpoint!(GET "/api/v1/auth/profile" => auth::profile_route),
        endpoint!(PATCH "/api/v1/auth/profile" => auth::update_profile_route),
        endpoint!(POST "/api/v1/auth/password" => auth::change_password_route),
        endpoint!(GET "/api/v1/auth/sessions" => auth::sessions_route),
        endpoint!(DELETE "/api/v1/auth/sessions/{id}" => auth::revoke_session_route),
        endpoint!(GET "/api/v1/admin/users" => admin::list_users_route),
        // Before `/users/{id}`: the first matching resource wins.
        endpoint!(GET "/api/v1/admin/users/metrics" => admin::users_metrics_route),
        endpoint!(GET "/api/v1/admin/users/{id}" => admin::get_user_route),
        endpoint!(PATCH "/api/v1/admin/users/{id}" => admin::update_user_route),
        endpoint!(GET "/api/v1/admin/audit-log" => admin::audit_log_route),
        endpoint!(GET "/api/v1/projects" => projects::list_projects_route),
        endpoint!(POST "/api/v1/projects" => projects::create_project_route),
        endpoint!(GET "/api/v1/projects/{id}" => projects::get_project_route),
        endpoint!(PATCH "/api/v1/projects/{id}" => projects::update_project_route),
        endpoint!(DELETE "/api/v1/projects/{id}" => projects::delete_project_route),
        endpoint!(GET "/api/v1/projects/{id}/members" => projects::list_members_route),
        endpoint!(POST "/api/v1/projects/{id}/members" => projects::add_member_route),
        endpoint!(PATCH "/api/v1/projects/{id}/members/{userId}" => projects::update_member_route),
        endpoint!(DELETE "/api/v1/projects/{id}/members/{userId}" => projects::remove_member_route),
        endpoint!(GET "/api/v1/projects/{id}/labels" => projects::list_labels_route),
        endpoint!(POST "/api/v1/projects/{id}/labels" => projects::create_label_route),
        endpoint!(DELETE "/api/v1/projects/{id}/labels/{labelId}" => projects::delete_label_route),
        endpoint!(GET "/api/v1/projects/{id}/activity" => projects::activity_route),
        endpoint!(GET "/api/v1/projects/{id}/tasks" => tasks::list_project_tasks_route),
        endpoint!(POST "/api/v1/projects/{id}/tasks" => tasks::create_task_route),
        endpoint!(GET "/api/v1/tasks" => tasks::list_tasks_route),
        // One resource for both: `{idOrIdentifier}` and `{id}` are the same segment.
        endpoint!(GET "/api/v1/tasks/{id}" => tasks::get_task_route),
        endpoint!(PATCH "/api/v1/tasks/{id}" => tasks::update_task_route),
        endpoint!(DELETE "/api/v1/tasks/{id}" => tasks::delete_task_route),
        endpoint!(GET "/api/v1/tasks/{id}/comments" => tasks::list_comments_route),
        endpoint!(POST "/api/v1/tasks/{id}/comments" => tasks::create_comment_route),
        endpoint!(PATCH "/api/v1/comments/{id}" => tasks::update_comment_route),
        endpoint!(DELETE "/api/v1/comments/{id}" => tasks::delete_comment_route),
        endpoint!(GET "/api/v1/projects/{id}/webhooks" => webhooks::list_webhooks_route),
        endpoint!(POST "/api/v1/projects/{id}/webhooks" => webhooks::create_webhook_route),
        endpoint!(GET "/api/v1/projects/{id}/webhooks/{webhookId}" => webhooks::get_webhook_route),
        endpoint!(PATCH "/api/v1/projects/{id}/webhooks/{webhookId}" => webhooks::update_webhook_route),
        endpoint!(DELETE "/api/v1/projects/{id}/webhooks/{webhookId}" => webhooks::delete_webhook_route),
        endpoint!(GET "/api/v1/projects/{id}/webhooks/{webhookId}/deliveries" => webhooks::list_deliveries_route),
        endpoint!(POST "/api/v1/projects/{id}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver" => webhooks::redeliver_route),
        endpoint!(GET "/api/v1/events" => events::events_route),
    ]
}

/// Registers the table: one resource per path, its methods as guarded routes, and a 405
/// with `Allow` for any other method.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let endpoints = endpoints();
    let mut paths: Vec<&'static str> = Vec::new();
    for e in &endpoints {
        if !paths.contains(&e.path) {
            paths.push(e.path);
        }
    }
    for path in paths {
        let on_path: Vec<&Endpoint> = endpoints.iter().filter(|e| e.path == path).collect();
        let allow = on_path
            .iter()
            .map(|e| e.method.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(path);
        for e in on_path {
            resource = resource.route((e.route)().method(e.method.clone()));
        }
        resource = resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        }));
        cfg.service(resource);
    }
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Any path no route matches: 404 in the contract's shape.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
