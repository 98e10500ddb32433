//! The search index on SeaORM (adr/0020-search-index.md): PostgreSQL's generated `tsvector`
//! columns with GIN indexes, SQLite's FTS5 tables kept in step by triggers (both made by
//! the migration `m20261207_000016_task_search`).
//!
//! User input never reaches a query's syntax: a search is its words (letters and digits
//! only, [`SearchTerms`]), each bound as a value and quoted by the database itself
//! (PostgreSQL) or as an FTS5 string (SQLite). The visibility of projects is a condition of
//! the statement, so a page holds only what the caller may see and its cursor is exact.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::tracking::search::{
    COMMENT_SCORE, DESCRIPTION_SCORE, IDENTIFIER_SCORE, SearchHit, SearchIndex, SearchPosition, SearchQuery,
    SearchTerms, TITLE_SCORE,
};
use keel_domain::tracking::{Comment, CommentBody, Scope};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement, SimpleExpr, Value};
use sea_orm::{ColumnTrait, Condition, DbBackend, FromQueryResult, Order};

use super::select_prefixed;
use super::tasks::{select_tasks, task_from_row};
use crate::db::{Database, store_error};
use crate::entities::{comments, project_members, projects, tasks};

#[derive(Debug, Clone)]
pub struct SeaOrmSearchIndex {
    db: Database,
}

impl SeaOrmSearchIndex {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Which part of a task's text words must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Title and description together (a task), or the body (a comment).
    All,
    /// The title alone.
    Title,
}

