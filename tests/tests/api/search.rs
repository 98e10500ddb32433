//! Search (docs/api/search.md): `GET /api/v1/search`, and the task lists' `q` on the same
//! index.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Ann owns `KEEL` (Bob a member) and `OTH`; Eve owns `EVE` alone.
///
/// KEEL-1 "Database migration plan"; KEEL-2 "Résumé template"; KEEL-3 "Write docs" whose
/// description mentions the migration; KEEL-4 "Release" with a comment on the migration;
/// KEEL-5 "Upgrade to version 12"; KEEL-6…12 fillers. OTH-1 "Migration elsewhere". EVE-1
/// "Secret migration" with a comment "migration notes".
struct World {
    app: TestApp,
    ann: Account,
    bob: Account,
    eve: Account,
    keel: String,
    eve_project: String,
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn world_on(app: TestApp) -> World {
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let eve = app.account("eve@example.com").await;
    let keel = id(&app.create_project(&ann.token, "KEEL").await);
    let oth = id(&app.create_project(&ann.token, "OTH").await);
    let eve_project = id(&app.create_project(&eve.token, "EVE").await);
    app.add_member(&ann.token, &keel, &bob.email, "member").await;
    let task = |title: &str, description: Option<&str>| json!({"title": title, "description": description});
    app.create_task(
        &ann.token,
        &keel,
        task("Database migration plan", Some("Move to PostgreSQL")),
    )
    .await;
    app.create_task(&ann.token, &keel, task("Résumé template", None))
        .await;
    app.create_task(
        &ann.token,
        &keel,
        task("Write docs", Some("Explain the MIGRATION steps")),
    )
    .await;
    let release = app.create_task(&ann.token, &keel, task("Release", None)).await;
    app.created(
        &format!("/api/v1/tasks/{}/comments", id(&release)),
        &json!({"body": "The migration is done; ship it"}),
        &bob.token,
    )
    .await;
    app.create_task(&ann.token, &keel, task("Upgrade to version 12", None))
        .await;
    for _ in 6..=12 {
        app.create_task(&ann.token, &keel, task("Filler", None)).await;
    }
    app.create_task(&ann.token, &oth, task("Migration elsewhere", None))
        .await;
    let secret = app
        .create_task(&eve.token, &eve_project, task("Secret migration", None))
        .await;
    app.created(
        &format!("/api/v1/tasks/{}/comments", id(&secret)),
        &json!({"body": "migration notes"}),
        &eve.token,
    )
    .await;
    World {
        app,
        ann,
        bob,
        eve,
        keel,
        eve_project,
    }
}

async fn world() -> World {
    world_on(spawn_app().await).await
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl World {
    /// Every result of `query` (`q=…&…`) for `token`, walked page by page.
    async fn results(&self, query: &str, token: &str) -> Vec<Value> {
        self.app
            .walk(&format!("/api/v1/search?{query}"), 100, token)
            .await
    }

    /// `(type, identifier, score)` of every result of `q`.
    async fn found(&self, q: &str, token: &str) -> Vec<(String, String, i64)> {
        self.results(&format!("q={}", encode(q)), token)
            .await
            .iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["task"]["identifier"].as_str().unwrap().to_owned(),
                    r["score"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    async fn identifiers(&self, q: &str, token: &str) -> Vec<String> {
        self.found(q, token)
            .await
            .into_iter()
            .map(|(_, i, _)| i)
            .collect()
    }
}

fn hit(kind: &str, identifier: &str, score: i64) -> (String, String, i64) {
    (kind.to_owned(), identifier.to_owned(), score)
}

#[tokio::test]
async fn prefixes_match_in_any_case_and_rank_titles_over_descriptions_over_comments() {
    let w = world().await;
    let expected = vec![
        hit("task", "OTH-1", 3),
        hit("task", "KEEL-1", 3),
        hit("task", "KEEL-3", 2),
        hit("comment", "KEEL-4", 1),
    ];
    assert_eq!(w.found("migr", &w.ann.token).await, expected);
    assert_eq!(w.found("MIGRATION", &w.ann.token).await, expected);
    // Every word must match, each as a prefix of a word (not inside one).
    assert_eq!(w.identifiers("database migr", &w.ann.token).await, ["KEEL-1"]);
    assert_eq!(
        w.identifiers("igration", &w.ann.token).await,
        Vec::<String>::new()
    );

    let page = w.app.get_ok("/api/v1/search?q=migr", &w.ann.token).await;
    let results = page["data"].as_array().unwrap();
    assert_eq!(
        results[1]["highlight"],
        json!({"field": "title", "fragment": "Database <mark>migration</mark> plan"})
    );
    assert_eq!(
        results[2]["highlight"],
        json!({"field": "description", "fragment": "Explain the <mark>MIGRATION</mark> steps"})
    );
    assert_eq!(results[2]["comment"], Value::Null);
    let comment = &results[3];
    assert_eq!(comment["comment"]["body"], "The migration is done; ship it");
    assert_eq!(comment["comment"]["authorId"], w.bob.id.as_str());
    assert_eq!(
        comment["highlight"]["fragment"],
        "The <mark>migration</mark> is done; ship it"
    );
    assert_eq!(comment["task"]["title"], "Release");
    assert_eq!(page["pagination"], json!({"limit": 50, "nextCursor": null}));

    // Kinds, and one project.
    let only_comments = w.results("q=migr&types=comment", &w.ann.token).await;
    assert_eq!(only_comments.len(), 1);
    assert_eq!(only_comments[0]["type"], "comment");
    let in_keel = w
        .results(&format!("q=migr&types=task&projectId={}", w.keel), &w.ann.token)
        .await;
    assert_eq!(in_keel.len(), 2);
}

#[tokio::test]
async fn accents_are_folded_both_ways() {
    let w = world().await;
    for q in ["resume", "RÉSUMÉ", "résu", "Resu"] {
        assert_eq!(w.identifiers(q, &w.ann.token).await, ["KEEL-2"], "{q}");
    }
    let page = w.app.get_ok("/api/v1/search?q=resume", &w.ann.token).await;
    assert_eq!(
        page["data"][0]["highlight"]["fragment"],
        "<mark>Résumé</mark> template"
    );
}

#[tokio::test]
async fn an_identifier_or_a_bare_number_ranks_its_task_first() {
    let w = world().await;
    for q in ["KEEL-12", "keel-12"] {
        let found = w.found(q, &w.ann.token).await;
        assert_eq!(found.first(), Some(&hit("task", "KEEL-12", 100)), "{q}");
    }
    let page = w.app.get_ok("/api/v1/search?q=KEEL-12", &w.ann.token).await;
    assert_eq!(
        page["data"][0]["highlight"],
        json!({"field": "identifier", "fragment": "<mark>KEEL-12</mark>"})
    );
    // A bare number: the tasks with that number first, then the word.
    assert_eq!(
        w.found("12", &w.ann.token).await,
        vec![hit("task", "KEEL-12", 100), hit("task", "KEEL-5", 3)]
    );
    // Eve's EVE-1 is no task of Ann's.
    assert_eq!(w.identifiers("EVE-1", &w.ann.token).await, Vec::<String>::new());
    // `1` is KEEL-1 and OTH-1 by number, then "12" by its prefix; never EVE-1.
    assert_eq!(
        w.identifiers("1", &w.ann.token).await,
        ["OTH-1", "KEEL-1", "KEEL-5"]
    );
}

#[tokio::test]
async fn another_users_projects_never_leak_and_admins_see_everything() {
    let w = world().await;
    assert_eq!(
        w.found("migr", &w.eve.token).await,
        vec![hit("task", "EVE-1", 3), hit("comment", "EVE-1", 1)]
    );
    assert!(
        !w.identifiers("secret", &w.ann.token)
            .await
            .contains(&"EVE-1".to_owned())
    );
    let theirs = w
        .app
        .get_as(
            &format!("/api/v1/search?q=migr&projectId={}", w.eve_project),
            &w.ann.token,
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(theirs).await["code"], "NOT_FOUND");

    let admin = w.app.admin_token("root@example.com").await;
    let all = w.identifiers("migr", &admin).await;
    for identifier in ["KEEL-1", "OTH-1", "EVE-1"] {
        assert!(all.contains(&identifier.to_owned()), "{identifier} in {all:?}");
    }
}

#[tokio::test]
async fn a_personal_access_tokens_project_limit_applies() {
    let w = world().await;
    let created = w
        .app
        .created(
            "/api/v1/auth/tokens",
            &json!({"name": "ci", "scopes": ["read"], "projectIds": [w.keel]}),
            &w.ann.token,
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let found = w.identifiers("migr", token).await;
    assert_eq!(found, ["KEEL-1", "KEEL-3", "KEEL-4"]);
    let lists = w.app.get_ok("/api/v1/tasks?q=migr", token).await;
    assert_eq!(lists["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_trashed_task_and_its_comments_disappear_and_come_back_on_restore() {
    let w = world().await;
    let gone = w.app.delete_as("/api/v1/tasks/KEEL-4", &w.ann.token).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    w.app.delete_as("/api/v1/tasks/KEEL-1", &w.ann.token).await;
    assert_eq!(w.identifiers("migr", &w.ann.token).await, ["OTH-1", "KEEL-3"]);
    assert_eq!(w.identifiers("KEEL-1", &w.ann.token).await, Vec::<String>::new());
    let list = w
        .app
        .get_ok(&format!("/api/v1/projects/{}/tasks?q=migr", w.keel), &w.ann.token)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    for identifier in ["KEEL-1", "KEEL-4"] {
        let restored = w
            .app
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{identifier}/restore"),
                None,
                Some(&w.ann.token),
            )
            .await;
        assert_eq!(restored.status(), StatusCode::OK);
    }
    assert_eq!(
        w.identifiers("migr", &w.ann.token).await,
        ["OTH-1", "KEEL-1", "KEEL-3", "KEEL-4"]
    );
    // Archived tasks are found (and say so).
    w.app
        .send(
            reqwest::Method::POST,
            "/api/v1/tasks/KEEL-2/archive",
            None,
            Some(&w.ann.token),
        )
        .await;
    let archived = w.results("q=resume", &w.ann.token).await;
    assert!(archived[0]["task"]["archivedAt"].is_string());
}

#[tokio::test]
async fn the_index_follows_every_edit_and_delete() {
    let w = world().await;
    let renamed = w
        .app
        .patch_json(
            "/api/v1/tasks/KEEL-2",
            &json!({"title": "Curriculum vitae", "description": "a résumé"}),
            &w.ann.token,
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(
        w.found("resume", &w.ann.token).await,
        vec![hit("task", "KEEL-2", 2)]
    );
    assert_eq!(w.identifiers("curric", &w.ann.token).await, ["KEEL-2"]);

    let comment = w.results("q=ship&types=comment", &w.ann.token).await;
    let comment_id = comment[0]["comment"]["id"].as_str().unwrap().to_owned();
    let edited = w
        .app
        .patch_json(
            &format!("/api/v1/comments/{comment_id}"),
            &json!({"body": "Deployed"}),
            &w.bob.token,
        )
        .await;
    assert_eq!(edited.status(), StatusCode::OK);
    assert!(w.results("q=ship&types=comment", &w.ann.token).await.is_empty());
    assert_eq!(w.results("q=deploy&types=comment", &w.ann.token).await.len(), 1);
    w.app
        .delete_as(&format!("/api/v1/comments/{comment_id}"), &w.bob.token)
        .await;
    assert!(w.results("q=deploy", &w.ann.token).await.is_empty());

    w.app
        .delete_as("/api/v1/tasks/KEEL-2?permanent=true", &w.ann.token)
        .await;
    assert!(w.results("q=curric", &w.ann.token).await.is_empty());
    // Deleting a project takes its tasks out of the index too.
    let deleted = w
        .app
        .delete_as(&format!("/api/v1/projects/{}", w.eve_project), &w.eve.token)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(w.results("q=secret", &w.eve.token).await.is_empty());
}

#[tokio::test]
async fn pages_walk_the_ranked_order_with_cursors() {
    let w = world().await;
    let all = w
        .app
        .get_ok("/api/v1/search?q=migr&limit=100", &w.ann.token)
        .await;
    let one_by_one = w.app.walk("/api/v1/search?q=migr", 1, &w.ann.token).await;
    assert_eq!(&one_by_one, all["data"].as_array().unwrap());
    let fillers = w.app.walk("/api/v1/search?q=fill", 3, &w.ann.token).await;
    assert_eq!(fillers.len(), 7);
    // Newest first within a score.
    let numbers: Vec<i64> = fillers
        .iter()
        .map(|f| f["task"]["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [12, 11, 10, 9, 8, 7, 6]);
    let foreign = w.app.get_ok("/api/v1/tasks?limit=1", &w.ann.token).await;
    let cursor = foreign["pagination"]["nextCursor"].as_str().unwrap();
    let refused = w
        .app
        .get_as(&format!("/api/v1/search?q=migr&cursor={cursor}"), &w.ann.token)
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(refused).await), ["cursor"]);
}

#[tokio::test]
async fn bad_parameters_are_400s_on_their_field() {
    let w = world().await;
    let long = format!("q={}", "x".repeat(201));
    for (query, field) in [
        ("", "q"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        (long.as_str(), "q"),
        ("q=a%00b", "q"),
        ("q=x&types=tasks", "types"),
        ("q=x&projectId=nope", "projectId"),
        ("q=x&limit=0", "limit"),
    ] {
        let response = w
            .app
            .get_as(&format!("/api/v1/search?{query}"), &w.ann.token)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = json_body(response).await;
        assert_eq!(body["code"], "VALIDATION_ERROR", "{query}");
        assert_eq!(error_fields(&body), [field], "{query}");
    }
    let anonymous = w.app.get("/api/v1/search?q=x").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// Query syntax of either database in `q` is only words and separators: never a 500.
#[tokio::test]
async fn hostile_queries_are_answered_never_a_500() {
    let w = world().await;
    let hostile = [
        "\"",
        "*",
        ":",
        "(",
        ")",
        "-",
        "NEAR",
        "'",
        "\\",
        "migr*",
        "\"migr",
        "title:migr",
        "a:b",
        "(migr",
        "migr)",
        "-migr",
        "NEAR(migr plan)",
        "migr OR plan",
        "migr AND NOT plan",
        "'; DROP TABLE tasks; --",
        "!migr",
        "migr & plan | x",
        "<->",
        "a <-> b",
        "{title}: x",
        "^migr",
        "migr +plan",
        "⑴",
        "½",
        "ß",
        "%",
        "_",
        "\\\\'",
        "''",
        "x'y\\z",
        "NOT",
        "AND",
        "OR",
        "\"\"",
        "*:*",
        "&",
        "|",
        "!",
        "ﷺ",
        "\u{301}",
    ];
    for q in hostile {
        for path in [
            format!("/api/v1/search?q={}", encode(q)),
            format!("/api/v1/tasks?q={}", encode(q)),
            format!("/api/v1/projects/{}/tasks?q={}", w.keel, encode(q)),
        ] {
            let response = w.app.get_as(&path, &w.ann.token).await;
            let status = response.status();
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{path}: {status}"
            );
        }
    }
    // The words in them still match.
    assert_eq!(w.identifiers("(migr* \"plan:\")", &w.ann.token).await, ["KEEL-1"]);
}

#[tokio::test]
async fn the_task_lists_q_uses_the_index() {
    let w = world().await;
    let ids = |page: Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["identifier"].as_str().unwrap().to_owned())
            .collect()
    };
    let keel = format!("/api/v1/projects/{}/tasks", w.keel);
    // Title and description, prefixes, accents.
    assert_eq!(
        ids(w.app.get_ok(&format!("{keel}?q=migr"), &w.ann.token).await),
        ["KEEL-3", "KEEL-1"]
    );
    assert_eq!(
        ids(w.app.get_ok(&format!("{keel}?q=resume"), &w.ann.token).await),
        ["KEEL-2"]
    );
    // The identifier, and the number.
    assert_eq!(
        ids(w.app.get_ok(&format!("{keel}?q=keel-12"), &w.ann.token).await),
        ["KEEL-12"]
    );
    assert_eq!(
        ids(w.app.get_ok(&format!("{keel}?q=12"), &w.ann.token).await),
        ["KEEL-12", "KEEL-5"]
    );
    // Across projects, of the caller's only.
    assert_eq!(
        ids(w.app.get_ok("/api/v1/tasks?q=migr", &w.ann.token).await),
        ["OTH-1", "KEEL-3", "KEEL-1"]
    );
    assert_eq!(
        ids(w.app.get_ok("/api/v1/tasks?q=migr", &w.eve.token).await),
        ["EVE-1"]
    );
}

/// A search costs the principal, then per tier of results it reaches (title, description,
/// comments) one statement — on PostgreSQL a search over the caller's projects first reads
/// which they are, and a word tier that finds too few among the newest tasks also asks once
/// per search how many tasks the caller sees; a task list with `q` the principal and its
/// page, as without.
#[tokio::test]
async fn searches_stay_within_their_statement_budget() {
    let w = world_on(
        spawn_app_with(|vars| {
            vars.insert("KEEL_CACHE_LAYERS".into(), "none".into());
        })
        .await,
    )
    .await;
    for (path, budget) in [
        ("/api/v1/search?q=migr".to_owned(), 6),
        ("/api/v1/search?q=migr&types=task".to_owned(), 5),
        ("/api/v1/search?q=migr&types=comment".to_owned(), 3),
        (
            format!("/api/v1/search?q=migr&types=task&projectId={}", w.keel),
            5,
        ),
        (format!("/api/v1/projects/{}/tasks?q=migr", w.keel), 2),
        ("/api/v1/tasks?q=migr%20plan".to_owned(), 2),
    ] {
        let statements = w.app.fewest_statements(&path, &w.ann.token).await;
        assert!(
            (1..=budget).contains(&statements),
            "{path}: {statements} statements"
        );
    }
}
