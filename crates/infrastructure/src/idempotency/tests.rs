//! The adapter on a fresh, migrated database: a SQLite file, or a new PostgreSQL database
//! when `KEEL_TEST_DATABASE_URL` is set (as in `make integration-pg`).

use chrono::{SubsecRound, TimeDelta};
use keel_domain::idempotency::IN_PROGRESS_TIMEOUT;
use sea_orm::ConnectionTrait;

use super::*;
use crate::{DbSettings, migrate};

struct TestDb {
    db: Database,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_db() -> TestDb {
    let (url, dir) = match std::env::var("KEEL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(admin_url) => {
            let name = format!("keel_test_{}", Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
            admin.close().await.unwrap();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), None)
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}/keel.db?mode=rwc", dir.path().display()),
                Some(dir),
            )
        }
    };
    let db = Database::connect(
        &DbSettings {
            url,
            max_connections: 5,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        },
        None,
    )
    .await
    .unwrap();
    migrate::up(&db).await.unwrap();
    TestDb { db, _dir: dir }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

fn created(n: u8) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("location".into(), format!("/api/v1/projects/{n}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: vec![b'{', n, 0, 0xff, b'}'],
    }
}

async fn acquire(store: &SeaOrmIdempotencyStore, user: Uuid, k: &str, fp: u8, at: DateTime<Utc>) -> ClaimId {
    match store.claim(user, &key(k), &[fp; 32], at).await.unwrap() {
        Claim::Acquired(id) => id,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_key_is_acquired_then_in_progress_then_replayed() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let user = Uuid::new_v4();
    let claim = acquire(&store, user, "k1", 1, now()).await;

    assert_eq!(
        store.claim(user, &key("k1"), &[1; 32], now()).await.unwrap(),
        Claim::InProgress
    );
    assert!(
        store
            .complete(user, &key("k1"), claim, &created(7))
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim(user, &key("k1"), &[1; 32], now()).await.unwrap(),
        Claim::Completed(created(7))
    );
    // Completing twice stores nothing more.
    assert!(
        !store
            .complete(user, &key("k1"), claim, &created(8))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn another_fingerprint_is_a_mismatch_and_other_users_are_independent() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let claim = acquire(&store, alice, "k", 1, now()).await;
    assert_eq!(
        store.claim(alice, &key("k"), &[2; 32], now()).await.unwrap(),
        Claim::Mismatch
    );
    store
        .complete(alice, &key("k"), claim, &created(1))
        .await
        .unwrap();
    assert_eq!(
        store.claim(alice, &key("k"), &[2; 32], now()).await.unwrap(),
        Claim::Mismatch
    );
    acquire(&store, bob, "k", 2, now()).await;
}

#[tokio::test]
async fn a_released_claim_frees_the_key_and_a_stale_id_cannot_touch_a_successor() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let user = Uuid::new_v4();
    let first = acquire(&store, user, "k", 1, now()).await;
    assert!(store.release(user, &key("k"), first).await.unwrap());
    // A corrected retry (another body) may now use the key.
    let second = acquire(&store, user, "k", 2, now()).await;
    assert!(!store.release(user, &key("k"), first).await.unwrap());
    assert!(!store.complete(user, &key("k"), first, &created(1)).await.unwrap());
    assert!(
        store
            .complete(user, &key("k"), second, &created(2))
            .await
            .unwrap()
    );
    // A finished record cannot be released.
    assert!(!store.release(user, &key("k"), second).await.unwrap());
}

#[tokio::test]
async fn an_abandoned_claim_is_taken_over() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let user = Uuid::new_v4();
    let start = now();
    let dead = acquire(&store, user, "k", 1, start).await;
    let later = start + IN_PROGRESS_TIMEOUT;
    let alive = acquire(&store, user, "k", 1, later).await;
    assert_ne!(dead, alive);
    assert!(!store.complete(user, &key("k"), dead, &created(1)).await.unwrap());
    assert_eq!(
        store.claim(user, &key("k"), &[1; 32], later).await.unwrap(),
        Claim::InProgress
    );
}

