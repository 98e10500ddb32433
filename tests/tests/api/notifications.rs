//! Task subscriptions and notifications (docs/api/notifications.md): made from the outbox for
//! every subscriber but the actor, listed, counted, marked read, pushed on the user's streams
//! on every instance.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use keel_tests::{EventStream, TestApp, TestRedis, spawn_app, spawn_pair};

const WAIT: Duration = Duration::from_secs(5);

async fn get_json_as(app: &TestApp, path: &str, token: &str) -> (StatusCode, serde_json::Value) {
    let response = app.get_as(path, token).await;
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

/// The user's unread count once it reaches `expected` (notifications are made by the
/// dispatcher, just after the change commits); the last count seen otherwise.
async fn unread_reaches(app: &TestApp, token: &str, expected: u64) -> u64 {
    let mut count = 0;
    for _ in 0..50 {
        let (status, body) = get_json_as(app, "/api/v1/notifications/unread-count", token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        count = body["count"].as_u64().unwrap();
        if count == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> StatusCode {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn followers_hear_of_others_changes_never_of_their_own_and_read_them() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let member = app.account("member@example.com").await;
    let stranger = app.account("stranger@example.com").await;
    let project = app.create_project(&owner.token, "NTF").await;
    let pid = project["id"].as_str().unwrap();
    app.add_member(&owner.token, pid, &member.email, "member").await;

    // The owner creates a task for the member: the assignee hears of it, the actor does not.
    let task = app
        .create_task(
            &owner.token,
            pid,
            json!({"title": "Fix login", "assigneeId": member.id}),
        )
        .await;
    let tid = task["id"].as_str().unwrap();
    assert_eq!(unread_reaches(&app, &member.token, 1).await, 1);
    let (_, page) = get_json_as(&app, "/api/v1/notifications", &member.token).await;
    let n = &page["data"][0];
    assert_eq!(n["type"], "task.created");
    assert_eq!(n["taskId"], task["id"]);
    assert_eq!(n["projectId"], project["id"]);
    assert_eq!(n["actorId"], json!(owner.id));
    assert_eq!(
        n["summary"],
        format!("{} created: Fix login", task["identifier"].as_str().unwrap())
    );
    assert!(n["readAt"].is_null() && n["eventId"].is_string() && n["createdAt"].is_string());
    assert_eq!(page["pagination"]["nextCursor"], json!(null));

    // The member comments: the creator (subscribed) hears of it; the member not of their own.
    app.created(
        &format!("/api/v1/tasks/{tid}/comments"),
        &json!({"body": "On it"}),
        &member.token,
    )
    .await;
    assert_eq!(unread_reaches(&app, &owner.token, 1).await, 1);
    let (_, page) = get_json_as(&app, "/api/v1/notifications", &owner.token).await;
    assert_eq!(page["data"][0]["type"], "comment.created");
    assert_eq!(page["data"][0]["summary"], "New comment: On it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        unread_reaches(&app, &member.token, 1).await,
        1,
        "not of their own comment"
    );

    // The owner unsubscribes: the member's change no longer reaches them; subscribing again does.
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &format!("/api/v1/tasks/{tid}/subscription"),
            &owner.token,
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let patch = app
        .patch_json(
            &format!("/api/v1/tasks/{tid}"),
            &json!({"title": "Fix the login"}),
            &member.token,
        )
        .await;
    assert_eq!(patch.status(), StatusCode::OK);
    // The member comments again: an explicit unsubscription stands over automatic ones too.
    app.created(
        &format!("/api/v1/tasks/{tid}/comments"),
        &json!({"body": "Done"}),
        &member.token,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unread_reaches(&app, &owner.token, 1).await, 1, "unsubscribed");
    assert_eq!(
        send(
            &app,
            reqwest::Method::PUT,
            &format!("/api/v1/tasks/{tid}/subscription"),
            &owner.token,
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let patch = app
        .patch_json(
            &format!("/api/v1/tasks/{tid}"),
            &json!({"title": "Fix the login page"}),
            &member.token,
        )
        .await;
    assert_eq!(patch.status(), StatusCode::OK);
    assert_eq!(unread_reaches(&app, &owner.token, 2).await, 2, "subscribed again");

    // Strangers cannot follow a task they cannot see.
    assert_eq!(
        send(
            &app,
            reqwest::Method::PUT,
            &format!("/api/v1/tasks/{tid}/subscription"),
            &stranger.token,
            None
        )
        .await,
        StatusCode::NOT_FOUND
    );

    // Unread only, then read by id (another user's id is ignored), then all.
    let (_, unread) = get_json_as(&app, "/api/v1/notifications?unread=true&limit=1", &owner.token).await;
    assert_eq!(unread["data"].as_array().unwrap().len(), 1);
    assert_eq!(unread["data"][0]["type"], "task.updated", "newest first");
    assert!(unread["pagination"]["nextCursor"].is_string());
    let newest = unread["data"][0]["id"].clone();
    let (_, members) = get_json_as(&app, "/api/v1/notifications", &member.token).await;
    let response = app
        .post_json(
            "/api/v1/notifications/read",
            &json!({"ids": [newest, members["data"][0]["id"]]}),
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"count": 1})
    );
    assert_eq!(
        unread_reaches(&app, &member.token, 1).await,
        1,
        "the member's stays unread"
    );
    let (_, unread) = get_json_as(&app, "/api/v1/notifications?unread=true", &owner.token).await;
    assert_eq!(unread["data"].as_array().unwrap().len(), 1);
    let response = app
        .post_json(
            "/api/v1/notifications/read",
            &json!({"all": true}),
            Some(&owner.token),
        )
        .await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"count": 0})
    );
    let (_, all) = get_json_as(&app, "/api/v1/notifications", &owner.token).await;
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["readAt"].is_string())
    );

    // Bad input: the contract's error.
    for body in [
        json!({}),
        json!({"ids": []}),
        json!({"all": false}),
        json!({"ids": [newest], "all": true}),
    ] {
        let response = app
            .post_json("/api/v1/notifications/read", &body, Some(&owner.token))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, body) = get_json_as(&app, "/api/v1/notifications?unread=maybe", &owner.token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(keel_tests::error_fields(&body), ["unread"]);
}

#[tokio::test]
async fn a_notification_reaches_the_assignee_s_stream_on_the_other_instance() {
    let Some(redis) = TestRedis::start_private("notifications_across_instances").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let owner = a.account("owner@example.com").await;
    let member = a.account("member@example.com").await;
    let project = a.create_project(&owner.token, "PSH").await;
    let pid = project["id"].as_str().unwrap();
    a.add_member(&owner.token, pid, &member.email, "member").await;
    let (mut on_b, _) = EventStream::connect_settled(&b, &member.token).await.unwrap();
    let task = a
        .create_task(
            &owner.token,
            pid,
            json!({"title": "Yours", "assigneeId": member.id}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let pushed = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = on_b
            .next_event(left)
            .await
            .expect("notification.created on the other instance");
        if frame["type"] == "notification.created" {
            break frame;
        }
    };
    assert_eq!(pushed["data"]["taskId"], task["id"]);
    assert_eq!(pushed["data"]["type"], "task.created");
    assert_eq!(pushed["data"]["actorId"], json!(owner.id));
    // The owner's own stream gets no notification of their own change.
    let (mut owners, _) = EventStream::connect_settled(&b, &owner.token).await.unwrap();
    a.create_task(&owner.token, pid, json!({"title": "Mine"})).await;
    let frames = owners.drain(Duration::from_millis(700)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "notification.created"),
        "{frames:?}"
    );
}
