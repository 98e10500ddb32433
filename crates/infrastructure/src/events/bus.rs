//! The event bus: published events to every subscriber of every instance.
//!
//! - [`InProcessBus`]: one process (no Redis). A broadcast channel; a subscriber that falls
//!   more than its capacity behind gets [`BusMessage::Lagged`] instead of the events it
//!   missed.
//! - [`RedisBus`]: several instances. The dispatcher `PUBLISH`es each event on
//!   `<prefix>:events`; every instance's subscriber task re-broadcasts what arrives to its
//!   local subscribers, in order. When that subscription drops, local subscribers get
//!   [`BusMessage::Interrupted`] (events published meanwhile would be missed), and the task
//!   reconnects with back-off.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use futures::StreamExt;
use futures::stream::BoxStream;
use keel_application::events::{BusError, BusMessage, EventBus};
use keel_application::notifications::UserNotification;
use keel_domain::events::Envelope;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::redis::SharedConnection;

/// Events a subscriber may fall behind before it is told it missed some.
pub const SUBSCRIBER_CAPACITY: usize = 1024;

const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long a `PUBLISH` may take before the events count as not handed over.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// The bus of a single process.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<BusMessage>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(SUBSCRIBER_CAPACITY),
        }
    }
}

impl InProcessBus {
    fn deliver(&self, message: BusMessage) {
        // No subscriber is not an error: nobody is listening.
        let _ = self.sender.send(message);
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, events: &[Envelope]) -> Result<(), BusError> {
        for envelope in events {
            self.deliver(BusMessage::Event(Arc::new(envelope.clone())));
        }
        Ok(())
    }

    async fn publish_notifications(&self, notifications: &[UserNotification]) -> Result<(), BusError> {
        for n in notifications {
            self.deliver(BusMessage::Notification(Arc::new(n.clone())));
        }
        Ok(())
    }

    fn subscribe(&self) -> BoxStream<'static, BusMessage> {
        let receiver = self.sender.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(message) => Some((message, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "an event subscriber fell behind");
                    Some((BusMessage::Lagged, receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

/// The bus shared by instances through Redis pub/sub.
#[derive(Debug)]
pub struct RedisBus {
    local: InProcessBus,
    connection: Arc<SharedConnection>,
    client: redis::Client,
    channel: String,
}

impl RedisBus {
    /// A bus on `prefix:events`; `url` opens the dedicated subscriber connection. Call
    /// [`RedisBus::spawn_subscriber`] to receive.
    pub fn new(
        connection: Arc<SharedConnection>,
        url: &str,
        prefix: &str,
    ) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            local: InProcessBus::default(),
            connection,
            client: redis::Client::open(url)?,
            channel: format!("{prefix}:events"),
        }))
    }

    /// Keeps the subscription (reconnecting with back-off) until the task is aborted.
    pub fn spawn_subscriber(self: &Arc<Self>) -> JoinHandle<()> {
        let bus = Arc::clone(self);
        tokio::spawn(async move {
            let mut delay = RECONNECT_FIRST;
            let mut was_connected = false;
            loop {
                match bus.subscribe_once(&mut was_connected).await {
                    Ok(()) => delay = RECONNECT_FIRST,
                    Err(e) => tracing::debug!(error = %e, "redis event subscriber not connected"),
                }
                if was_connected {
                    tracing::warn!("redis event subscription lost; clients are told to resynchronise");
                    bus.local.deliver(BusMessage::Interrupted);
                    was_connected = false;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        })
    }

    async fn subscribe_once(&self, connected: &mut bool) -> Result<(), String> {
        let mut pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        pubsub.subscribe(&self.channel).await.map_err(|e| e.to_string())?;
        *connected = true;
        tracing::debug!(channel = %self.channel, "redis event subscription up");
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let parsed = message
                .get_payload::<String>()
                .map_err(|e| e.to_string())
                .and_then(|payload| serde_json::from_str::<Wire>(&payload).map_err(|e| e.to_string()));
            match parsed {
                Ok(Wire::Notification(n)) => self.local.deliver(BusMessage::Notification(Arc::new(n))),
                Ok(Wire::Event(envelope)) => self.local.deliver(BusMessage::Event(Arc::new(envelope))),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable message on the event channel");
                    self.local.deliver(BusMessage::Interrupted);
                }
            }
        }
        Ok(())
    }
}

/// What travels on the channel: an event's envelope, or a notification for one user
/// (`{"userId", "notification"}`; an envelope has neither field).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Wire {
    Notification(UserNotification),
    Event(Envelope),
}

impl RedisBus {
    /// `PUBLISH`es each payload, in order, in one pipeline.
    async fn send(&self, payloads: Vec<String>) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
        }
        let sent = async {
            let mut conn = self.connection.get().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| "publish timed out".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        if sent.is_err() {
            self.connection.reset();
        }
        sent
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish_notifications(&self, notifications: &[UserNotification]) -> Result<(), BusError> {
        if notifications.is_empty() {
            return Ok(());
        }
        let payloads = notifications
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError(e.to_string()))?;
        if let Err(e) = self.send(payloads).await {
            self.local.publish_notifications(notifications).await?;
            return Err(BusError(e));
        }
        Ok(())
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for envelope in events {
            let payload = serde_json::to_string(envelope).map_err(|e| BusError(e.to_string()))?;
            pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
        }
        let sent = async {
            let mut conn = self.connection.get().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| "publish timed out".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            self.connection.reset();
            // This instance's clients still get them; the other instances' subscriptions are
            // most likely down too, and told their clients to resynchronise.
            self.local.publish(events).await?;
            return Err(BusError(e));
        }
        Ok(())
    }

    fn subscribe(&self) -> BoxStream<'static, BusMessage> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_domain::events::{DomainEvent, EventType};
    use uuid::Uuid;

    use super::*;

    fn envelope(n: u128) -> Envelope {
        Envelope {
            event: DomainEvent {
                seq: None,
                id: Uuid::from_u128(n),
                event_type: EventType::TaskUpdated,
                project_id: Uuid::from_u128(1),
                actor_id: None,
                data: serde_json::json!({ "n": n }),
                previous: None,
                occurred_at: Utc::now(),
            },
            also_to: vec![],
        }
    }

    fn id_of(message: Option<BusMessage>) -> Option<u128> {
        match message {
            Some(BusMessage::Event(e)) => Some(e.event.id.as_u128()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = InProcessBus::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(&[envelope(1), envelope(2)]).await.unwrap();
        bus.publish(&[envelope(3)]).await.unwrap();
        for s in [&mut a, &mut b] {
            assert_eq!(id_of(s.next().await), Some(1));
            assert_eq!(id_of(s.next().await), Some(2));
            assert_eq!(id_of(s.next().await), Some(3));
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_not_buffered_for() {
        let bus = InProcessBus::default();
        let mut slow = bus.subscribe();
        let many: Vec<Envelope> = (0..(SUBSCRIBER_CAPACITY as u128 + 10)).map(envelope).collect();
        bus.publish(&many).await.unwrap();
        assert!(matches!(slow.next().await, Some(BusMessage::Lagged)));
        // Then it continues with what is still buffered, never more than the capacity.
        assert_eq!(id_of(slow.next().await), Some(10));
    }

    #[tokio::test]
    async fn subscribing_later_sees_only_later_events() {
        let bus = InProcessBus::default();
        bus.publish(&[envelope(1)]).await.unwrap();
        let mut late = bus.subscribe();
        bus.publish(&[envelope(2)]).await.unwrap();
        assert_eq!(id_of(late.next().await), Some(2));
    }
}
