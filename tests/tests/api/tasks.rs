//! Tasks (docs/api/tracking.md): `/api/v1/projects/{id}/tasks`, `/api/v1/tasks`, `/api/v1/tasks/{id}` —
//! numbering, defaults, references, versions, filters, sorts, cursors and query counts.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MATCH, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};

/// A project of Ann's (key `KEEL`) with Bob as a member.
struct Board {
    app: TestApp,
    project: String,
    ann: Account,
    bob: Account,
}

async fn board() -> Board {
    board_on(spawn_app().await).await
}

async fn board_on(app: TestApp) -> Board {
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    app.add_member(&ann.token, &project, &bob.email, "member").await;
    Board {
        app,
        project,
        ann,
        bob,
    }
}

impl Board {
    fn tasks_path(&self) -> String {
        format!("/api/v1/projects/{}/tasks", self.project)
    }

    async fn task(&self, body: Value) -> Value {
        self.app.create_task(&self.ann.token, &self.project, body).await
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        self.app
            .post_json(&self.tasks_path(), &body, Some(&self.ann.token))
            .await
    }

    /// The ids of the project's tasks for `query`, as Ann.
    async fn ids(&self, query: &str) -> Vec<String> {
        let page = self
            .app
            .get_ok(
                &format!("{}?limit=100&{query}", self.tasks_path()),
                &self.ann.token,
            )
            .await;
        ids_of(page["data"].as_array().unwrap())
    }
}

fn ids_of(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id(task: &Value) -> String {
    task["id"].as_str().unwrap().to_owned()
}

async fn patch_task(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token)
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header(IF_MATCH, tag);
    }
    request.send().await.unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()[ETAG].to_str().unwrap().to_owned()
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
}

fn uuid_of(task: &Value) -> uuid::Uuid {
    task["id"].as_str().unwrap().parse().unwrap()
}

/// The order docs/api/tracking.md promises for `sort`, computed from the tasks themselves: ties broken
/// by id, priority urgent (1) … low (4) then none (0), undated last when ascending; `-`
/// reverses all of it.
fn expected_order(tasks: &[Value], sort: &str) -> Vec<String> {
    let (descending, key) = sort.strip_prefix('-').map_or((false, sort), |k| (true, k));
    let rank = |t: &Value| match t["priority"].as_u64().unwrap() {
        0 => 5,
        p => p,
    };
    let due = |t: &Value| {
        (
            t["dueDate"].is_null(),
            t["dueDate"].as_str().unwrap_or("").to_owned(),
        )
    };
    let mut rows: Vec<&Value> = tasks.iter().collect();
    rows.sort_by(|a, b| {
        let primary = match key {
            "createdAt" | "updatedAt" => time(&a[key]).cmp(&time(&b[key])),
            "priority" => rank(a).cmp(&rank(b)),
            "dueDate" => due(a).cmp(&due(b)),
            other => panic!("no sort {other}"),
        };
        let order = primary.then_with(|| uuid_of(a).cmp(&uuid_of(b)));
        if descending { order.reverse() } else { order }
    });
    rows.into_iter().map(id).collect()
}

#[tokio::test]
async fn creating_a_task_numbers_it_and_applies_the_defaults() {
    let b = board().await;
    let response = b.post(json!({"title": "  First task  "})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let tag = etag(&response);
    assert!(tag.starts_with("\"1-"), "{tag}");
    let task = json_body(response).await;
    assert_eq!(location, format!("/api/v1/tasks/{}", id(&task)));
    assert_eq!(task["identifier"], "KEEL-1");
    assert_eq!(task["number"], 1);
    assert_eq!(task["projectId"], b.project.as_str());
    assert_eq!(task["title"], "First task");
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["status"], "todo");
    assert_eq!(task["priority"], 0);
    assert_eq!(task["assigneeId"], Value::Null);
    assert_eq!(task["labels"], json!([]));
    assert_eq!(task["dueDate"], Value::Null);
    assert_eq!(task["createdBy"], b.ann.id.as_str());
    assert_eq!(task["completedAt"], Value::Null);
    assert_eq!(task["version"], 1);
    assert_eq!(task["createdAt"], task["updatedAt"]);

    let read = b.app.get_as(&location, &b.ann.token).await;
    assert_eq!(etag(&read), tag);
    assert_eq!(json_body(read).await, task);

    b.app
        .create_label(&b.ann.token, &b.project, "ui", "#00FF00")
        .await;
    b.app
        .create_label(&b.ann.token, &b.project, "bug", "#FF0000")
        .await;
    let full = b
        .app
        .create_task(
            &b.bob.token,
            &b.project,
            json!({
                "title": "Second", "description": "Details", "status": "in_progress", "priority": 2,
                "assigneeId": b.ann.id, "labels": ["ui", "bug", "ui"], "dueDate": "2026-12-24"
            }),
        )
        .await;
    assert_eq!(full["identifier"], "KEEL-2");
    assert_eq!(full["number"], 2);
    assert_eq!(full["description"], "Details");
    assert_eq!(full["status"], "in_progress");
    assert_eq!(full["priority"], 2);
    assert_eq!(full["assigneeId"], b.ann.id.as_str());
    assert_eq!(full["labels"], json!(["bug", "ui"]), "names, once each, sorted");
    assert_eq!(full["dueDate"], "2026-12-24");
    assert_eq!(full["createdBy"], b.bob.id.as_str());
    assert_eq!(full["completedAt"], Value::Null);

    let done = b.task(json!({"title": "Born done", "status": "done"})).await;
    assert_eq!(done["identifier"], "KEEL-3");
    assert!(
        done["completedAt"].is_string(),
        "created as done: completedAt is set"
    );
}

