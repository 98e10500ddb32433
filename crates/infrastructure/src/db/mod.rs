//! The database connection pool (SQLite or PostgreSQL, chosen by the URL), the query
//! metrics hook, and the one place where `DbErr` becomes a [`StoreError`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel_domain::StoreError;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, DatabaseTransaction, DbBackend, DbErr, QueryResult, RuntimeErr, SqlErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::metrics::Metrics;

mod connection;

pub use connection::{Connection, one_connection_per_request};

tokio::task_local! {
    /// Set in the tasks of the background work (outbox dispatcher, webhook and mail senders,
    /// purges and sweeps): their statements are counted with `origin="background"`.
    static BACKGROUND: ();
}

/// Spawns `work` as background work: its statements are counted in
/// `db_query_duration_seconds` with `origin="background"`, so what a request costs
/// (`origin="request"`, the statement budgets, `make bench`'s column) never includes what
/// the dispatcher or a sweep happened to run meanwhile. A task it spawns in turn must be
/// spawned through here too (task-locals do not pass to spawned tasks).
pub fn spawn_background<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(BACKGROUND.scope((), work))
}

/// Runs `work` as background work in the current task (see [`spawn_background`]).
pub async fn in_background<F: std::future::Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// `background` inside [`spawn_background`] or [`in_background`], `request` anywhere else.
pub fn origin() -> &'static str {
    if BACKGROUND.try_with(|()| ()).is_ok() {
        "background"
    } else {
        "request"
    }
}

/// Pool settings, from configuration.
/// A pooled connection idle for longer than this is pinged before it is lent.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a request waits for a pooled connection before it fails with 503. Short,
    /// so that a database outage answers fast instead of piling requests up.
    pub acquire_timeout: Duration,
}

/// The application's handle on its database. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Database {
    conn: Connection,
    /// Rung after a change's transaction commits with its event, so this instance's outbox
    /// dispatcher publishes at once instead of at its next poll.
    outbox_written: Arc<tokio::sync::Notify>,
    /// Rung after a transaction committed a mail to the mail outbox, so this instance's
    /// mail sender delivers it at once instead of at its next poll.
    mail_written: Arc<tokio::sync::Notify>,
}

