//! `/api/v1/projects/{id}/states` and what states do to tasks (docs/api/tracking.md,
//! "Workflow states").

use keel_tests::{error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

fn keys(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(list: &Value, key: &str) -> String {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_new_project_has_six_states_and_custom_states_drive_status_category_and_completed_at() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    assert_eq!(project["defaultState"], "todo");
    let id = project["id"].as_str().unwrap();
    let states_path = format!("/api/v1/projects/{id}/states");

    let states = app.get_ok(&states_path, &ann.token).await;
    assert_eq!(
        keys(&states),
        ["backlog", "todo", "in_progress", "in_review", "done", "canceled"]
    );
    let categories: Vec<&str> = states["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        [
            "backlog",
            "unstarted",
            "started",
            "started",
            "completed",
            "canceled"
        ]
    );
    assert_eq!(states["data"][1]["isDefault"], true);
    assert_eq!(states["data"][0]["isDefault"], false);

    // A task created without a status is in the default state.
    let task = app.create_task(&ann.token, id, json!({"title": "One"})).await;
    assert_eq!(
        (&task["status"], &task["statusCategory"]),
        (&json!("todo"), &json!("unstarted"))
    );
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap());

    // A custom state, after the last.
    let response = app
        .post_json(
            &states_path,
            &json!({"key": "qa", "name": " QA ", "category": "started", "color": "#0ea5e9"}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let qa = json_body(response).await;
    assert_eq!(location, format!("{states_path}/{}", qa["id"].as_str().unwrap()));
    assert_eq!(
        (
            &qa["key"],
            &qa["name"],
            &qa["color"],
            &qa["position"],
            &qa["isDefault"]
        ),
        (
            &json!("qa"),
            &json!("QA"),
            &json!("#0EA5E9"),
            &json!(6),
            &json!(false)
        )
    );
    let duplicate = app
        .post_json(
            &states_path,
            &json!({"key": "qa", "name": "Again", "category": "backlog", "color": "#000000"}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    // The task moves into it: its category follows.
    let moved = app
        .patch_json(&task_path, &json!({"status": "qa"}), &ann.token)
        .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved = json_body(moved).await;
    assert_eq!(
        (&moved["status"], &moved["statusCategory"], &moved["completedAt"]),
        (&json!("qa"), &json!("started"), &Value::Null)
    );

    // The state becomes a completed one: the task is completed, with a new version.
    let qa_path = format!("{states_path}/{}", qa["id"].as_str().unwrap());
    let recategorised = app
        .patch_json(
            &qa_path,
            &json!({"category": "completed", "name": "Verified"}),
            &ann.token,
        )
        .await;
    assert_eq!(recategorised.status(), StatusCode::OK);
    assert_eq!(json_body(recategorised).await["category"], "completed");
    let now = app.get_ok(&task_path, &ann.token).await;
    assert_eq!(now["statusCategory"], "completed");
    assert!(now["completedAt"].is_string(), "{now}");
    assert_eq!(now["version"], moved["version"].as_i64().unwrap() + 1);
    let completed = app
        .get_ok(
            &format!("/api/v1/projects/{id}/tasks?category=completed"),
            &ann.token,
        )
        .await;
    assert_eq!(completed["data"].as_array().unwrap().len(), 1);
    let started = app
        .get_ok(
            &format!("/api/v1/projects/{id}/tasks?category=started,backlog"),
            &ann.token,
        )
        .await;
    assert_eq!(started["data"].as_array().unwrap().len(), 0);
    let by_status = app.get_ok("/api/v1/tasks?status=qa", &ann.token).await;
    assert_eq!(by_status["data"][0]["id"], now["id"]);

    // Back out of the completed category: completedAt is cleared.
    let back = json_body(
        app.patch_json(&task_path, &json!({"status": "in_progress"}), &ann.token)
            .await,
    )
    .await;
    assert_eq!(
        (&back["statusCategory"], &back["completedAt"]),
        (&json!("started"), &Value::Null)
    );

    // Bad inputs name their field and change nothing.
    for (body, field) in [
        (
            json!({"key": "Bad Key", "name": "x", "category": "started", "color": "#000000"}),
            "key",
        ),
        (
            json!({"key": "ok", "name": "", "category": "started", "color": "#000000"}),
            "name",
        ),
        (
            json!({"key": "ok", "name": "x", "category": "doing", "color": "#000000"}),
            "category",
        ),
        (
            json!({"key": "ok", "name": "x", "category": "started", "color": "red"}),
            "color",
        ),
        (
            json!({"key": "ok", "name": "x", "category": "started", "color": "#000000", "position": -1}),
            "position",
        ),
    ] {
        let response = app.post_json(&states_path, &body, Some(&ann.token)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_fields(&json_body(response).await), [field], "{body}");
    }
    let unknown = app
        .patch_json(&task_path, &json!({"status": "shipped"}), &ann.token)
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let error = json_body(unknown).await;
    assert_eq!(
        (error["code"].as_str(), error_fields(&error)),
        (Some("VALIDATION_ERROR"), vec!["status".to_owned()])
    );
    assert_eq!(keys(&app.get_ok(&states_path, &ann.token).await).len(), 7);
}

#[tokio::test]
async fn deleting_a_state_moves_its_tasks_and_the_default_and_last_states_stay() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    let states_path = format!("/api/v1/projects/{id}/states");
    let states = app.get_ok(&states_path, &ann.token).await;
    let done = app
        .create_task(&ann.token, id, json!({"title": "Done", "status": "done"}))
        .await;
    assert!(done["completedAt"].is_string());
    let task_path = format!("/api/v1/tasks/{}", done["id"].as_str().unwrap());
    let delete = |key: &str, query: &str| format!("{states_path}/{}{query}", id_of(&states, key));

    // The default state cannot go; nor can tasks move into the state deleted or nowhere.
    let response = app
        .delete_as(&delete("todo", "?moveTo=backlog"), &ann.token)
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    for (query, status) in [
        ("?moveTo=done", StatusCode::BAD_REQUEST),
        ("?moveTo=nowhere", StatusCode::BAD_REQUEST),
        ("?moveTo=Not%20a%20key", StatusCode::BAD_REQUEST),
    ] {
        let response = app.delete_as(&delete("done", query), &ann.token).await;
        assert_eq!(response.status(), status, "{query}");
        assert_eq!(error_fields(&json_body(response).await), ["moveTo"], "{query}");
    }
    assert_eq!(app.get_ok(&task_path, &ann.token).await["status"], "done");

    // Deleted with moveTo: the task moved first, left the completed category.
    let response = app
        .delete_as(&delete("done", "?moveTo=in_review"), &ann.token)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let moved = app.get_ok(&task_path, &ann.token).await;
    assert_eq!(
        (
            &moved["status"],
            &moved["statusCategory"],
            &moved["completedAt"],
            &moved["version"]
        ),
        (&json!("in_review"), &json!("started"), &Value::Null, &json!(2))
    );
    // Without moveTo the tasks go to the default state.
    let response = app.delete_as(&delete("in_review", ""), &ann.token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_ok(&task_path, &ann.token).await["status"], "todo");

    // Another default first, then the old one can go; the last state stays.
    let project_path = format!("/api/v1/projects/{id}");
    let bad = app
        .patch_json(&project_path, &json!({"defaultState": "done"}), &ann.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(bad).await), ["defaultState"]);
    let changed = app
        .patch_json(&project_path, &json!({"defaultState": "backlog"}), &ann.token)
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(json_body(changed).await["defaultState"], "backlog");
    let fresh = app.create_task(&ann.token, id, json!({"title": "New"})).await;
    assert_eq!(
        (&fresh["status"], &fresh["statusCategory"]),
        (&json!("backlog"), &json!("backlog"))
    );
    for key in ["todo", "in_progress", "canceled"] {
        let response = app.delete_as(&delete(key, ""), &ann.token).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{key}");
    }
    assert_eq!(keys(&app.get_ok(&states_path, &ann.token).await), ["backlog"]);
    let last = app.delete_as(&delete("backlog", ""), &ann.token).await;
    assert_eq!(last.status(), StatusCode::CONFLICT);
    assert_eq!(app.get_ok(&task_path, &ann.token).await["status"], "backlog");
    let activity = app
        .get_ok(&format!("/api/v1/projects/{id}/activity?limit=100"), &ann.token)
        .await;
    let deleted = activity["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "state.deleted")
        .count();
    assert_eq!(deleted, 5, "each deletion audited");
}

#[tokio::test]
async fn viewers_read_states_admins_manage_them_and_strangers_get_404() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let vic = app.account("vic@example.com").await;
    let mem = app.account("mem@example.com").await;
    let eve = app.account("eve@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &vic.email, "viewer").await;
    app.add_member(&ann.token, id, &mem.email, "member").await;
    let states_path = format!("/api/v1/projects/{id}/states");
    let states = app.get_ok(&states_path, &vic.token).await;
    assert_eq!(keys(&states).len(), 6);
    let one = format!("{states_path}/{}", id_of(&states, "in_review"));
    let body = json!({"key": "qa", "name": "QA", "category": "started", "color": "#000000"});
    for who in [&vic, &mem] {
        let r = app.post_json(&states_path, &body, Some(&who.token)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app.patch_json(&one, &json!({"name": "Mine"}), &who.token).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app.delete_as(&one, &who.token).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = app.get_as(&states_path, &eve.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.post_json(&states_path, &body, Some(&eve.token)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.delete_as(&one, &eve.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let unknown = format!("{states_path}/{}", uuid::Uuid::now_v7());
    let r = app.patch_json(&unknown, &json!({"name": "X"}), &ann.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        keys(&app.get_ok(&states_path, &ann.token).await).len(),
        6,
        "nothing changed"
    );
}

/// Adds the state `qa` (category `started`) to the project `id`; returns its path.
async fn qa_state(app: &keel_tests::TestApp, token: &str, id: &str) -> String {
    let states_path = format!("/api/v1/projects/{id}/states");
    let qa = app
        .created(
            &states_path,
            &json!({"key": "qa", "name": "QA", "category": "started", "color": "#0ea5e9"}),
            token,
        )
        .await;
    format!("{states_path}/{}", qa["id"].as_str().unwrap())
}

#[tokio::test]
async fn each_task_a_state_write_rewrites_gets_its_task_updated_event_and_a_fresh_view() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    let qa_path = qa_state(&app, &ann.token, id).await;
    let mut in_qa = Vec::new();
    for title in ["One", "Two"] {
        let task = app
            .create_task(&ann.token, id, json!({"title": title, "status": "qa"}))
            .await;
        in_qa.push(task["id"].as_str().unwrap().to_owned());
    }
    let other = app.create_task(&ann.token, id, json!({"title": "Other"})).await;
    let read = |task: &str| {
        let path = format!("/api/v1/tasks/{task}");
        let (app, token) = (&app, ann.token.clone());
        async move { app.get_ok(&path, &token).await }
    };
    // Cached views of every task before the state writes.
    for task in &in_qa {
        assert_eq!(read(task).await["version"], 1);
    }
    read(other["id"].as_str().unwrap()).await;

    // A new category: each task of the state its `task.updated`, as a read shows it now.
    let r = app
        .patch_json(&qa_path, &json!({"category": "completed"}), &ann.token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let events = app.feed_events(&ann.token, "task.updated", 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for task in &in_qa {
        let now = read(task).await;
        assert_eq!(
            (&now["statusCategory"], &now["version"]),
            (&json!("completed"), &json!(2)),
            "the cached view was dropped"
        );
        let event = events.iter().find(|e| e["data"]["id"] == json!(task)).unwrap();
        assert_eq!(event["data"], now);
        assert_eq!(event["previous"], json!({"statusCategory": "started"}));
        assert_eq!(event["actorId"], json!(ann.id));
    }

    // Deleted, its tasks moved: each its event again, naming the old key and category.
    let r = app
        .delete_as(&format!("{qa_path}?moveTo=in_progress"), &ann.token)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let events = app.feed_events(&ann.token, "task.updated", 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    for task in &in_qa {
        let now = read(task).await;
        assert_eq!(
            (&now["status"], &now["completedAt"], &now["version"]),
            (&json!("in_progress"), &Value::Null, &json!(3))
        );
        let event = events[2..]
            .iter()
            .find(|e| e["data"]["id"] == json!(task))
            .unwrap();
        assert_eq!(event["data"], now);
        assert_eq!(
            event["previous"],
            json!({"status": "qa", "statusCategory": "completed"})
        );
    }
    assert_eq!(read(other["id"].as_str().unwrap()).await["version"], 1);
}

/// A state's category flipping between `started` and `completed` while tasks are moved into
/// and out of it and created in it, on two instances of one database: once everything has
/// settled, every task's `statusCategory` and `completedAt` agree with its state's category
/// — as stored (reads by identifier, uncached) and, when the two instances share a Redis
/// (their caches are coherent only then), through reads by id (the cache) and a list, on
/// both instances.
#[tokio::test]
async fn a_category_change_racing_task_writes_into_the_state_leaves_every_task_agreeing_with_it() {
    let redis = keel_tests::TestRedis::start_private("a_category_change_racing_task_writes").await;
    let (a, b) = match &redis {
        Some(redis) => keel_tests::spawn_pair(redis).await,
        None => {
            let mut apps = keel_tests::spawn_cluster(2, |_| {}).await;
            let b = apps.pop().unwrap();
            (apps.pop().unwrap(), b)
        }
    };
    let coherent = redis.is_some();
    let ann = a.account("ann@example.com").await;
    let project = a.create_project(&ann.token, "RACE").await;
    let id = project["id"].as_str().unwrap().to_owned();
    let states_path = format!("/api/v1/projects/{id}/states");
    let qa_path = qa_state(&a, &ann.token, &id).await;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let task = a
            .create_task(&ann.token, &id, json!({"title": format!("Task {n}")}))
            .await;
        tasks.push(task["id"].as_str().unwrap().to_owned());
    }
    let categories = ["completed", "started"];
    for round in 0..6 {
        let category = categories[round % 2];
        // Every task read on both instances first: their views are cached.
        for task in &tasks {
            for app in [&a, &b] {
                app.get_ok(&format!("/api/v1/tasks/{task}"), &ann.token).await;
            }
        }
        let flip = {
            let (app, path, token) = (&a, qa_path.clone(), ann.token.clone());
            async move {
                app.patch_json(&path, &json!({"category": category}), &token)
                    .await
                    .status()
            }
        };
        let moves = tasks.iter().enumerate().map(|(n, task)| {
            let app = if n % 2 == 0 { &b } else { &a };
            // Most go into the state; a few leave it (they were moved in a round before).
            let status = if (n + round) % 4 == 0 { "todo" } else { "qa" };
            let (path, token) = (format!("/api/v1/tasks/{task}"), ann.token.clone());
            async move {
                app.patch_json(&path, &json!({"status": status}), &token)
                    .await
                    .status()
            }
        });
        let creates = (0..3).map(|n| {
            let app = if n % 2 == 0 { &a } else { &b };
            let (path, token) = (format!("/api/v1/projects/{id}/tasks"), ann.token.clone());
            async move {
                let r = app
                    .post_json(
                        &path,
                        &json!({"title": format!("New {round}.{n}"), "status": "qa"}),
                        Some(&token),
                    )
                    .await;
                let status = r.status();
                let body = json_body(r).await;
                (status, body["id"].as_str().map(str::to_owned))
            }
        });
        let (flipped, moved, created) = tokio::join!(
            flip,
            futures::future::join_all(moves),
            futures::future::join_all(creates)
        );
        assert_eq!(flipped, StatusCode::OK, "round {round}");
        assert!(
            moved.iter().all(|s| *s == StatusCode::OK),
            "round {round}: {moved:?}"
        );
        for (status, task) in created {
            // A create whose state changed category between its read and its write is
            // refused on `status` (the client sends it again); none is half-written.
            match status {
                StatusCode::CREATED => tasks.push(task.unwrap()),
                StatusCode::BAD_REQUEST => {}
                other => panic!("round {round}: a create answered {other}"),
            }
        }

        let states = a.get_ok(&states_path, &ann.token).await;
        let category_of = |key: &str| {
            states["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["key"] == key)
                .unwrap()["category"]
                .clone()
        };
        assert_eq!(category_of("qa"), json!(category), "round {round}");
        let mut stored = Vec::new();
        for task in &tasks {
            let by_id = a.get_ok(&format!("/api/v1/tasks/{task}"), &ann.token).await;
            let identifier = by_id["identifier"].as_str().unwrap().to_owned();
            for app in [&a, &b] {
                // By identifier: read from the database, never cached.
                stored.push(
                    app.get_ok(&format!("/api/v1/tasks/{identifier}"), &ann.token)
                        .await,
                );
                if coherent {
                    stored.push(app.get_ok(&format!("/api/v1/tasks/{task}"), &ann.token).await);
                }
            }
        }
        if coherent {
            for app in [&a, &b] {
                let listed = app
                    .walk(&format!("/api/v1/projects/{id}/tasks"), 100, &ann.token)
                    .await;
                assert_eq!(listed.len(), tasks.len());
                stored.extend(listed);
            }
        }
        for t in &stored {
            let expected = category_of(t["status"].as_str().unwrap());
            assert_eq!(t["statusCategory"], expected, "round {round}: {t}");
            assert_eq!(
                t["completedAt"].is_null(),
                expected != "completed",
                "round {round}: {t}"
            );
        }
    }
}
