//! Who may do what in a project: strangers get 404 for the project and everything in it, a
//! role without the permission gets 403 — and a refused request changes nothing.
//!
//! The routes tried are every route of the route table (`keel_api::routes`) under a
//! project, a task or a comment, so a new one is covered without being listed here.

use std::time::Duration;

use keel_tests::{Account, TestApp, WebhookReceiver, json_body, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Ann's project `KEEL` with Bob (admin), Cara (member) and Dan (viewer); a label, a task
/// assigned to Cara carrying the label, a comment by Cara and one by Ann, a webhook with one
/// delivery (of the task's creation). Eve is a stranger.
struct World {
    app: TestApp,
    project: String,
    label: String,
    state: String,
    task: String,
    caras_comment: String,
    anns_comment: String,
    link: String,
    webhook: String,
    delivery: String,
    receiver: WebhookReceiver,
    ann: Account,
    bob: Account,
    cara: Account,
    dan: Account,
    eve: Account,
}

async fn world() -> World {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_WEBHOOK_ALLOW_PRIVATE".into(), "true".into());
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let cara = app.account("cara@example.com").await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let project = app.create_project_id(&ann.token, "KEEL").await;
    for (who, role) in [(&bob, "admin"), (&cara, "member"), (&dan, "viewer")] {
        app.add_member(&ann.token, &project, &who.email, role).await;
    }
    let label = app.create_label(&ann.token, &project, "bug", "#FF0000").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A state no task is in, other than the default.
    let states = app
        .get_ok(&format!("/api/v1/projects/{project}/states"), &ann.token)
        .await;
    let state = states["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "in_review")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let receiver = WebhookReceiver::start(&[200]).await;
    let webhook = app
        .created(
            &format!("/api/v1/projects/{project}/webhooks"),
            &json!({"url": receiver.url("/hook"), "events": ["task.created"]}),
            &ann.token,
        )
        .await["id"]
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
    let link = app
        .created(
            &format!("/api/v1/tasks/{task}/links"),
            &json!({"url": "https://example.com/spec", "title": "Spec"}),
            &ann.token,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The task's creation reached the webhook: a finished delivery, which no longer changes.
    let deliveries = format!("/api/v1/projects/{project}/webhooks/{webhook}/deliveries");
    let mut delivery = None;
    for _ in 0..100 {
        let log = app.get_ok(&deliveries, &ann.token).await;
        if log["data"][0]["status"] == "succeeded" {
            delivery = log["data"][0]["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = delivery.expect("the task's creation was delivered to the webhook");
    // Eve has a project of her own, so she is a real, active user.
    app.create_project(&eve.token, "EVE").await;
    World {
        app,
        project,
        label,
        state,
        task,
        caras_comment,
        anns_comment,
        link,
        webhook,
        delivery,
        receiver,
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
            "states": app.get_ok(&format!("/api/v1/projects/{}/states", self.project), token).await,
            "tasks": app.walk(&format!("/api/v1/projects/{}/tasks", self.project), 100, token).await,
            "task": json_body(task).await,
            "taskTag": task_tag,
            "comments": app.walk(&format!("/api/v1/tasks/{}/comments", self.task), 100, token).await,
            "links": app.walk(&format!("/api/v1/tasks/{}/links", self.task), 100, token).await,
            "relations": app.walk(&format!("/api/v1/tasks/{}/relations", self.task), 100, token).await,
            "activity": app.walk(&format!("/api/v1/projects/{}/activity", self.project), 100, token).await,
            "webhooks": app.get_ok(&format!("/api/v1/projects/{}/webhooks?limit=100", self.project), token).await,
            "deliveries": app.walk(
                &format!("/api/v1/projects/{}/webhooks/{}/deliveries", self.project, self.webhook),
                100,
                token,
            ).await,
        })
    }

    /// Every route of the route table under a project, a task or a comment, with each
    /// path parameter filled with what the world holds (several values where it matters:
    /// a task by id and by identifier, another member and oneself) and a body that would be
    /// valid. The third element says whether the operation documents a 403 (a role may be
    /// refused a read, too).
    fn every_route(&self, me: &Account) -> Vec<(Method, String, Option<Value>, bool)> {
        let mut routes = Vec::new();
        for endpoint in keel_api::routes::endpoints() {
            let template = endpoint.path();
            let scoped = [
                "/api/v1/projects/{id}",
                "/api/v1/tasks/{id}",
                "/api/v1/comments/{id}",
            ]
            .iter()
            .any(|prefix| template.starts_with(prefix));
            if !scoped {
                continue;
            }
            let operation = endpoint.operation();
            let name = operation.operation_id.clone().unwrap_or_default();
            let method = Method::from_bytes(endpoint.method().as_str().as_bytes()).unwrap();
            let bodies = match operation.request_body {
                Some(_) => self.bodies(&name, me),
                None => vec![None],
            };
            let documents_403 = operation.responses.responses.contains_key("403");
            for path in self.fill(template, me) {
                for query in queries(&name) {
                    for body in &bodies {
                        routes.push((
                            method.clone(),
                            format!("{path}{query}"),
                            body.clone(),
                            documents_403,
                        ));
                    }
                }
            }
        }
        assert!(routes.len() >= 30, "{} routes", routes.len());
        routes
    }

    /// `template` with every `{param}` filled, once per combination of candidate values.
    fn fill(&self, template: &str, me: &Account) -> Vec<String> {
        let mut paths = vec![String::new()];
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            let (before, param) = (&rest[..open], &rest[open + 1..close]);
            let values = self.values(&format!("{}{before}", paths[0]), param, me);
            paths = paths
                .iter()
                .flat_map(|p| values.iter().map(move |v| format!("{p}{before}{v}")))
                .collect();
            rest = &rest[close + 1..];
        }
        paths.into_iter().map(|p| format!("{p}{rest}")).collect()
    }

    /// The values of the path parameter `param`, which follows `prefix`.
    fn values(&self, prefix: &str, param: &str, me: &Account) -> Vec<String> {
        match (prefix, param) {
            ("/api/v1/projects/", "id") => vec![self.project.clone()],
            ("/api/v1/tasks/", "id") => vec![self.task.clone(), "KEEL-1".into(), "keel-1".into()],
            ("/api/v1/comments/", "id") => vec![self.caras_comment.clone(), self.anns_comment.clone()],
            (_, "userId") => vec![self.cara.id.clone(), self.ann.id.clone(), me.id.clone()],
            (_, "labelId") => vec![self.label.clone()],
            (_, "stateId") => vec![self.state.clone()],
            (_, "linkId") => vec![self.link.clone()],
            // No relation exists: every role is refused before the relation is looked up.
            (_, "relationId") => vec![uuid::Uuid::nil().to_string()],
            // Likewise: every role but an admin is refused before the invitation is looked up.
            (_, "invitationId") => vec![uuid::Uuid::nil().to_string()],
            (_, "webhookId") => vec![self.webhook.clone()],
            (_, "deliveryId") => vec![self.delivery.clone()],
            _ => {
                panic!("no value for the path parameter {{{param}}} after {prefix}: add one to World::values")
            }
        }
    }

    /// Valid bodies of the operation `name`.
    fn bodies(&self, name: &str, me: &Account) -> Vec<Option<Value>> {
        let bodies = match name {
            "updateProject" => vec![json!({"name": "Taken over"})],
            "addMember" => vec![json!({"email": me.email, "role": "admin"})],
            "createInvitation" => vec![json!({"email": "planted@example.com", "role": "admin"})],
            "updateMember" => vec![json!({"role": "admin"}), json!({"role": "owner"})],
            "createLabel" => vec![json!({"name": "mine", "color": "#000000"})],
            "updateLabel" => vec![json!({"name": "renamed", "color": "#000000"})],
            "createState" => {
                vec![json!({"key": "planted", "name": "Planted", "category": "started", "color": "#000000"})]
            }
            "updateState" => vec![json!({"name": "Renamed", "category": "completed"})],
            "createTask" => vec![json!({"title": "Planted"})],
            "updateTask" => vec![json!({"title": "Defaced", "assigneeId": null})],
            "createComment" => vec![json!({"body": "hello"})],
            "updateComment" => vec![json!({"body": "edited"})],
            "createTaskRelation" => vec![json!({"type": "blocks", "taskId": "EVE-1"})],
            "createTaskLink" => vec![
                json!({"url": "https://example.com/planted"}),
                json!({"url": "https://example.com/spec", "title": "Retitled"}),
            ],
            "createWebhook" => vec![json!({"url": self.receiver.url("/mine"), "events": ["*"]})],
            "updateWebhook" => vec![json!({"enabled": false, "url": self.receiver.url("/moved")})],
            _ => panic!("no sample body for {name}: add one to World::bodies"),
        };
        bodies.into_iter().map(Some).collect()
    }
}

/// Query strings tried on the operation `name` (the plain path always).
fn queries(name: &str) -> Vec<&'static str> {
    match name {
        "listProjectTasks" => vec!["", "?assignee=me&label=bug"],
        _ => vec![""],
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
    for (method, path, body, _) in w.every_route(&w.eve) {
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
    for (method, path, body, documents_403) in w.every_route(&w.dan) {
        // Leaving is the one write a viewer may do; it is tested on its own below.
        if method == Method::DELETE && path.ends_with(&format!("/members/{}", w.dan.id)) {
            continue;
        }
        // Following a task is the viewer's own choice, not a write to the project (below).
        if path.ends_with("/subscription") {
            continue;
        }
        let response = w
            .app
            .send(method.clone(), &path, body.as_ref(), Some(&w.dan.token))
            .await;
        let status = response.status();
        let error = json_body(response).await;
        // A read is refused only where the operation says a role may be (webhooks: admins).
        if method == Method::GET && !documents_403 {
            assert_eq!(status, StatusCode::OK, "{method} {path}: {error}");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {error}");
            assert_eq!(error["code"], "FORBIDDEN", "{method} {path}");
        }
    }
    assert_eq!(w.snapshot().await, before, "a viewer changed something");
    let follow = format!("/api/v1/tasks/{}/subscription", w.task);
    for method in [Method::PUT, Method::DELETE] {
        let response = w
            .app
            .send(method.clone(), &follow, None, Some(&w.dan.token))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "a viewer may {method} a subscription"
        );
    }
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
        (
            Method::PATCH,
            format!("{p}/labels/{}", w.label),
            Some(json!({"name": "mine"})),
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
    let mut routes: Vec<_> = w
        .every_route(&w.eve)
        .into_iter()
        .map(|(method, path, body, _)| (method, path, body))
        .collect();
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
