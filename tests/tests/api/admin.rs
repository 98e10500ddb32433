//! `/api/v1/admin/*` (SPEC §4).

use keel_tests::{TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

async fn patch_user(app: &TestApp, token: &str, id: &str, change: Value) -> reqwest::Response {
    app.send(
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        Some(&change),
        Some(token),
    )
    .await
}

#[tokio::test]
async fn admin_routes_need_an_admin() {
    let app = spawn_app().await;
    let user = app.register("ann@example.com").await;
    let token = user["accessToken"].as_str().unwrap();
    let id = user["user"]["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/api/v1/admin/users".to_owned()),
        (Method::GET, format!("/api/v1/admin/users/{id}")),
        (Method::PATCH, format!("/api/v1/admin/users/{id}")),
        (Method::GET, "/api/v1/admin/audit-log".to_owned()),
    ] {
        let body_json = (method == Method::PATCH).then(|| json!({"role": "admin"}));
        let anonymous = app.send(method.clone(), &path, body_json.as_ref(), None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let as_user = app
            .send(method.clone(), &path, body_json.as_ref(), Some(token))
            .await;
        assert_eq!(as_user.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(body(as_user).await["code"], "FORBIDDEN");
    }
    let me = body(app.get_as("/api/v1/auth/profile", token).await).await;
    assert_eq!(me["role"], "user", "the refused PATCH changed nothing");
}

#[tokio::test]
async fn admins_list_and_filter_users_page_by_page() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    for name in ["ann", "bob", "cara"] {
        app.register(&format!("{name}@example.com")).await;
    }
    let all = body(app.get_as("/api/v1/admin/users?limit=2&page=1", &admin).await).await;
    assert_eq!(
        all["pagination"],
        json!({"page": 1, "limit": 2, "total": 4, "totalPages": 2})
    );
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let page2 = body(app.get_as("/api/v1/admin/users?limit=2&page=2", &admin).await).await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 2);

    let bobs = body(app.get_as("/api/v1/admin/users?q=BOB", &admin).await).await;
    assert_eq!(bobs["pagination"]["total"], 1);
    assert_eq!(bobs["data"][0]["email"], "bob@example.com");
    let admins = body(app.get_as("/api/v1/admin/users?role=admin", &admin).await).await;
    assert_eq!(admins["data"][0]["email"], "root@example.com");
    assert_eq!(admins["pagination"]["total"], 1);
    let wildcard = body(app.get_as("/api/v1/admin/users?q=%25", &admin).await).await;
    assert_eq!(
        wildcard["pagination"]["total"], 0,
        "LIKE wildcards in q are literal"
    );

    for bad in ["page=0", "limit=101", "role=owner", "status=gone"] {
        let response = app.get_as(&format!("/api/v1/admin/users?{bad}"), &admin).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn admins_read_one_user() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.register("ann@example.com").await;
    let id = ann["user"]["id"].as_str().unwrap();
    let user = body(app.get_as(&format!("/api/v1/admin/users/{id}"), &admin).await).await;
    assert_eq!(user["email"], "ann@example.com");
    let missing = app
        .get_as(&format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7()), &admin)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_as("/api/v1/admin/users/42", &admin).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn disabling_a_user_refuses_their_token_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.register("ann@example.com").await;
    let (id, token) = (
        ann["user"]["id"].as_str().unwrap(),
        ann["accessToken"].as_str().unwrap(),
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", token).await.status(),
        StatusCode::OK
    );

    let disabled = patch_user(&app, &admin, id, json!({"status": "disabled"})).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(body(disabled).await["status"], "disabled");
    assert_eq!(
        app.get_as("/api/v1/auth/profile", token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let login = app.login("ann@example.com", keel_tests::PASSWORD).await;
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    assert_eq!(body(login).await["code"], "ACCOUNT_DISABLED");

    assert_eq!(
        patch_user(&app, &admin, id, json!({"status": "active"}))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("ann@example.com", keel_tests::PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_and_a_demotion_applies_at_once() {
    let app = spawn_app().await;
    let root = app.admin_token("root@example.com").await;
    let root_id = body(app.get_as("/api/v1/auth/profile", &root).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for change in [json!({"role": "user"}), json!({"status": "disabled"})] {
        let refused = patch_user(&app, &root, &root_id, change.clone()).await;
        assert_eq!(refused.status(), StatusCode::CONFLICT, "{change}");
    }

    let second = app.admin_token("second@example.com").await;
    let demoted = patch_user(&app, &second, &root_id, json!({"role": "user"})).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    // The old token still verifies, but its admin rights are gone.
    assert_eq!(
        app.get_as("/api/v1/admin/users", &root).await.status(),
        StatusCode::FORBIDDEN
    );

    let invalid = patch_user(&app, &second, &root_id, json!({"role": "owner"})).await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_audit_log_records_auth_events_without_secrets() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.register("ann@example.com").await;
    app.login("ann@example.com", "Wrong-passw0rd").await;
    app.login_ok("ann@example.com").await;

    let response = app.get_as("/api/v1/admin/audit-log?limit=100", &admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let log: Value = serde_json::from_str(&text).unwrap();
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["auth.registered", "auth.login.failed", "auth.login"] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    // Newest first.
    assert_eq!(actions[0], "auth.login");
    for secret in [
        keel_tests::PASSWORD,
        "Wrong-passw0rd",
        ann["accessToken"].as_str().unwrap(),
        ann["refreshToken"].as_str().unwrap(),
        "ann@example.com",
    ] {
        assert!(
            !text.contains(secret),
            "the audit log holds a secret or a full e-mail"
        );
    }
    let failed = body(
        app.get_as("/api/v1/admin/audit-log?action=auth.login.failed", &admin)
            .await,
    )
    .await;
    assert_eq!(failed["pagination"]["total"], 1);
    assert_eq!(failed["data"][0]["details"]["email"], "a***@example.com");
    let entry = &failed["data"][0];
    assert!(entry["requestId"].is_string() && entry["ip"] == "127.0.0.1");
    let bad = app.get_as("/api/v1/admin/audit-log?actorId=nope", &admin).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
