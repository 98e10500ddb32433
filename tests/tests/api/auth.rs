//! `/api/v1/auth/*` as a client sees it (docs/api/identity.md).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_tests::{PASSWORD, TEST_JWT_SECRET, TestApp, spawn_app, spawn_app_with, spawn_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Signs `claims` with the server's secret (HS256), as an attacker who knows it could not.
fn forge(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The payload of a token, decoded without verification.
fn payload(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn profile_status(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let response = app.get_as("/api/v1/auth/profile", token).await;
    let status = response.status();
    (status, body(response).await)
}

#[tokio::test]
async fn register_signs_the_new_user_in() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "  Ann@Example.COM ", "password": PASSWORD, "name": " Ann "}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/api/v1/auth/profile");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let auth = body(response).await;
    assert_eq!(auth["user"]["email"], "ann@example.com");
    assert_eq!(auth["user"]["name"], "Ann");
    assert_eq!(auth["user"]["role"], "user");
    assert_eq!(auth["user"]["status"], "active");
    assert_eq!(auth["tokenType"], "Bearer");
    assert_eq!(auth["expiresIn"], 900);
    assert!(auth["user"].get("passwordHash").is_none());

    let (status, me) = profile_status(&app, auth["accessToken"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], auth["user"]["id"]);
}

