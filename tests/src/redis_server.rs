//! A private `redis-server` process for tests that stop and restart Redis under a running
//! service (the shared `KEEL_TEST_REDIS_URL` must never be stopped).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` on a free port of 127.0.0.1, without persistence, in a temporary
/// directory; killed when dropped.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts one: the binary is `KEEL_TEST_REDIS_BIN`, else `redis-server` on `PATH`. Without
    /// a binary it returns `None` after printing why (the test then skips), unless `CI` is set:
    /// then the missing binary fails the test.
    pub async fn start_private(test: &str) -> Option<Self> {
        let Some(bin) = redis_server_binary() else {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "{test}: no redis-server (set KEEL_TEST_REDIS_BIN or install redis-server; scripts/services.sh does)"
            );
            eprintln!("skipped {test}: no redis-server binary (KEEL_TEST_REDIS_BIN or PATH)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self {
            port,
            bin,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        redis.start().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits until it answers `PING`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer on port {} within 5 s", self.port);
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        for _ in 0..200 {
            if !self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "redis-server still answers on port {} after being killed",
            self.port
        );
    }

    async fn ping(&self) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()?;
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut reply = [0_u8; 7];
            stream.read_exact(&mut reply).await.ok()?;
            (&reply == b"+PONG\r\n").then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), attempt).await,
            Ok(Some(()))
        )
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

fn redis_server_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("KEEL_TEST_REDIS_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}
