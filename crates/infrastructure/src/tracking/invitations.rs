//! The project invitation store on SeaORM. A new invitation replaces the pending one of the
//! same address (deleted in its transaction); accepting one deletes it in the transaction
//! that adds the membership, guarded by its expiry, so a token works once even when two
//! requests present it at the same moment.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::events::Change;
use keel_domain::identity::Email;
use keel_domain::mail::Mail;
use keel_domain::tracking::ProjectRole;
use keel_domain::tracking::invitations::{Invitation, InvitationRepository, NewAccount, ReceivedInvitation};
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
    Set,
};
use uuid::Uuid;

use super::{commit_change, corrupt, roll_back};
use crate::audit::insert_entry;
use crate::db::{Database, fetch_page, store_error};
use crate::entities::invitations::{self, Column, Entity};
use crate::entities::{project_members, projects, users};
use crate::identity::account_tokens::insert_token;
use crate::mail::outbox::insert_mail;

#[derive(Debug, Clone)]
pub struct SeaOrmInvitationRepository {
    db: Database,
}

impl SeaOrmInvitationRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn to_domain(m: invitations::Model) -> Result<Invitation, StoreError> {
    Ok(Invitation {
        email: Email::from_stored(&m.email).map_err(|_| corrupt("invitations", m.id, "email"))?,
        role: ProjectRole::parse(&m.role, "role").map_err(|_| corrupt("invitations", m.id, "role"))?,
        id: m.id,
        project_id: m.project_id,
        invited_by: m.invited_by,
        secret_hash: m.secret_hash,
        expires_at: m.expires_at,
        created_at: m.created_at,
    })
}

/// An invitation with its project and the name of its sender.
#[derive(Debug, FromQueryResult)]
struct ReceivedRow {
    #[sea_orm(nested)]
    invitation: invitations::Model,
    project_key: String,
    project_name: String,
    inviter_name: String,
}

#[async_trait]
impl InvitationRepository for SeaOrmInvitationRepository {
    async fn create(
        &self,
        invitation: &Invitation,
        mail: &Mail,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        // The actor's right is checked (and the entry written) first: a refused change
        // deletes nothing.
        insert_entry(&txn, audit).await?;
        Entity::delete_many()
            .filter(Column::ProjectId.eq(invitation.project_id))
            .filter(Column::Email.eq(invitation.email.as_str()))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        Entity::insert(invitations::ActiveModel {
            id: Set(invitation.id),
            project_id: Set(invitation.project_id),
            email: Set(invitation.email.as_str().to_owned()),
            role: Set(invitation.role.as_str().to_owned()),
            invited_by: Set(invitation.invited_by),
            secret_hash: Set(invitation.secret_hash.clone()),
            expires_at: Set(invitation.expires_at),
            created_at: Set(invitation.created_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        insert_mail(&txn, mail).await?;
        txn.commit().await.map_err(store_error)?;
        self.db.mail_written();
        Ok(())
    }

    async fn find(&self, id: Uuid) -> Result<Option<Invitation>, StoreError> {
        Entity::find_by_id(id)
            .one(self.db.connection())
            .await
            .map_err(store_error)?
            .map(to_domain)
            .transpose()
    }

    async fn list_for_project(
        &self,
        project_id: Uuid,
        now: DateTime<Utc>,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Invitation>, u64), StoreError> {
        let select = Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::ExpiresAt.gt(now))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id);
        let (rows, total) = fetch_page(&self.db, select, offset, limit).await?;
        Ok((rows.into_iter().map(to_domain).collect::<Result<_, _>>()?, total))
    }

    async fn list_for_email(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReceivedInvitation>, StoreError> {
        let rows = Entity::find()
            .join(JoinType::InnerJoin, invitations::Relation::Project.def())
            .join(JoinType::InnerJoin, invitations::Relation::Inviter.def())
            .column_as(projects::Column::Key, "project_key")
            .column_as(projects::Column::Name, "project_name")
            .column_as(users::Column::Name, "inviter_name")
            .filter(Column::Email.eq(email.as_str()))
            .filter(Column::ExpiresAt.gt(now))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .into_model::<ReceivedRow>()
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                Ok(ReceivedInvitation {
                    invitation: to_domain(row.invitation)?,
                    project_key: row.project_key,
                    project_name: row.project_name,
                    invited_by_name: row.inviter_name,
                })
            })
            .collect()
    }

    async fn delete(&self, project_id: Uuid, id: Uuid, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let deleted = Entity::delete_many()
            .filter(Column::Id.eq(id))
            .filter(Column::ProjectId.eq(project_id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if deleted.rows_affected == 0 {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        insert_entry(&txn, audit).await?;
        txn.commit().await.map_err(store_error)
    }

    async fn accept<'a>(
        &self,
        id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        at: DateTime<Utc>,
        account: Option<NewAccount<'a>>,
        change: &Change,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        // The guard: of two requests presenting the token, one deletes the row.
        let taken = Entity::delete_many()
            .filter(Column::Id.eq(id))
            .filter(Column::ExpiresAt.gt(at))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if taken.rows_affected != 1 {
            roll_back(txn).await?;
            return Ok(false);
        }
        let mut mailed = false;
        if let Some(account) = &account {
            users::Entity::insert(crate::identity::users::to_active(account.user))
                .exec_without_returning(&txn)
                .await
                .map_err(store_error)?;
            if let Some((token, mail)) = account.verification {
                insert_token(&txn, token).await?;
                insert_mail(&txn, mail).await?;
                mailed = true;
            }
        }
        // The primary key (project_id, user_id) turns a second membership into `Conflict`.
        project_members::Entity::insert(project_members::ActiveModel {
            project_id: Set(change.project_id()),
            user_id: Set(user_id),
            role: Set(role.as_str().to_owned()),
            created_at: Set(at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        commit_change(&self.db, txn, change).await?;
        if mailed {
            self.db.mail_written();
        }
        Ok(true)
    }
}