#[tokio::test]
async fn register_reports_every_bad_field_and_creates_nothing() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "nope", "password": "short", "name": " A "}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = body(response).await;
    assert_eq!(error["code"], "VALIDATION_ERROR");
    let fields: Vec<&str> = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);

    for weak in ["alllowercase1", "ALLUPPERCASE1", "NoDigitsHere", "Sh0rt"] {
        let response = app
            .post_json(
                "/api/v1/auth/register",
                &json!({"email": "b@example.com", "password": weak, "name": "Bob"}),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{weak}");
    }
    assert_eq!(
        app.login("b@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn register_cannot_set_a_role() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "eve@example.com", "password": PASSWORD, "name": "Eve", "role": "admin"}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(response).await["details"][0]["field"], "role");
    assert_eq!(
        app.login("eve@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "nothing was created"
    );
}

#[tokio::test]
async fn an_email_is_taken_whatever_its_case() {
    let app = spawn_app().await;
    app.register("ann@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "ANN@example.com", "password": PASSWORD, "name": "Ann"}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(body(response).await["code"], "CONFLICT");
}

#[tokio::test]
async fn login_returns_401_with_the_same_body_for_unknown_email_and_wrong_password() {
    let app = spawn_app().await;
    app.register("ann@example.com").await;
    let wrong = app.login("ann@example.com", "Wrong-passw0rd").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (wrong, unknown) = (body(wrong).await, body(unknown).await);
    for key in ["error", "code", "details"] {
        assert_eq!(wrong[key], unknown[key], "{key}");
    }
    assert_eq!(wrong["code"], "INVALID_CREDENTIALS");

    let ok = app.login_ok("ANN@example.com").await;
    assert!(ok["accessToken"].is_string());
}

#[tokio::test]
async fn login_attempts_are_limited_per_ip_and_email() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "3/15m".into());
    })
    .await;
    app.register("ann@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            app.login("ann@example.com", "Wrong-passw0rd").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(
        limited.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Up to a window and a third: the rest of this window, then this one weighs in as the
    // previous one (sliding window counter, adr/0008) until 3 × (1 - e/900) + 1 ≤ 3.
    assert!(retry_after > 0 && retry_after <= 1200, "{retry_after}");
    assert_eq!(body(limited).await["code"], "RATE_LIMITED");
    // Another e-mail from the same address has its own budget.
    assert_eq!(
        app.login("other@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn protected_routes_refuse_missing_forged_expired_and_misdirected_tokens() {
    let app = spawn_app().await;
    let auth = app.register("ann@example.com").await;
    let access = auth["accessToken"].as_str().unwrap();
    let claims = payload(access);

    let no_token = app.get("/api/v1/auth/profile").await;
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(no_token).await["code"], "UNAUTHORIZED");

    let mut tampered = access.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header_none}.{}.", access.split('.').nth(1).unwrap());
    let other_secret = forge(&claims, "a-completely-different-secret-of-32-bytes");
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("another-service");
    let other_audience = forge(&other_audience, TEST_JWT_SECRET);
    let refresh_as_access = auth["refreshToken"].as_str().unwrap().to_owned();

    for (what, token) in [
        ("garbage", "not-a-jwt".to_owned()),
        ("tampered signature", tampered),
        ("alg none", alg_none),
        ("another secret", other_secret),
        ("another audience", other_audience),
        ("refresh token as access token", refresh_as_access),
    ] {
        let (status, error) = profile_status(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(error["code"], "UNAUTHORIZED", "{what}");
    }

    let mut expired = claims.clone();
    let now = chrono_now();
    expired["iat"] = json!(now - 3600);
    expired["nbf"] = json!(now - 3600);
    expired["exp"] = json!(now - 1800);
    let (status, error) = profile_status(&app, &forge(&expired, TEST_JWT_SECRET)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["code"], "TOKEN_EXPIRED");

    // The genuine token still works.
    assert_eq!(profile_status(&app, access).await.0, StatusCode::OK);
}

fn chrono_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let auth = app.register("ann@example.com").await;
    let first = auth["refreshToken"].as_str().unwrap();

    let rotated = app
        .post_json("/api/v1/auth/refresh", &json!({"refreshToken": first}), None)
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let rotated = body(rotated).await;
    let second = rotated["refreshToken"].as_str().unwrap();
    assert_ne!(second, first);
    let new_access = rotated["accessToken"].as_str().unwrap();
    assert_eq!(profile_status(&app, new_access).await.0, StatusCode::OK);

    let replay = app
        .post_json("/api/v1/auth/refresh", &json!({"refreshToken": first}), None)
        .await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(replay).await["code"], "TOKEN_REUSED");

    // After reuse detection the newest tokens of that session fail too.
    let newest = app
        .post_json("/api/v1/auth/refresh", &json!({"refreshToken": second}), None)
        .await;
    assert_eq!(newest.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(profile_status(&app, new_access).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_let_at_most_one_through() {
    let app = spawn_app().await;
    let auth = app.register("ann@example.com").await;
    let token = auth["refreshToken"].as_str().unwrap();
    let refresh = json!({"refreshToken": token});
    let request = || app.post_json("/api/v1/auth/refresh", &refresh, None);
    let (a, b) = tokio::join!(request(), request());
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "exactly one rotation wins");
}

#[tokio::test]
async fn an_access_token_is_not_a_refresh_token() {
    let app = spawn_app().await;
    let auth = app.register("ann@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refreshToken": auth["accessToken"]}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_refuses_the_old_access_token_at_once_and_spares_other_sessions() {
    let app = spawn_app().await;
    let first = app.register("ann@example.com").await;
    let second = app.login_ok("ann@example.com").await;
    let (a1, a2) = (
        first["accessToken"].as_str().unwrap(),
        second["accessToken"].as_str().unwrap(),
    );

    let out = app.post_json("/api/v1/auth/logout", &json!({}), Some(a1)).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(profile_status(&app, a1).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(profile_status(&app, a2).await.0, StatusCode::OK);
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refreshToken": first["refreshToken"]}),
            None,
        )
        .await;
    assert_eq!(
        refresh.status(),
        StatusCode::UNAUTHORIZED,
        "the session's refresh token died with it"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = spawn_app().await;
    let first = app.register("ann@example.com").await;
    let second = app.login_ok("ann@example.com").await;
    let a2 = second["accessToken"].as_str().unwrap();
    assert_eq!(
        app.post_json("/api/v1/auth/logout-all", &json!({}), Some(a2))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for token in [first["accessToken"].as_str().unwrap(), a2] {
        assert_eq!(profile_status(&app, token).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_password_change_revokes_the_other_sessions_and_keeps_this_one() {
    let app = spawn_app().await;
    let other = app.register("ann@example.com").await;
    let this = app.login_ok("ann@example.com").await;
    let token = this["accessToken"].as_str().unwrap();

    let wrong = app
        .post_json(
            "/api/v1/auth/password",
            &json!({"currentPassword": "Nope-nope1", "newPassword": "New-passw0rd"}),
            Some(token),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(wrong).await["code"], "INVALID_CREDENTIALS");
    let weak = app
        .post_json(
            "/api/v1/auth/password",
            &json!({"currentPassword": PASSWORD, "newPassword": "weak"}),
            Some(token),
        )
        .await;
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(weak).await["details"][0]["field"], "newPassword");

    let changed = app
        .post_json(
            "/api/v1/auth/password",
            &json!({"currentPassword": PASSWORD, "newPassword": "New-passw0rd"}),
            Some(token),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        profile_status(&app, token).await.0,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        profile_status(&app, other["accessToken"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ann@example.com", "New-passw0rd").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sessions_are_listed_and_one_can_be_revoked() {
    let app = spawn_app().await;
    let other = app.register("ann@example.com").await;
    let this = app.login_ok("ann@example.com").await;
    let token = this["accessToken"].as_str().unwrap();

    let list = body(app.get_as("/api/v1/auth/sessions", token).await).await;
    let sessions = list["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let path = format!("/api/v1/auth/sessions/{other_id}");
    assert_eq!(
        app.send(Method::DELETE, &path, None, Some(token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        profile_status(&app, other["accessToken"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(Method::DELETE, &path, None, Some(token)).await.status(),
        StatusCode::NOT_FOUND
    );

    // Someone else's session is a 404 too, and a malformed id a 400.
    let eve = app.register("eve@example.com").await;
    let eve_token = eve["accessToken"].as_str().unwrap();
    let eve_session = body(app.get_as("/api/v1/auth/sessions", eve_token).await).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = app
        .send(
            Method::DELETE,
            &format!("/api/v1/auth/sessions/{eve_session}"),
            None,
            Some(token),
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(profile_status(&app, eve_token).await.0, StatusCode::OK);
    let bad = app
        .send(
            Method::DELETE,
            "/api/v1/auth/sessions/not-a-uuid",
            None,
            Some(token),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_profile_name_can_be_changed_within_the_rules() {
    let app = spawn_app().await;
    let auth = app.register("ann@example.com").await;
    let token = auth["accessToken"].as_str().unwrap();
    let ok = app
        .send(
            Method::PATCH,
            "/api/v1/auth/profile",
            Some(&json!({"name": " Annie "})),
            Some(token),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(body(ok).await["name"], "Annie");
    for bad in [
        json!({"name": "A"}),
        json!({"name": "Ann", "email": "x@y.z"}),
        json!({}),
    ] {
        let response = app
            .send(Method::PATCH, "/api/v1/auth/profile", Some(&bad), Some(token))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(profile_status(&app, token).await.1["name"], "Annie");
}

#[tokio::test]
async fn auth_failures_are_counted_by_reason() {
    let app = spawn_app().await;
    app.register("ann@example.com").await;
    app.login("ann@example.com", "Wrong-passw0rd").await;
    app.get("/api/v1/auth/profile").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"auth_failures_total{reason="invalid_credentials"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auth_failures_total{reason="unauthorized"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_signed_before_a_jwt_secret_rotation_pass_only_while_the_old_secret_is_listed() {
    const NEW_SECRET: &str = "rotated-secret-0123456789abcdef-0123456789";
    let before = spawn_app().await;
    let auth = before.register("ann@example.com").await;
    let (access, refresh) = (
        auth["accessToken"].as_str().unwrap(),
        auth["refreshToken"].as_str().unwrap(),
    );
    before.stop().await;

    // Restarted with the new secret alone: the old tokens are someone else's.
    let new_only = spawn_on(before.db.clone(), |vars| {
        vars.insert("KEEL_JWT_SECRET".into(), NEW_SECRET.into());
    })
    .await;
    let (status, error) = profile_status(&new_only, access).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED"))
    );
    let refused = new_only
        .post_json("/api/v1/auth/refresh", &json!({"refreshToken": refresh}), None)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(refused).await["code"], "UNAUTHORIZED");

    // Restarted with the old secret listed as previous: both old tokens still work.
    let rotated = spawn_on(before.db.clone(), |vars| {
        vars.insert("KEEL_JWT_SECRET".into(), NEW_SECRET.into());
        vars.insert("KEEL_JWT_SECRET_PREVIOUS".into(), TEST_JWT_SECRET.into());
    })
    .await;
    let (status, me) = profile_status(&rotated, access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], auth["user"]["id"]);
    let renewed = rotated
        .post_json("/api/v1/auth/refresh", &json!({"refreshToken": refresh}), None)
        .await;
    assert_eq!(renewed.status(), StatusCode::OK);
    let renewed = body(renewed).await;

    // What the rotated server issues is signed with the new secret: the server that knows
    // only the new secret accepts it.
    let new_access = renewed["accessToken"].as_str().unwrap();
    assert_eq!(profile_status(&new_only, new_access).await.0, StatusCode::OK);
    let again = new_only
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refreshToken": renewed["refreshToken"]}),
            None,
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
}
