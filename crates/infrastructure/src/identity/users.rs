//! The user store on SeaORM.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::identity::account_tokens::AccountToken;
use keel_domain::identity::ports::{UserFilter, UserRepository};
use keel_domain::identity::{Email, PasswordHash, Role, User, UserName, UserStatus};
use keel_domain::mail::Mail;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use crate::db::{Database, fetch_page, store_error};
use crate::entities::users::{self, Column, Entity};
use crate::identity::account_tokens::insert_token;
use crate::mail::outbox::insert_mail;

#[derive(Debug, Clone)]
pub struct SeaOrmUserRepository {
    db: Database,
}

impl SeaOrmUserRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A stored row that no longer parses is a bug or tampering, never a client error.
pub(crate) fn to_domain(m: users::Model) -> Result<User, StoreError> {
    let corrupt =
        |what: &str| StoreError::Unexpected(format!("users row {} has an invalid {what}", m.id).into());
    Ok(User {
        id: m.id,
        // Stored under the rules of their time: read back without today's stricter ones
        // (and an erased account's tombstone address).
        email: Email::from_stored(&m.email).map_err(|_| corrupt("email"))?,
        name: UserName::from_stored(m.name.clone()),
        role: Role::parse(&m.role, "role").map_err(|_| corrupt("role"))?,
        status: UserStatus::parse(&m.status, "status").map_err(|_| corrupt("status"))?,
        password_hash: PasswordHash::new(m.password_hash.clone()),
        email_verified: m.email_verified,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(crate) fn to_active(u: &User) -> users::ActiveModel {
    users::ActiveModel {
        id: Set(u.id),
        email: Set(u.email.as_str().to_owned()),
        name: Set(u.name.as_str().to_owned()),
        role: Set(u.role.as_str().to_owned()),
        status: Set(u.status.as_str().to_owned()),
        password_hash: Set(u.password_hash.as_str().to_owned()),
        email_verified: Set(u.email_verified),
        created_at: Set(u.created_at),
        updated_at: Set(u.updated_at),
    }
}

/// Whether an active admin other than `user_id` remains, in a write transaction that is
/// about to take that role or status from `user_id`. Every active admin row is touched
/// first: on PostgreSQL that locks them, so a concurrent change waits and then sees this
/// one; on SQLite the first write takes the database's write lock. Only then is the count
/// trustworthy.
pub(crate) async fn another_admin_remains(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<bool, StoreError> {
    let active_admins = Condition::all()
        .add(Column::Role.eq(Role::Admin.as_str()))
        .add(Column::Status.eq(UserStatus::Active.as_str()));
    Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::col(Column::UpdatedAt))
        .filter(active_admins.clone())
        .exec(conn)
        .await
        .map_err(store_error)?;
    let others = Entity::find()
        .filter(active_admins)
        .filter(Column::Id.ne(user_id))
        .count(conn)
        .await
        .map_err(store_error)?;
    Ok(others > 0)
}

/// `%q%` for LIKE, with the wildcards of `q` itself escaped.
pub(crate) fn contains_pattern(q: &str) -> LikeExpr {
    let escaped = crate::db::fold(q)
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

#[async_trait]
impl UserRepository for SeaOrmUserRepository {
    async fn create(&self, user: &User) -> Result<(), StoreError> {
        Entity::insert(to_active(user))
            .exec_without_returning(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn create_with_token(
        &self,
        user: &User,
        token: &AccountToken,
        mail: &Mail,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        Entity::insert(to_active(user))
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        insert_token(&txn, token).await?;
        insert_mail(&txn, mail).await?;
        txn.commit().await.map_err(store_error)?;
        self.db.mail_written();
        Ok(())
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        Entity::find_by_id(id)
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        Entity::find()
            .filter(Column::Email.eq(email.as_str()))
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn update(&self, user: &User) -> Result<(), StoreError> {
        let mut active = to_active(user);
        // The creation time never changes; the id is the filter.
        active.created_at = sea_orm::ActiveValue::NotSet;
        active.update(self.db.connection()).await.map_err(store_error)?;
        Ok(())
    }

    async fn update_keeping_an_admin(&self, user: &User) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        let removes_an_admin = user.role != Role::Admin || user.status != UserStatus::Active;
        if removes_an_admin && !another_admin_remains(&txn, user.id).await? {
            txn.rollback().await.map_err(store_error)?;
            return Ok(false);
        }
        let mut active = to_active(user);
        active.created_at = sea_orm::ActiveValue::NotSet;
        active.update(&txn).await.map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn list(
        &self,
        filter: &UserFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<User>, u64), StoreError> {
        let mut condition = Condition::all();
        if let Some(q) = &filter.q {
            condition = condition.add(
                Condition::any()
                    .add(Expr::col(Column::Email).like(contains_pattern(q)))
                    .add(Expr::expr(Func::lower(Expr::col(Column::Name))).like(contains_pattern(q))),
            );
        }
        if let Some(role) = filter.role {
            condition = condition.add(Column::Role.eq(role.as_str()));
        }
        if let Some(status) = filter.status {
            condition = condition.add(Column::Status.eq(status.as_str()));
        }
        let select = Entity::find()
            .filter(condition)
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id);
        let (rows, total) = fetch_page(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect::<Result<_, _>>()?, total))
    }
}
