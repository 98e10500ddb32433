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

/// Ann owns `KEEL` with Cara (member); labels `bug` and `ui`; a task carrying `bug`.
struct Labelled {
    app: keel_tests::TestApp,
    project: String,
    bug: String,
    ui: String,
    task: String,
    ann: keel_tests::Account,
    cara: keel_tests::Account,
}

async fn labelled() -> Labelled {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let cara = app.account("cara@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    app.add_member(&ann.token, &project, &cara.email, "member").await;
    let bug = app.create_label(&ann.token, &project, "bug", "#FF0000").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ui = app.create_label(&ann.token, &project, "ui", "#00FF00").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = app
        .create_task(
            &ann.token,
            &project,
            json!({"title": "Carrier", "labels": ["bug"]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Labelled {
        app,
        project,
        bug,
        ui,
        task,
        ann,
        cara,
    }
}

impl Labelled {
    fn label_path(&self, id: &str) -> String {
        format!("/api/v1/projects/{}/labels/{id}", self.project)
    }

    async fn patch(&self, token: &str, id: &str, body: Value) -> reqwest::Response {
        self.app.patch_json(&self.label_path(id), &body, token).await
    }

    async fn task(&self) -> (Value, String) {
        let response = self
            .app
            .get_as(&format!("/api/v1/tasks/{}", self.task), &self.ann.token)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        (json_body(response).await, tag)
    }
}

#[tokio::test]
async fn renaming_a_label_shows_on_every_task_view_at_once_with_a_new_version() {
    let l = labelled().await;
    // Read (and cache) the task, its page and the cross-project list first.
    let (before, tag) = l.task().await;
    assert_eq!(before["labels"], json!(["bug"]));
    assert_eq!(before["labelIds"], json!([l.bug]));
    let page_path = format!("/api/v1/projects/{}/tasks", l.project);
    assert_eq!(
        l.app.get_ok(&page_path, &l.ann.token).await["data"][0]["labels"],
        json!(["bug"])
    );
    assert_eq!(
        l.app.get_ok("/api/v1/tasks", &l.ann.token).await["data"][0]["labelIds"],
        json!([l.bug])
    );

    let response = l
        .patch(&l.ann.token, &l.bug, json!({"name": " zz-defect "}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let renamed = json_body(response).await;
    assert_eq!(renamed["name"], "zz-defect");
    assert_eq!(renamed["color"], "#FF0000");
    assert_eq!(renamed["id"], l.bug.as_str());

    let (after, new_tag) = l.task().await;
    assert_eq!(after["labels"], json!(["zz-defect"]));
    assert_eq!(after["labelIds"], json!([l.bug]));
    assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
    assert_ne!(new_tag, tag, "a new ETag");
    assert_eq!(
        l.app.get_ok(&page_path, &l.ann.token).await["data"][0]["labels"],
        json!(["zz-defect"])
    );
    assert_eq!(
        l.app.get_ok("/api/v1/tasks", &l.ann.token).await["data"][0]["labels"],
        json!(["zz-defect"])
    );
    // The old name filters nothing any more, the new one and the id do.
    for (filter, count) in [("bug", 0), ("zz-defect", 1), (l.bug.as_str(), 1)] {
        let page = l
            .app
            .get_ok(&format!("{page_path}?label={filter}"), &l.ann.token)
            .await;
        assert_eq!(page["data"].as_array().unwrap().len(), count, "{filter}");
    }

    // A new colour only changes no task; the same values change nothing at all.
    let recoloured = json_body(l.patch(&l.ann.token, &l.bug, json!({"color": "#123abc"})).await).await;
    assert_eq!(recoloured["color"], "#123ABC");
    let unchanged = l
        .patch(
            &l.ann.token,
            &l.bug,
            json!({"name": "zz-defect", "color": "#123ABC"}),
        )
        .await;
    assert_eq!(unchanged.status(), StatusCode::OK);
    assert_eq!(l.task().await.0["version"], after["version"]);
    let labels = l
        .app
        .get_ok(&format!("/api/v1/projects/{}/labels", l.project), &l.cara.token)
        .await;
    assert_eq!(label_names(&labels), ["ui", "zz-defect"]);
    let actions: Vec<Value> = l
        .app
        .walk(
            &format!("/api/v1/projects/{}/activity", l.project),
            100,
            &l.ann.token,
        )
        .await
        .into_iter()
        .filter(|e| e["action"] == "label.updated")
        .collect();
    assert_eq!(
        actions.len(),
        2,
        "a rename and a recolour; the no-op records nothing"
    );
    assert_eq!(actions[1]["details"]["previousName"], "bug");
}

#[tokio::test]
async fn label_patches_are_refused_on_a_taken_name_bad_input_a_weak_role_and_strangers() {
    let l = labelled().await;
    let eve = l.app.account("eve@example.com").await;
    let before = l
        .app
        .get_ok(&format!("/api/v1/projects/{}/labels", l.project), &l.ann.token)
        .await;
    let taken = l.patch(&l.ann.token, &l.bug, json!({"name": "ui"})).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(json_body(taken).await["code"], "CONFLICT");
    for (body, fields) in [
        (json!({"name": ""}), vec!["name"]),
        (json!({"name": "x".repeat(31)}), vec!["name"]),
        (json!({"color": "red"}), vec!["color"]),
        (
            json!({"name": "a\u{200B}b", "color": "#12345"}),
            vec!["name", "color"],
        ),
    ] {
        let response = l.patch(&l.ann.token, &l.bug, body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_fields(&json_body(response).await), fields, "{body}");
    }
    assert_eq!(
        l.patch(&l.ann.token, &l.bug, json!({"colour": "#000000"}))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        l.patch(&l.cara.token, &l.bug, json!({"name": "mine"}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        l.patch(&eve.token, &l.bug, json!({"name": "mine"}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let unknown = l
        .patch(
            &l.ann.token,
            &uuid::Uuid::now_v7().to_string(),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let after = l
        .app
        .get_ok(&format!("/api/v1/projects/{}/labels", l.project), &l.ann.token)
        .await;
    assert_eq!(after, before, "nothing changed");
    assert_eq!(l.task().await.0["version"], 1);
}

#[tokio::test]
async fn task_bodies_and_the_label_filter_take_label_ids_or_names() {
    let l = labelled().await;
    let created = l
        .app
        .create_task(
            &l.cara.token,
            &l.project,
            json!({"title": "By id", "labels": [l.ui, "bug", l.ui.to_uppercase()]}),
        )
        .await;
    assert_eq!(created["labels"], json!(["bug", "ui"]));
    assert_eq!(created["labelIds"], json!([l.bug, l.ui]));
    let path = format!("/api/v1/tasks/{}", created["id"].as_str().unwrap());
    let patched = l
        .app
        .patch_json(&path, &json!({"labels": [l.ui]}), &l.cara.token)
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched = json_body(patched).await;
    assert_eq!(
        (patched["labels"].clone(), patched["labelIds"].clone()),
        (json!(["ui"]), json!([l.ui]))
    );

    // An id that is no label of this project is refused like an unknown name.
    let elsewhere = l.app.create_project_id(&l.ann.token, "ELSE").await;
    let foreign = l
        .app
        .create_label(&l.ann.token, &elsewhere, "bug", "#000000")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for labels in [json!([foreign]), json!([uuid::Uuid::now_v7().to_string()])] {
        let response = l
            .app
            .post_json(
                &format!("/api/v1/projects/{}/tasks", l.project),
                &json!({"title": "Nope", "labels": labels}),
                Some(&l.cara.token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{labels}");
        assert_eq!(error_fields(&json_body(response).await), ["labels"]);
        let response = l
            .app
            .patch_json(&path, &json!({"labels": labels}), &l.cara.token)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{labels}");
    }
    assert_eq!(l.app.get_ok(&path, &l.ann.token).await["version"], 2);

    let titles = |page: Value| {
        let mut t: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    let list = format!("/api/v1/projects/{}/tasks", l.project);
    for (filter, want) in [
        (l.ui.clone(), vec!["By id"]),
        (l.bug.clone(), vec!["Carrier"]),
        (format!("{},ui", l.bug), vec!["By id", "Carrier"]),
        (foreign.clone(), vec![]),
    ] {
        let page = l
            .app
            .get_ok(&format!("{list}?label={filter}"), &l.ann.token)
            .await;
        assert_eq!(titles(page), want, "{filter}");
        let page = l
            .app
            .get_ok(&format!("/api/v1/tasks?label={filter}"), &l.ann.token)
            .await;
        assert_eq!(titles(page), want, "/tasks {filter}");
    }
}
