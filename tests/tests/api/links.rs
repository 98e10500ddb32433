//! Links on tasks (docs/api/tracking.md): `/api/v1/tasks/{id}/links`.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

/// Ann owns `LINK` with Cara (member) and Dan (viewer); one task. Eve is a stranger.
struct Board {
    app: TestApp,
    project: String,
    task: String,
    ann: Account,
    cara: Account,
    dan: Account,
    eve: Account,
}

async fn board() -> Board {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let cara = app.account("cara@example.com").await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let project = app.create_project_id(&ann.token, "LINK").await;
    app.add_member(&ann.token, &project, &cara.email, "member").await;
    app.add_member(&ann.token, &project, &dan.email, "viewer").await;
    let task = app
        .create_task(&ann.token, &project, json!({"title": "Linked"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Board {
        app,
        project,
        task,
        ann,
        cara,
        dan,
        eve,
    }
}

impl Board {
    fn path(&self) -> String {
        format!("/api/v1/tasks/{}/links", self.task)
    }

    async fn post(&self, who: &Account, body: &Value) -> reqwest::Response {
        self.app.post_json(&self.path(), body, Some(&who.token)).await
    }

    async fn links(&self) -> Vec<Value> {
        self.app.walk(&self.path(), 100, &self.dan.token).await
    }

    async fn actions(&self) -> Vec<String> {
        self.app
            .walk(
                &format!("/api/v1/projects/{}/activity", self.project),
                100,
                &self.ann.token,
            )
            .await
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .filter(|a| a.starts_with("link."))
            .collect()
    }
}

#[tokio::test]
async fn members_add_links_with_201_and_a_location_and_viewers_list_them() {
    let b = board().await;
    let response = b
        .post(
            &b.cara,
            &json!({"url": "HTTPS://Example.COM/spec#top", "title": " The spec "}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let link = json_body(response).await;
    assert_eq!(link["url"], "https://example.com/spec#top", "stored normalised");
    assert_eq!(link["title"], "The spec");
    assert_eq!(link["taskId"], b.task.as_str());
    assert_eq!(link["createdBy"], b.cara.id.as_str());
    assert_eq!(
        location,
        format!("/api/v1/tasks/{}/links/{}", b.task, link["id"].as_str().unwrap())
    );
    let second = b
        .app
        .created(
            "/api/v1/tasks/LINK-1/links",
            &json!({"url": "http://example.org/"}),
            &b.ann.token,
        )
        .await;
    assert_eq!(second["title"], Value::Null);
    let listed = b.links().await;
    assert_eq!(
        listed,
        vec![link.clone(), second],
        "oldest first, by id or identifier alike"
    );
    let page = b.app.get_ok(&format!("{}?limit=1", b.path()), &b.dan.token).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["pagination"]["nextCursor"].is_string());
    assert_eq!(b.actions().await, vec!["link.created", "link.created"]);

    // A viewer reads but does not write; a stranger learns nothing.
    let refused = b.post(&b.dan, &json!({"url": "https://example.com/x"})).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    for response in [
        b.post(&b.eve, &json!({"url": "https://example.com/x"})).await,
        b.app.get_as(&b.path(), &b.eve.token).await,
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_body(response).await["code"], "NOT_FOUND");
    }
    assert_eq!(b.links().await.len(), 2);
}

#[tokio::test]
async fn posting_a_url_the_task_has_sets_its_title_with_200() {
    let b = board().await;
    let first = b
        .app
        .created(
            &b.path(),
            &json!({"url": "https://example.com/a", "title": "Old"}),
            &b.ann.token,
        )
        .await;
    let again = b
        .post(&b.cara, &json!({"url": "https://EXAMPLE.com/a", "title": "New"}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().get(LOCATION).is_none());
    let again = json_body(again).await;
    assert_eq!(again["id"], first["id"], "the same link");
    assert_eq!(again["title"], "New");
    assert_eq!(again["createdBy"], first["createdBy"]);
    // The same body again changes nothing and records nothing.
    let same = b
        .post(&b.cara, &json!({"url": "https://example.com/a", "title": "New"}))
        .await;
    assert_eq!(same.status(), StatusCode::OK);
    // Without a title, the link has none.
    let cleared = json_body(b.post(&b.cara, &json!({"url": "https://example.com/a"})).await).await;
    assert_eq!(cleared["title"], Value::Null);
    let listed = b.links().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["title"], Value::Null);
    assert_eq!(
        b.actions().await,
        vec!["link.updated", "link.updated", "link.created"],
        "newest first"
    );
}

#[tokio::test]
async fn bad_urls_and_titles_are_400_by_field_and_change_nothing() {
    let b = board().await;
    let long = format!("https://example.com/{}", "a".repeat(2030));
    for (body, fields) in [
        (json!({"url": "ftp://example.com/file"}), vec!["url"]),
        (json!({"url": "javascript:alert(1)"}), vec!["url"]),
        (json!({"url": "mailto:ann@example.com"}), vec!["url"]),
        (json!({"url": "/relative/path"}), vec!["url"]),
        (json!({"url": "https://ann:secret@example.com/"}), vec!["url"]),
        (json!({"url": "https://exa\nmple.com/"}), vec!["url"]),
        (json!({"url": long}), vec!["url"]),
        (
            json!({"url": "https://example.com/", "title": " "}),
            vec!["title"],
        ),
        (
            json!({"url": "https://example.com/", "title": "x".repeat(201)}),
            vec!["title"],
        ),
        (
            json!({"url": "https://example.com/", "title": "evil\u{202E}txt"}),
            vec!["title"],
        ),
    ] {
        let response = b.post(&b.cara, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(error_fields(&error), fields, "{body}");
    }
    // Exactly 2048 characters is accepted.
    let longest = format!("https://example.com/{}", "a".repeat(2048 - 20));
    assert_eq!(longest.len(), 2048);
    let response = b.post(&b.cara, &json!({"url": longest})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for body in [
        json!({}),
        json!({"url": 5}),
        json!({"url": "https://example.com/", "extra": 1}),
    ] {
        let response = b.post(&b.cara, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(b.links().await.len(), 1);
    assert_eq!(b.actions().await, vec!["link.created"]);
}

#[tokio::test]
async fn members_delete_links_with_204_only_through_their_task() {
    let b = board().await;
    let link = b
        .app
        .created(&b.path(), &json!({"url": "https://example.com/a"}), &b.ann.token)
        .await;
    let other_task = b
        .app
        .create_task(&b.ann.token, &b.project, json!({"title": "Other"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = link["id"].as_str().unwrap();
    let through_other = b
        .app
        .delete_as(&format!("/api/v1/tasks/{other_task}/links/{id}"), &b.cara.token)
        .await;
    assert_eq!(through_other.status(), StatusCode::NOT_FOUND);
    let path = format!("{}/{id}", b.path());
    assert_eq!(
        b.app.delete_as(&path, &b.dan.token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.app.delete_as(&path, &b.eve.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(b.links().await.len(), 1);
    assert_eq!(
        b.app
            .delete_as(&format!("/api/v1/tasks/LINK-1/links/{id}"), &b.cara.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(b.links().await.is_empty());
    assert_eq!(
        b.app.delete_as(&path, &b.cara.token).await.status(),
        StatusCode::NOT_FOUND
    );
    let bad = b
        .app
        .delete_as(&format!("{}/not-a-uuid", b.path()), &b.cara.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(b.actions().await, vec!["link.deleted", "link.created"]);

    // A deleted task's links go with it.
    b.app
        .created(&b.path(), &json!({"url": "https://example.com/b"}), &b.ann.token)
        .await;
    assert_eq!(
        b.app
            .delete_as(&format!("/api/v1/tasks/{}", b.task), &b.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.app.get_as(&b.path(), &b.ann.token).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn concurrent_posts_of_one_url_make_one_link() {
    let b = board().await;
    let posts = (0..6).map(|i| {
        let body = json!({"url": "https://example.com/race", "title": format!("t{i}")});
        let app = &b.app;
        let path = b.path();
        let token = b.cara.token.clone();
        async move { app.post_json(&path, &body, Some(&token)).await.status() }
    });
    let statuses = futures::future::join_all(posts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::CREATED).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(b.links().await.len(), 1);
}
