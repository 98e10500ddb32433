//! Every check that guards a write runs inside the write's transaction
//! (`docs/security.md`, "Writes"): caps and roles hold under concurrent requests spread over
//! two instances on one database, on PostgreSQL and on SQLite.

use std::time::Duration;

use futures::future::join_all;
use keel_tests::{Account, TestApp, spawn_cluster};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAX_WEBHOOKS: usize = 20;

/// Two instances on one database (and one Redis, when the suite has one).
async fn pair() -> (TestApp, TestApp) {
    let mut apps = spawn_cluster(2, |_| {}).await;
    let b = apps.pop().unwrap();
    let a = apps.pop().unwrap();
    (a, b)
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

fn tally(statuses: &[StatusCode]) -> Vec<(u16, usize)> {
    let mut counts: Vec<(u16, usize)> = Vec::new();
    for status in statuses {
        match counts.iter_mut().find(|(s, _)| *s == status.as_u16()) {
            Some((_, n)) => *n += 1,
            None => counts.push((status.as_u16(), 1)),
        }
    }
    counts.sort_unstable();
    counts
}

#[tokio::test]
async fn the_webhook_cap_holds_under_concurrent_creates_on_two_instances() {
    let (a, b) = pair().await;
    let owner = a.account("owner@example.com").await;
    let project = id(&a.create_project(&owner.token, "CAP").await);
    let hooks = format!("/api/v1/projects/{project}/webhooks");
    let body = |n: usize| json!({"url": format!("https://93.184.215.14/hook/{n}"), "events": ["*"]});
    let before = MAX_WEBHOOKS - 4;
    for n in 0..before {
        a.created(&hooks, &body(n), &owner.token).await;
    }
    // 24 creates at once for the last 4 places, alternating instances.
    let attempts = (0..24).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        let (hooks, body, token) = (hooks.clone(), body(before + n), owner.token.clone());
        async move { app.post_json(&hooks, &body, Some(&token)).await.status() }
    });
    let statuses = join_all(attempts).await;
    assert_eq!(
        tally(&statuses),
        vec![(201, 4), (409, 20)],
        "exactly the free places are taken"
    );
    let listed = a.get_ok(&format!("{hooks}?limit=100"), &owner.token).await;
    assert_eq!(listed["pagination"]["total"], MAX_WEBHOOKS);
}

/// A project of `owner`'s with `n` admins; returns the project id and the admins.
async fn project_with_admins(app: &TestApp, owner: &Account, key: &str, n: usize) -> (String, Vec<Account>) {
    let project = id(&app.create_project(&owner.token, key).await);
    let mut admins = Vec::new();
    for i in 0..n {
        let admin = app
            .account(&format!("{}-admin{i}@example.com", key.to_lowercase()))
            .await;
        app.add_member(&owner.token, &project, &admin.email, "admin")
            .await;
        admins.push(admin);
    }
    (project, admins)
}

/// `(user id, role)` of every member, and the project's `ownerId`.
async fn roles(app: &TestApp, token: &str, project: &str) -> (Vec<(String, String)>, String) {
    let members = app
        .get_ok(&format!("/api/v1/projects/{project}/members?limit=100"), token)
        .await;
    let roles = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let owner_id = app.get_ok(&format!("/api/v1/projects/{project}"), token).await["ownerId"]
        .as_str()
        .unwrap()
        .to_owned();
    (roles, owner_id)
}

