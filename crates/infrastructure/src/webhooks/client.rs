//! The HTTP sender of webhook deliveries.
//!
//! One [`reqwest::Client`] (connection pool, rustls) for all deliveries, built so that a
//! webhook can only reach what [`address`](super::address) allows:
//!
//! - **The address checked is the address connected to.** Host names are resolved by a
//!   resolver of ours plugged into reqwest, which drops every address whose class is not
//!   allowed and fails when none is left. Checking the URL beforehand and then letting the
//!   HTTP client resolve again would leave a window in which the name is re-pointed at an
//!   internal address (DNS rebinding); here there is one resolution, and it is filtered.
//! - **IP-literal hosts** never reach a resolver, so [`WebhookClient::send`] classifies them
//!   itself before sending.
//! - **Redirects are not followed**: a 3xx is the receiver's answer (a failure), never a
//!   second request to wherever `Location` points.
//! - **No proxy from the environment** (`HTTP_PROXY` and friends): the filtering must apply
//!   to the receiver, not to a proxy that would connect anywhere on our behalf.
//! - A total timeout per request (connection, request and reading the response), and at
//!   most 64 KiB of the response body read, then discarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use super::address::{AddressClass, check_parsed, classify, one_line};

/// The most of a response body that is read (and discarded) before the connection is
/// dropped.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How the webhook HTTP client behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Total time for one delivery: connecting, sending, and reading the response. Default
    /// 10 s (docs/api/events-and-webhooks.md).
    pub timeout: Duration,
    /// Allow loopback, private and link-local receivers (`KEEL_WEBHOOK_ALLOW_PRIVATE`).
    /// Default `false`.
    pub allow_private: bool,
    /// The `User-Agent` header. Default `Keel-Webhooks/<version>`.
    pub user_agent: String,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            allow_private: false,
            user_agent: format!("Keel-Webhooks/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The webhook HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the webhook HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The response status, when a response was received (whatever its class).
    pub status: Option<u16>,
    /// Why no response was received: refused address, DNS, connection, TLS, timeout…
    /// Short, on one line, without the URL (which may hold a token) or any header value.
    /// `None` whenever `status` is set.
    pub error: Option<String>,
    /// From the start of the attempt to the end of reading the response.
    pub duration: Duration,
}

impl Attempt {
    /// A 2xx response was received. Anything else, 3xx included, is a failure.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// Sends webhook deliveries; cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    settings: ClientSettings,
}

impl WebhookClient {
    /// Builds the client: no redirects, no proxy, the timeout, and the filtering resolver.
    pub fn new(settings: ClientSettings) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .user_agent(settings.user_agent.clone())
            .dns_resolver(Arc::new(FilteringResolver {
                allow_private: settings.allow_private,
            }))
            .build()
            .map_err(ClientError)?;
        Ok(Self { http, settings })
    }

    /// POSTs `body` with `headers` to `url` and reports what happened; never fails otherwise.
    pub async fn send(&self, url: &Url, headers: &[(&str, String)], body: Vec<u8>) -> Attempt {
        let started = Instant::now();
        let failed = |error: String| Attempt {
            status: None,
            error: Some(error),
            duration: started.elapsed(),
        };
        if let Err(error) = check_parsed(url) {
            return failed(format!("refused: URL {error}"));
        }
        // IP literals are connected to directly, without asking the resolver.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(classify(ip.into())),
            Some(Host::Ipv6(ip)) => Some(classify(ip.into())),
            Some(Host::Domain(_)) | None => None,
        };
        if let Some(class) = literal
            && !class.is_allowed(self.settings.allow_private)
        {
            tracing::warn!(%class, "webhook delivery refused: the URL's address is not allowed");
            return failed(format!("refused: the URL points to {class}"));
        }
        let mut header_map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
                return failed(format!("invalid header name {}", one_line(name)));
            };
            let Ok(header_value) = HeaderValue::from_str(value) else {
                return failed(format!("invalid value for header {header_name}"));
            };
            header_map.append(header_name, header_value);
        }
        let sent = self
            .http
            .post(url.clone())
            .headers(header_map)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return failed(self.describe(error)),
        };
        let status = response.status().as_u16();
        // Read a little of the body (so a well-behaved receiver can finish writing) and
        // discard it; a receiver cannot make us buffer more than this.
        let mut read = 0usize;
        while read < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => read = read.saturating_add(chunk.len()),
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(status, error = %self.describe(error), "webhook response body not read to the end");
                    break;
                }
            }
        }
        drop(response);
        let attempt = Attempt {
            status: Some(status),
            error: None,
            duration: started.elapsed(),
        };
        tracing::debug!(
            status,
            duration_ms = attempt.duration.as_millis(),
            "webhook delivery answered"
        );
        attempt
    }

    /// A short single-line description of a request error, without the URL.
    fn describe(&self, error: reqwest::Error) -> String {
        let error = error.without_url();
        if error.is_timeout() {
            return format!("timed out after {}", humanize(self.settings.timeout));
        }
        // The innermost cause says what happened ("Connection refused", a TLS alert, our
        // resolver's refusal); without one, the error's own text, its URL removed above.
        let mut cause: &dyn std::error::Error = &error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let detail = cause.to_string();
        let kind = if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "reading the response failed"
        } else {
            "request failed"
        };
        one_line(&format!("{kind}: {detail}"))
    }
}

