//! The route table: every endpoint of the service, registered in one place.
//!
//! Each entry names a handler; its `#[utoipa::path]` annotation gives the method and the
//! path, and the entry declares what else the route does ([`RouteFlags`]). The router, the
//! OpenAPI document and the route middleware all read this one table.
//!
//! Routes are registered with `web::resource(path).route(...)` rather than actix's
//! `#[get]` macros, so a known path with a wrong method answers 405 with `Allow` (the
//! macros answer 404).

pub mod admin;
pub mod auth;
pub mod bulk;
pub mod events;
pub mod history;
pub mod invitations;
pub mod lifecycle;
pub mod links;
pub mod notifications;
pub mod ops;
pub mod projects;
pub mod relations;
pub mod search;
pub mod states;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

use std::sync::LazyLock;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, Route, web};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::{RefOr, Schema};

use crate::error::ApiError;
use crate::middleware::RoutePattern;
use crate::middleware::idempotency;

/// What a route does besides its handler, declared on its table entry and applied where
/// the route is registered, so that nothing looks the route up per request.
///
/// A new flag is a field here, a builder method on [`Endpoint`], and one line in
/// [`RouteFlags::apply`] (a route middleware, typically) and/or in the document
/// (`crate::openapi`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteFlags {
    /// A `POST` that creates: it honours `Idempotency-Key` (see
    /// `crate::middleware::idempotency` and `docs/api/conventions.md`).
    pub idempotent: bool,
}

impl RouteFlags {
    /// The route with its flags' middleware: what runs between routing and the handler.
    fn apply(self, route: Route) -> Route {
        if self.idempotent {
            route.wrap(from_fn(idempotency))
        } else {
            route
        }
    }
}

/// The schemas an operation references, as utoipa collects them.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// One operation: a handler and its `#[utoipa::path]` annotation, which alone gives the
/// method, the path (`{param}` syntax, the same for actix and OpenAPI), the operation and
/// the schemas it references. Build it with [`route!`]; add flags with the builder methods.
#[derive(Clone)]
pub struct Endpoint {
    method: Method,
    path: String,
    flags: RouteFlags,
    handler: fn() -> Route,
    /// The annotation's methods: exactly one (a test checks).
    methods: fn() -> Vec<HttpMethod>,
    operation: fn() -> Operation,
    schemas: fn(&mut Schemas),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The entry of the handler whose annotation generated `P` (`__path_<handler>`).
    /// `handler` registers the handler itself (see [`route!`]).
    pub fn of<P>(handler: fn() -> Route) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
    {
        Self {
            method: P::methods().first().map_or(Method::GET, actix_method),
            path: P::path(),
            flags: RouteFlags::default(),
            handler,
            methods: P::methods,
            operation: operation_with_tags::<P>,
            schemas: <P as utoipa::__dev::SchemaReferences>::schemas,
        }
    }

    /// Honours `Idempotency-Key`: a replayed create returns the first response.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.flags.idempotent = true;
        self
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn flags(&self) -> RouteFlags {
        self.flags
    }

    /// Every method the annotation declares (the route serves the first; a test checks
    /// there is exactly one).
    pub fn declared_methods(&self) -> Vec<HttpMethod> {
        (self.methods)()
    }

    /// The OpenAPI method, for the document.
    pub fn http_method(&self) -> HttpMethod {
        openapi_method(&self.method)
    }

    /// The documented operation, tags included, as the annotation declares it.
    pub fn operation(&self) -> Operation {
        (self.operation)()
    }

    /// Adds the schemas the operation references to `schemas`.
    pub fn schemas(&self, schemas: &mut Schemas) {
        (self.schemas)(schemas);
    }

    /// The actix route: the handler, its method guard and its flags' middleware.
    fn route(&self) -> Route {
        self.flags.apply((self.handler)().method(self.method.clone()))
    }
}

fn operation_with_tags<P: utoipa::Path + utoipa::__dev::Tags<'static>>() -> Operation {
    let mut operation = P::operation();
    let tags = P::tags();
    if !tags.is_empty() {
        operation
            .tags
            .get_or_insert_with(Vec::new)
            .extend(tags.into_iter().map(str::to_owned));
    }
    operation
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

fn openapi_method(method: &Method) -> HttpMethod {
    match *method {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::OPTIONS => HttpMethod::Options,
        Method::HEAD => HttpMethod::Head,
        Method::PATCH => HttpMethod::Patch,
        Method::TRACE => HttpMethod::Trace,
        _ => HttpMethod::Get,
    }
}

/// The [`Endpoint`] of a handler annotated with `#[utoipa::path]`:
/// `route!(projects::create_project_route)`.
macro_rules! route {
    ($module:ident :: $handler:ident) => {
        pastey::paste! {
            Endpoint::of::<$module::[<__path_ $handler>]>(|| web::route().to($module::$handler))
        }
    };
}

