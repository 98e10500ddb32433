//! The cache seen from outside (docs/api/caching-and-limits.md, ADR 0009): two instances sharing one database and
//! one private Redis never serve a stale read after a write, a revocation on one is refused
//! by the other at once, and Redis going away fails no request.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use keel_tests::{TestApp, TestRedis, spawn_pair};

async fn cache_counter(app: &TestApp, metric: &str, layer: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let prefix = format!("{metric}{{cache_layer=\"{layer}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn readiness(app: &TestApp) -> String {
    let (_, body) = app.get_json("/ready").await;
    body["checks"]["cache"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_write_on_one_instance_is_read_on_the_other_thirty_times_in_a_row() {
    let Some(redis) = TestRedis::start_private("a_write_on_one_instance_is_read_on_the_other").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let owner = a.account("owner@example.com").await;
    let project = a.create_project(&owner.token, "CACHE").await;
    let pid = project["id"].as_str().unwrap().to_owned();
    let task = a.create_task(&owner.token, &pid, json!({"title": "first"})).await;
    let tid = task["id"].as_str().unwrap().to_owned();

    for round in 0..30 {
        // Warm both instances' caches with the current state...
        let (reader, writer) = if round % 2 == 0 { (&b, &a) } else { (&a, &b) };
        reader
            .get_ok(&format!("/api/v1/projects/{pid}"), &owner.token)
            .await;
        reader.get_ok(&format!("/api/v1/tasks/{tid}"), &owner.token).await;
        reader.get_ok("/api/v1/projects", &owner.token).await;
        // ...write on one...
        let name = format!("Cache project {round}");
        let title = format!("title {round}");
        let patched = writer
            .patch_json(
                &format!("/api/v1/projects/{pid}"),
                &json!({"name": name}),
                &owner.token,
            )
            .await;
        assert_eq!(patched.status(), StatusCode::OK);
        let etag = patched.headers()["etag"].to_str().unwrap().to_owned();
        let patched = writer
            .patch_json(
                &format!("/api/v1/tasks/{tid}"),
                &json!({"title": title}),
                &owner.token,
            )
            .await;
        assert_eq!(patched.status(), StatusCode::OK);
        // ...and read on the other, at once.
        let read = reader
            .get_as(&format!("/api/v1/projects/{pid}"), &owner.token)
            .await;
        assert_eq!(
            read.headers()["etag"].to_str().unwrap(),
            etag,
            "round {round}: project ETag"
        );
        let read: serde_json::Value = read.json().await.unwrap();
        assert_eq!(read["name"], name.as_str(), "round {round}: project");
        let read = reader.get_ok(&format!("/api/v1/tasks/{tid}"), &owner.token).await;
        assert_eq!(read["title"], title.as_str(), "round {round}: task");
        let list = reader.get_ok("/api/v1/projects", &owner.token).await;
        assert_eq!(
            list["data"][0]["name"],
            name.as_str(),
            "round {round}: project list"
        );
    }

    // The reads were served by the cache, not only by the database.
    let hits = cache_counter(&a, "cache_hits_total", "l1").await
        + cache_counter(&b, "cache_hits_total", "l1").await
        + cache_counter(&a, "cache_hits_total", "l2").await
        + cache_counter(&b, "cache_hits_total", "l2").await;
    assert!(hits >= 60, "cache hits over both instances: {hits}");
}

#[tokio::test]
async fn membership_changes_on_one_instance_apply_on_the_other_at_once() {
    let Some(redis) = TestRedis::start_private("membership_changes_apply_on_the_other").await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let owner = a.account("owner@example.com").await;
    let bob = a.account("bob@example.com").await;
    let project = a.create_project(&owner.token, "MEMB").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().unwrap());

    // Bob is a stranger on b (cached as "no role")...
    assert_eq!(b.get_as(&path, &bob.token).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        b.get_ok("/api/v1/projects", &bob.token).await["pagination"]["total"],
        0
    );
    // ...is added on a, and sees the project on b at once, in his list too.
    a.add_member(
        &owner.token,
        project["id"].as_str().unwrap(),
        "bob@example.com",
        "viewer",
    )
    .await;
    let seen = b.get_ok(&path, &bob.token).await;
    assert_eq!(seen["myRole"], "viewer");
    assert_eq!(
        b.get_ok("/api/v1/projects", &bob.token).await["pagination"]["total"],
        1
    );
    // Promoted on b, he writes on a.
    let promoted = b
        .patch_json(
            &format!("{path}/members/{}", bob.id),
            &json!({"role": "member"}),
            &owner.token,
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let created = a
        .post_json(
            &format!("{path}/tasks"),
            &json!({"title": "by bob"}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    // Removed on a, he is a stranger on b again.
    let removed = a
        .delete_as(&format!("{path}/members/{}", bob.id), &owner.token)
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.get_as(&path, &bob.token).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        b.get_ok("/api/v1/projects", &bob.token).await["pagination"]["total"],
        0
    );
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_the_other_at_once() {
    let Some(redis) = TestRedis::start_private("a_logout_on_one_instance_is_refused_by_the_other").await
    else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let ann = a.account("ann@example.com").await;
    // b has the session cached.
    for _ in 0..3 {
        assert_eq!(
            b.get_as("/api/v1/auth/profile", &ann.token).await.status(),
            StatusCode::OK
        );
    }
    let out = a
        .post_json("/api/v1/auth/logout", &json!({}), Some(&ann.token))
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        b.get_as("/api/v1/auth/profile", &ann.token).await.status(),
        StatusCode::UNAUTHORIZED,
        "the revoked session is refused by the other instance on the next request"
    );

    // The same for every session at once (logout-all on b, refused on a).
    let second = a.login_ok("ann@example.com").await;
    let third = b.login_ok("ann@example.com").await;
    let (t2, t3) = (
        second["accessToken"].as_str().unwrap().to_owned(),
        third["accessToken"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        a.get_as("/api/v1/auth/profile", &t2).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        a.get_as("/api/v1/auth/profile", &t3).await.status(),
        StatusCode::OK
    );
    let all = b
        .post_json("/api/v1/auth/logout-all", &json!({}), Some(&t3))
        .await;
    assert_eq!(all.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        a.get_as("/api/v1/auth/profile", &t2).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.get_as("/api/v1/auth/profile", &t3).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn with_redis_stopped_no_request_fails_and_readiness_recovers_by_itself() {
    let test = "with_redis_stopped_no_request_fails_and_readiness_recovers_by_itself";
    let Some(mut redis) = TestRedis::start_private(test).await else {
        return;
    };
    let (a, b) = spawn_pair(&redis).await;
    let owner = a.account("owner@example.com").await;
    let project = a.create_project(&owner.token, "DOWN").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().unwrap());
    assert_eq!(readiness(&a).await, "ok");
    assert_eq!(readiness(&b).await, "ok");

    redis.stop().await;
    // Reads and writes go on, on both instances, from L1 and the database.
    let mut degraded_seen = false;
    for round in 0..20 {
        for app in [&a, &b] {
            let read = app.get_as(&path, &owner.token).await;
            assert_eq!(
                read.status(),
                StatusCode::OK,
                "read in round {round} with Redis down"
            );
        }
        let write = a
            .patch_json(
                &path,
                &json!({"description": format!("round {round}")}),
                &owner.token,
            )
            .await;
        assert_eq!(
            write.status(),
            StatusCode::OK,
            "write in round {round} with Redis down"
        );
        degraded_seen |= readiness(&a).await == "degraded" && readiness(&b).await == "degraded";
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        degraded_seen,
        "readiness reports the cache degraded on both instances"
    );
    // Without the channel, an instance's L1 keeps a value at most 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let on_b = b.get_ok(&path, &owner.token).await;
    assert_eq!(on_b["description"], "round 19");

    redis.start().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while readiness(&a).await != "ok" || readiness(&b).await != "ok" {
        assert!(Instant::now() < deadline, "readiness did not recover within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back on the shared tier: a write on one is read on the other at once.
    for round in 0..10 {
        let name = format!("After {round}");
        b.get_ok(&path, &owner.token).await;
        let write = a.patch_json(&path, &json!({"name": name}), &owner.token).await;
        assert_eq!(write.status(), StatusCode::OK);
        assert_eq!(
            b.get_ok(&path, &owner.token).await["name"],
            name.as_str(),
            "round {round}"
        );
    }
}
