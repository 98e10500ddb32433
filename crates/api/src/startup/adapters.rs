//! The adapters `Application::build` wires, one function per kind: the database pools, the
//! shared Redis work (rate limiter, cache), the event bus, the outbox dispatcher and the
//! webhook sender.

use std::sync::Arc;

use keel_application::cache::{Cache, NoCache};
use keel_application::events::EventBus;
use keel_application::mail::{MailTransport, RetryPolicy};
use keel_domain::health::CacheProbe;
use keel_domain::rate_limit::RateLimiter;
use keel_infrastructure::cache::redis::{RedisTier, RedisTierProbe};
use keel_infrastructure::cache::{L1Settings, TieredCache};
use keel_infrastructure::events::{Dispatcher, DispatcherSettings, InProcessBus, Outbox, RedisBus};
use keel_infrastructure::health::InProcessCacheProbe;
use keel_infrastructure::mail::{
    DisabledTransport, FileTransport, MailOutbox, MailSender, MailSenderSettings, RenderSettings,
    SmtpTransport, SmtpUrl,
};
use keel_infrastructure::rate_limit::{InProcessRateLimiter, RedisRateLimiter};
use keel_infrastructure::redis::{Pool, SharedConnection, create_pool};
use keel_infrastructure::webhooks::breaker::BreakerPolicy;
use keel_infrastructure::webhooks::sender::{Sender, SenderSettings};
use keel_infrastructure::webhooks::store::DeliveryQueue;
use keel_infrastructure::webhooks::{ClientSettings, SecretBox, WebhookClient};
use keel_infrastructure::{Database, Metrics, migrate};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use crate::config::{MailDelivery, Settings};

use super::*;

/// The task that keeps a Redis channel subscribed (none without Redis).
type Subscriber = Option<JoinHandle<()>>;

