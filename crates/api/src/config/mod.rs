//! Typed configuration, read from the environment once at start-up (docs/operations.md).
//!
//! Every variable is parsed and validated here; a bad value stops start-up with one line
//! that names the variable. Secret values are wrapped so they never print, and are never
//! echoed in an error message.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

mod sections;
mod values;

use values::{boolean, parse_in, secs};

#[cfg(test)]
mod tests;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/keel.db?mode=rwc";
const MIN_JWT_SECRET_BYTES: usize = 32;

/// One invalid variable: `KEEL_BIND: expected host:port such as 127.0.0.1:8080, got "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the JWT signing secret came from.
#[derive(Debug, Clone)]
pub enum JwtSecret {
    Configured(SecretString),
    /// Random per process (development only): tokens die with the process and are not
    /// accepted by other instances. Start-up logs a warning.
    Generated(SecretString),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes that may run at once; each holds `memory_kib`. Default: one fewer than the
    /// CPUs (at least 1), so a login flood leaves a core for every other route.
    pub max_concurrent: u32,
}

/// `requests` per `window`, written `100/15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub anonymous: RateLimit,
    pub user: RateLimit,
    pub login: RateLimit,
    /// `KEEL_RATE_LIMIT_ENABLED=false` turns the anonymous and per-user limits off (behind a
    /// gateway that limits already, or to measure their cost); the login limit stays.
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
}

/// The L1 (in-process) and L2 (Redis) cache, and the namespace of every Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Prefix of every Redis key and channel, so deployments (or test servers) can share a
    /// Redis without seeing each other's data: `[A-Za-z0-9_-]{1,32}`.
    pub redis_prefix: String,
    /// L1 time to live; at most 5 minutes (docs/api/caching-and-limits.md).
    pub l1_ttl: Duration,
    pub l1_max_entries: u64,
    pub l1_max_bytes: u64,
    /// L2 time to live.
    pub l2_ttl: Duration,
    /// Which layers serve reads; all by default. Turning layers off is for measuring them.
    pub layers: CacheLayers,
}

/// `KEEL_CACHE_LAYERS`: `l1,l2` (default; L2 only with `REDIS_URL`), `l1`, `l2`, `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLayers {
    pub l1: bool,
    pub l2: bool,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub allow_private: bool,
    pub retry_base: Duration,
    pub max_attempts: u32,
    /// A webhook whose every attempt has failed for this long is disabled.
    pub disable_after: Duration,
    /// Failures in a row that open a webhook's circuit breaker, and its first rest.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// The AES-256-GCM key of the signing secrets (64 hex digits or base64 of 32 bytes);
    /// `None` in development: a random key per process (secrets die with it).
    pub encryption_key: Option<SecretString>,
    /// Keys secrets may still be sealed under, during a rotation.
    pub previous_keys: Vec<SecretString>,
}

/// The event stream and the outbox dispatcher.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// How often WebSocket clients are pinged (and their sessions re-checked).
    pub ping_interval: Duration,
    /// How often the dispatcher looks for events committed by other instances.
    pub outbox_poll: Duration,
    /// How many event streams one user may hold open on one instance.
    pub max_streams_per_user: usize,
    /// How long published events stay in the feed for replays (`KEEL_EVENT_RETENTION_HOURS`,
    /// 1–8760 hours, default 72).
    pub retention_hours: u32,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database: DatabaseSettings,
    pub redis_url: Option<SecretString>,
    pub cache: CacheSettings,
    pub environment: Environment,
    pub jwt_secret: JwtSecret,
    /// Secrets tokens may still be signed with, during a rotation (`KEEL_JWT_SECRET_PREVIOUS`):
    /// verification accepts them, signing never uses them.
    pub jwt_previous_secrets: Vec<SecretString>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub argon2: Argon2Settings,
    pub rate_limits: RateLimits,
    pub trusted_proxies: Vec<IpNet>,
    pub cors_origins: Vec<String>,
    pub webhooks: WebhookSettings,
    pub events: EventSettings,
    pub auto_migrate: bool,
    pub log_format: LogFormat,
    /// Worker threads; defaults to the number of CPUs.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// After SIGTERM/SIGINT: how long the instance keeps serving while it drains — `/ready`
    /// answers 503 `draining`, every response closes its connection, event streams are
    /// refused — before it stops accepting. Lets a load balancer that reuses idle
    /// connections (nginx's upstream keepalive) let go of them without a request lost.
    pub shutdown_drain: Duration,
    /// How long an idle keep-alive connection stays open between two requests
    /// (`KEEL_KEEP_ALIVE_SECS`). Above a proxy's upstream keep-alive timeout, and above the
    /// pause between two requests of a client that keeps its connection.
    pub keep_alive: Duration,
    /// How long a new connection may take to send its first request head before it gets
    /// 408 (`KEEL_CLIENT_REQUEST_TIMEOUT_SECS`): bounds connections that never speak.
    pub client_request_timeout: Duration,
    pub metrics: MetricsSettings,
    /// How long a task stays in its project's trash before the background purge deletes it
    /// for good (`KEEL_TRASH_RETENTION_DAYS`, 1–3650 days, default 30).
    pub trash_retention_days: u32,
    pub mail: MailSettings,
    /// `KEEL_REGISTRATION`: `open` (default), `invite` (register only with a valid
    /// invitation for that address) or `closed` (register is refused; admins create
    /// accounts).
    pub registration: keel_application::identity::RegistrationMode,
}

