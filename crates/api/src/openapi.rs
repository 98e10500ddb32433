//! The OpenAPI 3.1 document, generated from the route table (`crate::routes`): each
//! entry's `#[utoipa::path]` annotation gives its operation and schemas, its flags what the
//! route does besides (`Idempotency-Key`), and the modifiers below what every route shares.

use utoipa::openapi::path::{PathItem, PathsBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes;

/// Descriptions of responses that mean the same on every operation that has them, for
/// `#[utoipa::path]` (`description = response::UNAUTHORIZED`). Where a status means
/// something specific to an operation, the annotation says so in its own words.
pub mod response {
    pub const INVALID: &str =
        "`VALIDATION_ERROR`: the body or a parameter is invalid; `details` names each field";
    pub const INVALID_ID: &str = "`VALIDATION_ERROR`: an id in the path is not a UUID";
    pub const INVALID_LIST: &str = "`VALIDATION_ERROR`: a filter, the sort, `page`, `limit` or `cursor` is invalid; `details` names each";
    pub const UNAUTHORIZED: &str =
        "`UNAUTHORIZED` (no access token, or a malformed or revoked one) or `TOKEN_EXPIRED`";
    pub const ACCOUNT_DISABLED: &str = "`ACCOUNT_DISABLED`: the caller's account is disabled, or `INSUFFICIENT_SCOPE`: \
        a personal access token whose scopes do not cover this route";
    pub const NOT_ADMIN: &str = "`FORBIDDEN`: the caller is not an instance admin (or `ACCOUNT_DISABLED`), or \
        `INSUFFICIENT_SCOPE`: a personal access token without the `admin` scope";
    pub const ROLE_FORBIDS: &str = "`FORBIDDEN`: the caller's role in the project does not allow this (or \
        `ACCOUNT_DISABLED`), or `INSUFFICIENT_SCOPE`: a personal access token whose scopes do not cover this route";
    pub const NO_PROJECT: &str = "`NOT_FOUND`: no such project, or the caller is not a member of it";
    pub const NO_TASK: &str = "`NOT_FOUND`: no such task in a project the caller is a member of";
    pub const NO_COMMENT: &str = "`NOT_FOUND`: no such comment in a project the caller is a member of";
    pub const NO_WEBHOOK: &str =
        "`NOT_FOUND`: no such project (or the caller is not a member of it), or no such webhook in it";
    pub const NO_USER: &str = "`NOT_FOUND`: no such user";
    pub const SESSION_ONLY: &str = "`INSUFFICIENT_SCOPE`: called with a personal access token (this route needs a \
        signed-in session), or `ACCOUNT_DISABLED`";
    pub const CONCURRENT: &str = "`CONFLICT`: the resource is being changed concurrently; try again";
    pub const NOT_MODIFIED: &str = "Not modified since the tag in `If-None-Match`; no body";
    pub const PRECONDITION_FAILED: &str = "`PRECONDITION_FAILED`: changed since the tag in `If-Match`";
    pub const TOO_LARGE: &str = "`PAYLOAD_TOO_LARGE`: the body is over 1 MiB";
    /// The 429 of the routes that take a one-time token (password reset, e-mail verification).
    pub const TOKEN_GUESSES: &str = "`RATE_LIMITED`: token guesses from this client address beyond the login \
        limit (`KEEL_RATE_LIMIT_LOGIN`), or this client's general limit";
    pub const NOT_JSON: &str = "`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`";
    pub const UNAVAILABLE: &str =
        "`UNAVAILABLE`: the database or the password-hashing capacity is unavailable; retry later";
}

/// What the document holds besides the routes: its info, the shared schemas and the tags.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Keel API",
        description = "Self-hostable project and task tracking. Errors always use the `ErrorBody` shape; \
        every response carries `X-Request-Id`.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail, keel_application::pagination::PageInfo, keel_application::pagination::CursorInfo)),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Accounts, sign-in, tokens and sessions"),
        (name = "admin", description = "Instance administration (admins only)"),
        (name = "tokens", description = "Personal access tokens (`keel_pat_…`) for scripts and CI jobs"),
        (name = "projects", description = "Projects and their activity feed; non-members get 404"),
        (name = "members", description = "Who belongs to a project, with which role"),
        (name = "invitations", description = "Invitations of e-mail addresses to projects, and accepting them"),
        (name = "labels", description = "A project's labels"),
        (name = "states", description = "A project's workflow states: a task's `status` is the key of one"),
        (name = "tasks", description = "Tasks, numbered per project (`KEY-12`)"),
        (name = "comments", description = "Comments on tasks"),
        (name = "links", description = "Links on tasks, one per URL"),
        (name = "relations", description = "Relations between tasks (blocks, relates to, duplicates), shown from both sides"),
        (name = "search", description = "Full-text search over the tasks and comments the caller can see"),
        (name = "webhooks", description = "Signed HTTP callbacks of a project's events, and their delivery logs"),
        (name = "events", description = "The real-time event stream (WebSocket) and the resumable feed"),
        (name = "notifications", description = "Task subscriptions and the caller's notifications")
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
        scheme.description = Some(
            "An access token (JWT) from login, register or refresh, or a personal access token \
             (`keel_pat_…`) from `POST /api/v1/auth/tokens`. A personal access token works on the \
             routes its scopes cover (`read`: safe methods, `write`: every method, `admin`: \
             `/api/v1/admin/*`), never on the token, session, password, logout and verification-resend routes; \
             elsewhere it gets 403 `INSUFFICIENT_SCOPE`."
                .to_owned(),
        );
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(scheme));
    }
}

