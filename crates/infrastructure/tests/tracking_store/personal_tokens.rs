//! Personal access tokens (an identity store, here for the fixtures every store shares):
//! one indexed read finds a token with its user's role and status; deleting is per owner;
//! a use is recorded to the minute and never moved back.

use std::time::Duration;

use keel_domain::identity::ports::PersonalTokenRepository;
use keel_domain::identity::tokens::{PersonalToken, Scopes, TokenName};
use keel_domain::identity::{Role, UserStatus};
use keel_infrastructure::entities::{personal_tokens, users};
use keel_infrastructure::identity::personal_tokens::SeaOrmPersonalTokenRepository;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

fn token(user_id: Uuid, name: &str, created: i64, projects: Option<Vec<Uuid>>) -> PersonalToken {
    PersonalToken {
        id: Uuid::now_v7(),
        user_id,
        name: TokenName::parse(name).unwrap(),
        scopes: Scopes::parse(&["read", "admin"]).unwrap(),
        project_ids: projects,
        secret_hash: "ab".repeat(32),
        expires_at: at(1_000),
        created_at: at(created),
        last_used_at: None,
    }
}

/// The stored last use of `id`, once the background write has landed (or `None` after 5 s).
async fn last_use_becomes(
    repo: &SeaOrmPersonalTokenRepository,
    id: Uuid,
    expected: chrono::DateTime<chrono::Utc>,
) -> bool {
    for _ in 0..100 {
        if repo.find_auth(id).await.unwrap().and_then(|a| a.last_used_at) == Some(expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn tokens_are_found_with_their_user_listed_newest_first_and_deleted_by_their_owner() {
    for s in stores().await {
        let repo = SeaOrmPersonalTokenRepository::new(s.db.clone());
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let limited = token(ann, "ci", 1, Some(vec![Uuid::from_u128(7), Uuid::from_u128(9)]));
        let open = token(ann, "laptop", 2, None);
        let bobs = token(bob, "bob's", 3, None);
        for t in [&limited, &open, &bobs] {
            repo.create(t).await.unwrap();
        }

        let listed = repo.list(ann).await.unwrap();
        assert_eq!(listed, vec![open.clone(), limited.clone()], "{}", s.name);

        let auth = repo.find_auth(limited.id).await.unwrap().unwrap();
        assert_eq!(auth.user_id, ann);
        assert_eq!(auth.secret_hash, "ab".repeat(32));
        assert_eq!(auth.scopes, limited.scopes);
        assert_eq!(auth.project_ids, limited.project_ids);
        assert_eq!((auth.role, auth.status), (Role::User, UserStatus::Active));
        assert!(repo.find_auth(Uuid::now_v7()).await.unwrap().is_none());

        // The user's status and role come with the token: disabling shows at once.
        users::Entity::update_many()
            .col_expr(users::Column::Status, Expr::value("disabled"))
            .filter(users::Column::Id.eq(ann))
            .exec(s.db.connection())
            .await
            .unwrap();
        let auth = repo.find_auth(open.id).await.unwrap().unwrap();
        assert_eq!(auth.status, UserStatus::Disabled, "{}", s.name);

        assert!(!repo.delete(bob, open.id).await.unwrap(), "not Bob's to delete");
        assert!(repo.delete(ann, open.id).await.unwrap());
        assert!(!repo.delete(ann, open.id).await.unwrap(), "gone already");
        assert!(repo.find_auth(open.id).await.unwrap().is_none());
        assert_eq!(repo.list(ann).await.unwrap(), vec![limited.clone()]);

        // Deleting the user deletes their tokens.
        users::Entity::delete_by_id(bob)
            .exec(s.db.connection())
            .await
            .unwrap();
        assert!(repo.find_auth(bobs.id).await.unwrap().is_none(), "{}", s.name);
    }
}

#[tokio::test]
async fn a_use_is_recorded_in_the_background_and_never_moved_back() {
    for s in stores().await {
        let repo = SeaOrmPersonalTokenRepository::new(s.db.clone());
        let ann = user(&s, "Ann").await;
        let t = token(ann, "ci", 1, None);
        repo.create(&t).await.unwrap();

        repo.record_use(t.id, at(120));
        assert!(last_use_becomes(&repo, t.id, at(120)).await, "{}", s.name);
        // An instance that saw an older minute does not move it back.
        repo.record_use(t.id, at(60));
        repo.record_use(t.id, at(180));
        assert!(last_use_becomes(&repo, t.id, at(180)).await, "{}", s.name);
        let stored = personal_tokens::Entity::find_by_id(t.id)
            .one(s.db.connection())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.last_used_at, Some(at(180)));
        assert_eq!(stored.secret_hash.len(), 64, "the hash, never a secret");
    }
}
