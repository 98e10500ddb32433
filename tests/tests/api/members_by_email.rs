//! `POST /api/v1/projects/{id}/members` tells no one which accounts exist (docs/security.md,
//! "Adding members by e-mail"): an account the caller shares a project with is added (201);
//! any other address — an account the caller cannot see, or none — is invited (202), with
//! one answer for both.

use std::collections::BTreeMap;

use keel_tests::{Account, TestApp, json_body, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn members(project: &str) -> String {
    format!("/api/v1/projects/{project}/members")
}

async fn post_member(app: &TestApp, who: &Account, project: &str, email: &str) -> reqwest::Response {
    app.post_json(
        &members(project),
        &json!({"email": email, "role": "member"}),
        Some(&who.token),
    )
    .await
}

/// What an answer shows, with what differs by nature from one request to the next
/// replaced by its kind: the invitation's id (and so `Location`), the address asked about,
/// timestamps, the request id and the rate limit's running figures.
struct Answer {
    status: StatusCode,
    headers: BTreeMap<String, String>,
    body: Value,
    raw: String,
}

async fn answer(response: reqwest::Response, project: &str) -> Answer {
    let status = response.status();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or_default();
            let value = match name.as_str() {
                "date" | "x-request-id" | "ratelimit-remaining" | "ratelimit-reset" => "<varies>".to_owned(),
                "location" => value
                    .strip_prefix(&format!("/api/v1/projects/{project}/invitations/"))
                    .map_or_else(|| value.to_owned(), |id| format!("<invitation {}>", id.len())),
                _ => value.to_owned(),
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    let mut headers = headers;
    let raw = response.text().await.unwrap();
    let mut body: Value = serde_json::from_str(&raw).unwrap();
    // The length but for the address asked about.
    if let (Some(length), Some(email)) = (headers.get_mut("content-length"), body["email"].as_str()) {
        *length = format!("{} + the address", length.parse::<usize>().unwrap() - email.len());
    }
    if let Some(object) = body.as_object_mut() {
        for key in ["id", "email", "expiresAt", "createdAt"] {
            if let Some(v) = object.get_mut(key) {
                *v = json!(format!("<{key}>"));
            }
        }
    }
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

#[tokio::test]
async fn a_probe_tells_an_account_the_caller_cannot_see_from_no_account_by_nothing() {
    let app = spawn_app().await;
    // Bea has an account, and a project with Cara; Mallory shares nothing with either.
    let bea = app.account("bea@example.com").await;
    let cara = app.account("cara@example.com").await;
    let beas = app.create_project(&bea.token, "BEA").await;
    app.add_member(&bea.token, beas["id"].as_str().unwrap(), &cara.email, "member")
        .await;
    let mallory = app.account("mallory@example.com").await;
    let project = app.create_project(&mallory.token, "PROBE").await;
    let id = project["id"].as_str().unwrap();

    // A first probe warms what is cached (Mallory's role in her project); then each probe's
    // database statements are counted: the same work for both.
    post_member(&app, &mallory, id, "warm@example.com").await;
    let mut statements = Vec::new();
    let mut answers = Vec::new();
    for email in ["bea@example.com", "nobody@example.com"] {
        app.until_no_statement_runs().await;
        let before = app.db_statements().await;
        let response = post_member(&app, &mallory, id, email).await;
        answers.push(answer(response, id).await);
        statements.push(app.db_statements().await - before);
    }
    assert!(statements[0] > 0, "statements are counted");
    assert_eq!(
        statements[0], statements[1],
        "the same statements: {statements:?}"
    );
    let unknown = answers.pop().unwrap();
    let existing = answers.pop().unwrap();

    assert_eq!(existing.status, StatusCode::ACCEPTED, "{}", existing.raw);
    assert_eq!(existing.status, unknown.status);
    assert_eq!(existing.headers, unknown.headers, "the same headers");
    assert_eq!(
        existing.body, unknown.body,
        "the same body but for ids, address, times"
    );
    assert_eq!(existing.body["role"], "member");
    assert_eq!(existing.body["invitedBy"], mallory.id.as_str());
    assert!(
        !existing.raw.contains("Test User") && !existing.raw.contains(&bea.id),
        "nothing of Bea's account: {}",
        existing.raw
    );
    // Nobody joined; both are pending invitations, as the invitations route makes them.
    let list = app.get_ok(&members(id), &mallory.token).await;
    assert_eq!(list["pagination"]["total"], 1);
    let invited = app
        .get_ok(&format!("/api/v1/projects/{id}/invitations"), &mallory.token)
        .await;
    let mut emails: Vec<&str> = invited["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    emails.sort_unstable();
    assert_eq!(
        emails,
        ["bea@example.com", "nobody@example.com", "warm@example.com"]
    );

    // A second probe of each (a pending invitation is replaced): still one answer.
    let again_existing = answer(post_member(&app, &mallory, id, "bea@example.com").await, id).await;
    let again_unknown = answer(post_member(&app, &mallory, id, "nobody@example.com").await, id).await;
    assert_eq!(again_existing.body, existing.body);
    assert_eq!(again_unknown.body, existing.body);
    assert_eq!(again_existing.headers, again_unknown.headers);
}

#[tokio::test]
async fn an_account_the_caller_shares_a_project_with_is_still_added_directly() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bea = app.account("bea@example.com").await;
    let first = app.create_project(&ann.token, "ONE").await;
    let first = first["id"].as_str().unwrap();
    app.add_member(&ann.token, first, &bea.email, "viewer").await;

    let second = app.create_project(&ann.token, "TWO").await;
    let second = second["id"].as_str().unwrap();
    let response = post_member(&app, &ann, second, "Bea@Example.com").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        format!("{}/{}", members(second), bea.id).as_str()
    );
    let member = json_body(response).await;
    assert_eq!(
        (
            &member["userId"],
            &member["email"],
            &member["name"],
            &member["role"]
        ),
        (
            &json!(bea.id),
            &json!("bea@example.com"),
            &json!("Test User"),
            &json!("member")
        )
    );
    // Bea sees it at once; a second add is the member's 409.
    let seen = app
        .get_ok(&format!("/api/v1/projects/{second}"), &bea.token)
        .await;
    assert_eq!(seen["myRole"], "member");
    let again = post_member(&app, &ann, second, "bea@example.com").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // Once Bea left both projects, Ann sees her no more: a third project invites her.
    for project in [first, second] {
        let left = app
            .delete_as(&format!("{}/{}", members(project), bea.id), &bea.token)
            .await;
        assert_eq!(left.status(), StatusCode::NO_CONTENT);
    }
    let third = app.create_project(&ann.token, "THREE").await;
    let third = third["id"].as_str().unwrap();
    let response = post_member(&app, &ann, third, "bea@example.com").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn members_who_may_not_administer_cannot_probe_at_all() {
    // A project member (not admin) cannot use the route to probe at all: 403 for any
    // address, an existing one or not, before anything is looked up.
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let mem = app.account("mem@example.com").await;
    let project = app.create_project(&ann.token, "ROLE").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &mem.email, "member").await;
    for email in ["ann@example.com", "nobody@example.com"] {
        let refused = post_member(&app, &mem, id, email).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{email}");
    }
}

#[tokio::test]
async fn an_instance_admin_adds_any_account_and_invites_only_addresses_without_one() {
    let app = spawn_app().await;
    let root_token = app.admin_token("root@example.com").await;
    let bea = app.account("bea@example.com").await;
    let root = Account {
        id: String::new(),
        email: "root@example.com".into(),
        token: root_token,
    };
    let project = app.create_project(&root.token, "ROOT").await;
    let id = project["id"].as_str().unwrap();
    let added = post_member(&app, &root, id, &bea.email).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let invited = post_member(&app, &root, id, "nobody@example.com").await;
    assert_eq!(invited.status(), StatusCode::ACCEPTED);
}