/// Publishes the domain's input rules as patterns, from the same constants the parsers are
/// property-tested against, so the document accepts exactly what the server accepts.
#[derive(Debug)]
struct PolicyPatterns;

/// Which property of which schema follows which domain rule. A name the document does not
/// have fails `every_policy_pattern_names_a_documented_property`.
const POLICY_PATTERNS: &[(&str, &str, &str)] = {
    use keel_domain::identity::tokens::TOKEN_NAME_PATTERN;
    use keel_domain::identity::values::{NAME_PATTERN, PASSWORD_PATTERN};
    use keel_domain::tracking::values::{
        COMMENT_BODY_PATTERN, DESCRIPTION_PATTERN, LABEL_NAME_PATTERN, LINK_TITLE_PATTERN,
        PROJECT_KEY_PATTERN, PROJECT_NAME_PATTERN, STATE_NAME_PATTERN, TASK_TITLE_PATTERN,
    };
    &[
        ("RegisterBody", "password", PASSWORD_PATTERN),
        ("RegisterBody", "name", NAME_PATTERN),
        ("CreateUserBody", "name", NAME_PATTERN),
        ("CreateTokenBody", "name", TOKEN_NAME_PATTERN),
        ("UpdateProfileBody", "name", NAME_PATTERN),
        ("ChangePasswordBody", "newPassword", PASSWORD_PATTERN),
        ("ResetPasswordBody", "newPassword", PASSWORD_PATTERN),
        ("CreateProjectBody", "key", PROJECT_KEY_PATTERN),
        ("CreateProjectBody", "name", PROJECT_NAME_PATTERN),
        ("UpdateProjectBody", "name", PROJECT_NAME_PATTERN),
        ("CreateLabelBody", "name", LABEL_NAME_PATTERN),
        ("UpdateLabelBody", "name", LABEL_NAME_PATTERN),
        ("CreateStateBody", "name", STATE_NAME_PATTERN),
        ("UpdateStateBody", "name", STATE_NAME_PATTERN),
        ("CreateTaskBody", "title", TASK_TITLE_PATTERN),
        ("UpdateTaskBody", "title", TASK_TITLE_PATTERN),
        ("BulkTaskPatch", "title", TASK_TITLE_PATTERN),
        ("CommentBodyInput", "body", COMMENT_BODY_PATTERN),
        ("CreateLinkBody", "title", LINK_TITLE_PATTERN),
        ("CreateProjectBody", "description", DESCRIPTION_PATTERN),
        ("UpdateProjectBody", "description", DESCRIPTION_PATTERN),
        ("CreateTaskBody", "description", DESCRIPTION_PATTERN),
        ("UpdateTaskBody", "description", DESCRIPTION_PATTERN),
        ("BulkTaskPatch", "description", DESCRIPTION_PATTERN),
    ]
};

