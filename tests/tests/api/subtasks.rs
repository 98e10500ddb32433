//! Sub-tasks (docs/api/tracking.md, "Sub-tasks"): `parentId`, `childCount`,
//! `childDoneCount`, `GET /tasks/{id}/children`, the `parent` filter, what deleting and
//! archiving a parent does to its children.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::ETAG;
use serde_json::{Value, json};

/// Ann owns `SUB` and `OTH`; Cara is a member of `SUB`.
struct Tree {
    app: TestApp,
    ann: Account,
    cara: Account,
    sub: String,
    oth: String,
}

async fn tree() -> Tree {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let cara = app.account("cara@example.com").await;
    let sub = app.create_project_id(&ann.token, "SUB").await;
    let oth = app.create_project_id(&ann.token, "OTH").await;
    app.add_member(&ann.token, &sub, &cara.email, "member").await;
    Tree {
        app,
        ann,
        cara,
        sub,
        oth,
    }
}

impl Tree {
    /// The path of `SUB`'s task list with `query` (`?…` or empty).
    fn in_sub(&self, query: &str) -> String {
        format!("/api/v1/projects/{}/tasks{query}", self.sub)
    }

    /// Creates a task in `SUB` (under `parent`, an id, when given); returns it.
    async fn task(&self, title: &str, parent: Option<&str>) -> Value {
        let mut body = json!({ "title": title });
        if let Some(parent) = parent {
            body["parentId"] = json!(parent);
        }
        self.app.create_task(&self.cara.token, &self.sub, body).await
    }

    async fn try_create(&self, project: &str, title: &str, parent: &str) -> reqwest::Response {
        self.app
            .post_json(
                &format!("/api/v1/projects/{project}/tasks"),
                &json!({ "title": title, "parentId": parent }),
                Some(&self.ann.token),
            )
            .await
    }

    async fn set_parent(&self, task: &str, parent: Value) -> reqwest::Response {
        self.set_parent_as(&self.cara, task, parent).await
    }

    async fn set_parent_as(&self, who: &Account, task: &str, parent: Value) -> reqwest::Response {
        self.app
            .patch_json(
                &format!("/api/v1/tasks/{task}"),
                &json!({ "parentId": parent }),
                &who.token,
            )
            .await
    }

    async fn get(&self, task: &str) -> Value {
        self.app
            .get_ok(&format!("/api/v1/tasks/{task}"), &self.ann.token)
            .await
    }

    /// `(childCount, childDoneCount)` as a read by id shows them (through the cache).
    async fn counts(&self, task: &str) -> (i64, i64) {
        let t = self.get(task).await;
        (
            t["childCount"].as_i64().unwrap(),
            t["childDoneCount"].as_i64().unwrap(),
        )
    }

