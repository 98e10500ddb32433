//! Webhooks (docs/api/events-and-webhooks.md): a project's subscriptions to its events, and the log of their
//! deliveries. Delivery itself (signing, retries, the circuit breaker) is the
//! infrastructure's; these are the records and the ports the use cases need.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StoreError;
use crate::audit::AuditEntry;
use crate::events::EventType;

/// A webhook as its admins see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub project_id: Uuid,
    /// An absolute http(s) URL that passed the address checks when it was set.
    pub url: String,
    /// The event types delivered, sorted and distinct; never empty.
    pub events: Vec<EventType>,
    pub enabled: bool,
    /// Why it was disabled automatically (`None` when enabled, or disabled by an admin).
    pub disabled_reason: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Failed attempts in a row (the circuit breaker's count).
    pub consecutive_failures: u32,
    /// While in the future, the breaker is open: no attempts until then.
    pub open_until: Option<DateTime<Utc>>,
    /// Since when every attempt has failed (auto-disable after a day).
    pub failing_since: Option<DateTime<Utc>>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Succeeded,
    /// Out of attempts (it can be redelivered).
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1 for the first attempt; redeliveries continue the count.
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u32,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// What went wrong, when it did (a non-2xx status, a timeout, a refused address).
    pub error: Option<String>,
}

/// One event for one webhook, with its attempts (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// A newly issued signing secret: shown once, stored sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecret {
    pub plain: String,
    pub sealed: String,
}

impl std::fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedSecret(..)")
    }
}

/// Issues signing secrets and seals them for storage (AES-256-GCM under a configured key).
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait WebhookSecrets: Send + Sync {
    /// # Errors
    /// `Unexpected` when sealing fails (it does not, short of a broken key).
    fn issue(&self) -> Result<IssuedSecret, StoreError>;
}

/// Decides whether a URL may be called: http(s), and every address it resolves to public
/// (unless the operator allows private ones).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UrlPolicy: Send + Sync {
    /// The URL as it will be stored (normalised), or why it is refused, in words fit for a
    /// field error ("must not resolve to a private address").
    async fn check(&self, url: &str) -> Result<String, String>;
}

/// Storage of webhooks and their deliveries. Every write records its audit entry in the
/// same transaction, and is refused with `AuthorityLost` (nothing written) when the entry's
/// actor no longer holds its `authority` there.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WebhookRepository: Send + Sync {
    /// Creates the webhook unless its project has `limit` webhooks already, counted in the
    /// insert's transaction with the project locked, so concurrent creates (on any
    /// instance) never go past the limit.
    /// # Errors
    /// `Conflict` when the project has `limit` webhooks; `NotFound` when the project does
    /// not exist.
    async fn create(
        &self,
        webhook: &Webhook,
        sealed_secret: &str,
        audit: &AuditEntry,
        limit: u64,
    ) -> Result<(), StoreError>;
    async fn find(&self, project_id: Uuid, id: Uuid) -> Result<Option<Webhook>, StoreError>;
    /// Oldest first, with the total.
    async fn list(
        &self,
        project_id: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Webhook>, u64), StoreError>;
    /// Saves url, events, enabled, disabled reason and `updated_at`. Enabling closes the
    /// breaker and restarts the failure clock.
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn update(&self, webhook: &Webhook, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Deletes it with its deliveries.
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn delete(&self, project_id: Uuid, id: Uuid, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Newest first: up to `limit` deliveries of the webhook older than `before` (an id:
    /// ids grow with time), each with its attempts.
    async fn deliveries(
        &self,
        webhook_id: Uuid,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError>;
    async fn find_delivery(&self, webhook_id: Uuid, id: Uuid) -> Result<Option<Delivery>, StoreError>;
    /// Puts a finished delivery back in the queue, due `at`, with a fresh attempt budget;
    /// `false` when it is pending already (nothing changes).
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn redeliver(
        &self,
        webhook_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("done"), None);
    }

    #[test]
    fn secrets_never_print() {
        let s = IssuedSecret {
            plain: "whsec_abc".into(),
            sealed: "v1.x.y".into(),
        };
        assert!(!format!("{s:?}").contains("abc"));
    }
}
