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
