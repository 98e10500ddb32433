//! The one-time account token store on SeaORM (password reset, e-mail verification): each
//! write that mails a token writes the mail to the mail outbox in the same transaction;
//! each redemption is a conditional update, so a token works once even when two requests
//! present it at the same moment.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::account_tokens::{AccountToken, AccountTokenRecord, TokenPurpose};
use keel_domain::identity::ports::AccountTokenRepository;
use keel_domain::identity::{PasswordHash, UserStatus};
use keel_domain::mail::Mail;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, JoinType, QueryFilter, QuerySelect,
    RelationTrait, Set,
};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::{account_tokens, sessions, users};
use crate::mail::outbox::insert_mail;

#[derive(Debug, Clone)]
pub struct SeaOrmAccountTokenRepository {
    db: Database,
}

impl SeaOrmAccountTokenRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn corrupt(id: Uuid, what: &str) -> StoreError {
    StoreError::Unexpected(format!("account_tokens row {id} has an invalid {what}").into())
}

/// Inserts `token` on `conn` (a transaction that also writes its mail).
pub(crate) async fn insert_token(
    conn: &impl ConnectionTrait,
    token: &AccountToken,
) -> Result<(), StoreError> {
    account_tokens::Entity::insert(account_tokens::ActiveModel {
        id: Set(token.id),
        user_id: Set(token.user_id),
        purpose: Set(token.purpose.as_str().to_owned()),
        secret_hash: Set(token.secret_hash.clone()),
        expires_at: Set(token.expires_at),
        created_at: Set(token.created_at),
        used_at: Set(token.used_at),
    })
    .exec_without_returning(conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Stores `token` and `mail` in one transaction and wakes the mail sender.
async fn issue(db: &Database, token: &AccountToken, mail: &Mail) -> Result<(), StoreError> {
    let txn = db.begin_write().await?;
    insert_token(&txn, token).await?;
    insert_mail(&txn, mail).await?;
    txn.commit().await.map_err(store_error)?;
    db.mail_written();
    Ok(())
}

/// Marks the token `id` of `user_id` used, if it has one of `purposes` and is unused and
/// unexpired at `at`, and with it every other unused token of the same user and purposes;
/// `false` (and nothing changed) when it was not redeemable.
async fn redeem(
    txn: &DatabaseTransaction,
    id: Uuid,
    user_id: Uuid,
    purposes: &[TokenPurpose],
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let purposes: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
    let redeemed = account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(at))
        .filter(account_tokens::Column::Id.eq(id))
        .filter(account_tokens::Column::UserId.eq(user_id))
        .filter(account_tokens::Column::Purpose.is_in(purposes.clone()))
        .filter(account_tokens::Column::UsedAt.is_null())
        .filter(account_tokens::Column::ExpiresAt.gt(at))
        .exec(txn)
        .await
        .map_err(store_error)?;
    if redeemed.rows_affected != 1 {
        return Ok(false);
    }
    account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(at))
        .filter(account_tokens::Column::UserId.eq(user_id))
        .filter(account_tokens::Column::Purpose.is_in(purposes))
        .filter(account_tokens::Column::UsedAt.is_null())
        .exec(txn)
        .await
        .map_err(store_error)?;
    Ok(true)
}

#[async_trait]
impl AccountTokenRepository for SeaOrmAccountTokenRepository {
    async fn find(&self, id: Uuid) -> Result<Option<AccountTokenRecord>, StoreError> {
        type Row = (
            Uuid,
            String,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            String,
        );
        let row: Option<Row> = account_tokens::Entity::find_by_id(id)
            .select_only()
            .column(account_tokens::Column::UserId)
            .column(account_tokens::Column::Purpose)
            .column(account_tokens::Column::SecretHash)
            .column(account_tokens::Column::ExpiresAt)
            .column(account_tokens::Column::CreatedAt)
            .column(account_tokens::Column::UsedAt)
            .column(users::Column::Status)
            .join(JoinType::InnerJoin, account_tokens::Relation::User.def())
            .into_tuple()
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        let Some((user_id, purpose, secret_hash, expires_at, created_at, used_at, status)) = row else {
            return Ok(None);
        };
        Ok(Some(AccountTokenRecord {
            token: AccountToken {
                id,
                user_id,
                purpose: TokenPurpose::parse(&purpose).ok_or_else(|| corrupt(id, "purpose"))?,
                secret_hash,
                expires_at,
                created_at,
                used_at,
            },
            user_status: UserStatus::parse(&status, "status").map_err(|_| corrupt(id, "user status"))?,
        }))
    }

    async fn issue(&self, token: &AccountToken, mail: &Mail) -> Result<(), StoreError> {
        issue(&self.db, token, mail).await
    }

    fn issue_in_background(&self, token: AccountToken, mail: Mail) {
        let db = self.db.clone();
        let write = async move {
            if let Err(e) = issue(&db, &token, &mail).await {
                tracing::warn!(error = %e, user_id = %token.user_id, "a one-time token and its mail could not be stored");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write);
            }
            Err(_) => tracing::warn!("no runtime to store a one-time token on"),
        }
    }

    async fn reset_password(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        password_hash: &PasswordHash,
        at: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let txn = self.db.begin_write().await?;
        if !redeem(
            &txn,
            token_id,
            user_id,
            &[TokenPurpose::PasswordReset, TokenPurpose::PasswordSetup],
            at,
        )
        .await?
        {
            txn.rollback().await.map_err(store_error)?;
            return Ok(None);
        }
        users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(password_hash.as_str()))
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(at))
            .filter(users::Column::Id.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        let revoked: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .into_tuple()
            .all(&txn)
            .await
            .map_err(store_error)?;
        if !revoked.is_empty() {
            sessions::Entity::update_many()
                .col_expr(sessions::Column::RevokedAt, Expr::value(at))
                .filter(sessions::Column::UserId.eq(user_id))
                .filter(sessions::Column::RevokedAt.is_null())
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        txn.commit().await.map_err(store_error)?;
        Ok(Some(revoked))
    }

    async fn verify_email(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        if !redeem(&txn, token_id, user_id, &[TokenPurpose::EmailVerification], at).await? {
            txn.rollback().await.map_err(store_error)?;
            return Ok(false);
        }
        users::Entity::update_many()
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(at))
            .filter(users::Column::Id.eq(user_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok(true)
    }
}
