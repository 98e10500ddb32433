//! Comments (docs/api/tracking.md): `/api/v1/tasks/{id}/comments`, `/api/v1/comments/{id}`.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MATCH, LOCATION};
use serde_json::{Value, json};

/// Ann owns the project; Bob is an admin, Cara and Carl members, Dan a viewer; one task.
struct Thread {
    app: TestApp,
    task: String,
    ann: Account,
    bob: Account,
    cara: Account,
    carl: Account,
    dan: Account,
}

async fn thread() -> Thread {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let cara = app.account("cara@example.com").await;
    let carl = app.account("carl@example.com").await;
    let dan = app.account("dan@example.com").await;
    let project = app.create_project_id(&ann.token, "TALK").await;
    for (who, role) in [
        (&bob, "admin"),
        (&cara, "member"),
        (&carl, "member"),
        (&dan, "viewer"),
    ] {
        app.add_member(&ann.token, &project, &who.email, role).await;
    }
    let task = app
        .create_task(&ann.token, &project, json!({"title": "Discuss"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Thread {
        app,
        task,
        ann,
        bob,
        cara,
        carl,
        dan,
    }
}

impl Thread {
    fn comments_path(&self) -> String {
        format!("/api/v1/tasks/{}/comments", self.task)
    }

    async fn post(&self, who: &Account, body: &str) -> reqwest::Response {
        self.app
            .post_json(&self.comments_path(), &json!({"body": body}), Some(&who.token))
            .await
    }

    async fn comment(&self, who: &Account, body: &str) -> Value {
        let response = self.post(who, body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_body(response).await
    }

    /// Every comment's body, oldest first, as the viewer sees them.
    async fn bodies(&self) -> Vec<String> {
        self.app
            .walk(&self.comments_path(), 100, &self.dan.token)
            .await
            .iter()
            .map(|c| c["body"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn patch(
        &self,
        who: &Account,
        comment: &Value,
        if_match: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .patch(
                self.app
                    .url(&format!("/api/v1/comments/{}", comment["id"].as_str().unwrap())),
            )
            .bearer_auth(&who.token)
            .json(&json!({"body": body}));
        if let Some(tag) = if_match {
            request = request.header(IF_MATCH, tag);
        }
        request.send().await.unwrap()
    }

    async fn delete(&self, who: &Account, comment: &Value) -> reqwest::Response {
        self.app
            .delete_as(
                &format!("/api/v1/comments/{}", comment["id"].as_str().unwrap()),
                &who.token,
            )
            .await
    }
}

#[tokio::test]
async fn members_comment_with_201_and_a_location() {
    let t = thread().await;
    let response = t.post(&t.cara, "  Looks good  ").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let tag = response.headers()[ETAG].to_str().unwrap().to_owned();
    assert!(tag.starts_with("\"1-"), "{tag}");
    let comment = json_body(response).await;
    let id = comment["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/comments/{id}"));
    assert_eq!(comment["taskId"], t.task.as_str());
    assert_eq!(comment["authorId"], t.cara.id.as_str());
    assert_eq!(comment["body"], "  Looks good  ", "a body is kept as written");
    assert_eq!(comment["createdAt"], comment["updatedAt"]);
    let mut keys: Vec<&str> = comment.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["authorId", "body", "createdAt", "id", "taskId", "updatedAt"]
    );

    // Admins and the owner comment too; the task's identifier works for reading only.
    t.comment(&t.bob, "admin here").await;
    t.comment(&t.ann, "owner here").await;
    assert_eq!(t.bodies().await, ["  Looks good  ", "admin here", "owner here"]);
    let listed = t.app.get_ok(&t.comments_path(), &t.cara.token).await;
    assert_eq!(listed["data"][0], comment);
}

#[tokio::test]
async fn viewers_may_not_comment_and_blank_or_long_bodies_are_400() {
    let t = thread().await;
    let refused = t.post(&t.dan, "I only watch").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(refused).await["code"], "FORBIDDEN");
    for body in [
        json!({"body": ""}),
        json!({"body": " \n\t "}),
        json!({"body": "x".repeat(5001)}),
        json!({}),
    ] {
        let response = t
            .app
            .post_json(&t.comments_path(), &body, Some(&t.cara.token))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_fields(&json_body(response).await), ["body"]);
    }
    let extra = t
        .app
        .post_json(
            &t.comments_path(),
            &json!({"body": "hi", "authorId": t.ann.id}),
            Some(&t.cara.token),
        )
        .await;
    assert_eq!(extra.status(), StatusCode::BAD_REQUEST);
    assert!(t.bodies().await.is_empty(), "nothing was stored");
    t.comment(&t.cara, &"é".repeat(5000)).await;
    assert_eq!(t.bodies().await.len(), 1);
    let missing = t
        .app
        .post_json(
            &format!("/api/v1/tasks/{}/comments", uuid::Uuid::now_v7()),
            &json!({"body": "hello"}),
            Some(&t.cara.token),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn comments_are_listed_oldest_first_page_by_page() {
    let t = thread().await;
    let authors = [&t.cara, &t.carl, &t.ann, &t.cara, &t.bob];
    let mut ids = Vec::new();
    for (n, who) in authors.iter().enumerate() {
        ids.push(t.comment(who, &format!("comment {n}")).await["id"].clone());
    }
    let first = t
        .app
        .get_ok(&format!("{}?limit=2", t.comments_path()), &t.dan.token)
        .await;
    assert_eq!(first["pagination"]["limit"], 2);
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert!(first["pagination"]["nextCursor"].is_string());
    for limit in [1, 2, 5, 50] {
        let walked = t.app.walk(&t.comments_path(), limit, &t.dan.token).await;
        let walked_ids: Vec<Value> = walked.iter().map(|c| c["id"].clone()).collect();
        assert_eq!(walked_ids, ids, "limit {limit}");
    }
    let all = t.app.get_ok(&t.comments_path(), &t.dan.token).await;
    assert_eq!(all["pagination"]["nextCursor"], Value::Null);
    assert_eq!(all["pagination"]["limit"], 50);
    // Another task's comments are its own.
    let project = t
        .app
        .get_ok(&format!("/api/v1/tasks/{}", t.task), &t.ann.token)
        .await["projectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = t
        .app
        .create_task(&t.ann.token, &project, json!({"title": "Quiet"}))
        .await;
    let quiet = t
        .app
        .get_ok(
            &format!("/api/v1/tasks/{}/comments", other["id"].as_str().unwrap()),
            &t.ann.token,
        )
        .await;
    assert_eq!(quiet["data"], json!([]));
    let bad = t
        .app
        .get_as(&format!("{}?limit=0", t.comments_path()), &t.dan.token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn authors_edit_their_comments_and_if_match_guards_the_edit() {
    let t = thread().await;
    let created = t.post(&t.cara, "first draft").await;
    let v1 = created.headers()[ETAG].to_str().unwrap().to_owned();
    let comment = json_body(created).await;

    let edited = t.patch(&t.cara, &comment, Some(&v1), "second draft").await;
    assert_eq!(edited.status(), StatusCode::OK);
    let v2 = edited.headers()[ETAG].to_str().unwrap().to_owned();
    assert!(v2.starts_with("\"2-"), "{v2}");
    let body = json_body(edited).await;
    assert_eq!(body["body"], "second draft");
    assert_eq!(body["id"], comment["id"]);
    assert_eq!(body["createdAt"], comment["createdAt"]);
    assert_ne!(body["updatedAt"], comment["updatedAt"]);

    let stale = t.patch(&t.cara, &comment, Some(&v1), "lost edit").await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(json_body(stale).await["code"], "PRECONDITION_FAILED");
    // Nobody but the author edits: not another member, not even the owner.
    for who in [&t.carl, &t.ann, &t.bob, &t.dan] {
        let response = t.patch(who, &comment, None, "not mine").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{}", who.email);
    }
    let blank = t.patch(&t.cara, &comment, None, "   ").await;
    assert_eq!(blank.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(blank).await), ["body"]);
    assert_eq!(
        t.bodies().await,
        ["second draft"],
        "only the first edit took effect"
    );

    let unconditional = t.patch(&t.cara, &comment, None, "third draft").await;
    assert_eq!(unconditional.status(), StatusCode::OK);
    assert!(
        unconditional.headers()[ETAG]
            .to_str()
            .unwrap()
            .starts_with("\"3-")
    );
    let missing = t
        .app
        .patch_json(
            &format!("/api/v1/comments/{}", uuid::Uuid::now_v7()),
            &json!({"body": "x"}),
            &t.cara.token,
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn authors_and_project_admins_delete_comments_other_members_do_not() {
    let t = thread().await;
    let by_cara = t.comment(&t.cara, "cara 1").await;
    let by_cara_too = t.comment(&t.cara, "cara 2").await;
    let by_carl = t.comment(&t.carl, "carl").await;
    let by_ann = t.comment(&t.ann, "ann").await;

    for (who, comment) in [(&t.carl, &by_cara), (&t.dan, &by_cara), (&t.cara, &by_ann)] {
        let response = t.delete(who, comment).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{}", who.email);
    }
    assert_eq!(t.bodies().await, ["cara 1", "cara 2", "carl", "ann"]);

    assert_eq!(
        t.delete(&t.cara, &by_cara).await.status(),
        StatusCode::NO_CONTENT,
        "the author"
    );
    assert_eq!(
        t.delete(&t.bob, &by_carl).await.status(),
        StatusCode::NO_CONTENT,
        "a project admin"
    );
    assert_eq!(
        t.delete(&t.ann, &by_cara_too).await.status(),
        StatusCode::NO_CONTENT,
        "the owner"
    );
    assert_eq!(
        t.delete(&t.ann, &by_cara).await.status(),
        StatusCode::NOT_FOUND,
        "already gone"
    );
    assert_eq!(t.bodies().await, ["ann"]);
    let gone = t.patch(&t.cara, &by_cara, None, "edit a deleted comment").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
