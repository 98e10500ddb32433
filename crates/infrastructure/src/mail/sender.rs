//! The background mail sender (adr/0018): every instance runs one; each claims due mails
//! from the mail outbox one row at a time (so exactly one instance sends a given mail),
//! renders them and hands them to the transport. A failed attempt is retried with
//! exponential backoff and jitter ([`after_failure`]) — the mail server may be away for
//! hours and no mail is lost — until it is accepted or given up.
//!
//! Latency: a mail committed on this instance wakes the sender at once; one committed on
//! another instance, or due for a retry, is seen at the next poll (`poll_interval`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_application::mail::{AfterFailure, DeliveryError, MailTransport, RetryPolicy, after_failure};
use keel_domain::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::outbox::{ClaimedMail, MailOutbox};
use super::render::{RenderSettings, render};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct MailSenderSettings {
    pub render: RenderSettings,
    pub retry: RetryPolicy,
    pub poll_interval: Duration,
    /// How long a claim holds: longer than one attempt can take (the transport's timeout).
    pub claim_ttl: Duration,
    pub batch_size: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailPass {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

pub struct MailSender {
    outbox: MailOutbox,
    transport: Arc<dyn MailTransport>,
    metrics: Option<Arc<Metrics>>,
    settings: MailSenderSettings,
    /// This instance's identity as a claimant.
    holder: Uuid,
}

impl std::fmt::Debug for MailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSender")
            .field("holder", &self.holder)
            .field("transport", &self.transport.kind())
            .finish_non_exhaustive()
    }
}

impl MailSender {
    pub fn new(
        outbox: MailOutbox,
        transport: Arc<dyn MailTransport>,
        metrics: Option<Arc<Metrics>>,
        settings: MailSenderSettings,
    ) -> Self {
        Self {
            outbox,
            transport,
            metrics,
            settings,
            holder: Uuid::now_v7(),
        }
    }

    /// Claims the due mails and makes one attempt at each.
    pub async fn pass(&self) -> Result<MailPass, StoreError> {
        let claimed = self
            .outbox
            .claim_due(
                self.holder,
                Utc::now(),
                self.settings.claim_ttl,
                self.settings.batch_size,
            )
            .await?;
        let mut pass = MailPass::default();
        for mail in claimed {
            match self.attempt(&mail).await {
                Ok(()) => {
                    self.outbox.delivered(mail.id, self.holder).await?;
                    let outcome = if self.transport.kind() == "disabled" {
                        tracing::info!(mail_id = %mail.id, "mail is disabled (KEEL_MAIL=disabled): a mail was dropped");
                        "dropped"
                    } else {
                        tracing::info!(mail_id = %mail.id, transport = self.transport.kind(), attempts = mail.attempts + 1, "mail delivered");
                        "sent"
                    };
                    self.count(outcome);
                    pass.sent += 1;
                }
                Err(error) => {
                    let attempts = mail.attempts + 1;
                    let jitter = rand::random::<f64>();
                    match after_failure(self.settings.retry, attempts, &error, jitter) {
                        AfterFailure::RetryIn(delay) => {
                            let next = Utc::now()
                                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                            tracing::warn!(mail_id = %mail.id, attempts, retry_in_secs = delay.as_secs(), error = %error, "mail not delivered; retrying later");
                            self.outbox
                                .retry_later(mail.id, self.holder, attempts, next, &error.to_string())
                                .await?;
                            self.count("retried");
                            pass.retried += 1;
                        }
                        AfterFailure::GiveUp => {
                            tracing::error!(mail_id = %mail.id, attempts, error = %error, "mail given up");
                            self.outbox
                                .give_up(mail.id, self.holder, attempts, &error.to_string())
                                .await?;
                            self.count("failed");
                            pass.failed += 1;
                        }
                    }
                }
            }
        }
        Ok(pass)
    }

    /// Renders and sends one claimed mail. A mail that cannot be rendered is a permanent
    /// failure (it would never render).
    async fn attempt(&self, mail: &ClaimedMail) -> Result<(), DeliveryError> {
        let (Some(template), Some(values)) = (mail.template, mail.values.as_ref()) else {
            return Err(DeliveryError::Permanent(
                "unknown template or unreadable values".into(),
            ));
        };
        let message = render(&self.settings.render, mail.id, &mail.to, template, values)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        self.transport.send(&message).await
    }

    fn count(&self, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.mail_delivery(outcome);
        }
    }

    /// Passes until `stop` turns `true` (the attempt under way finishes first).
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        crate::db::spawn_background(async move {
            let mut failing = false;
            loop {
                if *stop.borrow() {
                    break;
                }
                match self.pass().await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "the mail outbox cannot be read; retrying");
                    }
                    Err(e) => tracing::debug!(error = %e, "the mail outbox still cannot be read"),
                }
                tokio::select! {
                    () = self.outbox.written() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = stop.changed() => break,
                }
            }
        })
    }
}
