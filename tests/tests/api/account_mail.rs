//! Mail, password reset and e-mail verification (docs/api/identity.md, "Password reset",
//! "E-mail verification"; adr/0018). The mails really arrive: on the PostgreSQL run through
//! SMTP into `scripts/smtp-sink.py` (started by `scripts/services.sh`), on the SQLite run
//! as `.eml` files of the file transport; one test starts its own sink late, to show that a
//! mail queued while the SMTP server is away arrives once it is back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use keel_tests::{
    PASSWORD, SmtpSink, TestApp, closed_port, json_body, spawn_app, spawn_app_with, unique_email,
};

const FORGOT: &str = "/api/v1/auth/password/forgot";
const RESET: &str = "/api/v1/auth/password/reset";
const VERIFY: &str = "/api/v1/auth/email/verify";
const RESEND: &str = "/api/v1/auth/email/verify/resend";
const NEW_PASSWORD: &str = "N3w-passw0rd-x";

/// Registers `email`; returns its access token.
async fn register(app: &TestApp, email: &str) -> String {
    app.register(email).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body = json_body(response).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn profile(app: &TestApp, token: &str) -> Value {
    app.get_ok("/api/v1/auth/profile", token).await
}

/// The `n`-th mail to `email` with `subject` (waiting for it).
async fn mail_with_subject(app: &TestApp, email: &str, subject: &str, n: usize) -> keel_tests::ReceivedMail {
    for _ in 0..300 {
        let mails: Vec<_> = app
            .mails_to(email)
            .into_iter()
            .filter(|m| m.subject == subject)
            .collect();
        if mails.len() >= n {
            return mails[n - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail {n} to {email} with subject {subject:?}");
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json(FORGOT, &json!({ "email": email }), None).await
}

/// The value of `mail_deliveries_total{outcome}` on `app`'s `/metrics`.
async fn deliveries(app: &TestApp, outcome: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let prefix = format!("mail_deliveries_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test]
async fn register_mails_a_verification_link_that_verifies_the_e_mail_once() {
    let app = spawn_app().await;
    let email = unique_email("ann");
    let token = register(&app, &email).await;
    assert_eq!(profile(&app, &token).await["emailVerified"], false);

    let mail = mail_with_subject(&app, &email, "Confirm your e-mail address", 1).await;
    assert!(mail.headers.contains("multipart/alternative"), "{}", mail.headers);
    assert!(mail.body.contains("text/html") && mail.body.contains("text/plain"));
    assert!(
        mail.body.contains("http://127.0.0.1:0/verify-email?token="),
        "the link starts with KEEL_PUBLIC_URL: {}",
        mail.body
    );
    assert!(mail.message_id.starts_with('<'), "{}", mail.headers);
    let link_token = mail.token().expect("a token in the link");

    let verified = app.post_json(VERIFY, &json!({ "token": link_token }), None).await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    assert_eq!(profile(&app, &token).await["emailVerified"], true);

    // Once only.
    let again = app.post_json(VERIFY, &json!({ "token": link_token }), None).await;
    assert_eq!(
        status_and_code(again).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    assert!(deliveries(&app, "sent").await >= 1);
}

#[tokio::test]
async fn a_reset_link_sets_the_password_once_and_signs_out_everywhere() {
    let app = spawn_app().await;
    let email = unique_email("bob");
    let first = register(&app, &email).await;
    let second = app.login_ok(&email).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = forgot(&app, &email).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(response).await, json!({"status": "accepted"}));
    let mail = mail_with_subject(&app, &email, "Reset your password", 1).await;
    assert!(mail.body.contains("/reset-password?token="), "{}", mail.body);
    let reset_token = mail.token().unwrap();

    let weak = app
        .post_json(RESET, &json!({"token": reset_token, "newPassword": "weak"}), None)
        .await;
    assert_eq!(
        status_and_code(weak).await,
        (StatusCode::BAD_REQUEST, "VALIDATION_ERROR".into())
    );
    let reset = app
        .post_json(
            RESET,
            &json!({"token": reset_token, "newPassword": NEW_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);

    // Every session is revoked, at once.
    for token in [&first, &second] {
        let r = app.get_as("/api/v1/auth/profile", token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = app.login(&email, NEW_PASSWORD).await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let fresh = json_body(fresh).await;
    assert_eq!(fresh["user"]["emailVerified"], true, "the link reached the inbox");

    // Once only.
    let again = app
        .post_json(
            RESET,
            &json!({"token": reset_token, "newPassword": "An0ther-passw0rd"}),
            None,
        )
        .await;
    let status = again.status();
    let text = again.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("INVALID_TOKEN"), "{text}");
    assert!(
        !text.contains(&reset_token),
        "an error body never repeats the token"
    );
    assert_eq!(
        app.login(&email, "An0ther-passw0rd").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The audit log records it, with no token.
    let admin = app.admin_token(&unique_email("admin")).await;
    let log = app
        .get_as("/api/v1/admin/audit-log?limit=100", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("auth.password.reset_requested") && log.contains("auth.password.reset"));
    let secret = reset_token.split('.').nth(1).unwrap();
    assert!(!log.contains(secret), "no token in the audit log");
}

#[tokio::test]
async fn forgot_answers_an_unknown_e_mail_identically_and_mails_nothing() {
    let app = spawn_app().await;
    let known = unique_email("cid");
    register(&app, &known).await;
    let unknown = unique_email("nobody");

    let a = forgot(&app, &known).await;
    let b = forgot(&app, &unknown).await;
    let c = forgot(&app, "not an address").await;
    let mut answers = Vec::new();
    for r in [a, b, c] {
        let status = r.status();
        let cache = r.headers().get("cache-control").cloned();
        answers.push((status, cache, r.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");

    // The known account's mail arrives; by then the unknown one's would have too.
    mail_with_subject(&app, &known, "Reset your password", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.mails_to(&unknown).is_empty());
}

#[tokio::test]
async fn unknown_malformed_and_wrong_purpose_tokens_are_invalid_tokens() {
    let app = spawn_app().await;
    let email = unique_email("dee");
    register(&app, &email).await;
    let verification = mail_with_subject(&app, &email, "Confirm your e-mail address", 1)
        .await
        .token()
        .unwrap();
    // A verification token does not reset a password, nor the reverse.
    let r = app
        .post_json(
            RESET,
            &json!({"token": verification, "newPassword": NEW_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    forgot(&app, &email).await;
    let reset = mail_with_subject(&app, &email, "Reset your password", 1)
        .await
        .token()
        .unwrap();
    let r = app.post_json(VERIFY, &json!({ "token": reset }), None).await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
    // Forged and malformed ones.
    let (id, _) = verification.split_once('.').unwrap();
    for bad in [
        format!("{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "0190c8a27d4b7c1e9f3a2b5d6e7f8a9b.x".to_owned(),
        "garbage".to_owned(),
        String::new(),
    ] {
        let r = app.post_json(VERIFY, &json!({ "token": bad }), None).await;
        assert_eq!(
            status_and_code(r).await,
            (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into()),
            "{bad}"
        );
    }
    // The real one still works (the wrong tries did not use it up).
    let r = app
        .post_json(VERIFY, &json!({ "token": verification }), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn resend_mails_a_new_link_to_a_signed_in_session_and_refuses_a_personal_access_token() {
    let app = spawn_app().await;
    let email = unique_email("eve");
    let token = register(&app, &email).await;
    mail_with_subject(&app, &email, "Confirm your e-mail address", 1).await;

    let r = app.post_json(RESEND, &json!({}), Some(&token)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(r).await, json!({"status": "accepted"}));
    let second = mail_with_subject(&app, &email, "Confirm your e-mail address", 2).await;

    let pat = app
        .created(
            "/api/v1/auth/tokens",
            &json!({"name": "ci", "scopes": ["write"]}),
            &token,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.post_json(RESEND, &json!({}), Some(&pat)).await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
    );
    let r = app.post_json(RESEND, &json!({}), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The newer link verifies; the older one was used up with it.
    let r = app
        .post_json(VERIFY, &json!({ "token": second.token().unwrap() }), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let first = mail_with_subject(&app, &email, "Confirm your e-mail address", 1).await;
    let r = app
        .post_json(VERIFY, &json!({ "token": first.token().unwrap() }), None)
        .await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );
}

#[tokio::test]
async fn forgot_counts_against_the_login_limit() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "3/15m".into());
    })
    .await;
    let email = unique_email("fay");
    register(&app, &email).await;
    for _ in 0..2 {
        assert_eq!(forgot(&app, &email).await.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    let limited = forgot(&app, &email).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_mail_queued_while_the_smtp_server_is_away_arrives_when_it_is_back() {
    let port = closed_port();
    let app = spawn_app_with(|vars| {
        vars.remove("KEEL_MAIL_DIR");
        vars.insert(
            "KEEL_SMTP_URL".into(),
            format!("smtp://127.0.0.1:{port}?starttls=false"),
        );
        vars.insert("KEEL_MAIL_RETRY_BASE_SECS".into(), "1".into());
        vars.insert("KEEL_PUBLIC_URL".into(), "https://keel.example.com".into());
    })
    .await;
    let email = unique_email("gus");
    register(&app, &email).await;

    // Nobody listens: the attempt fails and the mail waits for a retry.
    for _ in 0..200 {
        if deliveries(&app, "retried").await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deliveries(&app, "retried").await >= 1, "an attempt failed");
    assert_eq!(deliveries(&app, "sent").await, 0);

    // The server comes back on its address: the mail arrives with the next retry.
    let sink = SmtpSink::start_on(port).await;
    let mails = keel_tests::wait_for_mails(&sink.dir(), &email, 1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Confirm your e-mail address");
    assert!(
        mails[0]
            .body
            .contains("https://keel.example.com/verify-email?token=")
    );
    let token = mails[0].token().unwrap();
    let r = app.post_json(VERIFY, &json!({ "token": token }), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(deliveries(&app, "sent").await, 1);
    // Sent once: a second look finds no duplicate.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(keel_tests::mails_to(&sink.dir(), &email).len(), 1);
}

#[tokio::test]
async fn with_registration_closed_an_admin_creates_an_account_whose_owner_sets_the_password_by_mail() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_REGISTRATION".into(), "closed".into());
    })
    .await;
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": unique_email("x"), "password": PASSWORD, "name": "Xi"}),
            None,
        )
        .await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::FORBIDDEN, "FORBIDDEN".into())
    );

    // The first admin comes from `keel admin create`; here, promoted in the database.
    let admin = {
        let db = sea_orm::Database::connect(&app.db.url).await.unwrap();
        let id = uuid::Uuid::now_v7();
        let email = unique_email("root");
        use sea_orm::ActiveValue::Set;
        use sea_orm::EntityTrait;
        keel_infrastructure::entities::users::Entity::insert(
            keel_infrastructure::entities::users::ActiveModel {
                id: Set(id),
                email: Set(email.clone()),
                name: Set("Root".into()),
                role: Set("admin".into()),
                status: Set("active".into()),
                password_hash: Set(String::new()),
                email_verified: Set(false),
                created_at: Set(chrono::Utc::now()),
                updated_at: Set(chrono::Utc::now()),
            },
        )
        .exec_without_returning(&db)
        .await
        .unwrap();
        db.close().await.ok();
        // Its password, set the way a created account's owner sets it.
        forgot(&app, &email).await;
        let token = mail_with_subject(&app, &email, "Reset your password", 1)
            .await
            .token()
            .unwrap();
        let r = app
            .post_json(RESET, &json!({"token": token, "newPassword": NEW_PASSWORD}), None)
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let signed_in = json_body(app.login(&email, NEW_PASSWORD).await).await;
        signed_in["accessToken"].as_str().unwrap().to_owned()
    };

    let bea = unique_email("bea");
    let r = app
        .post_json(
            "/api/v1/admin/users",
            &json!({"email": bea, "name": "Bea", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created = json_body(r).await;
    assert_eq!(
        location,
        format!("/api/v1/admin/users/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(
        (created["role"].as_str(), created["emailVerified"].as_bool()),
        (Some("user"), Some(false))
    );
    let again = app
        .post_json(
            "/api/v1/admin/users",
            &json!({"email": bea, "name": "Bea", "role": "user"}),
            Some(&admin),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let mail = mail_with_subject(&app, &bea, "Your account is ready", 1).await;
    assert!(mail.body.contains("/reset-password?token=") && mail.body.contains("7 days"));
    let token = mail.token().unwrap();
    let r = app
        .post_json(RESET, &json!({"token": token, "newPassword": NEW_PASSWORD}), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let signed_in = app.login(&bea, NEW_PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert_eq!(json_body(signed_in).await["user"]["emailVerified"], true);
    let r = app
        .post_json(
            RESET,
            &json!({"token": token, "newPassword": "An0ther-passw0rd"}),
            None,
        )
        .await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::BAD_REQUEST, "INVALID_TOKEN".into())
    );

    // Only an admin creates accounts.
    let bea_token = json_body(app.login(&bea, NEW_PASSWORD).await).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post_json(
            "/api/v1/admin/users",
            &json!({"email": unique_email("cy"), "name": "Cy", "role": "user"}),
            Some(&bea_token),
        )
        .await;
    assert_eq!(
        status_and_code(r).await,
        (StatusCode::FORBIDDEN, "FORBIDDEN".into())
    );
}
