//! Liveness, readiness, metrics, the OpenAPI document and the docs viewer.

use keel_tests::{spawn_app, spawn_app_with};
use reqwest::StatusCode;

#[tokio::test]
async fn health_answers_ok_with_the_version() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn ready_reports_every_dependency_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "checks": {"database": "ok", "cache": "ok"}})
    );
}

#[tokio::test]
async fn ready_is_degraded_but_200_when_redis_does_not_answer() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let app = spawn_app_with(|vars| {
        vars.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
    })
    .await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["cache"], "degraded");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn a_database_that_is_down_gives_a_fast_503_not_a_hang_or_a_500() {
    let app = spawn_app_with(|vars| {
        vars.insert(
            "DATABASE_URL".into(),
            "postgres://keel:keel@127.0.0.1:1/keel".into(),
        );
        vars.insert("KEEL_AUTO_MIGRATE".into(), "false".into());
        vars.insert("KEEL_DB_CONNECT_TIMEOUT_SECS".into(), "1".into());
        vars.insert("KEEL_DB_ACQUIRE_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    // The client's timeout is a guard against a hang, not a performance assertion.
    let response = app
        .client
        .get(app.url("/ready"))
        .timeout(std::time::Duration::from_secs(15))
        .send()
        .await
        .expect("/ready must answer, not hang");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"], "down");

    // Liveness does not depend on the database.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_use_route_patterns_and_count_database_queries() {
    let app = spawn_app().await;
    app.get("/health").await;
    app.get("/ready").await;
    app.get("/no/such/route/123").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/health",status_code="200"} 1"#,
        r#"http_requests_total{method="GET",route="unmatched",status_code="404"} 1"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/ready",status_code="200",le="0.001"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/ready",status_code="200",le="5"}"#,
        r#"db_query_duration_seconds_count{operation="select",origin="request",table="none"}"#,
        "db_connections_active",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(
        !text.contains("/no/such/route/123"),
        "raw paths must never be labels"
    );
}

#[tokio::test]
async fn openapi_document_is_served_as_openapi_3_1() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/health", "/ready", "/metrics", "/api/v1/openapi.json"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} is not documented");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn docs_viewer_is_served_from_the_binary_with_no_internet() {
    let app = spawn_app().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page must not load anything from the internet"
    );

    // The bundle the page loads is vendored into the binary.
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(
            response.bytes().await.unwrap().len() > 10_000,
            "{asset} looks empty"
        );
    }
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
}
