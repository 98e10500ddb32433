//! The real-time event stream (docs/api/events-and-webhooks.md): `GET /api/v1/events` over a WebSocket, fed by the
//! transactional outbox, across instances through Redis.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use sea_orm::{Database as Connection, DatabaseConnection};
use serde_json::json;

use keel_tests::{EventStream, TestRedis, spawn_app, spawn_app_with, spawn_on, spawn_pair};

const WAIT: Duration = Duration::from_secs(3);
/// Long enough for an event that was going to come to have come.
const QUIET: Duration = Duration::from_millis(500);
/// How often a server reads the dispatcher lease row (a third of the 10 s lease), and some.
const LEASE_CHECK: Duration = Duration::from_millis(3500);

fn types(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

#[tokio::test]
async fn the_stream_needs_a_token_in_the_header_or_the_query() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    // Not a WebSocket handshake: the contract's errors.
    let response = app.get("/api/v1/events").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.get("/api/v1/events?access_token=not-a-token").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.get_as("/api/v1/events", &owner.token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(EventStream::connect(&app, "not-a-token").await.is_err());

    // Both ways in work, and both receive.
    let mut by_header = EventStream::connect(&app, &owner.token).await.unwrap();
    let mut by_query = EventStream::connect_with_query(&app, &owner.token).await.unwrap();
    let project = app.create_project(&owner.token, "EVT").await;
    for stream in [&mut by_header, &mut by_query] {
        let event = stream.next_event(WAIT).await.expect("project.created");
        assert_eq!(event["type"], "project.created");
        assert_eq!(event["projectId"], project["id"]);
        assert_eq!(event["actorId"], json!(owner.id));
        assert_eq!(event["data"]["key"], "EVT");
        assert!(event["data"].get("myRole").is_none(), "no reader-specific fields");
        assert!(event["id"].is_string() && event["occurredAt"].is_string());
    }
}

#[tokio::test]
async fn members_receive_their_projects_events_in_order_and_strangers_nothing() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let member = app.account("member@example.com").await;
    let stranger = app.account("stranger@example.com").await;
    let shared = app.create_project(&owner.token, "SHR").await;
    let shared_id = shared["id"].as_str().unwrap();
    app.add_member(&owner.token, shared_id, &member.email, "member")
        .await;
    let own = app.create_project(&stranger.token, "OWN").await;

    let (mut member_stream, _) = EventStream::connect_settled(&app, &member.token).await.unwrap();
    let (mut stranger_stream, _) = EventStream::connect_settled(&app, &stranger.token).await.unwrap();
    let task = app
        .create_task(&owner.token, shared_id, json!({"title": "First"}))
        .await;
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap());
    let response = app
        .patch_json(&path, &json!({"status": "in_progress"}), &owner.token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let comment = app
        .created(
            &format!("{path}/comments"),
            &json!({"body": "On it"}),
            &member.token,
        )
        .await;
    assert_eq!(
        app.delete_as(&path, &owner.token).await.status(),
        StatusCode::NO_CONTENT
    );

    let (notifications, seen): (Vec<_>, Vec<_>) = member_stream
        .drain(QUIET)
        .await
        .into_iter()
        .partition(|e| e["type"] == "notification.created");
    assert_eq!(
        types(&seen),
        ["task.created", "task.updated", "comment.created", "task.deleted"],
        "in order"
    );
    // Having commented, the member follows the task: the owner's deletion notifies them.
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    assert_eq!(notifications[0]["data"]["type"], "task.deleted");
    assert_eq!(
        seen[0]["data"]["identifier"], "SHR-1",
        "the number the store handed out"
    );
    assert_eq!(seen[1]["data"]["status"], "in_progress");
    assert_eq!(seen[2]["data"]["id"], comment["id"]);
    assert_eq!(seen[3]["data"], json!({"id": task["id"], "identifier": "SHR-1"}));

    // The stranger got none of it: the first thing they see is their own project's event.
    app.create_task(
        &stranger.token,
        own["id"].as_str().unwrap(),
        json!({"title": "Mine"}),
    )
    .await;
    let first = stranger_stream.next_event(WAIT).await.expect("their own event");
    assert_eq!(
        (first["type"].as_str(), first["projectId"].as_str()),
        (Some("task.created"), own["id"].as_str())
    );
}

