//! The idempotency-key store on SeaORM (table `idempotency_keys`), and the task that purges
//! expired keys.
//!
//! A claim is an `INSERT … ON CONFLICT DO NOTHING` on the primary key (user, key): of
//! concurrent claims exactly one inserts. The others read the row and let the domain's
//! [`assess`] decide; replacing an expired or abandoned row is an `UPDATE` guarded by the
//! row's claim id, so of two requests replacing one row only one wins.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::clock::Clock;
use keel_domain::idempotency::{
    Assessment, Claim, ClaimId, Fingerprint, IdempotencyKey, IdempotencyRecord, IdempotencyStore, RETENTION,
    StoredResponse, assess,
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, Set, TryInsertResult};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::idempotency_keys::{self, ActiveModel, Column, Entity};

/// A claim that keeps meeting rows that vanish or change under it gives up after this many
/// rounds (each round means another request made progress, so this is never reached in
/// practice).
const CLAIM_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct SeaOrmIdempotencyStore {
    db: Database,
}

impl SeaOrmIdempotencyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Fingerprint> {
    let mut out = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unexpected(format!("idempotency_keys: unreadable {what}").into())
}

fn to_record(m: idempotency_keys::Model) -> Result<IdempotencyRecord, StoreError> {
    let fingerprint = unhex(&m.fingerprint).ok_or_else(|| corrupt("fingerprint"))?;
    let response = match m.status {
        None => None,
        Some(status) => {
            let status = u16::try_from(status).map_err(|_| corrupt("status"))?;
            let headers: Vec<(String, String)> = match m.headers {
                Some(json) => serde_json::from_value(json).map_err(|_| corrupt("headers"))?,
                None => Vec::new(),
            };
            Some(StoredResponse {
                status,
                headers,
                body: m.body.unwrap_or_default(),
            })
        }
    };
    Ok(IdempotencyRecord {
        fingerprint,
        claim_id: ClaimId(m.claim_id),
        created_at: m.created_at,
        response,
    })
}

/// The columns of a fresh, unfinished claim.
fn new_claim(fingerprint: &Fingerprint, claim: ClaimId, now: DateTime<Utc>) -> ActiveModel {
    ActiveModel {
        fingerprint: Set(hex(fingerprint)),
        claim_id: Set(claim.0),
        status: Set(None),
        headers: Set(None),
        body: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
}

impl SeaOrmIdempotencyStore {
    fn of_key(user_id: Uuid, key: &IdempotencyKey) -> Condition {
        Condition::all()
            .add(Column::UserId.eq(user_id))
            .add(Column::Key.eq(key.as_str()))
    }
}

#[async_trait]
impl IdempotencyStore for SeaOrmIdempotencyStore {
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn claim(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let conn = self.db.connection();
        for _ in 0..CLAIM_ATTEMPTS {
            let claim = ClaimId::new();
            let mut row = new_claim(fingerprint, claim, now);
            row.user_id = Set(user_id);
            row.key = Set(key.as_str().to_owned());
            let inserted = Entity::insert(row)
                .on_conflict_do_nothing_on([Column::UserId, Column::Key])
                .exec_without_returning(conn)
                .await
                .map_err(store_error)?;
            if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
                return Ok(Claim::Acquired(claim));
            }

            let Some(existing) = Entity::find_by_id((user_id, key.as_str().to_owned()))
                .one(conn)
                .await
                .map_err(store_error)?
            else {
                // Released or purged since the insert failed: try again.
                continue;
            };
            let record = to_record(existing)?;
            match assess(&record, fingerprint, now) {
                Assessment::InProgress => return Ok(Claim::InProgress),
                Assessment::Completed(response) => return Ok(Claim::Completed(response)),
                Assessment::Mismatch => return Ok(Claim::Mismatch),
                Assessment::Replace => {
                    let claim = ClaimId::new();
                    let replaced = Entity::update_many()
                        .set(new_claim(fingerprint, claim, now))
                        .filter(Self::of_key(user_id, key))
                        .filter(Column::ClaimId.eq(record.claim_id.0))
                        .exec(conn)
                        .await
                        .map_err(store_error)?;
                    if replaced.rows_affected == 1 {
                        return Ok(Claim::Acquired(claim));
                    }
                    // Another request replaced it first: look again.
                }
            }
        }
        Err(StoreError::Unexpected(
            "idempotency claim did not settle after repeated races".into(),
        ))
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn complete(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        claim: ClaimId,
        response: &StoredResponse,
    ) -> Result<bool, StoreError> {
        let status = i16::try_from(response.status).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        let headers =
            serde_json::to_value(&response.headers).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        let result = Entity::update_many()
            .set(ActiveModel {
                status: Set(Some(status)),
                headers: Set(Some(headers)),
                body: Set(Some(response.body.clone())),
                ..Default::default()
            })
            .filter(Self::of_key(user_id, key))
            .filter(Column::ClaimId.eq(claim.0))
            .filter(Column::Status.is_null())
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn release(&self, user_id: Uuid, key: &IdempotencyKey, claim: ClaimId) -> Result<bool, StoreError> {
        let result = Entity::delete_many()
            .filter(Self::of_key(user_id, key))
            .filter(Column::ClaimId.eq(claim.0))
            .filter(Column::Status.is_null())
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(skip(self))]
    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = Entity::delete_many()
            .filter(Column::CreatedAt.lt(before))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected)
    }
}

/// The background purge of expired keys. Correctness does not depend on it (a claim ignores
/// expired rows); it keeps the table small. Dropping the handle stops the task.
#[derive(Debug)]
pub struct PurgeTask(tokio::task::JoinHandle<()>);

impl PurgeTask {
    /// Purges now and then every `every`, deleting keys older than [`RETENTION`]. Must be
    /// called inside a Tokio runtime.
    pub fn spawn(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>, every: Duration) -> Self {
        Self(crate::db::spawn_background(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.purge_expired(clock.now() - RETENTION).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
                    Err(e) => tracing::warn!(error = %e, "purging expired idempotency keys failed"),
                }
            }
        }))
    }

    /// Stops the task (also done on drop).
    pub fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