#[tokio::test]
async fn references_must_exist_in_the_project_and_a_refused_create_uses_no_number() {
    let b = board().await;
    let outsider = b.app.account("eve@example.com").await;
    let other = b.app.create_project(&outsider.token, "OTHER").await;
    b.app
        .create_label(
            &outsider.token,
            other["id"].as_str().unwrap(),
            "foreign",
            "#000000",
        )
        .await;
    b.app
        .create_label(&b.ann.token, &b.project, "bug", "#FF0000")
        .await;
    for (body, fields) in [
        (
            json!({"title": "T", "assigneeId": outsider.id}),
            vec!["assigneeId"],
        ),
        (
            json!({"title": "T", "assigneeId": uuid::Uuid::now_v7()}),
            vec!["assigneeId"],
        ),
        (json!({"title": "T", "labels": ["nope"]}), vec!["labels"]),
        (
            json!({"title": "T", "labels": ["bug", "foreign"]}),
            vec!["labels"],
        ),
        (
            json!({"title": "T", "assigneeId": outsider.id, "labels": ["nope"]}),
            vec!["assigneeId", "labels"],
        ),
    ] {
        let response = b.post(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR");
        assert_eq!(error_fields(&error), fields, "{body}");
    }
    assert_eq!(b.ids("").await.len(), 0, "nothing was created");
    let first = b
        .task(json!({"title": "Valid", "assigneeId": b.bob.id, "labels": ["bug"]}))
        .await;
    assert_eq!(first["identifier"], "KEEL-1", "numbers stay gap-free");
    assert_eq!(first["assigneeId"], b.bob.id.as_str());
}

#[tokio::test]
async fn invalid_task_fields_are_each_named() {
    let b = board().await;
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "t".repeat(201)}), "title"),
        (json!({}), "title"),
        (
            json!({"title": "T", "description": "d".repeat(10_001)}),
            "description",
        ),
        (json!({"title": "T", "status": "open"}), "status"),
        (json!({"title": "T", "priority": 5}), "priority"),
        (json!({"title": "T", "priority": -1}), "priority"),
        (json!({"title": "T", "dueDate": "2026-13-01"}), "dueDate"),
        (json!({"title": "T", "dueDate": "24.12.2026"}), "dueDate"),
        (
            json!({"title": "T", "dueDate": "2026-12-24T10:00:00Z"}),
            "dueDate",
        ),
        (json!({"title": "T", "labels": ["x".repeat(31)]}), "labels"),
        (json!({"title": "T", "number": 7}), "number"),
        (json!({"title": "T", "createdBy": "someone"}), "createdBy"),
    ] {
        let response = b.post(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert!(error_fields(&error).iter().any(|f| f == field), "{body}: {error}");
    }
    let response = b
        .post(json!({"title": "", "status": "open", "priority": 9, "dueDate": "soon"}))
        .await;
    assert_eq!(
        error_fields(&json_body(response).await),
        ["title", "status", "priority", "dueDate"],
        "every broken rule at once"
    );
    assert_eq!(b.ids("").await.len(), 0);
    let edge = b
        .task(json!({"title": "t".repeat(200), "description": "d".repeat(10_000), "priority": 4}))
        .await;
    assert_eq!(edge["identifier"], "KEEL-1");
}

