//! The black-box test harness: `spawn_app()` starts a real Keel server on a random port
//! against its own fresh database and returns a [`TestApp`] with typed helpers.
//!
//! Which database: `KEEL_TEST_DATABASE_URL` (a PostgreSQL URL whose user may create
//! databases) gives every test a new PostgreSQL database; unset, every test gets a new
//! SQLite file. `KEEL_TEST_REDIS_URL` adds Redis. `make test` runs the suite both ways.

// A test harness: failing to set up is a test failure, so it panics with a message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use keel_api::startup::ServerHandle;
use keel_api::{Application, Settings};
use keel_infrastructure::entities::users;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// A database of its own for one test; the SQLite folder is removed when dropped. It also
/// holds the folder the servers on it write mail files to (without the shared SMTP sink).
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub is_postgres: bool,
    _dir: Option<tempfile::TempDir>,
    mail: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        match std::env::var("KEEL_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) => {
                let name = format!("keel_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(&admin_url).await?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await?;
                admin.close().await?;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .ok_or_else(|| anyhow::anyhow!("KEEL_TEST_DATABASE_URL has no database path"))?;
                Ok(Self {
                    url: format!("{base}/{name}"),
                    is_postgres: true,
                    _dir: None,
                    mail: tempfile::tempdir()?,
                })
            }
            None => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}/keel.db?mode=rwc", dir.path().display());
                Ok(Self {
                    url,
                    is_postgres: false,
                    _dir: Some(dir),
                    mail: tempfile::tempdir()?,
                })
            }
        }
    }
}

