//! One connection per request (`keel_infrastructure::db::Connection`): inside a request
//! scope, a request's statements on PostgreSQL share one pooled connection, each concurrent
//! request has its own, a write gives the request's connection back before it takes its
//! transaction's, and the connection returns to the pool when the request ends. Runs against
//! a fresh PostgreSQL database when `KEEL_TEST_DATABASE_URL` is set; the SQLite checks always.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_infrastructure::db::one_connection_per_request;
use keel_infrastructure::{Database, DbSettings, migrate};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

async fn open(url: &str, max_connections: u32) -> Database {
    let db = Database::connect(
        &DbSettings {
            url: url.to_owned(),
            max_connections,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(3),
        },
        None,
    )
    .await
    .expect("open the test database");
    migrate::up(&db).await.expect("migrate the test database");
    db
}

/// A fresh PostgreSQL database's URL, when the suite has PostgreSQL.
async fn postgres_url() -> Option<String> {
    let admin_url = std::env::var("KEEL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let name = format!("keel_conn_{}", Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("a database path");
    Some(format!("{base}/{name}"))
}

/// The PostgreSQL backend that runs this statement.
async fn backend_pid(db: &Database) -> i32 {
    let row = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "pid").unwrap()
}

async fn until_no_connection_is_lent(db: &Database) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.active_connections() != 0 {
        assert!(
            Instant::now() < deadline,
            "the request's connection never went back to the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_requests_statements_share_one_connection_and_concurrent_requests_do_not() {
    let Some(url) = postgres_url().await else { return };
    let db = open(&url, 4).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let request = |db: Database, barrier: Arc<tokio::sync::Barrier>| {
        one_connection_per_request(async move {
            let first = backend_pid(&db).await;
            // Held between statements: both requests hold one at the barrier.
            barrier.wait().await;
            assert!(
                db.active_connections() >= 2,
                "each request holds its connection between statements"
            );
            let second = backend_pid(&db).await;
            assert_eq!(first, second, "a request's statements ran on two connections");
            barrier.wait().await;
            first
        })
    };
    let (a, b) = tokio::join!(
        request(db.clone(), Arc::clone(&barrier)),
        request(db.clone(), Arc::clone(&barrier))
    );
    assert_ne!(a, b, "two concurrent requests shared a connection");
    until_no_connection_is_lent(&db).await;
}

#[tokio::test]
async fn a_write_gives_the_requests_connection_back_before_it_takes_its_own() {
    let Some(url) = postgres_url().await else { return };
    // One connection: had the request kept it for its reads, its transaction would wait for
    // a second one until the acquire timeout.
    let db = open(&url, 1).await;
    one_connection_per_request(async {
        backend_pid(&db).await;
        let txn = db
            .begin_write()
            .await
            .expect("the transaction got the pool's only connection");
        txn.commit().await.unwrap();
        // Reads after the write take a connection again.
        backend_pid(&db).await;
    })
    .await;
    until_no_connection_is_lent(&db).await;
}

#[tokio::test]
async fn a_request_scope_never_lends_one_pools_connection_to_another_pool() {
    let Some(url) = postgres_url().await else { return };
    let requests = open(&url, 2).await;
    let background = open(&url, 2).await;
    one_connection_per_request(async {
        let first = backend_pid(&requests).await;
        let other = backend_pid(&background).await;
        assert_ne!(first, other, "the second pool ran on the first pool's connection");
        assert_eq!(backend_pid(&requests).await, first);
        // The other pool's statement took a connection and gave it back: the scope holds
        // only the first pool's.
        until_no_connection_is_lent(&background).await;
        assert_eq!(requests.active_connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn sqlite_runs_as_before_inside_a_request_scope() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&format!("sqlite://{}/c.db?mode=rwc", dir.path().display()), 1).await;
    one_connection_per_request(async {
        let row = db
            .connection()
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT 1 AS one"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i32>("", "one").unwrap(), 1);
        let txn = db
            .begin_write()
            .await
            .expect("a write in a scope on a pool of one");
        txn.commit().await.unwrap();
    })
    .await;
}

/// Keel's PostgreSQL connections start no parallel workers and compile nothing with JIT:
/// both cost a request tens of milliseconds for plans the planner only guesses large (a
/// search's index read that finds nothing started two workers: 13 ms instead of 0.1 ms).
#[tokio::test]
async fn connections_plan_without_parallel_workers_or_jit() {
    let Some(url) = postgres_url().await else { return };
    let db = open(&url, 2).await;
    for (setting, expected) in [("max_parallel_workers_per_gather", "0"), ("jit", "off")] {
        let row = db
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT current_setting('{setting}') AS value"),
            ))
            .await
            .unwrap()
            .unwrap();
        let value: String = row.try_get("", "value").unwrap();
        assert_eq!(value, expected, "{setting}");
    }
}
