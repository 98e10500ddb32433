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
    ),
    components(schemas(ErrorBody, ErrorDetail, keel_application::pagination::PageInfo, keel_application::pagination::CursorInfo)),
    modifiers(&BearerAuth, &PolicyPatterns),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Accounts, sign-in, tokens and sessions"),
        (name = "admin", description = "Instance administration (admins only)")
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
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (schema, property, pattern) in [
            ("RegisterBody", "password", PASSWORD_PATTERN),
            ("RegisterBody", "name", NAME_PATTERN),
            ("UpdateProfileBody", "name", NAME_PATTERN),
            ("ChangePasswordBody", "newPassword", PASSWORD_PATTERN),
        ] {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
                continue;
            };
            if let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property) {
                field.pattern = Some(pattern.to_owned());
            }
        }
    }
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
}
