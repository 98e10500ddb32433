//! One function per section of the configuration: each reads its variables and checks
//! them together.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

use super::values::{
    boolean, default_hash_slots, encryption_key, is_origin, list, parse_in, random_secret, rate_limit, secs,
};
use super::*;

/// The deployment environment (`KEEL_ENV`).
pub(super) fn environment(get: &impl Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
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
    Ok(environment)
}

/// The API's address (`KEEL_BIND`).
pub(super) fn bind(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, ConfigError> {
    let bind = match get("KEEL_BIND") {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(v) => v.parse().map_err(|_| {
            ConfigError::new(
                "KEEL_BIND",
                format!("expected host:port such as 127.0.0.1:8080, got {v:?}"),
            )
        })?,
    };
    Ok(bind)
}

/// The database URL and pool (`DATABASE_URL`, `KEEL_DB_*`).
pub(super) fn database(get: &impl Fn(&str) -> Option<String>) -> Result<DatabaseSettings, ConfigError> {
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
    Ok(database)
}

/// The shared Redis, if any (`REDIS_URL`).
pub(super) fn redis_url(get: &impl Fn(&str) -> Option<String>) -> Result<Option<SecretString>, ConfigError> {
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
    Ok(redis_url)
}

/// The cache tiers and the Redis key namespace (`KEEL_CACHE_*`, `KEEL_REDIS_PREFIX`).
pub(super) fn cache(
    get: &impl Fn(&str) -> Option<String>,
    has_redis: bool,
) -> Result<CacheSettings, ConfigError> {
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
            Some("l2") if has_redis => CacheLayers { l1: false, l2: true },
            Some("none") => CacheLayers { l1: false, l2: false },
            Some(other) => {
                return Err(ConfigError::new(
                    "KEEL_CACHE_LAYERS",
                    format!("expected l1,l2, l1, l2 (needs REDIS_URL) or none, got {other:?}"),
                ));
            }
        },
    };
    Ok(cache)
}

/// The JWT signing secret and the previous ones still accepted (`KEEL_JWT_SECRET*`).
pub(super) fn jwt_secrets(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
) -> Result<(JwtSecret, Vec<SecretString>), ConfigError> {
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
    Ok((jwt_secret, jwt_previous_secrets))
}

/// The access and refresh token lifetimes (`KEEL_*_TOKEN_TTL`).
pub(super) fn token_ttls(get: &impl Fn(&str) -> Option<String>) -> Result<(Duration, Duration), ConfigError> {
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
    Ok((access_token_ttl, refresh_token_ttl))
}

/// Password hashing (`KEEL_ARGON2_*`).
pub(super) fn argon2(get: &impl Fn(&str) -> Option<String>) -> Result<Argon2Settings, ConfigError> {
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
    Ok(argon2)
}

/// Rate limits (`KEEL_RATE_LIMIT_*`).
pub(super) fn rate_limits(get: &impl Fn(&str) -> Option<String>) -> Result<RateLimits, ConfigError> {
    let rate_limits = RateLimits {
        anonymous: rate_limit("KEEL_RATE_LIMIT_ANON", get("KEEL_RATE_LIMIT_ANON"), "100/15m")?,
        user: rate_limit("KEEL_RATE_LIMIT_USER", get("KEEL_RATE_LIMIT_USER"), "1000/15m")?,
        login: rate_limit("KEEL_RATE_LIMIT_LOGIN", get("KEEL_RATE_LIMIT_LOGIN"), "10/15m")?,
        enabled: boolean("KEEL_RATE_LIMIT_ENABLED", get("KEEL_RATE_LIMIT_ENABLED"), true)?,
    };
    Ok(rate_limits)
}