#[tokio::test]
async fn removal_stops_the_flow_and_the_removed_member_hears_of_it() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let member = app.account("member@example.com").await;
    let project = app.create_project(&owner.token, "RMV").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&owner.token, id, &member.email, "member").await;
    let mine = app.create_project(&member.token, "MINE").await;

    let (mut stream, _) = EventStream::connect_settled(&app, &member.token).await.unwrap();
    let response = app
        .delete_as(
            &format!("/api/v1/projects/{id}/members/{}", member.id),
            &owner.token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let removed = stream.next_event(WAIT).await.expect("member.removed");
    assert_eq!(removed["type"], "member.removed");
    assert_eq!(removed["data"]["userId"], json!(member.id));

    app.create_task(&owner.token, id, json!({"title": "Not for you"}))
        .await;
    app.create_task(
        &member.token,
        mine["id"].as_str().unwrap(),
        json!({"title": "Yours"}),
    )
    .await;
    let next = stream.next_event(WAIT).await.expect("the marker event");
    assert_eq!(
        next["data"]["title"], "Yours",
        "the removed project's task never came"
    );

    // Deleting a project tells its members, although nobody is a member afterwards.
    let other = app.account("other@example.com").await;
    app.add_member(
        &member.token,
        mine["id"].as_str().unwrap(),
        &other.email,
        "viewer",
    )
    .await;
    let (mut other_stream, _) = EventStream::connect_settled(&app, &other.token).await.unwrap();
    let response = app
        .delete_as(
            &format!("/api/v1/projects/{}", mine["id"].as_str().unwrap()),
            &member.token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let deleted = other_stream.next_event(WAIT).await.expect("project.deleted");
    assert_eq!(deleted["type"], "project.deleted");
    assert_eq!(deleted["data"]["key"], "MINE");
}

#[tokio::test]
async fn logging_out_ends_the_stream_at_the_next_ping() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_EVENTS_PING_SECS".into(), "1".into());
    })
    .await;
    let owner = app.account("owner@example.com").await;
    let mut stream = EventStream::connect(&app, &owner.token).await.unwrap();
    // Pings come and are answered: the stream stays open across several intervals.
    assert!(stream.next_frame(Duration::from_millis(2500)).await.is_none());
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout-all",
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    match stream.next_frame(WAIT).await {
        Some(Err(keel_tests::Ended::Closed { code, .. })) => assert_eq!(code, 1008),
        other => panic!("expected a 1008 close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_of_one_instance_sees_a_task_created_on_the_other_within_a_second() {
    let Some(redis) = TestRedis::start_private("events_across_instances").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let owner = a.account("owner@example.com").await;
    let project = a.create_project(&owner.token, "XIN").await;
    let id = project["id"].as_str().unwrap();
    let (mut on_b, _) = EventStream::connect_settled(&b, &owner.token).await.unwrap();
    for n in 0..5 {
        // Alternate the writer: whichever instance holds the dispatcher lease publishes.
        let writer = if n % 2 == 0 { &a } else { &b };
        let started = std::time::Instant::now();
        let task = writer
            .create_task(&owner.token, id, json!({"title": format!("T{n}")}))
            .await;
        let event = on_b
            .next_event(Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("task {n} did not arrive within a second"));
        assert_eq!(event["type"], "task.created");
        assert_eq!(event["data"]["id"], task["id"]);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

/// Makes the dispatcher lease look held by a hung instance until `until` (or frees it).
/// (The table holds other background jobs' leases too: the trash purge's.)
async fn hold_lease(db: &DatabaseConnection, until: Option<chrono::DateTime<Utc>>) -> u64 {
    use keel_infrastructure::entities::outbox_leases;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let dispatcher = outbox_leases::Column::Name.eq("dispatcher");
    match until {
        Some(until) => {
            outbox_leases::Entity::update_many()
                .col_expr(
                    outbox_leases::Column::Holder,
                    Expr::value(uuid::Uuid::from_u128(1)),
                )
                .col_expr(outbox_leases::Column::ExpiresAt, Expr::value(until))
                .filter(dispatcher)
                .exec(db)
                .await
                .unwrap()
                .rows_affected
        }
        None => {
            outbox_leases::Entity::delete_many()
                .filter(dispatcher)
                .exec(db)
                .await
                .unwrap()
                .rows_affected
        }
    }
}

#[tokio::test]
async fn an_event_committed_but_not_dispatched_when_its_server_dies_still_arrives() {
    let app = spawn_app().await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project(&owner.token, "DIE").await;
    let id = project["id"].as_str().unwrap().to_owned();
    let db = Connection::connect(app.db.url.as_str()).await.unwrap();
    // Another "instance" holds the dispatcher lease and hangs: this server commits events it
    // may not publish.
    let (mut stream, _) = EventStream::connect_settled(&app, &owner.token).await.unwrap();
    assert_eq!(
        hold_lease(&db, Some(Utc::now() + chrono::Duration::hours(1))).await,
        1
    );
    // The server reads the lease row every third of a lease (10 s): past that, it knows it
    // is not the dispatcher.
    tokio::time::sleep(LEASE_CHECK).await;
    let task = app
        .create_task(&owner.token, &id, json!({"title": "Survives"}))
        .await;
    assert!(stream.next_event(QUIET).await.is_none(), "not published yet");
    // The server dies between the commit and the publication.
    app.stop().await;
    let database = std::sync::Arc::clone(&app.db);
    drop(app);

    // Restarted on the same database: a client connects, the hung holder's lease goes, and
    // the event arrives.
    let restarted = spawn_on(database, |_| {}).await;
    let mut stream = EventStream::connect(&restarted, &owner.token).await.unwrap();
    assert!(
        stream.next_event(QUIET).await.is_none(),
        "still held by the hung instance"
    );
    assert_eq!(hold_lease(&db, None).await, 1);
    let event = stream
        .next_event(LEASE_CHECK + WAIT)
        .await
        .expect("the committed event");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["data"]["id"], task["id"]);
}

#[tokio::test]
async fn losing_redis_tells_clients_to_resynchronise_and_the_stream_recovers() {
    let Some(mut redis) = TestRedis::start_private("events_redis_lost").await else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(move |vars| {
        vars.insert("REDIS_URL".into(), url);
    })
    .await;
    let owner = app.account("owner@example.com").await;
    let project = app.create_project(&owner.token, "GAP").await;
    let id = project["id"].as_str().unwrap().to_owned();
    let (mut stream, _) = EventStream::connect_settled(&app, &owner.token).await.unwrap();
    app.create_task(&owner.token, &id, json!({"title": "Before"}))
        .await;
    assert_eq!(
        stream.next_event(WAIT).await.expect("an event")["data"]["title"],
        "Before"
    );

    redis.stop().await;
    match stream.next_frame(WAIT).await {
        Some(Err(keel_tests::Ended::Closed { code, .. })) => assert_eq!(code, 1012, "resynchronise"),
        other => panic!("expected a 1012 close, got {other:?}"),
    }

    // Redis back: a new stream receives again.
    redis.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut stream = EventStream::connect(&app, &owner.token).await.unwrap();
    app.create_task(&owner.token, &id, json!({"title": "After"}))
        .await;
    assert_eq!(
        stream.next_event(WAIT).await.expect("an event")["data"]["title"],
        "After"
    );
}

/// The close code of the stream's next frame, within `wait`.
async fn closed_with(stream: &mut EventStream, wait: Duration) -> Option<u16> {
    match stream.next_frame(wait).await {
        Some(Err(keel_tests::Ended::Closed { code, .. })) => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn logging_out_ends_the_stream_at_once_not_at_the_next_ping() {
    // Pings an hour apart: only the revocation itself can end the stream in time.
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_EVENTS_PING_SECS".into(), "3600".into());
    })
    .await;
    let owner = app.account("owner@example.com").await;
    let mut stream = EventStream::connect(&app, &owner.token).await.unwrap();
    assert!(stream.next_frame(QUIET).await.is_none(), "the stream is open");
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(closed_with(&mut stream, WAIT).await, Some(1008));
}

#[tokio::test]
async fn a_revocation_on_one_instance_ends_a_stream_on_the_other_at_once() {
    let Some(redis) = TestRedis::start_private("events_revocation").await else {
        return;
    };
    let (a, b) = keel_tests::spawn_pair_with(&redis, |vars| {
        vars.insert("KEEL_EVENTS_PING_SECS".into(), "3600".into());
    })
    .await;
    let owner = a.account("owner@example.com").await;
    let mut on_b = EventStream::connect(&b, &owner.token).await.unwrap();
    assert!(on_b.next_frame(QUIET).await.is_none(), "the stream is open");
    let response = a
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout-all",
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(closed_with(&mut on_b, WAIT).await, Some(1008));
}

#[tokio::test]
async fn a_stream_ends_when_its_access_token_expires() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_ACCESS_TOKEN_TTL".into(), "2".into());
        vars.insert("KEEL_EVENTS_PING_SECS".into(), "3600".into());
    })
    .await;
    let owner = app.account("owner@example.com").await;
    let mut stream = EventStream::connect(&app, &owner.token).await.unwrap();
    assert_eq!(
        closed_with(&mut stream, Duration::from_secs(5)).await,
        Some(1008),
        "closed when the token expired, although the session is still active"
    );
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_open_streams() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_EVENTS_MAX_STREAMS_PER_USER".into(), "2".into());
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let first = EventStream::connect(&app, &ann.token).await.unwrap();
    let _second = EventStream::connect(&app, &ann.token).await.unwrap();
    let third = EventStream::connect(&app, &ann.token).await;
    let refused = third.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains("429"),
        "the third stream is refused with 429: {refused}"
    );
    assert!(
        EventStream::connect(&app, &bob.token).await.is_ok(),
        "others are not affected"
    );

    // A closed stream frees its place (once the server has seen the close).
    first.close().await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match EventStream::connect(&app, &ann.token).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("429"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the closed stream's place was never freed: {e}"),
        }
    }
}
