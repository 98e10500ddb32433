//! The mail outbox table (adr/0018): mails written in the transaction of the change that
//! causes them ([`insert_mail`]), claimed one row at a time by the senders of every
//! instance, deleted once delivered, kept as `failed` (values erased) once given up.
//!
//! A claim is a conditional update of one row — due, `pending`, and not claimed by anyone
//! whose claim still runs — so of several instances exactly one sends a given mail; a
//! sender that dies mid-send leaves a claim that lapses after `claim_ttl`, and the mail is
//! sent again by whoever claims it next (at least once).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::mail::{Mail, MailTemplate};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::mail_outbox::{self, Column, Entity};

pub(crate) const PENDING: &str = "pending";
pub(crate) const FAILED: &str = "failed";

/// Writes `mail` to the outbox on `conn`: the transaction of the change that causes it.
/// The caller rings [`Database::mail_written`] after its commit.
pub(crate) async fn insert_mail(conn: &impl ConnectionTrait, mail: &Mail) -> Result<(), StoreError> {
    let payload = serde_json::to_value(&mail.values).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
    Entity::insert(mail_outbox::ActiveModel {
        id: Set(mail.id),
        recipient: Set(mail.to.clone()),
        template: Set(mail.template.as_str().to_owned()),
        payload: Set(Some(payload)),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(mail.created_at),
        claimed_by: Set(None),
        claimed_until: Set(None),
        last_error: Set(None),
        created_at: Set(mail.created_at),
    })
    .exec_without_returning(conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// A mail this instance claimed.
#[derive(Clone)]
pub struct ClaimedMail {
    pub id: Uuid,
    pub to: String,
    /// `None` when the stored name is not a template of this release.
    pub template: Option<MailTemplate>,
    /// `None` when the stored values do not parse.
    pub values: Option<BTreeMap<String, String>>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for ClaimedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMail")
            .field("id", &self.id)
            .field("template", &self.template)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The senders' side of the outbox.
#[derive(Debug, Clone)]
pub struct MailOutbox {
    db: Database,
}

impl MailOutbox {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Resolves when a mail was committed on this instance since the last call.
    pub async fn written(&self) {
        self.db.mail_wait().await;
    }

    fn claimable(now: DateTime<Utc>) -> Condition {
        Condition::all()
            .add(Column::Status.eq(PENDING))
            .add(Column::NextAttemptAt.lte(now))
            .add(
                Condition::any()
                    .add(Column::ClaimedUntil.is_null())
                    .add(Column::ClaimedUntil.lt(now)),
            )
    }

    /// Claims up to `limit` due mails for `holder` until `now + claim_ttl`, oldest due
    /// first. A row another instance claimed in between is skipped.
    pub async fn claim_due(
        &self,
        holder: Uuid,
        now: DateTime<Utc>,
        claim_ttl: Duration,
        limit: u64,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let conn = self.db.connection();
        let candidates = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Self::claimable(now))
            .order_by_asc(Column::NextAttemptAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(conn)
            .await
            .map_err(store_error)?;
        let until = now + claim_ttl;
        let mut claimed = Vec::new();
        for id in candidates {
            let taken = Entity::update_many()
                .col_expr(Column::ClaimedBy, Expr::value(holder))
                .col_expr(Column::ClaimedUntil, Expr::value(until))
                .filter(Column::Id.eq(id))
                .filter(Self::claimable(now))
                .exec(conn)
                .await
                .map_err(store_error)?;
            if taken.rows_affected != 1 {
                continue;
            }
            let Some(row) = Entity::find_by_id(id).one(conn).await.map_err(store_error)? else {
                continue;
            };
            claimed.push(ClaimedMail {
                id: row.id,
                to: row.recipient,
                template: MailTemplate::parse(&row.template),
                values: row
                    .payload
                    .and_then(|p| serde_json::from_value::<BTreeMap<String, String>>(p).ok()),
                attempts: u32::try_from(row.attempts).unwrap_or(0),
                created_at: row.created_at,
            });
        }
        Ok(claimed)
    }

    /// The mail was delivered: its row goes (with the token its values held).
    pub async fn delivered(&self, id: Uuid, holder: Uuid) -> Result<(), StoreError> {
        Entity::delete_many()
            .filter(Column::Id.eq(id))
            .filter(Column::ClaimedBy.eq(holder))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// An attempt failed: the mail is due again at `next_attempt_at`, unclaimed.
    pub async fn retry_later(
        &self,
        id: Uuid,
        holder: Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        Entity::update_many()
            .col_expr(
                Column::Attempts,
                Expr::value(i32::try_from(attempts).unwrap_or(i32::MAX)),
            )
            .col_expr(Column::NextAttemptAt, Expr::value(next_attempt_at))
            .col_expr(Column::ClaimedBy, Expr::value(Option::<Uuid>::None))
            .col_expr(Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(Column::LastError, Expr::value(truncated(error)))
            .filter(Column::Id.eq(id))
            .filter(Column::ClaimedBy.eq(holder))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The mail is given up: kept as `failed` for the operator to see, its values (and
    /// the token in them) erased.
    pub async fn give_up(
        &self,
        id: Uuid,
        holder: Uuid,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        Entity::update_many()
            .col_expr(Column::Status, Expr::value(FAILED))
            .col_expr(
                Column::Attempts,
                Expr::value(i32::try_from(attempts).unwrap_or(i32::MAX)),
            )
            .col_expr(Column::Payload, Expr::value(Option::<serde_json::Value>::None))
            .col_expr(Column::ClaimedBy, Expr::value(Option::<Uuid>::None))
            .col_expr(Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(Column::LastError, Expr::value(truncated(error)))
            .filter(Column::Id.eq(id))
            .filter(Column::ClaimedBy.eq(holder))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Mails waiting to be delivered (due or not).
    pub async fn pending(&self) -> Result<u64, StoreError> {
        Entity::find()
            .filter(Column::Status.eq(PENDING))
            .count(self.db.connection())
            .await
            .map_err(store_error)
    }
}

/// An error as kept in `last_error`: at most 500 characters.
fn truncated(error: &str) -> String {
    error.chars().take(500).collect()
}
