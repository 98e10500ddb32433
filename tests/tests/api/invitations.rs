//! Project invitations and registration modes (docs/api/tracking.md, "Invitations";
//! docs/api/identity.md, "Registration modes"). The mails really arrive (the SMTP sink on
//! the PostgreSQL run, `.eml` files on the SQLite run) and their links are followed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use keel_tests::{Account, PASSWORD, TestApp, json_body, spawn_app, spawn_on, unique_email};

const SUBJECT: &str = "You are invited to Project INV on Keel";
const ACCEPT: &str = "/api/v1/auth/invitations/accept";
const MINE: &str = "/api/v1/auth/invitations";

fn invitations(project: &str) -> String {
    format!("/api/v1/projects/{project}/invitations")
}

/// The `n`-th invitation mail to `email` (waiting for it); its token.
async fn invitation_token(app: &TestApp, email: &str, n: usize) -> String {
    for _ in 0..300 {
        let mails: Vec<_> = app
            .mails_to(email)
            .into_iter()
            .filter(|m| m.subject == SUBJECT)
            .collect();
        if mails.len() >= n {
            let mail = &mails[n - 1];
            assert!(
                mail.body.contains("http://127.0.0.1:0/accept-invitation?token="),
                "the link starts with KEEL_PUBLIC_URL: {}",
                mail.body
            );
            return mail.token().expect("a token in the link");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no invitation mail {n} to {email}");
}

async fn invite(app: &TestApp, token: &str, project: &str, email: &str, role: &str) -> reqwest::Response {
    app.post_json(
        &invitations(project),
        &json!({"email": email, "role": role}),
        Some(token),
    )
    .await
}

async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body = json_body(response).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn accept(app: &TestApp, who: &Account, token: &str) -> reqwest::Response {
    app.post_json(ACCEPT, &json!({ "token": token }), Some(&who.token))
        .await
}

async fn register_with(app: &TestApp, email: &str, token: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        &json!({"email": email, "password": PASSWORD, "name": "Bea", "invitationToken": token}),
        None,
    )
    .await
}

/// Verifies `who`'s address with the link of its verification mail.
async fn verify(app: &TestApp, who: &Account) {
    let mail = app.wait_for_mails(&who.email, 1).await;
    let token = mail[0].token().unwrap();
    let r = app
        .post_json("/api/v1/auth/email/verify", &json!({ "token": token }), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// An owner with the project `INV`.
async fn owner_and_project(app: &TestApp) -> (Account, String) {
    let owner = app.account(&unique_email("olga")).await;
    let project = app.create_project_id(&owner.token, "INV").await;
    (owner, project)
}

#[tokio::test]
async fn an_invited_address_accepts_the_mailed_link_once_signed_in_with_that_address() {
    let app = spawn_app().await;
    let (owner, project) = owner_and_project(&app).await;
    let cai = app.account(&unique_email("cai")).await;
    let dan = app.account(&unique_email("dan")).await;
    verify(&app, &cai).await;

    let r = invite(&app, &owner.token, &project, &cai.email.to_uppercase(), "viewer").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created = json_body(r).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("{}/{id}", invitations(&project)));
    assert_eq!(created["email"], cai.email.as_str());
    assert_eq!(created["role"], "viewer");
    assert_eq!(created["invitedBy"], owner.id.as_str());
    let expires: chrono::DateTime<chrono::Utc> = created["expiresAt"].as_str().unwrap().parse().unwrap();
    let made: chrono::DateTime<chrono::Utc> = created["createdAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires - made, chrono::Duration::days(7));
    let listed = app.get_ok(&invitations(&project), &owner.token).await;
    assert_eq!(listed["data"], json!([created]));
    assert_eq!(listed["pagination"]["total"], 1);

    // Cai sees it, with what it is to; Dan (another address) does not.
    let mine = app.get_ok(MINE, &cai.token).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["data"][0]["projectKey"], "INV");
    assert_eq!(mine["data"][0]["projectName"], "Project INV");
    assert_eq!(mine["data"][0]["invitedByName"], "Test User");
    assert_eq!(app.get_ok(MINE, &dan.token).await["data"], json!([]));

    let token = invitation_token(&app, &cai.email, 1).await;
    // Another account cannot use it (one answer for every unusable token), nor uses it up.
    assert_eq!(
        status_and_code(accept(&app, &dan, &token).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    let r = accept(&app, &cai, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let joined = json_body(r).await;
    assert_eq!(
        (joined["id"].as_str(), joined["myRole"].as_str()),
        (Some(project.as_str()), Some("viewer"))
    );
    // The membership is seen at once (the cache was told), and the invitation is gone.
    let got = app
        .get_ok(&format!("/api/v1/projects/{project}"), &cai.token)
        .await;
    assert_eq!(got["myRole"], "viewer");
    let members = app
        .get_ok(&format!("/api/v1/projects/{project}/members"), &owner.token)
        .await;
    assert!(
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["userId"] == cai.id.as_str())
    );
    assert_eq!(
        app.get_ok(&invitations(&project), &owner.token).await["data"],
        json!([])
    );
    assert_eq!(app.get_ok(MINE, &cai.token).await["data"], json!([]));
    // Once only.
    assert_eq!(
        status_and_code(accept(&app, &cai, &token).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    // The activity shows the joining (member.added by Cai) and the invitation without its
    // address to members, never the token.
    let activity = app
        .walk(&format!("/api/v1/projects/{project}/activity"), 100, &cai.token)
        .await;
    let actions: Vec<&str> = activity.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"member.added") && actions.contains(&"invitation.created"),
        "{actions:?}"
    );
    let text = serde_json::to_string(&activity).unwrap();
    let secret = token.split_once('.').unwrap().1;
    assert!(!text.contains(secret), "the token in the activity: {text}");
    let created_entry = activity
        .iter()
        .find(|e| e["action"] == "invitation.created")
        .unwrap();
    assert!(
        !created_entry.to_string().contains(&cai.email),
        "a viewer reads the address: {created_entry}"
    );
}

#[tokio::test]
async fn the_answer_is_the_same_whether_or_not_the_address_has_an_account() {
    let app = spawn_app().await;
    let (owner, project) = owner_and_project(&app).await;
    let existing = app.account(&unique_email("bea")).await;
    let nobody = unique_email("nobody");
    let mut shapes = Vec::new();
    for email in [existing.email.as_str(), nobody.as_str()] {
        let r = invite(&app, &owner.token, &project, email, "member").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let mut headers: Vec<String> = r.headers().keys().map(|k| k.to_string()).collect();
        headers.retain(|h| !h.starts_with("ratelimit"));
        headers.sort();
        let mut body = json_body(r).await;
        for varying in ["id", "email", "expiresAt", "createdAt"] {
            body.as_object_mut().unwrap().remove(varying);
        }
        shapes.push((headers, body));
    }
    assert_eq!(shapes[0], shapes[1]);
    // Both mails go out.
    invitation_token(&app, &existing.email, 1).await;
    invitation_token(&app, &nobody, 1).await;
}

#[tokio::test]
async fn a_new_invitation_replaces_the_pending_one_and_a_withdrawn_one_stops_working() {
    let app = spawn_app().await;
    let (owner, project) = owner_and_project(&app).await;
    let bea = unique_email("bea");
    assert_eq!(
        invite(&app, &owner.token, &project, &bea, "member")
            .await
            .status(),
        StatusCode::CREATED
    );
    let first = invitation_token(&app, &bea, 1).await;
    let r = invite(&app, &owner.token, &project, &bea, "admin").await;
    let second = json_body(r).await;
    let listed = app.get_ok(&invitations(&project), &owner.token).await;
    assert_eq!(
        listed["data"],
        json!([second]),
        "one pending invitation per address"
    );
    let token = invitation_token(&app, &bea, 2).await;
    assert_ne!(first, token);
    // The replaced link is refused; so is a withdrawn one.
    assert_eq!(
        status_and_code(register_with(&app, &bea, &first).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    let id = second["id"].as_str().unwrap();
    let path = format!("{}/{id}", invitations(&project));
    assert_eq!(
        app.delete_as(&path, &owner.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_as(&path, &owner.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_and_code(register_with(&app, &bea, &token).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    // Nothing was created by the refused registers.
    assert_eq!(app.login(&bea, PASSWORD).await.status(), StatusCode::UNAUTHORIZED);

    // Members and viewers neither invite nor read invitations; strangers get 404.
    let member = app.account(&unique_email("mia")).await;
    app.add_member(&owner.token, &project, &member.email, "member")
        .await;
    assert_eq!(
        status_and_code(invite(&app, &member.token, &project, &bea, "viewer").await).await,
        (StatusCode::FORBIDDEN, "FORBIDDEN".into())
    );
    assert_eq!(
        app.get_as(&invitations(&project), &member.token).await.status(),
        StatusCode::FORBIDDEN
    );
    let stranger = app.account(&unique_email("eve")).await;
    assert_eq!(
        app.get_as(&invitations(&project), &stranger.token).await.status(),
        StatusCode::NOT_FOUND
    );
    // `owner` is not a role one is invited with.
    let r = invite(&app, &owner.token, &project, &bea, "owner").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["details"][0]["field"], "role");
}

#[tokio::test]
async fn register_with_an_invitation_creates_the_account_and_the_membership_at_once() {
    let app = spawn_app().await;
    let (owner, project) = owner_and_project(&app).await;
    let bea = unique_email("bea");
    invite(&app, &owner.token, &project, &bea, "member").await;
    let token = invitation_token(&app, &bea, 1).await;
    // For another address: refused, nothing created.
    let other = unique_email("cai");
    assert_eq!(
        status_and_code(register_with(&app, &other, &token).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    assert_eq!(
        app.login(&other, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let r = register_with(&app, &bea, &token).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let auth = json_body(r).await;
    assert_eq!(
        auth["user"]["emailVerified"], true,
        "the invitation reached the address"
    );
    let access = auth["accessToken"].as_str().unwrap();
    let got = app.get_ok(&format!("/api/v1/projects/{project}"), access).await;
    assert_eq!(got["myRole"], "member");
    // Used up.
    assert_eq!(
        status_and_code(register_with(&app, &unique_email("x"), &token).await).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
}

#[tokio::test]
async fn invite_only_registration_needs_a_valid_invitation_for_that_address() {
    // The owner registered while the instance was open; it restarts invite-only.
    let open = spawn_app().await;
    let (owner, project) = owner_and_project(&open).await;
    let bea = unique_email("bea");
    invite(&open, &owner.token, &project, &bea, "viewer").await;
    let token = invitation_token(&open, &bea, 1).await;
    let app = spawn_on(open.db.clone(), |vars| {
        vars.insert("KEEL_REGISTRATION".into(), "invite".into());
    })
    .await;
    let plain = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": bea, "password": PASSWORD, "name": "Bea"}),
            None,
        )
        .await;
    assert_eq!(
        status_and_code(plain).await,
        (StatusCode::FORBIDDEN, "FORBIDDEN".into())
    );
    for (email, raw) in [
        (unique_email("cai"), token.clone()),
        (
            bea.clone(),
            format!("{}.forged", token.split_once('.').unwrap().0),
        ),
        (bea.clone(), "junk".to_owned()),
    ] {
        let r = register_with(&app, &email, &raw).await;
        let (status, code) = status_and_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "FORBIDDEN"),
            "{email}"
        );
    }
    let r = register_with(&app, &bea, &token).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let access = json_body(r).await["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_ok(&format!("/api/v1/projects/{project}"), &access).await["myRole"],
        "viewer"
    );
}

/// What every error body of this file's routes looks like for an unusable token: no
/// token, no hint of why.
#[tokio::test]
async fn refusals_never_echo_the_token() {
    let app = spawn_app().await;
    let (owner, project) = owner_and_project(&app).await;
    let cai = app.account(&unique_email("cai")).await;
    let bea = unique_email("bea");
    invite(&app, &owner.token, &project, &bea, "viewer").await;
    let token = invitation_token(&app, &bea, 1).await;
    let secret = token.split_once('.').unwrap().1.to_owned();
    let bodies: Vec<Value> = vec![
        json_body(accept(&app, &cai, &token).await).await,
        json_body(register_with(&app, &unique_email("x"), &token).await).await,
        json_body(accept(&app, &cai, &format!("{token}!")).await).await,
    ];
    for body in bodies {
        assert!(!body.to_string().contains(&secret), "{body}");
    }
    // Nor does the admins' audit log.
    let admin = app.admin_token(&unique_email("root")).await;
    let log = app.get_ok("/api/v1/admin/audit-log?limit=100", &admin).await;
    assert!(!log.to_string().contains(&secret), "{log}");
}
