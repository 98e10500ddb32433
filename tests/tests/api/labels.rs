//! `/api/v1/projects/{id}/labels` (docs/api/tracking.md).

use keel_tests::{error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

fn label_names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_create_labels_and_the_color_is_stored_in_upper_case() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &bob.email, "admin").await;

    let response = app
        .post_json(
            &format!("/api/v1/projects/{id}/labels"),
            &json!({"name": "  bug ", "color": "#d73a4a"}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let label = json_body(response).await;
    assert_eq!(label["name"], "bug");
    assert_eq!(label["color"], "#D73A4A");
    assert!(label["createdAt"].is_string());
    assert_eq!(
        location,
        format!("/api/v1/projects/{id}/labels/{}", label["id"].as_str().unwrap())
    );
    app.create_label(&ann.token, id, "ui", "#00ff00").await;
    app.create_label(&ann.token, id, "docs", "#0000FF").await;

    let list = app
        .get_ok(&format!("/api/v1/projects/{id}/labels"), &ann.token)
        .await;
    assert_eq!(label_names(&list), ["bug", "docs", "ui"], "by name");
    assert_eq!(list["pagination"]["total"], 3);
    assert_eq!(list["data"][0], label);
    assert_eq!(list["data"][2]["color"], "#00FF00");
    let page = app
        .get_ok(
            &format!("/api/v1/projects/{id}/labels?limit=2&page=2"),
            &ann.token,
        )
        .await;
    assert_eq!(label_names(&page), ["ui"]);
}

#[tokio::test]
async fn a_label_name_is_unique_in_its_project_only() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let one = app.create_project(&ann.token, "ONE").await;
    let two = app.create_project(&ann.token, "TWO").await;
    let (one, two) = (one["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    app.create_label(&ann.token, one, "bug", "#D73A4A").await;

    let duplicate = app
        .post_json(
            &format!("/api/v1/projects/{one}/labels"),
            &json!({"name": " bug", "color": "#000000"}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    assert_eq!(json_body(duplicate).await["code"], "CONFLICT");
    let list = app
        .get_ok(&format!("/api/v1/projects/{one}/labels"), &ann.token)
        .await;
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(
        list["data"][0]["color"], "#D73A4A",
        "the first label is untouched"
    );

    app.create_label(&ann.token, two, "bug", "#000000").await;
}

#[tokio::test]
async fn bad_names_and_colors_are_400_and_create_nothing() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let path = format!("/api/v1/projects/{}/labels", project["id"].as_str().unwrap());
    for (body, fields) in [
        (json!({"name": "bug", "color": "red"}), vec!["color"]),
        (json!({"name": "bug", "color": "#12345"}), vec!["color"]),
        (json!({"name": "bug", "color": "#1234567"}), vec!["color"]),
        (json!({"name": "bug", "color": "#GGGGGG"}), vec!["color"]),
        (json!({"name": "bug", "color": "D73A4A"}), vec!["color"]),
        (json!({"name": "", "color": "#D73A4A"}), vec!["name"]),
        (json!({"name": "   ", "color": "#D73A4A"}), vec!["name"]),
        (json!({"name": "x".repeat(31), "color": "#D73A4A"}), vec!["name"]),
        (json!({"name": "", "color": "blue"}), vec!["name", "color"]),
        (json!({"name": "bug"}), vec!["color"]),
    ] {
        let response = app.post_json(&path, &body, Some(&ann.token)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR");
        assert_eq!(error_fields(&error), fields, "{body}");
    }
    // 30 characters of any width are fine.
    app.create_label(
        &ann.token,
        project["id"].as_str().unwrap(),
        &"é".repeat(30),
        "#abcdef",
    )
    .await;
    let list = app.get_ok(&path, &ann.token).await;
    assert_eq!(list["pagination"]["total"], 1);
}

#[tokio::test]
async fn members_and_viewers_read_labels_but_do_not_manage_them() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let cara = app.account("cara@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &cara.email, "member").await;
    let bug = app.create_label(&ann.token, id, "bug", "#D73A4A").await;

    let refused = app
        .post_json(
            &format!("/api/v1/projects/{id}/labels"),
            &json!({"name": "mine", "color": "#000000"}),
            Some(&cara.token),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = app
        .delete_as(
            &format!("/api/v1/projects/{id}/labels/{}", bug["id"].as_str().unwrap()),
            &cara.token,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let list = app
        .get_ok(&format!("/api/v1/projects/{id}/labels"), &cara.token)
        .await;
    assert_eq!(label_names(&list), ["bug"]);
}

#[tokio::test]
async fn deleting_a_label_takes_it_off_every_task() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    let bug = app.create_label(&ann.token, id, "bug", "#D73A4A").await;
    app.create_label(&ann.token, id, "ui", "#00FF00").await;
    let both = app
        .create_task(&ann.token, id, json!({"title": "Both", "labels": ["ui", "bug"]}))
        .await;
    assert_eq!(both["labels"], json!(["bug", "ui"]));
    let plain = app.create_task(&ann.token, id, json!({"title": "Plain"})).await;

    let path = format!("/api/v1/projects/{id}/labels/{}", bug["id"].as_str().unwrap());
    assert_eq!(
        app.delete_as(&path, &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_as(&path, &ann.token).await.status(),
        StatusCode::NOT_FOUND
    );

    let task = app
        .get_ok(
            &format!("/api/v1/tasks/{}", both["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(task["labels"], json!(["ui"]));
    assert_eq!(task["version"], 2, "losing a label is a change of the task");
    let untouched = app
        .get_ok(
            &format!("/api/v1/tasks/{}", plain["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(untouched, plain);

    let labels = app
        .get_ok(&format!("/api/v1/projects/{id}/labels"), &ann.token)
        .await;
    assert_eq!(label_names(&labels), ["ui"]);
    let filtered = app
        .get_ok(&format!("/api/v1/projects/{id}/tasks?label=bug"), &ann.token)
        .await;
    assert_eq!(filtered["data"], json!([]));
    // The name is free again, and a task can no longer name the old label.
    let refused = app
        .post_json(
            &format!("/api/v1/projects/{id}/tasks"),
            &json!({"title": "Old label", "labels": ["bug"]}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    app.create_label(&ann.token, id, "bug", "#111111").await;

    // A label of another project is not found through this one.
    let other = app.create_project(&ann.token, "OTHER").await;
    let foreign = app
        .create_label(&ann.token, other["id"].as_str().unwrap(), "x", "#000000")
        .await;
    let response = app
        .delete_as(
            &format!("/api/v1/projects/{id}/labels/{}", foreign["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let still = app
        .get_ok(
            &format!("/api/v1/projects/{}/labels", other["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(label_names(&still), ["x"]);
}

/// A change of a task's labels must show in `updatedAt`, or clients that sync with
/// `updatedSince` never learn that the label went.
#[tokio::test]
async fn deleting_a_label_marks_the_tasks_that_carried_it_as_updated() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    let bug = app.create_label(&ann.token, id, "bug", "#D73A4A").await;
    let task = app
        .create_task(&ann.token, id, json!({"title": "Buggy", "labels": ["bug"]}))
        .await;
    let marker = app.create_task(&ann.token, id, json!({"title": "Later"})).await;
    let since = marker["updatedAt"].as_str().unwrap().to_owned();

    let path = format!("/api/v1/projects/{id}/labels/{}", bug["id"].as_str().unwrap());
    assert_eq!(
        app.delete_as(&path, &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    let after = app
        .get_ok(
            &format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(after["labels"], json!([]));
    assert_ne!(
        after["updatedAt"], task["updatedAt"],
        "the task's labels changed (version {} → {}) but its updatedAt did not",
        task["version"], after["version"]
    );
    let changed = app
        .get_ok(
            &format!("/api/v1/projects/{id}/tasks?updatedSince={since}"),
            &ann.token,
        )
        .await;
    let ids: Vec<&Value> = changed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert!(
        ids.contains(&&task["id"]),
        "updatedSince misses the task: {changed}"
    );
}
