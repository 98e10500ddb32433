//! What every handler can reach: the use cases and shared services, wired once at start-up.

use std::sync::Arc;

use ipnet::IpNet;
use keel_application::identity::IdentityPorts;
use keel_application::readiness::CheckReadiness;
use keel_application::tracking::TrackingPorts;
use keel_infrastructure::{Database, Metrics};

use crate::middleware::{Idempotency, RateLimitPolicy};

#[derive(Debug)]
pub struct AppState {
    pub readiness: CheckReadiness,
    pub identity: IdentityPorts,
    pub tracking: TrackingPorts,
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
