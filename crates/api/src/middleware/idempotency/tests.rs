//! The middleware over the real SeaORM store on a fresh, migrated database (SQLite, or
//! PostgreSQL with `KEEL_TEST_DATABASE_URL`), in front of a tiny create handler registered at
//! one of the idempotent patterns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse};
use chrono::{SubsecRound, TimeDelta, Utc};
use keel_domain::FieldError;
use keel_domain::idempotency::RETENTION;
use keel_domain::identity::{Principal, Role};
use keel_infrastructure::clock::SystemClock;
use keel_infrastructure::idempotency::SeaOrmIdempotencyStore;
use keel_infrastructure::{Database, DbSettings, migrate};
use serde_json::{Value, json};

use super::*;
use crate::caller::{Authentication, Refusal, bearer};
use crate::middleware::request_context;

const PROJECTS: &str = "/api/v1/projects";

struct Harness {
    guard: Idempotency,
    store: Arc<SeaOrmIdempotencyStore>,
    calls: web::Data<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A fresh, migrated database: a SQLite file, or a new PostgreSQL database when
    /// `KEEL_TEST_DATABASE_URL` is set.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match std::env::var("KEEL_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) => {
                use sea_orm::ConnectionTrait;
                let name = format!("keel_test_{}", Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0)
            }
            None => format!("sqlite://{}/keel.db?mode=rwc", dir.path().display()),
        };
        let db = Database::connect(
            &DbSettings {
                url,
                max_connections: 5,
                min_connections: 0,
                connect_timeout: Duration::from_secs(5),
                acquire_timeout: Duration::from_secs(5),
            },
            None,
        )
        .await
        .unwrap();
        migrate::up(&db).await.unwrap();
        let store = Arc::new(SeaOrmIdempotencyStore::new(db));
        Self {
            guard: Idempotency::new(store.clone(), Arc::new(SystemClock)),
            store,
            calls: web::Data::new(AtomicUsize::new(0)),
            _dir: dir,
        }
    }

    /// A bearer the stand-in `caller` middleware of [`app!`] takes for `user_id`'s live
    /// principal.
    fn token(&self, user_id: Uuid) -> String {
        format!("user:{user_id}")
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Counts its calls; a `name` of "" is a 400; `sleepMs` holds the request open; otherwise 201
/// with a `Location`, an `ETag` and a body naming a fresh id.
async fn create(calls: web::Data<AtomicUsize>, body: Bytes) -> Result<HttpResponse, ApiError> {
    calls.fetch_add(1, Ordering::SeqCst);
    let input: Value = serde_json::from_slice(&body).unwrap_or_default();
    if input["name"] == "" {
        return Err(ApiError::validation(vec![FieldError::new("name", "is required")]));
    }
    if let Some(ms) = input["sleepMs"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let id = Uuid::new_v4();
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("{PROJECTS}/{id}")))
        .insert_header((header::ETAG, format!("\"{id}\"")))
        .insert_header(("x-not-replayed", "1"))
        .json(json!({"id": id, "name": input["name"]})))
}

/// The route wrapped in the middleware, as the route table does for a route flagged
/// `idempotent` (with the harness's own store instead of the application state's).
fn idempotent(route: actix_web::Route, guard: &Idempotency) -> actix_web::Route {
    let guard = guard.clone();
    route.wrap(from_fn(move |req: ServiceRequest, next: Next<_>| {
        let guard = guard.clone();
        async move { guard.handle(req, next).await }
    }))
}

macro_rules! app {
    ($h:expr) => {{
        let guard = $h.guard.clone();
        test::init_service(
            App::new()
                .app_data($h.calls.clone())
                .wrap(from_fn(stand_in_caller))
                .wrap(from_fn(request_context))
                .service(web::resource(PROJECTS).route(idempotent(web::post().to(create), &guard)))
                .service(
                    web::resource("/api/v1/projects/{id}/tasks")
                        .route(idempotent(web::post().to(create), &guard)),
                )
                // Not flagged idempotent: never touched.
                .service(web::resource("/api/v1/auth/register").route(web::post().to(create))),
        )
        .await
    }};
}

/// The `caller` middleware without a store: `Bearer user:<uuid>` is that user's live
/// principal, any other bearer a refused (revoked, forged) credential.
async fn stand_in_caller(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let authentication = match bearer(req.request()) {
        None => Authentication::Anonymous,
        Some(token) => match token.strip_prefix("user:").and_then(|id| id.parse().ok()) {
            Some(user_id) => Authentication::Principal(Principal {
                user_id,
                session_id: Uuid::nil(),
                role: Role::User,
                expires_at: Utc::now() + TimeDelta::minutes(15),
                grant: None,
            }),
            None => Authentication::Refused(Refusal::Unauthorized),
        },
    };
    req.extensions_mut().insert(Caller {
        authentication,
        ip: None,
    });
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn post(path: &str, token: Option<&str>, key: Option<&str>, body: &str) -> TestRequest {
    let mut req = TestRequest::post()
        .uri(path)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.to_owned());
    if let Some(token) = token {
        req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
    }
    if let Some(key) = key {
        req = req.insert_header((IDEMPOTENCY_KEY, key));
    }
    req
}