/// The `field`s named in a 400's `details`, in order.
pub fn error_fields(error: &serde_json::Value) -> Vec<String> {
    error["details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .filter_map(|d| d["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The body of a response as JSON.
pub async fn json_body(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("a JSON body")
}

/// A registered account, as the tests use it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// The tables the background work polls and writes, which requests write too (a change's
/// outbox row): left out of a request's cost wherever they are written. The outbox
/// dispatcher (`outbox_events`, `outbox_leases`, the event feed's `event_feed`,
/// `event_feed_marks`, `event_feed_recipients`, and the notifications it makes:
/// `task_subscriptions`, `notifications`), the webhook sender (`webhook_deliveries`) and the
/// mail sender (`mail_outbox`). Statement budgets leave them out, and so does `make bench`'s
/// statements-per-request column (`stmt_count` in `scripts/bench.sh`, kept the same by
/// `the_bench_counts_statements_as_the_budgets_do`).
pub const BACKGROUND_TABLES: &[&str] = &[
    "outbox_events",
    "outbox_leases",
    "webhook_deliveries",
    "mail_outbox",
    "event_feed",
    "event_feed_marks",
    "event_feed_recipients",
    "task_subscriptions",
    "notifications",
];

/// A running server and a client for it.
pub struct TestApp {
    pub address: String,
    /// The address of the metrics listener, when `KEEL_METRICS_BIND` gives it one of its own.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    /// Shared by the instances of a [`spawn_cluster`].
    pub db: Arc<TestDatabase>,
    /// Where the mail this server sends arrives (see [`TestApp::mails_to`]); `None` when
    /// the test pointed it elsewhere.
    pub mail_dir: Option<std::path::PathBuf>,
    /// `None` for a server this process does not run (a `keel` process, nginx).
    handle: Option<ServerHandle>,
    /// The access token each address registered with here ([`TestApp::register`]), by
    /// lower-cased address: [`TestApp::add_member`] accepts invitations with it.
    sessions: std::sync::Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The JWT secret of every test server, so tests can forge tokens to prove they fail.
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789abcdef";
/// A password that meets the policy.
pub const PASSWORD: &str = "Correct-h0rse";

/// Settings every test server starts from: its own database, a random port, two workers,
/// Redis when the suite has one.
pub fn base_vars(db: &TestDatabase) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("KEEL_BIND", "127.0.0.1:0"),
        ("KEEL_WORKERS", "2"),
        ("KEEL_SHUTDOWN_TIMEOUT_SECS", "5"),
        ("KEEL_LOG_FORMAT", "pretty"),
        ("KEEL_JWT_SECRET", TEST_JWT_SECRET),
        // Cheap hashing: the tests check behaviour, not cost.
        ("KEEL_ARGON2_MEMORY_KIB", "1024"),
        ("KEEL_ARGON2_ITERATIONS", "1"),
        ("KEEL_ARGON2_PARALLELISM", "1"),
        // Every test comes from 127.0.0.1: only the rate-limit tests lower these.
        ("KEEL_RATE_LIMIT_ANON", "1000000/15m"),
        ("KEEL_RATE_LIMIT_USER", "1000000/15m"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATABASE_URL".into(), db.url.clone());
    // Mail: through the shared SMTP sink when the suite has one (scripts/services.sh),
    // else as files in the database's mail folder (the file transport).
    match std::env::var("KEEL_TEST_SMTP_URL").ok().filter(|u| !u.is_empty()) {
        Some(smtp) => {
            vars.insert("KEEL_SMTP_URL".into(), smtp);
        }
        None => {
            vars.insert("KEEL_MAIL_DIR".into(), db.mail.path().display().to_string());
        }
    }
    if let Some(redis) = std::env::var("KEEL_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        vars.insert("REDIS_URL".into(), redis);
        // Every test server has its own namespace in the shared Redis: no test sees another's
        // cache entries or rate-limit counters.
        vars.insert(
            "KEEL_REDIS_PREFIX".into(),
            format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        );
    }
    vars
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server whose configuration `customize` may change (the process environment is
/// never read, so tests do not leak into each other).
pub async fn spawn_app_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    let db = Arc::new(TestDatabase::create().await.expect("create the test database"));
    let mut vars = base_vars(&db);
    customize(&mut vars);
    start(&vars, db).await
}

/// Starts a server on an existing database (a restart), configured like [`spawn_app_with`].
pub async fn spawn_on(
    db: Arc<TestDatabase>,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let mut vars = base_vars(&db);
    customize(&mut vars);
    start(&vars, db).await
}

/// Two instances on one database and `redis` (a private `redis-server`).
pub async fn spawn_pair(redis: &TestRedis) -> (TestApp, TestApp) {
    spawn_pair_with(redis, |_| {}).await
}

/// [`spawn_pair`] with a configuration `customize` may change.
pub async fn spawn_pair_with(
    redis: &TestRedis,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> (TestApp, TestApp) {
    let url = redis.url();
    let mut apps = spawn_cluster(2, move |vars| {
        vars.insert("REDIS_URL".into(), url);
        customize(vars);
    })
    .await;
    let b = apps.pop().expect("two instances");
    let a = apps.pop().expect("two instances");
    (a, b)
}

/// Starts `n` instances of the service with the same configuration — one database, one
/// Redis and one `KEEL_REDIS_PREFIX` — as a deployment behind a load balancer would run.
/// `customize` sees the shared variables once (point `REDIS_URL` at a [`TestRedis`] there).
pub async fn spawn_cluster(n: usize, customize: impl FnOnce(&mut HashMap<String, String>)) -> Vec<TestApp> {
    let db = Arc::new(TestDatabase::create().await.expect("create the test database"));
    let mut vars = base_vars(&db);
    vars.entry("KEEL_REDIS_PREFIX".into())
        .or_insert_with(|| format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16]));
    customize(&mut vars);
    let mut apps = Vec::with_capacity(n);
    for _ in 0..n {
        // One after the other: the first migrates, the others find nothing to do.
        apps.push(start(&vars, Arc::clone(&db)).await);
    }
    apps
}

async fn start(vars: &HashMap<String, String>, db: Arc<TestDatabase>) -> TestApp {
    let settings = Settings::from_lookup(|k| vars.get(k).cloned()).expect("valid test settings");
    let app = Application::build(settings).await.expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let mail_dir = match (vars.get("KEEL_SMTP_URL"), vars.get("KEEL_MAIL_DIR")) {
        (Some(url), _) if std::env::var("KEEL_TEST_SMTP_URL").ok().as_ref() == Some(url) => {
            std::env::var("KEEL_TEST_MAIL_DIR").ok().map(Into::into)
        }
        (None, Some(dir)) => Some(dir.into()),
        _ => None,
    };
    let mut test_app = TestApp::new(address, db, Some(handle));
    test_app.metrics_address = metrics_address;
    test_app.mail_dir = mail_dir;
    test_app
}

impl TestApp {
    /// A client for a server that runs elsewhere (another process, a proxy) on `db`.
    pub fn at(address: String, db: Arc<TestDatabase>) -> Self {
        Self::new(address, db, None)
    }

    fn new(address: String, db: Arc<TestDatabase>, handle: Option<ServerHandle>) -> Self {
        TestApp {
            address,
            metrics_address: None,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("build the HTTP client"),
            db,
            mail_dir: None,
            handle,
            sessions: std::sync::Mutex::default(),
        }
    }

    /// The mails this server delivered to `to` so far.
    pub fn mails_to(&self, to: &str) -> Vec<ReceivedMail> {
        mails_to(self.mail_dir.as_deref().expect("this server's mail folder"), to)
    }

    /// Waits (up to 15 s) until `n` mails to `to` arrived; returns them, oldest first.
    pub async fn wait_for_mails(&self, to: &str, n: usize) -> Vec<ReceivedMail> {
        wait_for_mails(
            self.mail_dir.as_deref().expect("this server's mail folder"),
            to,
            n,
            std::time::Duration::from_secs(15),
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body), token).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request failed")
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None, Some(token)).await
    }

    /// Registers `email` with [`PASSWORD`] and returns the auth response body.
    pub async fn register(&self, email: &str) -> serde_json::Value {
        let response = self
            .post_json(
                "/api/v1/auth/register",
                &serde_json::json!({"email": email, "password": PASSWORD, "name": "Test User"}),
                None,
            )
            .await;
        assert_eq!(
            response.status(),
            reqwest::StatusCode::CREATED,
            "register {email}"
        );
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        if let Some(token) = body["accessToken"].as_str() {
            self.sessions
                .lock()
                .expect("sessions")
                .insert(email.trim().to_lowercase(), token.to_owned());
        }
        body
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Logs in with [`PASSWORD`]; returns the auth response body.
    pub async fn login_ok(&self, email: &str) -> serde_json::Value {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK, "login {email}");
        response.json().await.expect("a JSON body")
    }

    /// Registers an account and makes it an admin, as `keel admin create` would; returns
    /// a fresh access token carrying the role.
    pub async fn admin_token(&self, email: &str) -> String {
        let user = self.register(email).await;
        let id: uuid::Uuid = user["user"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id");
        let db = sea_orm::Database::connect(&self.db.url)
            .await
            .expect("open the test database");
        users::Entity::update_many()
            .col_expr(users::Column::Role, sea_orm::sea_query::Expr::value("admin"))
            .filter(users::Column::Id.eq(id))
            .exec(&db)
            .await
            .expect("promote to admin");
        db.close().await.ok();
        self.login_ok(email).await["accessToken"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Registers `email` and returns the account's id and access token.
    pub async fn account(&self, email: &str) -> Account {
        let auth = self.register(email).await;
        Account {
            id: auth["user"]["id"].as_str().expect("an id").to_owned(),
            email: email.to_owned(),
            token: auth["accessToken"].as_str().expect("a token").to_owned(),
        }
    }

    /// `PATCH` with a JSON body.
    pub async fn patch_json(&self, path: &str, body: &serde_json::Value, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::PATCH, path, Some(body), Some(token))
            .await
    }

    pub async fn delete_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, None, Some(token)).await
    }

    /// `GET` as `token`, asserting 200; returns the body.
    pub async fn get_ok(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.get_as(path, token).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// The events of type `event_type` in the first page (100) of the feed
    /// (`GET /api/v1/events/log`) as `token`, oldest first, waiting up to 5 s for `n` of them
    /// (the outbox publishes after the commit). Fewer than `n` when they never came.
    pub async fn feed_events(&self, token: &str, event_type: &str, n: usize) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        for _ in 0..50 {
            let log = self.get_ok("/api/v1/events/log?limit=100", token).await;
            found = log["data"]
                .as_array()
                .map(|events| {
                    events
                        .iter()
                        .filter(|e| e["type"] == event_type)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if found.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        found
    }

    /// `POST` as `token`, asserting 201; returns the body.
    pub async fn created(&self, path: &str, body: &serde_json::Value, token: &str) -> serde_json::Value {
        let response = self.post_json(path, body, Some(token)).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, reqwest::StatusCode::CREATED, "POST {path}: {text}");
        serde_json::from_str(&text).expect("a JSON body")
    }

    /// Creates a project with `key` (named `Project <key>`) as `token`; returns it.
    pub async fn create_project(&self, token: &str, key: &str) -> serde_json::Value {
        self.created(
            "/api/v1/projects",
            &serde_json::json!({"key": key, "name": format!("Project {key}")}),
            token,
        )
        .await
    }

    /// [`Self::create_project`], answering only the new project's id.
    pub async fn create_project_id(&self, token: &str, key: &str) -> String {
        self.create_project(token, key).await["id"]
            .as_str()
            .expect("a project id")
            .to_owned()
    }

    /// Adds the account `email` to the project with `role` as `token` (an admin of it);
    /// returns the membership. The route adds an account the caller shares a project with
    /// at once (201); any other address gets an invitation (202). Then this accepts the
    /// invitation as `email` — signed in with the token it registered with on this server
    /// (or a new sign-in with [`PASSWORD`]), the invitation's token read from its mail —
    /// so a test gets the member either way.
    pub async fn add_member(&self, token: &str, project: &str, email: &str, role: &str) -> serde_json::Value {
        let path = format!("/api/v1/projects/{project}/members");
        let response = self
            .post_json(
                &path,
                &serde_json::json!({"email": email, "role": role}),
                Some(token),
            )
            .await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON body");
        match status {
            reqwest::StatusCode::CREATED => body,
            reqwest::StatusCode::ACCEPTED => {
                let invitation = body["id"].as_str().expect("an invitation id");
                self.accept_invitation_as(email, invitation).await;
                let address = email.trim().to_lowercase();
                let members = self.get_ok(&format!("{path}?limit=100"), token).await;
                members["data"]
                    .as_array()
                    .and_then(|all| all.iter().find(|m| m["email"] == address.as_str()))
                    .cloned()
                    .expect("the invitee joined")
            }
            other => panic!("POST {path}: {other}: {text}"),
        }
    }

    /// Accepts the invitation `invitation_id` (mailed to `email`) as the account `email`.
    pub async fn accept_invitation_as(&self, email: &str, invitation_id: &str) {
        let prefix = format!("{}.", invitation_id.replace('-', ""));
        let dir = self
            .mail_dir
            .as_deref()
            .expect("this server's mail folder, to read the invitation from");
        let mut secret = None;
        for _ in 0..300 {
            secret = mails_to(dir, email)
                .iter()
                .filter_map(ReceivedMail::token)
                .find(|t| t.starts_with(&prefix));
            if secret.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let secret = secret.unwrap_or_else(|| panic!("no invitation mail {invitation_id} to {email}"));
        let body = serde_json::json!({ "token": secret });
        let key = email.trim().to_lowercase();
        let known = self.sessions.lock().expect("sessions").get(&key).cloned();
        if let Some(session) = known {
            let response = self
                .post_json("/api/v1/auth/invitations/accept", &body, Some(&session))
                .await;
            if response.status() == reqwest::StatusCode::OK {
                return;
            }
            // Signed out since (or another instance's token): sign in again.
        }
        let session = self.login_ok(email).await["accessToken"]
            .as_str()
            .expect("a token")
            .to_owned();
        let response = self
            .post_json("/api/v1/auth/invitations/accept", &body, Some(&session))
            .await;
        let status = response.status();
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "accept the invitation as {email}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    pub async fn create_label(
        &self,
        token: &str,
        project: &str,
        name: &str,
        color: &str,
    ) -> serde_json::Value {
        self.created(
            &format!("/api/v1/projects/{project}/labels"),
            &serde_json::json!({"name": name, "color": color}),
            token,
        )
        .await
    }

    /// Creates a task from `body` (at least a `title`); returns it.
    pub async fn create_task(
        &self,
        token: &str,
        project: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        self.created(&format!("/api/v1/projects/{project}/tasks"), &body, token)
            .await
    }

    /// Every page of a cursor-paginated list, `limit` rows at a time, in order. `path` may
    /// carry a query already.
    pub async fn walk(&self, path: &str, limit: u32, token: &str) -> Vec<serde_json::Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit={limit}&cursor={c}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let page = self.get_ok(&url, token).await;
            let data = page["data"].as_array().expect("a data array");
            assert!(data.len() <= limit as usize, "a page longer than its limit");
            rows.extend(data.iter().cloned());
            match page["pagination"]["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return rows,
            }
        }
        panic!("the cursor of {path} never ends");
    }

    /// The number of database statements the server has run so far for requests: the sum
    /// of the `db_query_duration_seconds_count` samples of its (per-instance) `/metrics`
    /// with `origin="request"` (what the background work runs is `origin="background"`,
    /// whatever table it reads), without [`BACKGROUND_TABLES`] (a write's own outbox row and
    /// the like).
    pub async fn db_statements(&self) -> u64 {
        let metrics = self.metrics_address.as_deref().unwrap_or(&self.address);
        let text = self
            .client
            .get(format!("{metrics}/metrics"))
            .send()
            .await
            .expect("request failed")
            .text()
            .await
            .expect("a metrics body");
        text.lines()
            .filter(|line| line.starts_with("db_query_duration_seconds_count"))
            .filter(|line| !line.contains("origin=\"background\""))
            .filter(|line| {
                !BACKGROUND_TABLES
                    .iter()
                    .any(|table| line.contains(&format!("table=\"{table}\"")))
            })
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .expect("a sample value")
            })
            .sum::<f64>() as u64
    }

    /// The statements a `GET` of `path` runs: the smallest difference of the statement
    /// counter over three requests (a background job may add to one, never take away). On a
    /// server with its cache on, that is the cost of a warm read.
    pub async fn fewest_statements(&self, path: &str, token: &str) -> u64 {
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            self.until_no_statement_runs().await;
            let before = self.db_statements().await;
            let response = self.get_as(path, token).await;
            assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {path}");
            response.bytes().await.expect("a body");
            let after = self.db_statements().await;
            fewest = fewest.min(after - before);
        }
        fewest
    }

    /// The statements `request` runs (any method; it answers the status it got, which must
    /// be a success), with the background work it sets off (the dispatcher's reads for its
    /// events), counted once everything is quiet again: the fewest of three tries. Counting
    /// right after the answer, as [`TestApp::fewest_statements`] does for reads, would count
    /// that work sometimes and sometimes not — a write's figure would depend on timing.
    pub async fn fewest_statements_of<F, Fut>(&self, mut request: F) -> u64
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = reqwest::StatusCode>,
    {
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            self.until_no_statement_runs().await;
            let before = self.db_statements().await;
            let status = request().await;
            assert!(status.is_success(), "{status}");
            self.until_no_statement_runs().await;
            let after = self.db_statements().await;
            fewest = fewest.min(after - before);
        }
        fewest
    }

    /// Waits until no counted statement ran for 150 ms (at most 10 s): background work of
    /// earlier requests — notifications the dispatcher makes of a burst of changes, reading
    /// tasks and members — would otherwise be counted in a request's cost on a loaded machine.
    pub async fn until_no_statement_runs(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut last = self.db_statements().await;
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let now = self.db_statements().await;
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Stops the server gracefully and waits for it (only one this process runs).
    pub async fn stop(&self) {
        let handle = self
            .handle
            .as_ref()
            .expect("stop() needs a server run by this process");
        handle.stop(true).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Not awaited: the runtime of the test is ending; the server stops with it.
        if let Some(handle) = &self.handle {
            drop(handle.stop(false));
        }
    }
}

mod mailbox;
pub use mailbox::{ReceivedMail, SmtpSink, closed_port, mails_to, unique_email, wait_for_mails};

mod redis_server;
pub use redis_server::TestRedis;

mod event_stream;
pub use event_stream::{Ended, EventStream};

pub mod cluster;

mod webhook_receiver;
pub use webhook_receiver::{Received, WebhookReceiver};
