//! Webhooks of a project (docs/api/events-and-webhooks.md), for its admins: create (the signing secret is shown
//! once), list, read, change, delete, the delivery log, and redelivery.
//!
//! A URL is checked when it is set: http(s) only, and every address it resolves to must be
//! public unless the operator allows private ones (the sender checks again at delivery
//! time: DNS can change).
//!
//! Webhooks sit beside `tracking` in every layer (`keel_domain::webhooks`, this module,
//! `keel_infrastructure::webhooks`, the api's `routes::webhooks`). Their use cases take
//! [`TrackingPorts`]: a webhook belongs to a project and is authorized through its
//! membership like everything in it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use keel_domain::audit::{AuditEntry, Authority};
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::text::{self, TextRule};
use keel_domain::tracking::Permission;
use keel_domain::webhooks::{Delivery, DeliveryAttempt, Webhook};
use keel_domain::{FieldError, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest, Page, PageRequest};
use crate::tracking::{TrackingPorts, check, not_found_as, validated};

/// A project has at most this many webhooks.
pub const MAX_WEBHOOKS_PER_PROJECT: u64 = 20;
/// `events: ["*"]` subscribes to every type.
const ALL_EVENTS: &str = "*";

/// Position in a delivery log (newest first): the delivery's id (ids grow with time).
pub type DeliveryCursor = Uuid;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWebhookBody {
    /// Absolute `http`/`https` URL, at most 2048 characters; its host must resolve, when the
    /// webhook is created, to public addresses only.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "https://93.184.215.14/keel", max_length = 2048)
    )]
    pub url: String,
    /// Event types (`task.created`, …), or `["*"]` for all of them.
    #[cfg_attr(feature = "openapi", schema(example = json!(["task.created", "task.updated"])))]
    pub events: Vec<String>,
    /// Default `true`.
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateWebhookBody {
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `true` re-enables a webhook disabled after a day of failures (its breaker closes).
    pub enabled: Option<bool>,
}

/// A webhook, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    #[cfg_attr(feature = "openapi", schema(example = json!(["task.created"])))]
    pub events: Vec<&'static str>,
    pub enabled: bool,
    /// Why Keel disabled it (after a day of failures); `null` otherwise.
    pub disabled_reason: Option<String>,
    /// The circuit breaker: `closed` (delivering), `open` (resting until `breakerOpenUntil`).
    #[cfg_attr(feature = "openapi", schema(example = "closed"))]
    pub breaker: &'static str,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// Since when every attempt has failed; `null` when the last one succeeded.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookView {
    pub fn new(w: &Webhook, now: DateTime<Utc>) -> Self {
        let open = w.open_until.is_some_and(|until| until > now);
        Self {
            id: w.id,
            project_id: w.project_id,
            url: w.url.clone(),
            events: w.events.iter().map(|e| e.as_str()).collect(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            breaker: if open { "open" } else { "closed" },
            breaker_open_until: w.open_until.filter(|_| open),
            consecutive_failures: w.consecutive_failures,
            failing_since: w.failing_since,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A new webhook with its signing secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhookView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The key of `X-Keel-Signature` (HMAC-SHA256). Shown only in this response.
    #[cfg_attr(feature = "openapi", schema(example = "whsec_3q2-7wAAAAA"))]
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttemptView {
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl From<&DeliveryAttempt> for DeliveryAttemptView {
    fn from(a: &DeliveryAttempt) -> Self {
        Self {
            number: a.number,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error.clone(),
        }
    }
}

/// One event for one webhook: the same `X-Keel-Delivery` id on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "task.created"))]
    pub event_type: &'static str,
    /// `pending`, `succeeded` or `failed` (out of attempts; it can be redelivered).
    #[cfg_attr(feature = "openapi", schema(example = "succeeded"))]
    pub status: &'static str,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttemptView>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempts: d.attempts.iter().map(DeliveryAttemptView::from).collect(),
        }
    }
}

/// The event types a subscription names: known types, or `*` alone for all.
fn parse_events(raw: &[String]) -> Result<Vec<EventType>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(
            "events",
            "must name at least one event type, or \"*\"",
        ));
    }
    if raw.iter().any(|e| e == ALL_EVENTS) {
        return Ok(EventType::ALL.to_vec());
    }
    let mut types = BTreeSet::new();
    for name in raw {
        let Some(t) = EventType::parse(name) else {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(FieldError::new(
                "events",
                format!(
                    "unknown event type {name:?}; known: {}, or \"*\"",
                    known.join(", ")
                ),
            ));
        };
        types.insert(t);
    }
    Ok(types.into_iter().collect())
}

async fn check_url(ports: &TrackingPorts, url: &str) -> Result<String, FieldError> {
    text::check(url, "url", TextRule::Line)?;
    ports
        .webhook_urls
        .check(url)
        .await
        .map_err(|message| FieldError::new("url", message))
}