/// Every endpoint of the service, once. The router ([`configure`]), the OpenAPI document's
/// paths and schemas (`crate::openapi::document`) and every per-route behaviour
/// ([`RouteFlags`]) come from this table; a handler is added here and nowhere else.
///
/// Order matters where two paths could match the same request: the first resource wins.
fn table() -> Vec<Endpoint> {
    vec![
        route!(ops::health),
        route!(ops::ready),
        route!(ops::metrics),
        route!(ops::openapi_json),
        route!(auth::register_route),
        route!(auth::login_route),
        route!(auth::refresh_route),
        route!(auth::logout_route),
        route!(auth::logout_all_route),
        route!(auth::profile_route),
        route!(auth::update_profile_route),
        route!(auth::change_password_route),
        route!(auth::forgot_password_route),
        route!(auth::reset_password_route),
        route!(auth::verify_email_route),
        route!(auth::resend_verification_route),
        route!(auth::sessions_route),
        route!(auth::revoke_session_route),
        route!(auth::export_account_route),
        route!(auth::erase_account_route),
        // Not idempotent: replaying it would mean storing the token, shown once.
        route!(tokens::create_token_route),
        route!(tokens::list_tokens_route),
        route!(tokens::delete_token_route),
        route!(tokens::list_user_tokens_route),
        route!(tokens::delete_user_token_route),
        route!(admin::list_users_route),
        route!(admin::create_user_route).idempotent(),
        // Before `/users/{id}`: the first matching resource wins.
        route!(admin::users_metrics_route),
        route!(admin::get_user_route),
        route!(admin::update_user_route),
        route!(admin::erase_user_route),
        route!(admin::audit_log_route),
        route!(projects::list_projects_route),
        route!(projects::create_project_route).idempotent(),
        route!(projects::get_project_route),
        route!(projects::update_project_route),
        route!(projects::delete_project_route),
        route!(projects::list_members_route),
        route!(projects::add_member_route).idempotent(),
        route!(projects::update_member_route),
        route!(projects::remove_member_route),
        route!(invitations::create_invitation_route).idempotent(),
        route!(invitations::list_invitations_route),
        route!(invitations::delete_invitation_route),
        route!(invitations::list_my_invitations_route),
        route!(invitations::accept_invitation_route),
        route!(projects::list_labels_route),
        route!(projects::create_label_route).idempotent(),
        route!(projects::update_label_route),
        route!(projects::delete_label_route),
        route!(states::list_states_route),
        route!(states::create_state_route).idempotent(),
        route!(states::update_state_route),
        route!(states::delete_state_route),
        route!(projects::activity_route),
        route!(tasks::list_project_tasks_route),
        route!(tasks::create_task_route).idempotent(),
        route!(tasks::list_tasks_route),
        // Before `/tasks/{id}`: the first matching resource wins. Idempotent although it
        // creates nothing: a retried bulk request must not apply its action twice.
        route!(bulk::bulk_tasks_route).idempotent(),
        // `{id}` is a task id or its identifier (`KEEL-12`): one segment, one resource.
        route!(tasks::get_task_route),
        route!(tasks::list_task_children_route),
        route!(tasks::update_task_route),
        route!(tasks::delete_task_route),
        route!(lifecycle::archive_task_route),
        route!(lifecycle::unarchive_task_route),
        route!(lifecycle::restore_task_route),
        route!(lifecycle::list_project_trash_route),
        route!(history::list_task_history_route),
        route!(tasks::list_comments_route),
        route!(tasks::create_comment_route).idempotent(),
        route!(tasks::update_comment_route),
        route!(tasks::delete_comment_route),
        route!(links::list_links_route),
        route!(links::create_link_route).idempotent(),
        route!(links::delete_link_route),
        route!(relations::list_relations_route),
        route!(relations::create_relation_route).idempotent(),
        route!(relations::delete_relation_route),
        route!(search::search_route),
        route!(webhooks::list_webhooks_route),
        // Not idempotent: replaying it would mean storing the signing secret, shown once.
        route!(webhooks::create_webhook_route),
        route!(webhooks::get_webhook_route),
        route!(webhooks::update_webhook_route),
        route!(webhooks::delete_webhook_route),
        route!(webhooks::list_deliveries_route),
        route!(webhooks::redeliver_route),
        route!(events::events_route),
        route!(events::events_log_route),
        route!(notifications::subscribe_route),
        route!(notifications::unsubscribe_route),
        route!(notifications::list_notifications_route),
        route!(notifications::unread_count_route),
        route!(notifications::mark_read_route),
    ]
}

/// The route table, built once.
pub fn endpoints() -> &'static [Endpoint] {
    static TABLE: LazyLock<Vec<Endpoint>> = LazyLock::new(table);
    &TABLE
}