    /// Identifiers of a list, in order.
    async fn identifiers(&self, path: &str) -> Vec<String> {
        self.app
            .walk(path, 2, &self.ann.token)
            .await
            .iter()
            .map(|t| t["identifier"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A chain of `n` tasks, each a child of the one before; their ids, top first.
    async fn chain(&self, n: usize) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for level in 1..=n {
            let task = self
                .task(&format!("Level {level}"), ids.last().map(String::as_str))
                .await;
            ids.push(task["id"].as_str().unwrap().to_owned());
        }
        ids
    }
}

async fn refused_on_parent(response: reqwest::Response, contains: &str) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_body(response).await;
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert_eq!(error_fields(&body), vec!["parentId"], "{body}");
    let message = body["details"][0]["message"].as_str().unwrap();
    assert!(message.contains(contains), "{message}");
}

#[tokio::test]
async fn five_levels_nest_and_a_sixth_is_refused() {
    let t = tree().await;
    let chain = t.chain(5).await;
    let fifth = t.get(&chain[4]).await;
    assert_eq!(fifth["parentId"], chain[3].as_str());
    assert_eq!(t.get(&chain[0]).await["parentId"], Value::Null);
    refused_on_parent(t.try_create(&t.sub, "Level 6", &chain[4]).await, "5 levels").await;
    // Moving a two-level subtree under the fourth level would make a sixth too.
    let top = t.task("Top", None).await["id"].as_str().unwrap().to_owned();
    t.task("Below", Some(&top)).await;
    refused_on_parent(t.set_parent(&top, json!(chain[3])).await, "5 levels").await;
    // Under the third it fits.
    let moved = t.set_parent(&top, json!(chain[2])).await;
    assert_eq!(moved.status(), StatusCode::OK);
    assert_eq!(json_body(moved).await["parentId"], chain[2].as_str());
    // Nothing was created by the refusals.
    assert_eq!(t.identifiers(&t.in_sub("")).await.len(), 7);
}

#[tokio::test]
async fn cycles_other_projects_and_unknown_parents_are_refused() {
    let t = tree().await;
    let chain = t.chain(3).await;
    refused_on_parent(t.set_parent(&chain[0], json!(chain[2])).await, "itself").await;
    refused_on_parent(t.set_parent(&chain[1], json!(chain[1])).await, "itself").await;
    let elsewhere = t
        .app
        .create_task(&t.ann.token, &t.oth, json!({"title": "Elsewhere"}))
        .await;
    let elsewhere = elsewhere["id"].as_str().unwrap();
    refused_on_parent(t.set_parent(&chain[0], json!(elsewhere)).await, "same project").await;
    refused_on_parent(t.try_create(&t.oth, "Across", &chain[0]).await, "same project").await;
    refused_on_parent(
        t.set_parent(&chain[0], json!("00000000-0000-0000-0000-000000000001"))
            .await,
        "same project",
    )
    .await;
    // The task is where it was; `null` detaches, with `previous.parentId` in the history.
    assert_eq!(t.get(&chain[2]).await["parentId"], chain[1].as_str());
    let detached = t.set_parent(&chain[2], Value::Null).await;
    assert_eq!(detached.status(), StatusCode::OK);
    assert_eq!(json_body(detached).await["parentId"], Value::Null);
    let history = t
        .app
        .get_ok(&format!("/api/v1/tasks/{}/history", chain[2]), &t.ann.token)
        .await;
    let change = &history["data"][0]["changes"][0];
    assert_eq!(change["field"], "parentId", "{history}");
    assert_eq!(change["from"], chain[1].as_str());
    assert_eq!(change["to"], Value::Null);
}

/// Two re-parentings that each look fine alone but close a cycle together, sent at once:
/// exactly one wins, every round.
#[tokio::test]
async fn of_concurrent_moves_that_would_close_a_cycle_exactly_one_wins() {
    let t = tree().await;
    for round in 0..10 {
        let a = t.task(&format!("A{round}"), None).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = t.task(&format!("B{round}"), None).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (first, second) = tokio::join!(
            t.set_parent_as(&t.cara, &a, json!(b)),
            t.set_parent_as(&t.ann, &b, json!(a))
        );
        let mut statuses = vec![first.status(), second.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::OK, StatusCode::BAD_REQUEST],
            "round {round}"
        );
        let parents = (
            t.get(&a).await["parentId"].clone(),
            t.get(&b).await["parentId"].clone(),
        );
        assert!(
            parents == (json!(b), Value::Null) || parents == (Value::Null, json!(a)),
            "round {round}: {parents:?}"
        );
    }
}

/// Two moves that each keep within five levels but exceed them together, at once.
#[tokio::test]
async fn of_concurrent_moves_that_would_nest_too_deep_exactly_one_wins() {
    let t = tree().await;
    for round in 0..5 {
        // Two chains of three, and a pair: the pair under the first chain's bottom is 5
        // levels; the second chain's top under the pair's bottom is 5 levels; both: 8.
        let upper = t.chain(3).await;
        let pair = t.chain(2).await;
        let (first, second) = tokio::join!(
            t.set_parent_as(&t.cara, &pair[0], json!(upper[2])),
            t.set_parent_as(&t.ann, &upper[0], json!(pair[1]))
        );
        let mut statuses = vec![first.status(), second.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::OK, StatusCode::BAD_REQUEST],
            "round {round}"
        );
    }
}

