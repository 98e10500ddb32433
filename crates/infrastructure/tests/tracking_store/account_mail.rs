//! One-time account tokens and the mail outbox (identity and mail stores, here for the
//! fixtures every store shares): a token and its mail are written together; a token is
//! redeemed once, even by two requests at the same moment; a mail is claimed by one sender,
//! retried later, delivered (deleted) or given up (its values erased); the sender delivers
//! through its transport and retries a failed attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use keel_application::mail::{DeliveryError, MailMessage, MailTransport, RetryPolicy};
use keel_domain::identity::account_tokens::{AccountToken, TokenPurpose};
use keel_domain::identity::ports::{AccountTokenRepository, SessionRepository};
use keel_domain::identity::{PasswordHash, RefreshToken, Session, UserStatus};
use keel_domain::mail::{Mail, MailTemplate};
use keel_infrastructure::entities::{mail_outbox, users};
use keel_infrastructure::identity::account_tokens::SeaOrmAccountTokenRepository;
use keel_infrastructure::identity::sessions::SeaOrmSessionRepository;
use keel_infrastructure::mail::{MailOutbox, MailSender, MailSenderSettings, RenderSettings};
use sea_orm::EntityTrait;
use uuid::Uuid;

use crate::common::*;

fn mail(to: &str) -> Mail {
    Mail {
        id: Uuid::now_v7(),
        to: to.to_owned(),
        template: MailTemplate::PasswordReset,
        values: BTreeMap::from([
            ("name".to_owned(), "Ann".to_owned()),
            ("token".to_owned(), "0123.secret".to_owned()),
            ("validFor".to_owned(), "30 minutes".to_owned()),
        ]),
        created_at: Utc::now() - chrono::Duration::seconds(1),
    }
}

fn token(user_id: Uuid, purpose: TokenPurpose) -> AccountToken {
    // PostgreSQL keeps microseconds.
    AccountToken::new(user_id, purpose, "ab".repeat(32), Utc::now().trunc_subsecs(6))
}

async fn session(s: &Store, user_id: Uuid) -> Uuid {
    let now = Utc::now();
    let session = Session {
        id: Uuid::now_v7(),
        user_id,
        created_at: now,
        last_used_at: now,
        expires_at: now + chrono::Duration::days(7),
        revoked_at: None,
        user_agent: None,
        ip: None,
    };
    let refresh = RefreshToken {
        id: Uuid::now_v7(),
        session_id: session.id,
        issued_at: now,
        expires_at: session.expires_at,
    };
    SeaOrmSessionRepository::new(s.db.clone())
        .create(&session, &refresh)
        .await
        .unwrap();
    session.id
}

#[tokio::test]
async fn a_reset_token_and_its_mail_are_stored_together_and_redeemed_once() {
    for s in stores().await {
        let repo = SeaOrmAccountTokenRepository::new(s.db.clone());
        let ann = user(&s, "ann").await;
        let (one, two) = (session(&s, ann).await, session(&s, ann).await);
        let t = token(ann, TokenPurpose::PasswordReset);
        let other = token(ann, TokenPurpose::PasswordReset);
        repo.issue(&t, &mail("ann@example.com")).await.unwrap();
        repo.issue(&other, &mail("ann@example.com")).await.unwrap();
        assert_eq!(
            MailOutbox::new(s.db.clone()).pending().await.unwrap(),
            2,
            "{}",
            s.name
        );

        let found = repo.find(t.id).await.unwrap().unwrap();
        assert_eq!(found.token, t, "{}", s.name);
        assert_eq!(found.user_status, UserStatus::Active);
        assert!(repo.find(Uuid::now_v7()).await.unwrap().is_none());

        let hash = PasswordHash::new("new-hash".into());
        let mut revoked = repo
            .reset_password(t.id, ann, &hash, Utc::now())
            .await
            .unwrap()
            .expect("redeemed");
        revoked.sort();
        let mut both = vec![one, two];
        both.sort();
        assert_eq!(revoked, both, "{}: every session is revoked", s.name);
        let row = users::Entity::find_by_id(ann)
            .one(s.db.connection())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.password_hash, "new-hash");
        assert!(row.email_verified, "the link reached the inbox");
        // Used: not again, and the user's other reset token went with it.
        assert!(
            repo.reset_password(t.id, ann, &hash, Utc::now())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            repo.reset_password(other.id, ann, &hash, Utc::now())
                .await
                .unwrap()
                .is_none()
        );
        assert!(repo.find(t.id).await.unwrap().unwrap().token.used_at.is_some());
    }
}