impl Database {
    /// Opens the pool. For SQLite the file's folder is created if missing and the database
    /// runs in WAL mode; for PostgreSQL the pool connects lazily, so that an instance can
    /// start (with migrations off) while the database is down and become ready when it
    /// returns.
    pub async fn connect(settings: &DbSettings, metrics: Option<Arc<Metrics>>) -> Result<Self, StoreError> {
        let backend = backend_of(&settings.url)?;
        if backend == DbBackend::Sqlite {
            ensure_sqlite_dir(&settings.url)?;
        }
        let mut options = ConnectOptions::new(settings.url.clone());
        options
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .connect_timeout(settings.connect_timeout)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection it lends by default: one more round trip per
            // statement. Only a connection idle for a while is checked; one that broke since
            // its last use fails its statement, which answers 503 like any outage.
            .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
            .sqlx_logging(false)
            .connect_lazy(backend == DbBackend::Postgres)
            // Every statement Keel sends is a request's or a small job's: no parallel workers
            // (starting them costs ~10 ms, a hundred times a search's index read that the
            // planner thought large) and no JIT compilation (tens of ms, for plans it costs
            // high from estimates). Startup parameters of the connection: no round trip.
            .map_sqlx_postgres_opts(|o| o.options([("max_parallel_workers_per_gather", "0"), ("jit", "off")]))
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let mut conn = sea_orm::Database::connect(options).await.map_err(store_error)?;
        if let Some(metrics) = metrics.clone() {
            conn.set_metric_callback(move |info| {
                let (operation, table) = classify_statement(&info.statement.sql);
                metrics.observe_db_query(operation, table, info.elapsed);
            });
        }
        Ok(Self {
            conn: Connection::new(conn, metrics),
            outbox_written: Arc::new(tokio::sync::Notify::new()),
            mail_written: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// A second pool for the tasks that run on the main runtime (the outbox dispatcher, the
    /// webhook sender, the purges), with at most `max_connections`, sharing this handle's
    /// outbox signal.
    ///
    /// A PostgreSQL connection belongs to the runtime whose task opened it: actix runs each
    /// worker on a runtime of its own, and when a worker stops at shutdown, the connections
    /// it opened stop working ("the Tokio context is being shut down"). Had the background
    /// tasks shared the request pool, their last act — publishing what the last requests
    /// committed — would have failed on those connections. A SQLite connection runs on a
    /// thread of its own (and an in-memory database exists once per pool): it shares this
    /// pool.
    pub async fn background(
        &self,
        settings: &DbSettings,
        max_connections: u32,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, StoreError> {
        if self.backend() != DbBackend::Postgres {
            return Ok(self.clone());
        }
        let own = DbSettings {
            max_connections,
            min_connections: 0,
            ..settings.clone()
        };
        let mut pool = Self::connect(&own, metrics).await?;
        pool.outbox_written = Arc::clone(&self.outbox_written);
        pool.mail_written = Arc::clone(&self.mail_written);
        Ok(pool)
    }

    /// Says that an event was committed to the outbox (wakes the local dispatcher).
    pub(crate) fn outbox_written(&self) {
        self.outbox_written.notify_one();
    }

    /// Resolves when an event was committed to the outbox since the last call.
    pub(crate) async fn outbox_wait(&self) {
        self.outbox_written.notified().await;
    }

    /// Says that a mail was committed to the mail outbox (wakes the local mail sender).
    pub(crate) fn mail_written(&self) {
        self.mail_written.notify_one();
    }

    /// Resolves when a mail was committed to the mail outbox since the last call.
    pub(crate) async fn mail_wait(&self) {
        self.mail_written.notified().await;
    }

    /// Starts a transaction that writes. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
    /// taken (waiting up to the busy timeout) before the first read, so a transaction that
    /// reads, then writes, never fails with "database is locked" because another writer —
    /// a request, the outbox dispatcher — committed in between (a deferred transaction
    /// cannot upgrade its snapshot). PostgreSQL ignores the mode.
    ///
    /// A request that holds a connection for its reads gives it back first (see
    /// [`Connection`]): it never waits for a second one while holding one.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        self.conn.give_back().await;
        self.conn
            .pool()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
            .map_err(store_error)
    }

    /// Runs a read whose best plan depends on its values — a page of a list, where a filter
    /// may match one row or a million — so that it is planned with them every time.
    ///
    /// PostgreSQL switches a prepared statement to a *generic* plan after five executions
    /// when that plan looks no costlier on average; for a page it cannot see the `LIMIT`
    /// nor how many rows the filter matches, and may sort every matching row instead of
    /// walking an index (measured: 233 ms instead of 3 ms for `assignee=<member>
    /// &sort=priority` over a project of 1 000 000 tasks, docs/performance.md). On PostgreSQL
    /// the statement therefore runs unnamed (never cached as a prepared statement, so never
    /// generic); elsewhere as any other read. Counted in `db_query_duration_seconds` like
    /// every statement.
    pub async fn query_all_planned(&self, stmt: Statement) -> Result<Vec<QueryResult>, StoreError> {
        self.conn.query_all_unnamed(stmt).await.map_err(store_error)
    }

    /// What the stores run their statements on outside a transaction: inside a request
    /// scope ([`one_connection_per_request`]) on PostgreSQL, one connection per request.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.pool().get_database_backend()
    }

    /// Connections currently lent out of the pool (pool size minus idle ones).
    pub fn active_connections(&self) -> i64 {
        let (size, idle) = match self.backend() {
            DbBackend::Postgres => {
                let pool = self.conn.pool().get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.conn.pool().get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        i64::from(size).saturating_sub(i64::try_from(idle).unwrap_or(i64::MAX))
    }

    /// Closes the pool, waiting for lent connections to come back.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.conn.pool().close_by_ref().await.map_err(store_error)
    }
}

fn backend_of(url: &str) -> Result<DbBackend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(DbBackend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DbBackend::Postgres)
    } else {
        Err(StoreError::Unexpected(
            "unsupported database URL scheme (use sqlite: or postgres:)".into(),
        ))
    }
}

/// Creates the folder of a SQLite database file (`sqlite://data/keel.db?mode=rwc` →
/// `data/`). In-memory databases need nothing.
fn ensure_sqlite_dir(url: &str) -> Result<(), StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(Box::new(e)))
        }
        _ => Ok(()),
    }
}

/// One offset page of `select` (filtered and ordered with a unique tiebreaker) and the
/// number of rows the filter matches.
pub async fn fetch_page<E>(
    db: &Database,
    select: sea_orm::Select<E>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<E::Model>, u64), StoreError>
where
    E: sea_orm::EntityTrait,
    E::Model: Send + Sync,
{
    fetch_page_as::<E, E::Model>(db, select, offset, limit).await
}

/// [`fetch_page`], each row read as `M`. The page is a [`Database::query_all_planned`] read:
/// its filters may match a handful of rows or most of the table.
pub async fn fetch_page_as<E, M>(
    db: &Database,
    select: sea_orm::Select<E>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<M>, u64), StoreError>
where
    E: sea_orm::EntityTrait,
    E::Model: Sync,
    M: sea_orm::FromQueryResult + Send + Sync,
{
    use sea_orm::{PaginatorTrait, QuerySelect, QueryTrait};
    let total = select.clone().count(db.connection()).await.map_err(store_error)?;
    let statement = select.offset(offset).limit(limit).build(db.backend());
    let rows = db
        .query_all_planned(statement)
        .await?
        .iter()
        .map(|row| M::from_query_result(row, ""))
        .collect::<Result<Vec<M>, DbErr>>()
        .map_err(store_error)?;
    Ok((rows, total))
}