/// `1.5s`, `250ms`, `10s`.
fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Why the filtering resolver gave no address.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("the host resolves only to refused addresses ({0})")]
    Refused(AddressClass),
    #[error("the host could not be resolved ({0})")]
    Lookup(std::io::Error),
    #[error("the host resolves to no address")]
    Empty,
}

/// reqwest's resolver: the system resolver, minus every address a webhook may not reach.
#[derive(Debug, Clone, Copy)]
struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(ResolveError::Lookup)?
                .collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|addr| classify(addr.ip()).is_allowed(allow_private));
            if let Some(first) = refused.first() {
                let class = classify(first.ip());
                if allowed.is_empty() {
                    tracing::warn!(%host, %class, "webhook delivery refused: the host resolves only to refused addresses");
                    return Err(ResolveError::Refused(class).into());
                }
                tracing::warn!(%host, %class, skipped = refused.len(), "webhook host resolves to some refused addresses; they are skipped");
            }
            if allowed.is_empty() {
                return Err(ResolveError::Empty.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    fn client(allow_private: bool, timeout: Duration) -> WebhookClient {
        WebhookClient::new(ClientSettings {
            timeout,
            allow_private,
            user_agent: "keel-test".into(),
        })
        .unwrap()
    }

    async fn listener() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    /// Reads one HTTP/1.1 request (headers and a Content-Length body) and returns it.
    async fn read_request(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    }

    /// Serves one connection with `response`, returning the request it read.
    async fn serve_once(response: String) -> (u16, JoinHandle<String>) {
        let (listener, port) = listener().await;
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.ok();
            request
        });
        (port, task)
    }

    /// Asserts that nothing connects to `listener` for a while.
    async fn assert_no_connection(listener: &TcpListener) {
        let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(accepted.is_err(), "a connection was made: {accepted:?}");
    }

    fn url(raw: &str) -> Url {
        Url::parse(raw).unwrap()
    }

    #[tokio::test]
    async fn a_2xx_is_a_success_and_the_request_is_as_given() {
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
        let attempt = client(true, Duration::from_secs(5))
            .send(
                &url(&format!("http://127.0.0.1:{port}/hook?x=1")),
                &[
                    ("X-Keel-Event", "task.created".into()),
                    ("Content-Type", "application/json".into()),
                ],
                br#"{"a":1}"#.to_vec(),
            )
            .await;
        assert_eq!(attempt.status, Some(200));
        assert_eq!(attempt.error, None);
        assert!(attempt.is_success());
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("x-keel-event: task.created\r\n"), "{request}");
        assert!(
            request.contains("content-type: application/json\r\n"),
            "{request}"
        );
        assert!(request.contains("user-agent: keel-test\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request}");
    }

    #[tokio::test]
    async fn a_500_is_recorded_as_a_failed_status() {
        let (port, server) =
            serve_once("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops".into()).await;
        let attempt = client(true, Duration::from_secs(5))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, Some(500));
        assert_eq!(attempt.error, None);
        assert!(!attempt.is_success());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let (listener, port) = listener().await;
        drop(listener);
        let attempt = client(true, Duration::from_secs(5))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, None);
        let error = attempt.error.unwrap();
        assert!(error.starts_with("connection failed: "), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
        assert!(!error.contains('\n'));
        assert!(!error.contains("127.0.0.1"), "the URL leaked: {error}");
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let (listener, port) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _request = read_request(&mut stream).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let attempt = client(true, Duration::from_millis(300))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.error.as_deref(), Some("timed out after 300ms"));
        assert!(attempt.duration >= Duration::from_millis(300));
        assert!(
            attempt.duration < Duration::from_secs(3),
            "{:?}",
            attempt.duration
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (target, target_port) = listener().await;
        let (port, server) = serve_once(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target_port}/\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let attempt = client(true, Duration::from_secs(5))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], b"x".to_vec())
            .await;
        assert_eq!(attempt.status, Some(302));
        assert!(!attempt.is_success());
        server.await.unwrap();
        assert_no_connection(&target).await;
    }

    #[tokio::test]
    async fn only_64_kib_of_an_endless_body_is_read() {
        let (listener, port) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _request = read_request(&mut stream).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let chunk = vec![b'x'; 16 * 1024];
            let mut written = 0usize;
            // Bounded: 64 MiB at most, and it stops as soon as the client hangs up.
            for _ in 0..4096 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
            }
            written
        });
        let attempt = client(true, Duration::from_secs(5))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, Some(200));
        assert_eq!(attempt.error, None);
        let written = server.await.unwrap();
        assert!(written < 64 * 1024 * 1024, "the client read everything");
    }

    #[tokio::test]
    async fn a_loopback_literal_is_refused_without_connecting() {
        let (listener, port) = listener().await;
        let attempt = client(false, Duration::from_secs(5))
            .send(&url(&format!("http://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, None);
        assert_eq!(
            attempt.error.as_deref(),
            Some("refused: the URL points to a loopback address")
        );
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn a_mapped_ipv6_literal_is_refused_by_its_ipv4_address() {
        let (listener, port) = listener().await;
        let attempt = client(false, Duration::from_secs(5))
            .send(&url(&format!("http://[::ffff:127.0.0.1]:{port}/")), &[], vec![])
            .await;
        assert_eq!(
            attempt.error.as_deref(),
            Some("refused: the URL points to a loopback address")
        );
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn localhost_is_refused_by_the_resolver_without_connecting() {
        let (listener, port) = listener().await;
        let attempt = client(false, Duration::from_secs(5))
            .send(&url(&format!("http://localhost:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, None);
        let error = attempt.error.unwrap();
        assert!(
            error.contains("the host resolves only to refused addresses (a loopback address)"),
            "{error}"
        );
        assert!(!error.contains('\n'));
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn localhost_is_reached_through_the_resolver_when_private_is_allowed() {
        // 127.0.0.1 only: localhost may resolve to ::1 first, which nothing listens on, and
        // the connector then falls back to 127.0.0.1.
        let (port, server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n".into()).await;
        let attempt = client(true, Duration::from_secs(5))
            .send(&url(&format!("http://localhost:{port}/")), &[], vec![])
            .await;
        assert_eq!(attempt.status, Some(204), "{attempt:?}");
        assert!(attempt.is_success());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn never_allowed_literals_are_refused_even_with_allow_private() {
        let client = client(true, Duration::from_secs(5));
        for (raw, class) in [
            (
                "http://169.254.169.254/latest/meta-data/",
                "a cloud metadata address",
            ),
            ("http://0.0.0.0:1/", "the unspecified address"),
            ("http://[::]:1/", "the unspecified address"),
            ("http://255.255.255.255/", "a broadcast address"),
        ] {
            let attempt = client.send(&url(raw), &[], vec![]).await;
            assert_eq!(
                attempt.error,
                Some(format!("refused: the URL points to {class}")),
                "{raw}"
            );
        }
    }

    #[tokio::test]
    async fn bad_urls_and_headers_are_refused_before_sending() {
        let (listener, port) = listener().await;
        let client = client(true, Duration::from_secs(5));
        let attempt = client
            .send(&url(&format!("ftp://127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(
            attempt.error.as_deref(),
            Some("refused: URL must use http or https, not ftp")
        );
        let attempt = client
            .send(&url(&format!("http://u:p@127.0.0.1:{port}/")), &[], vec![])
            .await;
        assert_eq!(
            attempt.error.as_deref(),
            Some("refused: URL must not contain a user name or password")
        );
        let target = url(&format!("http://127.0.0.1:{port}/"));
        let attempt = client.send(&target, &[("bad name", "v".into())], vec![]).await;
        assert_eq!(attempt.error.as_deref(), Some("invalid header name bad name"));
        let attempt = client
            .send(&target, &[("x-ok", "line\nbreak".into())], vec![])
            .await;
        assert_eq!(attempt.error.as_deref(), Some("invalid value for header x-ok"));
        assert_no_connection(&listener).await;
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn default_settings_follow_the_spec() {
        let settings = ClientSettings::default();
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert!(!settings.allow_private);
        assert!(settings.user_agent.starts_with("Keel-Webhooks/"));
    }
}
