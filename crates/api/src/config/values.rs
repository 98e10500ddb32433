//! Parsers of single values (integers in a range, durations, booleans, rate limits,
//! lists), each naming its variable in its error.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;

use super::{ConfigError, RateLimit};

/// One fewer hashing slot than CPUs, at least 1: measured on 2 CPUs, a login flood then
/// raises other routes' p99 1.4× instead of 2.8× (docs/performance.md, the budget in docs/performance.md allows 2×).
pub(super) fn default_hash_slots() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    cpus.saturating_sub(1).max(1)
}

/// A webhook encryption key, checked (never echoed).
pub(super) fn encryption_key(variable: &'static str, raw: String) -> Result<SecretString, ConfigError> {
    keel_infrastructure::webhooks::parse_key(&raw).map_err(|_| {
        ConfigError::new(
            variable,
            "expected 64 hex digits or the base64 of exactly 32 bytes",
        )
    })?;
    Ok(SecretString::from(raw))
}

pub(super) fn random_secret() -> SecretString {
    let mut bytes = [0_u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

pub(super) fn parse_in(
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

pub(super) fn secs(
    variable: &'static str,
    raw: Option<String>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<Duration, ConfigError> {
    parse_in(variable, raw, default, min, max).map(|s| Duration::from_secs(u64::from(s)))
}

pub(super) fn boolean(
    variable: &'static str,
    raw: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
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

pub(super) fn rate_limit(
    variable: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<RateLimit, ConfigError> {
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

pub(super) fn list(raw: Option<String>) -> impl Iterator<Item = String> {
    raw.unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

pub(super) fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}