#[tokio::test]
async fn an_expired_token_or_one_of_another_purpose_is_not_redeemed() {
    for s in stores().await {
        let repo = SeaOrmAccountTokenRepository::new(s.db.clone());
        let ann = user(&s, "ann").await;
        let t = token(ann, TokenPurpose::EmailVerification);
        repo.issue(&t, &mail("ann@example.com")).await.unwrap();
        let hash = PasswordHash::new("h".into());
        assert!(
            repo.reset_password(t.id, ann, &hash, Utc::now())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !repo.verify_email(t.id, ann, t.expires_at).await.unwrap(),
            "{}",
            s.name
        );
        assert!(!repo.verify_email(t.id, Uuid::now_v7(), Utc::now()).await.unwrap());
        assert!(repo.verify_email(t.id, ann, Utc::now()).await.unwrap());
        let row = users::Entity::find_by_id(ann)
            .one(s.db.connection())
            .await
            .unwrap()
            .unwrap();
        assert!(row.email_verified);
    }
}

#[tokio::test]
async fn of_two_concurrent_redemptions_of_one_token_exactly_one_succeeds() {
    for s in stores().await {
        let repo = Arc::new(SeaOrmAccountTokenRepository::new(s.db.clone()));
        for _ in 0..5 {
            let ann = user(&s, "ann").await;
            let t = token(ann, TokenPurpose::EmailVerification);
            repo.issue(&t, &mail("ann@example.com")).await.unwrap();
            let (a, b) = tokio::join!(
                repo.verify_email(t.id, ann, Utc::now()),
                repo.verify_email(t.id, ann, Utc::now())
            );
            assert!(a.unwrap() ^ b.unwrap(), "{}: exactly one redeems", s.name);
        }
    }
}

