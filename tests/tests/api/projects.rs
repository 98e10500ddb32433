//! `/api/v1/projects` and `/api/v1/projects/{id}` (docs/api/tracking.md).

use keel_tests::{TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MATCH, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn keys(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn post_project(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post_json("/api/v1/projects", &body, Some(token)).await
}

async fn patch_project(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(&format!("/api/v1/projects/{id}")))
        .bearer_auth(token)
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header(IF_MATCH, tag);
    }
    request.send().await.unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()[ETAG].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn creating_a_project_answers_201_with_location_etag_and_the_owner_role() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let response = post_project(
        &app,
        &ann.token,
        json!({"key": "KEEL", "name": "  Keel backend ", "description": "The API"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let tag = etag(&response);
    assert!(tag.starts_with("\"1-") && tag.ends_with('"'), "{tag}");
    let project = json_body(response).await;
    let id = project["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/projects/{id}"));
    assert_eq!(project["key"], "KEEL");
    assert_eq!(project["name"], "Keel backend", "the name is trimmed");
    assert_eq!(project["description"], "The API");
    assert_eq!(project["status"], "active");
    assert_eq!(project["ownerId"], ann.id.as_str());
    assert_eq!(project["myRole"], "owner");
    assert_eq!(project["createdAt"], project["updatedAt"]);

    let read = app.get_as(&location, &ann.token).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        etag(&read),
        tag,
        "the tag of the created resource is the tag it is read with"
    );
    assert_eq!(json_body(read).await, project);

    // Names of any script, with digits, '-', '_' and '.'.
    let unicode = post_project(&app, &ann.token, json!({"key": "UNI2", "name": "Проект_Ünï-2.0"})).await;
    assert_eq!(unicode.status(), StatusCode::CREATED);
    assert_eq!(json_body(unicode).await["description"], Value::Null);
}

#[tokio::test]
async fn invalid_projects_are_refused_field_by_field_and_nothing_is_created() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let response = post_project(
        &app,
        &ann.token,
        json!({"key": "keel", "name": "x", "description": "d".repeat(1001)}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(response).await;
    assert_eq!(error["code"], "VALIDATION_ERROR");
    assert_eq!(error_fields(&error), ["key", "name", "description"]);

    for (body, field) in [
        (json!({"key": "K", "name": "Fine name"}), "key"),
        (json!({"key": "ABCDEFGHIJK", "name": "Fine name"}), "key"),
        (json!({"key": "1ABC", "name": "Fine name"}), "key"),
        (json!({"key": "AB-C", "name": "Fine name"}), "key"),
        (json!({"key": "KEEL", "name": "  ab  "}), "name"),
        (json!({"key": "KEEL", "name": "Bad/name!"}), "name"),
        (json!({"key": "KEEL", "name": "n".repeat(101)}), "name"),
        (
            json!({"key": "KEEL", "name": "Fine name", "description": "é".repeat(1001)}),
            "description",
        ),
        (json!({"key": "KEEL"}), "name"),
        (
            json!({"key": "KEEL", "name": "Fine name", "ownerId": ann.id}),
            "ownerId",
        ),
    ] {
        let response = post_project(&app, &ann.token, body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR", "{body}");
        assert!(
            error_fields(&error).iter().any(|f| f == field),
            "{body} should name {field}: {error}"
        );
    }
    // A description of exactly 1000 characters (of any width) is fine.
    let ok = post_project(
        &app,
        &ann.token,
        json!({"key": "KEEL", "name": "Fine name", "description": "é".repeat(1000)}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::CREATED);

    let list = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(keys(&list), ["KEEL"], "only the valid request created a project");
}

#[tokio::test]
async fn a_taken_key_is_a_409_for_anyone() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    app.create_project(&ann.token, "KEEL").await;
    for token in [&ann.token, &bob.token] {
        let response = post_project(&app, token, json!({"key": "KEEL", "name": "Another one"})).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let error = json_body(response).await;
        assert_eq!(error["code"], "CONFLICT");
    }
    let bobs = app.get_ok("/api/v1/projects", &bob.token).await;
    assert_eq!(bobs["pagination"]["total"], 0);
    let anns = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(names(&anns), ["Project KEEL"]);
}

#[tokio::test]
async fn the_list_holds_only_the_callers_projects_page_by_page() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    for key in ["P1", "P2", "P3", "P4", "P5"] {
        app.create_project(&ann.token, key).await;
    }
    let bobs = app.create_project(&bob.token, "BOB").await;

    let mut seen = Vec::new();
    for page in 1..=3 {
        let list = app
            .get_ok(&format!("/api/v1/projects?limit=2&page={page}"), &ann.token)
            .await;
        assert_eq!(
            list["pagination"],
            json!({"page": page, "limit": 2, "total": 5, "totalPages": 3})
        );
        assert_eq!(
            list["data"].as_array().unwrap().len(),
            if page == 3 { 1 } else { 2 }
        );
        seen.extend(keys(&list));
    }
    assert_eq!(seen, ["P5", "P4", "P3", "P2", "P1"], "newest first by default");
    let beyond = app.get_ok("/api/v1/projects?limit=2&page=4", &ann.token).await;
    assert_eq!(beyond["data"], json!([]));

    // Membership makes a project appear, with the caller's role.
    app.add_member(&bob.token, bobs["id"].as_str().unwrap(), &ann.email, "viewer")
        .await;
    let list = app.get_ok("/api/v1/projects?limit=100", &ann.token).await;
    assert_eq!(list["pagination"]["total"], 6);
    let shared = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "BOB")
        .unwrap();
    assert_eq!(shared["myRole"], "viewer");
    assert_eq!(shared["ownerId"], bob.id.as_str());
    let bobs_list = app.get_ok("/api/v1/projects", &bob.token).await;
    assert_eq!(keys(&bobs_list), ["BOB"]);

    for bad in ["page=0", "limit=0", "limit=101", "page=x"] {
        let response = app.get_as(&format!("/api/v1/projects?{bad}"), &ann.token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        app.get("/api/v1/projects").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_list_filters_by_status_and_by_name_or_key() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    for (key, name) in [("AWEB", "Alpha web"), ("BAPI", "Beta api"), ("GWEB", "Gamma Web")] {
        app.created("/api/v1/projects", &json!({"key": key, "name": name}), &ann.token)
            .await;
    }
    let all = app.get_ok("/api/v1/projects", &ann.token).await;
    let gamma = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "GWEB")
        .unwrap();
    let archived = patch_project(
        &app,
        &ann.token,
        gamma["id"].as_str().unwrap(),
        None,
        json!({"status": "archived"}),
    )
    .await;
    assert_eq!(archived.status(), StatusCode::OK);

    for (query, expected) in [
        ("status=archived", vec!["GWEB"]),
        ("status=active", vec!["BAPI", "AWEB"]),
        ("status=completed", vec![]),
        ("q=WEB", vec!["GWEB", "AWEB"]),
        ("q=bapi", vec!["BAPI"]),
        ("q=%20beta%20", vec!["BAPI"]),
        ("q=%25", vec![]),
        ("q=web&status=active", vec!["AWEB"]),
    ] {
        let list = app.get_ok(&format!("/api/v1/projects?{query}"), &ann.token).await;
        assert_eq!(keys(&list), expected, "{query}");
        assert_eq!(list["pagination"]["total"], expected.len(), "{query}");
    }
    let long_q = format!("q={}", "x".repeat(101));
    for (query, field) in [
        ("status=open", "status"),
        ("sort=key", "sort"),
        ("sort=%2Bname", "sort"),
        (long_q.as_str(), "q"),
    ] {
        let response = app.get_as(&format!("/api/v1/projects?{query}"), &ann.token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_fields(&json_body(response).await), [field], "{query}");
    }
}

#[tokio::test]
async fn the_list_sorts_by_every_key_both_ways() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let mut ids = std::collections::HashMap::new();
    // Created in the order Charlie, Alpha, Bravo.
    for (key, name) in [("CH", "Charlie"), ("AL", "Alpha"), ("BR", "Bravo")] {
        let p = app
            .created("/api/v1/projects", &json!({"key": key, "name": name}), &ann.token)
            .await;
        ids.insert(name, p["id"].as_str().unwrap().to_owned());
    }
    // Then Alpha and Charlie change, in that order.
    for name in ["Alpha", "Charlie"] {
        let response = patch_project(
            &app,
            &ann.token,
            &ids[name],
            None,
            json!({"description": format!("{name} changed")}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    for (sort, expected) in [
        ("name", ["Alpha", "Bravo", "Charlie"]),
        ("-name", ["Charlie", "Bravo", "Alpha"]),
        ("createdAt", ["Charlie", "Alpha", "Bravo"]),
        ("-createdAt", ["Bravo", "Alpha", "Charlie"]),
        ("updatedAt", ["Bravo", "Alpha", "Charlie"]),
        ("-updatedAt", ["Charlie", "Alpha", "Bravo"]),
    ] {
        let list = app
            .get_ok(&format!("/api/v1/projects?sort={sort}"), &ann.token)
            .await;
        assert_eq!(names(&list), expected, "sort={sort}");
    }
    let default = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(
        names(&default),
        ["Bravo", "Alpha", "Charlie"],
        "default -createdAt"
    );
    // Sorting and paging together: the second page continues the order.
    let page2 = app
        .get_ok("/api/v1/projects?sort=-name&limit=2&page=2", &ann.token)
        .await;
    assert_eq!(names(&page2), ["Alpha"]);
}

#[tokio::test]
async fn instance_admins_see_and_manage_every_project_as_owners() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let anns = app.create_project(&ann.token, "ANN").await;
    app.create_project(&bob.token, "BOB").await;
    let root = app.admin_token("root@example.com").await;

    let list = app.get_ok("/api/v1/projects", &root).await;
    assert_eq!(list["pagination"]["total"], 2);
    assert_eq!(keys(&list), ["BOB", "ANN"]);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["myRole"] == "owner")
    );
    let ann_only = app.get_ok("/api/v1/projects", &ann.token).await;
    assert_eq!(keys(&ann_only), ["ANN"]);

    let id = anns["id"].as_str().unwrap();
    let read = app.get_ok(&format!("/api/v1/projects/{id}"), &root).await;
    assert_eq!(read["myRole"], "owner");
    assert_eq!(read["ownerId"], ann.id.as_str(), "the owner stays the owner");
    let renamed = patch_project(&app, &root, id, None, json!({"name": "Renamed by root"})).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(
        app.get_ok(&format!("/api/v1/projects/{id}"), &ann.token).await["name"],
        "Renamed by root"
    );
    // Root hands the project over, as its owner could.
    app.add_member(&root, id, &bob.email, "member").await;
    let handed = app
        .patch_json(
            &format!("/api/v1/projects/{id}/members/{}", bob.id),
            &json!({"role": "owner"}),
            &root,
        )
        .await;
    assert_eq!(handed.status(), StatusCode::OK);
    let now = app.get_ok(&format!("/api/v1/projects/{id}"), &bob.token).await;
    assert_eq!(
        (now["ownerId"].as_str(), now["myRole"].as_str()),
        (Some(bob.id.as_str()), Some("owner"))
    );
    assert_eq!(
        app.get_ok(&format!("/api/v1/projects/{id}"), &ann.token).await["myRole"],
        "admin"
    );
    assert_eq!(
        app.delete_as(&format!("/api/v1/projects/{id}"), &root)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_as(&format!("/api/v1/projects/{id}"), &ann.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn get_answers_an_etag_and_304_while_it_still_matches() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().unwrap());

    let first = app.get_as(&path, &ann.token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = etag(&first);
    let cached = app
        .client
        .get(app.url(&path))
        .bearer_auth(&ann.token)
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&cached), tag);
    assert!(cached.bytes().await.unwrap().is_empty(), "a 304 has no body");

    let other = app
        .client
        .get(app.url(&path))
        .bearer_auth(&ann.token)
        .header(IF_NONE_MATCH, "\"1-0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(json_body(other).await["key"], "KEEL");

    // After a change the old tag no longer matches.
    assert_eq!(
        patch_project(
            &app,
            &ann.token,
            project["id"].as_str().unwrap(),
            None,
            json!({"name": "New name"})
        )
        .await
        .status(),
        StatusCode::OK
    );
    let stale = app
        .client
        .get(app.url(&path))
        .bearer_auth(&ann.token)
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_ne!(etag(&stale), tag);
    assert_eq!(json_body(stale).await["name"], "New name");

    let missing = app
        .get_as(&format!("/api/v1/projects/{}", uuid::Uuid::now_v7()), &ann.token)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(missing).await["code"], "NOT_FOUND");
    let malformed = app.get_as("/api/v1/projects/not-a-uuid", &ann.token).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn patch_honours_if_match_and_a_stale_tag_changes_nothing() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let created = post_project(
        &app,
        &ann.token,
        json!({"key": "KEEL", "name": "Keel", "description": "d"}),
    )
    .await;
    let v1 = etag(&created);
    let id = json_body(created).await["id"].as_str().unwrap().to_owned();

    let updated = patch_project(
        &app,
        &ann.token,
        &id,
        Some(&v1),
        json!({"name": "Keel two", "status": "completed", "description": null}),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let v2 = etag(&updated);
    assert!(v2.starts_with("\"2-"), "{v2}");
    let body = json_body(updated).await;
    assert_eq!(body["name"], "Keel two");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["key"], "KEEL");
    assert_ne!(body["updatedAt"], body["createdAt"]);

    let stale = patch_project(&app, &ann.token, &id, Some(&v1), json!({"name": "Lost update"})).await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(json_body(stale).await["code"], "PRECONDITION_FAILED");
    let weak = patch_project(
        &app,
        &ann.token,
        &id,
        Some(&format!("W/{v2}")),
        json!({"name": "Weak"}),
    )
    .await;
    assert_eq!(weak.status(), StatusCode::PRECONDITION_FAILED);

    let now = app.get_as(&format!("/api/v1/projects/{id}"), &ann.token).await;
    assert_eq!(etag(&now), v2, "the refused writes changed nothing");
    assert_eq!(json_body(now).await, body);

    // `*` and no header are unconditional.
    let star = patch_project(&app, &ann.token, &id, Some("*"), json!({"name": "Keel three"})).await;
    assert_eq!(star.status(), StatusCode::OK);
    assert!(etag(&star).starts_with("\"3-"));

    for (change, field) in [
        (json!({"status": "open"}), "status"),
        (json!({"name": "no"}), "name"),
        (json!({"description": "x".repeat(1001)}), "description"),
        (json!({"key": "OTHER"}), "key"),
    ] {
        let response = patch_project(&app, &ann.token, &id, None, change.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{change}");
        assert!(
            error_fields(&json_body(response).await)
                .iter()
                .any(|f| f == field),
            "{change}"
        );
    }
    let after = app.get_ok(&format!("/api/v1/projects/{id}"), &ann.token).await;
    assert_eq!(
        (after["name"].as_str(), after["key"].as_str()),
        (Some("Keel three"), Some("KEEL"))
    );
}

#[tokio::test]
async fn only_the_owner_deletes_a_project_and_everything_in_it_goes() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &bob.email, "admin").await;
    let task = app.create_task(&ann.token, id, json!({"title": "Doomed"})).await;
    let path = format!("/api/v1/projects/{id}");

    let refused = app.delete_as(&path, &bob.token).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(refused).await["code"], "FORBIDDEN");
    assert_eq!(
        app.get_ok(&path, &bob.token).await["myRole"],
        "admin",
        "still there"
    );

    assert_eq!(
        app.delete_as(&path, &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    for token in [&ann.token, &bob.token] {
        assert_eq!(app.get_as(&path, token).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            app.get_as(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()), token)
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get_as("/api/v1/tasks/KEEL-1", token).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.delete_as(&path, &ann.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_ok("/api/v1/projects", &ann.token).await["pagination"]["total"],
        0
    );
    // The key is free again.
    app.create_project(&bob.token, "KEEL").await;
}

fn actions(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_activity_feed_lists_the_projects_changes_newest_first() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let dan = app.account("dan@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &bob.email, "member").await;
    let label = app.create_label(&ann.token, id, "bug", "#FF0000").await;
    let task = app.create_task(&bob.token, id, json!({"title": "Feed me"})).await;
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap());
    let updated = app
        .patch_json(&task_path, &json!({"status": "done"}), &bob.token)
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let comment = app
        .created(
            &format!("{task_path}/comments"),
            &json!({"body": "Done!"}),
            &bob.token,
        )
        .await;
    let renamed = patch_project(&app, &ann.token, id, None, json!({"name": "Keel renamed"})).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    app.add_member(&ann.token, id, &dan.email, "viewer").await;
    // Another project's activity and sign-ins stay out of this feed.
    let other = app.create_project(&bob.token, "OTHER").await;
    app.create_task(
        &bob.token,
        other["id"].as_str().unwrap(),
        json!({"title": "Elsewhere"}),
    )
    .await;
    app.login_ok(&ann.email).await;

    let feed = app
        .walk(&format!("/api/v1/projects/{id}/activity"), 100, &dan.token)
        .await;
    // Bob and Dan share no project with Ann: adding them invites them, and they accept
    // (`add_member`), so each joins after an `invitation.created`.
    assert_eq!(
        actions(&feed),
        [
            "member.added",
            "invitation.created",
            "project.updated",
            "comment.created",
            "task.updated",
            "task.created",
            "label.created",
            "member.added",
            "invitation.created",
            "project.created",
        ]
    );
    let at = |action: &str| feed.iter().find(|e| e["action"] == action).unwrap();
    assert_eq!(at("project.created")["actorId"], ann.id.as_str());
    assert_eq!(at("project.created")["resourceType"], "project");
    assert_eq!(at("project.created")["resourceId"], id);
    assert_eq!(at("task.created")["actorId"], bob.id.as_str());
    assert_eq!(at("task.created")["resourceType"], "task");
    assert_eq!(at("task.created")["resourceId"], task["id"]);
    assert_eq!(at("task.updated")["details"]["changed"], json!(["status"]));
    assert_eq!(
        at("task.updated")["changes"],
        json!([{"field": "status", "from": "todo", "to": "done"}])
    );
    assert_eq!(at("label.created")["resourceId"], label["id"]);
    assert_eq!(at("comment.created")["resourceId"], comment["id"]);
    assert_eq!(at("comment.created")["actorId"], bob.id.as_str());
    for entry in &feed {
        let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "action",
                "actorId",
                "changes",
                "details",
                "id",
                "occurredAt",
                "resourceId",
                "resourceType"
            ],
            "no ip or requestId: {entry}"
        );
    }
    let times: Vec<_> = feed
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["occurredAt"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // The cursor walks the same feed in any page size (as Dan reads it: an admin also
    // reads the invitations' addresses).
    for limit in [1, 3, 7] {
        let walked = app
            .walk(&format!("/api/v1/projects/{id}/activity"), limit, &dan.token)
            .await;
        assert_eq!(walked, feed, "limit {limit}");
    }
    let first = app
        .get_ok(&format!("/api/v1/projects/{id}/activity?limit=3"), &ann.token)
        .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    assert!(first["pagination"]["nextCursor"].is_string());
    let bad = app
        .get_as(&format!("/api/v1/projects/{id}/activity?cursor=%%%"), &ann.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = app
        .get_as(&format!("/api/v1/projects/{id}/activity?limit=101"), &ann.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_activity_feed_records_removals_and_role_changes_too() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project(&ann.token, "KEEL").await;
    let id = project["id"].as_str().unwrap();
    app.add_member(&ann.token, id, &bob.email, "member").await;
    let label = app.create_label(&ann.token, id, "bug", "#FF0000").await;
    let task = app
        .create_task(&ann.token, id, json!({"title": "Temporary"}))
        .await;
    let comment = app
        .created(
            &format!("/api/v1/tasks/{}/comments", task["id"].as_str().unwrap()),
            &json!({"body": "hm"}),
            &bob.token,
        )
        .await;
    let comment_path = format!("/api/v1/comments/{}", comment["id"].as_str().unwrap());
    assert_eq!(
        app.patch_json(&comment_path, &json!({"body": "hmm"}), &bob.token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_as(&comment_path, &bob.token).await.status(),
        StatusCode::NO_CONTENT
    );
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap());
    assert_eq!(
        app.delete_as(&task_path, &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    let label_path = format!("/api/v1/projects/{id}/labels/{}", label["id"].as_str().unwrap());
    assert_eq!(
        app.delete_as(&label_path, &ann.token).await.status(),
        StatusCode::NO_CONTENT
    );
    let member_path = format!("/api/v1/projects/{id}/members/{}", bob.id);
    assert_eq!(
        app.patch_json(&member_path, &json!({"role": "admin"}), &ann.token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_as(&member_path, &bob.token).await.status(),
        StatusCode::NO_CONTENT
    );
    // Refused requests leave no trace.
    let refused = app.delete_as(&member_path, &ann.token).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let stale = patch_project(&app, &ann.token, id, Some("\"9-0\""), json!({"name": "Nope"})).await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);

    let feed = app
        .walk(&format!("/api/v1/projects/{id}/activity"), 4, &ann.token)
        .await;
    assert_eq!(
        actions(&feed),
        [
            "member.removed",
            "member.updated",
            "label.deleted",
            "task.deleted",
            "comment.deleted",
            "comment.updated",
            "comment.created",
            "task.created",
            "label.created",
            "member.added",
            "invitation.created",
            "project.created",
        ]
    );
    // Bob left: he no longer reads the feed.
    let response = app
        .get_as(&format!("/api/v1/projects/{id}/activity"), &bob.token)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Names are letters of any script, and the search is case-insensitive: for all of them.
#[tokio::test]
async fn project_search_ignores_case_beyond_ascii() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    app.created(
        "/api/v1/projects",
        &json!({"key": "UEB", "name": "Übersicht"}),
        &ann.token,
    )
    .await;
    app.created(
        "/api/v1/projects",
        &json!({"key": "OTHER", "name": "Other"}),
        &ann.token,
    )
    .await;
    let ascii = app.get_ok("/api/v1/projects?q=BERSICHT", &ann.token).await;
    assert_eq!(keys(&ascii), ["UEB"]);
    let folded = app.get_ok("/api/v1/projects?q=%C3%BCbersicht", &ann.token).await;
    assert_eq!(keys(&folded), ["UEB"], "übersicht matches Übersicht");
}