/// The audit entry of a change to a webhook. Webhooks are for project admins only, so what
/// describes one (its URL, which often carries a token, and its events) is `restricted`:
/// other members see that it changed, not how.
fn entry(
    ports: &TrackingPorts,
    meta: &RequestMeta,
    principal: &Principal,
    action: &str,
    webhook: &Webhook,
    details: serde_json::Value,
    restricted: Option<serde_json::Value>,
) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: ports.clock.now(),
        actor_id: Some(principal.user_id),
        action: action.to_owned(),
        resource_type: "webhook".to_owned(),
        resource_id: Some(webhook.id.to_string()),
        project_id: Some(webhook.project_id),
        request_id: meta.request_id.clone(),
        ip: meta.ip.clone(),
        details: Some(details),
        restricted,
        authority: Some(Authority::of(principal, Permission::Administer)),
        token_id: principal.token_id(),
    }
}

async fn load(ports: &TrackingPorts, project_id: Uuid, id: Uuid) -> Result<Webhook, AppError> {
    ports
        .webhooks
        .find(project_id, id)
        .await?
        .ok_or(AppError::NotFound("webhook"))
}

pub async fn create_webhook(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: CreateWebhookBody,
    meta: &RequestMeta,
) -> Result<CreatedWebhookView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let mut errors = Vec::new();
    let events = check(&mut errors, parse_events(&body.events));
    let url = check(&mut errors, check_url(ports, &body.url).await);
    validated(errors)?;
    let (Some(url), Some(events)) = (url, events) else {
        return Err(AppError::internal("validated input missing"));
    };
    let now = ports.clock.now();
    let webhook = Webhook {
        id: Uuid::now_v7(),
        project_id,
        url,
        events,
        enabled: body.enabled.unwrap_or(true),
        disabled_reason: None,
        created_by: principal.user_id,
        created_at: now,
        updated_at: now,
        consecutive_failures: 0,
        open_until: None,
        failing_since: None,
    };
    let secret = ports.webhook_secrets.issue()?;
    let audit = entry(
        ports,
        meta,
        principal,
        "webhook.created",
        &webhook,
        json!({}),
        Some(json!({ "url": webhook.url, "events": webhook.events })),
    );
    // The cap is counted in the insert's transaction: concurrent creates cannot pass it.
    ports
        .webhooks
        .create(&webhook, &secret.sealed, &audit, MAX_WEBHOOKS_PER_PROJECT)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AppError::Conflict(format!(
                "a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks"
            )),
            StoreError::NotFound => AppError::NotFound("project"),
            other => other.into(),
        })?;
    Ok(CreatedWebhookView {
        webhook: WebhookView::new(&webhook, now),
        secret: secret.plain,
    })
}

pub async fn list_webhooks(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    page: PageRequest,
) -> Result<Page<WebhookView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let (hooks, total) = ports
        .webhooks
        .list(project_id, page.offset(), u64::from(page.limit()))
        .await?;
    let now = ports.clock.now();
    Ok(Page::new(
        hooks.iter().map(|w| WebhookView::new(w, now)).collect(),
        page,
        total,
    ))
}

pub async fn get_webhook(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    id: Uuid,
) -> Result<WebhookView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    Ok(WebhookView::new(
        &load(ports, project_id, id).await?,
        ports.clock.now(),
    ))
}

pub async fn update_webhook(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    id: Uuid,
    body: UpdateWebhookBody,
    meta: &RequestMeta,
) -> Result<WebhookView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let mut errors = Vec::new();
    let events = match &body.events {
        Some(raw) => check(&mut errors, parse_events(raw)),
        None => None,
    };
    let url = match &body.url {
        Some(raw) => check(&mut errors, check_url(ports, raw).await),
        None => None,
    };
    validated(errors)?;
    let mut webhook = load(ports, project_id, id).await?;
    let mut changed = Vec::new();
    if let Some(url) = url.filter(|u| *u != webhook.url) {
        webhook.url = url;
        changed.push("url");
    }
    if let Some(events) = events.filter(|e| *e != webhook.events) {
        webhook.events = events;
        changed.push("events");
    }
    if let Some(enabled) = body.enabled.filter(|e| *e != webhook.enabled) {
        webhook.enabled = enabled;
        webhook.disabled_reason = None;
        if enabled {
            webhook.consecutive_failures = 0;
            webhook.open_until = None;
            webhook.failing_since = None;
        }
        changed.push("enabled");
    }
    let now = ports.clock.now();
    if changed.is_empty() {
        return Ok(WebhookView::new(&webhook, now));
    }
    webhook.updated_at = now;
    let audit = entry(
        ports,
        meta,
        principal,
        "webhook.updated",
        &webhook,
        json!({ "changed": changed }),
        None,
    );
    ports
        .webhooks
        .update(&webhook, &audit)
        .await
        .map_err(not_found_as("webhook"))?;
    Ok(WebhookView::new(&webhook, now))
}

