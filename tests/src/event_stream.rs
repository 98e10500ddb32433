//! A WebSocket client of `GET /api/v1/events`, for the event tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::TestApp;

/// How long [`EventStream::connect_settled`] waits for its marker event.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// A connected event stream.
pub struct EventStream {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Closed { code: u16, reason: String },
    Dropped,
}

impl EventStream {
    /// Connects with `Authorization: Bearer <token>`.
    pub async fn connect(app: &TestApp, token: &str) -> anyhow::Result<Self> {
        let url = app.address.replacen("http://", "ws://", 1) + "/api/v1/events";
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (socket, _) = connect_async(request).await?;
        Ok(Self { socket })
    }

    /// Connects, then puts behind the stream every event written before: the outbox is
    /// relayed asynchronously (and through Redis when there is one), so the event of a write
    /// made just before connecting may still arrive after it. The caller creates a marker
    /// project; everything the stream receives up to its `project.created` is skipped.
    /// Returns the stream and the marker project.
    pub async fn connect_settled(app: &TestApp, token: &str) -> anyhow::Result<(Self, serde_json::Value)> {
        static MARKERS: AtomicU32 = AtomicU32::new(1);
        let mut stream = Self::connect(app, token).await?;
        let key = format!("SYNC{}", MARKERS.fetch_add(1, Ordering::Relaxed));
        let marker = app.create_project(token, &key).await;
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = stream
                .next_event(left)
                .await
                .ok_or_else(|| anyhow::anyhow!("the marker project {key}'s event did not come"))?;
            if event["type"] == "project.created" && event["projectId"] == marker["id"] {
                return Ok((stream, marker));
            }
        }
    }

    /// Connects with `Authorization: Bearer <token>`, resuming after the feed position `after`.
    pub async fn connect_after(app: &TestApp, token: &str, after: i64) -> anyhow::Result<Self> {
        let url = app.address.replacen("http://", "ws://", 1) + &format!("/api/v1/events?after={after}");
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (socket, _) = connect_async(request).await?;
        Ok(Self { socket })
    }

    /// Connects with the token in the `access_token` query parameter.
    pub async fn connect_with_query(app: &TestApp, token: &str) -> anyhow::Result<Self> {
        let url = app.address.replacen("http://", "ws://", 1) + "/api/v1/events?access_token=" + token;
        let (socket, _) = connect_async(url).await?;
        Ok(Self { socket })
    }

    /// The next event within `wait`; `None` when none came. Pings are answered on the way.
    pub async fn next_event(&mut self, wait: Duration) -> Option<serde_json::Value> {
        match self.next_frame(wait).await {
            Some(Ok(event)) => Some(event),
            _ => None,
        }
    }

    /// The next event, or how the stream ended, within `wait` (`None`: nothing came).
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Result<serde_json::Value, Ended>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(text.as_str()).map_err(|_| Ended::Dropped));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map_or((1005, String::new()), |CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        });
                    return Some(Err(Ended::Closed { code, reason }));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Err(Ended::Dropped)),
            }
        }
    }

    /// Events until none comes for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event(quiet).await {
            events.push(event);
        }
        events
    }

    pub async fn close(mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
    }
}