#[tokio::test]
async fn a_mail_is_claimed_by_one_sender_retried_later_and_deleted_or_given_up() {
    for s in stores().await {
        let repo = SeaOrmAccountTokenRepository::new(s.db.clone());
        let outbox = MailOutbox::new(s.db.clone());
        let ann = user(&s, "ann").await;
        let m = mail("ann@example.com");
        repo.issue(&token(ann, TokenPurpose::PasswordReset), &m)
            .await
            .unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let ttl = Duration::from_secs(60);
        let now = Utc::now();
        let claimed = outbox.claim_due(a, now, ttl, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", s.name);
        assert_eq!(claimed[0].id, m.id);
        assert_eq!(claimed[0].values.as_ref(), Some(&m.values));
        assert_eq!(claimed[0].template, Some(MailTemplate::PasswordReset));
        assert!(
            outbox.claim_due(b, now, ttl, 10).await.unwrap().is_empty(),
            "claimed by a"
        );
        // A claim that lapsed (its sender died) is taken over.
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(outbox.claim_due(b, later, ttl, 10).await.unwrap().len(), 1);
        // Only the current claimant's outcome counts: a's retry changes nothing.
        outbox.retry_later(m.id, a, 1, now, "stale").await.unwrap();
        outbox
            .retry_later(
                m.id,
                b,
                1,
                later + chrono::Duration::seconds(30),
                "connection refused",
            )
            .await
            .unwrap();
        assert!(
            outbox.claim_due(a, later, ttl, 10).await.unwrap().is_empty(),
            "not due yet"
        );
        let again = outbox
            .claim_due(a, later + chrono::Duration::seconds(31), ttl, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        outbox.give_up(m.id, a, 2, "550 no such user").await.unwrap();
        let row = mail_outbox::Entity::find_by_id(m.id)
            .one(s.db.connection())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.status.as_str(), row.attempts), ("failed", 2));
        assert!(row.payload.is_none(), "the token goes with the values");
        assert_eq!(row.last_error.as_deref(), Some("550 no such user"));
        assert_eq!(outbox.pending().await.unwrap(), 0);

        let d = mail("bea@example.com");
        repo.issue(&token(ann, TokenPurpose::PasswordReset), &d)
            .await
            .unwrap();
        let claimed = outbox.claim_due(a, Utc::now(), ttl, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        outbox.delivered(d.id, a).await.unwrap();
        assert!(
            mail_outbox::Entity::find_by_id(d.id)
                .one(s.db.connection())
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// A transport that fails its first `failures` attempts (transiently), then records.
#[derive(Default)]
struct Flaky {
    failures: usize,
    permanent: bool,
    attempts: AtomicUsize,
    sent: std::sync::Mutex<Vec<MailMessage>>,
}

#[async_trait]
impl MailTransport for Flaky {
    async fn send(&self, message: &MailMessage) -> Result<(), DeliveryError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.permanent {
            return Err(DeliveryError::Permanent("550 rejected".into()));
        }
        if n < self.failures {
            return Err(DeliveryError::Transient("connection refused".into()));
        }
        self.sent.lock().unwrap().push(message.clone());
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

fn sender(s: &Store, transport: Arc<Flaky>) -> MailSender {
    MailSender::new(
        MailOutbox::new(s.db.clone()),
        transport,
        None,
        MailSenderSettings {
            render: RenderSettings {
                from: "Keel <keel@example.com>".into(),
                public_url: "https://keel.example.com".into(),
            },
            retry: RetryPolicy {
                base: Duration::from_millis(200),
                max_delay: Duration::from_secs(1),
                max_attempts: 5,
            },
            poll_interval: Duration::from_millis(50),
            claim_ttl: Duration::from_secs(60),
            batch_size: 10,
        },
    )
}

#[tokio::test]
async fn the_sender_retries_a_failed_attempt_and_delivers_the_rendered_mail_once() {
    for s in stores().await {
        let repo = SeaOrmAccountTokenRepository::new(s.db.clone());
        let ann = user(&s, "ann").await;
        let m = mail("ann@example.com");
        repo.issue(&token(ann, TokenPurpose::PasswordReset), &m)
            .await
            .unwrap();
        let transport = Arc::new(Flaky {
            failures: 1,
            ..Flaky::default()
        });
        let sender = sender(&s, Arc::clone(&transport));
        let first = sender.pass().await.unwrap();
        assert_eq!((first.sent, first.retried), (0, 1), "{}", s.name);
        // Not due again at once.
        assert_eq!(sender.pass().await.unwrap().sent, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sender.pass().await.unwrap().sent, 1);
        let sent = transport.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].id, m.id);
        assert_eq!(sent[0].subject, "Reset your password");
        assert!(
            sent[0]
                .text
                .contains("https://keel.example.com/reset-password?token=0123.secret")
        );
        assert_eq!(MailOutbox::new(s.db.clone()).pending().await.unwrap(), 0);
        assert_eq!(sender.pass().await.unwrap(), Default::default(), "sent once");
    }
}

#[tokio::test]
async fn the_sender_gives_a_refused_mail_up() {
    for s in stores().await {
        let repo = SeaOrmAccountTokenRepository::new(s.db.clone());
        let ann = user(&s, "ann").await;
        let m = mail("ann@example.com");
        repo.issue(&token(ann, TokenPurpose::PasswordReset), &m)
            .await
            .unwrap();
        let transport = Arc::new(Flaky {
            permanent: true,
            ..Flaky::default()
        });
        let pass = sender(&s, transport).pass().await.unwrap();
        assert_eq!(pass.failed, 1, "{}", s.name);
        let row = mail_outbox::Entity::find_by_id(m.id)
            .one(s.db.connection())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, "failed");
    }
}