/// The PostgreSQL `tsquery` of `count` words, each as a prefix: every word folded by
/// `keel_fold` and quoted as a tsquery string (`chr(39)` quotes doubled, `chr(92)`
/// backslashes escaped), so whatever the folding makes of it is one lexeme and never syntax.
/// `weight` `A` limits each to titles. The words are the expression's values `$1`…`$count`.
fn pg_words(count: usize, weight: &str) -> String {
    (1..=count)
        .map(|n| {
            format!(
                "to_tsquery('pg_catalog.simple', chr(39) || replace(replace(keel_fold(${n}), \
                 chr(92), chr(92) || chr(92)), chr(39), chr(39) || chr(39)) || chr(39) || ':*{weight}')"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The FTS5 query of `words` as prefixes, each an FTS5 string (`"word"*`, quotes doubled),
/// in `column` if given.
fn fts_query(words: &[String], column: Option<&str>) -> String {
    words
        .iter()
        .map(|w| {
            let quoted = format!("\"{}\"*", w.replace('"', "\"\""));
            match column {
                Some(column) => format!("{column} : {quoted}"),
                None => quoted,
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Tasks whose text holds every word of `words` as a prefix (`None` without words).
fn task_words(backend: DbBackend, words: &[String], field: Field) -> Option<SimpleExpr> {
    if words.is_empty() {
        return None;
    }
    Some(match backend {
        DbBackend::Postgres => {
            let weight = if field == Field::Title { "A" } else { "" };
            let query = pg_words(words.len(), weight);
            Expr::cust_with_values(
                format!("\"tasks\".\"search_vector\" @@ ({query})"),
                words.iter().map(|w| Value::from(w.clone())),
            )
        }
        _ => {
            let column = (field == Field::Title).then_some("title");
            Expr::cust_with_values(
                "\"tasks\".\"id\" IN (SELECT r.\"task_id\" FROM \"task_search\" \
                 JOIN \"task_search_rows\" r ON r.\"id\" = \"task_search\".\"rowid\" \
                 WHERE \"task_search\" MATCH ?)",
                [Value::from(fts_query(words, column))],
            )
        }
    })
}

/// Comments whose body holds every word as a prefix (`None` without words).
fn comment_words(backend: DbBackend, words: &[String]) -> Option<SimpleExpr> {
    if words.is_empty() {
        return None;
    }
    Some(match backend {
        DbBackend::Postgres => {
            let query = pg_words(words.len(), "");
            Expr::cust_with_values(
                format!("\"comments\".\"search_vector\" @@ ({query})"),
                words.iter().map(|w| Value::from(w.clone())),
            )
        }
        _ => Expr::cust_with_values(
            "\"comments\".\"id\" IN (SELECT r.\"comment_id\" FROM \"comment_search\" \
             JOIN \"comment_search_rows\" r ON r.\"id\" = \"comment_search\".\"rowid\" \
             WHERE \"comment_search\" MATCH ?)",
            [Value::from(fts_query(words, None))],
        ),
    })
}

/// The task the terms name by identifier (`KEEL-12`) or number (`12`), if they name one.
/// Needs `projects` joined (every task read joins it).
fn named_task(terms: &SearchTerms) -> Option<SimpleExpr> {
    if let Some((key, number)) = &terms.identifier {
        return Some(
            Expr::col((projects::Entity, projects::Column::Key))
                .eq(key.as_str())
                .and(Expr::col((tasks::Entity, tasks::Column::Number)).eq(*number)),
        );
    }
    terms
        .number
        .map(|number| Expr::col((tasks::Entity, tasks::Column::Number)).eq(number))
}

/// The task list's `q`: tasks whose title and description hold every word as a prefix, or
/// that the terms name; nothing when the terms have neither.
pub(super) fn task_list_match(backend: DbBackend, terms: &SearchTerms) -> Condition {
    let mut any = Condition::any();
    if let Some(words) = task_words(backend, &terms.words, Field::All) {
        any = any.add(words);
    }
    if let Some(named) = named_task(terms) {
        any = any.add(named);
    }
    if terms.words.is_empty() && named_task(terms).is_none() {
        any = any.add(Expr::val(1).eq(0));
    }
    any
}

/// The projects a search may see: its scope, and the token's limit.
fn visible(query: &SearchQuery) -> Condition {
    let project = Expr::col((tasks::Entity, tasks::Column::ProjectId));
    let mut condition = Condition::all().add(Expr::col((tasks::Entity, tasks::Column::DeletedAt)).is_null());
    match query.scope {
        Scope::Project(id) => condition = condition.add(project.clone().eq(id)),
        Scope::MemberOf(user_id) => {
            condition = condition.add(
                project.clone().in_subquery(
                    Query::select()
                        .column(project_members::Column::ProjectId)
                        .from(project_members::Entity)
                        .and_where(project_members::Column::UserId.eq(user_id))
                        .to_owned(),
                ),
            );
        }
        Scope::All => {}
    }
    if let Some(ids) = &query.projects {
        condition = condition.add(project.is_in(ids.iter().copied()));
    }
    condition
}

/// Orders by the score alias, then `at` and `id` of `table`, all descending, after the
/// cursor's position (`score` is the expression the alias names).
fn rank(
    select: &mut SelectStatement,
    score: SimpleExpr,
    at: SimpleExpr,
    id: SimpleExpr,
    after: Option<&SearchPosition>,
    limit: u64,
) {
    if let Some(after) = after {
        select.and_where(Expr::tuple([score, at, id]).lt(Expr::tuple([
            Expr::val(after.score),
            Expr::val(after.at),
            Expr::val(after.id),
        ])));
    }
    select
        .order_by(Alias::new("s_score"), Order::Desc)
        .order_by(Alias::new("s_at"), Order::Desc)
        .order_by(Alias::new("s_id"), Order::Desc)
        .limit(limit);
}

/// The tasks of a search, ranked: one statement.
fn task_select(backend: DbBackend, query: &SearchQuery) -> Option<SelectStatement> {
    let terms = &query.terms;
    let named = named_task(terms);
    let words = task_words(backend, &terms.words, Field::All);
    let title = task_words(backend, &terms.words, Field::Title);
    // `(condition, score)` from the highest; a task matching none of them has the
    // description's score (its words are in the title and description together).
    let mut ranks: Vec<(SimpleExpr, i32)> = Vec::new();
    let mut matched = Condition::any();
    if let Some(named) = named {
        matched = matched.add(named.clone());
        ranks.push((named, IDENTIFIER_SCORE));
    }
    if let (Some(words), Some(title)) = (words, title) {
        matched = matched.add(words);
        ranks.push((title, TITLE_SCORE));
    }
    let mut ranks = ranks.into_iter();
    let (first, first_score) = ranks.next()?;
    let mut score = Expr::case(first, first_score);
    for (condition, value) in ranks {
        score = score.case(condition, value);
    }
    let score: SimpleExpr = score.finally(DESCRIPTION_SCORE).into();
    let at = Expr::col((tasks::Entity, tasks::Column::CreatedAt));
    let id = Expr::col((tasks::Entity, tasks::Column::Id));
    let mut select = select_tasks(backend);
    select
        .expr_as(score.clone(), Alias::new("s_score"))
        .expr_as(at.clone(), Alias::new("s_at"))
        .expr_as(id.clone(), Alias::new("s_id"))
        .cond_where(visible(query))
        .cond_where(matched);
    rank(&mut select, score, at, id, query.after.as_ref(), query.limit);
    Some(select)
}

/// The comments of a search, ranked, each with its task: one statement.
fn comment_select(backend: DbBackend, query: &SearchQuery) -> Option<SelectStatement> {
    let words = comment_words(backend, &query.terms.words)?;
    let score = Expr::val(COMMENT_SCORE);
    let at = Expr::col((comments::Entity, comments::Column::CreatedAt));
    let id = Expr::col((comments::Entity, comments::Column::Id));
    let mut select = select_tasks(backend);
    select_prefixed::<comments::Entity>(&mut select, comments::Entity, "c_");
    select
        .expr_as(score.clone(), Alias::new("s_score"))
        .expr_as(at.clone(), Alias::new("s_at"))
        .expr_as(id.clone(), Alias::new("s_id"))
        .inner_join(
            comments::Entity,
            Expr::col((comments::Entity, comments::Column::TaskId))
                .equals((tasks::Entity, tasks::Column::Id)),
        )
        .cond_where(visible(query))
        .and_where(words);
    rank(&mut select, score, at, id, query.after.as_ref(), query.limit);
    Some(select)
}

impl SeaOrmSearchIndex {
    async fn hits(&self, select: SelectStatement, with_comment: bool) -> Result<Vec<SearchHit>, StoreError> {
        let backend = self.db.backend();
        let rows = self.db.query_all_planned(backend.build(&select)).await?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(task) = task_from_row(row)? else {
                continue;
            };
            let score: i32 = row.try_get("", "s_score").map_err(store_error)?;
            let comment = if with_comment {
                let m = comments::Model::from_query_result(row, "c_").map_err(store_error)?;
                Some(Comment {
                    id: m.id,
                    task_id: m.task_id,
                    project_id: task.project_id,
                    author_id: m.author_id,
                    body: CommentBody::from_stored(m.body),
                    created_at: m.created_at,
                    updated_at: m.updated_at,
                    version: m.version,
                })
            } else {
                None
            };
            hits.push(SearchHit { score, task, comment });
        }
        Ok(hits)
    }
}

#[async_trait]
impl SearchIndex for SeaOrmSearchIndex {
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let backend = self.db.backend();
        let mut hits = Vec::new();
        if query.kinds.tasks
            && let Some(select) = task_select(backend, query)
        {
            hits.extend(self.hits(select, false).await?);
        }
        if query.kinds.comments
            && let Some(select) = comment_select(backend, query)
        {
            hits.extend(self.hits(select, true).await?);
        }
        // Each list is ranked; together, the first `limit` of both in the same order.
        hits.sort_by(|a, b| {
            let (a, b) = (a.position(), b.position());
            (b.score, b.at, b.id).cmp(&(a.score, a.at, a.id))
        });
        hits.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_bound_never_written_into_the_statement() {
        let words = vec!["x'); DROP TABLE tasks; --".to_owned(), "\"*".to_owned()];
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let mut select = Query::select();
            select
                .expr(Expr::val(1))
                .and_where(task_words(backend, &words, Field::All).unwrap());
            let statement = backend.build(&select);
            assert!(!statement.sql.contains("DROP"), "{}", statement.sql);
            assert!(statement.values.is_some_and(|v| !v.0.is_empty()));
        }
    }

    #[test]
    fn fts_queries_quote_every_word_as_a_prefix() {
        let words = vec!["migr".to_owned(), "NEAR".to_owned(), "a\"b".to_owned()];
        assert_eq!(fts_query(&words, None), r#""migr"* AND "NEAR"* AND "a""b"*"#);
        assert_eq!(fts_query(&words[..1], Some("title")), r#"title : "migr"*"#);
    }
}
