//! The mail transports: SMTP on lettre (`KEEL_SMTP_URL`), `.eml` files in a folder (the
//! development default), and none (`KEEL_MAIL=disabled`). Each builds the same MIME
//! message: `multipart/alternative` with a plain-text and an HTML part, quoted-printable,
//! and a `Message-ID` derived from the outbox row (the same on every attempt).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use keel_application::mail::{DeliveryError, MailMessage, MailTransport};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://…?starttls=false`: plain text (a relay on the same host or network).
    None,
    /// `smtp://…` without `starttls`: STARTTLS when the server offers it, plain otherwise.
    Opportunistic,
    /// `smtp://…?starttls=true`: STARTTLS required; refused without it.
    StartTls,
    /// `smtps://…`: TLS from the first byte (implicit TLS).
    Implicit,
}

/// `KEEL_SMTP_URL`, parsed: `smtp://[user:pass@]host[:port][?starttls=true|false]` or
/// `smtps://[user:pass@]host[:port]`. The port defaults to 25 (`smtp`) or 465 (`smtps`).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password (percent-decoded).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SmtpUrl {
    /// Parses `raw`. The error never repeats the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|_| {
            "expected smtp://[user:pass@]host:port[?starttls=true|false] or smtps://[user:pass@]host:port"
                .to_owned()
        })?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err("the scheme must be smtp:// or smtps://".to_owned()),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "a host is required".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if url.path() != "" && url.path() != "/" {
            return Err("a path is not allowed".to_owned());
        }
        let mut security = if implicit {
            SmtpSecurity::Implicit
        } else {
            SmtpSecurity::Opportunistic
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), implicit) {
                ("starttls", _, true) => {
                    return Err(
                        "starttls applies to smtp:// only (smtps:// is TLS from the start)".to_owned(),
                    );
                }
                ("starttls", "true", false) => security = SmtpSecurity::StartTls,
                ("starttls", "false", false) => security = SmtpSecurity::None,
                ("starttls", _, false) => return Err("starttls must be true or false".to_owned()),
                _ => return Err("the only query parameter is starttls=true|false".to_owned()),
            }
        }
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| "the user name or password is not valid percent-encoding".to_owned())
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((
                decode(url.username())?,
                decode(url.password().unwrap_or_default())?,
            ))
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(if implicit { 465 } else { 25 }),
            security,
            credentials,
        })
    }
}

/// Percent-decoding of a URL's user information; `None` when not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `raw` is a mailbox a mail may come from: `keel@example.com` or
/// `Keel <keel@example.com>`.
pub fn is_mailbox(raw: &str) -> bool {
    raw.parse::<Mailbox>().is_ok()
}

/// The MIME message of `m`.
pub fn build_message(m: &MailMessage) -> Result<Message, DeliveryError> {
    let permanent = |what: &str| DeliveryError::Permanent(format!("invalid {what} address"));
    let from: Mailbox = m.from.parse().map_err(|_| permanent("from"))?;
    let to: Mailbox = m.to.parse().map_err(|_| permanent("recipient"))?;
    let domain = from.email.domain().to_owned();
    Message::builder()
        .message_id(Some(format!("<{}@{domain}>", m.id.simple())))
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .header(ContentTransferEncoding::QuotedPrintable)
                        .body(m.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .header(ContentTransferEncoding::QuotedPrintable)
                        .body(m.html.clone()),
                ),
        )
        .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))
}

/// Delivers through an SMTP server.
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport").finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// A transport to `url`; each attempt opens a connection (no pool: a mail server that
    /// went away leaves no stale connection behind), and gives up after `timeout`.
    pub fn new(url: &SmtpUrl, timeout: Duration) -> Result<Self, String> {
        let tls =
            |host: &str| TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS set-up failed: {e}"));
        let security = match url.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls(&url.host)?),
            SmtpSecurity::StartTls => Tls::Required(tls(&url.host)?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls(&url.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .tls(security)
            .timeout(Some(timeout));
        if let Some((user, password)) = &url.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            inner: builder.build(),
        })
    }
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn send(&self, message: &MailMessage) -> Result<(), DeliveryError> {
        let email = build_message(message)?;
        self.inner.send(email).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                DeliveryError::Permanent(e.to_string())
            } else {
                DeliveryError::Transient(e.to_string())
            }
        })
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