#[tokio::test]
async fn counts_show_in_reads_and_lists_and_change_the_parent_etag() {
    let t = tree().await;
    let parent = t.task("Parent", None).await["id"].as_str().unwrap().to_owned();
    let first = t.get(&parent).await;
    assert_eq!(
        (first["childCount"].as_i64(), first["childDoneCount"].as_i64()),
        (Some(0), Some(0))
    );
    let tag = |task: String| {
        let app = &t.app;
        let token = t.ann.token.clone();
        async move {
            app.get_as(&format!("/api/v1/tasks/{task}"), &token)
                .await
                .headers()[ETAG]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let before = tag(parent.clone()).await;
    let one = t.task("One", Some(&parent)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = t.task("Two", Some(&parent)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.counts(&parent).await, (2, 0));
    // The parent's version did not change, its tag did.
    assert_eq!(t.get(&parent).await["version"], first["version"]);
    assert_ne!(tag(parent.clone()).await, before);
    let done = t
        .app
        .patch_json(
            &format!("/api/v1/tasks/{one}"),
            &json!({"status": "done"}),
            &t.cara.token,
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(t.counts(&parent).await, (2, 1));
    // In the lists too, in the same page read.
    let listed = t.app.walk(&t.in_sub(""), 10, &t.ann.token).await;
    let row = listed.iter().find(|r| r["id"] == parent.as_str()).unwrap();
    assert_eq!(
        (row["childCount"].as_i64(), row["childDoneCount"].as_i64()),
        (Some(2), Some(1))
    );
    let across = t.app.walk("/api/v1/tasks", 10, &t.ann.token).await;
    let row = across.iter().find(|r| r["id"] == parent.as_str()).unwrap();
    assert_eq!(row["childCount"], 2);
    // Moving a child away counts on both sides.
    let other = t.task("Other", None).await["id"].as_str().unwrap().to_owned();
    assert_eq!(t.set_parent(&two, json!(other)).await.status(), StatusCode::OK);
    assert_eq!(t.counts(&parent).await, (1, 1));
    assert_eq!(t.counts(&other).await, (1, 0));
    // A trashed child does not count.
    assert_eq!(
        t.app
            .delete_as(&format!("/api/v1/tasks/{one}"), &t.cara.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.counts(&parent).await, (0, 0));
}

#[tokio::test]
async fn children_list_and_parent_filter() {
    let t = tree().await;
    let parent = t.task("Parent", None).await; // SUB-1
    let pid = parent["id"].as_str().unwrap().to_owned();
    for title in ["C1", "C2", "C3"] {
        t.task(title, Some(&pid)).await; // SUB-2..4
    }
    let grandchild_parent = t.identifiers("/api/v1/tasks/SUB-1/children").await;
    assert_eq!(
        grandchild_parent,
        vec!["SUB-2", "SUB-3", "SUB-4"],
        "oldest first, in pages of 2"
    );
    let c1 = t.get("SUB-2").await["id"].as_str().unwrap().to_owned();
    t.task("G1", Some(&c1)).await; // SUB-5, a grandchild: not a child of SUB-1
    t.task("Loose", None).await; // SUB-6
    assert_eq!(t.identifiers("/api/v1/tasks/SUB-1/children").await.len(), 3);
    assert_eq!(
        t.identifiers(&format!("/api/v1/tasks/{c1}/children")).await,
        vec!["SUB-5"]
    );
    // The filter, by id, by identifier (any case) and `none`, on both lists.
    let mut by_id = t
        .identifiers(&t.in_sub(&format!("?parent={pid}&sort=createdAt")))
        .await;
    assert_eq!(by_id, vec!["SUB-2", "SUB-3", "SUB-4"]);
    by_id = t.identifiers("/api/v1/tasks?parent=sub-1&sort=createdAt").await;
    assert_eq!(by_id, vec!["SUB-2", "SUB-3", "SUB-4"]);
    let top = t.identifiers(&t.in_sub("?parent=none&sort=createdAt")).await;
    assert_eq!(top, vec!["SUB-1", "SUB-6"]);
    assert!(t.identifiers("/api/v1/tasks?parent=SUB-99").await.is_empty());
    let bad = t.app.get_as("/api/v1/tasks?parent=nobody", &t.ann.token).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(bad).await), vec!["parent"]);
    // A stranger sees no children and no task.
    let eve = t.app.account("eve@example.com").await;
    assert_eq!(
        t.app
            .get_as("/api/v1/tasks/SUB-1/children", &eve.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        t.app
            .walk("/api/v1/tasks?parent=SUB-1", 10, &eve.token)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_a_parent_detaches_its_children() {
    let t = tree().await;
    let parent = t.task("Parent", None).await["id"].as_str().unwrap().to_owned(); // SUB-1
    let child = t.task("Child", Some(&parent)).await["id"]
        .as_str()
        .unwrap()
        .to_owned(); // SUB-2
    let grandchild = t.task("Grandchild", Some(&child)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Cached before the delete: the delete must make it stale.
    let before = t.get(&grandchild).await;
    assert_eq!(before["parentId"], child.as_str());
    let version = before["version"].as_i64().unwrap();
    assert_eq!(
        t.app
            .delete_as(&format!("/api/v1/tasks/{child}"), &t.cara.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let after = t.get(&grandchild).await;
    assert_eq!(after["parentId"], Value::Null);
    assert_eq!(after["version"].as_i64(), Some(version + 1));
    assert_eq!(t.counts(&parent).await, (0, 0));
    // Restored, the child is a top-level task without children.
    let restored = t
        .app
        .post_json(
            &format!("/api/v1/tasks/{child}/restore"),
            &json!({}),
            Some(&t.cara.token),
        )
        .await;
    assert_eq!(restored.status(), StatusCode::OK);
    let restored = json_body(restored).await;
    assert_eq!(restored["parentId"], Value::Null);
    assert_eq!(restored["childCount"], 0);
    // Deleted for good, a parent detaches its children too.
    t.set_parent(&grandchild, json!(parent)).await;
    assert_eq!(t.counts(&parent).await, (1, 0));
    assert_eq!(
        t.app
            .delete_as(&format!("/api/v1/tasks/{parent}?permanent=true"), &t.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.get(&grandchild).await["parentId"], Value::Null);
    assert_eq!(t.identifiers(&t.in_sub("?parent=none")).await.len(), 2);
}

#[tokio::test]
async fn archiving_a_parent_archives_its_subtree_and_unarchiving_brings_back_what_went_with_it() {
    let t = tree().await;
    let parent = t.task("Parent", None).await["id"].as_str().unwrap().to_owned(); // SUB-1
    let child = t.task("Child", Some(&parent)).await["id"]
        .as_str()
        .unwrap()
        .to_owned(); // SUB-2
    t.task("Grandchild", Some(&child)).await; // SUB-3
    t.task("Alone", Some(&parent)).await; // SUB-4, archived on its own first
    let post = |path: String| {
        let app = &t.app;
        let token = t.cara.token.clone();
        async move { app.post_json(&path, &json!({}), Some(&token)).await }
    };
    assert_eq!(
        post("/api/v1/tasks/SUB-4/archive".into()).await.status(),
        StatusCode::OK
    );
    let archived = post(format!("/api/v1/tasks/{parent}/archive")).await;
    assert_eq!(archived.status(), StatusCode::OK);
    let at = json_body(archived).await["archivedAt"].clone();
    assert!(t.identifiers(&t.in_sub("")).await.is_empty());
    let only = t.identifiers(&t.in_sub("?archived=only&sort=createdAt")).await;
    assert_eq!(only, vec!["SUB-1", "SUB-2", "SUB-3", "SUB-4"]);
    assert_eq!(t.get("SUB-3").await["archivedAt"], at, "with the parent's time");
    // One `task.archived` per task in the project's activity.
    let activity = t
        .app
        .walk(&format!("/api/v1/projects/{}/activity", t.sub), 100, &t.ann.token)
        .await;
    let archived_entries = activity.iter().filter(|e| e["action"] == "task.archived").count();
    assert_eq!(
        archived_entries, 4,
        "the lone one, the parent and its two descendants"
    );
    // Unarchived: what went with it comes back, the one archived on its own stays.
    assert_eq!(
        post(format!("/api/v1/tasks/{parent}/unarchive")).await.status(),
        StatusCode::OK
    );
    let live = t.identifiers(&t.in_sub("?sort=createdAt")).await;
    assert_eq!(live, vec!["SUB-1", "SUB-2", "SUB-3"]);
    assert_eq!(t.identifiers(&t.in_sub("?archived=only")).await, vec!["SUB-4"]);
}

/// Makes every update of the task `id` fail inside the database (a trigger), whatever
/// writes it.
async fn fail_updates_of(app: &TestApp, id: &str) {
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let sql = if app.db.is_postgres {
        vec![
            "CREATE FUNCTION keel_test_fail() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                .to_owned(),
            format!(
                "CREATE TRIGGER keel_test_fail BEFORE UPDATE ON tasks FOR EACH ROW \
                 WHEN (OLD.id = '{id}') EXECUTE FUNCTION keel_test_fail()"
            ),
        ]
    } else {
        let hex = uuid::Uuid::parse_str(id).unwrap().simple().to_string();
        vec![format!(
            "CREATE TRIGGER keel_test_fail BEFORE UPDATE ON tasks WHEN OLD.id = X'{hex}' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )]
    };
    for statement in sql {
        sea_orm::ConnectionTrait::execute_unprepared(&conn, &statement)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

async fn drop_failure(app: &TestApp) {
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let sql = if app.db.is_postgres {
        "DROP TRIGGER keel_test_fail ON tasks"
    } else {
        "DROP TRIGGER keel_test_fail"
    };
    sea_orm::ConnectionTrait::execute_unprepared(&conn, sql)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_archive_cascade_is_all_or_nothing_and_each_descendant_has_its_entry_event_and_fresh_view() {
    let t = tree().await;
    let parent = t.task("Parent", None).await; // SUB-1
    let child = t.task("Child", parent["id"].as_str()).await; // SUB-2
    let grandchild = t.task("Grandchild", child["id"].as_str()).await; // SUB-3
    let ids: Vec<String> = [&parent, &child, &grandchild]
        .iter()
        .map(|task| task["id"].as_str().unwrap().to_owned())
        .collect();
    let archive = |id: &str| {
        let path = format!("/api/v1/tasks/{id}/archive");
        let token = t.cara.token.clone();
        let app = &t.app;
        async move { app.post_json(&path, &json!({}), Some(&token)).await }
    };
    // Views cached by id before the write.
    for id in &ids {
        assert_eq!(t.get(id).await["archivedAt"], Value::Null);
    }

    // The database refuses the grandchild's write: the whole cascade is refused, the
    // parent and the child included, and nothing is recorded.
    fail_updates_of(&t.app, &ids[2]).await;
    let refused = archive(&ids[0]).await;
    assert!(!refused.status().is_success(), "{}", refused.status());
    for id in &ids {
        let task = t.get(id).await;
        assert_eq!(
            (task["archivedAt"].clone(), task["version"].clone()),
            (Value::Null, json!(1)),
            "{task}"
        );
    }
    assert_eq!(
        t.identifiers(&t.in_sub("?sort=createdAt")).await,
        ["SUB-1", "SUB-2", "SUB-3"]
    );
    let activity = t
        .app
        .walk(&format!("/api/v1/projects/{}/activity", t.sub), 100, &t.ann.token)
        .await;
    assert!(!activity.iter().any(|e| e["action"] == "task.archived"));

    // Once the database takes it: all three, each its own entry and event, each view fresh.
    drop_failure(&t.app).await;
    let archived = archive(&ids[0]).await;
    assert_eq!(archived.status(), StatusCode::OK);
    let at = json_body(archived).await["archivedAt"].clone();
    for id in &ids {
        let task = t.get(id).await;
        assert_eq!(
            (task["archivedAt"].clone(), task["version"].clone()),
            (at.clone(), json!(2)),
            "{task}"
        );
    }
    let activity = t
        .app
        .walk(&format!("/api/v1/projects/{}/activity", t.sub), 100, &t.ann.token)
        .await;
    let mut entries: Vec<String> = activity
        .iter()
        .filter(|e| e["action"] == "task.archived")
        .inspect(|e| {
            assert_eq!(
                e["changes"],
                json!([{"field": "archivedAt", "from": null, "to": at}])
            );
        })
        .map(|e| e["resourceId"].as_str().unwrap().to_owned())
        .collect();
    entries.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(entries, expected);
    let events = t.app.feed_events(&t.ann.token, "task.archived", 3).await;
    let mut evented: Vec<String> = events
        .iter()
        .inspect(|e| {
            assert_eq!(e["data"]["archivedAt"], at);
            assert_eq!(e["previous"], json!({"archivedAt": null}), "{e}");
        })
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    evented.sort();
    assert_eq!(evented, expected);
}