#[tokio::test]
async fn a_record_older_than_24_hours_is_replaced() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let user = Uuid::new_v4();
    let old = now() - RETENTION - TimeDelta::seconds(1);
    let claim = acquire(&store, user, "k", 1, old).await;
    store.complete(user, &key("k"), claim, &created(1)).await.unwrap();
    // Even another body: the old record counts as absent.
    let fresh = acquire(&store, user, "k", 2, now()).await;
    assert!(store.complete(user, &key("k"), fresh, &created(2)).await.unwrap());
    assert_eq!(
        store.claim(user, &key("k"), &[2; 32], now()).await.unwrap(),
        Claim::Completed(created(2))
    );
}

#[tokio::test]
async fn purge_deletes_only_records_claimed_before_the_cut() {
    let t = fresh_db().await;
    let store = SeaOrmIdempotencyStore::new(t.db.clone());
    let user = Uuid::new_v4();
    let cut = now() - RETENTION;
    let old = acquire(&store, user, "old", 1, cut - TimeDelta::minutes(1)).await;
    store.complete(user, &key("old"), old, &created(1)).await.unwrap();
    acquire(&store, user, "old-running", 1, cut - TimeDelta::minutes(1)).await;
    let young = acquire(&store, user, "young", 1, cut + TimeDelta::minutes(1)).await;
    store
        .complete(user, &key("young"), young, &created(2))
        .await
        .unwrap();

    assert_eq!(store.purge_expired(cut).await.unwrap(), 2);
    assert_eq!(
        store.claim(user, &key("young"), &[1; 32], now()).await.unwrap(),
        Claim::Completed(created(2))
    );
    assert_eq!(store.purge_expired(cut).await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_claims_of_one_key_acquire_exactly_once() {
    let t = fresh_db().await;
    let store = Arc::new(SeaOrmIdempotencyStore::new(t.db.clone()));
    let user = Uuid::new_v4();
    let at = now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim(user, &key("race"), &[9; 32], at).await })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Claim::Acquired(_) => acquired += 1,
            Claim::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acquired, 1);
}

#[tokio::test]
async fn concurrent_takeovers_of_an_expired_record_acquire_exactly_once() {
    let t = fresh_db().await;
    let store = Arc::new(SeaOrmIdempotencyStore::new(t.db.clone()));
    let user = Uuid::new_v4();
    acquire(&store, user, "race", 1, now() - RETENTION - TimeDelta::hours(1)).await;
    let at = now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim(user, &key("race"), &[2; 32], at).await })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        if let Claim::Acquired(_) = task.await.unwrap().unwrap() {
            acquired += 1;
        }
    }
    assert_eq!(acquired, 1);
}

#[tokio::test]
async fn the_purge_task_runs_at_once_and_stops_when_dropped() {
    let t = fresh_db().await;
    let store = Arc::new(SeaOrmIdempotencyStore::new(t.db.clone()));
    let user = Uuid::new_v4();
    acquire(&store, user, "old", 1, now() - RETENTION - TimeDelta::hours(1)).await;
    let task = PurgeTask::spawn(
        store.clone(),
        Arc::new(crate::clock::SystemClock),
        Duration::from_secs(3600),
    );
    let mut purged = false;
    for _ in 0..100 {
        let left = Entity::find_by_id((user, "old".to_owned()))
            .one(t.db.connection())
            .await
            .unwrap();
        if left.is_none() {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(purged);
    drop(task);
}

#[test]
fn fingerprints_round_trip_through_hex() {
    let fp: Fingerprint = std::array::from_fn(|i| u8::try_from(i * 7 % 256).unwrap());
    assert_eq!(unhex(&hex(&fp)), Some(fp));
    assert_eq!(unhex("zz"), None);
    assert_eq!(unhex(&"g".repeat(64)), None);
}
