//! A dependency fails while requests flow through nginx to two instances: Redis is killed
//! and restarted, PostgreSQL crashes and comes back, a webhook receiver goes away for a
//! while. Keel answers every request — with data, or with a fast, clean 503 while the
//! database is gone — recovers by itself, and loses nothing it acknowledged.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use keel_tests::cluster::{Cluster, Load, Tally};
use keel_tests::{TestApp, WebhookReceiver};

/// Polls `/ready` on `app` until its `status` is `want` (or panics after `within`).
async fn wait_ready_status(app: &TestApp, want: &str, within: Duration) -> StatusCode {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(response) = app
            .client
            .get(app.url("/ready"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if body["status"] == want {
                return status;
            }
            last = Some(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{}: /ready never said {want} within {within:?}; last: {last:?}",
        app.address
    );
}

/// Every task the load was told was created is stored, with its title.
async fn assert_acknowledged_tasks_stored(front: &TestApp, token: &str, project: &str, tally: &Tally) {
    let tasks = front
        .walk(&format!("/api/v1/projects/{project}/tasks"), 100, token)
        .await;
    let stored: std::collections::HashMap<&str, &str> = tasks
        .iter()
        .filter_map(|t| Some((t["id"].as_str()?, t["title"].as_str()?)))
        .collect();
    for (id, title) in &tally.created {
        assert_eq!(
            stored.get(id.as_str()),
            Some(&title.as_str()),
            "acknowledged task {id} is stored"
        );
    }
    assert!(!tally.created.is_empty(), "the load created tasks");
}

fn describe(failures: &[&keel_tests::cluster::Outcome]) -> String {
    failures
        .iter()
        .take(5)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn redis_killed_and_restarted_under_load_fails_no_request() {
    let mut cluster = Cluster::start(2, |_| {}).await;
    let owner = cluster.front.account("owner@example.com").await;
    let project = cluster.front.create_project(&owner.token, "RDS").await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (a, b) = (cluster.direct(0), cluster.direct(1));
    for app in [&a, &b] {
        assert_eq!(
            wait_ready_status(app, "ok", Duration::from_secs(10)).await,
            StatusCode::OK
        );
    }

    let load = Load::start(&cluster.front.address, &owner.token, &project_id, 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.redis.stop().await;
    // Still ready — degraded — while Redis is gone: the instances stay in rotation.
    for app in [&a, &b] {
        let status = wait_ready_status(app, "degraded", Duration::from_secs(15)).await;
        assert_eq!(status, StatusCode::OK, "degraded is still ready");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.redis.start().await;
    for app in [&a, &b] {
        wait_ready_status(app, "ok", Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;

    let failures = tally.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {}",
        failures.len(),
        tally.outcomes.len(),
        describe(&failures)
    );
    assert!(tally.successes() > 100, "the load ran: {}", tally.successes());
    assert_acknowledged_tasks_stored(&cluster.front, &owner.token, &project_id, &tally).await;

    // Shared state works again: a write on one instance is read on the other at once.
    let path = format!("/api/v1/projects/{project_id}");
    assert_eq!(a.get_ok(&path, &owner.token).await["name"], project["name"]);
    let response = b
        .patch_json(&path, &json!({"name": "After Redis"}), &owner.token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(a.get_ok(&path, &owner.token).await["name"], "After Redis");
}

fn services_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// `scripts/services.sh pg-stop immediate` / `pg-start` on the PostgreSQL of
/// `KEEL_TEST_DATABASE_URL` (`make cluster-test` exports `KEEL_SERVICES_DIR` for it).
fn postgres(command: &[&str]) {
    assert!(
        std::env::var_os("KEEL_SERVICES_DIR").is_some(),
        "KEEL_SERVICES_DIR names the PostgreSQL this test may restart (make cluster-test sets it)"
    );
    let status = Command::new("bash")
        .arg(services_script())
        .args(command)
        .status()
        .expect("run scripts/services.sh");
    assert!(status.success(), "scripts/services.sh {command:?} failed");
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn postgres_crashing_under_load_gives_fast_503s_then_recovers_and_keeps_every_acknowledged_write() {
    let cluster = Cluster::start(2, |vars| {
        vars.insert("KEEL_DB_ACQUIRE_TIMEOUT_SECS".into(), "2".into());
        vars.insert("KEEL_DB_CONNECT_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let owner = cluster.front.account("owner@example.com").await;
    let project = cluster.front.create_project(&owner.token, "PGR").await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (a, b) = (cluster.direct(0), cluster.direct(1));

    let load = Load::start(&cluster.front.address, &owner.token, &project_id, 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A crash: no checkpoint, connections cut mid-statement.
    postgres(&["pg-stop", "immediate"]);
    for app in [&a, &b] {
        let status = wait_ready_status(app, "unavailable", Duration::from_secs(15)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres(&["pg-start"]);
    let restarted = Instant::now();
    // Neither instance is restarted: they find the database again on their own.
    for app in [&a, &b] {
        wait_ready_status(app, "ok", Duration::from_secs(60)).await;
    }
    let instances_ready = restarted.elapsed();
    // nginx took both out of rotation (their 503s count as failures): it tries them again
    // after its fail_timeout.
    wait_ready_status(&cluster.front, "ok", Duration::from_secs(30)).await;
    let recovered = Instant::now();
    eprintln!(
        "PostgreSQL back: instances ready after {instances_ready:?}, nginx passing after {:?}",
        recovered - restarted
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.finish().await;

    // While it was down: 503 UNAVAILABLE, never a 500, a proxy error or a hang.
    let wrong: Vec<_> = tally
        .failures()
        .into_iter()
        .filter(|o| !(o.status == Some(503) && o.code.as_deref() == Some("UNAVAILABLE")))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} answers other than success or 503 UNAVAILABLE: {}",
        wrong.len(),
        describe(&wrong)
    );
    let unavailable = tally.failures().len();
    assert!(unavailable > 0, "the outage was seen by the load");
    // "Fast": bounded by the pool's acquire timeout (2 s), twice when nginx retries a GET
    // on the other instance — never the proxy's 60 s read timeout.
    let slowest = tally.outcomes.iter().map(|o| o.elapsed).max().unwrap();
    assert!(
        slowest < Duration::from_secs(15),
        "no request hung: the slowest took {slowest:?}"
    );
    // After recovery, requests succeed again.
    let after: Vec<_> = tally.outcomes.iter().filter(|o| o.at > recovered).collect();
    assert!(!after.is_empty(), "the load ran after recovery");
    assert!(
        after.iter().all(|o| o.is_success()),
        "every request after /ready said ok succeeded (recovery took {:?})",
        recovered - restarted
    );
    assert_acknowledged_tasks_stored(&cluster.front, &owner.token, &project_id, &tally).await;
}

/// The ids of the tasks whose `task.created` reached `receiver`.
fn task_ids(receiver: &WebhookReceiver) -> BTreeSet<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["type"] == "task.created")
        .filter_map(|e| e["data"]["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
#[ignore = "needs the release binary, nginx, Redis and PostgreSQL: make cluster-test"]
async fn a_webhook_receiver_down_for_a_while_misses_no_event() {
    let cluster = Cluster::start(2, |vars| {
        vars.insert("KEEL_WEBHOOK_RETRY_BASE_SECS".into(), "1".into());
        vars.insert("KEEL_WEBHOOK_BREAKER_THRESHOLD".into(), "3".into());
        vars.insert("KEEL_WEBHOOK_BREAKER_COOLDOWN_SECS".into(), "2".into());
    })
    .await;
    let front = &cluster.front;
    let owner = front.account("owner@example.com").await;
    let project = front.create_project(&owner.token, "WHK").await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let receiver = WebhookReceiver::start(&[200]).await;
    let hook = front
        .created(
            &format!("/api/v1/projects/{project_id}/webhooks"),
            &json!({"url": receiver.url("/hook"), "events": ["task.created"]}),
            &owner.token,
        )
        .await;
    let hook_path = format!(
        "/api/v1/projects/{project_id}/webhooks/{}",
        hook["id"].as_str().unwrap()
    );

    let load = Load::start(&front.address, &owner.token, &project_id, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = task_ids(&receiver);
    assert!(!before.is_empty(), "deliveries flow while the receiver is up");
    let port = receiver.stop();
    // Down long enough for the breaker to open.
    let mut opened = false;
    for _ in 0..150 {
        if front.get_ok(&hook_path, &owner.token).await["breaker"] == "open" {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "the breaker opened while the receiver was down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receiver = WebhookReceiver::start_on(port, &[200]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;
    assert!(tally.failures().is_empty(), "{}", describe(&tally.failures()));

    let expected: BTreeSet<String> = tally.created.iter().map(|(id, _)| id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut delivered = BTreeSet::new();
    while Instant::now() < deadline {
        delivered = before.union(&task_ids(&receiver)).cloned().collect();
        if expected.is_subset(&delivered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing: Vec<_> = expected.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tasks never reached the receiver: {:?}",
        missing.len(),
        expected.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let shown = front.get_ok(&hook_path, &owner.token).await;
    assert_eq!(shown["breaker"], "closed");
}
