//! Personal access tokens (docs/api/identity.md, "Personal access tokens"): created, listed
//! and deleted with a signed-in session; used as `Authorization: Bearer keel_pat_…` on the
//! routes their scopes cover, limited to their projects, refused at once when deleted,
//! expired or their user disabled — on every instance.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use keel_tests::{EventStream, TestApp, TestRedis, json_body, spawn_app, spawn_app_with, spawn_pair};

const TOKENS: &str = "/api/v1/auth/tokens";

/// Creates a token as `session` from `body`; returns the response body (with `token`).
async fn create_token(app: &TestApp, session: &str, body: Value) -> Value {
    app.created(TOKENS, &body, session).await
}

/// A token of `scopes` (every project); returns `(token, id)`.
async fn token_of(app: &TestApp, session: &str, scopes: &[&str]) -> (String, String) {
    let created = create_token(app, session, json!({"name": "ci", "scopes": scopes})).await;
    (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

async fn code_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body = json_body(response).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_token_is_created_shown_once_listed_without_its_secret_used_and_deleted() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let response = app
        .post_json(
            TOKENS,
            &json!({"name": "  CI deploy ", "scopes": ["read"]}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = json_body(response).await;
    let (token, id) = (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(location, format!("{TOKENS}/{id}"));
    assert!(token.starts_with("keel_pat_"), "{token}");
    assert!(
        token.len() >= "keel_pat_".len() + 64 + 1 + 43,
        "32 bytes of secret at least"
    );
    assert_eq!(created["name"], "CI deploy");
    assert_eq!(created["scopes"], json!(["read"]));
    assert_eq!(created["projectIds"], Value::Null);
    assert_eq!(created["lastUsedAt"], Value::Null);
    let expires = chrono::DateTime::parse_from_rfc3339(created["expiresAt"].as_str().unwrap()).unwrap();
    let days = (expires.to_utc() - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "90 days by default, got {days}");

    // The token works on a read, as its user.
    let me = app.get_ok("/api/v1/auth/profile", &token).await;
    assert_eq!(me["id"], ann.id.as_str());

    // Listed, never with its secret; its use is recorded to the minute (in the background).
    let mut listed = Value::Null;
    for _ in 0..40 {
        listed = app.get_ok(TOKENS, &ann.token).await;
        if !listed["data"][0]["lastUsedAt"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(listed["data"][0].get("token").is_none());
    assert!(!listed.to_string().contains(&token[token.len() - 20..]));
    let used = listed["data"][0]["lastUsedAt"].as_str().expect("a recorded use");
    assert!(used.ends_with(":00Z"), "kept to the minute: {used}");

    // Deleted: refused at once.
    assert_eq!(
        app.delete_as(&format!("{TOKENS}/{id}"), &ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        code_of(app.get_as("/api/v1/auth/profile", &token).await).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into())
    );
    assert_eq!(
        app.delete_as(&format!("{TOKENS}/{id}"), &ann.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get_ok(TOKENS, &ann.token).await["data"], json!([]));
}

#[tokio::test]
async fn someone_elses_token_cannot_be_deleted_and_a_forged_secret_proves_nobody() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let (token, id) = token_of(&app, &ann.token, &["read"]).await;
    assert_eq!(
        app.delete_as(&format!("{TOKENS}/{id}"), &bob.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // `keel_pat_<64 hex>_<secret>`: the secret is base64url and may itself hold `_`.
    let prefix = &token[.."keel_pat_".len() + 64];
    let forged = format!("{prefix}_{}", "A".repeat(43));
    assert_eq!(
        code_of(app.get_as("/api/v1/auth/profile", &forged).await).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into())
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", &token).await.status(),
        StatusCode::OK,
        "Bob's attempt changed nothing"
    );
}

#[tokio::test]
async fn bad_token_requests_are_refused_with_every_field() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let in_days = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).to_rfc3339();
    for (body, fields) in [
        (json!({"name": "", "scopes": []}), vec!["name", "scopes"]),
        (json!({"name": "x", "scopes": ["root"]}), vec!["scopes"]),
        (json!({"name": "x", "scopes": ["admin"]}), vec!["scopes"]),
        (
            json!({"name": "x", "scopes": ["read"], "expiresAt": in_days(367)}),
            vec!["expiresAt"],
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expiresAt": in_days(-1)}),
            vec!["expiresAt"],
        ),
        (
            json!({"name": "x", "scopes": ["read"], "projectIds": []}),
            vec!["projectIds"],
        ),
    ] {
        let response = app.post_json(TOKENS, &body, Some(&ann.token)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR");
        assert_eq!(keel_tests::error_fields(&error), fields, "{body}");
    }
    assert_eq!(
        app.get_ok(TOKENS, &ann.token).await["data"],
        json!([]),
        "nothing stored"
    );
    // 366 days ahead is the limit, and allowed.
    create_token(
        &app,
        &ann.token,
        json!({"name": "x", "scopes": ["read"], "expiresAt": in_days(366)}),
    )
    .await;
}

#[tokio::test]
async fn a_token_works_only_where_its_scopes_reach() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let (read, _) = token_of(&app, &admin, &["read"]).await;
    let (write, _) = token_of(&app, &admin, &["write"]).await;
    let (administer, _) = token_of(&app, &admin, &["admin"]).await;
    let project = json!({"key": "KEEL", "name": "Keel"});

    // read: safe methods outside /admin.
    assert_eq!(
        app.get_as("/api/v1/projects", &read).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        code_of(app.post_json("/api/v1/projects", &project, Some(&read)).await).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
    );
    assert_eq!(
        code_of(app.get_as("/api/v1/admin/users", &read).await).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
    );
    // write: every method outside /admin.
    let created = app.created("/api/v1/projects", &project, &write).await;
    assert_eq!(created["key"], "KEEL");
    assert_eq!(
        code_of(app.get_as("/api/v1/admin/users", &write).await).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
    );
    // admin: /admin, whatever the method, and nothing else.
    assert_eq!(
        app.get_as("/api/v1/admin/users", &administer).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        code_of(app.get_as("/api/v1/projects", &administer).await).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
    );
    // An admin's token without the admin scope acts as a plain user on projects.
    let ann = app.account("ann@example.com").await;
    let anns = app.create_project(&ann.token, "ANN").await;
    assert_eq!(
        app.get_as(
            &format!("/api/v1/projects/{}", anns["id"].as_str().unwrap()),
            &write
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_non_admin_cannot_create_an_admin_token() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let response = app
        .post_json(
            TOKENS,
            &json!({"name": "x", "scopes": ["read", "admin"]}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(keel_tests::error_fields(&json_body(response).await), ["scopes"]);
}

#[tokio::test]
async fn a_token_limited_to_a_project_sees_only_it() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let a = app.create_project_id(&ann.token, "AAA").await;
    let b = app.create_project_id(&ann.token, "BBB").await;
    app.create_task(&ann.token, &a, json!({"title": "in A"})).await;
    let in_b = app.create_task(&ann.token, &b, json!({"title": "in B"})).await;
    let created = create_token(
        &app,
        &ann.token,
        json!({"name": "ci", "scopes": ["write"], "projectIds": [a]}),
    )
    .await;
    assert_eq!(created["projectIds"], json!([a]));
    let token = created["token"].as_str().unwrap();

    let projects = app.get_ok("/api/v1/projects", token).await;
    let keys: Vec<&str> = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["AAA"]);
    assert_eq!(projects["pagination"]["total"], 1);
    let tasks = app.get_ok("/api/v1/tasks", token).await;
    let titles: Vec<&str> = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["in A"]);
    app.get_ok(&format!("/api/v1/projects/{a}/tasks"), token).await;

    for path in [
        format!("/api/v1/projects/{b}"),
        format!("/api/v1/projects/{b}/tasks"),
        format!("/api/v1/tasks/{}", in_b["id"].as_str().unwrap()),
        "/api/v1/tasks/BBB-1".to_owned(),
    ] {
        assert_eq!(
            code_of(app.get_as(&path, token).await).await,
            (StatusCode::NOT_FOUND, "NOT_FOUND".into()),
            "{path}"
        );
    }
    let write = app
        .post_json(
            &format!("/api/v1/projects/{b}/tasks"),
            &json!({"title": "no"}),
            Some(token),
        )
        .await;
    assert_eq!(write.status(), StatusCode::NOT_FOUND);
    // The session still sees both.
    assert_eq!(
        app.get_ok("/api/v1/projects", &ann.token).await["pagination"]["total"],
        2
    );
}

#[tokio::test]
async fn a_token_is_refused_on_the_token_session_logout_and_password_routes() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let (token, id) = token_of(&app, &ann.token, &["read", "write"]).await;
    for (method, path, body) in [
        (Method::GET, TOKENS.to_owned(), None),
        (
            Method::POST,
            TOKENS.to_owned(),
            Some(json!({"name": "x", "scopes": ["read"]})),
        ),
        (Method::DELETE, format!("{TOKENS}/{id}"), None),
        (Method::GET, "/api/v1/auth/sessions".to_owned(), None),
        (Method::DELETE, format!("/api/v1/auth/sessions/{id}"), None),
        (Method::POST, "/api/v1/auth/logout".to_owned(), None),
        (Method::POST, "/api/v1/auth/logout-all".to_owned(), None),
        (
            Method::POST,
            "/api/v1/auth/password".to_owned(),
            Some(json!({"currentPassword": keel_tests::PASSWORD, "newPassword": "Another-h0rse"})),
        ),
    ] {
        let response = app.send(method.clone(), &path, body.as_ref(), Some(&token)).await;
        assert_eq!(
            code_of(response).await,
            (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into()),
            "{method} {path}"
        );
    }
    // Nothing happened: the token, the session and the password are as they were.
    assert_eq!(
        app.get_ok(TOKENS, &ann.token).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", &ann.token).await.status(),
        StatusCode::OK
    );
    app.login_ok("ann@example.com").await;
}

#[tokio::test]
async fn an_expired_token_and_a_disabled_user_are_refused_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.account("ann@example.com").await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let brief = create_token(
        &app,
        &ann.token,
        json!({"name": "brief", "scopes": ["read"], "expiresAt": soon}),
    )
    .await;
    let brief = brief["token"].as_str().unwrap();
    let (lasting, _) = token_of(&app, &ann.token, &["read"]).await;
    // Both work, and are cached.
    assert_eq!(
        app.get_as("/api/v1/auth/profile", brief).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", &lasting).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        code_of(app.get_as("/api/v1/auth/profile", brief).await).await,
        (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED".into())
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", &lasting).await.status(),
        StatusCode::OK
    );

    let disabled = app
        .patch_json(
            &format!("/api/v1/admin/users/{}", ann.id),
            &json!({"status": "disabled"}),
            &admin,
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(
        code_of(app.get_as("/api/v1/auth/profile", &lasting).await).await,
        (StatusCode::FORBIDDEN, "ACCOUNT_DISABLED".into())
    );
}

#[tokio::test]
async fn admins_list_and_delete_a_users_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.account("ann@example.com").await;
    let (token, id) = token_of(&app, &ann.token, &["read"]).await;
    let path = format!("/api/v1/admin/users/{}/tokens", ann.id);
    let listed = app.get_ok(&path, &admin).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(listed["data"][0].get("token").is_none());
    assert_eq!(
        app.get_as(&path, &ann.token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete_as(&format!("{path}/{id}"), &admin).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_as("/api/v1/auth/profile", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_as(
            &format!("/api/v1/admin/users/{}/tokens", uuid::Uuid::now_v7()),
            &admin
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn changes_made_with_a_token_are_audited_with_its_id_and_count_against_the_user() {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let ann = app.account("ann@example.com").await;
    let (token, id) = token_of(&app, &ann.token, &["write"]).await;

    let remaining = |r: &reqwest::Response| -> u64 {
        r.headers()["ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let by_session = remaining(&app.get_as("/api/v1/auth/profile", &ann.token).await);
    let by_token = remaining(&app.get_as("/api/v1/auth/profile", &token).await);
    assert_eq!(by_token, by_session - 1, "one budget: the user's");
    let refused = app.get_as("/api/v1/admin/users", &token).await;
    assert_eq!(remaining(&refused), by_token - 1, "a refused scope counts too");

    app.create_project(&token, "TOK").await;
    let log = app
        .get_ok("/api/v1/admin/audit-log?action=project.created", &admin)
        .await;
    let entry = &log["data"][0];
    assert_eq!(entry["actorId"], ann.id.as_str());
    assert_eq!(entry["tokenId"], id.as_str());
    let created = app
        .get_ok("/api/v1/admin/audit-log?action=auth.token.created", &admin)
        .await;
    assert_eq!(created["data"][0]["resourceId"], id.as_str());
    assert_eq!(created["data"][0]["tokenId"], Value::Null, "made with a session");
    assert!(
        !created.to_string().contains(&token[token.len() - 20..]),
        "never the secret"
    );
}

#[tokio::test]
async fn a_token_deleted_on_one_instance_is_refused_by_the_other_at_once() {
    let Some(redis) = TestRedis::start_private("a_token_deleted_on_one_instance_is_refused").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let ann = a.account("ann@example.com").await;
    let (token, id) = token_of(&a, &ann.token, &["read"]).await;
    // b has the token cached.
    for _ in 0..3 {
        assert_eq!(
            b.get_as("/api/v1/auth/profile", &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        a.delete_as(&format!("{TOKENS}/{id}"), &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.get_as("/api/v1/auth/profile", &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "the deleted token is refused by the other instance on the next request"
    );
}

#[tokio::test]
async fn the_stream_accepts_a_token_sends_only_its_projects_and_ends_when_it_is_deleted() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_EVENTS_PING_SECS".into(), "1".into());
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let a = app.create_project_id(&ann.token, "AAA").await;
    let b = app.create_project_id(&ann.token, "BBB").await;
    let created = create_token(
        &app,
        &ann.token,
        json!({"name": "ci", "scopes": ["read"], "projectIds": [a]}),
    )
    .await;
    let (token, id) = (
        created["token"].as_str().unwrap(),
        created["id"].as_str().unwrap(),
    );
    let mut stream = EventStream::connect(&app, token).await.unwrap();
    app.create_task(&ann.token, &b, json!({"title": "in B"})).await;
    app.create_task(&ann.token, &a, json!({"title": "in A"})).await;
    let events = stream.drain(Duration::from_millis(800)).await;
    let tasks: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "task.created")
        .map(|e| e["data"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["in A"], "{events:?}");
    assert!(events.iter().all(|e| e["projectId"] == a.as_str()), "{events:?}");

    assert_eq!(
        app.delete_as(&format!("{TOKENS}/{id}"), &ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    match stream.next_frame(Duration::from_secs(3)).await {
        Some(Err(keel_tests::Ended::Closed { code, .. })) => assert_eq!(code, 1008),
        other => panic!("expected a 1008 close, got {other:?}"),
    }
    // A write-only-admin token is not let in either.
    let admin = app.admin_token("root@example.com").await;
    let (administer, _) = token_of(&app, &admin, &["admin"]).await;
    assert!(EventStream::connect(&app, &administer).await.is_err());
}

/// A relation to a task outside a token's projects is not shown to the token, although its
/// user sees both tasks: the limit applies to every read that names another project's task.
#[tokio::test]
async fn a_token_limited_to_a_project_sees_no_relation_to_another_project() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let a = app.create_project_id(&ann.token, "AAA").await;
    let b = app.create_project_id(&ann.token, "BBB").await;
    app.create_task(&ann.token, &a, json!({"title": "in A"})).await;
    app.create_task(&ann.token, &a, json!({"title": "also in A"}))
        .await;
    app.create_task(&ann.token, &b, json!({"title": "in B"})).await;
    for other in ["AAA-2", "BBB-1"] {
        let related = app
            .post_json(
                "/api/v1/tasks/AAA-1/relations",
                &json!({"type": "relates_to", "taskId": other}),
                Some(&ann.token),
            )
            .await;
        assert_eq!(related.status(), StatusCode::CREATED);
    }
    let created = create_token(
        &app,
        &ann.token,
        json!({"name": "ci", "scopes": ["read"], "projectIds": [a]}),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let identifiers = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["identifier"].as_str().unwrap().to_owned())
            .collect()
    };
    let seen = app.get_ok("/api/v1/tasks/AAA-1/relations", token).await;
    assert_eq!(identifiers(&seen), ["AAA-2"]);
    // The session still sees both.
    let seen = app.get_ok("/api/v1/tasks/AAA-1/relations", &ann.token).await;
    assert_eq!(identifiers(&seen), ["AAA-2", "BBB-1"]);
}