struct Answer {
    status: u16,
    location: Option<String>,
    etag: Option<String>,
    replayed: bool,
    other: bool,
    body: Value,
}

async fn answer<B: MessageBody>(response: ServiceResponse<B>) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, etag) = (header("location"), header("etag"));
    let replayed = header("idempotency-replayed").as_deref() == Some("true");
    let other = header("x-not-replayed").is_some();
    let status = response.status().as_u16();
    let bytes = test::read_body(response).await;
    Answer {
        status,
        location,
        etag,
        replayed,
        other,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Sends a [`TestRequest`] to the app and reads the [`Answer`].
macro_rules! send {
    ($app:expr, $req:expr $(,)?) => {
        answer(test::call_service($app, $req.to_request()).await)
    };
}

#[actix_web::test]
async fn the_same_key_and_body_replays_the_first_response_and_runs_the_handler_once() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let body = r#"{"name": "Apollo"}"#;

    let first = send!(&app, post(PROJECTS, Some(&token), Some("key-1"), body)).await;
    let second = send!(&app, post(PROJECTS, Some(&token), Some("key-1"), body)).await;

    assert_eq!(first.status, 201);
    assert!(!first.replayed);
    assert!(first.location.is_some());
    assert_eq!(second.status, 201);
    assert!(second.replayed);
    assert_eq!(second.location, first.location);
    assert_eq!(second.etag, first.etag);
    assert_eq!(second.body, first.body);
    assert!(
        first.other && !second.other,
        "only Location, ETag and Content-Type are replayed"
    );
    assert_eq!(h.calls(), 1);
}

#[actix_web::test]
async fn the_same_key_with_another_body_is_a_409_in_the_contract_shape() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    send!(
        &app,
        post(PROJECTS, Some(&token), Some("k"), r#"{"name": "Apollo"}"#)
    )
    .await;

    // The exact bytes count: the same JSON written differently is another body.
    let other = send!(
        &app,
        post(PROJECTS, Some(&token), Some("k"), r#"{"name":"Apollo"}"#)
    )
    .await;

    assert_eq!(other.status, 409);
    assert_eq!(other.body["code"], "CONFLICT");
    assert_eq!(
        other.body["error"],
        "Idempotency-Key was used with another request body"
    );
    assert_eq!(other.body["path"], PROJECTS);
    assert!(other.body["requestId"].is_string());
    assert_eq!(h.calls(), 1);
}

#[actix_web::test]
async fn the_same_key_on_another_path_is_another_request() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let body = r#"{"name": "x"}"#;
    send!(&app, post(PROJECTS, Some(&token), Some("k"), body)).await;
    let tasks = send!(
        &app,
        post("/api/v1/projects/5f0c/tasks", Some(&token), Some("k"), body),
    )
    .await;
    assert_eq!(tasks.status, 409);
    assert_eq!(h.calls(), 1);
}

#[actix_web::test]
async fn keys_of_different_users_are_independent() {
    let h = Harness::new().await;
    let app = app!(h);
    let (alice, bob) = (h.token(Uuid::new_v4()), h.token(Uuid::new_v4()));
    let body = r#"{"name": "Apollo"}"#;

    let a = send!(&app, post(PROJECTS, Some(&alice), Some("shared"), body)).await;
    let b = send!(&app, post(PROJECTS, Some(&bob), Some("shared"), body)).await;

    assert_eq!((a.status, b.status), (201, 201));
    assert!(!b.replayed);
    assert_ne!(a.body["id"], b.body["id"]);
    assert_eq!(h.calls(), 2);
}

#[actix_web::test]
async fn without_a_key_or_a_valid_token_or_on_other_routes_the_handler_runs_every_time() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let body = r#"{"name": "Apollo"}"#;

    for req in [
        post(PROJECTS, Some(&token), None, body),
        post(PROJECTS, Some(&token), None, body),
        post(PROJECTS, None, Some("k"), body),
        post(PROJECTS, None, Some("k"), body),
        post(PROJECTS, Some("not-a-jwt"), Some("k"), body),
        post("/api/v1/auth/register", Some(&token), Some("k2"), body),
        post("/api/v1/auth/register", Some(&token), Some("k2"), body),
    ] {
        let a = send!(&app, req).await;
        assert_eq!(a.status, 201);
        assert!(!a.replayed);
    }
    assert_eq!(h.calls(), 7);
}

