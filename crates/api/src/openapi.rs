//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Keel API",
        description = "Self-hostable project and task tracking. Errors always use the `ErrorBody` shape; \
        every response carries `X-Request-Id`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        routes::ops::health,
        routes::ops::ready,
        routes::ops::metrics,
        routes::ops::openapi_json,
        routes::auth::register_route,
        routes::auth::login_route,
        routes::auth::refresh_route,
        routes::auth::logout_route,
        routes::auth::logout_all_route,
        routes::auth::profile_route,
        routes::auth::update_profile_route,
        routes::auth::change_password_route,
        routes::auth::sessions_route,
        routes::auth::revoke_session_route,
        routes::admin::list_users_route,
        routes::admin::users_metrics_route,
        routes::admin::get_user_route,
        routes::admin::update_user_route,
        routes::admin::audit_log_route,
        routes::projects::list_projects_route,
        routes::projects::create_project_route,
        routes::projects::get_project_route,
        routes::projects::update_project_route,
        routes::projects::delete_project_route,
        routes::projects::list_members_route,
        routes::projects::add_member_route,
        routes::projects::update_member_route,
        routes::projects::remove_member_route,
        routes::projects::list_labels_route,
        routes::projects::create_label_route,
        routes::projects::delete_label_route,
        routes::projects::activity_route,
        routes::tasks::list_project_tasks_route,
        routes::tasks::create_task_route,
        routes::tasks::list_tasks_route,
        routes::tasks::get_task_route,
        routes::tasks::update_task_route,
        routes::tasks::delete_task_route,
        routes::tasks::list_comments_route,
        routes::tasks::create_comment_route,
        routes::tasks::update_comment_route,
        routes::tasks::delete_comment_route,
        routes::webhooks::list_webhooks_route,
        routes::webhooks::create_webhook_route,
        routes::webhooks::get_webhook_route,
        routes::webhooks::update_webhook_route,
        routes::webhooks::delete_webhook_route,
        routes::webhooks::list_deliveries_route,
        routes::webhooks::redeliver_route,
        routes::events::events_route,
    ),
    components(schemas(ErrorBody, ErrorDetail, keel_application::pagination::PageInfo, keel_application::pagination::CursorInfo)),
    modifiers(&BearerAuth, &PolicyPatterns, &IdempotencyKeyHeader, &RateLimitHeaders),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Accounts, sign-in, tokens and sessions"),
        (name = "admin", description = "Instance administration (admins only)"),
        (name = "projects", description = "Projects and their activity feed; non-members get 404"),
        (name = "members", description = "Who belongs to a project, with which role"),
        (name = "labels", description = "A project's labels"),
        (name = "tasks", description = "Tasks, numbered per project (`KEY-12`)"),
        (name = "comments", description = "Comments on tasks"),
        (name = "webhooks", description = "Signed HTTP callbacks of a project's events, and their delivery logs"),
        (name = "events", description = "The real-time event stream (WebSocket)")
    )
)]
pub struct ApiDoc;

/// Declares the `bearerAuth` scheme (JWT access tokens) that authenticated routes use.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(scheme));
    }
}

/// Publishes the domain's input rules as patterns, from the same constants the parsers are
/// property-tested against, so the document accepts exactly what the server accepts.
#[derive(Debug)]
struct PolicyPatterns;

