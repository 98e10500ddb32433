//! The search index (adr/0020-search-index.md): task titles and descriptions and comment
//! bodies, case- and accent-folded, prefix-searchable, kept in step with every change in the
//! change's own transaction.
//!
//! - **PostgreSQL**: a stored generated `tsvector` on `tasks` (title weighted `A`,
//!   description `B`) and on `comments`, each with a GIN index. Accents are folded by the
//!   `unaccent` extension (PostgreSQL's contrib, a trusted extension since PostgreSQL 13)
//!   through `keel_fold`, an immutable wrapper naming its dictionary by schema, as a
//!   generated column needs an immutable expression that does not depend on `search_path`.
//!   `keel_fold` also lower-cases through a Unicode collation (ICU's `und-x-icu`, else
//!   `C.utf8`), as `lower()` and the text search parser follow the database's `LC_CTYPE`,
//!   which folds only ASCII under `C`. Words are the `simple` configuration's: no stemming,
//!   no stop words.
//! - **SQLite**: FTS5 tables (`unicode61 remove_diacritics 2`, prefix indexes of 2 and 3
//!   characters) kept in step by triggers. FTS5 rows are keyed by an integer; tasks and
//!   comments by a UUID, so `task_search_rows`/`comment_search_rows` give each an integer
//!   of its own (an `INTEGER PRIMARY KEY`, which `VACUUM` never renumbers, unlike the hidden
//!   rowid of a table keyed by a UUID).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `to_tsvector` of folded text, in the `simple` configuration (schema-qualified: restores
/// run with an empty `search_path`).
fn vector(text: &str) -> String {
    format!("to_tsvector('pg_catalog.simple'::regconfig, keel_fold({text}))")
}

async fn postgres_up(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared("CREATE EXTENSION IF NOT EXISTS unaccent")
        .await?;
    // Where the extension lives (usually `public`; an operator may have put it elsewhere).
    let schema = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT n.nspname AS schema FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("the unaccent extension is not installed".to_owned()))?
        .try_get::<String>("", "schema")?;
    let schema = schema.replace('"', "\"\"");
    // Lower-casing by a Unicode-aware collation: `lower()` and the text search parser follow
    // the database's LC_CTYPE otherwise, which folds ASCII only under `C` (a common choice).
    let collation = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT collname AS name FROM pg_collation \
             WHERE collname IN ('und-x-icu', 'C.utf8', 'C.UTF-8') \
             ORDER BY collname = 'und-x-icu' DESC, collname LIMIT 1",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "name"))
        .transpose()?
        .map(|name| format!(" COLLATE \"{}\"", name.replace('"', "\"\"")))
        .unwrap_or_default();
    conn.execute_unprepared(&format!(
        "CREATE OR REPLACE FUNCTION keel_fold(text) RETURNS text \
         LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT \
         AS $$ SELECT lower(\"{schema}\".unaccent('\"{schema}\".unaccent'::regdictionary, $1){collation}) $$"
    ))
    .await?;
    conn.execute_unprepared(&format!(
        "ALTER TABLE \"tasks\" ADD COLUMN \"search_vector\" tsvector GENERATED ALWAYS AS \
         (setweight({}, 'A') || setweight({}, 'B')) STORED",
        vector("\"title\""),
        vector("coalesce(\"description\", '')"),
    ))
    .await?;
    conn.execute_unprepared("CREATE INDEX \"ix_tasks_search\" ON \"tasks\" USING gin (\"search_vector\")")
        .await?;
    conn.execute_unprepared(&format!(
        "ALTER TABLE \"comments\" ADD COLUMN \"search_vector\" tsvector GENERATED ALWAYS AS ({}) STORED",
        vector("\"body\""),
    ))
    .await?;
    conn.execute_unprepared(
        "CREATE INDEX \"ix_comments_search\" ON \"comments\" USING gin (\"search_vector\")",
    )
    .await?;
    Ok(())
}

async fn postgres_down(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    for statement in [
        "DROP INDEX IF EXISTS \"ix_comments_search\"",
        "ALTER TABLE \"comments\" DROP COLUMN IF EXISTS \"search_vector\"",
        "DROP INDEX IF EXISTS \"ix_tasks_search\"",
        "ALTER TABLE \"tasks\" DROP COLUMN IF EXISTS \"search_vector\"",
        "DROP FUNCTION IF EXISTS keel_fold(text)",
        // The extension stays: something else of the database may use it, and it costs
        // nothing unused.
    ] {
        conn.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// One table the SQLite index follows: its FTS5 table, the table giving each row its
/// integer, and the indexed columns (`true`: nullable, indexed as `''` when NULL).
struct Indexed {
    table: &'static str,
    rows: &'static str,
    key: &'static str,
    fts: &'static str,
    columns: &'static [(&'static str, bool)],
}

