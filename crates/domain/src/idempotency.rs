//! Idempotent creates (docs/api/conventions.md): a client that sends `Idempotency-Key` with a `POST` that
//! creates something gets the first response again when it retries with the same key and
//! body within 24 hours, and a conflict when it reuses the key for another body.
//!
//! The rules live here, once: what a valid key is ([`IdempotencyKey`]), how long a key is
//! remembered ([`RETENTION`]), when an unfinished claim counts as abandoned
//! ([`IN_PROGRESS_TIMEOUT`]), and how a stored record answers a new request ([`assess`]).
//! Adapters of [`IdempotencyStore`] only make the claim atomic.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::{FieldError, StoreError};

/// How long a key is remembered, counted from the claim of the request that produced the
/// stored response. An older record counts as absent.
pub const RETENTION: TimeDelta = TimeDelta::hours(24);

/// How long a claim whose request has not finished blocks the key. A request still unfinished
/// after this long is taken to have died (a crashed instance, a dropped connection) and the
/// key may be claimed again; no request of this API legitimately runs this long.
pub const IN_PROGRESS_TIMEOUT: TimeDelta = TimeDelta::seconds(60);

/// The longest key accepted.
pub const KEY_MAX_LEN: usize = 255;

/// The published rule for keys: 1–255 visible ASCII characters.
pub const KEY_PATTERN: &str = r"^[\x21-\x7e]{1,255}$";

/// The header (and the field named in a 400) that carries the key.
pub const KEY_FIELD: &str = "Idempotency-Key";

/// A client's idempotency key: 1–255 visible ASCII characters (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// A [`FieldError`] on `Idempotency-Key` when the key is empty, too long or holds anything
    /// but visible ASCII.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > KEY_MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                KEY_FIELD,
                format!("must be 1–{KEY_MAX_LEN} visible ASCII characters"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of what identifies a request (method, path, exact body bytes).
pub type Fingerprint = [u8; 32];

/// Identifies one claim, so that a request whose claim was taken over (it ran past
/// [`IN_PROGRESS_TIMEOUT`]) cannot complete or release its successor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimId(pub Uuid);

impl ClaimId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for ClaimId {
    fn default() -> Self {
        Self::new()
    }
}

/// A response worth replaying: its status, the headers a client acts on (`Location`, `ETag`,
/// `Content-Type`) and the body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Header names in lower case, with their values, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the store holds for one user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: Fingerprint,
    pub claim_id: ClaimId,
    /// When the current claim was made.
    pub created_at: DateTime<Utc>,
    /// `None` while the claiming request runs.
    pub response: Option<StoredResponse>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's: run it, then `complete` or `release` with this id.
    Acquired(ClaimId),
    /// Another request with this key and body is running.
    InProgress,
    /// A request with this key and body has finished: replay its response.
    Completed(StoredResponse),
    /// The key was used with another request.
    Mismatch,
}

/// How an existing record answers a request with `fingerprint` at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Expired, or an abandoned claim: the record may be replaced by a new claim.
    Replace,
    InProgress,
    Completed(StoredResponse),
    Mismatch,
}

/// The rules of a claim against an existing record, in order: an expired record (older than
/// [`RETENTION`]) counts as absent; an unfinished claim older than [`IN_PROGRESS_TIMEOUT`] is
/// abandoned and may be replaced whatever its body (it never produced a response); another
/// fingerprint is a mismatch; a finished record is replayed; otherwise the key is in use.
pub fn assess(record: &IdempotencyRecord, fingerprint: &Fingerprint, now: DateTime<Utc>) -> Assessment {
    if record.created_at <= now - RETENTION {
        return Assessment::Replace;
    }
    if record.response.is_none() && record.created_at <= now - IN_PROGRESS_TIMEOUT {
        return Assessment::Replace;
    }
    if &record.fingerprint != fingerprint {
        return Assessment::Mismatch;
    }
    match &record.response {
        Some(response) => Assessment::Completed(response.clone()),
        None => Assessment::InProgress,
    }
}