pub async fn delete_webhook(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let webhook = load(ports, project_id, id).await?;
    let audit = entry(
        ports,
        meta,
        principal,
        "webhook.deleted",
        &webhook,
        json!({}),
        Some(json!({ "url": webhook.url })),
    );
    ports
        .webhooks
        .delete(project_id, id, &audit)
        .await
        .map_err(not_found_as("webhook"))
}

pub async fn list_deliveries(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    id: Uuid,
    cursor: CursorRequest<DeliveryCursor>,
) -> Result<CursorPage<DeliveryView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let webhook = load(ports, project_id, id).await?;
    let rows = ports
        .webhooks
        .deliveries(webhook.id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    CursorPage::from_rows(rows.iter().map(DeliveryView::from).collect(), &cursor, |d| d.id)
}

/// Sends a finished delivery again (same id, same body, a fresh attempt budget); 409 while
/// it is still pending.
pub async fn redeliver(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    id: Uuid,
    delivery_id: Uuid,
    meta: &RequestMeta,
) -> Result<DeliveryView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let webhook = load(ports, project_id, id).await?;
    let audit = entry(
        ports,
        meta,
        principal,
        "webhook.redelivered",
        &webhook,
        json!({ "deliveryId": delivery_id }),
        None,
    );
    let queued = ports
        .webhooks
        .redeliver(webhook.id, delivery_id, ports.clock.now(), &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound("delivery"),
            other => other.into(),
        })?;
    if !queued {
        return Err(AppError::Conflict(
            "the delivery is still pending; it is redelivered once it has succeeded or failed".into(),
        ));
    }
    let delivery = ports
        .webhooks
        .find_delivery(webhook.id, delivery_id)
        .await?
        .ok_or(AppError::NotFound("delivery"))?;
    Ok(DeliveryView::from(&delivery))
}

#[cfg(test)]
mod tests {
    use keel_domain::audit::Authority;
    use keel_domain::webhooks::{IssuedSecret, MockUrlPolicy, MockWebhookRepository, MockWebhookSecrets};

    use super::*;
    use crate::tracking::fixtures::*;

    fn body(url: &str, events: &[&str]) -> CreateWebhookBody {
        CreateWebhookBody {
            url: url.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            enabled: None,
        }
    }

    fn fixture(repo: MockWebhookRepository) -> TrackingPorts {
        let mut urls = MockUrlPolicy::new();
        urls.expect_check().returning(|url| {
            if url.contains("10.0.0.1") {
                Err("must not resolve to a private address".into())
            } else {
                Ok(url.to_owned())
            }
        });
        let mut secrets = MockWebhookSecrets::new();
        secrets.expect_issue().returning(|| {
            Ok(IssuedSecret {
                plain: "whsec_plain".into(),
                sealed: "v1.k.sealed".into(),
            })
        });
        let mut ports = Fixture::default().ports();
        ports.webhooks = std::sync::Arc::new(repo);
        ports.webhook_urls = std::sync::Arc::new(urls);
        ports.webhook_secrets = std::sync::Arc::new(secrets);
        ports
    }

    #[test]
    fn event_lists_are_known_types_or_a_star() {
        assert_eq!(
            parse_events(&[
                "task.updated".into(),
                "task.created".into(),
                "task.updated".into()
            ])
            .unwrap(),
            vec![EventType::TaskCreated, EventType::TaskUpdated],
            "sorted and distinct"
        );
        assert_eq!(parse_events(&["*".into()]).unwrap().len(), EventType::ALL.len());
        assert!(parse_events(&[]).is_err());
        let e = parse_events(&["task.moved".into()]).unwrap_err();
        assert_eq!(e.field, "events");
        assert!(e.message.contains("task.moved"));
    }