const INDEXED: [Indexed; 2] = [
    Indexed {
        table: "tasks",
        rows: "task_search_rows",
        key: "task_id",
        fts: "task_search",
        columns: &[("title", false), ("description", true)],
    },
    Indexed {
        table: "comments",
        rows: "comment_search_rows",
        key: "comment_id",
        fts: "comment_search",
        columns: &[("body", false)],
    },
];

fn sqlite_up_statements() -> Vec<String> {
    let mut statements = Vec::new();
    for Indexed {
        table,
        rows,
        key,
        fts,
        columns,
    } in INDEXED
    {
        let list = |each: &dyn Fn(&str, bool) -> String| {
            columns
                .iter()
                .map(|(n, nullable)| each(n, *nullable))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The indexed value of each column of `row` (`new`, `old` or an alias).
        let value = |row: &str, name: &str, nullable: bool| {
            if nullable {
                format!("coalesce({row}.\"{name}\", '')")
            } else {
                format!("{row}.\"{name}\"")
            }
        };
        let names = list(&|n, _| format!("\"{n}\""));
        let of = |row: &str| list(&|n, nullable| value(row, n, nullable));
        let sets = list(&|n, nullable| format!("\"{n}\" = {}", value("new", n, nullable)));
        let row_of = |row: &str| format!("(SELECT \"id\" FROM \"{rows}\" WHERE \"{key}\" = {row}.\"id\")");
        statements.extend([
            format!("CREATE TABLE \"{rows}\" (\"id\" INTEGER PRIMARY KEY, \"{key}\" BLOB NOT NULL UNIQUE)"),
            format!(
                "CREATE VIRTUAL TABLE \"{fts}\" USING fts5({names}, \
                 tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')"
            ),
            // The rows there already.
            format!("INSERT INTO \"{rows}\" (\"{key}\") SELECT \"id\" FROM \"{table}\""),
            format!(
                "INSERT INTO \"{fts}\" (\"rowid\", {names}) SELECT r.\"id\", {} FROM \"{rows}\" r \
                 JOIN \"{table}\" t ON t.\"id\" = r.\"{key}\"",
                of("t")
            ),
            // And every change from now on, in the changing statement's transaction.
            format!(
                "CREATE TRIGGER \"{fts}_insert\" AFTER INSERT ON \"{table}\" BEGIN \
                 INSERT INTO \"{rows}\" (\"{key}\") VALUES (new.\"id\"); \
                 INSERT INTO \"{fts}\" (\"rowid\", {names}) VALUES ({}, {}); END",
                row_of("new"),
                of("new")
            ),
            format!(
                "CREATE TRIGGER \"{fts}_update\" AFTER UPDATE OF {names} ON \"{table}\" BEGIN \
                 UPDATE \"{fts}\" SET {sets} WHERE \"rowid\" = {}; END",
                row_of("new")
            ),
            format!(
                "CREATE TRIGGER \"{fts}_delete\" AFTER DELETE ON \"{table}\" BEGIN \
                 DELETE FROM \"{fts}\" WHERE \"rowid\" = {}; \
                 DELETE FROM \"{rows}\" WHERE \"{key}\" = old.\"id\"; END",
                row_of("old")
            ),
        ]);
    }
    statements
}

fn sqlite_down_statements() -> Vec<String> {
    let mut statements = Vec::new();
    for Indexed { rows, fts, .. } in INDEXED.iter().rev() {
        for trigger in ["delete", "update", "insert"] {
            statements.push(format!("DROP TRIGGER IF EXISTS \"{fts}_{trigger}\""));
        }
        statements.push(format!("DROP TABLE IF EXISTS \"{fts}\""));
        statements.push(format!("DROP TABLE IF EXISTS \"{rows}\""));
    }
    statements
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(conn).await,
            _ => {
                for statement in sqlite_up_statements() {
                    conn.execute_unprepared(&statement).await?;
                }
                Ok(())
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => postgres_down(conn).await,
            _ => {
                for statement in sqlite_down_statements() {
                    conn.execute_unprepared(&statement).await?;
                }
                Ok(())
            }
        }
    }
}
