//! The `keel` binary as an operator runs it: a real process, a clean environment.

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// `keel` with nothing from the caller's environment but what is given.
fn keel(dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(KEEL);
    cmd.env_clear().current_dir(dir).env("RUST_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run keel")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET; `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The token of the newest link to `page` in the `.eml` files the development mail
/// transport writes under `<dir>/data/mail/` (waiting for it up to 10 s).
fn mailed_token(dir: &Path, page: &str) -> String {
    let needle = format!("/{page}?token=");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("data/mail"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for file in files.iter().rev() {
            // Quoted-printable: soft line breaks joined, `=3D` is `=`.
            let text = std::fs::read_to_string(file)
                .unwrap_or_default()
                .replace("=\r\n", "")
                .replace("=3D", "=");
            if let Some(at) = text.find(&needle) {
                return text[at + needle.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect();
            }
        }
        assert!(Instant::now() < deadline, "no mail with a {page} link");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_health(port: u16, child: &mut Child) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = http_get(port, "/health") {
            return answer;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("keel exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "keel did not answer /health in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_with_no_configuration_uses_sqlite_in_data_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = keel(dir.path(), &[("KEEL_BIND", &bind)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let (status, body) = wait_for_health(port, &mut child);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(port, "/ready").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        dir.path().join("data/keel.db").is_file(),
        "the embedded default is ./data/keel.db"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "keel did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(exit.success(), "exit {exit}; log:\n{stderr}");
    assert!(
        stderr.contains("KEEL_JWT_SECRET is not set"),
        "the generated secret is announced:\n{stderr}"
    );
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("KEEL_BIND", "not-an-address"),
        ("KEEL_RATE_LIMIT_ANON", "lots"),
        ("KEEL_ENV", "production"),
    ] {
        let out = run(&mut keel(dir.path(), &[(var, value)]));
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(if var == "KEEL_ENV" { "KEEL_JWT_SECRET" } else { var }),
            "{stderr}"
        );
    }
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn openapi_prints_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(keel(dir.path(), &[]).arg("openapi"));
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/health"].is_object());
    assert!(
        !dir.path().join("data").exists(),
        "printing the document touches no database"
    );
}

#[test]
fn migrate_up_status_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
    let vars = [("DATABASE_URL", url.as_str())];
    let status = |dir: &Path| {
        let out = run(keel(dir, &vars).args(["migrate", "status"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let before = status(dir.path());
    assert!(!before.is_empty());
    assert!(before.lines().all(|l| l.starts_with("pending\t")), "{before}");

    assert!(
        run(keel(dir.path(), &vars).args(["migrate", "up"]))
            .status
            .success()
    );
    let after = status(dir.path());
    assert!(after.lines().all(|l| l.starts_with("applied\t")), "{after}");

    assert!(
        run(keel(dir.path(), &vars).args(["migrate", "down", "--steps", "1"]))
            .status
            .success()
    );
    let rolled_back = status(dir.path());
    assert!(
        rolled_back.lines().last().unwrap().starts_with("pending\t"),
        "{rolled_back}"
    );
}

#[test]
fn admin_create_makes_an_admin_once_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/a.db?mode=rwc", dir.path().display());
    let create = |password: &str, email: &str| {
        run(keel(
            dir.path(),
            &[
                ("DATABASE_URL", url.as_str()),
                ("KEEL_ADMIN_PASSWORD", password),
                ("KEEL_ARGON2_MEMORY_KIB", "1024"),
                ("KEEL_ARGON2_ITERATIONS", "1"),
                ("KEEL_ARGON2_PARALLELISM", "1"),
            ],
        )
        .args(["admin", "create", "--email", email, "--name", "Root"]))
    };
    let out = create("Adm1n-password", "Root@Example.com");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created admin root@example.com"), "{stdout}");

    let again = create("Adm1n-password", "root@example.com");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let weak = create("weak", "other@example.com");
    assert!(!weak.status.success());
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("password"), "{stderr}");
    assert!(!stderr.contains("weak"), "the password is not echoed: {stderr}");
}

/// A minimal HTTP/1.1 request with a JSON body; returns status and body.
fn http_json(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn token_of(body: &str, field: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json[field].as_str().unwrap().to_owned()
}

/// docs/operations.md: no passwords, tokens or full e-mails in logs, at the default level and with
/// Keel's own crates at debug (both formats).
#[test]
fn logs_never_hold_passwords_tokens_or_full_emails() {
    for (format, filter) in [
        ("json", None),
        (
            "pretty",
            Some("debug,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,actix_server=warn,h2=warn,hyper=warn"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let vars = [
            ("KEEL_BIND", bind.as_str()),
            ("KEEL_LOG_FORMAT", format),
            ("KEEL_ARGON2_MEMORY_KIB", "1024"),
            ("KEEL_ARGON2_ITERATIONS", "1"),
            ("KEEL_ARGON2_PARALLELISM", "1"),
        ];
        let mut cmd = keel(dir.path(), &vars);
        match filter {
            Some(f) => cmd.env("RUST_LOG", f),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for_health(port, &mut child);

        let password = "Secret-passw0rd";
        let email = "logged.person@example.com";
        let register = format!(r#"{{"email":"{email}","password":"{password}","name":"Logged"}}"#);
        let (status, body) = http_json(port, "POST", "/api/v1/auth/register", &register, None);
        assert_eq!(status, 201, "{body}");
        let (access, refresh) = (token_of(&body, "accessToken"), token_of(&body, "refreshToken"));
        let wrong = format!(r#"{{"email":"{email}","password":"Wrong-passw0rd"}}"#);
        assert_eq!(http_json(port, "POST", "/api/v1/auth/login", &wrong, None).0, 401);
        let refresh_body = format!(r#"{{"refreshToken":"{refresh}"}}"#);
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/refresh", &refresh_body, None).0,
            200
        );
        assert_eq!(
            http_json(port, "GET", "/api/v1/auth/profile", "", Some(&access)).0,
            200
        );
        // The event stream's token in the query string (a plain GET: 400 after authenticating).
        let events = format!("/api/v1/events?access_token={access}");
        assert_eq!(http_json(port, "GET", &events, "", None).0, 400);
        // A personal access token: created, used in the header and in the query string.
        let (status, body) = http_json(
            port,
            "POST",
            "/api/v1/auth/tokens",
            r#"{"name":"ci","scopes":["read"]}"#,
            Some(&access),
        );
        assert_eq!(status, 201, "{body}");
        let pat = token_of(&body, "token");
        // `keel_pat_<64 hex>_<secret>`: the secret is base64url and may itself hold `_`.
        let pat_secret = pat["keel_pat_".len() + 65..].to_owned();
        assert!(pat_secret.len() >= 40, "{pat}");
        assert_eq!(http_json(port, "GET", "/api/v1/projects", "", Some(&pat)).0, 200);
        let events = format!("/api/v1/events?access_token={pat}");
        assert_eq!(http_json(port, "GET", &events, "", None).0, 400);
        // A project invitation: mailed, refused to the wrong address, used by a register,
        // then refused as used.
        let (status, body) = http_json(
            port,
            "POST",
            "/api/v1/projects",
            r#"{"key":"LOG","name":"Logged project"}"#,
            Some(&access),
        );
        assert_eq!(status, 201, "{body}");
        let project = token_of(&body, "id");
        let invited = "invited.person@example.com";
        let (status, body) = http_json(
            port,
            "POST",
            &format!("/api/v1/projects/{project}/invitations"),
            &format!(r#"{{"email":"{invited}","role":"member"}}"#),
            Some(&access),
        );
        assert_eq!(status, 201, "{body}");
        let invitation = mailed_token(dir.path(), "accept-invitation");
        let accept = format!(r#"{{"token":"{invitation}"}}"#);
        assert_eq!(
            http_json(
                port,
                "POST",
                "/api/v1/auth/invitations/accept",
                &accept,
                Some(&access)
            )
            .0,
            400
        );
        let join = format!(
            r#"{{"email":"{invited}","password":"{password}","name":"Invited","invitationToken":"{invitation}"}}"#
        );
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/register", &join, None).0,
            201
        );
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/register", &join, None).0,
            400
        );
        let new_password = r#"{"currentPassword":"Secret-passw0rd","newPassword":"Other-passw0rd"}"#;
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/password", new_password, Some(&access)).0,
            204
        );
        // One-time tokens: the verification link from register, a reset link, both used.
        let verification = mailed_token(dir.path(), "verify-email");
        let forgot = format!(r#"{{"email":"{email}"}}"#);
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/password/forgot", &forgot, None).0,
            202
        );
        let reset = mailed_token(dir.path(), "reset-password");
        let verify = format!(r#"{{"token":"{verification}"}}"#);
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/email/verify", &verify, None).0,
            204
        );
        let reset_body = format!(r#"{{"token":"{reset}","newPassword":"Third-passw0rd"}}"#);
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/password/reset", &reset_body, None).0,
            204
        );
        assert_eq!(
            http_json(port, "POST", "/api/v1/auth/password/reset", &reset_body, None).0,
            400
        );

        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let mut log = String::new();
        child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        assert!(
            log.contains("/api/v1/auth/login"),
            "the requests were logged ({format}):\n{log}"
        );
        for secret in [
            password,
            "Wrong-passw0rd",
            "Other-passw0rd",
            access.as_str(),
            refresh.as_str(),
            pat.as_str(),
            pat_secret.as_str(),
            email,
            "Third-passw0rd",
            verification.split_once('.').unwrap().1,
            reset.split_once('.').unwrap().1,
            invitation.split_once('.').unwrap().1,
            invited,
        ] {
            assert!(!log.contains(secret), "{format} log holds {secret}:\n{log}");
        }
        if format == "json" {
            // One access line per request: method, route pattern, status and latency on the
            // line, the request id on its span.
            let lines: Vec<serde_json::Value> = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|l| l["fields"]["message"] == "request completed")
                .collect();
            let of = |route: &str| -> Vec<&serde_json::Value> {
                lines.iter().filter(|l| l["fields"]["route"] == route).collect()
            };
            let profile = of("/api/v1/auth/profile");
            assert_eq!(profile.len(), 1, "one line for the one profile read:\n{log}");
            assert_eq!(profile[0]["fields"]["method"], "GET");
            assert_eq!(profile[0]["fields"]["status"], 200);
            assert!(
                profile[0]["fields"]["latency_ms"]
                    .as_f64()
                    .is_some_and(|ms| ms >= 0.0)
            );
            assert!(
                profile[0]["span"]["request_id"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty())
            );
            let logins = of("/api/v1/auth/login");
            assert_eq!(logins.len(), 1, "{log}");
            assert_eq!(logins[0]["fields"]["status"], 401);
            assert_eq!(of("/api/v1/auth/refresh").len(), 1, "{log}");
        }
    }
}

#[test]
fn dev_seed_fills_a_project_whose_owner_can_log_in_and_list_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/seed.db?mode=rwc", dir.path().display());
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("KEEL_ARGON2_MEMORY_KIB", "1024"),
        ("KEEL_ARGON2_ITERATIONS", "1"),
        ("KEEL_ARGON2_PARALLELISM", "1"),
    ];
    let out = run(keel(dir.path(), &vars).args(["dev", "seed", "--tasks", "300", "--batch", "100"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "keel dev seed: 300 tasks into project BENCH (batches of 100)",
        "100/300 tasks",
        "300/300 tasks",
        "owner seed-owner@example.com (",
        "member seed-member-1@example.com (",
        "labels: bug, feature, chore",
        "seeded 300 tasks (BENCH-1..BENCH-300) and ",
        " tasks/s, ",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let project_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("project BENCH ("))
        .and_then(|rest| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .expect("the project id is printed");

    // The seeded owner logs in with the default seed password and reads a filtered page.
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = keel(dir.path(), &vars)
        .env("KEEL_BIND", &bind)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_health(port, &mut child);
    let login = r#"{"email":"seed-owner@example.com","password":"Seed-passw0rd"}"#;
    let (status, body) = http_json(port, "POST", "/api/v1/auth/login", login, None);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body, "accessToken");
    let path = format!("/api/v1/projects/{project_id}/tasks?status=todo,in_progress&sort=-createdAt&limit=5");
    let (status, body) = http_json(port, "GET", &path, "", Some(&token));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tasks = page["data"].as_array().unwrap();
    assert_eq!(tasks.len(), 5, "{body}");
    assert!(
        tasks
            .iter()
            .all(|t| ["todo", "in_progress"].contains(&t["status"].as_str().unwrap())),
        "{body}"
    );
    assert!(page["pagination"]["nextCursor"].is_string(), "{body}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    // A second run reuses everything and numbers on.
    let out = run(keel(dir.path(), &vars).args(["dev", "seed", "--tasks", "50"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("project BENCH ("), "{stdout}");
    assert!(stdout.contains("): existing"), "{stdout}");
    assert!(
        stdout.contains("seeded 50 tasks (BENCH-301..BENCH-350)"),
        "{stdout}"
    );

    let refused = run(keel(dir.path(), &vars).args(["dev", "seed", "--tasks", "1", "--project-key", "x"]));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--project-key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
