//! Regressions of the outside review (`docs/security.md`): what members may read in the
//! activity feed, the password-change limit, responses carrying a secret, strict JSON
//! bodies, webhook URL answers that reveal nothing about DNS, and `/metrics` protection.

use keel_tests::{PASSWORD, TestApp, error_fields, json_body, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A webhook URL with a secret in its path and query, as integrations often have.
const SECRET_URL: &str = "https://93.184.215.14/hooks/s3cr3t-path?token=t0ken";

#[tokio::test]
async fn the_activity_feed_shows_a_webhooks_url_to_project_admins_only() {
    let app = spawn_app().await;
    let root = app.admin_token("root@example.com").await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project_id(&owner.token, "FEED").await;
    let mut readers = vec![(owner.token.clone(), true), (root, true)];
    for (email, role, sees) in [
        ("admin@example.com", "admin", true),
        ("member@example.com", "member", false),
        ("viewer@example.com", "viewer", false),
    ] {
        let account = app.account(email).await;
        app.add_member(&owner.token, &project, email, role).await;
        readers.push((account.token, sees));
    }
    let hooks = format!("/api/v1/projects/{project}/webhooks");
    let hook = app
        .created(&hooks, &json!({"url": SECRET_URL, "events": ["*"]}), &owner.token)
        .await;
    let hook_path = format!("{hooks}/{}", hook["id"].as_str().unwrap());
    let patched = app
        .patch_json(&hook_path, &json!({"enabled": false}), &owner.token)
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(
        app.delete_as(&hook_path, &owner.token).await.status(),
        StatusCode::NO_CONTENT
    );

    let feed = format!("/api/v1/projects/{project}/activity");
    for (token, sees) in readers {
        let entries = app.walk(&feed, 100, &token).await;
        let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
        for action in ["webhook.created", "webhook.updated", "webhook.deleted"] {
            assert!(actions.contains(&action), "everyone sees that {action} happened");
        }
        let text = serde_json::to_string(&entries).unwrap();
        assert_eq!(text.contains("s3cr3t-path"), sees, "URL path shown: {text}");
        assert_eq!(text.contains("t0ken"), sees, "URL query shown: {text}");
    }
}

#[tokio::test]
async fn password_change_attempts_count_against_the_login_limit_per_user_and_per_address() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "3/15m".into());
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let change = |token: String, current: &'static str| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/auth/password",
                &json!({"currentPassword": current, "newPassword": "Brand-new-passw0rd"}),
                Some(&token),
            )
            .await
        }
    };
    for _ in 0..3 {
        let response = change(ann.token.clone(), "Wrong-passw0rd").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The right password, from another session of the same user: limited all the same.
    let second = app.login_ok(&ann.email).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = change(second, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let error = json_body(response).await;
    assert_eq!(error["code"], "RATE_LIMITED");
    // Nothing changed: the old password still logs in.
    assert_eq!(app.login(&ann.email, PASSWORD).await.status(), StatusCode::OK);
    // Another user from the same address has spent nothing of their own but shares the
    // address's budget: a stolen token per account does not buy fresh guesses.
    let bob = app.account("bob@example.com").await;
    let response = change(bob.token, "Wrong-passw0rd").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_response_that_carries_a_secret_is_never_stored_by_a_cache() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project_id(&owner.token, "NOST").await;
    let hooks = format!("/api/v1/projects/{project}/webhooks");
    let response = app
        .post_json(
            &hooks,
            &json!({"url": SECRET_URL, "events": ["*"]}),
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    // Responses without a secret may be cached by the client (ETags work).
    let listed = app.get_as(&hooks, &owner.token).await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(listed.headers().get("cache-control").is_none());
}

#[tokio::test]
async fn a_body_must_be_application_json_not_text_json_or_a_json_suffix() {
    let app = spawn_app().await;
    let body = json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}).to_string();
    for content_type in [
        "text/json",
        "application/merge-patch+json",
        "application/vnd.api+json",
        "application/jsonx",
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(json_body(response).await["code"], "UNSUPPORTED_MEDIA_TYPE");
    }
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .header("content-type", content_type)
            .body(body.replace("ann@", &format!("ann{}@", content_type.len())))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type}");
    }
}

#[tokio::test]
async fn a_webhook_host_that_does_not_resolve_and_one_that_resolves_privately_get_the_same_answer() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project_id(&owner.token, "DNS").await;
    let hooks = format!("/api/v1/projects/{project}/webhooks");
    let mut messages = Vec::new();
    // `.invalid` never resolves (RFC 6761); `localhost` resolves to loopback.
    for url in ["http://no-such-host.invalid/hook", "http://localhost/hook"] {
        let response = app
            .post_json(&hooks, &json!({"url": url, "events": ["*"]}), Some(&owner.token))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let error = json_body(response).await;
        assert_eq!(error_fields(&error), vec!["url"]);
        messages.push(error["details"][0]["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(messages[0], messages[1]);
}

async fn metrics_with(app: &TestApp, address: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{address}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn metrics_need_the_configured_bearer_token() {
    const TOKEN: &str = "metrics-token-0123456789abcdef";
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_METRICS_TOKEN".into(), TOKEN.into());
    })
    .await;
    for token in [None, Some("metrics-token-0123456789abcdeX"), Some("")] {
        let response = metrics_with(&app, &app.address, token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let error: Value = json_body(response).await;
        assert_eq!(error["code"], "UNAUTHORIZED");
    }
    let response = metrics_with(&app, &app.address, Some(TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("http_requests_total"));
    // The probes stay open.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_when_one_is_configured() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_METRICS_BIND".into(), "127.0.0.1:0".into());
    })
    .await;
    let metrics = app.metrics_address.clone().expect("a metrics listener");
    assert_ne!(metrics, app.address);
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    let response = metrics_with(&app, &metrics, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("http_requests_total"));
    // Only the metrics there: the API is not served on the metrics address.
    let api = app
        .client
        .get(format!("{metrics}/api/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
}