impl Modify for PolicyPatterns {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use keel_domain::identity::values::{NAME_PATTERN, PASSWORD_PATTERN};
        use keel_domain::text::LINE_PATTERN;
        use keel_domain::tracking::values::{
            COMMENT_BODY_PATTERN, DESCRIPTION_PATTERN, LABEL_NAME_PATTERN, PROJECT_KEY_PATTERN,
            PROJECT_NAME_PATTERN, TASK_TITLE_PATTERN,
        };
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (schema, property, pattern) in [
            ("RegisterBody", "password", PASSWORD_PATTERN),
            ("RegisterBody", "name", NAME_PATTERN),
            ("UpdateProfileBody", "name", NAME_PATTERN),
            ("ChangePasswordBody", "newPassword", PASSWORD_PATTERN),
            ("CreateProjectBody", "key", PROJECT_KEY_PATTERN),
            ("CreateProjectBody", "name", PROJECT_NAME_PATTERN),
            ("UpdateProjectBody", "name", PROJECT_NAME_PATTERN),
            ("CreateLabelBody", "name", LABEL_NAME_PATTERN),
            ("CreateTaskBody", "title", TASK_TITLE_PATTERN),
            ("UpdateTaskBody", "title", TASK_TITLE_PATTERN),
            ("CommentBodyInput", "body", COMMENT_BODY_PATTERN),
            ("CreateProjectBody", "description", DESCRIPTION_PATTERN),
            ("UpdateProjectBody", "description", DESCRIPTION_PATTERN),
            ("CreateTaskBody", "description", DESCRIPTION_PATTERN),
            ("UpdateTaskBody", "description", DESCRIPTION_PATTERN),
        ] {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
                continue;
            };
            if let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property) {
                field.pattern = Some(pattern.to_owned());
            }
        }
        // Search terms (`q`) and the audit log's `action`: the text policy's line rule.
        for item in openapi.paths.paths.values_mut() {
            let Some(parameters) = item.get.as_mut().and_then(|op| op.parameters.as_mut()) else {
                continue;
            };
            for parameter in parameters.iter_mut() {
                let RefOr::T(parameter) = parameter else {
                    continue;
                };
                let searched = matches!(parameter.name.as_str(), "q" | "action")
                    && matches!(parameter.parameter_in, utoipa::openapi::path::ParameterIn::Query);
                if let (true, Some(RefOr::T(Schema::Object(field)))) = (searched, parameter.schema.as_mut()) {
                    field.pattern = Some(LINE_PATTERN.to_owned());
                }
            }
        }
    }
}

/// Documents `Idempotency-Key` on every `POST` whose path is in
/// [`routes::IDEMPOTENT_CREATES`] (see `crate::middleware::idempotency`): the optional header
/// parameter, the 409 it can cause, the 400 of a malformed key, and `Idempotency-Replayed` on
/// the success responses. Route authors write nothing for it.
#[derive(Debug)]
pub struct IdempotencyKeyHeader;

impl Modify for IdempotencyKeyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for path in routes::IDEMPOTENT_CREATES {
            if let Some(operation) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| item.post.as_mut())
            {
                document_idempotency(operation);
            }
        }
    }
}

fn document_idempotency(operation: &mut utoipa::openapi::path::Operation) {
    use keel_domain::idempotency::{KEY_FIELD, KEY_MAX_LEN, KEY_PATTERN};
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Header, ObjectBuilder, RefOr, Required, Type};

    const MISUSED: &str = "The `Idempotency-Key` was used with another request body, or its first request is \
                           still in progress";

    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let documented = parameters
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(KEY_FIELD)));
    if !documented {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(KEY_MAX_LEN))
            .pattern(Some(KEY_PATTERN));
        parameters.push(RefOr::T(
            ParameterBuilder::new()
                .name(KEY_FIELD)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes the create safe to retry: the same key and body from the same user within 24 h \
                     returns the first (2xx) response again, with `Idempotency-Replayed: true`; the same key \
                     with another body is a 409. The body is compared byte for byte.",
                ))
                .schema(Some(schema))
                .build(),
        ));
    }

    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            let header = Header::builder()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["true"])),
                ))
                .description(Some(
                    "Present when this is the stored response of an earlier request",
                ))
                .build();
            response
                .headers
                .entry("Idempotency-Replayed".to_owned())
                .or_insert(RefOr::T(header));
        }
    }
    match responses.get_mut("409") {
        Some(RefOr::T(conflict)) if !conflict.description.contains("Idempotency-Key") => {
            conflict.description = format!("{}; or: {MISUSED}", conflict.description);
        }
        Some(_) => {}
        None => {
            responses.insert("409".to_owned(), RefOr::T(error_response(MISUSED)));
        }
    }
    responses
        .entry("400".to_owned())
        .or_insert_with(|| RefOr::T(error_response("Invalid input, or a malformed `Idempotency-Key`")));
}

