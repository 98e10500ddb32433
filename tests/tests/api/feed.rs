//! The resumable event feed (docs/events.md): `GET /api/v1/events?after=<seq>` replays what a
//! client missed and goes on live with no gap and no duplicate, also across instances;
//! `GET /api/v1/events/log` pages the same feed; positions older than the retention are gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, Database as Connection, EntityTrait, QueryFilter};
use serde_json::json;

use keel_tests::{Ended, EventStream, TestApp, TestRedis, spawn_app, spawn_pair};

const WAIT: Duration = Duration::from_secs(5);

async fn get_json_as(app: &TestApp, path: &str, token: &str) -> (StatusCode, serde_json::Value) {
    let response = app.get_as(path, token).await;
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

fn seq(event: &serde_json::Value) -> i64 {
    event["seq"].as_i64().expect("every event carries its seq")
}

/// Creates `n` tasks in `project` on `app`, one after the other, in the background; answers
/// their ids.
fn keep_writing(app: &TestApp, token: &str, project: &str, n: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let writer = TestApp::at(app.address.clone(), Arc::clone(&app.db));
    let (token, project) = (token.to_owned(), project.to_owned());
    tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..n {
            let task = writer
                .create_task(&token, &project, json!({"title": format!("Live {i}")}))
                .await;
            ids.push(task["id"].as_str().unwrap().to_owned());
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        ids
    })
}

/// Reads `stream` until it has seen every task of `expected` created (or `WAIT` passes with
/// nothing), and answers every event it got.
async fn until_created(stream: &mut EventStream, expected: &HashSet<String>) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    while !expected.is_subset(&seen) {
        let Some(event) = stream.next_event(WAIT).await else {
            break;
        };
        if event["type"] == "task.created" {
            seen.insert(event["data"]["id"].as_str().unwrap().to_owned());
        }
        events.push(event);
    }
    events
}

/// Every position once, in order, with no hole from `after` on (the test's database holds
/// only what the test did, all of it visible to the owner).
fn assert_exactly_after(events: &[serde_json::Value], after: i64) {
    let seqs: Vec<i64> = events.iter().map(seq).collect();
    let expected: Vec<i64> = (after + 1..after + 1 + i64::try_from(seqs.len()).unwrap()).collect();
    assert_eq!(
        seqs, expected,
        "every missed position once, in order, then the live ones"
    );
}

/// A client drops, events happen, and it reconnects with `after` while more keep coming.
async fn reconnecting_client_gets_exactly_what_it_missed(
    writer_a: &TestApp,
    writer_b: &TestApp,
    reader: &TestApp,
) {
    let owner = writer_a.account("owner@example.com").await;
    let project = writer_a.create_project(&owner.token, "RES").await;
    let id = project["id"].as_str().unwrap();
    let (mut stream, _) = EventStream::connect_settled(reader, &owner.token).await.unwrap();
    let first = writer_a
        .create_task(&owner.token, id, json!({"title": "Seen"}))
        .await;
    let seen = stream.next_event(WAIT).await.expect("task.created");
    assert_eq!(seen["data"]["id"], first["id"]);
    let last = seq(&seen);
    stream.close().await;

    // Missed while away, on both instances.
    let mut expected = HashSet::new();
    for (i, writer) in [writer_a, writer_b, writer_a, writer_b].into_iter().enumerate() {
        let task = writer
            .create_task(&owner.token, id, json!({"title": format!("Missed {i}")}))
            .await;
        expected.insert(task["id"].as_str().unwrap().to_owned());
    }
    // Writers keep going on both instances while the client reconnects and replays.
    let live_a = keep_writing(writer_a, &owner.token, id, 12);
    let live_b = keep_writing(writer_b, &owner.token, id, 12);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let mut resumed = EventStream::connect_after(reader, &owner.token, last)
        .await
        .unwrap();
    expected.extend(live_a.await.unwrap());
    expected.extend(live_b.await.unwrap());
    let events = until_created(&mut resumed, &expected).await;
    let created: HashSet<String> = events
        .iter()
        .filter(|e| e["type"] == "task.created")
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        created, expected,
        "every task made while away and since, no other"
    );
    assert_exactly_after(&events, last);
    assert!(
        resumed.next_event(Duration::from_millis(500)).await.is_none(),
        "nothing twice"
    );
}

#[tokio::test]
async fn a_client_that_reconnects_with_after_gets_exactly_what_it_missed_while_events_keep_coming() {
    let app = spawn_app().await;
    reconnecting_client_gets_exactly_what_it_missed(&app, &app, &app).await;
}

#[tokio::test]
async fn resuming_on_one_instance_misses_nothing_written_on_the_other() {
    let Some(redis) = TestRedis::start_private("feed_across_instances").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    reconnecting_client_gets_exactly_what_it_missed(&a, &b, &b).await;
}