    #[tokio::test]
    async fn admins_create_webhooks_and_see_the_secret_once_sealed_in_storage() {
        let mut repo = MockWebhookRepository::new();
        repo.expect_create()
            .withf(|w, sealed, a, limit| {
                w.url == "https://hooks.example.com/x"
                    && w.events == vec![EventType::TaskCreated]
                    && w.enabled
                    && sealed == "v1.k.sealed"
                    && *limit == MAX_WEBHOOKS_PER_PROJECT
                    && a.action == "webhook.created"
                    && !a.all_details().is_some_and(|d| d.to_string().contains("whsec"))
                    // The URL is for admins only; members see that a webhook was created.
                    && a.restricted.as_ref().is_some_and(|r| r["url"] == "https://hooks.example.com/x")
                    && !a.details.as_ref().is_some_and(|d| d.to_string().contains("hooks.example.com"))
                    && a.authority == Some(Authority::Member(Permission::Administer))
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let ports = fixture(repo);
        let created = create_webhook(
            &ports,
            &owner(),
            PROJECT_ID,
            body("https://hooks.example.com/x", &["task.created"]),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(created.secret, "whsec_plain");
        assert_eq!(created.webhook.breaker, "closed");
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["secret"], "whsec_plain");
        assert_eq!(json["url"], "https://hooks.example.com/x", "flattened");
    }

    #[tokio::test]
    async fn bad_urls_and_events_are_field_errors_and_members_are_refused() {
        let ports = fixture(MockWebhookRepository::new());
        let e = create_webhook(
            &ports,
            &owner(),
            PROJECT_ID,
            body("http://10.0.0.1/", &["nope"]),
            &meta(),
        )
        .await
        .unwrap_err();
        assert_eq!(fields(e), vec!["events", "url"]);
        assert!(matches!(
            create_webhook(
                &ports,
                &member(),
                PROJECT_ID,
                body("https://a.example/", &["*"]),
                &meta()
            )
            .await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            create_webhook(
                &ports,
                &stranger(),
                PROJECT_ID,
                body("https://a.example/", &["*"]),
                &meta()
            )
            .await,
            Err(AppError::NotFound("project"))
        ));
    }

    #[tokio::test]
    async fn a_project_has_a_bounded_number_of_webhooks() {
        let mut repo = MockWebhookRepository::new();
        repo.expect_create()
            .returning(|_, _, _, _| Err(StoreError::Conflict("webhooks per project".into())));
        let ports = fixture(repo);
        let refused = create_webhook(
            &ports,
            &owner(),
            PROJECT_ID,
            body("https://a.example/", &["*"]),
            &meta(),
        )
        .await;
        assert!(
            matches!(&refused, Err(AppError::Conflict(m)) if m.contains("at most 20")),
            "{refused:?}"
        );
        let e = create_webhook(
            &ports,
            &owner(),
            PROJECT_ID,
            body("https://a.example/\u{0}", &["*"]),
            &meta(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            fields(e),
            vec!["url"],
            "control characters are refused before any look-up"
        );
        assert!(matches!(
            create_webhook(
                &ports,
                &owner(),
                PROJECT_ID,
                body("https://a.example/", &["*"]),
                &meta()
            )
            .await,
            Err(AppError::Conflict(_))
        ));
    }

    fn stored() -> Webhook {
        Webhook {
            id: Uuid::from_u128(0x77),
            project_id: PROJECT_ID,
            url: "https://a.example/".into(),
            events: vec![EventType::TaskCreated],
            enabled: false,
            disabled_reason: Some("failing for a day".into()),
            created_by: owner().user_id,
            created_at: now(),
            updated_at: now(),
            consecutive_failures: 9,
            open_until: Some(now() + chrono::Duration::minutes(5)),
            failing_since: Some(now()),
        }
    }

    #[tokio::test]
    async fn enabling_a_disabled_webhook_closes_its_breaker() {
        let mut repo = MockWebhookRepository::new();
        repo.expect_find().returning(|_, _| Ok(Some(stored())));
        repo.expect_update()
            .withf(|w, a| {
                w.enabled
                    && w.disabled_reason.is_none()
                    && w.consecutive_failures == 0
                    && w.open_until.is_none()
                    && w.failing_since.is_none()
                    && a.action == "webhook.updated"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = fixture(repo);
        let before = get_webhook(&ports, &owner(), PROJECT_ID, stored().id)
            .await
            .unwrap();
        assert_eq!(before.breaker, "open");
        let view = update_webhook(
            &ports,
            &owner(),
            PROJECT_ID,
            stored().id,
            UpdateWebhookBody {
                enabled: Some(true),
                ..Default::default()
            },
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!((view.enabled, view.breaker), (true, "closed"));
    }

    #[tokio::test]
    async fn a_pending_delivery_is_not_redelivered() {
        let mut repo = MockWebhookRepository::new();
        repo.expect_find().returning(|_, _| Ok(Some(stored())));
        repo.expect_redeliver().returning(|_, _, _, _| Ok(false));
        let ports = fixture(repo);
        assert!(matches!(
            redeliver(&ports, &owner(), PROJECT_ID, stored().id, Uuid::nil(), &meta()).await,
            Err(AppError::Conflict(_))
        ));
        let mut repo = MockWebhookRepository::new();
        repo.expect_find().returning(|_, _| Ok(Some(stored())));
        repo.expect_redeliver()
            .returning(|_, _, _, _| Err(StoreError::NotFound));
        let ports = fixture(repo);
        assert!(matches!(
            redeliver(&ports, &owner(), PROJECT_ID, stored().id, Uuid::nil(), &meta()).await,
            Err(AppError::NotFound("delivery"))
        ));
    }
}
