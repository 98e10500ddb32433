//! Wiring: builds every adapter from the settings, injects them into the use cases, binds
//! the listener (port 0 in tests) and exposes the bound port.

use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
pub use actix_web::dev::ServerHandle;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use keel_application::cache::{Cache, NoCache};
use keel_application::events::EventBus;
use keel_application::identity::IdentityPorts;
use keel_application::readiness::CheckReadiness;
use keel_application::tracking::TrackingPorts;
use keel_domain::StoreError;
use keel_domain::health::CacheProbe;
use keel_domain::identity::ports::HashError;
use keel_domain::rate_limit::{Quota, RateLimiter};
use keel_infrastructure::audit::SeaOrmAuditLog;
use keel_infrastructure::cache::redis::{RedisTier, RedisTierProbe};
use keel_infrastructure::cache::{L1Settings, TieredCache};
use keel_infrastructure::clock::SystemClock;
use keel_infrastructure::events::{Dispatcher, DispatcherSettings, InProcessBus, Outbox, RedisBus};
use keel_infrastructure::health::{InProcessCacheProbe, SqlDatabaseProbe};
use keel_infrastructure::idempotency::{PurgeTask, SeaOrmIdempotencyStore};
use keel_infrastructure::identity::jwt::JwtTokenService;
use keel_infrastructure::identity::metrics::SqlUserMetricsQuery;
use keel_infrastructure::identity::password::{Argon2Hasher, HashSettings};
use keel_infrastructure::identity::sessions::SeaOrmSessionRepository;
use keel_infrastructure::identity::users::SeaOrmUserRepository;
use keel_infrastructure::rate_limit::{InProcessRateLimiter, RedisRateLimiter};
use keel_infrastructure::redis::{RedisError, SharedConnection, create_pool};
use keel_infrastructure::tracking::{
    SeaOrmCommentRepository, SeaOrmLabelRepository, SeaOrmMemberRepository, SeaOrmProjectRepository,
    SeaOrmTaskRepository,
};
use keel_infrastructure::webhooks::breaker::BreakerPolicy;
use keel_infrastructure::webhooks::policy::{AddressPolicy, SealedSecrets};
use keel_infrastructure::webhooks::sender::{Sender, SenderSettings};
use keel_infrastructure::webhooks::store::{DeliveryQueue, SeaOrmWebhookRepository};
use keel_infrastructure::webhooks::{ClientSettings, SecretBox, WebhookClient, parse_key};
use keel_infrastructure::{Database, DbSettings, Metrics, migrate};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::config::StreamSettings;
use crate::config::{JwtSecret, Settings};
use crate::extract::{json_config, path_config, payload_config, query_config};
use crate::listener::{self, ListenerControl};
use crate::middleware::{
    IN_FLIGHT_WAIT, Idempotency, InFlight, RateLimitPolicy, X_REQUEST_ID_HEADER, caller,
    close_while_draining, rate_limit, request_context, security_headers,
};
use crate::routes::ops::MetricsAccess;
use crate::state::AppState;
use crate::stream_slots::StreamSlots;
use crate::{openapi, routes};

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
/// The listen queue: connections the kernel completes before a worker accepts them. std's
/// `TcpListener::bind` uses 128, which overflows when thousands of clients connect at once
/// (the kernel then drops handshakes and clients wait for a retransmission); the kernel
/// caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;
/// How long the listener is given, after it stops taking new connections at shutdown, to
/// accept those the kernel completed before (see [`listener`]).
const ACCEPT_SETTLE: Duration = Duration::from_millis(200);

