//! The text policy seen from outside (`docs/security.md`, "Text"): every free-text input is
//! refused with a 400 naming its field when it holds a control character (multi-line text
//! keeps line breaks and tabs) or a bidirectional formatting control, names also refuse
//! invisible characters, and new e-mail addresses are ASCII. The same answers on PostgreSQL,
//! which cannot store a NUL (it was a 500 there), and on SQLite, which can.

use keel_tests::{Account, PASSWORD, TestApp, error_fields, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Sends `body` (if any) to `path` as `token` and asserts a 400 naming exactly `field`.
async fn refused(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    field: &str,
) {
    let response = app.send(method.clone(), path, body.as_ref(), token).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{method} {path} {body:?}: {text}"
    );
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["code"], "VALIDATION_ERROR", "{method} {path}");
    assert_eq!(
        error_fields(&error),
        vec![field.to_owned()],
        "{method} {path} {body:?}"
    );
}

struct World {
    app: TestApp,
    owner: Account,
    admin: String,
    project: String,
    task: String,
    comment: String,
}

async fn world() -> World {
    let app = spawn_app().await;
    let admin = app.admin_token("root@example.com").await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project_id(&owner.token, "TEXT").await;
    let task = app
        .create_task(&owner.token, &project, json!({"title": "A task"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = app
        .created(
            &format!("/api/v1/tasks/{task}/comments"),
            &json!({"body": "first"}),
            &owner.token,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        app,
        owner,
        admin,
        project,
        task,
        comment,
    }
}

#[tokio::test]
async fn a_nul_in_any_free_text_input_is_a_400_on_its_field_not_a_500() {
    let w = world().await;
    let (app, t) = (&w.app, Some(w.owner.token.as_str()));
    let (p, task, comment) = (&w.project, &w.task, &w.comment);
    let nul = "a\u{0}b";
    let bodies: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "/api/v1/projects".into(),
            json!({"key": "NUL", "name": "Nul project", "description": nul}),
            "description",
        ),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}"),
            json!({"description": nul}),
            "description",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            json!({"title": nul}),
            "title",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            json!({"title": "ok", "description": nul}),
            "description",
        ),
        (
            Method::PATCH,
            format!("/api/v1/tasks/{task}"),
            json!({"title": nul}),
            "title",
        ),
        (
            Method::PATCH,
            format!("/api/v1/tasks/{task}"),
            json!({"description": nul}),
            "description",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{task}/comments"),
            json!({"body": nul}),
            "body",
        ),
        (
            Method::PATCH,
            format!("/api/v1/comments/{comment}"),
            json!({"body": nul}),
            "body",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{task}/links"),
            json!({"url": "https://example.com/", "title": nul}),
            "title",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{task}/links"),
            json!({"url": format!("https://example.com/{nul}")}),
            "url",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/labels"),
            json!({"name": nul, "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/states"),
            json!({"key": "qa", "name": nul, "category": "started", "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::PATCH,
            "/api/v1/auth/profile".into(),
            json!({"name": nul}),
            "name",
        ),
    ];
    for (method, path, body, field) in bodies {
        refused(app, method, &path, Some(body), t, field).await;
    }
    refused(
        app,
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"email": "new@example.com", "password": PASSWORD, "name": nul})),
        None,
        "name",
    )
    .await;
    for path in [
        "/api/v1/tasks?q=%00".to_owned(),
        format!("/api/v1/projects/{p}/tasks?q=fix%00it"),
        "/api/v1/projects?q=%00".to_owned(),
    ] {
        refused(app, Method::GET, &path, None, t, "q").await;
    }
    refused(
        app,
        Method::GET,
        "/api/v1/admin/users?q=%00",
        None,
        Some(&w.admin),
        "q",
    )
    .await;
    refused(
        app,
        Method::GET,
        "/api/v1/admin/audit-log?action=auth%00",
        None,
        Some(&w.admin),
        "action",
    )
    .await;

    // Nothing was written: the task and comment are as they were.
    let task = app.get_ok(&format!("/api/v1/tasks/{task}"), &w.owner.token).await;
    assert_eq!(
        (task["title"].as_str(), task["version"].as_i64()),
        (Some("A task"), Some(1))
    );
}

