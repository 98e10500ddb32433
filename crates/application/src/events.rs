//! The real-time event stream (docs/api/events-and-webhooks.md): the bus that carries published events to every
//! instance, and who may see which event.
//!
//! The outbox dispatcher (infrastructure) publishes each committed event once to the
//! [`EventBus`]; every instance's subscription yields it, and each WebSocket session keeps the
//! events its user [`receives`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use keel_domain::events::Envelope;
use keel_domain::identity::Principal;

use crate::AppError;
use crate::tracking::TrackingPorts;

/// What a subscription to the bus yields.
#[derive(Debug, Clone)]
pub enum BusMessage {
    Event(Arc<Envelope>),
    /// Events may have been missed since the last message: this instance lost its link to
    /// the other instances. Every client must resynchronise.
    Interrupted,
    /// This subscriber fell too far behind and events it had not read were dropped: its
    /// client is too slow.
    Lagged,
}

/// Failure to publish.
#[derive(Debug, thiserror::Error)]
#[error("publishing events failed: {0}")]
pub struct BusError(pub String);

/// Carries published events to every instance, this one included.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes `events`, in order, to every subscriber of every instance.
    /// # Errors
    /// When the events could not be handed to the other instances; they reached this
    /// instance's subscribers all the same.
    async fn publish(&self, events: &[Envelope]) -> Result<(), BusError>;

    /// A subscription from now on. It ends only when the bus shuts down.
    fn subscribe(&self) -> BoxStream<'static, BusMessage>;
}

/// Whether `principal` receives `envelope`: named in it, or a member of its project now —
/// and, with a personal access token limited to some projects, the project is one of them.
///
/// Membership is read through the cache, which every membership change invalidates on every
/// instance, so a removed member stops receiving at once. Instance admins receive the events
/// of the projects they are members of, like anybody else.
///
/// # Errors
/// When the membership cannot be read (the store is down).
pub async fn receives(
    ports: &TrackingPorts,
    principal: &Principal,
    envelope: &Envelope,
) -> Result<bool, AppError> {
    let user = principal.user_id;
    if !principal.reaches(envelope.event.project_id) {
        return Ok(false);
    }
    if envelope.also_to.contains(&user) {
        return Ok(true);
    }
    Ok(ports.role_of(envelope.event.project_id, user).await?.is_some())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_domain::events::{DomainEvent, EventType};

    use uuid::Uuid;

    use super::*;
    use crate::tracking::fixtures::*;

    fn envelope(also_to: Vec<Uuid>) -> Envelope {
        Envelope {
            event: DomainEvent {
                id: Uuid::from_u128(5),
                event_type: EventType::TaskCreated,
                project_id: PROJECT_ID,
                actor_id: None,
                data: serde_json::Value::Null,
                previous: None,
                occurred_at: Utc::now(),
            },
            also_to,
        }
    }

    #[tokio::test]
    async fn members_and_named_users_receive_strangers_do_not() {
        let ports = Fixture::default().ports();
        let e = envelope(vec![]);
        assert!(receives(&ports, &member(), &e).await.unwrap());
        assert!(receives(&ports, &viewer(), &e).await.unwrap());
        assert!(!receives(&ports, &stranger(), &e).await.unwrap());
        let named = envelope(vec![stranger().user_id]);
        assert!(receives(&ports, &stranger(), &named).await.unwrap());
        // Instance admins are not members: they see nothing of a project they are not in.
        assert!(!receives(&ports, &admin(), &e).await.unwrap());
        // A member's token limited to another project receives nothing of this one.
        let mut limited = member();
        limited.grant = Some(std::sync::Arc::new(keel_domain::identity::tokens::Grant {
            token_id: Uuid::nil(),
            scopes: keel_domain::identity::tokens::Scopes::parse(&["read"]).unwrap(),
            project_ids: Some(vec![Uuid::from_u128(0xB0B)]),
        }));
        assert!(!receives(&ports, &limited, &e).await.unwrap());
        assert!(
            !receives(&ports, &limited, &envelope(vec![limited.user_id]))
                .await
                .unwrap()
        );
    }
}