/// Registers the table: one resource per path, its methods as guarded routes (with their
/// flags' middleware), and a 405 with `Allow` for any other method.
///
/// Paths under `/api/v1/<collection>` are grouped in one scope per collection: the router
/// compares a static prefix to pick the scope and then tries only that collection's
/// patterns, instead of matching the request against every pattern of the table in turn.
/// A path no resource of its scope matches falls through to the app's default (404).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let endpoints = endpoints();
    let mut paths: Vec<&'static str> = Vec::new();
    for e in endpoints {
        if !paths.contains(&e.path()) {
            paths.push(e.path());
        }
    }
    let mut scopes: Vec<(&'static str, Vec<actix_web::Resource>)> = Vec::new();
    for path in paths {
        let methods = resource_of(endpoints, path);
        match scope_of(path) {
            Some((prefix, rest)) => {
                let resource = resource_at(rest, path, methods);
                match scopes.iter_mut().find(|(p, _)| *p == prefix) {
                    Some((_, resources)) => resources.push(resource),
                    None => scopes.push((prefix, vec![resource])),
                }
            }
            None => {
                cfg.service(resource_at(path, path, methods));
            }
        }
    }
    for (prefix, resources) in scopes {
        let scope = resources
            .into_iter()
            .fold(web::scope(prefix), |scope, resource| scope.service(resource));
        cfg.service(scope);
    }
}

/// The scope of a path under the API's base (`/api/v1/tasks/{id}` → `/api/v1/tasks` and
/// `/{id}`); `None` for paths outside it.
fn scope_of(path: &'static str) -> Option<(&'static str, &'static str)> {
    let base = "/api/v1/";
    let rest = path.strip_prefix(base)?;
    let end = base.len() + rest.find('/').unwrap_or(rest.len());
    let (prefix, rest) = path.split_at(end);
    // A collection named by a parameter cannot be a static prefix.
    (!prefix.contains('{')).then_some((prefix, rest))
}

/// The methods served at `path`, and the `Allow` list of its 405.
fn resource_of(endpoints: &'static [Endpoint], path: &'static str) -> (Vec<&'static Endpoint>, String) {
    let on_path: Vec<&Endpoint> = endpoints.iter().filter(|e| e.path() == path).collect();
    let allow = on_path
        .iter()
        .map(|e| e.method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    (on_path, allow)
}

/// The resource at `at` (relative to its scope) serving `path`'s methods.
fn resource_at(
    at: &'static str,
    path: &'static str,
    (on_path, allow): (Vec<&'static Endpoint>, String),
) -> actix_web::Resource {
    let mut resource = web::resource(at).app_data(RoutePattern(path));
    for e in on_path {
        resource = resource.route(e.route());
    }
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { method_not_allowed(&allow) }
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `POST` creates that do not honour `Idempotency-Key`, and why.
    const NOT_IDEMPOTENT: [(&str, &str); 3] = [
        (
            "/api/v1/auth/register",
            "replaying it would mean storing the issued tokens",
        ),
        (
            "/api/v1/auth/tokens",
            "replaying it would mean storing the personal access token",
        ),
        (
            "/api/v1/projects/{id}/webhooks",
            "replaying it would mean storing the signing secret",
        ),
    ];

    /// `POST`s that create nothing but honour `Idempotency-Key` all the same, and why.
    const IDEMPOTENT_NON_CREATES: [(&str, &str); 1] = [(
        "/api/v1/tasks/bulk",
        "a retried bulk request must not apply its action to its tasks twice",
    )];

    #[test]
    fn paths_under_the_base_are_grouped_by_their_collection() {
        assert_eq!(scope_of("/api/v1/tasks/{id}"), Some(("/api/v1/tasks", "/{id}")));
        assert_eq!(scope_of("/api/v1/projects"), Some(("/api/v1/projects", "")));
        assert_eq!(scope_of("/health"), None);
    }

    #[test]
    fn every_annotation_declares_one_method() {
        for e in endpoints() {
            assert_eq!(e.declared_methods().len(), 1, "{} {}", e.method(), e.path());
        }
    }

    #[test]
    fn every_post_that_creates_is_idempotent_unless_exempted_and_only_those() {
        let mut exempted = Vec::new();
        for e in endpoints() {
            let operation = e.operation();
            let creates = *e.method() == Method::POST
                && operation
                    .responses
                    .responses
                    .get("201")
                    .is_some_and(|r| matches!(r, RefOr::T(r) if r.headers.contains_key("Location")));
            let label = format!("{} {}", e.method(), e.path());
            let exemption = NOT_IDEMPOTENT.iter().find(|(path, _)| *path == e.path());
            let extra = IDEMPOTENT_NON_CREATES.iter().find(|(path, _)| *path == e.path());
            if let (Some((_, why)), &Method::POST) = (extra, e.method()) {
                assert!(
                    !creates,
                    "{label} is listed as creating nothing ({why}) but creates"
                );
                assert!(e.flags().idempotent, "{label} is listed ({why}) but not flagged");
                continue;
            }
            if let (Some((_, why)), &Method::POST) = (exemption, e.method()) {
                assert!(creates, "{label} is exempted ({why}) but creates nothing");
                assert!(!e.flags().idempotent, "{label} is exempted ({why}) but flagged");
                exempted.push(e.path());
            } else {
                assert_eq!(
                    e.flags().idempotent,
                    creates,
                    "{label}: a POST answering 201 with Location must be flagged `.idempotent()` \
                     (or exempted here with a reason), and only such a POST"
                );
            }
        }
        assert_eq!(
            exempted.len(),
            NOT_IDEMPOTENT.len(),
            "an exemption names no route"
        );
    }
}