/// Where mail goes (`KEEL_MAIL`, `KEEL_SMTP_URL`, `KEEL_MAIL_DIR`).
#[derive(Debug, Clone)]
pub enum MailDelivery {
    /// `KEEL_SMTP_URL`: an SMTP server (the URL may hold a password).
    Smtp(SecretString),
    /// No `KEEL_SMTP_URL` in development: one `.eml` file per mail in this folder.
    Files(std::path::PathBuf),
    /// `KEEL_MAIL=disabled`: mails are dropped (counted as `dropped`).
    Disabled,
}

/// Mail (docs/operations.md, "Mail"; adr/0018).
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub delivery: MailDelivery,
    /// `KEEL_MAIL_FROM`: the `From:` of every mail.
    pub from: String,
    /// `KEEL_PUBLIC_URL`: the base of links in mails, without a trailing slash.
    pub public_url: String,
    /// `KEEL_MAIL_RETRY_BASE_SECS` / `KEEL_MAIL_MAX_ATTEMPTS`: the first retry's delay
    /// (doubling, with jitter, at most an hour) and the attempts before a mail is given up.
    pub retry_base: Duration,
    pub max_attempts: u32,
}

/// How the event stream treats its clients (built from [`EventSettings`] at start-up).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub ping_interval: Duration,
    pub send_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Who may read `/metrics` (traffic per route, authentication failures, the outbox
/// backlog): by default anyone who reaches the API's address.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// `KEEL_METRICS_TOKEN`: when set, `/metrics` answers only requests that carry
    /// `Authorization: Bearer <token>` (401 otherwise).
    pub token: Option<SecretString>,
    /// `KEEL_METRICS_BIND`: when set, `/metrics` is served on this address only (a port
    /// scrapers reach and clients do not), and the API's address answers it 404.
    pub bind: Option<SocketAddr>,
}

/// The shortest metrics token: a bearer token must not be guessable.
pub const METRICS_TOKEN_MIN_LEN: usize = 16;

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests). An empty
    /// value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let get = &get;

        let environment = sections::environment(get)?;
        let bind = sections::bind(get)?;
        let database = sections::database(get)?;
        let redis_url = sections::redis_url(get)?;
        let cache = sections::cache(get, redis_url.is_some())?;
        let (jwt_secret, jwt_previous_secrets) = sections::jwt_secrets(get, environment)?;
        let (access_token_ttl, refresh_token_ttl) = sections::token_ttls(get)?;
        let argon2 = sections::argon2(get)?;
        let rate_limits = sections::rate_limits(get)?;
        let trusted_proxies = sections::trusted_proxies(get)?;
        let cors_origins = sections::cors_origins(get)?;
        let webhooks = sections::webhooks(get, environment)?;
        let log_format = sections::log_format(get, environment)?;
        let workers = sections::workers(get)?;
        let mail = sections::mail(get, environment, bind)?;

        Ok(Self {
            bind,
            database,
            redis_url,
            cache,
            environment,
            jwt_secret,
            jwt_previous_secrets,
            access_token_ttl,
            refresh_token_ttl,
            argon2,
            rate_limits,
            trusted_proxies,
            cors_origins,
            webhooks,
            events: sections::events(get)?,
            auto_migrate: boolean("KEEL_AUTO_MIGRATE", get("KEEL_AUTO_MIGRATE"), true)?,
            log_format,
            workers,
            shutdown_timeout: secs(
                "KEEL_SHUTDOWN_TIMEOUT_SECS",
                get("KEEL_SHUTDOWN_TIMEOUT_SECS"),
                30,
                1,
                3600,
            )?,
            shutdown_drain: secs(
                "KEEL_SHUTDOWN_DRAIN_SECS",
                get("KEEL_SHUTDOWN_DRAIN_SECS"),
                0,
                0,
                600,
            )?,
            keep_alive: secs("KEEL_KEEP_ALIVE_SECS", get("KEEL_KEEP_ALIVE_SECS"), 75, 1, 3600)?,
            client_request_timeout: secs(
                "KEEL_CLIENT_REQUEST_TIMEOUT_SECS",
                get("KEEL_CLIENT_REQUEST_TIMEOUT_SECS"),
                5,
                1,
                300,
            )?,
            metrics: sections::metrics(get)?,
            trash_retention_days: parse_in(
                "KEEL_TRASH_RETENTION_DAYS",
                get("KEEL_TRASH_RETENTION_DAYS"),
                30,
                1,
                3650,
            )?,
            mail,
            registration: sections::registration(get)?,
        })
    }
}
