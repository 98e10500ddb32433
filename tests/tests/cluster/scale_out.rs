//! Two instances behind nginx behave as one service (docs/operations.md): what one instance writes,
//! revokes or counts, the other sees at once; events reach streams on either; and an
//! instance that is stopped under load loses no request.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use keel_tests::EventStream;
use keel_tests::cluster::{Cluster, Load};

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn a_write_on_one_instance_is_read_on_the_other_and_through_nginx_at_once() {
    let cluster = Cluster::start(2, |_| {}).await;
    let (a, b, front) = (cluster.direct(0), cluster.direct(1), &cluster.front);
    let owner = front.account("owner@example.com").await;
    let project = a.create_project(&owner.token, "RAW").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().unwrap());

    // B reads (and caches) what A created; each instance's cache is then warm.
    assert_eq!(b.get_ok(&path, &owner.token).await["name"], project["name"]);
    assert_eq!(a.get_ok(&path, &owner.token).await["name"], project["name"]);
    for round in 0..10 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let name = format!("Renamed {round}");
        let response = writer
            .patch_json(&path, &json!({"name": name}), &owner.token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "PATCH in round {round}");
        assert_eq!(
            reader.get_ok(&path, &owner.token).await["name"],
            json!(name),
            "the other instance serves the write at once (round {round})"
        );
        // Through nginx, whichever instance answers.
        for _ in 0..2 {
            assert_eq!(front.get_ok(&path, &owner.token).await["name"], json!(name));
        }
    }
    // nginx did spread the requests over both instances.
    let upstreams: std::collections::HashSet<String> = cluster
        .nginx
        .access_log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| entry["upstream"].as_str().map(str::to_owned))
        .collect();
    assert!(
        upstreams.len() >= 2,
        "nginx's access log names both upstreams: {upstreams:?}"
    );
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn a_logout_on_one_instance_revokes_the_token_on_the_other_at_once() {
    let cluster = Cluster::start(2, |_| {}).await;
    let (a, b, front) = (cluster.direct(0), cluster.direct(1), &cluster.front);
    let user = front.account("user@example.com").await;
    // Both instances have accepted (and cached) the session.
    for app in [&a, &b] {
        let response = app.get_as("/api/v1/auth/profile", &user.token).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = a
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&json!({})),
            Some(&user.token),
        )
        .await;
    assert!(response.status().is_success(), "logout: {}", response.status());
    for app in [&b, &a, front, front] {
        let response = app.get_as("/api/v1/auth/profile", &user.token).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}: the revoked token is refused at once",
            app.address
        );
    }
}

