//! Typed configuration, read from the environment once at start-up (SPEC §2).
//!
//! Every variable is parsed and validated here; a bad value stops start-up with one line
//! that names the variable. Secret values are wrapped so they never print, and are never
//! echoed in an error message.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use rand::RngCore;
use secrecy::SecretString;

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
    /// L1 time to live; at most 5 minutes (SPEC §7).
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

        let environment = match get("KEEL_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "KEEL_ENV",
                    format!("expected development or production, got {other:?}"),
                ));
            }
        };

        let bind = match get("KEEL_BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "KEEL_BIND",
                    format!("expected host:port such as 127.0.0.1:8080, got {v:?}"),
                )
            })?,
        };

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            // The URL may hold a password: never echo it.
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected a sqlite:, postgres:// or postgresql:// URL",
            ));
        }
        let max_connections = parse_in(
            "KEEL_DB_MAX_CONNECTIONS",
            get("KEEL_DB_MAX_CONNECTIONS"),
            10,
            1,
            1000,
        )?;
        let min_connections = parse_in(
            "KEEL_DB_MIN_CONNECTIONS",
            get("KEEL_DB_MIN_CONNECTIONS"),
            0,
            0,
            max_connections,
        )?;
        let database = DatabaseSettings {
            url: SecretString::from(database_url),
            max_connections,
            min_connections,
            connect_timeout: secs(
                "KEEL_DB_CONNECT_TIMEOUT_SECS",
                get("KEEL_DB_CONNECT_TIMEOUT_SECS"),
                5,
                1,
                300,
            )?,
            acquire_timeout: secs(
                "KEEL_DB_ACQUIRE_TIMEOUT_SECS",
                get("KEEL_DB_ACQUIRE_TIMEOUT_SECS"),
                3,
                1,
                300,
            )?,
        };

        let redis_url = match get("REDIS_URL") {
            None => None,
            Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => Some(SecretString::from(v)),
            Some(_) => {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "expected a redis:// or rediss:// URL",
                ));
            }
        };

        let redis_prefix = get("KEEL_REDIS_PREFIX").unwrap_or_else(|| "keel".to_owned());
        if redis_prefix.is_empty()
            || redis_prefix.len() > 32
            || !redis_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(
                "KEEL_REDIS_PREFIX",
                "expected 1 to 32 letters, digits, '_' or '-'",
            ));
        }
        let cache = CacheSettings {
            redis_prefix,
            l1_ttl: secs(
                "KEEL_CACHE_L1_TTL_SECS",
                get("KEEL_CACHE_L1_TTL_SECS"),
                60,
                1,
                300,
            )?,
            l1_max_entries: u64::from(parse_in(
                "KEEL_CACHE_L1_MAX_ENTRIES",
                get("KEEL_CACHE_L1_MAX_ENTRIES"),
                100_000,
                100,
                100_000_000,
            )?),
            l1_max_bytes: u64::from(parse_in(
                "KEEL_CACHE_L1_MAX_MB",
                get("KEEL_CACHE_L1_MAX_MB"),
                64,
                1,
                65_536,
            )?) * 1024
                * 1024,
            l2_ttl: secs(
                "KEEL_CACHE_L2_TTL_SECS",
                get("KEEL_CACHE_L2_TTL_SECS"),
                3600,
                1,
                7 * 86_400,
            )?,
            layers: match get("KEEL_CACHE_LAYERS").as_deref() {
                None | Some("l1,l2") => CacheLayers { l1: true, l2: true },
                Some("l1") => CacheLayers { l1: true, l2: false },
                Some("l2") if redis_url.is_some() => CacheLayers { l1: false, l2: true },
                Some("none") => CacheLayers { l1: false, l2: false },
                Some(other) => {
                    return Err(ConfigError::new(
                        "KEEL_CACHE_LAYERS",
                        format!("expected l1,l2, l1, l2 (needs REDIS_URL) or none, got {other:?}"),
                    ));
                }
            },
        };

        let jwt_secret = match get("KEEL_JWT_SECRET") {
            Some(secret) if secret.len() >= MIN_JWT_SECRET_BYTES => {
                JwtSecret::Configured(SecretString::from(secret))
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "KEEL_JWT_SECRET",
                    format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                ));
            }
            None if environment == Environment::Production => {
                return Err(ConfigError::new(
                    "KEEL_JWT_SECRET",
                    format!("is required when KEEL_ENV=production (at least {MIN_JWT_SECRET_BYTES} bytes)"),
                ));
            }
            None => JwtSecret::Generated(random_secret()),
        };
        let jwt_previous_secrets = list(get("KEEL_JWT_SECRET_PREVIOUS"))
            .map(|secret| {
                if secret.len() >= MIN_JWT_SECRET_BYTES {
                    Ok(SecretString::from(secret))
                } else {
                    // Never echo the secret, nor which entry it was.
                    Err(ConfigError::new(
                        "KEEL_JWT_SECRET_PREVIOUS",
                        format!("every comma-separated secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !jwt_previous_secrets.is_empty() && matches!(jwt_secret, JwtSecret::Generated(_)) {
            return Err(ConfigError::new(
                "KEEL_JWT_SECRET_PREVIOUS",
                "is set but KEEL_JWT_SECRET is not: a rotation needs the new current secret",
            ));
        }

        let access_token_ttl = secs(
            "KEEL_ACCESS_TOKEN_TTL",
            get("KEEL_ACCESS_TOKEN_TTL"),
            900,
            1,
            86_400,
        )?;
        let refresh_token_ttl = secs(
            "KEEL_REFRESH_TOKEN_TTL",
            get("KEEL_REFRESH_TOKEN_TTL"),
            604_800,
            1,
            31_536_000,
        )?;
        if refresh_token_ttl <= access_token_ttl {
            return Err(ConfigError::new(
                "KEEL_REFRESH_TOKEN_TTL",
                "must be longer than KEEL_ACCESS_TOKEN_TTL",
            ));
        }

        let argon2 = Argon2Settings {
            // Bounds from the argon2 specification; the upper memory bound (4 GiB) keeps a
            // typo from exhausting the host.
            memory_kib: parse_in(
                "KEEL_ARGON2_MEMORY_KIB",
                get("KEEL_ARGON2_MEMORY_KIB"),
                65_536,
                8,
                4_194_304,
            )?,
            iterations: parse_in("KEEL_ARGON2_ITERATIONS", get("KEEL_ARGON2_ITERATIONS"), 3, 1, 100)?,
            parallelism: parse_in(
                "KEEL_ARGON2_PARALLELISM",
                get("KEEL_ARGON2_PARALLELISM"),
                4,
                1,
                64,
            )?,
            max_concurrent: parse_in(
                "KEEL_ARGON2_MAX_CONCURRENT",
                get("KEEL_ARGON2_MAX_CONCURRENT"),
                default_hash_slots(),
                1,
                1024,
            )?,
        };
        if argon2.memory_kib < 8 * argon2.parallelism {
            return Err(ConfigError::new(
                "KEEL_ARGON2_MEMORY_KIB",
                "must be at least 8 × KEEL_ARGON2_PARALLELISM",
            ));
        }

        let rate_limits = RateLimits {
            anonymous: rate_limit("KEEL_RATE_LIMIT_ANON", get("KEEL_RATE_LIMIT_ANON"), "100/15m")?,
            user: rate_limit("KEEL_RATE_LIMIT_USER", get("KEEL_RATE_LIMIT_USER"), "1000/15m")?,
            login: rate_limit("KEEL_RATE_LIMIT_LOGIN", get("KEEL_RATE_LIMIT_LOGIN"), "10/15m")?,
            enabled: boolean("KEEL_RATE_LIMIT_ENABLED", get("KEEL_RATE_LIMIT_ENABLED"), true)?,
        };

        let trusted_proxies = list(get("KEEL_TRUSTED_PROXIES"))
            .map(|cidr| {
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "KEEL_TRUSTED_PROXIES",
                            format!("{cidr:?} is not a CIDR such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let cors_origins = list(get("KEEL_CORS_ORIGINS"))
            .map(|origin| {
                if is_origin(&origin) {
                    Ok(origin)
                } else {
                    Err(ConfigError::new(
                        "KEEL_CORS_ORIGINS",
                        format!("{origin:?} is not an origin such as https://app.example.com"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        let webhooks = WebhookSettings {
            allow_private: boolean(
                "KEEL_WEBHOOK_ALLOW_PRIVATE",
                get("KEEL_WEBHOOK_ALLOW_PRIVATE"),
                false,
            )?,
            retry_base: secs(
                "KEEL_WEBHOOK_RETRY_BASE_SECS",
                get("KEEL_WEBHOOK_RETRY_BASE_SECS"),
                30,
                1,
                86_400,
            )?,
            max_attempts: parse_in(
                "KEEL_WEBHOOK_MAX_ATTEMPTS",
                get("KEEL_WEBHOOK_MAX_ATTEMPTS"),
                10,
                1,
                100,
            )?,
            disable_after: secs(
                "KEEL_WEBHOOK_DISABLE_AFTER_SECS",
                get("KEEL_WEBHOOK_DISABLE_AFTER_SECS"),
                86_400,
                1,
                31_536_000,
            )?,
            breaker_threshold: parse_in(
                "KEEL_WEBHOOK_BREAKER_THRESHOLD",
                get("KEEL_WEBHOOK_BREAKER_THRESHOLD"),
                5,
                1,
                1000,
            )?,
            breaker_cooldown: secs(
                "KEEL_WEBHOOK_BREAKER_COOLDOWN_SECS",
                get("KEEL_WEBHOOK_BREAKER_COOLDOWN_SECS"),
                30,
                1,
                86_400,
            )?,
            encryption_key: match get("KEEL_WEBHOOK_ENCRYPTION_KEY") {
                Some(key) => Some(encryption_key("KEEL_WEBHOOK_ENCRYPTION_KEY", key)?),
                None if environment == Environment::Production => {
                    return Err(ConfigError::new(
                        "KEEL_WEBHOOK_ENCRYPTION_KEY",
                        "is required when KEEL_ENV=production (64 hex digits or base64 of 32 bytes)",
                    ));
                }
                None => None,
            },
            previous_keys: list(get("KEEL_WEBHOOK_ENCRYPTION_KEY_PREVIOUS"))
                .map(|key| encryption_key("KEEL_WEBHOOK_ENCRYPTION_KEY_PREVIOUS", key))
                .collect::<Result<Vec<_>, _>>()?,
        };

        let log_format = match get("KEEL_LOG_FORMAT").as_deref() {
            None if environment == Environment::Production => LogFormat::Json,
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "KEEL_LOG_FORMAT",
                    format!("expected pretty or json, got {other:?}"),
                ));
            }
        };

        let workers = match get("KEEL_WORKERS") {
            None => None,
            Some(v) => Some(parse_in("KEEL_WORKERS", Some(v), 1, 1, 256)? as usize),
        };

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
            events: EventSettings {
                ping_interval: secs("KEEL_EVENTS_PING_SECS", get("KEEL_EVENTS_PING_SECS"), 30, 1, 3600)?,
                outbox_poll: Duration::from_millis(u64::from(parse_in(
                    "KEEL_OUTBOX_POLL_MS",
                    get("KEEL_OUTBOX_POLL_MS"),
                    200,
                    10,
                    60_000,
                )?)),
                max_streams_per_user: parse_in(
                    "KEEL_EVENTS_MAX_STREAMS_PER_USER",
                    get("KEEL_EVENTS_MAX_STREAMS_PER_USER"),
                    8,
                    1,
                    1000,
                )? as usize,
            },
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
            metrics: metrics_settings(&get)?,
        })
    }
}

fn metrics_settings(get: &impl Fn(&str) -> Option<String>) -> Result<MetricsSettings, ConfigError> {
    let token = match get("KEEL_METRICS_TOKEN") {
        None => None,
        // Never echoed: it is a secret.
        Some(t) if t.len() < METRICS_TOKEN_MIN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(ConfigError::new(
                "KEEL_METRICS_TOKEN",
                format!("expected at least {METRICS_TOKEN_MIN_LEN} visible ASCII characters"),
            ));
        }
        Some(t) => Some(SecretString::from(t)),
    };
    let bind = match get("KEEL_METRICS_BIND") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| {
            ConfigError::new(
                "KEEL_METRICS_BIND",
                format!("expected host:port such as 127.0.0.1:9090, got {v:?}"),
            )
        })?),
    };
    Ok(MetricsSettings { token, bind })
}

/// One fewer hashing slot than CPUs, at least 1: measured on 2 CPUs, a login flood then
/// raises other routes' p99 1.4× instead of 2.8× (docs/performance.md, SPEC §9 allows 2×).
fn default_hash_slots() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    cpus.saturating_sub(1).max(1)
}

/// A webhook encryption key, checked (never echoed).
fn encryption_key(variable: &'static str, raw: String) -> Result<SecretString, ConfigError> {
    keel_infrastructure::webhooks::parse_key(&raw).map_err(|_| {
        ConfigError::new(
            variable,
            "expected 64 hex digits or the base64 of exactly 32 bytes",
        )
    })?;
    Ok(SecretString::from(raw))
}

fn random_secret() -> SecretString {
    let mut bytes = [0_u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

fn parse_in(
    variable: &'static str,
    raw: Option<String>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ConfigError::new(
            variable,
            format!("expected an integer from {min} to {max}, got {raw:?}"),
        )),
    }
}

fn secs(
    variable: &'static str,
    raw: Option<String>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<Duration, ConfigError> {
    parse_in(variable, raw, default, min, max).map(|s| Duration::from_secs(u64::from(s)))
}

fn boolean(variable: &'static str, raw: Option<String>, default: bool) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            variable,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

fn rate_limit(variable: &'static str, raw: Option<String>, default: &str) -> Result<RateLimit, ConfigError> {
    let raw = raw.unwrap_or_else(|| default.to_owned());
    let bad = || {
        ConfigError::new(
            variable,
            format!("expected requests/window such as 100/15m (units s, m, h), got {raw:?}"),
        )
    };
    let (requests, window) = raw.split_once('/').ok_or_else(bad)?;
    let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
    let window = window.trim();
    let unit_at = window.len().checked_sub(1).ok_or_else(bad)?;
    let (amount, unit) = window.split_at(unit_at);
    let amount: u64 = amount.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => amount,
        "m" => amount.checked_mul(60).ok_or_else(bad)?,
        "h" => amount.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if requests == 0 || seconds == 0 || seconds > 86_400 {
        return Err(bad());
    }
    Ok(RateLimit {
        requests,
        window: Duration::from_secs(seconds),
    })
}

fn list(raw: Option<String>) -> impl Iterator<Item = String> {
    raw.unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_development_setup() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose_secret(), DEFAULT_DATABASE_URL);
        assert!(s.redis_url.is_none());
        assert_eq!(s.environment, Environment::Development);
        assert!(matches!(s.jwt_secret, JwtSecret::Generated(ref k) if k.expose_secret().len() >= 32));
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_token_ttl, Duration::from_secs(604_800));
        assert_eq!(
            (s.argon2.memory_kib, s.argon2.iterations, s.argon2.parallelism),
            (65_536, 3, 4)
        );
        assert_eq!(s.argon2.max_concurrent, default_hash_slots());
        assert!(s.argon2.max_concurrent >= 1);
        assert_eq!(
            s.rate_limits.anonymous,
            RateLimit {
                requests: 100,
                window: Duration::from_secs(900)
            }
        );
        assert_eq!(s.rate_limits.user.requests, 1000);
        assert!(s.rate_limits.enabled);
        assert_eq!(s.rate_limits.login.requests, 10);
        assert!(s.trusted_proxies.is_empty() && s.cors_origins.is_empty());
        assert!(!s.webhooks.allow_private);
        assert_eq!(
            (s.webhooks.retry_base, s.webhooks.max_attempts),
            (Duration::from_secs(30), 10)
        );
        assert!(s.auto_migrate);
        assert_eq!(s.log_format, LogFormat::Pretty);
    }

    #[test]
    fn generated_secrets_differ_per_process_start() {
        let (a, b) = (settings(&[]).unwrap(), settings(&[]).unwrap());
        let (JwtSecret::Generated(a), JwtSecret::Generated(b)) = (a.jwt_secret, b.jwt_secret) else {
            panic!("expected generated secrets");
        };
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn production_requires_a_long_jwt_secret_and_logs_json() {
        let e = settings(&[("KEEL_ENV", "production")]).unwrap_err();
        assert_eq!(e.variable, "KEEL_JWT_SECRET");
        let secret = "x".repeat(32);
        let e = settings(&[("KEEL_ENV", "production"), ("KEEL_JWT_SECRET", &secret)]).unwrap_err();
        assert_eq!(e.variable, "KEEL_WEBHOOK_ENCRYPTION_KEY");
        let key = "ab".repeat(32);
        let s = settings(&[
            ("KEEL_ENV", "production"),
            ("KEEL_JWT_SECRET", &secret),
            ("KEEL_WEBHOOK_ENCRYPTION_KEY", &key),
        ])
        .unwrap();
        assert!(matches!(s.jwt_secret, JwtSecret::Configured(_)));
        assert!(s.webhooks.encryption_key.is_some());
        let e = settings(&[("KEEL_WEBHOOK_ENCRYPTION_KEY", "0123abcd")]).unwrap_err();
        assert_eq!(e.variable, "KEEL_WEBHOOK_ENCRYPTION_KEY");
        assert!(!e.to_string().contains("0123abcd"), "the key must not be echoed");
        let e = settings(&[("KEEL_WEBHOOK_ENCRYPTION_KEY_PREVIOUS", &format!("{key},nope"))]).unwrap_err();
        assert_eq!(e.variable, "KEEL_WEBHOOK_ENCRYPTION_KEY_PREVIOUS");
        assert_eq!(s.log_format, LogFormat::Json);
        let e = settings(&[("KEEL_JWT_SECRET", "short")]).unwrap_err();
        assert_eq!(e.variable, "KEEL_JWT_SECRET");
        assert!(!e.to_string().contains("short"), "the secret must not be echoed");
    }

    #[test]
    fn previous_jwt_secrets_are_a_checked_list_that_needs_a_current_secret() {
        let current = "c".repeat(32);
        let (old, older) = ("o".repeat(32), "p".repeat(40));
        let s = settings(&[]).unwrap();
        assert!(s.jwt_previous_secrets.is_empty());
        let s = settings(&[
            ("KEEL_JWT_SECRET", &current),
            ("KEEL_JWT_SECRET_PREVIOUS", &format!(" {old} ,, {older}")),
        ])
        .unwrap();
        let previous: Vec<&str> = s
            .jwt_previous_secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(previous, vec![old.as_str(), older.as_str()]);
        assert!(matches!(s.jwt_secret, JwtSecret::Configured(ref k) if k.expose_secret() == current));
        assert!(
            !format!("{s:?}").contains(&old),
            "a previous secret leaked through Debug"
        );

        let short = "short-old-secret";
        let e = settings(&[
            ("KEEL_JWT_SECRET", &current),
            ("KEEL_JWT_SECRET_PREVIOUS", &format!("{old},{short}")),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "KEEL_JWT_SECRET_PREVIOUS");
        assert!(
            !e.to_string().contains(short) && !e.to_string().contains(&old),
            "echoed: {e}"
        );

        let e = settings(&[("KEEL_JWT_SECRET_PREVIOUS", &old)]).unwrap_err();
        assert_eq!(e.variable, "KEEL_JWT_SECRET_PREVIOUS");
        assert!(e.to_string().contains("KEEL_JWT_SECRET is not"), "{e}");
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (var, value) in [
            ("KEEL_BIND", "localhost"),
            ("DATABASE_URL", "mysql://u:hunter2@db/keel"),
            ("REDIS_URL", "http://cache"),
            ("KEEL_ENV", "staging"),
            ("KEEL_ACCESS_TOKEN_TTL", "-5"),
            ("KEEL_REFRESH_TOKEN_TTL", "60"),
            ("KEEL_ARGON2_MEMORY_KIB", "lots"),
            ("KEEL_ARGON2_ITERATIONS", "0"),
            ("KEEL_ARGON2_PARALLELISM", "65"),
            ("KEEL_ARGON2_MAX_CONCURRENT", "0"),
            ("KEEL_RATE_LIMIT_ANON", "100"),
            ("KEEL_RATE_LIMIT_USER", "0/15m"),
            ("KEEL_RATE_LIMIT_LOGIN", "10/15d"),
            ("KEEL_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("KEEL_CORS_ORIGINS", "app.example.com"),
            ("KEEL_WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("KEEL_WEBHOOK_RETRY_BASE_SECS", "0"),
            ("KEEL_WEBHOOK_MAX_ATTEMPTS", "x"),
            ("KEEL_AUTO_MIGRATE", "nope"),
            ("KEEL_LOG_FORMAT", "xml"),
            ("KEEL_DB_MAX_CONNECTIONS", "0"),
            ("KEEL_WORKERS", "0"),
            ("KEEL_METRICS_TOKEN", "short"),
            ("KEEL_METRICS_TOKEN", "has a space in it, sixteen+"),
            ("KEEL_METRICS_BIND", "metrics"),
        ] {
            let e = settings(&[(var, value)]).unwrap_err();
            assert_eq!(e.variable, var, "{var}={value} gave {e}");
            assert!(e.to_string().starts_with(var));
            assert!(!e.to_string().contains("hunter2"), "a password leaked: {e}");
        }
    }

    #[test]
    fn lists_rate_limits_and_booleans_parse() {
        let s = settings(&[
            ("KEEL_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1/128"),
            (
                "KEEL_CORS_ORIGINS",
                "https://app.example.com,http://localhost:3000",
            ),
            ("KEEL_RATE_LIMIT_LOGIN", "5/30s"),
            ("KEEL_RATE_LIMIT_USER", "2000/1h"),
            ("KEEL_RATE_LIMIT_ENABLED", "false"),
            ("KEEL_AUTO_MIGRATE", "false"),
            ("KEEL_WEBHOOK_ALLOW_PRIVATE", "TRUE"),
            ("REDIS_URL", "redis://127.0.0.1:6379/2"),
            ("KEEL_BIND", "[::1]:9000"),
            ("KEEL_LOG_FORMAT", ""),
        ])
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        assert_eq!(
            s.cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        assert_eq!(
            s.rate_limits.login,
            RateLimit {
                requests: 5,
                window: Duration::from_secs(30)
            }
        );
        assert_eq!(s.rate_limits.user.window, Duration::from_secs(3600));
        assert!(!s.rate_limits.enabled);
        assert!(!s.auto_migrate && s.webhooks.allow_private);
        assert!(s.redis_url.is_some());
        assert_eq!(s.bind.port(), 9000);
        assert_eq!(s.log_format, LogFormat::Pretty, "an empty value counts as unset");
    }

    #[test]
    fn metrics_are_open_by_default_and_take_a_token_and_an_address() {
        let s = settings(&[]).unwrap();
        assert!(s.metrics.token.is_none() && s.metrics.bind.is_none());
        let token = "m3trics-t0ken-0123456789";
        let s = settings(&[
            ("KEEL_METRICS_TOKEN", token),
            ("KEEL_METRICS_BIND", "0.0.0.0:9090"),
        ])
        .unwrap();
        assert_eq!(
            s.metrics.token.as_ref().map(ExposeSecret::expose_secret),
            Some(token)
        );
        assert_eq!(s.metrics.bind.map(|a| a.port()), Some(9090));
        assert!(
            !format!("{s:?}").contains(token),
            "the token leaked through Debug"
        );
        let e = settings(&[("KEEL_METRICS_TOKEN", "too-short")]).unwrap_err();
        assert!(!e.to_string().contains("too-short"), "echoed: {e}");
    }

    #[test]
    fn cache_settings_have_bounded_defaults_and_a_checked_prefix() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.cache.redis_prefix, "keel");
        assert_eq!(s.cache.l1_ttl, Duration::from_secs(60));
        assert_eq!(s.cache.l2_ttl, Duration::from_secs(3600));
        assert_eq!(s.cache.l1_max_bytes, 64 * 1024 * 1024);
        let s = settings(&[
            ("KEEL_REDIS_PREFIX", "keel-test_1"),
            ("KEEL_CACHE_L1_TTL_SECS", "300"),
            ("KEEL_CACHE_L1_MAX_ENTRIES", "500"),
        ])
        .unwrap();
        assert_eq!(s.cache.redis_prefix, "keel-test_1");
        assert_eq!(s.cache.l1_max_entries, 500);
        for (var, bad) in [
            ("KEEL_REDIS_PREFIX", "a:b"),
            ("KEEL_REDIS_PREFIX", "x".repeat(33).as_str()),
            ("KEEL_CACHE_L1_TTL_SECS", "301"),
            ("KEEL_CACHE_L1_MAX_MB", "0"),
            ("KEEL_CACHE_LAYERS", "l2"),
            ("KEEL_CACHE_LAYERS", "l3"),
        ] {
            let err = settings(&[(var, bad)]).unwrap_err();
            assert!(err.to_string().contains(var), "{var}={bad}: {err}");
        }
    }
}
