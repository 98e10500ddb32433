//! Relations between tasks (docs/api/tracking.md): `/api/v1/tasks/{id}/relations`.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::json;

/// Ann owns `REL` (tasks REL-1..3) with Cara (member) and Dan (viewer); Ann also owns `OTH`
/// (OTH-1), where Cara is a member and Dan is not; Eve owns `EVE` (EVE-1) alone.
struct Graph {
    app: TestApp,
    ann: Account,
    cara: Account,
    dan: Account,
    eve: Account,
}

async fn graph() -> Graph {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let cara = app.account("cara@example.com").await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let rel = app.create_project_id(&ann.token, "REL").await;
    let oth = app.create_project_id(&ann.token, "OTH").await;
    let own = app.create_project_id(&eve.token, "EVE").await;
    app.add_member(&ann.token, &rel, &cara.email, "member").await;
    app.add_member(&ann.token, &rel, &dan.email, "viewer").await;
    app.add_member(&ann.token, &oth, &cara.email, "member").await;
    for title in ["One", "Two", "Three"] {
        app.create_task(&ann.token, &rel, json!({"title": title})).await;
    }
    app.create_task(&ann.token, &oth, json!({"title": "Elsewhere"}))
        .await;
    app.create_task(&eve.token, &own, json!({"title": "Eve's"})).await;
    Graph {
        app,
        ann,
        cara,
        dan,
        eve,
    }
}

impl Graph {
    async fn relate(&self, who: &Account, from: &str, kind: &str, to: &str) -> reqwest::Response {
        self.app
            .post_json(
                &format!("/api/v1/tasks/{from}/relations"),
                &json!({"type": kind, "taskId": to}),
                Some(&who.token),
            )
            .await
    }