/// Where idempotency keys are remembered, per user. Keys of different users never meet.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with `fingerprint`, atomically: of concurrent claims of one
    /// key exactly one is `Acquired`. An existing record answers through [`assess`]; one it
    /// says to replace is replaced by the new claim (again atomically).
    /// # Errors
    /// `Unavailable` when the store cannot be reached, `Unexpected` otherwise.
    async fn claim(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;

    /// Stores the response of the request holding `claim`. Returns `false` (and stores
    /// nothing) when the claim is no longer held: it was taken over or released.
    /// # Errors
    /// `Unavailable` when the store cannot be reached, `Unexpected` otherwise.
    async fn complete(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        claim: ClaimId,
        response: &StoredResponse,
    ) -> Result<bool, StoreError>;

    /// Forgets an unfinished claim (its request failed), so that a corrected retry can run.
    /// Returns `false` when the claim is no longer held.
    /// # Errors
    /// `Unavailable` when the store cannot be reached, `Unexpected` otherwise.
    async fn release(&self, user_id: Uuid, key: &IdempotencyKey, claim: ClaimId) -> Result<bool, StoreError>;

    /// Deletes every record claimed before `before`; returns how many.
    /// # Errors
    /// `Unavailable` when the store cannot be reached, `Unexpected` otherwise.
    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    fn record(age: TimeDelta, response: Option<StoredResponse>) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: [1; 32],
            claim_id: ClaimId::new(),
            created_at: now() - age,
            response,
        }
    }

    fn created() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![("location".into(), "/api/v1/projects/1".into())],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse("!~0123-abc_XYZ:{}").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", " ", "has space", "tab\t", "é", "new\nline", "\u{7f}"] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(err.field, "Idempotency-Key", "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn key_pattern_agrees_with_the_parser() {
        let pattern = fancy_regex::Regex::new(KEY_PATTERN).unwrap();
        for candidate in [
            "a",
            "!~",
            "has space",
            "",
            "é",
            "x\u{7f}",
            &"k".repeat(255),
            &"k".repeat(256),
        ] {
            assert_eq!(
                pattern.is_match(candidate).unwrap(),
                IdempotencyKey::parse(candidate).is_ok(),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn a_finished_record_with_the_same_body_is_replayed() {
        let r = record(TimeDelta::hours(23), Some(created()));
        assert_eq!(assess(&r, &[1; 32], now()), Assessment::Completed(created()));
    }

    #[test]
    fn another_body_is_a_mismatch_finished_or_not() {
        let finished = record(TimeDelta::minutes(5), Some(created()));
        assert_eq!(assess(&finished, &[2; 32], now()), Assessment::Mismatch);
        let running = record(TimeDelta::seconds(5), None);
        assert_eq!(assess(&running, &[2; 32], now()), Assessment::Mismatch);
    }

    #[test]
    fn a_running_claim_blocks_until_it_is_abandoned() {
        let running = record(TimeDelta::seconds(59), None);
        assert_eq!(assess(&running, &[1; 32], now()), Assessment::InProgress);
        let abandoned = record(IN_PROGRESS_TIMEOUT, None);
        assert_eq!(assess(&abandoned, &[1; 32], now()), Assessment::Replace);
        assert_eq!(assess(&abandoned, &[2; 32], now()), Assessment::Replace);
    }

    #[test]
    fn records_older_than_the_retention_count_as_absent() {
        let old = record(RETENTION, Some(created()));
        assert_eq!(assess(&old, &[1; 32], now()), Assessment::Replace);
        assert_eq!(assess(&old, &[2; 32], now()), Assessment::Replace);
        let young = record(RETENTION - TimeDelta::seconds(1), Some(created()));
        assert_eq!(assess(&young, &[2; 32], now()), Assessment::Mismatch);
    }
}