/// How long shutdown waits for the outbox dispatcher's last pass.
const DISPATCHER_DRAIN: Duration = Duration::from_secs(10);
/// How often expired idempotency keys are deleted (claims ignore them anyway).
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);

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
    /// Keeps the cache's invalidation channel subscribed (with Redis).
    cache_subscriber: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the event channel subscribed (with Redis).
    event_subscriber: Option<tokio::task::JoinHandle<()>>,
    /// Publishes the outbox until told to stop, then drains it.
    dispatcher: tokio::task::JoinHandle<()>,
    /// Sends webhook deliveries (while this instance holds the outbox lease).
    sender: tokio::task::JoinHandle<()>,
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
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::new()?);
        let db = Database::connect(&db_settings(&settings), Some(Arc::clone(&metrics)))
            .await
            .map_err(StartupError::Database)?;
        if settings.auto_migrate {
            migrate::up(&db).await.map_err(StartupError::Migration)?;
        }
        let background_db = db
            .background(
                &db_settings(&settings),
                BACKGROUND_DB_CONNECTIONS,
                Some(Arc::clone(&metrics)),
            )
            .await
            .map_err(StartupError::Database)?;
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
        let limiter: Arc<dyn RateLimiter> = match &redis_pool {
            Some(pool) => Arc::new(RedisRateLimiter::new(pool.clone(), &settings.cache.redis_prefix)),
            None => Arc::new(InProcessRateLimiter::new()),
        };
        let layers = settings.cache.layers;
        let l1 = L1Settings {
            ttl: settings.cache.l1_ttl,
            max_entries: settings.cache.l1_max_entries,
            max_bytes: settings.cache.l1_max_bytes,
            enabled: layers.l1,
        };
        let (cache, cache_probe, cache_subscriber): (Arc<dyn Cache>, Arc<dyn CacheProbe>, _) =
            match (&settings.redis_url, &redis_pool) {
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
                        Arc::new(TieredCache::tiered(l1, generations, tier.clone(), Some(&metrics))),
                        Arc::new(RedisTierProbe(tier)),
                        Some(subscriber),
                    )
                }
                _ => (
                    Arc::new(TieredCache::in_process(l1, Some(&metrics))),
                    Arc::new(InProcessCacheProbe),
                    None,
                ),
            };
        let (events, event_subscriber): (Arc<dyn EventBus>, _) = match &settings.redis_url {
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
        };
        let dispatcher = Arc::new(Dispatcher::new(
            Outbox::new(background_db.clone()),
            Arc::clone(&events),
            Some(Arc::clone(&metrics)),
            DispatcherSettings {
                poll_interval: settings.events.outbox_poll,
                ..DispatcherSettings::default()
            },
        ));
        let secret_box = secret_box(&settings.webhooks)?;
        let sender = Arc::new(Sender::new(
            DeliveryQueue::new(background_db.clone()),
            WebhookClient::new(ClientSettings {
                allow_private: settings.webhooks.allow_private,
                ..ClientSettings::default()
            })?,
            Arc::new(secret_box.clone()),
            Some(Arc::clone(&metrics)),
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
        ));
        let (stop_dispatcher, dispatcher_stop) = watch::channel(false);
        let sender = sender.spawn(
            dispatcher.leading(),
            dispatcher.deliveries_queued(),
            dispatcher_stop.clone(),
        );
        let (closing, closing_rx) = watch::channel(false);
        let in_flight = InFlight::default();
        let database_probe = Arc::new(SqlDatabaseProbe::new(
            db.clone(),
            settings.database.acquire_timeout + Duration::from_secs(1),
        ));
        let mut identity = identity_ports(&settings, &db, cache)?;
        identity.limiter = Arc::clone(&limiter);
        let idempotency_store = Arc::new(SeaOrmIdempotencyStore::new(db.clone()));
        let idempotency_purge = PurgeTask::spawn(
            Arc::new(SeaOrmIdempotencyStore::new(background_db.clone())),
            Arc::clone(&identity.clock),
            IDEMPOTENCY_PURGE_EVERY,
        );
        let state = web::Data::new(AppState {
            readiness: CheckReadiness::new(database_probe, cache_probe),
            idempotency: Idempotency::new(idempotency_store, Arc::clone(&identity.clock)),
            rate_limits: RateLimitPolicy::new(
                limiter,
                quota(settings.rate_limits.anonymous),
                quota(settings.rate_limits.user),
            ),
            tracking: tracking_ports(&db, &identity, &settings.webhooks, secret_box.clone()),
            identity,
            events,
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

        let metrics_token = settings
            .metrics
            .token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let metrics_here = web::Data::new(MetricsAccess::new(
            settings.metrics.bind.is_none(),
            metrics_token.as_deref(),
        ));
        let metrics_server = match settings.metrics.bind {
            Some(address) => Some(metrics_server(
                address,
                state.clone(),
                MetricsAccess::new(true, metrics_token.as_deref()),
            )?),
            None => None,
        };
        let cors_origins = settings.cors_origins.clone();
        let rate_limits_on = settings.rate_limits.enabled;
        if !rate_limits_on {
            tracing::warn!("KEEL_RATE_LIMIT_ENABLED=false: no anonymous or per-user rate limits");
        }
        let (listener, listener_control) = listener::bind(settings.bind, LISTEN_BACKLOG)?;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics_here.clone())
                .app_data(json_config())
                .app_data(payload_config())
                .app_data(query_config())
                .app_data(path_config())
                // Inside CORS and the request context: 429s get CORS headers, the request id
                // and the contract's error shape. (`Idempotency-Key` is a route middleware,
                // inside all of these: see `routes::RouteFlags`.)
                .wrap(Condition::new(rate_limits_on, from_fn(rate_limit)))
                // Who the request comes from, decided once for the limiter, idempotency, the
                // extractors and the event stream.
                .wrap(from_fn(caller))
                .wrap(cors(&cors_origins))
                .wrap(from_fn(request_context))
                .wrap(from_fn(security_headers))
                .wrap(from_fn(close_while_draining))
                .configure(routes::configure)
                .service(web::resource("/docs").route(web::get().to(docs_redirect)))
                .service(SwaggerUi::new("/docs/{_:.*}").config(SwaggerConfig::new(["/api/v1/openapi.json"])))
                .default_service(web::to(routes::not_found))
        })
        .keep_alive(settings.keep_alive)
        .client_request_timeout(settings.client_request_timeout)
        .shutdown_signal(shutdown_signal(
            closing.clone(),
            settings.shutdown_drain,
            in_flight,
            listener_control,
        ))
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?;
        let local = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
        tracing::info!(
            address = %local,
            database = ?db.backend(),
            redis = settings.redis_url.is_some(),
            "keel listening on http://{local}"
        );
        Ok(Self {
            port: local.port(),
            server: server.run(),
            metrics_server,
            db,
            background_db,
            idempotency_purge,
            cache_subscriber,
            event_subscriber,
            dispatcher: dispatcher.spawn(dispatcher_stop),
            sender,
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

/// Resolves at SIGTERM or SIGINT (both shut down gracefully), after telling event streams
/// to close, draining for `drain` (a second signal cuts the drain short), refusing new
/// connections while accepting those already queued (see [`listener`]), and waiting for a
/// moment when no request is in flight (see [`InFlight`]; at most [`IN_FLIGHT_WAIT`]).
async fn shutdown_signal(
    closing: watch::Sender<bool>,
    drain: Duration,
    in_flight: InFlight,
    listener: ListenerControl,
) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    closing.send_replace(true);
    if !drain.is_zero() {
        tracing::info!(
            drain_secs = drain.as_secs(),
            "shutdown signal received: draining (not ready, connections close after each response)"
        );
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("second signal: drain cut short"),
        }
    }
    match listener.refuse_new_connections() {
        Ok(()) => tokio::time::sleep(ACCEPT_SETTLE).await,
        Err(e) => tracing::warn!(error = %e, "cannot stop new connections before closing the listener"),
    }
    if !in_flight.settled(IN_FLIGHT_WAIT).await {
        tracing::warn!(
            in_flight = in_flight.count(),
            "requests still in flight after the wait; stopping anyway"
        );
    }
    tracing::info!("stopping: no new connections, finishing in-flight requests");
}