    /// `(type, identifier)` of a task's relations as `who` sees them.
    async fn seen(&self, who: &Account, task: &str) -> Vec<(String, String)> {
        self.app
            .walk(&format!("/api/v1/tasks/{task}/relations"), 100, &who.token)
            .await
            .iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["identifier"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn id_of(&self, identifier: &str) -> String {
        self.app
            .get_ok(&format!("/api/v1/tasks/{identifier}"), &self.ann.token)
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_relation_is_one_row_shown_from_both_sides_with_the_inverse_type() {
    let g = graph().await;
    let response = g.relate(&g.cara, "REL-2", "blocked_by", "rel-1").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let created = json_body(response).await;
    assert_eq!(created["type"], "blocked_by");
    assert_eq!(created["identifier"], "REL-1");
    assert_eq!(created["taskId"], g.id_of("REL-1").await.as_str());
    assert_eq!(
        location,
        format!(
            "/api/v1/tasks/REL-2/relations/{}",
            created["id"].as_str().unwrap()
        )
    );
    let by_id = g.id_of("REL-3").await;
    assert_eq!(
        g.relate(&g.cara, "REL-1", "relates_to", &by_id).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        g.relate(&g.cara, "REL-3", "duplicate_of", "REL-2").await.status(),
        StatusCode::CREATED
    );

    assert_eq!(
        g.seen(&g.dan, "REL-1").await,
        pairs(&[("blocks", "REL-2"), ("relates_to", "REL-3")])
    );
    assert_eq!(
        g.seen(&g.dan, "REL-2").await,
        pairs(&[("blocked_by", "REL-1"), ("duplicated_by", "REL-3")])
    );
    assert_eq!(
        g.seen(&g.dan, "REL-3").await,
        pairs(&[("relates_to", "REL-1"), ("duplicate_of", "REL-2")])
    );
    let actions: Vec<String> = g
        .app
        .walk(
            &format!(
                "/api/v1/projects/{}/activity",
                created["projectId"].as_str().unwrap()
            ),
            100,
            &g.ann.token,
        )
        .await
        .iter()
        .filter_map(|e| {
            e["action"]
                .as_str()
                .filter(|a| a.starts_with("relation."))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(actions.len(), 3);

    // Deleted from either side.
    let path = format!(
        "/api/v1/tasks/REL-1/relations/{}",
        created["id"].as_str().unwrap()
    );
    assert_eq!(
        g.app.delete_as(&path, &g.dan.token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        g.app.delete_as(&path, &g.cara.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        g.app.delete_as(&path, &g.cara.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        g.seen(&g.ann, "REL-2").await,
        pairs(&[("duplicated_by", "REL-3")])
    );
    // Not through a task the relation does not involve.
    let other = g
        .app
        .walk("/api/v1/tasks/REL-3/relations", 100, &g.ann.token)
        .await;
    let dup = other.iter().find(|r| r["type"] == "duplicate_of").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        g.app
            .delete_as(&format!("/api/v1/tasks/REL-1/relations/{dup}"), &g.ann.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn across_projects_only_where_the_caller_sees_both_tasks() {
    let g = graph().await;
    // Cara is a member of both projects.
    assert_eq!(
        g.relate(&g.cara, "REL-1", "blocks", "OTH-1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(g.seen(&g.cara, "OTH-1").await, pairs(&[("blocked_by", "REL-1")]));
    // Dan sees REL only: the relation to OTH-1 is not shown to him, nor can he reach it.
    assert!(g.seen(&g.dan, "REL-1").await.is_empty());
    let dans = g.app.get_as("/api/v1/tasks/OTH-1/relations", &g.dan.token).await;
    assert_eq!(dans.status(), StatusCode::NOT_FOUND);
    // A task the caller cannot see is a 404, exactly like one that does not exist.
    let hidden = g.relate(&g.cara, "REL-1", "relates_to", "EVE-1").await;
    let missing = g.relate(&g.cara, "REL-1", "relates_to", "EVE-99").await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_body(hidden).await["error"],
        json_body(missing).await["error"]
    );
    let eve_task = g.app.get_ok("/api/v1/tasks/EVE-1", &g.eve.token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        g.relate(&g.cara, "REL-1", "relates_to", &eve_task).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        g.relate(&g.eve, "EVE-1", "relates_to", "REL-1").await.status(),
        StatusCode::NOT_FOUND
    );
    // Editing the first task is needed; reading the second is enough.
    assert_eq!(
        g.relate(&g.dan, "REL-1", "relates_to", "REL-2").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(g.seen(&g.ann, "REL-1").await, pairs(&[("blocks", "OTH-1")]));
}

#[tokio::test]
async fn self_relations_duplicates_cycles_and_bad_input_are_refused_and_change_nothing() {
    let g = graph().await;
    assert_eq!(
        g.relate(&g.cara, "REL-1", "blocks", "REL-2").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        g.relate(&g.cara, "REL-2", "blocks", "REL-3").await.status(),
        StatusCode::CREATED
    );
    for (from, kind, to, why) in [
        ("REL-1", "relates_to", "rel-1", "itself"),
        ("REL-1", "blocks", "REL-2", "already"),
        ("REL-2", "blocked_by", "REL-1", "already"),
        ("REL-3", "blocks", "REL-1", "cycle"),
        ("REL-1", "blocked_by", "REL-3", "cycle"),
        ("REL-2", "blocks", "REL-1", "cycle"),
    ] {
        let response = g.relate(&g.cara, from, kind, to).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{from} {kind} {to}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "CONFLICT");
        assert!(error["error"].as_str().unwrap().contains(why), "{error}");
    }
    let response = g.relate(&g.cara, "REL-1", "parent_of", "REL-3").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(response).await), ["type"]);
    for body in [
        json!({"type": "blocks"}),
        json!({"taskId": "REL-3"}),
        json!({"type": "blocks", "taskId": "REL-3", "x": 1}),
    ] {
        let response = g
            .app
            .post_json("/api/v1/tasks/REL-1/relations", &body, Some(&g.cara.token))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(g.seen(&g.ann, "REL-1").await, pairs(&[("blocks", "REL-2")]));
    assert_eq!(g.seen(&g.ann, "REL-3").await, pairs(&[("blocked_by", "REL-2")]));
    // Another kind between the same tasks is another relation.
    assert_eq!(
        g.relate(&g.cara, "REL-3", "relates_to", "REL-1").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn of_concurrent_creates_that_would_close_a_cycle_exactly_one_is_refused() {
    let g = graph().await;
    // Each round: a 2-cycle (two requests) and a ring of three (three requests), all at once.
    for round in 0..5 {
        let (a, b) = ("REL-1", "REL-2");
        let (first, second) = tokio::join!(
            g.relate(&g.cara, a, "blocks", b),
            g.relate(&g.ann, b, "blocks", a)
        );
        let mut statuses = vec![first.status(), second.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::CREATED, StatusCode::CONFLICT],
            "round {round}"
        );
        let pair = g
            .app
            .walk("/api/v1/tasks/REL-1/relations", 100, &g.ann.token)
            .await;
        assert_eq!(pair.len(), 1, "round {round}");
        let pair_id = pair[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            g.app
                .delete_as(&format!("/api/v1/tasks/REL-1/relations/{pair_id}"), &g.ann.token)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );

        let ring = [("REL-1", "REL-2"), ("REL-2", "REL-3"), ("REL-3", "REL-1")];
        let responses = futures::future::join_all(
            ring.iter()
                .map(|(from, to)| g.relate(&g.cara, from, "blocks", to)),
        )
        .await;
        let mut statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::CREATED, StatusCode::CREATED, StatusCode::CONFLICT],
            "round {round}"
        );
        for (response, (from, _)) in responses.into_iter().zip(ring) {
            if response.status() == StatusCode::CREATED {
                let id = json_body(response).await["id"].as_str().unwrap().to_owned();
                let path = format!("/api/v1/tasks/{from}/relations/{id}");
                assert_eq!(
                    g.app.delete_as(&path, &g.ann.token).await.status(),
                    StatusCode::NO_CONTENT
                );
            }
        }
    }
}

/// A task in the trash is in no relation list, and a relation to it cannot be made; restoring
/// it shows its relations again (docs/api/tracking.md, "Archive and trash").
#[tokio::test]
async fn a_trashed_task_leaves_every_relation_list_until_it_is_restored() {
    let g = graph().await;
    assert_eq!(
        g.relate(&g.ann, "REL-1", "blocks", "REL-2").await.status(),
        StatusCode::CREATED
    );
    let trashed = g.app.delete_as("/api/v1/tasks/REL-2", &g.ann.token).await;
    assert_eq!(trashed.status(), StatusCode::NO_CONTENT);
    assert_eq!(g.seen(&g.ann, "REL-1").await, pairs(&[]));
    let to_trashed = g.relate(&g.ann, "REL-3", "relates_to", "REL-2").await;
    assert_eq!(to_trashed.status(), StatusCode::NOT_FOUND);

    let restored = g
        .app
        .post_json("/api/v1/tasks/REL-2/restore", &json!({}), Some(&g.ann.token))
        .await;
    assert_eq!(restored.status(), StatusCode::OK);
    assert_eq!(g.seen(&g.ann, "REL-1").await, pairs(&[("blocks", "REL-2")]));
}

impl Graph {
    /// `blockedByCount` of a task as Ann reads it by id (through the cache: the first read
    /// keeps the task there), with its `ETag`.
    async fn blocked_by_count(&self, task: &str) -> (i64, String) {
        let id = self.id_of(task).await;
        let response = self
            .app
            .get_as(&format!("/api/v1/tasks/{id}"), &self.ann.token)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let count = json_body(response).await["blockedByCount"].as_i64().unwrap();
        (count, etag)
    }

    /// The identifiers of a project's task list with `?blocked=…`, as Ann reads it.
    async fn listed(&self, project: &str, blocked: bool) -> Vec<String> {
        self.app
            .get_ok(
                &format!("/api/v1/projects/{project}/tasks?blocked={blocked}&sort=createdAt"),
                &self.ann.token,
            )
            .await["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["identifier"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn set_status(&self, task: &str, status: &str) {
        let response = self
            .app
            .patch_json(
                &format!("/api/v1/tasks/{task}"),
                &json!({ "status": status }),
                &self.ann.token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_task_counts_its_open_blockers_from_any_project_and_every_read_follows_them() {
    let g = graph().await;
    let rel = g.app.get_ok("/api/v1/tasks/REL-1", &g.ann.token).await["projectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ones = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // Read (and cache) the view and both list variants before anything blocks.
    let (count, unblocked_tag) = g.blocked_by_count("REL-1").await;
    assert_eq!(count, 0);
    assert_eq!(g.listed(&rel, true).await, Vec::<String>::new());
    assert_eq!(g.listed(&rel, false).await, ones(&["REL-1", "REL-2", "REL-3"]));

    // REL-1 is blocked by OTH-1 (another project) and by REL-2.
    for (from, to) in [("OTH-1", "REL-1"), ("REL-2", "REL-1")] {
        assert_eq!(
            g.relate(&g.ann, from, "blocks", to).await.status(),
            StatusCode::CREATED
        );
    }
    let (count, blocked_tag) = g.blocked_by_count("REL-1").await;
    assert_eq!(count, 2);
    assert_ne!(blocked_tag, unblocked_tag, "the ETag follows the count");
    assert_eq!(g.listed(&rel, true).await, ones(&["REL-1"]));
    assert_eq!(g.listed(&rel, false).await, ones(&["REL-2", "REL-3"]));
    // Across the caller's projects, with the same filter.
    let everywhere: Vec<String> = g
        .app
        .walk("/api/v1/tasks?blocked=true", 50, &g.ann.token)
        .await
        .iter()
        .map(|t| t["identifier"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(everywhere, ones(&["REL-1"]));
    // A client holding the older copy gets the new one, not a 304.
    let response = g
        .app
        .client
        .get(g.app.url("/api/v1/tasks/REL-1"))
        .bearer_auth(&g.ann.token)
        .header("If-None-Match", &unblocked_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The blocker in the other project is finished: one left, in the view and the
    // (cached) pages of REL-1's project alike.
    assert_eq!(g.listed(&rel, false).await, ones(&["REL-2", "REL-3"]));
    g.set_status("OTH-1", "done").await;
    assert_eq!(g.blocked_by_count("REL-1").await.0, 1);
    let first = g
        .app
        .get_ok(
            &format!("/api/v1/projects/{rel}/tasks?blocked=true&sort=createdAt"),
            &g.ann.token,
        )
        .await;
    assert_eq!(first["data"][0]["blockedByCount"], 1);
    // The other goes to the trash: none left, and the cached pages know it.
    assert_eq!(
        g.app
            .delete_as("/api/v1/tasks/REL-2", &g.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(g.blocked_by_count("REL-1").await.0, 0);
    assert_eq!(g.listed(&rel, true).await, Vec::<String>::new());
    // Back from the trash, it blocks again.
    let restored = g
        .app
        .post_json("/api/v1/tasks/REL-2/restore", &json!({}), Some(&g.ann.token))
        .await;
    assert_eq!(restored.status(), StatusCode::OK);
    assert_eq!(g.blocked_by_count("REL-1").await.0, 1);
    assert_eq!(g.listed(&rel, true).await, ones(&["REL-1"]));
    // Reopened elsewhere: two again. Then OTH-1 is purged for good while open: one.
    g.set_status("OTH-1", "in_progress").await;
    assert_eq!(g.blocked_by_count("REL-1").await.0, 2);
    assert_eq!(
        g.app
            .delete_as("/api/v1/tasks/OTH-1?permanent=true", &g.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(g.blocked_by_count("REL-1").await.0, 1);
    // The last relation removed, from the blocked task's side.
    let relation = g.app.get_ok("/api/v1/tasks/REL-1/relations", &g.ann.token).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        g.app
            .delete_as(&format!("/api/v1/tasks/REL-1/relations/{relation}"), &g.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (count, tag) = g.blocked_by_count("REL-1").await;
    assert_eq!((count, tag), (0, unblocked_tag));
    assert_eq!(g.listed(&rel, true).await, Vec::<String>::new());

    let response = g
        .app
        .get_as(&format!("/api/v1/projects/{rel}/tasks?blocked=yes"), &g.ann.token)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(response).await), ["blocked"]);
}
