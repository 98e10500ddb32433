//! `Idempotency-Key` on the creating `POST`s, over HTTP (docs/api/conventions.md, adr/0006).

use keel_tests::{TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{ETAG, LOCATION};
use serde_json::{Value, json};

const REPLAYED: &str = "idempotency-replayed";

async fn post_with_key(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_201_and_create_once() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let body = json!({"key": "KEEL", "name": "Keel"});
    let first = post_with_key(&app, "/api/v1/projects", &ann.token, "create-keel-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(header(&first, REPLAYED), None, "the first response is no replay");
    let (location, tag) = (header(&first, LOCATION).unwrap(), header(&first, ETAG).unwrap());
    let first_id = header(&first, "x-request-id").unwrap();
    let first_body = first.text().await.unwrap();

    for _ in 0..2 {
        let again = post_with_key(&app, "/api/v1/projects", &ann.token, "create-keel-1", &body).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
        assert_eq!(header(&again, LOCATION).unwrap(), location);
        assert_eq!(header(&again, ETAG).unwrap(), tag);
        assert_ne!(
            header(&again, "x-request-id").unwrap(),
            first_id,
            "the request id is the replay's own"
        );
        assert!(header(&again, "x-content-type-options").is_some());
        assert_eq!(
            again.text().await.unwrap(),
            first_body,
            "the same body, byte for byte"
        );
    }
    let list = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(list["pagination"]["total"], 1, "one project");
    // Without the key the same body is a new request: the key is taken now.
    let plain = app.post_json("/api/v1/projects", &body, Some(&ann.token)).await;
    assert_eq!(plain.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_409_and_creates_nothing() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let first = post_with_key(
        &app,
        "/api/v1/projects",
        &ann.token,
        "k",
        &json!({"key": "ONE", "name": "One"}),
    )
    .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let other = post_with_key(
        &app,
        "/api/v1/projects",
        &ann.token,
        "k",
        &json!({"key": "TWO", "name": "Two"}),
    )
    .await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(header(&other, REPLAYED), None);
    let error = json_body(other).await;
    assert_eq!(error["code"], "CONFLICT");
    assert!(
        error["error"].as_str().unwrap().contains("Idempotency-Key"),
        "{error}"
    );
    let list = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(list["data"][0]["key"], "ONE");
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let anns = json!({"key": "KEEL", "name": "Keel"});
    let first = post_with_key(&app, "/api/v1/projects", &ann.token, "shared-key", &anns).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    // Bob's identical request is his own: it runs (and finds the key taken), no replay.
    let bobs_copy = post_with_key(&app, "/api/v1/projects", &bob.token, "shared-key", &anns).await;
    assert_eq!(bobs_copy.status(), StatusCode::CONFLICT);
    assert_eq!(header(&bobs_copy, REPLAYED), None);
    assert!(
        !json_body(bobs_copy).await["error"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    // And with his own body the same key creates his project.
    let bobs = post_with_key(
        &app,
        "/api/v1/projects",
        &bob.token,
        "shared-key",
        &json!({"key": "BOB", "name": "Bob project"}),
    )
    .await;
    assert_eq!(bobs.status(), StatusCode::CREATED);
    assert_eq!(header(&bobs, REPLAYED), None);
    assert_eq!(json_body(bobs).await["ownerId"], bob.id.as_str());
    // Ann's key still replays Ann's project.
    let again = post_with_key(&app, "/api/v1/projects", &ann.token, "shared-key", &anns).await;
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    assert_eq!(json_body(again).await["key"], "KEEL");
}

#[tokio::test]
async fn a_refused_request_does_not_use_up_its_key() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bad = post_with_key(
        &app,
        "/api/v1/projects",
        &ann.token,
        "retry-me",
        &json!({"key": "k", "name": "Keel"}),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let fixed = post_with_key(
        &app,
        "/api/v1/projects",
        &ann.token,
        "retry-me",
        &json!({"key": "KEEL", "name": "Keel"}),
    )
    .await;
    assert_eq!(fixed.status(), StatusCode::CREATED, "a 400 is not remembered");
    assert_eq!(header(&fixed, REPLAYED), None);

    for key in ["has space".to_owned(), String::new(), "k".repeat(256)] {
        let response = post_with_key(
            &app,
            "/api/v1/projects",
            &ann.token,
            &key,
            &json!({"key": "NEW", "name": "New"}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(
            error_fields(&json_body(response).await),
            ["Idempotency-Key"],
            "{key:?}"
        );
    }
    assert_eq!(
        app.get_ok("/api/v1/projects", &ann.token).await["pagination"]["total"],
        1
    );
}

#[tokio::test]
async fn a_replayed_task_create_uses_one_number() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let path = format!("/api/v1/projects/{}/tasks", project["id"].as_str().unwrap());
    let body = json!({"title": "Only once"});
    let first = json_body(post_with_key(&app, &path, &ann.token, "task-1", &body).await).await;
    let again = post_with_key(&app, &path, &ann.token, "task-1", &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    assert_eq!(json_body(again).await, first);
    assert_eq!(first["identifier"], "KEEL-1");
    let tasks = app.get_ok(&path, &ann.token).await;
    assert_eq!(tasks["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.create_task(
            &ann.token,
            project["id"].as_str().unwrap(),
            json!({"title": "Next"})
        )
        .await["identifier"],
        "KEEL-2"
    );
    let feed = app
        .walk(
            &format!("/api/v1/projects/{}/activity", project["id"].as_str().unwrap()),
            100,
            &ann.token,
        )
        .await;
    let created = feed.iter().filter(|e| e["action"] == "task.created").count();
    assert_eq!(created, 2, "a replay writes no audit entry");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_project() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let body = json!({"key": "RACE", "name": "Race"});
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (client, url, token, body) = (
            app.client.clone(),
            app.url("/api/v1/projects"),
            ann.token.clone(),
            body.clone(),
        );
        handles.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "race")
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = response.headers().get(REPLAYED).is_some();
            (response.status(), replayed, response.text().await.unwrap())
        }));
    }
    let mut fresh = 0;
    for handle in handles {
        let (status, replayed, text) = handle.await.unwrap();
        match status {
            StatusCode::CREATED if !replayed => fresh += 1,
            StatusCode::CREATED => {}
            // A duplicate that arrives while the first still runs.
            StatusCode::CONFLICT => assert!(text.contains("in progress"), "{text}"),
            other => panic!("{other}: {text}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran the handler");
    assert_eq!(
        app.get_ok("/api/v1/projects", &ann.token).await["pagination"]["total"],
        1
    );
}

#[tokio::test]
async fn a_revoked_token_never_replays_a_stored_response() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let body = json!({"key": "KEEL", "name": "Keel"});
    let first = post_with_key(&app, "/api/v1/projects", &ann.token, "create-keel-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let logout = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&ann.token))
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    // The JWT itself is still unexpired and well signed: only the session is over.
    let replay = post_with_key(&app, "/api/v1/projects", &ann.token, "create-keel-1", &body).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&replay, REPLAYED),
        None,
        "nothing is replayed to a revoked token"
    );
    assert_eq!(json_body(replay).await["code"], "UNAUTHORIZED");
}