/// The identity use cases' ports on the production adapters, reading through `cache`, with
/// an in-process login limiter (`Application::build` puts the shared one in its place).
pub fn identity_ports(
    settings: &Settings,
    db: &Database,
    cache: Arc<dyn Cache>,
) -> Result<IdentityPorts, StartupError> {
    let secret = match &settings.jwt_secret {
        JwtSecret::Configured(s) | JwtSecret::Generated(s) => s.expose_secret().as_bytes().to_vec(),
    };
    let hasher = Argon2Hasher::new(HashSettings {
        memory_kib: settings.argon2.memory_kib,
        iterations: settings.argon2.iterations,
        parallelism: settings.argon2.parallelism,
        max_concurrent: settings.argon2.max_concurrent as usize,
        queue_timeout: HASH_QUEUE_TIMEOUT,
    })
    .map_err(StartupError::Hashing)?;
    Ok(IdentityPorts {
        users: Arc::new(SeaOrmUserRepository::new(db.clone())),
        sessions: Arc::new(SeaOrmSessionRepository::new(db.clone())),
        hasher: Arc::new(hasher),
        tokens: Arc::new(
            JwtTokenService::new(&secret, settings.access_token_ttl, settings.refresh_token_ttl)
                .with_previous_secrets(
                    settings
                        .jwt_previous_secrets
                        .iter()
                        .map(|s| s.expose_secret().as_bytes()),
                ),
        ),
        audit: Arc::new(SeaOrmAuditLog::new(db.clone())),
        clock: Arc::new(SystemClock),
        limiter: Arc::new(InProcessRateLimiter::new()),
        user_metrics: Arc::new(SqlUserMetricsQuery::new(db.clone())),
        cache,
        login_quota: quota(settings.rate_limits.login),
    })
}

