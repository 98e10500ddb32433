//! A deployment on loopback for the cluster and fault tests (`make cluster-test`): `keel`
//! processes — the binary named by `KEEL_BIN` — behind nginx, configured from
//! `deploy/nginx/keel.conf` by `deploy/nginx/render-local.sh`, on one PostgreSQL database
//! (`KEEL_TEST_DATABASE_URL`) and a private `redis-server` the tests may kill.
//!
//! Also a load generator ([`Load`]) that records every answer, for the tests that stop or
//! break something while requests flow.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{TestApp, TestDatabase, TestRedis, base_vars};

/// How long a process may take to answer `/health` after it starts.
const START_WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

async fn answers_health(client: &reqwest::Client, base: &str) -> bool {
    matches!(
        client
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await,
        Ok(r) if r.status().is_success()
    )
}

/// One `keel` process on a port of its own; killed when dropped.
#[derive(Debug)]
pub struct KeelProcess {
    pub port: u16,
    pub log: PathBuf,
    bin: PathBuf,
    vars: HashMap<String, String>,
    child: Option<Child>,
}

impl KeelProcess {
    async fn start(bin: PathBuf, mut vars: HashMap<String, String>, log: PathBuf) -> Self {
        let port = free_port();
        vars.insert("KEEL_BIND".into(), format!("127.0.0.1:{port}"));
        let mut process = Self {
            port,
            log,
            bin,
            vars,
            child: None,
        };
        process.restart().await;
        process
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on its port and waits until `/health` answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "keel is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the keel log");
        let child = Command::new(&self.bin)
            .env_clear()
            .envs(&self.vars)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_WAIT;
        while !answers_health(&client, &self.address()).await {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "keel on port {} exited at start ({status}):\n{}",
                    self.port,
                    tail(&self.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "keel on port {} did not answer /health within {START_WAIT:?}:\n{}",
                self.port,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM: the graceful shutdown an orchestrator starts.
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("keel is running");
        signal(child.id(), "TERM");
    }

    /// Waits for the process to exit (after [`terminate`](Self::terminate)).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("keel is running");
            if let Some(status) = child.try_wait().expect("poll the keel process") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keel on port {} still runs {within:?} after SIGTERM:\n{}",
                self.port,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KeelProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// nginx (Debian's, or `NGINX`) in front of the instances, on a port of its own.
#[derive(Debug)]
pub struct Nginx {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    async fn start(dir: PathBuf, upstreams: &[u16]) -> Self {
        let port = free_port();
        let nginx = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let mut render = Command::new(repo_root().join("deploy/nginx/render-local.sh"));
        render.arg(&dir).arg(format!("127.0.0.1:{port}"));
        for upstream in upstreams {
            render.arg(format!("127.0.0.1:{upstream}"));
        }
        let rendered = render.env("NGINX", &nginx).output().expect("run render-local.sh");
        assert!(
            rendered.status.success(),
            "render-local.sh failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let conf = dir.join("nginx.conf");
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {nginx} (install nginx-light; make cluster-test does): {e}"));
        let mut proxy = Self {
            port,
            dir,
            child: Some(child),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_WAIT;
        while !answers_health(&client, &proxy.address()).await {
            if let Some(status) = proxy.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nginx exited at start ({status}):\n{}", proxy.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer /health:\n{}",
                proxy.error_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        tail(&self.dir.join("logs/error.log"), 40)
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The master stops its workers on SIGTERM; SIGKILL would orphan them.
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// `n` instances on one PostgreSQL database and one private Redis, behind nginx.
pub struct Cluster {
    pub db: Arc<TestDatabase>,
    pub redis: TestRedis,
    pub instances: Vec<KeelProcess>,
    pub nginx: Nginx,
    /// A client for nginx: what users see.
    pub front: TestApp,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("front", &self.front.address)
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts `n` instances configured like the test servers plus the settings of a
    /// deployment behind a proxy; `customize` may change them.
    pub async fn start(n: usize, customize: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        let bin = std::env::var_os("KEEL_BIN")
            .filter(|b| !b.is_empty())
            .map(PathBuf::from)
            .expect("KEEL_BIN names the keel binary to run (make cluster-test sets it)");
        let db = Arc::new(TestDatabase::create().await.expect("create the test database"));
        assert!(
            db.is_postgres,
            "the cluster tests run on PostgreSQL: set KEEL_TEST_DATABASE_URL (make cluster-test does)"
        );
        let redis = TestRedis::start_private("cluster")
            .await
            .expect("the cluster tests need redis-server");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut vars = base_vars(&db);
        let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        for (key, value) in [
            ("REDIS_URL", redis.url()),
            ("KEEL_REDIS_PREFIX", prefix),
            ("KEEL_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            // nginx is the only client of the instances: the client's address is the
            // last one it adds to X-Forwarded-For.
            ("KEEL_TRUSTED_PROXIES", "127.0.0.1/32".into()),
            // Longer than nginx's upstream keepalive_timeout (4 s): its pooled connections
            // end before the instance stops accepting.
            ("KEEL_SHUTDOWN_DRAIN_SECS", "5".into()),
            ("KEEL_SHUTDOWN_TIMEOUT_SECS", "10".into()),
            ("KEEL_WEBHOOK_ALLOW_PRIVATE", "true".into()),
            // One key for all instances: a secret sealed by one is opened by the sender on
            // another (64 hex digits).
            (
                "KEEL_WEBHOOK_ENCRYPTION_KEY",
                format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                ),
            ),
        ] {
            vars.insert(key.into(), value);
        }
        customize(&mut vars);
        let mut instances = Vec::with_capacity(n);
        for i in 0..n {
            // One after the other: the first migrates, the others find nothing to do.
            let log = dir.path().join(format!("keel-{}.log", i + 1));
            instances.push(KeelProcess::start(bin.clone(), vars.clone(), log).await);
        }
        let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
        let nginx = Nginx::start(dir.path().join("nginx"), &ports).await;
        let front = TestApp::at(nginx.address(), Arc::clone(&db));
        Self {
            db,
            redis,
            instances,
            nginx,
            front,
            _dir: dir,
        }
    }

    /// A client for instance `i` directly, past nginx.
    pub fn direct(&self, i: usize) -> TestApp {
        TestApp::at(self.instances[i].address(), Arc::clone(&self.db))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for instance in &self.instances {
                eprintln!(
                    "--- keel on port {} ({}), last lines:\n{}",
                    instance.port,
                    instance.log.display(),
                    tail(&instance.log, 30)
                );
            }
            eprintln!("--- nginx error log:\n{}", self.nginx.error_log());
        }
    }
}

/// One answer (or failure to get one) seen by the [`Load`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub what: &'static str,
    /// `None` when no HTTP answer came (connection error, timeout).
    pub status: Option<u16>,
    /// The error body's `code`, when there is one.
    pub code: Option<String>,
    pub error: Option<String>,
    /// When the request was sent.
    pub at: Instant,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {} {} {} after {:?}",
            self.what,
            self.status.map_or("no answer".into(), |s| s.to_string()),
            self.code.as_deref().unwrap_or(""),
            self.error.as_deref().unwrap_or(""),
            self.elapsed
        )
    }
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub outcomes: Vec<Outcome>,
    /// `(id, title)` of every task whose creation was acknowledged (201).
    pub created: Vec<(String, String)>,
}

impl Tally {
    pub fn successes(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_success()).count()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.is_success()).collect()
    }
}

/// `workers` clients sending a mix of reads and writes to `base` as one user, each request
/// after the previous one's answer, until stopped.
#[derive(Debug)]
pub struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    pub fn start(base: &str, token: &str, project: &str, workers: usize) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = (0..workers)
            .map(|n| {
                let worker = LoadWorker {
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("build the HTTP client"),
                    base: base.to_owned(),
                    token: token.to_owned(),
                    project: project.to_owned(),
                    name: n,
                };
                tokio::spawn(worker.run(stopped.clone()))
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers after their current request; everything they saw.
    pub async fn finish(self) -> Tally {
        self.stop.send_replace(true);
        let mut tally = Tally::default();
        for worker in self.workers {
            let part = worker.await.expect("a load worker panicked");
            tally.outcomes.extend(part.outcomes);
            tally.created.extend(part.created);
        }
        tally
    }
}

struct LoadWorker {
    client: reqwest::Client,
    base: String,
    token: String,
    project: String,
    name: usize,
}

impl LoadWorker {
    async fn run(self, stopped: tokio::sync::watch::Receiver<bool>) -> Tally {
        let mut tally = Tally::default();
        let mut task: Option<String> = None;
        let mut round = 0_u64;
        while !*stopped.borrow() {
            round += 1;
            let title = format!("load {} #{round}", self.name);
            let project_path = format!("/api/v1/projects/{}", self.project);
            let (outcome, body) = self
                .send(
                    "POST task",
                    reqwest::Method::POST,
                    &format!("{project_path}/tasks"),
                    Some(serde_json::json!({"title": title})),
                )
                .await;
            if outcome.status == Some(201)
                && let Some(id) = body.as_ref().and_then(|b| b["id"].as_str())
            {
                tally.created.push((id.to_owned(), title));
                task = Some(id.to_owned());
            }
            tally.outcomes.push(outcome);
            let (outcome, _) = self
                .send("GET project", reqwest::Method::GET, &project_path, None)
                .await;
            tally.outcomes.push(outcome);
            if let Some(id) = &task {
                let (outcome, _) = self
                    .send(
                        "GET task",
                        reqwest::Method::GET,
                        &format!("/api/v1/tasks/{id}"),
                        None,
                    )
                    .await;
                tally.outcomes.push(outcome);
                let (outcome, _) = self
                    .send(
                        "PATCH task",
                        reqwest::Method::PATCH,
                        &format!("/api/v1/tasks/{id}"),
                        Some(serde_json::json!({"status": "in_progress"})),
                    )
                    .await;
                tally.outcomes.push(outcome);
            }
            let (outcome, _) = self
                .send(
                    "GET tasks",
                    reqwest::Method::GET,
                    &format!("{project_path}/tasks?limit=5"),
                    None,
                )
                .await;
            tally.outcomes.push(outcome);
        }
        tally
    }

    async fn send(
        &self,
        what: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (Outcome, Option<serde_json::Value>) {
        let started = Instant::now();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Option<serde_json::Value> = response.json().await.ok();
                let code = body.as_ref().and_then(|b| b["code"].as_str()).map(str::to_owned);
                let outcome = Outcome {
                    what,
                    status: Some(status),
                    code,
                    error: None,
                    at: started,
                    elapsed: started.elapsed(),
                };
                (outcome, body)
            }
            Err(e) => (
                Outcome {
                    what,
                    status: None,
                    code: None,
                    error: Some(e.to_string()),
                    at: started,
                    elapsed: started.elapsed(),
                },
                None,
            ),
        }
    }
}