/// The proxies whose `X-Forwarded-For` is believed (`KEEL_TRUSTED_PROXIES`).
pub(super) fn trusted_proxies(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<IpNet>, ConfigError> {
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
    Ok(trusted_proxies)
}

/// The browser origins CORS admits (`KEEL_CORS_ORIGINS`).
pub(super) fn cors_origins(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
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
    Ok(cors_origins)
}

/// Webhook delivery and secrets (`KEEL_WEBHOOK_*`).
pub(super) fn webhooks(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
) -> Result<WebhookSettings, ConfigError> {
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
    Ok(webhooks)
}

/// The log format (`KEEL_LOG_FORMAT`).
pub(super) fn log_format(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
) -> Result<LogFormat, ConfigError> {
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
    Ok(log_format)
}

/// The number of HTTP workers (`KEEL_WORKERS`).
pub(super) fn workers(get: &impl Fn(&str) -> Option<String>) -> Result<Option<usize>, ConfigError> {
    let workers = match get("KEEL_WORKERS") {
        None => None,
        Some(v) => Some(parse_in("KEEL_WORKERS", Some(v), 1, 1, 256)? as usize),
    };
    Ok(workers)
}

/// The event stream and the outbox dispatcher (`KEEL_EVENTS_*`, `KEEL_OUTBOX_POLL_MS`).
pub(super) fn events(get: &impl Fn(&str) -> Option<String>) -> Result<EventSettings, ConfigError> {
    Ok(EventSettings {
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
        retention_hours: parse_in(
            "KEEL_EVENT_RETENTION_HOURS",
            get("KEEL_EVENT_RETENTION_HOURS"),
            72,
            1,
            8760,
        )?,
    })
}

/// Who may read `/metrics` (`KEEL_METRICS_*`).
pub(super) fn metrics(get: &impl Fn(&str) -> Option<String>) -> Result<MetricsSettings, ConfigError> {
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

/// Mail (`KEEL_MAIL`, `KEEL_SMTP_URL`, `KEEL_MAIL_FROM`, `KEEL_PUBLIC_URL`, `KEEL_MAIL_DIR`,
/// `KEEL_MAIL_RETRY_BASE_SECS`, `KEEL_MAIL_MAX_ATTEMPTS`). Production sends through SMTP
/// (and says from whom and to which front end links point) unless mail is disabled.
pub(super) fn mail(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
    bind: SocketAddr,
) -> Result<MailSettings, ConfigError> {
    let enabled = match get("KEEL_MAIL").as_deref() {
        None | Some("enabled") => true,
        Some("disabled") => false,
        Some(other) => {
            return Err(ConfigError::new(
                "KEEL_MAIL",
                format!("expected enabled or disabled, got {other:?}"),
            ));
        }
    };
    let production = environment == Environment::Production;
    let smtp = match get("KEEL_SMTP_URL") {
        // May hold a password: never echoed.
        Some(url) => {
            keel_infrastructure::mail::SmtpUrl::parse(&url)
                .map_err(|e| ConfigError::new("KEEL_SMTP_URL", e))?;
            Some(SecretString::from(url))
        }
        None => None,
    };
    let delivery = match smtp {
        _ if !enabled => MailDelivery::Disabled,
        Some(url) => MailDelivery::Smtp(url),
        None if production => {
            return Err(ConfigError::new(
                "KEEL_SMTP_URL",
                "is required when KEEL_ENV=production (smtp://[user:pass@]host:port or smtps://…), \
                 unless KEEL_MAIL=disabled",
            ));
        }
        None => MailDelivery::Files(
            get("KEEL_MAIL_DIR")
                .unwrap_or_else(|| "data/mail".to_owned())
                .into(),
        ),
    };
    let required = production && enabled;
    let from = match get("KEEL_MAIL_FROM") {
        Some(from) if keel_infrastructure::mail::transport::is_mailbox(&from) => from,
        Some(other) => {
            return Err(ConfigError::new(
                "KEEL_MAIL_FROM",
                format!(
                    "expected an address such as keel@example.com or \"Keel <keel@example.com>\", got {other:?}"
                ),
            ));
        }
        None if required => {
            return Err(ConfigError::new(
                "KEEL_MAIL_FROM",
                "is required when KEEL_ENV=production, unless KEEL_MAIL=disabled",
            ));
        }
        None => "Keel <keel@localhost>".to_owned(),
    };
    let public_url = match get("KEEL_PUBLIC_URL") {
        Some(url) => {
            let parsed = url::Url::parse(&url).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if parsed.is_none() {
                return Err(ConfigError::new(
                    "KEEL_PUBLIC_URL",
                    format!(
                        "expected an http(s) URL without query such as https://keel.example.com, got {url:?}"
                    ),
                ));
            }
            url.trim_end_matches('/').to_owned()
        }
        None if required => {
            return Err(ConfigError::new(
                "KEEL_PUBLIC_URL",
                "is required when KEEL_ENV=production (the base of links in mails), unless KEEL_MAIL=disabled",
            ));
        }
        None => format!("http://{bind}"),
    };
    Ok(MailSettings {
        delivery,
        from,
        public_url,
        retry_base: secs(
            "KEEL_MAIL_RETRY_BASE_SECS",
            get("KEEL_MAIL_RETRY_BASE_SECS"),
            30,
            1,
            3600,
        )?,
        max_attempts: parse_in(
            "KEEL_MAIL_MAX_ATTEMPTS",
            get("KEEL_MAIL_MAX_ATTEMPTS"),
            10,
            1,
            100,
        )?,
    })
}

/// Who may register (`KEEL_REGISTRATION`): `open` (default), `invite` (only with a valid
/// invitation for the registered address) or `closed`.
pub(super) fn registration(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<keel_application::identity::RegistrationMode, ConfigError> {
    use keel_application::identity::RegistrationMode;
    match get("KEEL_REGISTRATION").as_deref() {
        None | Some("open") => Ok(RegistrationMode::Open),
        Some("invite") => Ok(RegistrationMode::Invite),
        Some("closed") => Ok(RegistrationMode::Closed),
        Some(other) => Err(ConfigError::new(
            "KEEL_REGISTRATION",
            format!("expected open, invite or closed, got {other:?}"),
        )),
    }
}
