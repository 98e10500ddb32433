//! `/api/v1/projects/{id}/members` (docs/api/tracking.md): roles, ownership, leaving.

use keel_tests::{Account, TestApp, error_fields, json_body, spawn_app};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

/// A project of Ann's with Bob (admin), Cara (member) and Dan (viewer).
struct Team {
    app: TestApp,
    project: String,
    ann: Account,
    bob: Account,
    cara: Account,
    dan: Account,
}

async fn team() -> Team {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let cara = app.account("cara@example.com").await;
    let dan = app.account("dan@example.com").await;
    let project = app.create_project_id(&ann.token, "TEAM").await;
    for (who, role) in [(&bob, "admin"), (&cara, "member"), (&dan, "viewer")] {
        app.add_member(&ann.token, &project, &who.email, role).await;
    }
    Team {
        app,
        project,
        ann,
        bob,
        cara,
        dan,
    }
}

impl Team {
    fn members_path(&self) -> String {
        format!("/api/v1/projects/{}/members", self.project)
    }

    fn member_path(&self, who: &Account) -> String {
        format!("/api/v1/projects/{}/members/{}", self.project, who.id)
    }

    /// `(email, role)` of every member, oldest first.
    async fn roles(&self) -> Vec<(String, String)> {
        let page = self
            .app
            .get_ok(&format!("{}?limit=100", self.members_path()), &self.ann.token)
            .await;
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["email"].as_str().unwrap().to_owned(),
                    m["role"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn project(&self, token: &str) -> Value {
        self.app
            .get_ok(&format!("/api/v1/projects/{}", self.project), token)
            .await
    }

    async fn patch_role(&self, token: &str, who: &Account, role: &str) -> reqwest::Response {
        self.app
            .patch_json(&self.member_path(who), &json!({"role": role}), token)
            .await
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

const INITIAL: [(&str, &str); 4] = [
    ("ann@example.com", "owner"),
    ("bob@example.com", "admin"),
    ("cara@example.com", "member"),
    ("dan@example.com", "viewer"),
];

#[tokio::test]
async fn admins_add_accounts_they_share_a_project_with_by_email_with_each_role() {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    // Ann meets them in another project first (invited, and accepted: the fixture).
    let meet = app.create_project(&ann.token, "MEET").await;
    let project = app.create_project(&ann.token, "TEAM").await;
    let id = project["id"].as_str().unwrap();
    let mut people = Vec::new();
    for (name, role) in [("bob", "admin"), ("cara", "member"), ("dan", "viewer")] {
        let who = app.account(&format!("{name}@example.com")).await;
        app.add_member(&ann.token, meet["id"].as_str().unwrap(), &who.email, "viewer")
            .await;
        // The e-mail is matched as it is stored: trimmed and lower-cased.
        let response = app
            .post_json(
                &format!("/api/v1/projects/{id}/members"),
                &json!({"email": format!(" {}@EXAMPLE.com ", name.to_uppercase()), "role": role}),
                Some(&ann.token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
        assert_eq!(
            response.headers()[LOCATION],
            format!("/api/v1/projects/{id}/members/{}", who.id).as_str()
        );
        let member = json_body(response).await;
        assert_eq!(member["userId"], who.id.as_str());
        assert_eq!(member["email"], who.email.as_str());
        assert_eq!(member["name"], "Test User");
        assert_eq!(member["role"], role);
        assert!(member["joinedAt"].is_string());
        // The new member sees the project with their role.
        let seen = app.get_ok(&format!("/api/v1/projects/{id}"), &who.token).await;
        assert_eq!(seen["myRole"], role);
        people.push(who);
    }
    let list = app
        .get_ok(&format!("/api/v1/projects/{id}/members"), &people[2].token)
        .await;
    assert_eq!(
        list["pagination"],
        json!({"page": 1, "limit": 20, "total": 4, "totalPages": 1})
    );
    let roles: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["owner", "admin", "member", "viewer"], "oldest first");
    let page = app
        .get_ok(
            &format!("/api/v1/projects/{id}/members?limit=3&page=2"),
            &ann.token,
        )
        .await;
    assert_eq!(page["data"][0]["email"], "dan@example.com");
    assert_eq!(page["pagination"]["totalPages"], 2);
}

#[tokio::test]
async fn duplicates_and_the_owner_role_are_refused_and_change_nothing() {
    let t = team().await;
    let eve = t.app.account("eve@example.com").await;
    for (body, status, code, field) in [
        (
            json!({"email": "cara@example.com", "role": "viewer"}),
            409,
            "CONFLICT",
            None,
        ),
        (
            json!({"email": "ann@example.com", "role": "admin"}),
            409,
            "CONFLICT",
            None,
        ),
        (
            json!({"email": "eve@example.com", "role": "owner"}),
            400,
            "VALIDATION_ERROR",
            Some("role"),
        ),
        (
            json!({"email": "eve@example.com", "role": "boss"}),
            400,
            "VALIDATION_ERROR",
            Some("role"),
        ),
        (
            json!({"email": "not-an-email", "role": "member"}),
            400,
            "VALIDATION_ERROR",
            Some("email"),
        ),
        (
            json!({"email": "eve@example.com"}),
            400,
            "VALIDATION_ERROR",
            Some("role"),
        ),
    ] {
        let response = t
            .app
            .post_json(&t.members_path(), &body, Some(&t.ann.token))
            .await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], code, "{body}");
        if let Some(field) = field {
            assert!(error_fields(&error).iter().any(|f| f == field), "{body}: {error}");
        }
    }
    assert_eq!(t.roles().await, pairs(&INITIAL));
    assert_eq!(
        t.app
            .get_as(&format!("/api/v1/projects/{}", t.project), &eve.token)
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "eve was never added"
    );
}

#[tokio::test]
async fn patch_changes_a_members_role_and_the_new_role_applies_at_once() {
    let t = team().await;
    let response = t.patch_role(&t.bob.token, &t.cara, "viewer").await;
    assert_eq!(response.status(), StatusCode::OK);
    let member = json_body(response).await;
    assert_eq!(member["userId"], t.cara.id.as_str());
    assert_eq!(member["role"], "viewer");
    assert_eq!(t.project(&t.cara.token).await["myRole"], "viewer");
    let refused = t
        .app
        .post_json(
            &format!("/api/v1/projects/{}/tasks", t.project),
            &json!({"title": "Now read-only"}),
            Some(&t.cara.token),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let promoted = t.patch_role(&t.ann.token, &t.dan, "member").await;
    assert_eq!(promoted.status(), StatusCode::OK);
    t.app
        .create_task(&t.dan.token, &t.project, json!({"title": "Dan writes now"}))
        .await;

    let bad = t.patch_role(&t.ann.token, &t.dan, "superuser").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(bad).await), ["role"]);
    let stranger = t.app.account("eve@example.com").await;
    let not_member = t.patch_role(&t.ann.token, &stranger, "member").await;
    assert_eq!(not_member.status(), StatusCode::NOT_FOUND);
    // A plain member may not change roles.
    let by_member = t.patch_role(&t.dan.token, &t.cara, "admin").await;
    assert_eq!(by_member.status(), StatusCode::FORBIDDEN);

    assert_eq!(
        t.roles().await,
        pairs(&[
            ("ann@example.com", "owner"),
            ("bob@example.com", "admin"),
            ("cara@example.com", "viewer"),
            ("dan@example.com", "member"),
        ])
    );
}

#[tokio::test]
async fn the_owner_hands_ownership_over_and_becomes_an_admin() {
    let t = team().await;
    let before = t.project(&t.ann.token).await;
    let response = t.patch_role(&t.ann.token, &t.cara, "owner").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(response).await["role"], "owner");

    let after = t.project(&t.cara.token).await;
    assert_eq!(after["ownerId"], t.cara.id.as_str());
    assert_eq!(after["myRole"], "owner");
    assert_eq!(t.project(&t.ann.token).await["myRole"], "admin");
    assert_ne!(after["updatedAt"], before["updatedAt"]);
    assert_eq!(
        t.roles().await,
        pairs(&[
            ("ann@example.com", "admin"),
            ("bob@example.com", "admin"),
            ("cara@example.com", "owner"),
            ("dan@example.com", "viewer"),
        ])
    );
    // Exactly one owner, and only they delete the project now.
    let path = format!("/api/v1/projects/{}", t.project);
    assert_eq!(
        t.app.delete_as(&path, &t.ann.token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.app.delete_as(&path, &t.cara.token).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_project_admin_cannot_make_or_unmake_the_owner() {
    let t = team().await;
    let to_owner = t.patch_role(&t.bob.token, &t.cara, "owner").await;
    assert_eq!(to_owner.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(to_owner).await["code"], "FORBIDDEN");
    let self_owner = t.patch_role(&t.bob.token, &t.bob, "owner").await;
    assert_eq!(self_owner.status(), StatusCode::FORBIDDEN);
    let demote_owner = t.patch_role(&t.bob.token, &t.ann, "member").await;
    assert_eq!(demote_owner.status(), StatusCode::CONFLICT);

    assert_eq!(t.project(&t.bob.token).await["ownerId"], t.ann.id.as_str());
    assert_eq!(t.roles().await, pairs(&INITIAL));
}

#[tokio::test]
async fn the_owner_can_be_neither_removed_nor_demoted() {
    let t = team().await;
    for (what, response) in [
        (
            "owner demotes self",
            t.patch_role(&t.ann.token, &t.ann, "admin").await,
        ),
        (
            "admin removes owner",
            t.app.delete_as(&t.member_path(&t.ann), &t.bob.token).await,
        ),
        (
            "owner leaves",
            t.app.delete_as(&t.member_path(&t.ann), &t.ann.token).await,
        ),
    ] {
        assert_eq!(response.status(), StatusCode::CONFLICT, "{what}");
        assert_eq!(json_body(response).await["code"], "CONFLICT", "{what}");
    }
    assert_eq!(t.roles().await, pairs(&INITIAL));
    assert_eq!(t.project(&t.ann.token).await["myRole"], "owner");
}

#[tokio::test]
async fn members_may_leave_but_only_admins_remove_others() {
    let t = team().await;
    let refused = t.app.delete_as(&t.member_path(&t.dan), &t.cara.token).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = t.app.delete_as(&t.member_path(&t.cara), &t.dan.token).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(t.roles().await, pairs(&INITIAL));

    // A viewer leaves.
    assert_eq!(
        t.app
            .delete_as(&t.member_path(&t.dan), &t.dan.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.app
            .get_as(&format!("/api/v1/projects/{}", t.project), &t.dan.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // An admin removes a member.
    assert_eq!(
        t.app
            .delete_as(&t.member_path(&t.cara), &t.bob.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.roles().await,
        pairs(&[("ann@example.com", "owner"), ("bob@example.com", "admin")])
    );
    // Removing someone who is not a member.
    assert_eq!(
        t.app
            .delete_as(&t.member_path(&t.cara), &t.ann.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // A removed member can be added again.
    t.app
        .add_member(&t.ann.token, &t.project, &t.cara.email, "viewer")
        .await;
    assert_eq!(t.project(&t.cara.token).await["myRole"], "viewer");
}

#[tokio::test]
async fn removing_a_member_unassigns_their_tasks_in_that_project() {
    let t = team().await;
    let theirs = t
        .app
        .create_task(
            &t.ann.token,
            &t.project,
            json!({"title": "Cara's", "assigneeId": t.cara.id}),
        )
        .await;
    let bobs = t
        .app
        .create_task(
            &t.ann.token,
            &t.project,
            json!({"title": "Bob's", "assigneeId": t.bob.id}),
        )
        .await;
    // Cara's task in another project stays hers.
    let other = t.app.create_project(&t.cara.token, "OTHER").await;
    let elsewhere = t
        .app
        .create_task(
            &t.cara.token,
            other["id"].as_str().unwrap(),
            json!({"title": "Elsewhere", "assigneeId": t.cara.id}),
        )
        .await;

    assert_eq!(
        t.app
            .delete_as(&t.member_path(&t.cara), &t.ann.token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let task = |id: &Value| format!("/api/v1/tasks/{}", id.as_str().unwrap());
    let now = t.app.get_ok(&task(&theirs["id"]), &t.ann.token).await;
    assert_eq!(now["assigneeId"], Value::Null);
    assert_eq!(now["version"], 2, "unassigning is a change");
    assert_ne!(now["updatedAt"], theirs["updatedAt"]);
    let unchanged = t.app.get_ok(&task(&bobs["id"]), &t.ann.token).await;
    assert_eq!(unchanged, bobs);
    let kept = t.app.get_ok(&task(&elsewhere["id"]), &t.cara.token).await;
    assert_eq!(kept["assigneeId"], t.cara.id.as_str());

    let unassigned = t
        .app
        .get_ok(
            &format!("/api/v1/projects/{}/tasks?assignee=none", t.project),
            &t.ann.token,
        )
        .await;
    assert_eq!(unassigned["data"].as_array().unwrap().len(), 1);
    assert_eq!(unassigned["data"][0]["id"], theirs["id"]);
    // And the former member can no longer be assigned.
    let refused = t
        .app
        .patch_json(
            &task(&theirs["id"]),
            &json!({"assigneeId": t.cara.id}),
            &t.ann.token,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&json_body(refused).await), ["assigneeId"]);
}
