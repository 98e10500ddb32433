//! Personal data (docs/api/identity.md, "Your data"): `GET /auth/export`,
//! `DELETE /auth/account`, `DELETE /admin/users/{id}`.

use keel_tests::{Account, PASSWORD, TestApp, json_body, spawn_app};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

/// Ann owns `ANN` with Bob as a member: Ann created `ANN-1`, Bob created `ANN-2` assigned to
/// Ann; both commented on `ANN-1`; Ann holds a personal access token.
struct Scene {
    app: TestApp,
    ann: Account,
    bob: Account,
    project: String,
    pat: String,
}

async fn scene() -> Scene {
    let app = spawn_app().await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let project = app.create_project_id(&ann.token, "ANN").await;
    app.add_member(&ann.token, &project, &bob.email, "member").await;
    app.create_task(&ann.token, &project, json!({"title": "Ann's own"}))
        .await;
    app.create_task(
        &bob.token,
        &project,
        json!({"title": "For Ann", "assigneeId": ann.id}),
    )
    .await;
    for (who, body) in [(&ann, "Ann was here"), (&bob, "Bob was here")] {
        app.created(
            "/api/v1/tasks/ANN-1/comments",
            &json!({ "body": body }),
            &who.token,
        )
        .await;
    }
    let pat = app
        .created(
            "/api/v1/auth/tokens",
            &json!({"name": "ci", "scopes": ["read"]}),
            &ann.token,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    Scene {
        app,
        ann,
        bob,
        project,
        pat,
    }
}

impl Scene {
    /// Waits until Bob's task for Ann and his comment on hers have reached her as
    /// notifications (the dispatcher makes them after the commit).
    async fn until_ann_is_notified(&self) {
        for _ in 0..100 {
            let count = self
                .app
                .get_ok("/api/v1/notifications/unread-count", &self.ann.token)
                .await["count"]
                .as_i64()
                .unwrap();
            if count >= 2 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("Ann was never notified of Bob's task and comment");
    }

    /// Bob invites Ann's address to a project of his own (`BOB`); its id.
    async fn bob_invites_ann(&self) -> String {
        let project = self.app.create_project_id(&self.bob.token, "BOB").await;
        self.app
            .created(
                &format!("/api/v1/projects/{project}/invitations"),
                &json!({"email": "ann@example.com", "role": "viewer"}),
                &self.bob.token,
            )
            .await;
        project
    }

    /// How many invitations are addressed to `email`.
    async fn invitations_to(&self, email: &str) -> i64 {
        let db = sea_orm::Database::connect(&self.app.db.url).await.unwrap();
        let backend = db.get_database_backend();
        let placeholder = if self.app.db.is_postgres { "$1" } else { "?" };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT COUNT(*) AS n FROM invitations WHERE email = {placeholder}"),
                [email.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        db.close().await.ok();
        n
    }

    async fn erase(&self, token: &str, password: &str) -> reqwest::Response {
        self.app
            .send(
                Method::DELETE,
                "/api/v1/auth/account",
                Some(&json!({ "password": password })),
                Some(token),
            )
            .await
    }

    /// How many rows of `table` of the user still hold an IP address (`column` names the
    /// user).
    async fn addresses_kept(&self, table: &str, column: &str) -> i64 {
        self.rows_of(table, column, "AND ip IS NOT NULL").await
    }

    /// How many rows of `table` name the user in `column`, with `and` more conditions.
    async fn rows_of(&self, table: &str, column: &str, and: &str) -> i64 {
        let db = sea_orm::Database::connect(&self.app.db.url).await.unwrap();
        let backend = db.get_database_backend();
        let id = uuid::Uuid::parse_str(&self.ann.id).unwrap();
        let placeholder = if self.app.db.is_postgres { "$1" } else { "?" };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = {placeholder} {and}"),
                [id.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        db.close().await.ok();
        n
    }
}

fn strings(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_export_holds_what_keel_has_about_the_caller_and_nothing_of_anyone_else() {
    let s = scene().await;
    let bobs = s.bob_invites_ann().await;
    s.until_ann_is_notified().await;
    let export = s.app.get_ok("/api/v1/auth/export", &s.ann.token).await;
    // Bob's invitation to her address, without its token.
    let invitations = export["invitations"].as_array().unwrap();
    assert_eq!(invitations.len(), 1, "{export}");
    assert_eq!(
        (
            &invitations[0]["projectId"],
            &invitations[0]["role"],
            &invitations[0]["invitedBy"]
        ),
        (&json!(bobs), &json!("viewer"), &json!(s.bob.id))
    );
    // Ann follows the task she created and the one she is assigned to, and was told of
    // Bob's task for her and of his comment.
    let followed: Vec<bool> = export["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["subscribed"].as_bool().unwrap())
        .collect();
    assert_eq!(followed, [true, true]);
    let mut told = strings(&export["notifications"], "type");
    told.sort();
    assert_eq!(told, ["comment.created", "task.created"]);
    assert!(
        export["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["actorId"] == s.bob.id.as_str())
    );
    assert_eq!(export["profile"]["email"], "ann@example.com");
    assert_eq!(export["profile"]["id"], s.ann.id.as_str());
    let sessions = export["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    assert_eq!(strings(&export["tokens"], "name"), ["ci"]);
    let memberships = export["memberships"].as_array().unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(
        (&memberships[0]["projectKey"], &memberships[0]["role"]),
        (&json!("ANN"), &json!("owner"))
    );
    let tasks = export["tasks"].as_array().unwrap();
    let flags: Vec<(String, bool, bool)> = tasks
        .iter()
        .map(|t| {
            (
                t["identifier"].as_str().unwrap().to_owned(),
                t["created"].as_bool().unwrap(),
                t["assigned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("ANN-1".to_owned(), true, false),
            ("ANN-2".to_owned(), false, true)
        ]
    );
    assert_eq!(strings(&export["comments"], "body"), ["Ann was here"]);
    let actions = strings(&export["audit"], "action");
    for action in ["project.created", "task.created", "auth.token.created"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    // No secret of Ann's. (Bob's comment is not among her comments above; it reaches the
    // export only as the summary of the notification made for her.)
    let text = export.to_string();
    assert!(!text.contains(&s.pat) && !text.contains("secretHash"));

    // A personal access token may not export.
    let response = s.app.get_as("/api/v1/auth/export", &s.pat).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(response).await["code"], "INSUFFICIENT_SCOPE");
}

#[tokio::test]
async fn an_erased_account_is_a_tombstone_its_tasks_and_comments_still_point_at() {
    let s = scene().await;
    // A token may not erase; a wrong password erases nothing.
    assert_eq!(s.erase(&s.pat, PASSWORD).await.status(), StatusCode::FORBIDDEN);
    let response = s.erase(&s.ann.token, "Wrong-passw0rd").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(response).await["code"], "INVALID_CREDENTIALS");
    // The owner of a project is told to hand it over first.
    let response = s.erase(&s.ann.token, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let message = json_body(response).await["error"].as_str().unwrap().to_owned();
    assert!(message.contains("ANN"), "{message}");
    s.app.get_ok("/api/v1/auth/profile", &s.ann.token).await;

    let handed = s
        .app
        .patch_json(
            &format!("/api/v1/projects/{}/members/{}", s.project, s.bob.id),
            &json!({"role": "owner"}),
            &s.ann.token,
        )
        .await;
    assert_eq!(handed.status(), StatusCode::OK);
    s.until_ann_is_notified().await;
    s.bob_invites_ann().await;
    assert_eq!(s.invitations_to("ann@example.com").await, 1);
    assert_eq!(
        s.erase(&s.ann.token, PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // An invitation to her address kept it: gone with the account.
    assert_eq!(s.invitations_to("ann@example.com").await, 0);

    // Every credential is gone at once: the session, the token, the password.
    for token in [&s.ann.token, &s.pat] {
        assert_eq!(
            s.app.get_as("/api/v1/auth/profile", token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.app.login("ann@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The e-mail is free again.
    let again = s.app.account("ann@example.com").await;
    assert_ne!(again.id, s.ann.id);

    // The tombstone, as an admin sees it.
    let admin = s.app.admin_token("root@example.com").await;
    let tombstone = s
        .app
        .get_ok(&format!("/api/v1/admin/users/{}", s.ann.id), &admin)
        .await;
    assert_eq!(tombstone["name"], "Deleted user");
    assert_eq!(tombstone["email"], format!("deleted-{}@invalid", s.ann.id));
    assert_eq!(tombstone["status"], "disabled");
    // Tasks and comments keep pointing at the erased user.
    let task = s.app.get_ok("/api/v1/tasks/ANN-1", &s.bob.token).await;
    assert_eq!(task["createdBy"], s.ann.id.as_str());
    let assigned = s.app.get_ok("/api/v1/tasks/ANN-2", &s.bob.token).await;
    assert_eq!(assigned["assigneeId"], s.ann.id.as_str());
    let comments = s.app.get_ok("/api/v1/tasks/ANN-1/comments", &s.bob.token).await;
    assert!(
        comments["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["authorId"] == s.ann.id.as_str() && c["body"] == "Ann was here")
    );
    // No address of Ann's is kept anywhere.
    assert_eq!(s.addresses_kept("sessions", "user_id").await, 0);
    assert_eq!(s.addresses_kept("audit_log", "actor_id").await, 0);
    // Nor a one-time link (registration made a verification link).
    assert_eq!(s.rows_of("account_tokens", "user_id", "").await, 0);
    // Nor a notification, nor a subscription that would make new ones.
    assert_eq!(s.rows_of("notifications", "user_id", "").await, 0);
    assert_eq!(
        s.rows_of("task_subscriptions", "user_id", "AND subscribed = TRUE")
            .await,
        0
    );
    // The erasure is audited, without personal data.
    let log = s
        .app
        .get_ok("/api/v1/admin/audit-log?action=user.erased", &admin)
        .await;
    let entry = &log["data"][0];
    assert_eq!(entry["resourceId"], s.ann.id.as_str());
    assert!(entry["ip"].is_null() && entry["details"].is_null(), "{entry}");
}

#[tokio::test]
async fn admins_erase_other_accounts_but_never_the_last_admin() {
    let s = scene().await;
    let admin = s.app.admin_token("root@example.com").await;
    let root = s.app.get_ok("/api/v1/auth/profile", &admin).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let erase = |id: String, token: String| {
        let app = &s.app;
        async move {
            app.delete_as(&format!("/api/v1/admin/users/{id}"), &token)
                .await
                .status()
        }
    };
    assert_eq!(
        erase(s.bob.id.clone(), s.ann.token.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(erase(root.clone(), admin.clone()).await, StatusCode::CONFLICT);
    assert_eq!(erase(s.ann.id.clone(), admin.clone()).await, StatusCode::CONFLICT);
    assert_eq!(
        erase(s.bob.id.clone(), admin.clone()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        erase(uuid::Uuid::now_v7().to_string(), admin.clone()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.app.get_as("/api/v1/auth/profile", &s.bob.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
