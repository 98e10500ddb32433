//! [`Connection`], the handle every store runs its statements through outside a transaction,
//! and the request scope in which a request's statements share one pooled connection.
//!
//! sqlx pings each PostgreSQL connection given back to its pool (a `Sync` and its
//! `ReadyForQuery`: one more round trip, which cannot be turned off). A read that takes a
//! connection per statement therefore pays two round trips per statement; a request whose
//! statements run on one connection, taken at its first statement and given back when the
//! request ends, pays one per statement and one ping per request
//! (`docs/performance.md`, "Where an uncached read's time goes").
//!
//! The scope ([`one_connection_per_request`]) is opened by the API around each safe request
//! (GET, HEAD). A transaction ([`super::Database::begin_write`]) first gives the request's
//! connection back: a request never waits for a second connection while it holds one, so `N`
//! concurrent requests cannot starve a pool of `N`. SQLite has no round trips to save: its
//! statements never use the scope.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::postgres::{PgConnection, PgRow};
use sea_orm::sqlx::{self, Postgres};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement, Values,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use super::{classify_statement, is_connection_failure};
use crate::metrics::Metrics;

tokio::task_local! {
    /// The connection the current request's statements share, once its first one ran.
    static REQUEST: Slot;
}

type Slot = Arc<Mutex<Option<Held>>>;

/// A connection a request holds, and the pool it belongs to (an instance has two pools).
#[derive(Debug)]
struct Held {
    pool: u64,
    conn: PoolConnection<Postgres>,
}

/// Runs `request` so that its statements outside transactions share one pooled connection,
/// taken at the first and given back when `request` completes (or is dropped).
pub async fn one_connection_per_request<F: Future>(request: F) -> F::Output {
    REQUEST.scope(Slot::default(), request).await
}

/// Tells one pool from another inside a request scope.
static POOLS: AtomicU64 = AtomicU64::new(0);

/// The pool, as the stores see it: a [`ConnectionTrait`] whose statements run on the current
/// request's connection when there is one (PostgreSQL), or on any pooled connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pool: DatabaseConnection,
    id: u64,
    /// Counts the statements that bypass the pool's metric callback (those run here).
    metrics: Option<Arc<Metrics>>,
}

impl Connection {
    pub(super) fn new(pool: DatabaseConnection, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            pool,
            id: POOLS.fetch_add(1, Ordering::Relaxed),
            metrics,
        }
    }

    /// The pool itself: for transactions, migrations and pool statistics.
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// Gives the current request's connection of this pool back, if it holds one.
    pub(super) async fn give_back(&self) {
        if let Some(mut slot) = self.slot().await {
            slot.take();
        }
    }

    /// Runs a read that must be planned with its values every time: unnamed on PostgreSQL,
    /// never kept as a prepared statement (see [`super::Database::query_all_planned`]).
    pub(super) async fn query_all_unnamed(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if self.pool.get_database_backend() != DbBackend::Postgres {
            return self.pool.query_all_raw(stmt).await;
        }
        let started = Instant::now();
        let rows = match self.lend().await? {
            Some(mut lent) => {
                let rows = query(&stmt).persistent(false).fetch_all(lent.conn()).await;
                lent.settle(rows)
            }
            None => {
                query(&stmt)
                    .persistent(false)
                    .fetch_all(self.pool.get_postgres_connection_pool())
                    .await
            }
        };
        self.observe(&stmt, started);
        Ok(rows
            .map_err(query_error)?
            .into_iter()
            .map(QueryResult::from)
            .collect())
    }

    /// The current request's slot, when there is one on PostgreSQL that holds no connection
    /// of another pool.
    async fn slot(&self) -> Option<OwnedMutexGuard<Option<Held>>> {
        if self.pool.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        let slot = REQUEST.try_with(Arc::clone).ok()?;
        let slot = slot.lock_owned().await;
        match &*slot {
            Some(held) if held.pool != self.id => None,
            _ => Some(slot),
        }
    }

    /// The current request's connection, taken from the pool if it has none yet; `None`
    /// outside a request scope.
    async fn lend(&self) -> Result<Option<Lent>, DbErr> {
        let Some(mut slot) = self.slot().await else {
            return Ok(None);
        };
        if slot.is_none() {
            let conn = self
                .pool
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(acquire_error)?;
            *slot = Some(Held { pool: self.id, conn });
        }
        Ok(OwnedMutexGuard::try_map(slot, Option::as_mut).ok().map(Lent))
    }

    fn observe(&self, stmt: &Statement, started: Instant) {
        if let Some(metrics) = &self.metrics {
            let (operation, table) = classify_statement(&stmt.sql);
            metrics.observe_db_query(operation, table, started.elapsed());
        }
    }
}

/// A request's connection, locked for one statement.
struct Lent(OwnedMappedMutexGuard<Option<Held>, Held>);

impl Lent {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.0.conn
    }

    /// Passes a statement's outcome on; a connection that failed is closed when the request
    /// gives it back, not returned to the pool.
    fn settle<T>(&mut self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(error) = &outcome
            && is_connection_failure(error)
        {
            self.0.conn.close_on_drop();
        }
        outcome
    }
}

fn query(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

fn query_error(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

fn exec_error(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

/// As SeaORM reports a failure to take a connection.
fn acquire_error(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Connection {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let Some(mut lent) = self.lend().await? else {
            return self.pool.execute_raw(stmt).await;
        };
        let started = Instant::now();
        let done = query(&stmt).execute(lent.conn()).await;
        self.observe(&stmt, started);
        lent.settle(done).map(ExecResult::from).map_err(exec_error)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let Some(mut lent) = self.lend().await? else {
            return self.pool.execute_unprepared(sql).await;
        };
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(lent.conn()).await;
        lent.settle(done).map(ExecResult::from).map_err(exec_error)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let Some(mut lent) = self.lend().await? else {
            return self.pool.query_one_raw(stmt).await;
        };
        let started = Instant::now();
        let row: Result<Option<PgRow>, _> = query(&stmt).fetch_optional(lent.conn()).await;
        self.observe(&stmt, started);
        Ok(lent.settle(row).map_err(query_error)?.map(QueryResult::from))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Some(mut lent) = self.lend().await? else {
            return self.pool.query_all_raw(stmt).await;
        };
        let started = Instant::now();
        let rows = query(&stmt).fetch_all(lent.conn()).await;
        self.observe(&stmt, started);
        Ok(lent
            .settle(rows)
            .map_err(query_error)?
            .into_iter()
            .map(QueryResult::from)
            .collect())
    }
}