/// Writes each mail as an `.eml` file (`<unix ms>-<id>.eml`) in a folder: development's
/// default, read with any mail program. A file appears whole (written aside, then
/// renamed).
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait]
impl MailTransport for FileTransport {
    async fn send(&self, message: &MailMessage) -> Result<(), DeliveryError> {
        let bytes = build_message(message)?.formatted();
        let dir = self.dir.clone();
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().timestamp_millis(),
            message.id.simple()
        );
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::write(&partial, bytes)?;
            std::fs::rename(&partial, dir.join(&name))
        })
        .await
        .map_err(|e| DeliveryError::Transient(format!("writing the mail file did not finish: {e}")))?
        .map_err(|e| DeliveryError::Transient(format!("cannot write the mail file: {e}")))
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

/// `KEEL_MAIL=disabled`: every mail is dropped (and counted, and logged without its
/// content).
#[derive(Debug, Clone, Copy, Default)]
pub struct DisabledTransport;

#[async_trait]
impl MailTransport for DisabledTransport {
    async fn send(&self, _message: &MailMessage) -> Result<(), DeliveryError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "disabled"
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn smtp_urls_parse_with_their_security_port_and_credentials() {
        let u = SmtpUrl::parse("smtp://mail.example.com:587?starttls=true").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.security, u.credentials),
            ("mail.example.com", 587, SmtpSecurity::StartTls, None)
        );
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525?starttls=false").unwrap();
        assert_eq!((u.port, u.security), (2525, SmtpSecurity::None));
        let u = SmtpUrl::parse("smtp://relay").unwrap();
        assert_eq!((u.port, u.security), (25, SmtpSecurity::Opportunistic));
        let u = SmtpUrl::parse("smtps://ann%40example.com:p%3Ass@mail.example.com").unwrap();
        assert_eq!((u.port, u.security), (465, SmtpSecurity::Implicit));
        assert_eq!(
            u.credentials,
            Some(("ann@example.com".to_owned(), "p:ss".to_owned()))
        );
        assert!(!format!("{u:?}").contains("p:ss"), "Debug hides the password");
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_them() {
        for bad in [
            "http://mail.example.com",
            "smtp://",
            "smtps://h?starttls=true",
            "smtp://h?starttls=yes",
            "smtp://h?tls=required",
            "smtp://h/path",
            "not a url s3cret",
        ] {
            let e = SmtpUrl::parse(bad).unwrap_err();
            assert!(!e.contains("s3cret") && !e.contains(bad), "{bad}: {e}");
        }
    }

    fn message() -> MailMessage {
        MailMessage {
            id: Uuid::nil(),
            from: "Keel <keel@example.com>".into(),
            to: "ann@example.com".into(),
            subject: "Reset your password".into(),
            text: format!(
                "Hello,\n\nhttps://keel.example.com/reset-password?token={}\n",
                "a".repeat(90)
            ),
            html: "<p>Hello</p>".into(),
        }
    }

    #[test]
    fn the_message_is_multipart_alternative_with_a_stable_message_id() {
        let raw = String::from_utf8(build_message(&message()).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <00000000000000000000000000000000@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(raw.contains("To: ann@example.com"));
    }

    #[test]
    fn a_bad_recipient_is_a_permanent_failure() {
        let mut m = message();
        m.to = "not an address".into();
        assert!(matches!(build_message(&m), Err(DeliveryError::Permanent(_))));
    }

    #[tokio::test]
    async fn the_file_transport_writes_one_whole_eml_file_per_mail() {
        let dir = tempfile::tempdir().unwrap();
        let t = FileTransport::new(dir.path().join("mail"));
        t.send(&message()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with("-00000000000000000000000000000000.eml"));
    }

    #[tokio::test]
    async fn smtp_to_a_closed_port_is_a_transient_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}?starttls=false")).unwrap();
        let t = SmtpTransport::new(&url, Duration::from_secs(5)).unwrap();
        let e = t.send(&message()).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Transient(_)), "{e:?}");
    }
}
