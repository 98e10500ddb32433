//! Who may do what in a project (SPEC §5): strangers get 404 for the project and
//! everything in it, a role without the permission gets 403 — and a refused request
//! changes nothing.

use keel_tests::{Account, TestApp, json_body, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Ann's project `KEEL` with Bob (admin), Cara (member) and Dan (viewer); a label, a task
/// assigned to Cara carrying the label, a comment by Cara and one by Ann. Eve is a stranger.
struct World {
    app: TestApp,
    project: String,
    label: String,
    task: String,
    caras_comment: String,
    anns_comment: String,
    ann: Account,
    bob: Account,
    cara: Account,
    dan: Account,
    eve: Account,
}

async fn world() -> World {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let cara = app.account("cara@example.com").await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (who, role) in [(&bob, "admin"), (&cara, "member"), (&dan, "viewer")] {
        app.add_member(&ann.token, &project, &who.email, role).await;
    }
    let label = app.create_label(&ann.token, &project, "bug", "#FF0000").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = app
        .create_task(
            &ann.token,
            &project,
            json!({"title": "Secret", "labels": ["bug"], "assigneeId": cara.id}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = |token: String, body: &'static str| {
        let app = &app;
        let path = format!("/api/v1/tasks/{task}/comments");
        async move {
            app.created(&path, &json!({"body": body}), &token).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let caras_comment = comment(cara.token.clone(), "by cara").await;
    let anns_comment = comment(ann.token.clone(), "by ann").await;
    // Eve has a project of her own, so she is a real, active user.
    app.create_project(&eve.token, "EVE").await;
    World {
        app,
        project,
        label,
        task,
        caras_comment,
        anns_comment,
        ann,
        bob,
        cara,
        dan,
        eve,
    }
}

impl World {
    /// Everything the project holds, as its owner reads it: any change shows here.
    async fn snapshot(&self) -> Value {
        let token = &self.ann.token;
        let app = &self.app;
        let project = app
            .get_as(&format!("/api/v1/projects/{}", self.project), token)
            .await;
        assert_eq!(project.status(), StatusCode::OK);
        let tag = project.headers()["etag"].to_str().unwrap().to_owned();
        let task = app.get_as(&format!("/api/v1/tasks/{}", self.task), token).await;
        assert_eq!(task.status(), StatusCode::OK);
        let task_tag = task.headers()["etag"].to_str().unwrap().to_owned();
        json!({
            "project": json_body(project).await,
            "projectTag": tag,
            "members": app.get_ok(&format!("/api/v1/projects/{}/members?limit=100", self.project), token).await,
            "labels": app.get_ok(&format!("/api/v1/projects/{}/labels?limit=100", self.project), token).await,
            "tasks": app.walk(&format!("/api/v1/projects/{}/tasks", self.project), 100, token).await,
            "task": json_body(task).await,
            "taskTag": task_tag,
            "comments": app.walk(&format!("/api/v1/tasks/{}/comments", self.task), 100, token).await,
            "activity": app.walk(&format!("/api/v1/projects/{}/activity", self.project), 100, token).await,
        })
    }

    /// Every route of the project and of what is in it, with a body that would be valid.
    fn every_route(&self, me: &Account) -> Vec<(Method, String, Option<Value>)> {
        let p = format!("/api/v1/projects/{}", self.project);
        let t = format!("/api/v1/tasks/{}", self.task);
        let member = |who: &Account| format!("{p}/members/{}", who.id);
        vec![
            (Method::GET, p.clone(), None),
            (Method::PATCH, p.clone(), Some(json!({"name": "Taken over"}))),
            (Method::DELETE, p.clone(), None),
            (Method::GET, format!("{p}/members"), None),
            (
                Method::POST,
                format!("{p}/members"),
                Some(json!({"email": me.email, "role": "admin"})),
            ),
            (Method::PATCH, member(&self.cara), Some(json!({"role": "admin"}))),
            (Method::PATCH, member(&self.ann), Some(json!({"role": "viewer"}))),
            (Method::PATCH, member(me), Some(json!({"role": "owner"}))),
            (Method::DELETE, member(&self.cara), None),
            (Method::DELETE, member(me), None),
            (Method::GET, format!("{p}/labels"), None),
            (
                Method::POST,
                format!("{p}/labels"),
                Some(json!({"name": "mine", "color": "#000000"})),
            ),
            (Method::DELETE, format!("{p}/labels/{}", self.label), None),
            (Method::GET, format!("{p}/tasks"), None),
            (Method::GET, format!("{p}/tasks?assignee=me&label=bug"), None),
            (
                Method::POST,
                format!("{p}/tasks"),
                Some(json!({"title": "Planted"})),
            ),
            (Method::GET, format!("{p}/activity"), None),
            (Method::GET, t.clone(), None),
            (Method::GET, "/api/v1/tasks/KEEL-1".to_owned(), None),
            (Method::GET, "/api/v1/tasks/keel-1".to_owned(), None),
            (
                Method::PATCH,
                t.clone(),
                Some(json!({"title": "Defaced", "assigneeId": null})),
            ),
            (Method::DELETE, t.clone(), None),
            (Method::GET, format!("{t}/comments"), None),
            (
                Method::POST,
                format!("{t}/comments"),
                Some(json!({"body": "hello"})),
            ),
            (
                Method::PATCH,
                format!("/api/v1/comments/{}", self.caras_comment),
                Some(json!({"body": "edited"})),
            ),
            (
                Method::DELETE,
                format!("/api/v1/comments/{}", self.caras_comment),
                None,
            ),
            (
                Method::DELETE,
                format!("/api/v1/comments/{}", self.anns_comment),
                None,
            ),
        ]
    }
}

/// The error a route gives for something that does not exist at all, to compare with
/// what a stranger gets for something that does.
fn missing_twin(path: &str) -> String {
    let random = uuid::Uuid::now_v7().to_string();
    let mut segments: Vec<String> = path
        .split('?')
        .next()
        .unwrap()
        .split('/')
        .map(str::to_owned)
        .collect();
    // The first id in the path is replaced: the project, the task or the comment.
    if let Some(s) = segments
        .iter_mut()
        .find(|s| s.len() == 36 || s.eq_ignore_ascii_case("keel-1"))
    {
        *s = if s.len() == 36 {
            random
        } else {
            "NONE-1".to_owned()
        };
    }
    segments.join("/")
}

#[tokio::test]
async fn a_stranger_gets_404_on_every_route_of_a_project_and_changes_nothing() {
    let w = world().await;
    let before = w.snapshot().await;
    for (method, path, body) in w.every_route(&w.eve) {
        let response = w
            .app
            .send(method.clone(), &path, body.as_ref(), Some(&w.eve.token))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "NOT_FOUND", "{method} {path}");
        // Exactly what the route says for something that does not exist: nothing leaks.
        let twin_path = missing_twin(&path);
        let twin = w
            .app
            .send(method.clone(), &twin_path, body.as_ref(), Some(&w.eve.token))
            .await;
        assert_eq!(twin.status(), StatusCode::NOT_FOUND, "{method} {twin_path}");
        let twin = json_body(twin).await;
        assert_eq!(
            error["error"], twin["error"],
            "{method} {path} tells existence apart"
        );
    }
    assert_eq!(w.snapshot().await, before, "a stranger changed something");

    // Nor do the lists across projects show her anything of it.
    let projects = w.app.get_ok("/api/v1/projects", &w.eve.token).await;
    assert_eq!(projects["pagination"]["total"], 1);
    assert_eq!(projects["data"][0]["key"], "EVE");
    let tasks = w.app.get_ok("/api/v1/tasks", &w.eve.token).await;
    assert_eq!(tasks["data"], json!([]));
}

#[tokio::test]
async fn a_viewer_reads_everything_but_every_write_is_403_and_changes_nothing() {
    let w = world().await;
    let before = w.snapshot().await;
    for (method, path, body) in w.every_route(&w.dan) {
        // Leaving is the one write a viewer may do; it is tested on its own below.
        if method == Method::DELETE && path.ends_with(&format!("/members/{}", w.dan.id)) {
            continue;
        }
        let response = w
            .app
            .send(method.clone(), &path, body.as_ref(), Some(&w.dan.token))
            .await;
        let status = response.status();
        let error = json_body(response).await;
        if method == Method::GET {
            assert_eq!(status, StatusCode::OK, "{method} {path}: {error}");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {error}");
            assert_eq!(error["code"], "FORBIDDEN", "{method} {path}");
        }
    }
    assert_eq!(w.snapshot().await, before, "a viewer changed something");
    assert_eq!(
        w.app
            .delete_as(
                &format!("/api/v1/projects/{}/members/{}", w.project, w.dan.id),
                &w.dan.token
            )
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_member_writes_tasks_and_comments_but_administers_nothing() {
    let w = world().await;
    let p = format!("/api/v1/projects/{}", w.project);
    let before = w.snapshot().await;
    for (method, path, body) in [
        (Method::PATCH, p.clone(), Some(json!({"name": "Mine now"}))),
        (Method::DELETE, p.clone(), None),
        (
            Method::POST,
            format!("{p}/members"),
            Some(json!({"email": w.eve.email, "role": "viewer"})),
        ),
        (
            Method::PATCH,
            format!("{p}/members/{}", w.dan.id),
            Some(json!({"role": "member"})),
        ),
        (
            Method::PATCH,
            format!("{p}/members/{}", w.cara.id),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("{p}/members/{}", w.dan.id), None),
        (
            Method::POST,
            format!("{p}/labels"),
            Some(json!({"name": "mine", "color": "#000000"})),
        ),
        (Method::DELETE, format!("{p}/labels/{}", w.label), None),
        (
            Method::PATCH,
            format!("/api/v1/comments/{}", w.anns_comment),
            Some(json!({"body": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/comments/{}", w.anns_comment),
            None,
        ),
    ] {
        let response = w
            .app
            .send(method.clone(), &path, body.as_ref(), Some(&w.cara.token))
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(
        w.snapshot().await,
        before,
        "a member changed something they may not"
    );

    let task_path = format!("/api/v1/tasks/{}", w.task);
    let patched = w
        .app
        .patch_json(&task_path, &json!({"status": "in_progress"}), &w.cara.token)
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    w.app
        .create_task(&w.cara.token, &w.project, json!({"title": "Cara's own"}))
        .await;
    w.app
        .created(
            &format!("{task_path}/comments"),
            &json!({"body": "on it"}),
            &w.cara.token,
        )
        .await;
    // An admin administers, but does not delete the project.
    let admin_patch = w
        .app
        .patch_json(&p, &json!({"description": "by bob"}), &w.bob.token)
        .await;
    assert_eq!(admin_patch.status(), StatusCode::OK);
    w.app
        .create_label(&w.bob.token, &w.project, "bob", "#123456")
        .await;
    assert_eq!(
        w.app.delete_as(&p, &w.bob.token).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn every_tracking_route_needs_a_token() {
    let w = world().await;
    let before = w.snapshot().await;
    let mut routes = w.every_route(&w.eve);
    routes.push((Method::GET, "/api/v1/projects".to_owned(), None));
    routes.push((
        Method::POST,
        "/api/v1/projects".to_owned(),
        Some(json!({"key": "ANON", "name": "Anon"})),
    ));
    routes.push((Method::GET, "/api/v1/tasks".to_owned(), None));
    for (method, path, body) in routes {
        let response = w.app.send(method.clone(), &path, body.as_ref(), None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            json_body(response).await["code"],
            "UNAUTHORIZED",
            "{method} {path}"
        );
    }
    assert_eq!(w.snapshot().await, before);
}
