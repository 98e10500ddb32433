//! Configuration parsing, through [`Settings::from_lookup`].

use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::values::default_hash_slots;
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
    assert_eq!(s.trash_retention_days, 30);
    assert_eq!(s.events.retention_hours, 72);
    assert_eq!(
        settings(&[("KEEL_EVENT_RETENTION_HOURS", "1")])
            .unwrap()
            .events
            .retention_hours,
        1
    );
    assert_eq!(
        settings(&[("KEEL_TRASH_RETENTION_DAYS", "7")])
            .unwrap()
            .trash_retention_days,
        7
    );
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
        ("KEEL_MAIL", "disabled"),
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
        ("KEEL_TRASH_RETENTION_DAYS", "0"),
        ("KEEL_EVENT_RETENTION_HOURS", "0"),
        ("KEEL_EVENT_RETENTION_HOURS", "72h"),
        ("KEEL_TRASH_RETENTION_DAYS", "30d"),
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

#[test]
fn development_writes_mail_files_with_local_links_by_default() {
    let s = settings(&[]).unwrap();
    assert!(matches!(s.mail.delivery, MailDelivery::Files(ref dir) if dir.as_os_str() == "data/mail"));
    assert_eq!(s.mail.public_url, "http://127.0.0.1:8080");
    assert_eq!(s.mail.from, "Keel <keel@localhost>");
    assert_eq!(
        (s.mail.retry_base, s.mail.max_attempts),
        (Duration::from_secs(30), 10)
    );
    let s = settings(&[
        ("KEEL_MAIL_DIR", "/tmp/mails"),
        ("KEEL_PUBLIC_URL", "https://app.example.com/keel/"),
        ("KEEL_MAIL_FROM", "Team <team@example.com>"),
    ])
    .unwrap();
    assert!(matches!(s.mail.delivery, MailDelivery::Files(ref dir) if dir.as_os_str() == "/tmp/mails"));
    assert_eq!(
        s.mail.public_url, "https://app.example.com/keel",
        "no trailing slash"
    );
    let s = settings(&[("KEEL_SMTP_URL", "smtp://u:p@mail.example.com:587?starttls=true")]).unwrap();
    assert!(matches!(s.mail.delivery, MailDelivery::Smtp(_)));
    assert!(matches!(
        settings(&[("KEEL_MAIL", "disabled")]).unwrap().mail.delivery,
        MailDelivery::Disabled
    ));
}

#[test]
fn production_needs_smtp_a_sender_and_a_public_url_unless_mail_is_disabled() {
    let (secret, key) = ("x".repeat(32), "ab".repeat(32));
    let base = [
        ("KEEL_ENV", "production"),
        ("KEEL_JWT_SECRET", secret.as_ref()),
        ("KEEL_WEBHOOK_ENCRYPTION_KEY", key.as_ref()),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut vars: Vec<(&str, &str)> = base.to_vec();
        vars.extend_from_slice(extra);
        settings(&vars)
    };
    assert_eq!(with(&[]).unwrap_err().variable, "KEEL_SMTP_URL");
    let smtp = ("KEEL_SMTP_URL", "smtps://mail.example.com");
    assert_eq!(with(&[smtp]).unwrap_err().variable, "KEEL_MAIL_FROM");
    let from = ("KEEL_MAIL_FROM", "keel@example.com");
    assert_eq!(with(&[smtp, from]).unwrap_err().variable, "KEEL_PUBLIC_URL");
    let s = with(&[smtp, from, ("KEEL_PUBLIC_URL", "https://keel.example.com")]).unwrap();
    assert!(matches!(s.mail.delivery, MailDelivery::Smtp(_)));
    let s = with(&[("KEEL_MAIL", "disabled")]).unwrap();
    assert!(matches!(s.mail.delivery, MailDelivery::Disabled));
}

#[test]
fn bad_mail_settings_name_their_variable_and_never_echo_a_password() {
    let e = settings(&[("KEEL_SMTP_URL", "smtp://ann:s3cret@mail.example.com?tls=yes")]).unwrap_err();
    assert_eq!(e.variable, "KEEL_SMTP_URL");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let e = settings(&[("KEEL_SMTP_URL", "http://ann:s3cret@mail.example.com")]).unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
    for (var, value) in [
        ("KEEL_MAIL", "off"),
        ("KEEL_MAIL_FROM", "not an address"),
        ("KEEL_PUBLIC_URL", "ftp://x"),
        ("KEEL_PUBLIC_URL", "https://x.example.com/?a=b"),
        ("KEEL_MAIL_RETRY_BASE_SECS", "0"),
        ("KEEL_MAIL_MAX_ATTEMPTS", "1000"),
    ] {
        assert_eq!(
            settings(&[(var, value)]).unwrap_err().variable,
            var,
            "{var}={value}"
        );
    }
}

#[test]
fn registration_is_open_by_default_and_can_be_invite_only_or_closed() {
    use keel_application::identity::RegistrationMode;
    assert_eq!(settings(&[]).unwrap().registration, RegistrationMode::Open);
    for (raw, mode) in [
        ("open", RegistrationMode::Open),
        ("invite", RegistrationMode::Invite),
        ("closed", RegistrationMode::Closed),
    ] {
        assert_eq!(
            settings(&[("KEEL_REGISTRATION", raw)]).unwrap().registration,
            mode
        );
    }
    for bad in ["nope", "Invite"] {
        assert_eq!(
            settings(&[("KEEL_REGISTRATION", bad)]).unwrap_err().variable,
            "KEEL_REGISTRATION"
        );
    }
}