/// `n` GETs of `/health`-free API route through nginx from `client_ip` (X-Forwarded-For).
async fn statuses_from(cluster: &Cluster, client_ip: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let response = cluster
            .front
            .client
            .get(cluster.front.url("/api/v1/projects"))
            .header("x-forwarded-for", client_ip)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn rate_limits_are_shared_by_the_instances_and_keyed_by_the_client_behind_nginx() {
    let cluster = Cluster::start(2, |vars| {
        vars.insert("KEEL_RATE_LIMIT_USER".into(), "12/15m".into());
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "8/15m".into());
    })
    .await;
    let (a, b, front) = (cluster.direct(0), cluster.direct(1), &cluster.front);

    // Anonymous: counted per client address, which nginx passes in X-Forwarded-For.
    let first = statuses_from(&cluster, "203.0.113.7", 10).await;
    assert_eq!(
        first.iter().filter(|s| **s == 429).count(),
        2,
        "8 of 10 through two instances, then 429: {first:?}"
    );
    assert!(first[..8].iter().all(|s| *s == 401), "{first:?}");
    let other = statuses_from(&cluster, "203.0.113.8", 3).await;
    assert!(
        other.iter().all(|s| *s == 401),
        "another client has its own count: {other:?}"
    );

    // Per user: one count whichever instance answers.
    let token = front.account("limited@example.com").await.token;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(app.get_as("/api/v1/auth/profile", &token).await.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "12 allowed over both: {statuses:?}"
    );
    for app in [&a, &b, front] {
        let response = app.get_as("/api/v1/auth/profile", &token).await;
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            app.address
        );
        assert!(response.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn events_reach_streams_on_either_instance_and_through_nginx() {
    let cluster = Cluster::start(2, |_| {}).await;
    let (a, b, front) = (cluster.direct(0), cluster.direct(1), &cluster.front);
    let owner = front.account("owner@example.com").await;
    let project = front.create_project(&owner.token, "EVX").await;
    let project_id = project["id"].as_str().unwrap();

    let mut on_a = EventStream::connect(&a, &owner.token).await.unwrap();
    let mut on_b = EventStream::connect(&b, &owner.token).await.unwrap();
    let mut via_nginx = EventStream::connect_with_query(front, &owner.token)
        .await
        .unwrap();
    // Writes on both instances, and through nginx.
    let mut ids = Vec::new();
    for (i, app) in [&a, &b, front].into_iter().enumerate() {
        let task = app
            .create_task(&owner.token, project_id, json!({"title": format!("Task {i}")}))
            .await;
        ids.push(task["id"].clone());
    }
    for (name, stream) in [("a", &mut on_a), ("b", &mut on_b), ("nginx", &mut via_nginx)] {
        let mut seen = Vec::new();
        while seen.len() < ids.len() {
            let Some(event) = stream.next_event(Duration::from_secs(5)).await else {
                panic!("stream {name}: got {seen:?}, expected the tasks {ids:?}");
            };
            if event["type"] == "task.created" {
                seen.push(event["data"]["id"].clone());
            }
        }
        seen.sort_by_key(ToString::to_string);
        let mut expected = ids.clone();
        expected.sort_by_key(ToString::to_string);
        assert_eq!(seen, expected, "stream {name}");
    }
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn an_instance_stopped_under_load_loses_no_request() {
    let mut cluster = Cluster::start(2, |_| {}).await;
    let owner = cluster.front.account("owner@example.com").await;
    let project = cluster.front.create_project(&owner.token, "SHD").await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let mut stream = EventStream::connect(&cluster.direct(0), &owner.token)
        .await
        .unwrap();
    // A stream on the instance that stays: it must see the event of every task the load
    // created, including those the stopping instance publishes last.
    let (mut survivor_stream, _) = EventStream::connect_settled(&cluster.direct(1), &owner.token)
        .await
        .unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watcher = tokio::spawn(async move {
        while let Some(frame) = survivor_stream.next_frame(Duration::from_secs(60)).await {
            let Ok(event) = frame else { break };
            if event["type"] == "task.created"
                && let Some(id) = event["data"]["id"].as_str()
                && seen_tx.send(id.to_owned()).is_err()
            {
                break;
            }
        }
    });

    let load = Load::start(&cluster.front.address, &owner.token, &project_id, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.instances[0].terminate();
    // While it drains it still answers, but is not ready and closes every connection.
    let a = cluster.direct(0);
    let mut draining = None;
    for _ in 0..50 {
        let response = a.get("/ready").await;
        let closes = response
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        if body["status"] == "draining" {
            draining = Some((status, closes));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        draining,
        Some((StatusCode::SERVICE_UNAVAILABLE, true)),
        "/ready says draining with 503, and the answer closes its connection"
    );
    // Its event stream is told the server is going away.
    // (The load's own events come first.)
    let mut ended = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ended.is_none() && std::time::Instant::now() < deadline {
        if let Some(Err(end)) = stream.next_frame(Duration::from_secs(1)).await {
            ended = Some(end);
        }
    }
    assert_eq!(
        ended,
        Some(keel_tests::Ended::Closed {
            code: 1001,
            reason: "the server is shutting down".into()
        })
    );
    let status = cluster.instances[0].wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "the stopped instance exits 0: {status}");
    // The survivor carries the load alone for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;

    tally.assert_all_succeeded(100);
    let log = cluster.instances[0].log_text();
    assert!(log.contains("draining"), "the instance drained before stopping");
    // Its last act, publishing what its last requests committed, worked: its workers' runtimes
    // were gone by then, and so was every connection they had opened.
    for failure in [
        "outbox not drained at shutdown",
        "outbox was not drained in time",
        "events reached only this instance's clients",
    ] {
        assert!(
            !log.contains(failure),
            "the stopped instance logged '{failure}':\n{log}"
        );
    }
    // Every acknowledged task is there, once.
    let tasks = cluster
        .front
        .walk(&format!("/api/v1/projects/{project_id}/tasks"), 100, &owner.token)
        .await;
    assert_eq!(
        tasks.len(),
        tally.created.len(),
        "tasks stored = tasks acknowledged"
    );
    let stored: std::collections::HashSet<&str> = tasks.iter().filter_map(|t| t["id"].as_str()).collect();
    for (id, title) in &tally.created {
        assert!(
            stored.contains(id.as_str()),
            "acknowledged task {id} ({title}) is stored"
        );
    }
    // ...and its event reached the surviving instance's stream (a lease taken over from the
    // stopped instance would take up to 10 s: wait a little longer).
    let mut missing: std::collections::HashSet<&str> =
        tally.created.iter().map(|(id, _)| id.as_str()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !missing.is_empty() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(id)) => {
                missing.remove(id.as_str());
            }
            Ok(None) | Err(_) => break,
        }
    }
    watcher.abort();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tasks' task.created never reached the surviving instance's stream: {missing:?}",
        missing.len(),
        tally.created.len()
    );
}
