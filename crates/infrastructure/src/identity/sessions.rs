//! The session and refresh-token store on SeaORM.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::ports::SessionRepository;
use keel_domain::identity::{RefreshToken, Role, Rotation, Session, SessionAuth, UserStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Set};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::{refresh_tokens, sessions, users};

#[derive(Debug, Clone)]
pub struct SeaOrmSessionRepository {
    db: Database,
}

impl SeaOrmSessionRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

pub(crate) fn to_domain(m: sessions::Model) -> Session {
    Session {
        id: m.id,
        user_id: m.user_id,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        user_agent: m.user_agent,
        ip: m.ip,
    }
}

fn refresh_row(t: &RefreshToken) -> refresh_tokens::ActiveModel {
    refresh_tokens::ActiveModel {
        id: Set(t.id),
        session_id: Set(t.session_id),
        issued_at: Set(t.issued_at),
        expires_at: Set(t.expires_at),
        used_at: Set(None),
    }
}

#[async_trait]
impl SessionRepository for SeaOrmSessionRepository {
    async fn create(&self, session: &Session, refresh: &RefreshToken) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        sessions::Entity::insert(sessions::ActiveModel {
            id: Set(session.id),
            user_id: Set(session.user_id),
            created_at: Set(session.created_at),
            last_used_at: Set(session.last_used_at),
            expires_at: Set(session.expires_at),
            revoked_at: Set(session.revoked_at),
            user_agent: Set(session.user_agent.clone()),
            ip: Set(session.ip.clone()),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        refresh_tokens::Entity::insert(refresh_row(refresh))
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)
    }

    async fn find(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        Ok(sessions::Entity::find_by_id(id)
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain))
    }

    async fn find_auth(&self, id: Uuid) -> Result<Option<SessionAuth>, StoreError> {
        type Row = (Uuid, DateTime<Utc>, Option<DateTime<Utc>>, String, String);
        let row: Option<Row> = sessions::Entity::find_by_id(id)
            .select_only()
            .column(sessions::Column::UserId)
            .column(sessions::Column::ExpiresAt)
            .column(sessions::Column::RevokedAt)
            .column(users::Column::Role)
            .column(users::Column::Status)
            .join(JoinType::InnerJoin, sessions::Relation::User.def())
            .into_tuple()
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        let Some((user_id, expires_at, revoked_at, role, status)) = row else {
            return Ok(None);
        };
        let corrupt =
            |what: &str| StoreError::Unexpected(format!("users row {user_id} has an invalid {what}").into());
        Ok(Some(SessionAuth {
            user_id,
            expires_at,
            revoked_at,
            role: Role::parse(&role, "role").map_err(|_| corrupt("role"))?,
            status: UserStatus::parse(&status, "status").map_err(|_| corrupt("status"))?,
        }))
    }

    async fn rotate(
        &self,
        used: Uuid,
        next: &RefreshToken,
        at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        let txn = self.db.begin_write().await?;
        // The conditional UPDATE is the lock: of two concurrent rotations of one token,
        // exactly one sees `used_at IS NULL`.
        let marked = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(at))
            .filter(refresh_tokens::Column::Id.eq(used))
            .filter(refresh_tokens::Column::SessionId.eq(next.session_id))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if marked.rows_affected == 0 {
            let known = refresh_tokens::Entity::find_by_id(used)
                .one(&txn)
                .await
                .map_err(store_error)?
                .is_some_and(|t| t.session_id == next.session_id);
            txn.rollback().await.map_err(store_error)?;
            return Ok(if known {
                Rotation::AlreadyUsed
            } else {
                Rotation::Unknown
            });
        }
        refresh_tokens::Entity::insert(refresh_row(next))
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        sessions::Entity::update_many()
            .col_expr(sessions::Column::LastUsedAt, Expr::value(at))
            .col_expr(sessions::Column::ExpiresAt, Expr::value(next.expires_at))
            .filter(sessions::Column::Id.eq(next.session_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok(Rotation::Rotated)
    }

    async fn revoke(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(at))
            .filter(sessions::Column::Id.eq(id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected == 1)
    }

    async fn revoke_all(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut active = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null());
        if let Some(keep) = except {
            active = active.filter(sessions::Column::Id.ne(keep));
        }
        let ids: Vec<Uuid> = active
            .into_tuple()
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        if ids.is_empty() {
            return Ok(ids);
        }
        // The sessions named, so the caller invalidates exactly what was revoked (one
        // opened after the read is not revoked: it began after the revocation).
        sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(at))
            .filter(sessions::Column::Id.is_in(ids.iter().copied()))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(ids)
    }

    async fn list_active(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
        Ok(sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .order_by_desc(sessions::Column::LastUsedAt)
            .order_by_desc(sessions::Column::Id)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect())
    }
}