/// Documents the rate limits (see `crate::middleware::rate_limit`) on every operation but the
/// exempt probes: `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` on every
/// response, and a 429 with `Retry-After`. Route authors write nothing for it.
#[derive(Debug)]
pub struct RateLimitHeaders;

impl Modify for RateLimitHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::middleware::rate_limit::EXEMPT_PATHS;
        for (path, item) in &mut openapi.paths.paths {
            if EXEMPT_PATHS.contains(&path.as_str()) {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                document_rate_limits(operation);
            }
        }
    }
}

fn document_rate_limits(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{Header, ObjectBuilder, RefOr, Type};

    const HEADERS: [(&str, &str); 3] = [
        (
            "RateLimit-Limit",
            "Requests allowed per window for this client: per user with a valid access token, else per \
             client address",
        ),
        (
            "RateLimit-Remaining",
            "Requests left in the current sliding window",
        ),
        (
            "RateLimit-Reset",
            "Seconds until every request counted so far has left the sliding window",
        ),
    ];
    let seconds = |description: &str| {
        RefOr::T(
            Header::builder()
                .schema(Some(
                    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)),
                ))
                .description(Some(description))
                .build(),
        )
    };

    let responses = &mut operation.responses.responses;
    responses.entry("429".to_owned()).or_insert_with(|| {
        RefOr::T(error_response(
            "`RATE_LIMITED`: this client has used its requests for the window; retry after `Retry-After` seconds",
        ))
    });
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        for (name, description) in HEADERS {
            response
                .headers
                .entry(name.to_owned())
                .or_insert_with(|| seconds(description));
        }
        if status == "429" {
            response
                .headers
                .entry("Retry-After".to_owned())
                .or_insert_with(|| seconds("Seconds to wait before the next request can be allowed"));
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn document_json() -> Result<String, serde_json::Error> {
    document().to_pretty_json()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::openapi::HttpMethod;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut out = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (HttpMethod::Get, &item.get),
                (HttpMethod::Post, &item.post),
                (HttpMethod::Put, &item.put),
                (HttpMethod::Patch, &item.patch),
                (HttpMethod::Delete, &item.delete),
                (HttpMethod::Head, &item.head),
                (HttpMethod::Options, &item.options),
            ];
            for (method, op) in ops {
                if op.is_some() {
                    let m = serde_json::to_value(method).unwrap();
                    out.insert((m.as_str().unwrap().to_ascii_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn routes_and_document_agree() {
        let registered: BTreeSet<(String, String)> = routes::endpoints()
            .iter()
            .map(|e| (e.method.as_str().to_owned(), e.path.to_owned()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unregistered: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "registered but missing from the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unregistered.is_empty(),
            "documented but not registered: {unregistered:?}"
        );
    }

    #[test]
    fn input_rules_are_published_as_the_domain_patterns() {
        use keel_domain::identity::values::{NAME_PATTERN, PASSWORD_PATTERN};
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        let schemas = &json["components"]["schemas"];
        assert_eq!(
            schemas["RegisterBody"]["properties"]["password"]["pattern"],
            PASSWORD_PATTERN
        );
        assert_eq!(
            schemas["RegisterBody"]["properties"]["name"]["pattern"],
            NAME_PATTERN
        );
        assert_eq!(
            schemas["UpdateProfileBody"]["properties"]["name"]["pattern"],
            NAME_PATTERN
        );
        assert_eq!(
            schemas["ChangePasswordBody"]["properties"]["newPassword"]["pattern"],
            PASSWORD_PATTERN
        );
        // Every free-text input the text policy checks says so in the document.
        for schema in [
            "CreateProjectBody",
            "UpdateProjectBody",
            "CreateTaskBody",
            "UpdateTaskBody",
        ] {
            assert_eq!(
                schemas[schema]["properties"]["description"]["pattern"],
                keel_domain::tracking::values::DESCRIPTION_PATTERN,
                "{schema}"
            );
        }
        for (path, name) in [
            ("/api/v1/projects", "q"),
            ("/api/v1/tasks", "q"),
            ("/api/v1/projects/{id}/tasks", "q"),
            ("/api/v1/admin/users", "q"),
            ("/api/v1/admin/audit-log", "action"),
        ] {
            let parameters = json["paths"][path]["get"]["parameters"].as_array().unwrap();
            let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
            assert_eq!(
                parameter["schema"]["pattern"],
                keel_domain::text::LINE_PATTERN,
                "{path} {name}"
            );
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_the_error_schema_and_bearer_scheme() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(json["components"]["schemas"]["ErrorBody"].is_object());
        assert_eq!(
            json["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
    }

    fn idempotency_applied_to(doc: serde_json::Value) -> serde_json::Value {
        let mut doc: utoipa::openapi::OpenApi = serde_json::from_value(doc).unwrap();
        IdempotencyKeyHeader.modify(&mut doc);
        serde_json::to_value(&doc).unwrap()
    }

    #[test]
    fn idempotent_creates_document_the_key_the_409_and_the_replay_header() {
        let op = |responses: serde_json::Value| serde_json::json!({"post": {"responses": responses}});
        let doc = idempotency_applied_to(serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/api/v1/projects": op(serde_json::json!({"201": {"description": "created"}})),
                "/api/v1/projects/{id}/members": op(serde_json::json!({
                    "201": {"description": "added"},
                    "409": {"description": "Already a member"}
                })),
                "/api/v1/auth/register": op(serde_json::json!({"201": {"description": "created"}}))
            }
        }));

        let projects = &doc["paths"]["/api/v1/projects"]["post"];
        let param = &projects["parameters"][0];
        assert_eq!(param["name"], "Idempotency-Key");
        assert_eq!(param["in"], "header");
        assert_eq!(param["required"], false);
        assert_eq!(param["schema"]["minLength"], 1);
        assert_eq!(param["schema"]["maxLength"], 255);
        assert_eq!(param["schema"]["pattern"], keel_domain::idempotency::KEY_PATTERN);
        assert_eq!(
            projects["responses"]["409"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(projects["responses"]["400"].is_object());
        assert!(projects["responses"]["201"]["headers"]["Idempotency-Replayed"].is_object());

        let members = &doc["paths"]["/api/v1/projects/{id}/members"]["post"]["responses"]["409"];
        let description = members["description"].as_str().unwrap();
        assert!(description.starts_with("Already a member; or: "));
        assert!(description.contains("Idempotency-Key"));

        let register = &doc["paths"]["/api/v1/auth/register"]["post"];
        assert!(register.get("parameters").is_none());
        assert!(register["responses"].get("409").is_none());
    }

    #[test]
    fn every_operation_but_the_probes_documents_the_rate_limit_headers_and_its_429() {
        use crate::middleware::rate_limit::EXEMPT_PATHS;
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        let mut checked = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                if EXEMPT_PATHS.contains(&path.as_str()) {
                    assert!(!responses.contains_key("429"), "{method} {path}");
                    continue;
                }
                checked += 1;
                let limited = &responses["429"];
                assert_eq!(
                    limited["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
                assert!(limited["headers"]["Retry-After"].is_object(), "{method} {path}");
                for (status, response) in responses {
                    for header in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                        assert_eq!(
                            response["headers"][header]["schema"]["type"], "integer",
                            "{method} {path} {status} {header}"
                        );
                    }
                }
            }
        }
        assert!(checked > 30);
    }

    #[test]
    fn every_documented_idempotent_create_takes_the_key() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        for path in routes::IDEMPOTENT_CREATES {
            let Some(post) = json["paths"][*path].get("post") else {
                continue;
            };
            let params = post["parameters"].as_array().cloned().unwrap_or_default();
            assert!(
                params.iter().any(|p| p["name"] == "Idempotency-Key"),
                "POST {path} does not document Idempotency-Key"
            );
            assert!(post["responses"]["409"].is_object(), "POST {path} lacks its 409");
        }
    }
}