impl Modify for PolicyPatterns {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for &(schema, property, pattern) in POLICY_PATTERNS {
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
                    field.pattern = Some(keel_domain::text::LINE_PATTERN.to_owned());
                }
            }
        }
    }
}

/// Documents `Idempotency-Key` on an operation flagged idempotent in the route table (see
/// `crate::middleware::idempotency`): the optional header parameter, the 409 it can cause,
/// the 400 of a malformed key, and `Idempotency-Replayed` on the success responses. Route
/// authors write nothing for it.
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
                    "Makes the request safe to retry: the same key and body from the same user within 24 h \
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

/// A safety net: OpenAPI requires a `description` on every response, and a response an
/// annotation left without one gets its status's reason phrase. The annotations are
/// expected to describe every response themselves (`every_annotated_response_is_described`
/// fails otherwise); this keeps the served document valid regardless.
#[derive(Debug)]
struct DescribeEveryResponse;

impl Modify for DescribeEveryResponse {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                for (status, response) in &mut operation.responses.responses {
                    if let RefOr::T(response) = response
                        && response.description.trim().is_empty()
                    {
                        response.description = status_reason(status);
                    }
                }
            }
        }
    }
}

fn status_reason(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .map_or_else(|| format!("Status {status}"), str::to_owned)
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

/// The document: [`ApiDoc`], every route of the table with the schemas it references, then
/// what every route shares.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let mut paths = PathsBuilder::new();
    let mut schemas = Vec::new();
    for endpoint in routes::endpoints() {
        let mut operation = endpoint.operation();
        if endpoint.flags().idempotent {
            document_idempotency(&mut operation);
        }
        paths = paths.path(endpoint.path(), PathItem::new(endpoint.http_method(), operation));
        endpoint.schemas(&mut schemas);
    }
    doc.paths = paths.build();
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    let shared: [&dyn Modify; 4] = [
        &BearerAuth,
        &PolicyPatterns,
        &RateLimitHeaders,
        &DescribeEveryResponse,
    ];
    for modifier in shared {
        modifier.modify(&mut doc);
    }
    doc
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
    fn every_route_is_documented_once_and_nothing_else_is() {
        let registered: BTreeSet<(String, String)> = routes::endpoints()
            .iter()
            .map(|e| (e.method().as_str().to_owned(), e.path().to_owned()))
            .collect();
        assert_eq!(
            registered.len(),
            routes::endpoints().len(),
            "a method and path are in the route table twice"
        );
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
    fn every_annotated_response_is_described() {
        let mut undescribed = Vec::new();
        for endpoint in routes::endpoints() {
            for (status, response) in endpoint.operation().responses.responses {
                let described = match response {
                    utoipa::openapi::RefOr::T(response) => !response.description.trim().is_empty(),
                    utoipa::openapi::RefOr::Ref(_) => true,
                };
                if !described {
                    undescribed.push(format!("{} {} {status}", endpoint.method(), endpoint.path()));
                }
            }
        }
        assert!(
            undescribed.is_empty(),
            "responses without a description in #[utoipa::path]: {undescribed:#?}"
        );
    }

    #[test]
    fn every_response_of_the_document_is_described() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        let mut count = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    count += 1;
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(!description.trim().is_empty(), "{method} {path} {status}");
                }
            }
        }
        assert!(count > 300, "{count}");
    }

    #[test]
    fn the_safety_net_describes_a_response_by_its_status() {
        let mut doc: utoipa::openapi::OpenApi = serde_json::from_value(serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/x": {"get": {"responses": {
                "404": {"description": ""},
                "200": {"description": "Kept"}
            }}}}
        }))
        .unwrap();
        DescribeEveryResponse.modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        let responses = &json["paths"]["/x"]["get"]["responses"];
        assert_eq!(responses["404"]["description"], "Not Found");
        assert_eq!(responses["200"]["description"], "Kept");
    }

    /// The verbs an operation id may start with: a generated client's method names.
    const VERBS: &[&str] = &[
        "get",
        "list",
        "create",
        "add",
        "update",
        "delete",
        "remove",
        "revoke",
        "register",
        "login",
        "logout",
        "refresh",
        "change",
        "redeliver",
        "stream",
        "archive",
        "unarchive",
        "restore",
        "search",
        "mark",
        "export",
        "erase",
        "request",
        "reset",
        "verify",
        "resend",
        "accept",
    ];

    #[test]
    fn operation_ids_are_unique_camel_case_verbs() {
        let mut seen = BTreeSet::new();
        for endpoint in routes::endpoints() {
            let label = format!("{} {}", endpoint.method(), endpoint.path());
            let id = endpoint.operation().operation_id.unwrap_or_default();
            assert!(
                seen.insert(id.clone()),
                "{label}: operationId `{id}` is used twice"
            );
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric())
                    && id.starts_with(|c: char| c.is_ascii_lowercase()),
                "{label}: operationId `{id}` is not camelCase"
            );
            let verb = VERBS.iter().find(|v| {
                id.strip_prefix(**v)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
            });
            assert!(
                verb.is_some(),
                "{label}: operationId `{id}` does not start with a verb of {VERBS:?}"
            );
        }
    }

    #[test]
    fn every_policy_pattern_names_a_documented_property() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        for &(schema, property, pattern) in POLICY_PATTERNS {
            let field = &json["components"]["schemas"][schema]["properties"][property];
            assert!(field.is_object(), "{schema}.{property} is not in the document");
            assert_eq!(field["pattern"], pattern, "{schema}.{property}");
        }
    }

    #[test]
    fn every_tag_an_operation_uses_is_declared() {
        let doc = document();
        let declared: BTreeSet<String> = doc.tags.iter().flatten().map(|t| t.name.clone()).collect();
        for endpoint in routes::endpoints() {
            let tags = endpoint.operation().tags.unwrap_or_default();
            let label = format!("{} {}", endpoint.method(), endpoint.path());
            assert!(!tags.is_empty(), "{label} has no tag");
            for tag in tags {
                assert!(
                    declared.contains(&tag),
                    "{label}: tag `{tag}` is not declared in ApiDoc"
                );
            }
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

    fn idempotency_applied_to(operation: serde_json::Value) -> serde_json::Value {
        let mut operation: utoipa::openapi::path::Operation = serde_json::from_value(operation).unwrap();
        document_idempotency(&mut operation);
        serde_json::to_value(&operation).unwrap()
    }

    #[test]
    fn idempotent_creates_document_the_key_the_409_and_the_replay_header() {
        let projects = idempotency_applied_to(serde_json::json!({
            "responses": {"201": {"description": "created"}}
        }));
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

        let members = idempotency_applied_to(serde_json::json!({"responses": {
            "201": {"description": "added"},
            "409": {"description": "Already a member"}
        }}));
        let description = members["responses"]["409"]["description"].as_str().unwrap();
        assert!(description.starts_with("Already a member; or: "));
        assert!(description.contains("Idempotency-Key"));
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
    fn exactly_the_idempotent_routes_document_the_key() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        let mut flagged = 0;
        for endpoint in routes::endpoints() {
            let method = endpoint.method().as_str().to_ascii_lowercase();
            let operation = &json["paths"][endpoint.path()][&method];
            let params = operation["parameters"].as_array().cloned().unwrap_or_default();
            let takes_key = params.iter().any(|p| p["name"] == "Idempotency-Key");
            let label = format!("{method} {}", endpoint.path());
            assert_eq!(takes_key, endpoint.flags().idempotent, "{label}");
            if endpoint.flags().idempotent {
                flagged += 1;
                assert!(operation["responses"]["409"].is_object(), "{label} lacks its 409");
            }
        }
        assert!(flagged >= 5);
    }
    #[test]
    fn the_text_policy_is_published_on_every_free_text_input() {
        let json: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        let schemas = &json["components"]["schemas"];
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
    fn every_documented_response_header_is_exposed_to_browsers() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut declared = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for response in operation["responses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.values())
                {
                    for name in response["headers"].as_object().into_iter().flat_map(|h| h.keys()) {
                        declared.insert(name.to_ascii_lowercase());
                    }
                }
            }
        }
        assert!(declared.contains("idempotency-replayed"), "{declared:?}");
        let exposed = crate::startup::EXPOSED_HEADERS;
        let missing: Vec<_> = declared
            .iter()
            .filter(|h| !exposed.contains(&h.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "documented but not exposed by CORS: {missing:?}"
        );
    }
}