/// The requests' pool (migrated first, when `KEEL_AUTO_MIGRATE` says so) and the main
/// runtime's own (see [`Database::background`]).
pub(super) async fn databases(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> Result<(Database, Database), StartupError> {
    let db = Database::connect(&db_settings(settings), Some(Arc::clone(metrics)))
        .await
        .map_err(StartupError::Database)?;
    if settings.auto_migrate {
        migrate::up(&db).await.map_err(StartupError::Migration)?;
    }
    let background_db = db
        .background(
            &db_settings(settings),
            BACKGROUND_DB_CONNECTIONS,
            Some(Arc::clone(metrics)),
        )
        .await
        .map_err(StartupError::Database)?;
    Ok((db, background_db))
}

/// The rate limiter every instance shares through Redis, or this process's own.
pub(super) fn rate_limiter(settings: &Settings, redis_pool: Option<&Pool>) -> Arc<dyn RateLimiter> {
    match redis_pool {
        Some(pool) => Arc::new(RedisRateLimiter::new(pool.clone(), &settings.cache.redis_prefix)),
        None => Arc::new(InProcessRateLimiter::new()),
    }
}

/// The cache the use cases read through (`KEEL_CACHE_LAYERS`), its readiness probe, and the
/// task that keeps its invalidation channel subscribed (with Redis).
pub(super) async fn cache(
    settings: &Settings,
    redis_pool: Option<&Pool>,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn Cache>, Arc<dyn CacheProbe>, Subscriber), StartupError> {
    let layers = settings.cache.layers;
    let l1 = L1Settings {
        ttl: settings.cache.l1_ttl,
        max_entries: settings.cache.l1_max_entries,
        max_bytes: settings.cache.l1_max_bytes,
        enabled: layers.l1,
    };
    Ok(match (&settings.redis_url, redis_pool) {
        _ if !layers.l1 && !layers.l2 => {
            tracing::warn!("KEEL_CACHE_LAYERS=none: every read goes to the database");
            (Arc::new(NoCache), Arc::new(InProcessCacheProbe), None)
        }
        (Some(url), Some(pool)) if layers.l2 => {
            let generations = TieredCache::generations();
            let tier = RedisTier::new(
                pool.clone(),
                url.expose_secret(),
                &settings.cache.redis_prefix,
                settings.cache.l2_ttl,
                Arc::clone(&generations),
            )
            .map_err(StartupError::RedisUrl)?;
            let subscriber = tier.spawn_subscriber();
            tier.first_attempt(REDIS_TIMEOUT * 2).await;
            (
                Arc::new(TieredCache::tiered(l1, generations, tier.clone(), Some(metrics))),
                Arc::new(RedisTierProbe(tier)),
                Some(subscriber),
            )
        }
        _ => (
            Arc::new(TieredCache::in_process(l1, Some(metrics))),
            Arc::new(InProcessCacheProbe),
            None,
        ),
    })
}

/// The bus events are published on (Redis between instances, else in-process), and the
/// task that keeps its channel subscribed.
pub(super) fn event_bus(settings: &Settings) -> Result<(Arc<dyn EventBus>, Subscriber), StartupError> {
    Ok(match &settings.redis_url {
        Some(url) => {
            // A pool of its own: its connections are opened by the dispatcher, on the
            // runtime that outlives the workers (see `Database::background`).
            let bus = RedisBus::new(
                Arc::new(SharedConnection::new(create_pool(
                    url.expose_secret(),
                    BACKGROUND_REDIS_CONNECTIONS,
                    REDIS_TIMEOUT,
                )?)),
                url.expose_secret(),
                &settings.cache.redis_prefix,
            )
            .map_err(StartupError::RedisUrl)?;
            let subscriber = bus.spawn_subscriber();
            (bus, Some(subscriber))
        }
        None => (Arc::new(InProcessBus::default()), None),
    })
}

/// Publishes the outbox on `events`.
pub(super) fn dispatcher(
    settings: &Settings,
    background_db: &Database,
    events: &Arc<dyn EventBus>,
    metrics: &Arc<Metrics>,
) -> Arc<Dispatcher> {
    Arc::new(Dispatcher::new(
        Outbox::new(background_db.clone()),
        Arc::clone(events),
        Some(Arc::clone(metrics)),
        DispatcherSettings {
            poll_interval: settings.events.outbox_poll,
            ..DispatcherSettings::default()
        },
    ))
}

/// Sends webhook deliveries (`KEEL_WEBHOOK_*`), signing with the secrets `secret_box` opens.
pub(super) fn webhook_sender(
    settings: &Settings,
    background_db: &Database,
    secret_box: SecretBox,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Sender>, StartupError> {
    Ok(Arc::new(Sender::new(
        DeliveryQueue::new(background_db.clone()),
        WebhookClient::new(ClientSettings {
            allow_private: settings.webhooks.allow_private,
            ..ClientSettings::default()
        })?,
        Arc::new(secret_box),
        Some(Arc::clone(metrics)),
        SenderSettings {
            retry_base: settings.webhooks.retry_base,
            max_attempts: settings.webhooks.max_attempts,
            disable_after: settings.webhooks.disable_after,
            breaker: BreakerPolicy {
                failure_threshold: settings.webhooks.breaker_threshold,
                cooldown: settings.webhooks.breaker_cooldown,
                ..BreakerPolicy::default()
            },
            poll_interval: SENDER_POLL,
        },
    )))
}

/// Sends the mail outbox through the configured transport (`KEEL_SMTP_URL`, `.eml` files
/// under `KEEL_MAIL_DIR`, or none with `KEEL_MAIL=disabled`).
pub(super) fn mail_sender(
    settings: &Settings,
    background_db: &Database,
    metrics: &Arc<Metrics>,
) -> Result<Arc<MailSender>, StartupError> {
    let mail = &settings.mail;
    let transport: Arc<dyn MailTransport> = match &mail.delivery {
        MailDelivery::Smtp(url) => {
            let url = SmtpUrl::parse(url.expose_secret()).map_err(StartupError::Mail)?;
            tracing::info!(host = %url.host, port = url.port, security = ?url.security, "mail goes out through SMTP");
            Arc::new(SmtpTransport::new(&url, MAIL_TIMEOUT).map_err(StartupError::Mail)?)
        }
        MailDelivery::Files(dir) => {
            tracing::warn!(dir = %dir.display(), "KEEL_SMTP_URL is not set: mails are written as .eml files (development)");
            Arc::new(FileTransport::new(dir.clone()))
        }
        MailDelivery::Disabled => {
            tracing::warn!(
                "KEEL_MAIL=disabled: no mail is sent (password reset and e-mail verification mails are dropped)"
            );
            Arc::new(DisabledTransport)
        }
    };
    Ok(Arc::new(MailSender::new(
        MailOutbox::new(background_db.clone()),
        transport,
        Some(Arc::clone(metrics)),
        MailSenderSettings {
            render: RenderSettings {
                from: mail.from.clone(),
                public_url: mail.public_url.clone(),
            },
            retry: RetryPolicy {
                base: mail.retry_base,
                max_attempts: mail.max_attempts,
                ..RetryPolicy::default()
            },
            poll_interval: MAIL_POLL,
            // Well beyond one attempt (MAIL_TIMEOUT per SMTP command).
            claim_ttl: MAIL_TIMEOUT * 10,
            batch_size: 32,
        },
    )))
}
