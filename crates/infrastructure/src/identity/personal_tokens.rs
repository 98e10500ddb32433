//! The personal access token store on SeaORM, and the tokens' secrets (random, SHA-256,
//! compared in constant time).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::ports::{PersonalTokenRepository, TokenSecrets};
use keel_domain::identity::tokens::{PersonalToken, Scopes, TokenAuth, TokenName};
use keel_domain::identity::{Role, UserStatus};
use rand::RngCore;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Set,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::{personal_tokens, users};

#[derive(Debug, Clone)]
pub struct SeaOrmPersonalTokenRepository {
    db: Database,
}

impl SeaOrmPersonalTokenRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn corrupt(id: Uuid, what: &str) -> StoreError {
    StoreError::Unexpected(format!("personal_tokens row {id} has an invalid {what}").into())
}

fn scopes_of(id: Uuid, bits: i16) -> Result<Scopes, StoreError> {
    u8::try_from(bits)
        .ok()
        .and_then(Scopes::from_bits)
        .ok_or_else(|| corrupt(id, "scopes"))
}

fn projects_of(id: Uuid, json: Option<serde_json::Value>) -> Result<Option<Vec<Uuid>>, StoreError> {
    json.map(|j| serde_json::from_value(j).map_err(|_| corrupt(id, "project list")))
        .transpose()
}

pub(crate) fn to_domain(m: personal_tokens::Model) -> Result<PersonalToken, StoreError> {
    Ok(PersonalToken {
        id: m.id,
        user_id: m.user_id,
        name: TokenName::parse(&m.name).map_err(|_| corrupt(m.id, "name"))?,
        scopes: scopes_of(m.id, m.scopes)?,
        project_ids: projects_of(m.id, m.project_ids)?,
        secret_hash: m.secret_hash,
        expires_at: m.expires_at,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    })
}

#[async_trait]
impl PersonalTokenRepository for SeaOrmPersonalTokenRepository {
    async fn create(&self, token: &PersonalToken) -> Result<(), StoreError> {
        let project_ids = token
            .project_ids
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        personal_tokens::Entity::insert(personal_tokens::ActiveModel {
            id: Set(token.id),
            user_id: Set(token.user_id),
            name: Set(token.name.as_str().to_owned()),
            scopes: Set(i16::from(token.scopes.bits())),
            project_ids: Set(project_ids),
            secret_hash: Set(token.secret_hash.clone()),
            expires_at: Set(token.expires_at),
            created_at: Set(token.created_at),
            last_used_at: Set(token.last_used_at),
        })
        .exec_without_returning(self.db.connection())
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn list(&self, user_id: Uuid) -> Result<Vec<PersonalToken>, StoreError> {
        personal_tokens::Entity::find()
            .filter(personal_tokens::Column::UserId.eq(user_id))
            .order_by_desc(personal_tokens::Column::CreatedAt)
            .order_by_desc(personal_tokens::Column::Id)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn find_auth(&self, id: Uuid) -> Result<Option<TokenAuth>, StoreError> {
        type Row = (
            Uuid,
            String,
            i16,
            Option<serde_json::Value>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            String,
            String,
        );
        let row: Option<Row> = personal_tokens::Entity::find_by_id(id)
            .select_only()
            .column(personal_tokens::Column::UserId)
            .column(personal_tokens::Column::SecretHash)
            .column(personal_tokens::Column::Scopes)
            .column(personal_tokens::Column::ProjectIds)
            .column(personal_tokens::Column::ExpiresAt)
            .column(personal_tokens::Column::LastUsedAt)
            .column(users::Column::Role)
            .column(users::Column::Status)
            .join(JoinType::InnerJoin, personal_tokens::Relation::User.def())
            .into_tuple()
            .one(self.db.connection())
            .await
            .map_err(store_error)?;
        let Some((user_id, secret_hash, scopes, project_ids, expires_at, last_used_at, role, status)) = row
        else {
            return Ok(None);
        };
        Ok(Some(TokenAuth {
            user_id,
            secret_hash,
            scopes: scopes_of(id, scopes)?,
            project_ids: projects_of(id, project_ids)?,
            expires_at,
            last_used_at,
            role: Role::parse(&role, "role").map_err(|_| corrupt(id, "user role"))?,
            status: UserStatus::parse(&status, "status").map_err(|_| corrupt(id, "user status"))?,
        }))
    }

    async fn delete(&self, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let result = personal_tokens::Entity::delete_many()
            .filter(personal_tokens::Column::Id.eq(id))
            .filter(personal_tokens::Column::UserId.eq(user_id))
            .exec(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected == 1)
    }

    fn record_use(&self, id: Uuid, minute: DateTime<Utc>) {
        let db = self.db.clone();
        let write = async move {
            // Conditional: a use recorded later (by another instance) is never moved back.
            let result = personal_tokens::Entity::update_many()
                .col_expr(personal_tokens::Column::LastUsedAt, Expr::value(minute))
                .filter(personal_tokens::Column::Id.eq(id))
                .filter(
                    Condition::any()
                        .add(personal_tokens::Column::LastUsedAt.is_null())
                        .add(Expr::col(personal_tokens::Column::LastUsedAt).lt(minute)),
                )
                .exec(db.connection())
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, token_id = %id, "a token's last use could not be recorded");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write);
            }
            Err(_) => tracing::warn!("no runtime to record a token's last use on"),
        }
    }
}

/// Token secrets: 32 bytes from the operating system's generator (through `rand`'s thread
/// generator, reseeded from it), base64url; kept as their SHA-256 in hex, compared with
/// `subtle` so the time taken does not depend on where two hashes differ.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256TokenSecrets;

impl TokenSecrets for Sha256TokenSecrets {
    fn generate(&self) -> String {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hash(&self, secret: &str) -> String {
        hex::encode(Sha256::digest(secret.as_bytes()))
    }

    fn matches(&self, secret: &str, hash: &str) -> bool {
        let candidate = self.hash(secret);
        // Both are 64 hex characters for any stored hash; a length difference reveals nothing.
        bool::from(candidate.as_bytes().ct_eq(hash.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_match_only_their_own_hash() {
        let s = Sha256TokenSecrets;
        let (a, b) = (s.generate(), s.generate());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        let hash = s.hash(&a);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a));
        assert!(s.matches(&a, &hash));
        assert!(!s.matches(&b, &hash));
        assert!(!s.matches(&a, ""));
        assert_eq!(
            s.hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "SHA-256, hex"
        );
    }
}
