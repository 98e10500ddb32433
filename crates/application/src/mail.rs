//! Mail delivery (adr/0018): the port the background mail sender delivers through, and its
//! retry policy.
//!
//! Use cases never send mail themselves: they hand a [`keel_domain::mail::Mail`] to the
//! store write that causes it, which writes it to the mail outbox in the same transaction.
//! The sender (infrastructure) claims due mails from the outbox, renders them from the
//! templates and hands each [`MailMessage`] to a [`MailTransport`] — SMTP, or `.eml` files
//! in development — retrying with [`retry_delay`] until it is accepted.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// A rendered mail, ready for a transport. Its bodies may hold a one-time token: `Debug`
/// shows neither the bodies nor the recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct MailMessage {
    /// The outbox row's id: the same on every attempt (the `Message-ID` is derived from
    /// it, so a receiver can tell a repeated delivery).
    pub id: Uuid,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for MailMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailMessage")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a transport did not deliver a message. The text is for the logs and the outbox's
/// `last_error`: it never holds the message's bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The server is away, busy or answered with a temporary (4xx) refusal: try again.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The server refused this message for good (5xx): retrying will not help.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Hands rendered mail over to the world (an SMTP server, a folder).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MailTransport: Send + Sync {
    /// Delivers `message`; `Ok` once the next hop accepted it.
    async fn send(&self, message: &MailMessage) -> Result<(), DeliveryError>;
    /// `smtp`, `file` or `disabled`: for the logs.
    fn kind(&self) -> &'static str;
}

/// How the sender retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt; each further one doubles it.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts before a mail is given up (kept as `failed`, its values erased).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            max_attempts: 10,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Give the mail up.
    GiveUp,
}

/// After the `attempts`-th failed attempt (1 for the first) with `error`: a permanent
/// refusal is given up at once, anything else is retried after `base · 2^(attempts−1)`
/// (at most `max_delay`), with up to a quarter more at random (`jitter` in 0..=1) so that
/// mails queued together do not retry together, until `max_attempts`.
pub fn after_failure(policy: RetryPolicy, attempts: u32, error: &DeliveryError, jitter: f64) -> AfterFailure {
    if matches!(error, DeliveryError::Permanent(_)) || attempts >= policy.max_attempts {
        return AfterFailure::GiveUp;
    }
    let doublings = attempts.saturating_sub(1).min(30);
    let delay = policy
        .base
        .saturating_mul(1_u32 << doublings)
        .min(policy.max_delay);
    let extra = delay.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
    AfterFailure::RetryIn(delay + extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
        }
    }

    fn transient() -> DeliveryError {
        DeliveryError::Transient("connection refused".into())
    }

    #[test]
    fn retries_double_up_to_the_cap_with_a_bounded_jitter() {
        let delays: Vec<_> = (1..5)
            .map(|n| after_failure(policy(), n, &transient(), 0.0))
            .collect();
        assert_eq!(
            delays,
            [10, 20, 40, 60].map(|s| AfterFailure::RetryIn(Duration::from_secs(s)))
        );
        assert_eq!(
            after_failure(policy(), 1, &transient(), 1.0),
            AfterFailure::RetryIn(Duration::from_millis(12_500))
        );
    }

    #[test]
    fn gives_up_after_the_last_attempt_or_a_permanent_refusal() {
        assert_eq!(
            after_failure(policy(), 5, &transient(), 0.5),
            AfterFailure::GiveUp
        );
        assert_eq!(
            after_failure(
                policy(),
                1,
                &DeliveryError::Permanent("550 no such user".into()),
                0.5
            ),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn a_message_debug_shows_no_body_and_no_recipient() {
        let m = MailMessage {
            id: Uuid::nil(),
            from: "keel@example.com".into(),
            to: "ann@example.com".into(),
            subject: "Reset your password".into(),
            text: "token=secret".into(),
            html: "token=secret".into(),
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret") && !shown.contains("ann@"), "{shown}");
    }
}
