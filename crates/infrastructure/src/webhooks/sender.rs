//! The delivery worker: sends due deliveries, signed, and records every attempt.
//!
//! - Runs on the instance that holds the outbox lease (one sender at a time); a delivery is
//!   claimed (moved a minute ahead) before it is sent, so a sender that dies mid-attempt
//!   leaves it to be retried, never lost.
//! - Each webhook's deliveries are sent one after the other, oldest first (at most 16 per
//!   pass, and none after a failure in that pass); different webhooks are served
//!   concurrently. A pass ends when its slowest webhook is done, so a receiver that times out
//!   delays the others' next pass by at most one timeout (10 s).
//! - A failed attempt is retried after [`jittered_retry_delay`] until `max_attempts`; the
//!   webhook's [`Breaker`] opens after repeated failures, and while it is open deliveries
//!   wait without spending attempts. After a day of failures the webhook is disabled (and
//!   audited); its deliveries wait until an admin enables it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::webhooks::Webhook;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use url::Url;
use uuid::Uuid;

use super::backoff::jittered_retry_delay;
use super::breaker::{Breaker, BreakerPolicy, Gate};
use super::client::{Attempt, WebhookClient};
use super::secret_box::SecretBox;
use super::signing::signature_header;
use super::store::{DeliveryQueue, Due, Outcome};
use crate::metrics::Metrics;

/// How far a claim moves a delivery ahead: longer than an attempt's timeout.
const CLAIM: Duration = Duration::from_secs(60);
const BATCH: u64 = 64;
/// At most this many deliveries of one webhook per pass (they go one after the other).
const PER_WEBHOOK: usize = 16;

#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub disable_after: Duration,
    pub breaker: BreakerPolicy,
    pub poll_interval: Duration,
}

pub struct Sender {
    queue: DeliveryQueue,
    client: WebhookClient,
    secrets: Arc<SecretBox>,
    metrics: Option<Arc<Metrics>>,
    settings: SenderSettings,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Sender {
    pub fn new(
        queue: DeliveryQueue,
        client: WebhookClient,
        secrets: Arc<SecretBox>,
        metrics: Option<Arc<Metrics>>,
        settings: SenderSettings,
    ) -> Self {
        Self {
            queue,
            client,
            secrets,
            metrics,
            settings,
        }
    }

    fn count(&self, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.webhook_delivery(outcome);
        }
    }

