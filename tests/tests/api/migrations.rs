//! Every migration runs up, down and up again on the suite's database (SQLite or
//! PostgreSQL), and the schema it creates is really there.

use std::time::Duration;

use keel_infrastructure::{Database, DbSettings, migrate};
use keel_tests::TestDatabase;
use sea_orm::ConnectionTrait;

async fn open(db: &TestDatabase) -> Database {
    Database::connect(
        &DbSettings {
            url: db.url.clone(),
            // One connection: SQLite does not re-check a cached DDL statement against a
            // schema another connection changed (re-running `CREATE INDEX` there after a
            // `down` elsewhere answers "already exists"). A process runs each migration once,
            // so only this up-down-up in one process meets it.
            max_connections: 1,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        },
        None,
    )
    .await
    .expect("open the test database")
}

async fn audit_log_rows(db: &Database) -> Result<usize, sea_orm::DbErr> {
    let conn = db.connection();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT id FROM audit_log",
        ))
        .await?;
    Ok(rows.len())
}

/// The error of a failed step, named: `.map_err(at("down"))?`.
fn at<E: std::fmt::Debug>(step: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{step}: {e:?}")
}

/// Every step names itself when it fails, with the store error's source.
#[tokio::test]
async fn migrations_go_up_down_and_up_again() -> Result<(), String> {
    let test_db = TestDatabase::create().await.map_err(at("create the database"))?;
    let db = open(&test_db).await;

    let before = migrate::status(&db).await.map_err(at("status before"))?;
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|m| !m.applied),
        "a fresh database has nothing applied"
    );

    migrate::up(&db).await.map_err(at("first up"))?;
    let status = migrate::status(&db).await.map_err(at("status after up"))?;
    assert!(status.iter().all(|m| m.applied));
    let rows = audit_log_rows(&db).await.map_err(at("audit_log after up"))?;
    assert_eq!(rows, 0, "the audit_log table exists");

    let all = u32::try_from(before.len()).map_err(at("count"))?;
    migrate::down(&db, all).await.map_err(at("down"))?;
    let status = migrate::status(&db).await.map_err(at("status after down"))?;
    assert!(status.iter().all(|m| !m.applied));
    assert!(audit_log_rows(&db).await.is_err(), "down removed the table");

    migrate::up(&db).await.map_err(at("second up"))?;
    let status = migrate::status(&db)
        .await
        .map_err(at("status after the second up"))?;
    assert!(status.iter().all(|m| m.applied));
    let rows = audit_log_rows(&db)
        .await
        .map_err(at("audit_log after the second up"))?;
    assert_eq!(rows, 0);
    db.close().await.map_err(at("close"))
}

#[tokio::test]
async fn up_is_idempotent() {
    let test_db = TestDatabase::create().await.unwrap();
    let db = open(&test_db).await;
    migrate::up(&db).await.unwrap();
    migrate::up(&db).await.unwrap();
    assert!(migrate::status(&db).await.unwrap().iter().all(|m| m.applied));
}