fn quota(limit: crate::config::RateLimit) -> Quota {
    Quota {
        requests: limit.requests,
        window: limit.window,
    }
}

/// The tracking use cases' ports on the database, sharing the identity's users and clock.
pub fn tracking_ports(
    db: &Database,
    identity: &IdentityPorts,
    webhooks: &crate::config::WebhookSettings,
    secret_box: SecretBox,
) -> TrackingPorts {
    TrackingPorts {
        projects: Arc::new(SeaOrmProjectRepository::new(db.clone())),
        members: Arc::new(SeaOrmMemberRepository::new(db.clone())),
        labels: Arc::new(SeaOrmLabelRepository::new(db.clone())),
        tasks: Arc::new(SeaOrmTaskRepository::new(db.clone())),
        comments: Arc::new(SeaOrmCommentRepository::new(db.clone())),
        activity: Arc::new(SeaOrmAuditLog::new(db.clone())),
        users: Arc::clone(&identity.users),
        clock: Arc::clone(&identity.clock),
        cache: Arc::clone(&identity.cache),
        webhooks: Arc::new(SeaOrmWebhookRepository::new(db.clone())),
        webhook_urls: Arc::new(AddressPolicy {
            allow_private: webhooks.allow_private,
        }),
        webhook_secrets: Arc::new(SealedSecrets { secret_box }),
    }
}

/// The box that seals webhook signing secrets: the configured key (and the previous ones,
/// during a rotation), or a random key per process in development.
pub fn secret_box(settings: &crate::config::WebhookSettings) -> Result<SecretBox, StartupError> {
    let previous = settings
        .previous_keys
        .iter()
        .map(|k| parse_key(k.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StartupError::WebhookKey)?;
    let current = match &settings.encryption_key {
        Some(key) => parse_key(key.expose_secret()).map_err(|_| StartupError::WebhookKey)?,
        None => {
            tracing::warn!(
                "KEEL_WEBHOOK_ENCRYPTION_KEY is not set: webhook secrets are sealed with a random key for this process; \
                 webhooks created now cannot sign deliveries after a restart"
            );
            let mut key = [0_u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            key
        }
    };
    Ok(SecretBox::new(current, previous))
}

/// A server of `/metrics` alone on `address` (`KEEL_METRICS_BIND`): one worker, no signal
/// handling of its own (it stops after the API's server), errors in the contract's shape.
fn metrics_server(
    address: std::net::SocketAddr,
    state: web::Data<AppState>,
    access: MetricsAccess,
) -> Result<(Server, u16), StartupError> {
    let access = web::Data::new(access);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(access.clone())
            .wrap(from_fn(request_context))
            .wrap(from_fn(security_headers))
            .service(web::resource("/metrics").route(web::get().to(routes::ops::metrics)))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(address)?;
    let port = server
        .addrs()
        .first()
        .map(std::net::SocketAddr::port)
        .ok_or_else(|| std::io::Error::other("the metrics listener bound no address"))?;
    tracing::info!(address = %address, port, "metrics on their own listener");
    Ok((server.run(), port))
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// CORS: the configured origins (none by default), plus same-origin requests (the docs
/// viewer calling its own API).
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_origin_fn(|origin, head| {
            let host = head.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_owned()));
            matches!((host, origin_host), (Some(h), Some(o)) if h == o)
        })
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            X_REQUEST_ID_HEADER,
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            X_REQUEST_ID_HEADER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