#[actix_web::test]
async fn a_failed_request_is_not_stored_so_a_retry_runs_again() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());

    let bad = send!(&app, post(PROJECTS, Some(&token), Some("k"), r#"{"name": ""}"#)).await;
    let again = send!(&app, post(PROJECTS, Some(&token), Some("k"), r#"{"name": ""}"#)).await;
    let fixed = send!(&app, post(PROJECTS, Some(&token), Some("k"), r#"{"name": "ok"}"#)).await;

    assert_eq!((bad.status, again.status), (400, 400));
    assert_eq!(bad.body["details"][0]["field"], "name");
    assert_eq!(fixed.status, 201);
    assert!(!fixed.replayed);
    assert_eq!(h.calls(), 3);
}

#[actix_web::test]
async fn an_invalid_key_is_a_400_naming_the_header() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let too_long = "k".repeat(256);

    for key in ["", "has space", too_long.as_str()] {
        let a = send!(&app, post(PROJECTS, Some(&token), Some(key), "{}")).await;
        assert_eq!(a.status, 400, "{key:?}");
        assert_eq!(a.body["code"], "VALIDATION_ERROR");
        assert_eq!(a.body["details"][0]["field"], "Idempotency-Key");
    }
    let twice = TestRequest::post()
        .uri(PROJECTS)
        .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
        .append_header((IDEMPOTENCY_KEY, "a"))
        .append_header((IDEMPOTENCY_KEY, "b"))
        .set_payload("{}");
    assert_eq!(send!(&app, twice).await.status, 400);
    assert_eq!(h.calls(), 0);
}

#[actix_web::test]
async fn a_claim_older_than_24_hours_is_replaced() {
    let h = Harness::new().await;
    let app = app!(h);
    let user = Uuid::new_v4();
    let token = h.token(user);
    let old = Utc::now().trunc_subsecs(6) - RETENTION - TimeDelta::minutes(1);
    let key = IdempotencyKey::parse("k").unwrap();
    let Claim::Acquired(claim) = h.store.claim(user, &key, &[7; 32], old).await.unwrap() else {
        panic!("fresh key not acquired");
    };
    let stored = StoredResponse {
        status: 201,
        headers: vec![("location".into(), "/api/v1/projects/old".into())],
        body: b"{\"id\": \"old\"}".to_vec(),
    };
    assert!(h.store.complete(user, &key, claim, &stored).await.unwrap());

    let a = send!(
        &app,
        post(PROJECTS, Some(&token), Some("k"), r#"{"name": "new"}"#)
    )
    .await;

    assert_eq!(a.status, 201);
    assert!(!a.replayed);
    assert_ne!(a.location.as_deref(), Some("/api/v1/projects/old"));
    assert_eq!(h.calls(), 1);
}

#[actix_web::test]
async fn purge_removes_only_keys_older_than_24_hours() {
    let h = Harness::new().await;
    let app = app!(h);
    let user = Uuid::new_v4();
    let token = h.token(user);
    let key = IdempotencyKey::parse("old").unwrap();
    let old = Utc::now().trunc_subsecs(6) - RETENTION - TimeDelta::minutes(1);
    h.store.claim(user, &key, &[7; 32], old).await.unwrap();
    let body = r#"{"name": "kept"}"#;
    send!(&app, post(PROJECTS, Some(&token), Some("young"), body)).await;

    let purged = h.store.purge_expired(Utc::now() - RETENTION).await.unwrap();

    assert_eq!(purged, 1);
    let replay = send!(&app, post(PROJECTS, Some(&token), Some("young"), body)).await;
    assert!(replay.replayed);
    assert_eq!(h.calls(), 1);
}

#[actix_web::test]
async fn of_two_duplicates_in_flight_one_runs_and_the_other_is_refused_or_replayed() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let body = r#"{"name": "slow", "sleepMs": 300}"#;

    let (a, b) = futures::join!(
        send!(&app, post(PROJECTS, Some(&token), Some("dup"), body)),
        send!(&app, post(PROJECTS, Some(&token), Some("dup"), body)),
    );

    assert_eq!(h.calls(), 1);
    let (ran, other) = if a.replayed || a.status == 409 {
        (b, a)
    } else {
        (a, b)
    };
    assert_eq!(ran.status, 201);
    match other.status {
        409 => assert_eq!(
            other.body["error"],
            "a request with this Idempotency-Key is still in progress"
        ),
        201 => assert!(other.replayed && other.body == ran.body),
        status => panic!("unexpected {status}"),
    }
    // Once finished, a third is a replay.
    let third = send!(&app, post(PROJECTS, Some(&token), Some("dup"), body)).await;
    assert!(third.replayed);
    assert_eq!(third.body, ran.body);
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(Uuid::new_v4());
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(BODY_LIMIT));
    // Without Content-Length (chunked), so the middleware is the one counting.
    let mut req = post(PROJECTS, Some(&token), Some("k"), &big).to_request();
    req.headers_mut().remove(header::CONTENT_LENGTH);
    let a = answer(test::call_service(&app, req).await).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.body["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(h.calls(), 0);
}

#[test]
fn fingerprints_cover_method_path_and_exact_bytes() {
    let base = fingerprint(&Method::POST, "/api/v1/projects", b"{}");
    assert_eq!(base, fingerprint(&Method::POST, "/api/v1/projects", b"{}"));
    assert_ne!(base, fingerprint(&Method::PUT, "/api/v1/projects", b"{}"));
    assert_ne!(base, fingerprint(&Method::POST, "/api/v1/projects/", b"{}"));
    assert_ne!(base, fingerprint(&Method::POST, "/api/v1/projects", b"{ }"));
}