#[tokio::test]
async fn a_task_is_found_by_id_and_by_identifier_in_any_case() {
    let b = board().await;
    b.task(json!({"title": "One"})).await;
    let two = b.task(json!({"title": "Two"})).await;
    let by_id = b
        .app
        .get_as(&format!("/api/v1/tasks/{}", id(&two)), &b.bob.token)
        .await;
    assert_eq!(by_id.status(), StatusCode::OK);
    let tag = etag(&by_id);
    assert_eq!(json_body(by_id).await, two);
    for identifier in ["KEEL-2", "keel-2", "Keel-2"] {
        let response = b
            .app
            .get_as(&format!("/api/v1/tasks/{identifier}"), &b.bob.token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{identifier}");
        assert_eq!(etag(&response), tag);
        assert_eq!(json_body(response).await, two, "{identifier}");
    }
    let cached = b
        .app
        .client
        .get(b.app.url("/api/v1/tasks/keel-2"))
        .bearer_auth(&b.bob.token)
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.unwrap().is_empty());

    for missing in [
        "KEEL-3".to_owned(),
        "KEEL-0".to_owned(),
        "NOPE-1".to_owned(),
        "KEEL".to_owned(),
        "garbage".to_owned(),
        uuid::Uuid::now_v7().to_string(),
    ] {
        let response = b
            .app
            .get_as(&format!("/api/v1/tasks/{missing}"), &b.ann.token)
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(json_body(response).await["code"], "NOT_FOUND");
    }
}

#[tokio::test]
async fn done_sets_completed_at_and_leaving_done_clears_it() {
    let b = board().await;
    let task = b.task(json!({"title": "Ship"})).await;
    let done = patch_task(&b.app, &b.bob.token, &id(&task), None, json!({"status": "done"})).await;
    assert_eq!(done.status(), StatusCode::OK);
    let done = json_body(done).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["version"], 2);
    let completed = time(&done["completedAt"]);
    assert!(completed >= time(&task["createdAt"]));
    assert_eq!(done["completedAt"], done["updatedAt"]);

    // Other changes keep the completion time.
    let renamed = json_body(
        patch_task(
            &b.app,
            &b.bob.token,
            &id(&task),
            None,
            json!({"title": "Shipped"}),
        )
        .await,
    )
    .await;
    assert_eq!(renamed["completedAt"], done["completedAt"]);

    let reopened = json_body(
        patch_task(
            &b.app,
            &b.bob.token,
            &id(&task),
            None,
            json!({"status": "in_review"}),
        )
        .await,
    )
    .await;
    assert_eq!(reopened["status"], "in_review");
    assert_eq!(reopened["completedAt"], Value::Null);
    assert_eq!(reopened["version"], 4);
    let read = b
        .app
        .get_ok(&format!("/api/v1/tasks/{}", id(&task)), &b.ann.token)
        .await;
    assert_eq!(read, reopened);
}