/// Text as the case-insensitive searches compare it: Unicode lower case. Stored beside the
/// original (`title_folded`, `name_folded`) because SQLite's `lower()` folds ASCII only.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// Translates a SeaORM error into the store contract. Connection-level failures (refused,
/// reset, pool timed out) are `Unavailable` so the API answers 503 instead of 500.
pub fn store_error(e: DbErr) -> StoreError {
    if let Some(SqlErr::UniqueConstraintViolation(rule)) = e.sql_err() {
        return StoreError::Conflict(rule);
    }
    match e {
        DbErr::RecordNotFound(_) => StoreError::NotFound,
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StoreError::Unavailable(Box::new(e)),
        DbErr::Exec(RuntimeErr::SqlxError(ref inner)) | DbErr::Query(RuntimeErr::SqlxError(ref inner))
            if is_connection_failure(inner) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Unexpected(Box::new(other)),
    }
}

fn is_connection_failure(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
        Error::Database(db) => db.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs the server sends when it, not the statement, is the problem: class 08
/// (connection exception), class 57P (shut down by an operator or a crash, still starting
/// up: `57P01`–`57P05`) and `53300` (too many connections). A restart answers these to the
/// statements in flight; they are worth a retry, not a 500.
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

/// Labels a statement for `db_query_duration_seconds{operation,table}` from its SQL text.
/// The statements are our own generated SQL, so the set of tables is bounded; anything
/// that does not look like an identifier is labelled `other`.
pub fn classify_statement(sql: &str) -> (&'static str, String) {
    let sql = sql.trim_start();
    let first = sql.split_whitespace().next().unwrap_or_default();
    let (operation, marker) = if first.eq_ignore_ascii_case("select") {
        ("select", " FROM ")
    } else if first.eq_ignore_ascii_case("insert") {
        ("insert", " INTO ")
    } else if first.eq_ignore_ascii_case("update") {
        ("update", "UPDATE ")
    } else if first.eq_ignore_ascii_case("delete") {
        ("delete", " FROM ")
    } else {
        return ("other", "none".to_owned());
    };
    let upper = sql.to_ascii_uppercase();
    let table = upper
        .find(marker)
        .map(|at| &sql[at + marker.len()..])
        .and_then(|rest| rest.split_whitespace().next())
        .map(|name| name.trim_matches(|c| c == '"' || c == '`' || c == '(' || c == ')' || c == ','))
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
        .map_or_else(|| "none".to_owned(), |name| name.to_ascii_lowercase());
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_generated_statements() {
        assert_eq!(
            classify_statement(r#"SELECT "users"."id" FROM "users" WHERE "users"."id" = $1"#),
            ("select", "users".to_owned())
        );
        assert_eq!(
            classify_statement(r#"INSERT INTO "audit_log" ("id") VALUES ($1)"#),
            ("insert", "audit_log".to_owned())
        );
        assert_eq!(
            classify_statement(r#"UPDATE "tasks" SET "title" = $1"#),
            ("update", "tasks".to_owned())
        );
        assert_eq!(
            classify_statement(r#"delete from "comments" where id = $1"#),
            ("delete", "comments".to_owned())
        );
        assert_eq!(classify_statement("SELECT 1"), ("select", "none".to_owned()));
        assert_eq!(classify_statement("BEGIN"), ("other", "none".to_owned()));
    }

    #[test]
    fn unsupported_url_scheme_is_refused() {
        assert!(backend_of("mysql://localhost/keel").is_err());
        assert_eq!(backend_of("sqlite::memory:").ok(), Some(DbBackend::Sqlite));
        assert_eq!(backend_of("postgresql://x/y").ok(), Some(DbBackend::Postgres));
    }

    #[test]
    fn sqlite_folder_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nested/deeper/keel.db");
        ensure_sqlite_dir(&format!("sqlite://{}?mode=rwc", db.display())).unwrap();
        assert!(dir.path().join("nested/deeper").is_dir());
        ensure_sqlite_dir("sqlite::memory:").unwrap();
    }

    #[test]
    fn pool_timeouts_are_unavailable_and_missing_rows_not_found() {
        let e = store_error(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert!(matches!(e, StoreError::Unavailable(_)));
        let e = store_error(DbErr::RecordNotFound("task".into()));
        assert!(matches!(e, StoreError::NotFound));
        let e = store_error(DbErr::Custom("boom".into()));
        assert!(matches!(e, StoreError::Unexpected(_)));
    }

    #[test]
    fn server_shutdown_and_connection_sqlstates_are_unavailable_others_are_not() {
        for code in ["57P01", "57P02", "57P03", "08006", "08001", "53300"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "53100", "57014"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
    }

    #[tokio::test]
    async fn sqlite_unique_violation_becomes_conflict() {
        use sea_orm::ConnectionTrait;
        let db = Database::connect(
            &DbSettings {
                url: "sqlite::memory:".into(),
                max_connections: 1,
                min_connections: 1,
                connect_timeout: Duration::from_secs(5),
                acquire_timeout: Duration::from_secs(5),
            },
            None,
        )
        .await
        .unwrap();
        let conn = db.connection();
        conn.execute_unprepared("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .await
            .unwrap();
        conn.execute_unprepared("INSERT INTO t VALUES ('a')")
            .await
            .unwrap();
        let err = conn
            .execute_unprepared("INSERT INTO t VALUES ('a')")
            .await
            .unwrap_err();
        assert!(matches!(store_error(err), StoreError::Conflict(_)));
    }
}