#[tokio::test]
async fn control_characters_are_refused_but_multi_line_text_keeps_breaks_and_tabs() {
    let w = world().await;
    let (app, t) = (&w.app, Some(w.owner.token.as_str()));
    let path = format!("/api/v1/tasks/{}", w.task);
    for control in ['\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
        let text = format!("before{control}after");
        refused(
            app,
            Method::PATCH,
            &path,
            Some(json!({"description": text})),
            t,
            "description",
        )
        .await;
        refused(
            app,
            Method::POST,
            &format!("{path}/comments"),
            Some(json!({"body": text})),
            t,
            "body",
        )
        .await;
    }
    // A title is one line: not even a tab or a line break inside it.
    refused(
        app,
        Method::PATCH,
        &path,
        Some(json!({"title": "one\ntwo"})),
        t,
        "title",
    )
    .await;
    let text = "line one\n\tindented\r\nline three";
    let patched = app
        .patch_json(&path, &json!({"description": text}), &w.owner.token)
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let stored = app.get_ok(&path, &w.owner.token).await;
    assert_eq!(stored["description"], text, "kept exactly as written");
}

#[tokio::test]
async fn direction_controls_are_refused_everywhere_and_invisible_characters_in_names() {
    let w = world().await;
    let (app, t) = (&w.app, Some(w.owner.token.as_str()));
    let p = &w.project;
    // "Trojan Source": a right-to-left override makes `exe.png` read as `png.exe`.
    let rlo = "invoice\u{202E}gnp.exe";
    for (method, path, body, field) in [
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            json!({"title": rlo}),
            "title",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            json!({"title": "ok", "description": format!("see \u{2067}{rlo}\u{2069}")}),
            "description",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{}/comments", w.task),
            json!({"body": rlo}),
            "body",
        ),
        (
            Method::PATCH,
            "/api/v1/auth/profile".into(),
            json!({"name": "Ann\u{202E}"}),
            "name",
        ),
        // Names also refuse what is invisible: a zero-width space, a joiner, a BOM, a
        // variation selector, a Hangul filler (a "letter" that shows nothing).
        (
            Method::PATCH,
            "/api/v1/auth/profile".into(),
            json!({"name": "An\u{200B}n"}),
            "name",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/labels"),
            json!({"name": "bug\u{200D}", "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/labels"),
            json!({"name": "b\u{FEFF}ug", "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/labels"),
            json!({"name": "bu\u{FE0F}g", "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/states"),
            json!({"key": "qa", "name": "Q\u{200B}A", "category": "started", "color": "#FFFFFF"}),
            "name",
        ),
        (
            Method::POST,
            "/api/v1/projects".into(),
            json!({"key": "BLANK", "name": "\u{3164}\u{3164}\u{3164}"}),
            "name",
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{p}/tasks?q=a%E2%80%AEb"),
            Value::Null,
            "q",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        refused(app, method, &path, body, t, field).await;
    }

    // Long text keeps what scripts and emoji need: joiners, marks and variation selectors.
    let prose = "Ship it 👩\u{200D}💻 ⚠\u{FE0F} — می\u{200C}خواهم \u{200F}(RTL mark)";
    let task = app
        .create_task(
            &w.owner.token,
            p,
            json!({"title": "⚠\u{FE0F} outage 👩\u{200D}💻", "description": prose}),
        )
        .await;
    assert_eq!(task["description"], prose);
    assert_eq!(task["title"], "⚠\u{FE0F} outage 👩\u{200D}💻");
}

#[tokio::test]
async fn new_e_mail_addresses_are_ascii_so_no_two_look_alike() {
    let app = spawn_app().await;
    // A Cyrillic `а` (U+0430) in the local part or the domain, and a full-width `ａ`.
    for email in [
        "\u{430}dmin@example.com",
        "admin@ex\u{430}mple.com",
        "\u{ff41}dmin@example.com",
    ] {
        refused(
            &app,
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"email": email, "password": PASSWORD, "name": "Mallory"})),
            None,
            "email",
        )
        .await;
    }
    // An internationalised domain is accepted in its ASCII (punycode) form.
    app.register("ann@xn--bcher-kva.example").await;
}
