//! Mail as the tests receive it: `.eml` files in a folder — written by the file transport
//! (the SQLite run), or by `scripts/smtp-sink.py`, a real SMTP server (the PostgreSQL run
//! gets the shared one from `scripts/services.sh`: `KEEL_TEST_SMTP_URL`,
//! `KEEL_TEST_MAIL_DIR`; a test may start its own with [`SmtpSink`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One received mail, its quoted-printable bodies decoded.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub file: PathBuf,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    /// The headers as sent.
    pub headers: String,
    /// Everything after the headers, soft line breaks joined and `=XX` decoded.
    pub body: String,
}

impl ReceivedMail {
    /// The token of the first `?token=` link in the body.
    pub fn token(&self) -> Option<String> {
        let at = self.body.find("token=")? + "token=".len();
        let token: String = self.body[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        (!token.is_empty()).then_some(token)
    }
}

fn header(headers: &str, name: &str) -> String {
    headers
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Quoted-printable decoding (RFC 2045 §6.7) of `text`.
fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'=', Some(b)) = (bytes[i], hex) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(file: &Path) -> Option<ReceivedMail> {
    let raw = std::fs::read_to_string(file).ok()?;
    let (headers, body) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n"))?;
    Some(ReceivedMail {
        file: file.to_owned(),
        to: header(headers, "To"),
        subject: header(headers, "Subject"),
        message_id: header(headers, "Message-ID"),
        headers: headers.to_owned(),
        body: decode_qp(body),
    })
}

/// Every whole mail in `dir` addressed to `to` (compared case-insensitively), oldest first.
pub fn mails_to(dir: &Path, to: &str) -> Vec<ReceivedMail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| parse(f))
        .filter(|m| m.to.to_ascii_lowercase().contains(&to.to_ascii_lowercase()))
        .collect()
}

/// Waits (up to `within`) until `dir` holds at least `n` mails to `to`; returns them.
///
/// # Panics
/// When they do not come in time.
pub async fn wait_for_mails(dir: &Path, to: &str, n: usize, within: Duration) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + within;
    loop {
        let mails = mails_to(dir, to);
        if mails.len() >= n {
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} mail(s) to {to} in {} within {within:?}, found {}",
            dir.display(),
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `scripts/smtp-sink.py` of the test's own on 127.0.0.1, writing to a temporary folder;
/// killed when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    /// Starts a sink on `port` (0: a free one) and waits until it listens.
    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port_file = dir.path().join("port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/smtp-sink.py");
        let child = Command::new("python3")
            .arg(script)
            .arg("--dir")
            .arg(dir.path().join("mail"))
            .args(["--port", &port.to_string()])
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 scripts/smtp-sink.py");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let listening = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
                .filter(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok());
            if let Some(port) = listening {
                break port;
            }
            assert!(Instant::now() < deadline, "the SMTP sink did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { port, dir, child }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?starttls=false", self.port)
    }

    /// Where it writes what it receives.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of 127.0.0.1 nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An address no other test uses (tests share the PostgreSQL run's SMTP sink).
pub fn unique_email(name: &str) -> String {
    format!(
        "{name}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
