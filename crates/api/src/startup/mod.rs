//! Wiring: builds every adapter from the settings, injects them into the use cases, binds
//! the listener (port 0 in tests) and exposes the bound port.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
pub use actix_web::dev::ServerHandle;
use actix_web::web;
use keel_application::readiness::CheckReadiness;
use keel_domain::StoreError;
use keel_domain::identity::ports::HashError;
use keel_infrastructure::events::{FeedPurgeTask, SeaOrmEventFeed};
use keel_infrastructure::health::SqlDatabaseProbe;
use keel_infrastructure::idempotency::{PurgeTask, SeaOrmIdempotencyStore};
use keel_infrastructure::redis::{RedisError, create_pool};
use keel_infrastructure::trash_purge::TrashPurgeTask;
use keel_infrastructure::{Database, DbSettings, Metrics};
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::StreamSettings;
use crate::config::{JwtSecret, Settings};
use crate::middleware::{Idempotency, InFlight, RateLimitPolicy};
use crate::openapi;
use crate::state::AppState;
use crate::stream_slots::StreamSlots;

mod adapters;
mod http;
mod ports;

pub use http::EXPOSED_HEADERS;
use ports::quota;
pub use ports::{identity_ports, secret_box, tracking_ports};

/// How long a Redis command may take before the cache counts as degraded.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
const REDIS_POOL_SIZE: usize = 16;
/// Connections of the pools the main runtime's tasks use (see [`Database::background`]):
/// the dispatcher, the webhook sender and the purge take turns; the event bus publishes on
/// one Redis connection and keeps a spare.
const BACKGROUND_DB_CONNECTIONS: u32 = 2;
const BACKGROUND_REDIS_CONNECTIONS: usize = 2;
/// How long a request waits for a free password-hashing slot before a 503.
const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the webhook sender looks for due deliveries (retries, other instances' work).
const SENDER_POLL: Duration = Duration::from_millis(500);
/// How often the mail sender looks for due mails (retries, other instances' mails).
const MAIL_POLL: Duration = Duration::from_secs(1);
/// How long one SMTP command may take.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the mail sender's attempt under way.
const MAIL_DRAIN: Duration = Duration::from_secs(5);
/// The listen queue: connections the kernel completes before a worker accepts them. std's
/// `TcpListener::bind` uses 128, which overflows when thousands of clients connect at once
/// (the kernel then drops handshakes and clients wait for a retransmission); the kernel
/// caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;
/// How long the listener is given, after it stops taking new connections at shutdown, to
/// accept those the kernel completed before (see [`crate::listener`]).
const ACCEPT_SETTLE: Duration = Duration::from_millis(200);

/// How long shutdown waits for the outbox dispatcher's last pass.
const DISPATCHER_DRAIN: Duration = Duration::from_secs(10);
/// How often expired idempotency keys are deleted (claims ignore them anyway).
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the holder of the trash purge's lease deletes expired trash.
const TRASH_PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the instance holding its lease purges the event feed past its retention.
const FEED_PURGE_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database")]
    Database(#[source] StoreError),
    #[error("cannot apply migrations")]
    Migration(#[source] StoreError),
    #[error("invalid Redis set-up")]
    Redis(#[from] RedisError),
    #[error("invalid Redis URL for the cache subscriber")]
    RedisUrl(#[source] keel_infrastructure::cache::redis::RedisUrlError),
    #[error("cannot register metrics")]
    Metrics(#[from] keel_infrastructure::metrics::MetricsError),
    #[error("cannot render the OpenAPI document")]
    OpenApi(#[from] serde_json::Error),
    #[error("invalid password hashing parameters")]
    Hashing(#[source] HashError),
    #[error("invalid webhook encryption key")]
    WebhookKey,
    #[error("cannot build the webhook HTTP client")]
    WebhookClient(#[from] keel_infrastructure::webhooks::ClientError),
    #[error("invalid mail set-up: {0}")]
    Mail(String),
    #[error("cannot listen on the configured address")]
    Bind(#[from] std::io::Error),
}

pub fn db_settings(settings: &Settings) -> DbSettings {
    DbSettings {
        url: settings.database.url.expose_secret().to_owned(),
        max_connections: settings.database.max_connections,
        min_connections: settings.database.min_connections,
        connect_timeout: settings.database.connect_timeout,
        acquire_timeout: settings.database.acquire_timeout,
    }
}

/// A built, bound server that has not started serving yet.
pub struct Application {
    port: u16,
    server: Server,
    /// The listener of `/metrics` alone, when `KEEL_METRICS_BIND` gives it one, and its port.
    metrics_server: Option<(Server, u16)>,
    db: Database,
    /// The main runtime's own pool (the dispatcher, the sender, the purge).
    background_db: Database,
    /// Deletes expired idempotency keys until the server stops.
    idempotency_purge: PurgeTask,
    /// Deletes expired trash (on the instance holding its lease) until the server stops.
    trash_purge: TrashPurgeTask,
    /// Deletes events past the feed's retention (on the instance holding its lease).
    feed_purge: FeedPurgeTask,
    /// Keeps the cache's invalidation channel subscribed (with Redis).
    cache_subscriber: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the event channel subscribed (with Redis).
    event_subscriber: Option<tokio::task::JoinHandle<()>>,
    /// Publishes the outbox until told to stop, then drains it.
    dispatcher: tokio::task::JoinHandle<()>,
    /// Sends webhook deliveries (while this instance holds the outbox lease).
    sender: tokio::task::JoinHandle<()>,
    /// Sends the mail outbox until told to stop.
    mail_sender: tokio::task::JoinHandle<()>,
    stop_dispatcher: watch::Sender<bool>,
    /// Turned `true` at the shutdown signal: event streams close.
    closing: watch::Sender<bool>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds every adapter from `settings`, injects them into the use cases and binds the
    /// listeners; nothing is served until [`Self::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::new()?);
        let (db, background_db) = adapters::databases(&settings, &metrics).await?;
        if matches!(settings.jwt_secret, JwtSecret::Generated(_)) {
            tracing::warn!(
                "KEEL_JWT_SECRET is not set: using a random secret for this process; tokens will not survive a restart \
                 and other instances will refuse them"
            );
        }
        // One pool for the requests' Redis work (cache, limiter); the event bus has its own.
        let redis_pool = match &settings.redis_url {
            Some(url) => Some(create_pool(url.expose_secret(), REDIS_POOL_SIZE, REDIS_TIMEOUT)?),
            None => None,
        };
        let limiter = adapters::rate_limiter(&settings, redis_pool.as_ref());
        let (cache, cache_probe, cache_subscriber) =
            adapters::cache(&settings, redis_pool.as_ref(), &metrics).await?;
        let (events, event_subscriber) = adapters::event_bus(&settings)?;

        // The outbox dispatcher and the webhook sender run on the main runtime's pool.
        let dispatcher = adapters::dispatcher(&settings, &background_db, &events, &metrics);
        let secret_box = secret_box(&settings.webhooks)?;
        let (stop_dispatcher, dispatcher_stop) = watch::channel(false);
        let sender = adapters::webhook_sender(&settings, &background_db, secret_box.clone(), &metrics)?
            .spawn(
                dispatcher.leading(),
                dispatcher.deliveries_queued(),
                dispatcher_stop.clone(),
            );

        let mail_sender =
            adapters::mail_sender(&settings, &background_db, &metrics)?.spawn(dispatcher_stop.clone());

        let mut identity = identity_ports(&settings, &db, cache)?;
        identity.limiter = Arc::clone(&limiter);
        let idempotency_purge = PurgeTask::spawn(
            Arc::new(SeaOrmIdempotencyStore::new(background_db.clone())),
            Arc::clone(&identity.clock),
            IDEMPOTENCY_PURGE_EVERY,
        );
        let tracking = tracking_ports(&db, &identity, &settings.webhooks, secret_box.clone());
        let trash_purge = TrashPurgeTask::spawn(
            background_db.clone(),
            tracking_ports(&background_db, &identity, &settings.webhooks, secret_box.clone()),
            Arc::clone(&identity.clock),
            chrono::Duration::days(i64::from(settings.trash_retention_days)),
            TRASH_PURGE_EVERY,
        );
        let feed_purge = FeedPurgeTask::spawn(
            background_db.clone(),
            Arc::clone(&identity.clock),
            chrono::Duration::hours(i64::from(settings.events.retention_hours)),
            FEED_PURGE_EVERY,
        );
        let (closing, closing_rx) = watch::channel(false);
        let in_flight = InFlight::default();
        let database_probe = Arc::new(SqlDatabaseProbe::new(
            db.clone(),
            settings.database.acquire_timeout + Duration::from_secs(1),
        ));
        let state = web::Data::new(AppState {
            readiness: CheckReadiness::new(database_probe, cache_probe),
            idempotency: Idempotency::new(
                Arc::new(SeaOrmIdempotencyStore::new(db.clone())),
                Arc::clone(&identity.clock),
            ),
            rate_limits: RateLimitPolicy::new(
                limiter,
                quota(settings.rate_limits.anonymous),
                quota(settings.rate_limits.user),
            ),
            tracking,
            identity,
            events,
            feed: Arc::new(SeaOrmEventFeed::new(db.clone())),
            notifications: Arc::new(keel_infrastructure::notifications::SeaOrmNotificationStore::new(
                db.clone(),
            )),
            stream: StreamSettings {
                ping_interval: settings.events.ping_interval,
                ..StreamSettings::default()
            },
            stream_slots: StreamSlots::new(settings.events.max_streams_per_user),
            shutdown: closing_rx,
            in_flight: in_flight.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            metrics,
            db: db.clone(),
            openapi_json: openapi::document_json()?,
        });

        let (metrics_here, metrics_server) = http::metrics_access(&settings, &state)?;
        let (server, local) = http::api_server(&settings, state, metrics_here, closing.clone(), in_flight)?;
        tracing::info!(
            address = %local,
            database = ?db.backend(),
            redis = settings.redis_url.is_some(),
            "keel listening on http://{local}"
        );
        Ok(Self {
            port: local.port(),
            server,
            metrics_server,
            db,
            background_db,
            idempotency_purge,
            trash_purge,
            feed_purge,
            cache_subscriber,
            event_subscriber,
            dispatcher: dispatcher.spawn(dispatcher_stop),
            sender,
            mail_sender,
            stop_dispatcher,
            closing,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when `KEEL_METRICS_BIND` gives it one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// A handle to stop the server gracefully (tests; signals are handled by actix).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or `handle().stop(true)`): stops accepting, lets
    /// in-flight requests finish within the shutdown timeout, then closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // The metrics listener serves as long as the API does (scrapes during a drain too).
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            (tokio::spawn(server), handle)
        });
        let served = self.server.await;
        if let Some((task, handle)) = metrics {
            handle.stop(true).await;
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "the metrics listener failed");
            }
        }
        self.closing.send_replace(true);
        self.idempotency_purge.stop();
        self.trash_purge.stop();
        self.feed_purge.stop();
        // What the last requests committed is published before the pool closes.
        self.stop_dispatcher.send_replace(true);
        if tokio::time::timeout(DISPATCHER_DRAIN, self.dispatcher)
            .await
            .is_err()
        {
            tracing::warn!(
                "the outbox was not drained in time; another instance or the next start publishes it"
            );
        }
        // An attempt cut short is retried later (its delivery was claimed, not lost).
        self.sender.abort();
        // The mail sender stopped with the dispatcher's signal: its attempt under way
        // finishes (or its claim lapses and another instance sends the mail).
        if tokio::time::timeout(MAIL_DRAIN, self.mail_sender).await.is_err() {
            tracing::warn!("the mail sender did not stop in time; a mail it was sending is sent again later");
        }
        for subscriber in [self.cache_subscriber, self.event_subscriber]
            .into_iter()
            .flatten()
        {
            subscriber.abort();
        }
        served?;
        tracing::info!("server stopped; closing the database pool");
        for pool in [&self.db, &self.background_db] {
            if let Err(e) = pool.close().await {
                tracing::warn!(error = %e, "closing a database pool failed");
            }
        }
        Ok(())
    }
}
