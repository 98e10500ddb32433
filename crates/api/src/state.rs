//! What every handler can reach: the use cases and shared services, wired once at start-up.

use std::sync::Arc;

use ipnet::IpNet;
use keel_application::events::{EventBus, EventFeed};
use keel_application::identity::IdentityPorts;
use keel_application::readiness::CheckReadiness;
use keel_application::tracking::TrackingPorts;
use keel_infrastructure::{Database, Metrics};

use crate::config::StreamSettings;
use crate::middleware::{Idempotency, InFlight, RateLimitPolicy};
use crate::stream_slots::StreamSlots;

pub struct AppState {
    pub readiness: CheckReadiness,
    pub identity: IdentityPorts,
    pub tracking: TrackingPorts,
    /// Published events, for the WebSocket stream.
    pub events: Arc<dyn EventBus>,
    /// The retained feed of published events: replays and `GET /events/log`.
    pub feed: Arc<dyn EventFeed>,
    /// Task subscriptions and notifications.
    pub notifications: Arc<dyn keel_application::notifications::NotificationStore>,
    pub stream: StreamSettings,
    /// The event streams each user holds open here, bounded.
    pub stream_slots: StreamSlots,
    /// Turns `true` when the server starts shutting down (event streams close).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Requests being handled; the server stops once none is.
    pub in_flight: InFlight,
    /// The `Idempotency-Key` middleware's store, token check and clock.
    pub idempotency: Idempotency,
    /// The general rate limits' limiter, token check and quotas.
    pub rate_limits: RateLimitPolicy,
    pub metrics: Arc<Metrics>,
    pub db: Database,
    pub trusted_proxies: Vec<IpNet>,
    /// The OpenAPI document, rendered once.
    pub openapi_json: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("identity", &self.identity)
            .field("tracking", &self.tracking)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}