#[tokio::test]
async fn of_concurrent_hand_overs_by_one_owner_only_one_is_applied() {
    let (a, b) = pair().await;
    let owner = a.account("owner@example.com").await;
    let (project, admins) = project_with_admins(&a, &owner, "HAND", 12).await;
    // Every hand-over is authorized while `owner` still owns the project.
    let transfers = admins.iter().enumerate().map(|(n, to)| {
        let app = if n % 2 == 0 { &a } else { &b };
        let path = format!("/api/v1/projects/{project}/members/{}", to.id);
        let token = owner.token.clone();
        async move {
            app.patch_json(&path, &json!({"role": "owner"}), &token)
                .await
                .status()
        }
    });
    let statuses = join_all(transfers).await;
    assert_eq!(
        tally(&statuses),
        vec![(200, 1), (403, admins.len() - 1)],
        "the first hand-over demotes the caller, who may hand over nothing more"
    );
    let winner = &admins[statuses.iter().position(|s| *s == StatusCode::OK).unwrap()];
    let (roles, owner_id) = roles(&b, &winner.token, &project).await;
    assert_eq!(owner_id, winner.id);
    let owners: Vec<&String> = roles
        .iter()
        .filter(|(_, r)| r == "owner")
        .map(|(u, _)| u)
        .collect();
    assert_eq!(owners, vec![&winner.id], "exactly one owner");
    assert!(roles.contains(&(owner.id.clone(), "admin".to_owned())));
}

#[tokio::test]
async fn a_delete_authorized_before_a_hand_over_is_refused_once_it_is_done() {
    let (a, b) = pair().await;
    let owner = a.account("owner@example.com").await;
    let mut both = 0;
    for round in 0..6 {
        let (project, admins) = project_with_admins(&a, &owner, &format!("DEL{round}"), 1).await;
        let heir = &admins[0];
        let transfer = {
            let path = format!("/api/v1/projects/{project}/members/{}", heir.id);
            let token = owner.token.clone();
            let a = &a;
            async move {
                a.patch_json(&path, &json!({"role": "owner"}), &token)
                    .await
                    .status()
            }
        };
        // Deletes sent along with the hand-over, some of them a little later, so that some
        // are authorized before it commits and run after it.
        let deletes = (0..8u64).map(|n| {
            let app = if n % 2 == 0 { &b } else { &a };
            let path = format!("/api/v1/projects/{project}");
            let token = owner.token.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(n)).await;
                app.delete_as(&path, &token).await.status()
            }
        });
        let (transferred, deleted) = tokio::join!(transfer, join_all(deletes));
        let deleted_once = deleted.iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
        for status in &deleted {
            assert!(
                [
                    StatusCode::NO_CONTENT,
                    StatusCode::FORBIDDEN,
                    StatusCode::NOT_FOUND
                ]
                .contains(status),
                "round {round}: {status}"
            );
        }
        assert!(deleted_once <= 1, "round {round}: one delete at most");
        if transferred == StatusCode::OK {
            if deleted_once == 1 {
                both += 1;
                continue;
            }
            // The heir owns a project that still exists.
            let project = b
                .get_ok(&format!("/api/v1/projects/{project}"), &heir.token)
                .await;
            assert_eq!(project["ownerId"], heir.id.as_str(), "round {round}");
        } else {
            assert_eq!(transferred, StatusCode::NOT_FOUND, "round {round}: deleted first");
            assert_eq!(deleted_once, 1, "round {round}");
        }
    }
    assert_eq!(both, 0, "a project was deleted by someone who had handed it over");
}

async fn demote(app: &TestApp, project: &str, by: &Account, whom: &Account) -> StatusCode {
    let path = format!("/api/v1/projects/{project}/members/{}", whom.id);
    app.patch_json(&path, &json!({"role": "member"}), &by.token)
        .await
        .status()
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let (a, b) = pair().await;
    let owner = a.account("owner@example.com").await;
    for round in 0..6 {
        let (project, admins) = project_with_admins(&a, &owner, &format!("DUEL{round}"), 2).await;
        let (ann, bob) = (&admins[0], &admins[1]);
        let (first, second) = tokio::join!(demote(&a, &project, ann, bob), demote(&b, &project, bob, ann));
        let mut outcome = [first.as_u16(), second.as_u16()];
        outcome.sort_unstable();
        assert_eq!(
            outcome,
            [200, 403],
            "round {round}: the first demotion wins, the second is refused (no deadlock, no 500)"
        );
        let (roles, _) = roles(&a, &owner.token, &project).await;
        let admins_left = roles.iter().filter(|(_, r)| r == "admin").count();
        assert_eq!(admins_left, 1, "round {round}: {roles:?}");
    }
}
