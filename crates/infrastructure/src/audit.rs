//! The audit log store on SeaORM.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::audit::{AuditEntry, AuditFilter, AuditLog, Authority};
use keel_domain::identity::{Role, UserStatus};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::{Database, fetch_page, store_error};
use crate::entities::audit_log::{self, Column, Entity};
use crate::entities::{project_members, projects, users};

#[derive(Debug, Clone)]
pub struct SeaOrmAuditLog {
    /// Also read by its `ActivityFeed` implementation (`tracking::activity`).
    pub(crate) db: Database,
}

impl SeaOrmAuditLog {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Inserts one audit entry on `conn`: the pool, or the transaction of the change it records.
///
/// An entry with an `authority` is inserted only if its actor still holds it, checked by the
/// insert itself (`INSERT … SELECT … WHERE EXISTS`, no extra round trip); otherwise nothing
/// is inserted and the answer is `AuthorityLost`, so the caller rolls its change back.
///
/// Why this is enough for a write that changes no membership (tasks, comments, labels,
/// webhooks, a project's fields): it inserts its entry after the rows it changes, holding
/// their locks, and the writes that take a role away change only memberships (and the
/// project row, on a hand-over, which leaves the old owner an admin). On PostgreSQL (read
/// committed) such a write either committed before the check, which sees it, or commits
/// after this write, which then happened first — no interleaving lets a change pass on a
/// role already gone. On SQLite every write transaction holds the database from its first
/// statement. Writes that change memberships hold the authority first instead
/// ([`hold_authority`]).
pub(crate) async fn insert_entry(conn: &impl ConnectionTrait, e: &AuditEntry) -> Result<(), StoreError> {
    insert(conn, e, true).await
}

/// Inserts an entry whose authority this transaction holds already ([`hold_authority`]).
pub(crate) async fn insert_held_entry(conn: &impl ConnectionTrait, e: &AuditEntry) -> Result<(), StoreError> {
    insert(conn, e, false).await
}

/// Inserts entries whose authority this transaction holds or checked already (a change of
/// several rows: its first entry was inserted with [`insert_entry`]), in one statement.
pub(crate) async fn insert_held_entries(
    conn: &impl ConnectionTrait,
    entries: &[&AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    Entity::insert_many(entries.iter().map(|e| active(e)))
        .exec_without_returning(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Checks that `e`'s actor holds `e.authority` and locks what holds it until the end of the
/// transaction: the actor's membership row (`FOR UPDATE`), or an instance admin's account
/// row (`FOR SHARE`). For writes that change memberships (role changes, removals,
/// hand-overs, deleting a project), as their first statement: a write that takes the role
/// away waits for this one, or this one waits for it and then reads the role it left —
/// whichever the order, this write never runs on a role already taken away, and it may
/// change the actor's own membership afterwards. `AuthorityLost` when it is not held.
///
/// `target` is the membership the write changes: it is locked by the same statement, the
/// two rows in user-id order, so two writes that change each other's actor (two admins
/// changing each other's roles at once) queue instead of deadlocking.
pub(crate) async fn hold_authority(
    conn: &impl ConnectionTrait,
    e: &AuditEntry,
    target: Option<Uuid>,
) -> Result<(), StoreError> {
    let Some(authority) = e.authority else {
        return Ok(());
    };
    let unchecked =
        || StoreError::Unexpected("an audit entry with an authority needs an actor and a project".into());
    let actor = e.actor_id.ok_or_else(unchecked)?;
    let held = match authority {
        Authority::InstanceAdmin => {
            let row: Option<(String, String)> = users::Entity::find_by_id(actor)
                .select_only()
                .column(users::Column::Role)
                .column(users::Column::Status)
                .lock(LockType::Share)
                .into_tuple()
                .one(conn)
                .await
                .map_err(store_error)?;
            row.is_some_and(|(role, status)| {
                role == Role::Admin.as_str() && status == UserStatus::Active.as_str()
            })
        }
        Authority::Member(_) => {
            let project = e.project_id.ok_or_else(unchecked)?;
            let users: Vec<Uuid> = std::iter::once(actor).chain(target).collect();
            let rows: Vec<(Uuid, String)> = project_members::Entity::find()
                .select_only()
                .column(project_members::Column::UserId)
                .column(project_members::Column::Role)
                .filter(project_members::Column::ProjectId.eq(project))
                .filter(project_members::Column::UserId.is_in(users))
                .order_by_asc(project_members::Column::UserId)
                .lock(LockType::Update)
                .into_tuple()
                .all(conn)
                .await
                .map_err(store_error)?;
            rows.iter()
                .any(|(user, role)| *user == actor && authority.roles().iter().any(|r| r.as_str() == role))
        }
    };
    if held {
        Ok(())
    } else {
        Err(lost_or_gone(conn, e).await)
    }
}

/// Why an authority is not held: `NotFound` when the entry's project is gone (deleted
/// meanwhile), else `AuthorityLost`. Only on that failure path: one more statement.
async fn lost_or_gone(conn: &impl ConnectionTrait, e: &AuditEntry) -> StoreError {
    let Some(project) = e.project_id else {
        return StoreError::AuthorityLost;
    };
    match projects::Entity::find_by_id(project).count(conn).await {
        Ok(0) => StoreError::NotFound,
        Ok(_) => StoreError::AuthorityLost,
        Err(err) => store_error(err),
    }
}

async fn insert(conn: &impl ConnectionTrait, e: &AuditEntry, check: bool) -> Result<(), StoreError> {
    let Some(authority) = e.authority.filter(|_| check) else {
        Entity::insert(active(e))
            .exec_without_returning(conn)
            .await
            .map_err(store_error)?;
        return Ok(());
    };
    let held = authority_held(e, authority)?;
    let values: Vec<SimpleExpr> = vec![
        Expr::val(e.id),
        Expr::val(e.occurred_at),
        Expr::val(e.actor_id),
        Expr::val(e.action.clone()),
        Expr::val(e.resource_type.clone()),
        Expr::val(e.resource_id.clone()),
        Expr::val(e.project_id),
        Expr::val(e.request_id.clone()),
        Expr::val(e.ip.clone()),
        Expr::val(e.details.clone()),
        Expr::val(e.restricted.clone()),
        Expr::val(e.token_id),
    ];
    let select = Query::select().exprs(values).and_where(held).to_owned();
    let insert = Query::insert()
        .into_table(Entity)
        .columns([
            Column::Id,
            Column::OccurredAt,
            Column::ActorId,
            Column::Action,
            Column::ResourceType,
            Column::ResourceId,
            Column::ProjectId,
            Column::RequestId,
            Column::Ip,
            Column::Details,
            Column::RestrictedDetails,
            Column::TokenId,
        ])
        .select_from(select)
        .map_err(|e| StoreError::Unexpected(Box::new(e)))?
        .to_owned();
    let inserted = conn.execute(&insert).await.map_err(store_error)?;
    if inserted.rows_affected() == 0 {
        return Err(lost_or_gone(conn, e).await);
    }
    Ok(())
}

/// The condition that `e`'s actor holds `authority`: an active instance admin, or a member
/// of `e`'s project with a role that grants the permission.
fn authority_held(e: &AuditEntry, authority: Authority) -> Result<SimpleExpr, StoreError> {
    let unchecked =
        || StoreError::Unexpected("an audit entry with an authority needs an actor and a project".into());
    let actor = e.actor_id.ok_or_else(unchecked)?;
    let exists = match authority {
        Authority::InstanceAdmin => Query::select()
            .expr(Expr::val(1))
            .from(users::Entity)
            .and_where(Expr::col(users::Column::Id).eq(actor))
            .and_where(Expr::col(users::Column::Role).eq(Role::Admin.as_str()))
            .and_where(Expr::col(users::Column::Status).eq(UserStatus::Active.as_str()))
            .to_owned(),
        Authority::Member(_) => {
            let project = e.project_id.ok_or_else(unchecked)?;
            let roles: Vec<&str> = authority.roles().into_iter().map(|r| r.as_str()).collect();
            Query::select()
                .expr(Expr::val(1))
                .from(project_members::Entity)
                .and_where(Expr::col(project_members::Column::ProjectId).eq(project))
                .and_where(Expr::col(project_members::Column::UserId).eq(actor))
                .and_where(Expr::col(project_members::Column::Role).is_in(roles))
                .to_owned()
        }
    };
    Ok(Expr::exists(exists))
}

fn active(e: &AuditEntry) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        id: Set(e.id),
        occurred_at: Set(e.occurred_at),
        actor_id: Set(e.actor_id),
        action: Set(e.action.clone()),
        resource_type: Set(e.resource_type.clone()),
        resource_id: Set(e.resource_id.clone()),
        project_id: Set(e.project_id),
        request_id: Set(e.request_id.clone()),
        ip: Set(e.ip.clone()),
        details: Set(e.details.clone()),
        restricted_details: Set(e.restricted.clone()),
        token_id: Set(e.token_id),
    }
}

pub(crate) fn to_domain(m: audit_log::Model) -> AuditEntry {
    AuditEntry {
        id: m.id,
        occurred_at: m.occurred_at,
        actor_id: m.actor_id,
        action: m.action,
        resource_type: m.resource_type,
        resource_id: m.resource_id,
        project_id: m.project_id,
        request_id: m.request_id,
        ip: m.ip,
        details: m.details,
        restricted: m.restricted_details,
        // Checked when the entry was written; nothing to check again.
        authority: None,
        token_id: m.token_id,
    }
}

#[async_trait]
impl AuditLog for SeaOrmAuditLog {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        insert_entry(self.db.connection(), entry).await
    }

    async fn list(
        &self,
        filter: &AuditFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let mut condition = Condition::all();
        if let Some(actor) = filter.actor_id {
            condition = condition.add(Column::ActorId.eq(actor));
        }
        if let Some(action) = &filter.action {
            condition = condition.add(Column::Action.eq(action.as_str()));
        }
        if let Some(project) = filter.project_id {
            condition = condition.add(Column::ProjectId.eq(project));
        }
        let select = Entity::find()
            .filter(condition)
            .order_by_desc(Column::OccurredAt)
            .order_by_desc(Column::Id);
        let (rows, total) = fetch_page(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect(), total))
    }
}