    /// Sends what is due now; answers how many attempts were made.
    pub async fn pass(self: &Arc<Self>) -> Result<usize, StoreError> {
        let due = self.queue.due(Utc::now(), BATCH).await?;
        let mut by_webhook: Vec<(Uuid, Vec<Due>)> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        for d in due {
            if index
                .get(&d.webhook_id)
                .and_then(|&i| by_webhook.get(i))
                .is_some_and(|(_, list)| list.len() >= PER_WEBHOOK)
            {
                continue;
            }
            let slot = *index.entry(d.webhook_id).or_insert_with(|| {
                by_webhook.push((d.webhook_id, Vec::new()));
                by_webhook.len() - 1
            });
            if let Some((_, list)) = by_webhook.get_mut(slot) {
                list.push(d);
            }
        }
        let mut tasks = JoinSet::new();
        for (webhook_id, deliveries) in by_webhook {
            let sender = Arc::clone(self);
            tasks.spawn(crate::db::in_background(async move {
                sender.serve_webhook(webhook_id, deliveries).await
            }));
        }
        let mut attempts = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(n)) => attempts += n,
                Ok(Err(e)) => tracing::warn!(error = %e, "webhook deliveries not recorded; they are retried"),
                Err(e) => tracing::error!(error = %e, "a webhook delivery task failed"),
            }
        }
        Ok(attempts)
    }

    /// One webhook's due deliveries, in order, through its breaker.
    async fn serve_webhook(&self, webhook_id: Uuid, deliveries: Vec<Due>) -> Result<usize, StoreError> {
        let Some((hook, sealed)) = self.queue.webhook(webhook_id).await? else {
            return Ok(0);
        };
        if !hook.enabled {
            // Disabled since the queue was read; its deliveries wait for it.
            return Ok(0);
        }
        let secret = self.secrets.open(&sealed);
        let mut breaker = Breaker {
            consecutive_failures: hook.consecutive_failures,
            open_until: hook.open_until,
        };
        let mut attempts = 0;
        for (i, due) in deliveries.iter().enumerate() {
            let now = Utc::now();
            match breaker.decide(now) {
                Gate::Closed => {}
                Gate::Open { until } => {
                    for rest in &deliveries[i..] {
                        self.queue.postpone(rest, until).await?;
                    }
                    return Ok(attempts);
                }
                Gate::HalfOpen => {
                    let trial = breaker.start_trial(now, CLAIM);
                    if !self
                        .queue
                        .set_breaker(
                            webhook_id,
                            breaker.open_until,
                            trial.consecutive_failures,
                            trial.open_until,
                        )
                        .await?
                    {
                        return Ok(attempts);
                    }
                    breaker = trial;
                }
            }
            if !self.queue.claim(due, later(now, CLAIM)).await? {
                continue;
            }
            let attempt = match &secret {
                Ok(secret) => self.send(&hook, due, secret).await,
                Err(e) => Attempt {
                    status: None,
                    error: Some(format!(
                        "the signing secret cannot be opened ({e}): was the encryption key changed?"
                    )),
                    duration: Duration::ZERO,
                },
            };
            attempts += 1;
            let succeeded = attempt.is_success();
            let spent = due.attempts.saturating_add(1);
            let retry_at = (!succeeded && spent < self.settings.max_attempts)
                .then(|| later(Utc::now(), jittered_retry_delay(spent, self.settings.retry_base)));
            let outcome = Outcome {
                started_at: now,
                duration_ms: u32::try_from(attempt.duration.as_millis()).unwrap_or(u32::MAX),
                status_code: attempt.status,
                error: attempt.error.clone().or_else(|| {
                    attempt
                        .status
                        .filter(|_| !succeeded)
                        .map(|s| format!("the receiver answered {s}"))
                }),
                succeeded,
                retry_at,
            };
            let disable_after =
                chrono::Duration::from_std(self.settings.disable_after).unwrap_or(chrono::Duration::MAX);
            let disabled = self
                .queue
                .record(due, webhook_id, &outcome, disable_after)
                .await?;
            let next = if succeeded {
                breaker.on_success()
            } else {
                breaker.on_failure(Utc::now(), &self.settings.breaker)
            };
            if next != breaker {
                self.queue
                    .set_breaker(
                        webhook_id,
                        breaker.open_until,
                        next.consecutive_failures,
                        next.open_until,
                    )
                    .await?;
            }
            breaker = next;
            self.report(&hook, due, &attempt, &outcome, disabled);
            // After a failure the rest waits for the next pass: a slow or failing receiver
            // costs a pass at most one timeout, whatever its backlog.
            if disabled || !succeeded {
                return Ok(attempts);
            }
        }
        Ok(attempts)
    }

    async fn send(&self, hook: &Webhook, due: &Due, secret: &[u8]) -> Attempt {
        let Ok(url) = Url::parse(&hook.url) else {
            return Attempt {
                status: None,
                error: Some("refused: the stored URL does not parse".into()),
                duration: Duration::ZERO,
            };
        };
        let body = due.payload.as_bytes().to_vec();
        let signature = signature_header(secret, Utc::now().timestamp(), &body);
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-keel-event", due.event_type.clone()),
            ("x-keel-delivery", due.id.to_string()),
            ("x-keel-signature", signature),
        ];
        self.client.send(&url, &headers, body).await
    }

    fn report(&self, hook: &Webhook, due: &Due, attempt: &Attempt, outcome: &Outcome, disabled: bool) {
        let kind = match (outcome.succeeded, attempt.status, attempt.error.as_deref()) {
            (true, _, _) => "success",
            (false, Some(_), _) => "http_error",
            (false, None, Some(e)) if e.starts_with("refused") => "refused",
            (false, None, _) => "network_error",
        };
        self.count(kind);
        if outcome.succeeded {
            return;
        }
        let gave_up = outcome.retry_at.is_none();
        if gave_up {
            self.count("gave_up");
        }
        tracing::warn!(
            webhook_id = %hook.id,
            project_id = %hook.project_id,
            delivery_id = %due.id,
            event_type = %due.event_type,
            attempt = due.attempts + 1,
            status = ?attempt.status,
            error = attempt.error.as_deref().unwrap_or(""),
            retry_at = ?outcome.retry_at,
            gave_up,
            disabled,
            "webhook delivery attempt failed"
        );
    }

    /// Runs while `leading` says this instance holds the outbox lease, until `stop`.
    pub fn spawn(
        self: Arc<Self>,
        leading: Arc<AtomicBool>,
        queued: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        crate::db::spawn_background(async move {
            let mut failing = false;
            loop {
                if leading.load(Ordering::Acquire) {
                    match self.pass().await {
                        Ok(_) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "webhook sender cannot read its queue; retrying");
                        }
                        Err(e) => tracing::debug!(error = %e, "webhook sender still failing"),
                    }
                }
                tokio::select! {
                    () = queued.notified() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }
}
