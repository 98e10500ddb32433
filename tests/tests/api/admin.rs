//! `/api/v1/admin/*` (docs/api/identity.md).

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
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    let a = app.admin_token("a@example.com").await;
    let b = app.admin_token("b@example.com").await;
    let id_of = |token: String| {
        let app = &app;
        async move {
            body(app.get_as("/api/v1/auth/profile", &token).await).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (a_id, b_id) = (id_of(a.clone()).await, id_of(b.clone()).await);
    let (first, second) = tokio::join!(
        patch_user(&app, &a, &b_id, json!({"role": "user"})),
        patch_user(&app, &b, &a_id, json!({"role": "user"})),
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    // The loser either sees the winner's change (409), or — if the winner's demotion of it
    // landed first — is no admin any more (403).
    assert!(statuses == [200, 409] || statuses == [200, 403], "{statuses:?}");
    let remaining = app.admin_token("c@example.com").await;
    let admins = body(
        app.get_as("/api/v1/admin/users?role=admin&status=active", &remaining)
            .await,
    )
    .await;
    assert_eq!(admins["pagination"]["total"], 2, "one of a/b, plus c: {admins}");
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

mod metrics {
    use chrono::Utc;
    use keel_infrastructure::entities::{comments, projects, tasks};
    use sea_orm::{ActiveModelTrait, Set};
    use uuid::Uuid;

    use super::*;

    fn id(auth: &Value) -> Uuid {
        auth["user"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Rows the tracking routes will create once they exist; inserted directly here.
    async fn seed(app: &TestApp, ann: Uuid, bob: Uuid) {
        let db = sea_orm::Database::connect(&app.db.url).await.unwrap();
        let now = Utc::now();
        let mut project_ids = Vec::new();
        for key in ["ANN", "ANN2"] {
            let id = Uuid::now_v7();
            projects::ActiveModel {
                id: Set(id),
                key: Set(key.into()),
                name: Set(format!("Project {key}")),
                name_folded: Set(format!("project {}", key.to_lowercase())),
                description: Set(None),
                status: Set("active".into()),
                owner_id: Set(ann),
                last_task_number: Set(0),
                default_state: Set("todo".into()),
                state_keys: Set("backlog,todo,in_progress,in_review,done,canceled".into()),
                version: Set(1),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&db)
            .await
            .unwrap();
            project_ids.push(id);
        }
        let task = |number: i64, creator: Uuid, assignee: Option<Uuid>, status: &str| tasks::ActiveModel {
            id: Set(Uuid::now_v7()),
            project_id: Set(project_ids[0]),
            number: Set(number),
            title: Set(format!("Task {number}")),
            title_folded: Set(format!("task {number}")),
            description: Set(None),
            status: Set(status.into()),
            status_category: Set(keel_domain::tracking::WorkflowState::default_category(status)
                .map_or("unstarted", |c| c.as_str())
                .into()),
            priority: Set(0),
            priority_rank: Set(5),
            assignee_id: Set(assignee),
            due_date: Set(None),
            created_by: Set(creator),
            created_at: Set(now),
            updated_at: Set(now),
            completed_at: Set(None),
            version: Set(1),
            archived_at: Set(None),
            deleted_at: Set(None),
        };
        let commented = task(1, ann, Some(bob), "todo");
        let commented_id = commented.id.clone().unwrap();
        for model in [
            commented,
            task(2, ann, Some(bob), "done"),
            task(3, ann, Some(bob), "canceled"),
            task(4, bob, Some(ann), "in_progress"),
        ] {
            model.insert(&db).await.unwrap();
        }
        for author in [bob, bob, ann] {
            comments::ActiveModel {
                id: Set(Uuid::now_v7()),
                task_id: Set(commented_id),
                author_id: Set(author),
                body: Set("Looks good".into()),
                created_at: Set(now),
                updated_at: Set(now),
                version: Set(1),
            }
            .insert(&db)
            .await
            .unwrap();
        }
        db.close().await.ok();
    }

    fn figures(row: &Value) -> [u64; 5] {
        [
            "projectsOwned",
            "tasksCreated",
            "tasksOpenAssigned",
            "tasksCompleted",
            "commentsPosted",
        ]
        .map(|k| row[k].as_u64().unwrap())
    }

    #[tokio::test]
    async fn per_user_figures_come_from_the_tracking_data() {
        let app = spawn_app().await;
        let admin = app.admin_token("root@example.com").await;
        let ann = app.register("ann@example.com").await;
        let bob = app.register("bob@example.com").await;
        seed(&app, id(&ann), id(&bob)).await;

        let page = body(app.get_as("/api/v1/admin/users/metrics?sort=email", &admin).await).await;
        assert_eq!(page["pagination"]["total"], 3);
        let rows = page["data"].as_array().unwrap();
        let emails: Vec<&str> = rows.iter().map(|r| r["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["ann@example.com", "bob@example.com", "root@example.com"]);
        assert_eq!(
            figures(&rows[0]),
            [2, 3, 1, 0, 1],
            "ann: owns 2, created 3, 1 open assigned, 1 comment"
        );
        assert_eq!(
            figures(&rows[1]),
            [0, 1, 1, 1, 2],
            "bob: created 1, todo open, done completed, canceled neither"
        );
        assert_eq!(figures(&rows[2]), [0, 0, 0, 0, 0]);
        assert!(
            rows.iter().all(|r| r["lastActiveAt"].is_string()),
            "every user has signed in"
        );
        assert_eq!(rows[0]["userId"], ann["user"]["id"]);

        let by_tasks = body(
            app.get_as("/api/v1/admin/users/metrics?sort=-tasksCreated&limit=1", &admin)
                .await,
        )
        .await;
        assert_eq!(by_tasks["data"][0]["email"], "ann@example.com");
        assert_eq!(by_tasks["pagination"]["totalPages"], 3);

        for bad in ["sort=password", "sort=--name", "sort=", "page=0"] {
            let response = app
                .get_as(&format!("/api/v1/admin/users/metrics?{bad}"), &admin)
                .await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let as_user = app
            .get_as(
                "/api/v1/admin/users/metrics",
                ann["accessToken"].as_str().unwrap(),
            )
            .await;
        assert_eq!(as_user.status(), StatusCode::FORBIDDEN);
    }

    /// Statements run by the server so far for requests (the background jobs' polls of the
    /// outbox and deliveries left out: one landing between two samples is not the request's).
    async fn statements(app: &TestApp) -> u64 {
        app.db_statements().await
    }

    async fn statements_for_one_metrics_page(app: &TestApp, admin: &str) -> u64 {
        let before = statements(app).await;
        let response = app.get_as("/api/v1/admin/users/metrics?limit=100", admin).await;
        assert_eq!(response.status(), StatusCode::OK);
        statements(app).await - before
    }

    #[tokio::test]
    async fn the_figures_take_the_same_number_of_queries_for_3_users_as_for_13() {
        let app = spawn_app().await;
        let admin = app.admin_token("root@example.com").await;
        for n in 0..2 {
            app.register(&format!("early{n}@example.com")).await;
        }
        // Authentication reads the cache after the first request: warm it.
        let cold = statements_for_one_metrics_page(&app, &admin).await;
        let few = statements_for_one_metrics_page(&app, &admin).await;
        assert_eq!(
            cold,
            few + 1,
            "the first request loads the session with its user (one statement), later ones do not"
        );
        for n in 0..10 {
            app.register(&format!("late{n}@example.com")).await;
        }
        let many = statements_for_one_metrics_page(&app, &admin).await;
        assert_eq!(few, many, "no statement per user");
        assert!(few <= 2, "the aggregate + the count: {few}");
    }
}
