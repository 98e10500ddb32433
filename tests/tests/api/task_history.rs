//! A task's history and the old values of a change (docs/api/tracking.md, "History";
//! docs/events.md, `previous`): `GET /tasks/{id}/history`, `previous` beside `data` in
//! `*.updated` events, and `changes` in the project's activity.

use std::time::Duration;

use keel_tests::{EventStream, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `(action, changes)` of history or activity entries.
fn described(entries: &[Value]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["changes"].clone()))
        .collect()
}

#[tokio::test]
async fn the_history_lists_each_change_newest_first_with_old_and_new_values() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    app.add_member(&ann.token, &project, &dan.email, "viewer").await;
    app.create_label(&ann.token, &project, "ui", "#00FF00").await;
    app.create_task(
        &ann.token,
        &project,
        json!({"title": "First", "description": "token: s3cr3t"}),
    )
    .await;
    let patch = |body: Value| {
        let (app, token) = (&app, &ann.token);
        async move {
            let r = app.patch_json("/api/v1/tasks/KEEL-1", &body, token).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    patch(json!({"title": "Renamed", "priority": 2, "description": "cleaned"})).await;
    patch(json!({"status": "done", "assigneeId": ann.id})).await;
    let archived = app
        .post_json("/api/v1/tasks/KEEL-1/archive", &json!({}), Some(&ann.token))
        .await;
    let archived_at = json_body(archived).await["archivedAt"].clone();
    let bulk = app
        .post_json(
            "/api/v1/tasks/bulk",
            &json!({"ids": ["KEEL-1"], "action": "update", "patch": {"addLabels": ["ui"], "dueDate": "2026-12-24"}}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(bulk.status(), StatusCode::OK);

    let history = app.walk("/api/v1/tasks/KEEL-1/history", 2, &dan.token).await;
    let expected = vec![
        (
            "task.updated".to_owned(),
            json!([
                {"field": "dueDate", "from": null, "to": "2026-12-24"},
                {"field": "labels", "from": [], "to": ["ui"]},
            ]),
        ),
        (
            "task.archived".to_owned(),
            json!([{"field": "archivedAt", "from": null, "to": archived_at}]),
        ),
        (
            "task.updated".to_owned(),
            json!([
                {"field": "assigneeId", "from": null, "to": ann.id},
                {"field": "status", "from": "todo", "to": "done"},
            ]),
        ),
        (
            "task.updated".to_owned(),
            json!([
                {"field": "description", "redacted": true},
                {"field": "priority", "from": 0, "to": 2},
                {"field": "title", "from": "First", "to": "Renamed"},
            ]),
        ),
        ("task.created".to_owned(), json!([])),
    ];
    assert_eq!(described(&history), expected);
    assert!(
        history
            .iter()
            .all(|e| e["actorId"] == json!(ann.id) && e["occurredAt"].is_string())
    );
    let text = serde_json::to_string(&history).unwrap();
    assert!(!text.contains("s3cr3t") && !text.contains("cleaned"), "{text}");
    assert!(history[0].get("ip").is_none() && history[0].get("requestId").is_none());

    // The project's activity carries the same changes.
    let activity = app
        .walk(&format!("/api/v1/projects/{project}/activity"), 100, &dan.token)
        .await;
    let of_task: Vec<Value> = activity
        .into_iter()
        .filter(|e| e["resourceType"] == "task")
        .collect();
    assert_eq!(described(&of_task), expected);
    assert!(of_task.iter().all(|e| e["details"].get("changes").is_none()));

    // By id too; strangers and bad cursors as on every task route.
    let id = app.get_ok("/api/v1/tasks/KEEL-1", &ann.token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = app
        .walk(&format!("/api/v1/tasks/{id}/history"), 50, &ann.token)
        .await;
    assert_eq!(by_id.len(), 5);
    let stranger = app.get_as("/api/v1/tasks/KEEL-1/history", &eve.token).await;
    assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
    let bad = app
        .get_as("/api/v1/tasks/KEEL-1/history?limit=0", &ann.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(bad).await), ["limit"]);

    // In the trash, the task is 404 here as everywhere; restored, its history goes on.
    assert_eq!(
        app.delete_as("/api/v1/tasks/KEEL-1", &ann.token).await.status(),
        204
    );
    let trashed = app.get_as("/api/v1/tasks/KEEL-1/history", &ann.token).await;
    assert_eq!(trashed.status(), StatusCode::NOT_FOUND);
    let restored = app
        .post_json("/api/v1/tasks/KEEL-1/restore", &json!({}), Some(&ann.token))
        .await;
    assert_eq!(restored.status(), StatusCode::OK);
    let history = app.walk("/api/v1/tasks/KEEL-1/history", 50, &ann.token).await;
    let latest: Vec<(String, Value)> = described(&history).into_iter().take(2).collect();
    assert_eq!(latest[0].0, "task.restored");
    assert_eq!(latest[0].1[0]["field"], "deletedAt");
    assert!(latest[0].1[0]["from"].is_string() && latest[0].1[0]["to"].is_null());
    assert_eq!(latest[1], ("task.deleted".to_owned(), json!([])));
}

#[tokio::test]
async fn updated_events_carry_the_old_values_of_what_changed_in_previous() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    app.add_member(&ann.token, &project, &bob.email, "member").await;
    let label = app.create_label(&ann.token, &project, "ui", "#00FF00").await;
    app.create_task(&ann.token, &project, json!({"title": "First"}))
        .await;
    let comment = app
        .created(
            "/api/v1/tasks/KEEL-1/comments",
            &json!({"body": "first words"}),
            &ann.token,
        )
        .await;
    let (mut stream, _) = EventStream::connect_settled(&app, &ann.token).await.unwrap();

    let patches = [
        (
            format!("/api/v1/projects/{project}"),
            json!({"name": "Renamed project"}),
        ),
        (
            format!("/api/v1/projects/{project}/members/{}", bob.id),
            json!({"role": "admin"}),
        ),
        (
            format!(
                "/api/v1/projects/{project}/labels/{}",
                label["id"].as_str().unwrap()
            ),
            json!({"color": "#0000FF"}),
        ),
        (
            "/api/v1/tasks/KEEL-1".to_owned(),
            json!({"title": "Second", "priority": 3}),
        ),
        (
            format!("/api/v1/comments/{}", comment["id"].as_str().unwrap()),
            json!({"body": "better words"}),
        ),
    ];
    for (path, body) in &patches {
        let r = app.patch_json(path, body, &ann.token).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let events: Vec<Value> = stream.drain(Duration::from_millis(700)).await;
    let seen: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), &e["previous"]))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("project.updated", &json!({"name": "Project KEEL"})),
            ("member.updated", &json!({"role": "member"})),
            ("label.updated", &json!({"color": "#00FF00"})),
            ("task.updated", &json!({"priority": 0, "title": "First"})),
            // A comment's body is never kept: it changed, and `data` has the new one.
            ("comment.updated", &json!({})),
        ]
    );
    assert_eq!(events[3]["data"]["title"], "Second");
    assert_eq!(events[4]["data"]["body"], "better words");
    assert!(!serde_json::to_string(&events).unwrap().contains("first words"));

    // Other events carry no `previous`.
    app.create_task(&ann.token, &project, json!({"title": "Third"}))
        .await;
    let created = stream.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(created["type"], "task.created");
    assert!(created.get("previous").is_none(), "{created}");
}
