//! A task's lifecycle (docs/api/tracking.md, "Archive and trash"): archive and unarchive
//! with the lists' `archived` filter, the trash (`DELETE`), restore, permanent delete and the
//! background purge of expired trash.

use std::sync::Arc;
use std::time::Duration;

use keel_api::config::Settings;
use keel_api::startup::{identity_ports, secret_box, tracking_ports};
use keel_application::cache::NoCache;
use keel_application::tracking::tasks::purge_expired_trash;
use keel_infrastructure::entities::tasks;
use keel_infrastructure::{Database, DbSettings};
use keel_tests::{Account, TestApp, base_vars, error_fields, json_body, spawn_app};
use reqwest::{Method, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

/// Ann's project `KEEL` with Bob (member) and Dan (viewer).
struct Board {
    app: TestApp,
    project: String,
    ann: Account,
    bob: Account,
    dan: Account,
}

async fn board() -> Board {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let dan = app.account("dan@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    app.add_member(&ann.token, &project, &bob.email, "member").await;
    app.add_member(&ann.token, &project, &dan.email, "viewer").await;
    Board {
        app,
        project,
        ann,
        bob,
        dan,
    }
}

fn id(task: &Value) -> &str {
    task["id"].as_str().unwrap()
}

impl Board {
    async fn task(&self, title: &str) -> Value {
        self.app
            .create_task(&self.ann.token, &self.project, json!({"title": title}))
            .await
    }

    /// `POST /tasks/{task}/{action}` as `who`.
    async fn act(&self, task: &str, action: &str, who: &Account) -> reqwest::Response {
        self.app
            .send(
                Method::POST,
                &format!("/api/v1/tasks/{task}/{action}"),
                None,
                Some(&who.token),
            )
            .await
    }

    /// The identifiers of a task list (`path` with its query), every page, as Ann.
    async fn listed(&self, path: &str) -> Vec<String> {
        self.app
            .walk(path, 100, &self.ann.token)
            .await
            .iter()
            .map(|t| t["identifier"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn project_list(&self, query: &str) -> Vec<String> {
        self.listed(&format!(
            "/api/v1/projects/{}/tasks?sort=createdAt{query}",
            self.project
        ))
        .await
    }

    async fn trash(&self) -> Vec<Value> {
        self.app
            .walk(
                &format!("/api/v1/projects/{}/trash", self.project),
                100,
                &self.dan.token,
            )
            .await
    }

    async fn activity(&self) -> Vec<Value> {
        self.app
            .walk(
                &format!("/api/v1/projects/{}/activity", self.project),
                100,
                &self.ann.token,
            )
            .await
    }
}

#[tokio::test]
async fn archive_hides_a_task_from_every_list_until_asked_for_and_unarchive_brings_it_back() {
    let b = board().await;
    for title in ["One", "Two", "Three"] {
        b.task(title).await;
    }
    // Warm the cached pages: the archive must make them stale.
    assert_eq!(b.project_list("").await, ["KEEL-1", "KEEL-2", "KEEL-3"]);

    let response = b.act("KEEL-2", "archive", &b.bob).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("etag"));
    let archived = json_body(response).await;
    assert!(archived["archivedAt"].is_string(), "{archived}");
    assert_eq!(archived["version"], 2);
    assert_eq!(archived["identifier"], "KEEL-2");
    // Archiving again changes nothing.
    let again = json_body(b.act("KEEL-2", "archive", &b.bob).await).await;
    assert_eq!(
        (&again["archivedAt"], &again["version"]),
        (&archived["archivedAt"], &json!(2))
    );

    assert_eq!(b.project_list("").await, ["KEEL-1", "KEEL-3"]);
    assert_eq!(
        b.project_list("&archived=include").await,
        ["KEEL-1", "KEEL-2", "KEEL-3"]
    );
    assert_eq!(b.project_list("&archived=only").await, ["KEEL-2"]);
    assert_eq!(
        b.listed("/api/v1/tasks?sort=createdAt").await,
        ["KEEL-1", "KEEL-3"]
    );
    assert_eq!(b.listed("/api/v1/tasks?archived=only").await, ["KEEL-2"]);
    let read = b
        .app
        .get_ok(&format!("/api/v1/tasks/{}", id(&archived)), &b.dan.token)
        .await;
    assert_eq!(
        read["archivedAt"], archived["archivedAt"],
        "an archived task is still read"
    );

    for bad in ["yes", "Include", "", "only,include"] {
        let path = format!("/api/v1/projects/{}/tasks?archived={bad}", b.project);
        let response = b.app.get_as(&path, &b.ann.token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR");
        assert_eq!(error_fields(&error), ["archived"], "{error}");
    }

    for action in ["archive", "unarchive"] {
        let refused = b.act("KEEL-2", action, &b.dan).await;
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "a viewer may not {action}"
        );
    }
    let back = json_body(b.act("KEEL-2", "unarchive", &b.bob).await).await;
    assert_eq!((&back["archivedAt"], &back["version"]), (&Value::Null, &json!(3)));
    assert_eq!(b.project_list("").await, ["KEEL-1", "KEEL-2", "KEEL-3"]);
    assert_eq!(b.project_list("&archived=only").await, Vec::<String>::new());

    let actions: Vec<Value> = b.activity().await.iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions[..2], [json!("task.unarchived"), json!("task.archived")]);
}

#[tokio::test]
async fn a_trashed_task_is_404_on_its_routes_and_absent_from_every_list_and_count() {
    let b = board().await;
    b.app
        .create_label(&b.ann.token, &b.project, "bug", "#FF0000")
        .await;
    let kept = b.task("Kept").await;
    let task = b
        .app
        .create_task(
            &b.ann.token,
            &b.project,
            json!({"title": "Binned", "labels": ["bug"]}),
        )
        .await;
    let archived = b.task("Archived").await;
    b.act(id(&archived), "archive", &b.ann).await;
    let comment = b
        .app
        .created(
            &format!("/api/v1/tasks/{}/comments", id(&task)),
            &json!({"body": "before"}),
            &b.bob.token,
        )
        .await;
    let path = format!("/api/v1/tasks/{}", id(&task));
    // Warm the caches: the task and the pages it is on.
    b.app.get_ok(&path, &b.ann.token).await;
    assert_eq!(b.project_list("").await, ["KEEL-1", "KEEL-2"]);

    assert_eq!(
        b.app.delete_as(&path, &b.bob.token).await.status(),
        StatusCode::NO_CONTENT
    );

    let comments = format!("{path}/comments");
    let comment_path = format!("/api/v1/comments/{}", id(&comment));
    for (method, route, body) in [
        (Method::GET, path.clone(), None),
        (Method::GET, "/api/v1/tasks/KEEL-2".to_owned(), None),
        (Method::GET, "/api/v1/tasks/keel-2".to_owned(), None),
        (Method::PATCH, path.clone(), Some(json!({"title": "Back?"}))),
        (Method::DELETE, path.clone(), None),
        (Method::GET, comments.clone(), None),
        (Method::POST, comments, Some(json!({"body": "hello?"}))),
        (Method::PATCH, comment_path.clone(), Some(json!({"body": "edit"}))),
        (Method::DELETE, comment_path, None),
        (Method::POST, format!("{path}/archive"), None),
        (Method::POST, format!("{path}/unarchive"), None),
    ] {
        let response = b
            .app
            .send(method.clone(), &route, body.as_ref(), Some(&b.ann.token))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {route}");
        assert_eq!(json_body(response).await["code"], "NOT_FOUND", "{method} {route}");
    }
    for query in [
        "",
        "&archived=include",
        "&archived=only",
        "&label=bug",
        "&q=binned",
    ] {
        assert!(
            !b.project_list(query).await.contains(&"KEEL-2".to_owned()),
            "listed with {query:?}"
        );
        assert!(
            !b.listed(&format!("/api/v1/tasks?sort=createdAt{query}"))
                .await
                .contains(&"KEEL-2".to_owned()),
            "listed across projects with {query:?}"
        );
    }
    assert_eq!(b.project_list("&archived=include").await, ["KEEL-1", "KEEL-3"]);

    let trash = b.trash().await;
    assert_eq!(trash.len(), 1);
    assert_eq!(trash[0]["identifier"], "KEEL-2");
    assert!(trash[0]["deletedAt"].is_string(), "{}", trash[0]);
    assert_eq!(trash[0]["labels"], json!(["bug"]));

    // The instance's counts leave it out too.
    let admin = b.app.admin_token("root@example.com").await;
    let metrics = b
        .app
        .get_ok("/api/v1/admin/users/metrics?limit=100", &admin)
        .await;
    let ann = metrics["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == b.ann.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(ann["tasksCreated"], 2, "{ann}");

    // `task.deleted` still names the move to the trash.
    let deleted = b.activity().await[0].clone();
    assert_eq!(deleted["action"], "task.deleted");
    assert_eq!(deleted["resourceId"], id(&task));
    assert_ne!(kept["id"], task["id"]);
}

#[tokio::test]
async fn restore_keeps_the_number_and_identifier_and_numbers_are_never_reused() {
    let b = board().await;
    let first = b.task("First").await;
    b.task("Second").await;
    let path = format!("/api/v1/tasks/{}", id(&first));
    assert_eq!(
        b.app.delete_as(&path, &b.bob.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(b.task("Third").await["identifier"], "KEEL-3");

    let refused = b.act(id(&first), "restore", &b.dan).await;
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "a viewer may not restore"
    );
    let response = b.act(id(&first), "restore", &b.bob).await;
    assert_eq!(response.status(), StatusCode::OK);
    let restored = json_body(response).await;
    assert_eq!(restored["identifier"], "KEEL-1");
    assert_eq!(restored["number"], 1);
    assert_eq!(restored["id"], first["id"]);
    assert_eq!(restored["deletedAt"], Value::Null);
    assert_eq!(restored["title"], "First");
    let read = b.app.get_ok("/api/v1/tasks/KEEL-1", &b.ann.token).await;
    assert_eq!(read["id"], first["id"]);
    assert_eq!(b.project_list("").await, ["KEEL-1", "KEEL-2", "KEEL-3"]);
    assert!(b.trash().await.is_empty());

    // Not in the trash (any more): 404, by id or by identifier.
    for what in [id(&first), "KEEL-1", "KEEL-9"] {
        let again = b.act(what, "restore", &b.bob).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND, "{what}");
    }
    // A task in the trash is reached by its identifier too.
    b.app.delete_as("/api/v1/tasks/KEEL-2", &b.bob.token).await;
    let by_identifier = json_body(b.act("keel-2", "restore", &b.bob).await).await;
    assert_eq!(by_identifier["identifier"], "KEEL-2");

    let actions: Vec<Value> = b.activity().await.iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions[..2], [json!("task.restored"), json!("task.deleted")]);
}

#[tokio::test]
async fn a_permanent_delete_needs_a_project_admin_and_purges_live_and_trashed_tasks() {
    let b = board().await;
    let live = b.task("Live").await;
    let binned = b.task("Binned").await;
    let binned_path = format!("/api/v1/tasks/{}", id(&binned));
    b.app.delete_as(&binned_path, &b.bob.token).await;
    for who in [&b.bob, &b.dan] {
        for task in [id(&live), id(&binned)] {
            let response = b
                .app
                .delete_as(&format!("/api/v1/tasks/{task}?permanent=true"), &who.token)
                .await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{} on {task}",
                who.email
            );
        }
    }
    let bad = b
        .app
        .delete_as(
            &format!("/api/v1/tasks/{}?permanent=maybe", id(&live)),
            &b.ann.token,
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    for task in [id(&live), id(&binned)] {
        let path = format!("/api/v1/tasks/{task}?permanent=true");
        assert_eq!(
            b.app.delete_as(&path, &b.ann.token).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            b.app.delete_as(&path, &b.ann.token).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            b.act(task, "restore", &b.ann).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert!(b.trash().await.is_empty());
    assert!(b.project_list("&archived=include").await.is_empty());
    assert_eq!(
        b.task("After").await["identifier"],
        "KEEL-3",
        "numbers are never reused"
    );
    let purges = b
        .activity()
        .await
        .iter()
        .filter(|e| e["action"] == "task.purged")
        .count();
    assert_eq!(purges, 2);
}

/// The tracking use cases on the test server's database, as the background purge runs
/// them (it runs on the instance holding its lease, once an hour: the test calls it with
/// the time it wants).
async fn purge_with(app: &TestApp, now: chrono::DateTime<chrono::Utc>) -> u64 {
    let settings = Settings::from_lookup(|k| base_vars(&app.db).get(k).cloned()).unwrap();
    let db = Database::connect(
        &DbSettings {
            url: app.db.url.clone(),
            max_connections: 2,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        },
        None,
    )
    .await
    .unwrap();
    let identity = identity_ports(&settings, &db, Arc::new(NoCache)).unwrap();
    let ports = tracking_ports(
        &db,
        &identity,
        &settings.webhooks,
        secret_box(&settings.webhooks).unwrap(),
    );
    purge_expired_trash(&ports, now, chrono::Duration::days(30))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_purge_removes_only_trash_past_its_retention() {
    let b = board().await;
    let old = b.task("Old").await;
    let recent = b.task("Recent").await;
    let live = b.task("Live").await;
    for task in [&old, &recent] {
        b.app
            .delete_as(&format!("/api/v1/tasks/{}", id(task)), &b.bob.token)
            .await;
    }
    // `old` went to the trash 31 days ago.
    let conn = sea_orm::Database::connect(&b.app.db.url).await.unwrap();
    let old_id: uuid::Uuid = id(&old).parse().unwrap();
    tasks::Entity::update_many()
        .col_expr(
            tasks::Column::DeletedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(31)),
        )
        .filter(tasks::Column::Id.eq(old_id))
        .exec(&conn)
        .await
        .unwrap();
    conn.close().await.ok();

    assert_eq!(purge_with(&b.app, chrono::Utc::now()).await, 1);
    let trash: Vec<Value> = b.trash().await;
    assert_eq!(
        trash.iter().map(|t| t["identifier"].clone()).collect::<Vec<_>>(),
        [json!("KEEL-2")],
        "the recent one stays"
    );
    assert_eq!(
        b.act(id(&old), "restore", &b.ann).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(b.project_list("").await, ["KEEL-3"]);
    assert_eq!(
        b.app
            .get_ok(&format!("/api/v1/tasks/{}", id(&live)), &b.ann.token)
            .await["identifier"],
        "KEEL-3"
    );
    let purged = b.activity().await[0].clone();
    assert_eq!(purged["action"], "task.purged");
    assert_eq!(purged["resourceId"], id(&old));
    assert_eq!(purged["actorId"], Value::Null, "the purge has no actor");

    // The recent one is kept until it is past retention: 29 days on, nothing is; 31 days
    // on, it is.
    let now = chrono::Utc::now();
    assert_eq!(purge_with(&b.app, now + chrono::Duration::days(29)).await, 0);
    assert_eq!(b.trash().await.len(), 1);
    assert_eq!(purge_with(&b.app, now + chrono::Duration::days(31)).await, 1);
    assert!(b.trash().await.is_empty());
    assert_eq!(b.project_list("").await, ["KEEL-3"], "the live task stays");
    assert_eq!(b.task("Next").await["identifier"], "KEEL-4");
}