#[tokio::test]
async fn the_log_pages_the_feed_as_the_caller_may_see_it() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let member = app.account("member@example.com").await;
    let stranger = app.account("stranger@example.com").await;
    let shared = app.create_project(&owner.token, "SHR").await;
    let shared_id = shared["id"].as_str().unwrap();
    let private = app.create_project(&owner.token, "PRV").await;
    let private_id = private["id"].as_str().unwrap();
    app.add_member(&owner.token, shared_id, &member.email, "member")
        .await;
    for i in 0..3 {
        app.create_task(&owner.token, shared_id, json!({"title": format!("S{i}")}))
            .await;
        app.create_task(&owner.token, private_id, json!({"title": format!("P{i}")}))
            .await;
    }
    // The log is fed by the dispatcher: wait for the last event to be in it.
    let mut all = Vec::new();
    for _ in 0..50 {
        let (status, page) = get_json_as(&app, "/api/v1/events/log?limit=100", &owner.token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all = page["data"].as_array().unwrap().clone();
        if all.len() == 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all.len(), 9, "two projects, a member, six tasks");
    assert_exactly_after(&all, 0);

    // Pages of two, following `nextAfter`, are the same feed.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get_json_as(
            &app,
            &format!("/api/v1/events/log?after={after}&limit=2"),
            &owner.token,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let data = page["data"].as_array().unwrap();
        paged.extend(data.iter().cloned());
        after = page["nextAfter"].as_i64().unwrap();
        if data.len() < 2 {
            break;
        }
    }
    assert_eq!(paged, all);
    assert_eq!(after, 9);

    // The member sees the shared project from its creation (a member now), not the other.
    let (_, page) = get_json_as(&app, "/api/v1/events/log?after=0", &member.token).await;
    let projects: HashSet<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["projectId"].as_str().unwrap())
        .collect();
    assert_eq!(projects, HashSet::from([shared_id]));
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    let (_, page) = get_json_as(&app, "/api/v1/events/log?after=0", &stranger.token).await;
    assert_eq!(page, json!({"data": [], "nextAfter": 9}));

    // Bad input: the contract's error, by field.
    for (query, fields) in [
        ("after=-1", vec!["after"]),
        ("after=x", vec!["after"]),
        ("limit=0", vec!["limit"]),
        ("limit=101", vec!["limit"]),
        ("after=-1&limit=abc", vec!["after", "limit"]),
    ] {
        let (status, body) = get_json_as(&app, &format!("/api/v1/events/log?{query}"), &owner.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert_eq!(keel_tests::error_fields(&body), fields, "{query}");
    }
    let response = app.get("/api/v1/events/log").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A position beyond the newest is not one of this feed.
    let (status, body) = get_json_as(&app, "/api/v1/events/log?after=10", &owner.token).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["code"], "GONE");
    // A bad `after` on the stream is a 400 before the upgrade.
    let response = app.get_as("/api/v1/events?after=-3", &owner.token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_position_older_than_the_retention_is_gone_on_the_log_and_the_stream() {
    use keel_infrastructure::entities::event_feed;
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project(&owner.token, "OLD").await;
    let id = project["id"].as_str().unwrap();
    for i in 0..3 {
        app.create_task(&owner.token, id, json!({"title": format!("T{i}")}))
            .await;
    }
    let (stream, _) = EventStream::connect_settled(&app, &owner.token).await.unwrap();
    stream.close().await;
    // The purge took positions 1 and 2 (what it does to events older than the retention).
    let db = Connection::connect(app.db.url.as_str()).await.unwrap();
    event_feed::Entity::delete_many()
        .filter(event_feed::Column::Seq.lte(2))
        .exec(&db)
        .await
        .unwrap();
    let (status, body) = get_json_as(&app, "/api/v1/events/log?after=0", &owner.token).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["code"], "GONE");
    assert_eq!(body["path"], "/api/v1/events/log");
    let (status, page) = get_json_as(&app, "/api/v1/events/log?after=2", &owner.token).await;
    assert_eq!(status, StatusCode::OK, "everything after 2 is kept");
    assert_eq!(seq(&page["data"][0]), 3);

    let mut stream = EventStream::connect_after(&app, &owner.token, 1).await.unwrap();
    match stream.next_frame(WAIT).await {
        Some(Err(Ended::Closed { code, .. })) => assert_eq!(code, 4410),
        other => panic!("expected the close 4410, got {other:?}"),
    }
    // Without `after` (or from a kept position) the stream is live as ever.
    let mut stream = EventStream::connect_after(&app, &owner.token, 2).await.unwrap();
    assert_eq!(seq(&stream.next_event(WAIT).await.expect("position 3")), 3);
}
