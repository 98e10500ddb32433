//! The API conventions of docs/api/conventions.md that hold for every route.

use keel_tests::{spawn_app, spawn_app_with};
use reqwest::StatusCode;

fn assert_error_shape(body: &serde_json::Value, code: &str, path: &str, request_id: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["details"].is_array(), "{body}");
    assert_eq!(body["path"], path, "{body}");
    assert_eq!(body["requestId"], request_id, "{body}");
    let timestamp = body["timestamp"].as_str().expect("a timestamp");
    assert!(timestamp.ends_with('Z'), "timestamps are UTC: {timestamp}");
    assert!(chrono_like_rfc3339(timestamp), "{timestamp}");
}

fn chrono_like_rfc3339(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/openapi.json",
        "/nowhere",
    ] {
        let response = app.get(path).await;
        let h = response.headers();
        let id = h["x-request-id"].to_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{path}: generated ids are UUIDs, got {id}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    }
}

#[tokio::test]
async fn a_sane_caller_request_id_is_echoed_and_an_unsafe_one_replaced() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-trace.42:a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-trace.42:a_b");

    for unsafe_id in ["has spaces", &"x".repeat(200), "quote\"inside"] {
        let replaced = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", unsafe_id)
            .send()
            .await
            .unwrap();
        let id = replaced.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, unsafe_id);
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_in_the_error_shape() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/does-not-exist").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_error_shape(&body, "NOT_FOUND", "/api/v1/does-not-exist", &id);
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_a_405_with_allow() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let response = app
            .client
            .request(method.clone(), app.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(response.headers()["allow"], "GET");
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_error_shape(&body, "METHOD_NOT_ALLOWED", "/health", &id);
    }
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_CORS_ORIGINS".into(), "https://app.example.com".into());
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/health"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    assert!(refused.status().is_client_error());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["code"].is_string(),
        "even CORS refusals use the error shape: {body}"
    );
}

#[tokio::test]
async fn no_cross_origin_access_is_granted_by_default() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://somewhere.example.com")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}