#[tokio::test]
async fn every_change_increments_the_version_and_a_stale_if_match_is_412() {
    let b = board().await;
    b.app
        .create_label(&b.ann.token, &b.project, "bug", "#FF0000")
        .await;
    let created = b.post(json!({"title": "Versioned"})).await;
    let mut tag = etag(&created);
    let task = json_body(created).await;
    let task_id = id(&task);
    let changes = [
        json!({"title": "Renamed"}),
        json!({"description": "Some text"}),
        json!({"status": "backlog"}),
        json!({"priority": 1}),
        json!({"assigneeId": b.bob.id}),
        json!({"labels": ["bug"]}),
        json!({"dueDate": "2027-01-31"}),
        json!({"description": null, "assigneeId": null, "dueDate": null, "labels": []}),
    ];
    let mut last = task.clone();
    for (n, change) in changes.iter().enumerate() {
        let response = patch_task(&b.app, &b.ann.token, &task_id, Some(&tag), change.clone()).await;
        assert_eq!(response.status(), StatusCode::OK, "{change}");
        let new_tag = etag(&response);
        let body = json_body(response).await;
        let version = n as i64 + 2;
        assert_eq!(body["version"], version, "{change}");
        assert!(new_tag.starts_with(&format!("\"{version}-")), "{new_tag}");
        assert_ne!(new_tag, tag);
        assert!(time(&body["updatedAt"]) >= time(&last["updatedAt"]));
        tag = new_tag;
        last = body;
    }
    assert_eq!(last["description"], Value::Null);
    assert_eq!(last["assigneeId"], Value::Null);
    assert_eq!(last["dueDate"], Value::Null);
    assert_eq!(last["labels"], json!([]));
    assert_eq!(last["title"], "Renamed");
    assert_eq!(last["priority"], 1);

    // A patch that changes nothing keeps the version.
    let same = patch_task(
        &b.app,
        &b.ann.token,
        &task_id,
        Some(&tag),
        json!({"title": "Renamed"}),
    )
    .await;
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(etag(&same), tag);
    assert_eq!(json_body(same).await["version"], last["version"]);

    // A stale tag: 412 and nothing changed.
    let stale_tag = format!("\"1-{}", tag.split_once('-').unwrap().1);
    for stale in [stale_tag.as_str(), "\"1-0000\"", "W/\"9-x\""] {
        let response = patch_task(
            &b.app,
            &b.bob.token,
            &task_id,
            Some(stale),
            json!({"title": "Lost"}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED, "{stale}");
        assert_eq!(json_body(response).await["code"], "PRECONDITION_FAILED");
    }
    let now = b
        .app
        .get_as(&format!("/api/v1/tasks/{task_id}"), &b.ann.token)
        .await;
    assert_eq!(etag(&now), tag);
    assert_eq!(json_body(now).await, last);

    for (change, field) in [
        (json!({"title": ""}), "title"),
        (json!({"status": "closed"}), "status"),
        (json!({"priority": 7}), "priority"),
        (json!({"dueDate": "tomorrow"}), "dueDate"),
        (json!({"labels": ["nope"]}), "labels"),
        (json!({"assigneeId": uuid::Uuid::now_v7()}), "assigneeId"),
        (json!({"number": 9}), "number"),
    ] {
        let response = patch_task(&b.app, &b.ann.token, &task_id, None, change.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{change}");
        assert!(
            error_fields(&json_body(response).await)
                .iter()
                .any(|f| f == field),
            "{change}"
        );
    }
    assert_eq!(
        b.app
            .get_ok(&format!("/api/v1/tasks/{task_id}"), &b.ann.token)
            .await,
        last
    );
    let missing = patch_task(
        &b.app,
        &b.ann.token,
        &uuid::Uuid::now_v7().to_string(),
        None,
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_patches_lose_no_update_and_one_if_match_has_one_winner() {
    let b = board().await;
    let task = b.task(json!({"title": "Contended"})).await;
    let task_id = id(&task);
    let changes = [
        json!({"title": "New title"}),
        json!({"description": "New description"}),
        json!({"status": "in_progress"}),
        json!({"priority": 2}),
        json!({"dueDate": "2027-05-01"}),
        json!({"assigneeId": b.bob.id}),
    ];
    let send_all = |if_match: Option<String>, changes: Vec<Value>| {
        let mut handles = Vec::new();
        for change in changes {
            let (client, url, token, tag) = (
                b.app.client.clone(),
                b.app.url(&format!("/api/v1/tasks/{task_id}")),
                b.ann.token.clone(),
                if_match.clone(),
            );
            handles.push(tokio::spawn(async move {
                let mut request = client.patch(url).bearer_auth(token).json(&change);
                if let Some(tag) = tag {
                    request = request.header(IF_MATCH, tag);
                }
                let response = request.send().await.unwrap();
                (change, response.status())
            }));
        }
        handles
    };
    let mut applied = Vec::new();
    for handle in send_all(None, changes.to_vec()) {
        let (change, status) = handle.await.unwrap();
        // Without If-Match a lost race is retried; after a few it may be a 409, never a 500.
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{change}: {status}"
        );
        if status == StatusCode::OK {
            applied.push(change);
        }
    }
    let now = b
        .app
        .get_ok(&format!("/api/v1/tasks/{task_id}"), &b.ann.token)
        .await;
    assert_eq!(
        now["version"],
        1 + applied.len(),
        "one version per applied change"
    );
    for change in &applied {
        let (field, value) = change.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&now[field], value, "the change {change} was lost");
    }

    let response = b
        .app
        .get_as(&format!("/api/v1/tasks/{task_id}"), &b.ann.token)
        .await;
    let tag = etag(&response);
    let titles: Vec<Value> = (0..5).map(|n| json!({"title": format!("Racer {n}")})).collect();
    let mut winners = 0;
    for handle in send_all(Some(tag), titles) {
        let (change, status) = handle.await.unwrap();
        match status {
            StatusCode::OK => winners += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("{change}: {other}"),
        }
    }
    assert_eq!(winners, 1, "one write per version");
    let last = b
        .app
        .get_ok(&format!("/api/v1/tasks/{task_id}"), &b.ann.token)
        .await;
    assert_eq!(last["version"], now["version"].as_i64().unwrap() + 1);
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let b = board().await;
    let task = b.task(json!({"title": "Short-lived"})).await;
    let keep = b.task(json!({"title": "Stays"})).await;
    let comment = b
        .app
        .created(
            &format!("/api/v1/tasks/{}/comments", id(&task)),
            &json!({"body": "bye"}),
            &b.bob.token,
        )
        .await;
    let path = format!("/api/v1/tasks/{}", id(&task));
    assert_eq!(
        b.app.delete_as(&path, &b.bob.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.app.get_as(&path, &b.ann.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.app.get_as("/api/v1/tasks/KEEL-1", &b.ann.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.app.delete_as(&path, &b.ann.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.app
            .get_as(&format!("{path}/comments"), &b.ann.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let gone = b
        .app
        .patch_json(
            &format!("/api/v1/comments/{}", comment["id"].as_str().unwrap()),
            &json!({"body": "edit"}),
            &b.bob.token,
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "its comments went with it");
    assert_eq!(b.ids("").await, [id(&keep)]);
    // Numbers are never reused.
    assert_eq!(b.task(json!({"title": "Next"})).await["identifier"], "KEEL-3");
}

#[tokio::test]
async fn task_lists_filter_by_status_priority_assignee_label_text_and_time() {
    let b = board().await;
    for (name, color) in [("bug", "#FF0000"), ("docs", "#0000FF"), ("ui", "#00FF00")] {
        b.app.create_label(&b.ann.token, &b.project, name, color).await;
    }
    let a = b
        .task(json!({"title": "Fix LOGIN bug", "priority": 1, "assigneeId": b.ann.id, "labels": ["bug"]}))
        .await;
    let bb = b
        .task(
            json!({"title": "Write docs", "status": "in_progress", "priority": 2,
            "assigneeId": b.bob.id, "labels": ["docs"]}),
        )
        .await;
    let c = b
        .task(json!({"title": "Login page polish", "status": "done", "labels": ["ui", "bug"]}))
        .await;
    let d = b
        .task(json!({"title": "Release", "status": "backlog", "priority": 4}))
        .await;
    let (a, bb, c, d) = (id(&a), id(&bb), id(&c), id(&d));
    let set = |ids: Vec<String>| ids.into_iter().collect::<HashSet<_>>();
    let want = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<HashSet<_>>();

    let by_bob = format!("assignee={}", b.bob.id);
    for (query, expected) in [
        ("status=todo", vec![&a]),
        ("status=todo,done", vec![&a, &c]),
        ("status=canceled", vec![]),
        ("priority=1,4", vec![&a, &d]),
        ("priority=0", vec![&c]),
        ("assignee=me", vec![&a]),
        ("assignee=none", vec![&c, &d]),
        (by_bob.as_str(), vec![&bb]),
        ("label=bug", vec![&a, &c]),
        ("label=docs,ui", vec![&bb, &c]),
        ("label=bug,nosuch", vec![&a, &c]),
        ("label=nosuch", vec![]),
        ("q=login", vec![&a, &c]),
        ("q=LOGIN%20BUG", vec![&a]),
        ("q=%25", vec![]),
        ("q=_", vec![]),
        ("q=%20%20", vec![&a, &bb, &c, &d]),
        ("status=todo,done&label=ui", vec![&c]),
        ("assignee=none&priority=4&q=rel", vec![&d]),
        ("", vec![&a, &bb, &c, &d]),
    ] {
        assert_eq!(set(b.ids(query).await), want(&expected), "{query}");
    }
    // `me` is the caller.
    let bobs = b
        .app
        .get_ok(&format!("{}?assignee=me", b.tasks_path()), &b.bob.token)
        .await;
    assert_eq!(ids_of(bobs["data"].as_array().unwrap()), [bb.as_str()]);

    // updatedSince: at or after the instant.
    let changed =
        json_body(patch_task(&b.app, &b.ann.token, &d, None, json!({"title": "Release 1.0"})).await).await;
    let since = changed["updatedAt"].as_str().unwrap();
    assert_eq!(b.ids(&format!("updatedSince={since}")).await, [d.as_str()]);
    let everything = b.ids("updatedSince=2000-01-01T00:00:00Z").await;
    assert_eq!(everything.len(), 4);
    assert_eq!(b.ids("updatedSince=2999-01-01T00:00:00%2B02:00").await.len(), 0);
}

/// Case-insensitive search is promised for titles in any script, not only ASCII.
#[tokio::test]
async fn title_search_ignores_case_beyond_ascii() {
    let b = board().await;
    let german = b.task(json!({"title": "Überprüfung der Straße"})).await;
    let greek = b.task(json!({"title": "ΣΥΝΆΝΤΗΣΗ ομάδας"})).await;
    b.task(json!({"title": "Unrelated"})).await;
    assert_eq!(
        b.ids("q=%C3%BCberpr%C3%BCfung").await,
        [id(&german)],
        "ü matches Ü"
    );
    assert_eq!(
        b.ids("q=%CE%A3%CE%A5%CE%9D").await,
        [id(&greek)],
        "ΣΥΝ matches ΣΥΝ"
    );
    assert_eq!(
        b.ids("q=%CF%83%CF%85%CE%BD").await,
        [id(&greek)],
        "συν matches ΣΥΝ"
    );
    assert_eq!(
        b.ids("q=%C3%9CBERPR%C3%9CFUNG").await,
        [id(&german)],
        "ÜBERPRÜFUNG matches Überprüfung"
    );
}

#[tokio::test]
async fn task_lists_sort_by_every_key_both_ways_and_cursors_follow_the_order() {
    let b = board().await;
    for (priority, due) in [
        (0, None),
        (1, Some("2026-03-01")),
        (4, Some("2026-01-15")),
        (2, None),
        (3, Some("2026-02-10")),
        (1, Some("2026-01-15")),
        (0, Some("2026-02-10")),
    ] {
        b.task(json!({"title": format!("P{priority}"), "priority": priority, "dueDate": due}))
            .await;
    }
    // Two tasks change afterwards, so that updatedAt differs from createdAt.
    let all = b.app.walk(&b.tasks_path(), 100, &b.ann.token).await;
    for task in [&all[4], &all[6]] {
        let response = patch_task(
            &b.app,
            &b.ann.token,
            &id(task),
            None,
            json!({"description": "touched"}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let all = b.app.walk(&b.tasks_path(), 100, &b.ann.token).await;
    assert_eq!(all.len(), 7);

    for sort in [
        "createdAt",
        "-createdAt",
        "updatedAt",
        "-updatedAt",
        "priority",
        "-priority",
        "dueDate",
        "-dueDate",
    ] {
        let expected = expected_order(&all, sort);
        let one_page = b.ids(&format!("sort={sort}")).await;
        assert_eq!(one_page, expected, "sort={sort}");
        for limit in [1, 2, 3] {
            let walked = b
                .app
                .walk(&format!("{}?sort={sort}", b.tasks_path()), limit, &b.ann.token)
                .await;
            assert_eq!(ids_of(&walked), expected, "sort={sort}, walked {limit} at a time");
        }
    }
    assert_eq!(
        b.ids("").await,
        expected_order(&all, "-createdAt"),
        "the default is -createdAt"
    );

    // The promises themselves, independent of the helper above.
    let by_priority = b
        .app
        .walk(&format!("{}?sort=priority", b.tasks_path()), 100, &b.ann.token)
        .await;
    let priorities: Vec<u64> = by_priority
        .iter()
        .map(|t| t["priority"].as_u64().unwrap())
        .collect();
    assert_eq!(priorities, [1, 1, 2, 3, 4, 0, 0], "urgent first, none last");
    let by_due = b
        .app
        .walk(&format!("{}?sort=dueDate", b.tasks_path()), 100, &b.ann.token)
        .await;
    let dues: Vec<Option<&str>> = by_due.iter().map(|t| t["dueDate"].as_str()).collect();
    assert_eq!(
        dues,
        [
            Some("2026-01-15"),
            Some("2026-01-15"),
            Some("2026-02-10"),
            Some("2026-02-10"),
            Some("2026-03-01"),
            None,
            None
        ],
        "undated last"
    );
    let by_due_desc = b
        .app
        .walk(&format!("{}?sort=-dueDate", b.tasks_path()), 2, &b.ann.token)
        .await;
    assert_eq!(
        by_due_desc[0]["dueDate"],
        Value::Null,
        "undated first when descending"
    );
    assert_eq!(by_due_desc[6]["dueDate"], "2026-01-15");
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_field() {
    let b = board().await;
    b.task(json!({"title": "One"})).await;
    for base in [b.tasks_path(), "/api/v1/tasks".to_owned()] {
        for (query, field) in [
            ("status=open", "status"),
            ("status=todo,", "status"),
            ("status=TODO", "status"),
            ("priority=5", "priority"),
            ("priority=x", "priority"),
            ("priority=1,,2", "priority"),
            ("assignee=someone", "assignee"),
            ("assignee=12345", "assignee"),
            ("updatedSince=yesterday", "updatedSince"),
            ("updatedSince=2026-01-01", "updatedSince"),
            ("sort=title", "sort"),
            ("sort=--priority", "sort"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("cursor=not-a-cursor", "cursor"),
        ] {
            let response = b.app.get_as(&format!("{base}?{query}"), &b.ann.token).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{base}?{query}");
            let error = json_body(response).await;
            assert_eq!(error["code"], "VALIDATION_ERROR");
            assert_eq!(error_fields(&error), [field], "{base}?{query}");
        }
        let long_q = format!("{base}?q={}", "q".repeat(201));
        let response = b.app.get_as(&long_q, &b.ann.token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_fields(&json_body(response).await), ["q"]);
    }
}

#[tokio::test]
async fn a_cursor_only_continues_the_sort_it_was_made_for() {
    let b = board().await;
    for n in 0..3 {
        b.task(json!({"title": format!("T{n}"), "priority": n})).await;
    }
    let first = b
        .app
        .get_ok(&format!("{}?sort=priority&limit=1", b.tasks_path()), &b.ann.token)
        .await;
    let cursor = first["pagination"]["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(first["pagination"]["limit"], 1);
    for other in ["-priority", "createdAt", "-createdAt", "dueDate"] {
        let response = b
            .app
            .get_as(
                &format!("{}?sort={other}&limit=1&cursor={cursor}", b.tasks_path()),
                &b.ann.token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{other}");
        assert_eq!(error_fields(&json_body(response).await), ["cursor"], "{other}");
    }
    let without_sort = b
        .app
        .get_as(
            &format!("{}?limit=1&cursor={cursor}", b.tasks_path()),
            &b.ann.token,
        )
        .await;
    assert_eq!(
        without_sort.status(),
        StatusCode::BAD_REQUEST,
        "the default sort is another sort"
    );
    let same = b
        .app
        .get_ok(
            &format!("{}?sort=priority&limit=1&cursor={cursor}", b.tasks_path()),
            &b.ann.token,
        )
        .await;
    assert_eq!(same["data"].as_array().unwrap().len(), 1);
    assert_ne!(same["data"][0]["id"], first["data"][0]["id"]);
    // A comment cursor is not a task cursor.
    let task = b.task(json!({"title": "Discussed"})).await;
    for n in 0..2 {
        b.app
            .created(
                &format!("/api/v1/tasks/{}/comments", id(&task)),
                &json!({"body": format!("c{n}")}),
                &b.ann.token,
            )
            .await;
    }
    let comments = b
        .app
        .get_ok(
            &format!("/api/v1/tasks/{}/comments?limit=1", id(&task)),
            &b.ann.token,
        )
        .await;
    let comment_cursor = comments["pagination"]["nextCursor"].as_str().unwrap();
    let response = b
        .app
        .get_as(
            &format!("{}?cursor={comment_cursor}", b.tasks_path()),
            &b.ann.token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(response).await), ["cursor"]);
}

#[tokio::test]
async fn get_tasks_spans_the_callers_projects_and_no_others() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let cara = app.account("cara@example.com").await;
    let anns = app.create_project(&ann.token, "ANN").await;
    let bobs = app.create_project(&bob.token, "BOB").await;
    let caras = app.create_project(&cara.token, "CARA").await;
    app.add_member(&bob.token, bobs["id"].as_str().unwrap(), &ann.email, "viewer")
        .await;
    let mut expected = HashSet::new();
    for (token, project, title) in [
        (&ann.token, &anns, "ann 1"),
        (&ann.token, &anns, "ann 2"),
        (&bob.token, &bobs, "bob 1"),
    ] {
        let task = app
            .create_task(
                token,
                project["id"].as_str().unwrap(),
                json!({"title": title, "priority": 1}),
            )
            .await;
        expected.insert(id(&task));
    }
    let hidden = app
        .create_task(
            &cara.token,
            caras["id"].as_str().unwrap(),
            json!({"title": "cara 1", "priority": 1}),
        )
        .await;

    let mine = app.walk("/api/v1/tasks", 2, &ann.token).await;
    assert_eq!(ids_of(&mine).into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(mine.len(), 3);
    let keys: HashSet<&str> = mine
        .iter()
        .map(|t| t["identifier"].as_str().unwrap().split('-').next().unwrap())
        .collect();
    assert_eq!(keys, HashSet::from(["ANN", "BOB"]));
    // Filters apply across projects too.
    let filtered = app.get_ok("/api/v1/tasks?q=bob&priority=1", &ann.token).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["data"][0]["identifier"], "BOB-1");

    let caras_list = app.get_ok("/api/v1/tasks", &cara.token).await;
    assert_eq!(ids_of(caras_list["data"].as_array().unwrap()), [id(&hidden)]);
    let nobody = app.account("dan@example.com").await;
    let empty = app.get_ok("/api/v1/tasks", &nobody.token).await;
    assert_eq!(
        empty,
        json!({"data": [], "pagination": {"limit": 50, "nextCursor": null}})
    );
    // An instance admin sees them all.
    let root = app.admin_token("root@example.com").await;
    assert_eq!(app.walk("/api/v1/tasks", 100, &root).await.len(), 4);
    assert_eq!(app.get("/api/v1/tasks").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fifty_concurrent_creates_get_the_numbers_one_to_fifty() {
    let b = board().await;
    let mut handles = Vec::new();
    for n in 0..50 {
        let client = b.app.client.clone();
        let url = b.app.url(&b.tasks_path());
        // Two users, so that the creates do not even share a session.
        let token = if n % 2 == 0 {
            b.ann.token.clone()
        } else {
            b.bob.token.clone()
        };
        handles.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"title": format!("Concurrent {n}")}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }));
    }
    let mut numbers = Vec::new();
    let mut identifiers = HashSet::new();
    for handle in handles {
        let (status, text) = handle.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let task: Value = serde_json::from_str(&text).unwrap();
        let number = task["number"].as_i64().unwrap();
        assert_eq!(task["identifier"], format!("KEEL-{number}").as_str());
        identifiers.insert(task["identifier"].as_str().unwrap().to_owned());
        numbers.push(number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=50).collect::<Vec<i64>>());
    assert_eq!(identifiers.len(), 50);
    let stored = b.app.walk(&b.tasks_path(), 100, &b.ann.token).await;
    let mut stored_numbers: Vec<i64> = stored.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    stored_numbers.sort_unstable();
    assert_eq!(stored_numbers, (1..=50).collect::<Vec<i64>>());
    assert_eq!(b.task(json!({"title": "After"})).await["number"], 51);
}

/// Walks the list with `sort` 7 at a time while tasks are inserted between pages and by a
/// concurrent writer; returns the walked rows.
async fn walk_while_inserting(b: &Board, sort: Option<&str>) -> (Vec<String>, Vec<Value>) {
    let mut existing = Vec::new();
    for n in 0..30 {
        let task = b
            .task(json!({"title": format!("Old {n}"), "priority": n % 5}))
            .await;
        existing.push(id(&task));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, url, token, stop) = (
            b.app.client.clone(),
            b.app.url(&b.tasks_path()),
            b.bob.token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 60 {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("New {n}"), "priority": n % 5}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                n += 1;
            }
            n
        })
    };
    let sort_query = sort.map(|s| format!("&sort={s}")).unwrap_or_default();
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor_query = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = b
            .app
            .get_ok(
                &format!("{}?limit=7{sort_query}{cursor_query}", b.tasks_path()),
                &b.ann.token,
            )
            .await;
        pages += 1;
        rows.extend(page["data"].as_array().unwrap().iter().cloned());
        // Between pages, new tasks of every priority (some sort before the cursor, some after).
        for p in [1, 0, 3] {
            b.app
                .create_task(
                    &b.ann.token,
                    &b.project,
                    json!({"title": "Between", "priority": p}),
                )
                .await;
        }
        match page["pagination"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 200, "the walk does not end");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(writer.await.unwrap() > 0, "the concurrent writer inserted tasks");
    (existing, rows)
}

fn assert_each_once(existing: &[String], rows: &[Value], what: &str) {
    let walked = ids_of(rows);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &walked {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "{what}: a task came twice");
    for id in existing {
        assert_eq!(counts.get(id.as_str()), Some(&1), "{what}: task {id} was skipped");
    }
}

#[tokio::test]
async fn a_cursor_walk_sees_every_existing_task_once_while_others_are_inserted() {
    let b = board().await;
    let (existing, rows) = walk_while_inserting(&b, None).await;
    assert_each_once(&existing, &rows, "-createdAt");
    // Newest first: what was inserted during the walk came before the cursor.
    let times: Vec<_> = rows.iter().map(|t| (time(&t["createdAt"]), uuid_of(t))).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "the walk kept its order");
}

#[tokio::test]
async fn a_cursor_walk_by_priority_sees_every_existing_task_once_while_others_are_inserted() {
    let b = board().await;
    let (existing, rows) = walk_while_inserting(&b, Some("priority")).await;
    assert_each_once(&existing, &rows, "priority");
    let rank = |t: &Value| match t["priority"].as_u64().unwrap() {
        0 => 5,
        p => p,
    };
    let keys: Vec<_> = rows.iter().map(|t| (rank(t), uuid_of(t))).collect();
    assert!(
        keys.windows(2).all(|w| w[0].cmp(&w[1]) == Ordering::Less),
        "the walk kept the priority order"
    );
}

#[tokio::test]
async fn listing_tasks_costs_the_same_queries_for_2_or_40_tasks_with_labels() {
    // Every page from the store: a cached page would cost nothing at all.
    let b = board_on(
        spawn_app_with(|vars| {
            vars.insert("KEEL_CACHE_LAYERS".into(), "none".into());
        })
        .await,
    )
    .await;
    for (name, color) in [("bug", "#FF0000"), ("docs", "#0000FF"), ("ui", "#00FF00")] {
        b.app.create_label(&b.ann.token, &b.project, name, color).await;
    }
    for n in 0..40 {
        b.task(
            json!({"title": format!("Labelled {n}"), "labels": ["bug", "docs", "ui"],
            "assigneeId": b.bob.id}),
        )
        .await;
    }
    let big = b
        .app
        .get_ok(&format!("{}?limit=40", b.tasks_path()), &b.ann.token)
        .await;
    let big = big["data"].as_array().unwrap();
    assert_eq!(big.len(), 40);
    assert!(big.iter().all(|t| t["labels"] == json!(["bug", "docs", "ui"])));

    for base in [b.tasks_path(), "/api/v1/tasks".to_owned()] {
        let small = b
            .app
            .fewest_statements(&format!("{base}?limit=2"), &b.ann.token)
            .await;
        let large = b
            .app
            .fewest_statements(&format!("{base}?limit=40"), &b.ann.token)
            .await;
        assert!(small > 0, "the statement counter moves");
        assert_eq!(
            small, large,
            "{base}: 2 tasks cost {small} statements, 40 tasks {large}"
        );
        // A filtered, sorted page and a later page cost no more either.
        let filtered = b
            .app
            .fewest_statements(
                &format!("{base}?limit=40&label=bug,ui&sort=priority&status=todo"),
                &b.ann.token,
            )
            .await;
        assert_eq!(filtered, small, "{base}: a filtered page");
    }
}
