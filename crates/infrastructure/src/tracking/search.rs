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
use sea_orm::sea_query::{
    Alias, Asterisk, Expr, ExprTrait, JoinType, Query, SelectStatement, SimpleExpr, UnionType, Value,
};
use sea_orm::{ColumnTrait, Condition, DbBackend, FromQueryResult, Order, QueryResult};
use uuid::Uuid;

use super::select_prefixed;
use super::tasks::{select_tasks, task_from_row};
use crate::db::{Database, store_error};
use crate::entities::{comments, project_members, projects, tasks};

#[derive(Debug, Clone)]
pub struct SeaOrmSearchIndex {
    db: Database,
    window: u64,
    merged: usize,
}

impl SeaOrmSearchIndex {
    pub fn new(db: Database) -> Self {
        Self::with_window(db, WINDOW)
    }

    /// An index whose word tiers read the newest `window` tasks first (see [`WINDOW`]); the
    /// results are the same whatever the window, only the statements differ (tests set a
    /// small one to take every path with few tasks).
    pub fn with_window(db: Database, window: u64) -> Self {
        Self::with_reads(db, window, MERGED)
    }

    /// As [`Self::with_window`], merging the windows of up to `merged` projects (see
    /// [`MERGED`]; tests set a small one to read a member's projects both ways).
    pub fn with_reads(db: Database, window: u64, merged: usize) -> Self {
        Self {
            db,
            window: Ord::max(window, 1),
            merged,
        }
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

/// Tasks whose title holds every word as a prefix, as an index finds them: on PostgreSQL
/// through the title's own index (`ix_tasks_title_search`, the same words as the `A`
/// weight of `search_vector`, which its own index cannot tell apart from the description's).
fn title_words(backend: DbBackend, words: &[String]) -> Option<SimpleExpr> {
    if backend != DbBackend::Postgres || words.is_empty() {
        return task_words(backend, words, Field::Title);
    }
    let query = pg_words(words.len(), "");
    Some(Expr::cust_with_values(
        format!("to_tsvector('pg_catalog.simple'::regconfig, keel_fold(\"tasks\".\"title\")) @@ ({query})"),
        words.iter().map(|w| Value::from(w.clone())),
    ))
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

/// The task the terms name by identifier (`KEEL-12`) or number (`12`), if they name one:
/// a condition on `tasks` alone.
fn named_task(terms: &SearchTerms) -> Option<SimpleExpr> {
    if let Some((key, number)) = &terms.identifier {
        // The project as a subquery (not the joined `projects`), so that the number is a
        // condition on `tasks` alone: PostgreSQL reads it from `ix_tasks_number`, OR-ed
        // with the text index.
        return Some(
            Expr::col((tasks::Entity, tasks::Column::Number)).eq(*number).and(
                Expr::col((tasks::Entity, tasks::Column::ProjectId)).in_subquery(
                    Query::select()
                        .column(projects::Column::Id)
                        .from(projects::Entity)
                        .and_where(Expr::col((projects::Entity, projects::Column::Key)).eq(key.as_str()))
                        .to_owned(),
                ),
            ),
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

/// How many of the newest visible tasks a word tier reads first, on PostgreSQL, before it
/// asks the full-text index (adr/0020-search-index.md, "Common words").
pub const WINDOW: u64 = 5_000;

/// The levels of a task search, from the highest score: a task is in the first whose
/// condition it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// The task the terms name by identifier or number.
    Named,
    /// Every word in the title.
    Title,
    /// Every word in the title and description together.
    Description,
}

impl Tier {
    const ALL: [Tier; 3] = [Tier::Named, Tier::Title, Tier::Description];

    fn score(self) -> i32 {
        match self {
            Tier::Named => IDENTIFIER_SCORE,
            Tier::Title => TITLE_SCORE,
            Tier::Description => DESCRIPTION_SCORE,
        }
    }

    /// `(what an index finds, the condition of this tier and of no higher one)`; `None` when
    /// the terms cannot reach this tier. Both are conditions on `tasks` alone.
    fn conditions(self, backend: DbBackend, terms: &SearchTerms) -> Option<(SimpleExpr, SimpleExpr)> {
        let named = named_task(terms);
        let not_named = |condition: SimpleExpr| match &named {
            Some(named) => condition.and(named.clone().not()),
            None => condition,
        };
        match self {
            Tier::Named => {
                let number = terms
                    .identifier
                    .as_ref()
                    .map(|(_, number)| *number)
                    .or(terms.number)?;
                Some((
                    Expr::col((tasks::Entity, tasks::Column::Number)).eq(number),
                    named?,
                ))
            }
            Tier::Title => {
                let title = task_words(backend, &terms.words, Field::Title)?;
                Some((title_words(backend, &terms.words)?, not_named(title)))
            }
            Tier::Description => {
                let words = task_words(backend, &terms.words, Field::All)?;
                let title = task_words(backend, &terms.words, Field::Title)?;
                Some((words.clone(), not_named(words.and(title.not()))))
            }
        }
    }
}

/// Where a tier's page starts: `None` when the cursor is past the whole tier, else the
/// condition on `(at, id)` (none when the cursor is in a higher tier, or there is none).
fn resume(
    after: Option<&SearchPosition>,
    score: i32,
    at: SimpleExpr,
    id: SimpleExpr,
) -> Option<Option<SimpleExpr>> {
    match after {
        Some(after) if after.score < score => None,
        Some(after) if after.score == score => Some(Some(
            Expr::tuple([at, id]).lt(Expr::tuple([Expr::val(after.at), Expr::val(after.id)])),
        )),
        _ => Some(None),
    }
}

/// Orders a tier's rows newest first (its score is one value) and takes `limit`.
fn newest_first(select: &mut SelectStatement, score: i32, at: SimpleExpr, id: SimpleExpr, limit: u64) {
    select
        .expr_as(Expr::val(score), Alias::new("s_score"))
        .expr_as(at, Alias::new("s_at"))
        .expr_as(id, Alias::new("s_id"))
        .order_by(Alias::new("s_at"), Order::Desc)
        .order_by(Alias::new("s_id"), Order::Desc)
        .limit(limit);
}

/// The visible tasks a tier reads: the newest few (`Source::Window`), or those an
/// index finds for it (`Source::Found`); `resume` is the cursor's condition.
fn tier_source(
    backend: DbBackend,
    query: &SearchQuery,
    resume: Option<SimpleExpr>,
    source: &Source,
) -> SelectStatement {
    let resume_window = resume.clone();
    let mut select = Query::select();
    select
        .column((tasks::Entity, Asterisk))
        .from(tasks::Entity)
        .cond_where(visible(query));
    if let Some(resume) = resume {
        select.and_where(resume);
    }
    match source {
        Source::Window { rows: window, merged } => {
            match (query.scope, &query.projects) {
                (Scope::All, Some(ids)) if !ids.is_empty() && ids.len() <= *merged => {
                    return merged_window(ids, resume_window, *window);
                }
                (Scope::MemberOf(user_id), _) => {
                    return member_window(query, user_id, resume_window, *window);
                }
                _ => {}
            }
            select
                .order_by((tasks::Entity, tasks::Column::CreatedAt), Order::Desc)
                .order_by((tasks::Entity, tasks::Column::Id), Order::Desc)
                .limit(*window);
        }
        // `OFFSET 0` keeps PostgreSQL from merging this into the outer statement, whose
        // `ORDER BY created_at … LIMIT` would otherwise lead it to walk the creation-time
        // index and test every row (it cannot tell a rare prefix from a common one).
        // SQLite reads FTS5's matches first whatever the order.
        Source::Found(found) => {
            select.and_where(found.clone());
            if backend == DbBackend::Postgres {
                select.offset(0);
            }
        }
    }
    select
}

/// Up to how many listed projects a window merges their newest tasks (see [`merged_window`]);
/// beyond, it reads them as [`member_window`] does.
const MERGED: usize = 32;

/// The newest `window` tasks of the projects `ids`, after `resume`: one branch per project
/// (its newest `window` from `ix_tasks_life_project_created`, rows in index order) and the
/// branches merged in order (`UNION ALL` under one `ORDER BY … LIMIT`, which PostgreSQL
/// runs as a merge that stops at `window` rows): about `window` rows read in all, however
/// large the projects.
fn merged_window(ids: &[Uuid], resume: Option<SimpleExpr>, window: u64) -> SelectStatement {
    let branch = |n: usize, id: Uuid| {
        let mut newest = Query::select();
        newest
            .column((tasks::Entity, Asterisk))
            .from(tasks::Entity)
            .and_where(Expr::col((tasks::Entity, tasks::Column::ProjectId)).eq(id))
            .and_where(Expr::col((tasks::Entity, tasks::Column::DeletedAt)).is_null())
            .order_by((tasks::Entity, tasks::Column::CreatedAt), Order::Desc)
            .order_by((tasks::Entity, tasks::Column::Id), Order::Desc)
            .limit(window);
        if let Some(resume) = resume.clone() {
            newest.and_where(resume);
        }
        let mut branch = Query::select();
        branch
            .column(Asterisk)
            .from_subquery(newest, Alias::new(format!("p{n}")));
        branch
    };
    let mut branches = ids.iter().enumerate().map(|(n, id)| branch(n, *id));
    let mut union = branches.next().unwrap_or_else(Query::select);
    for next in branches {
        union.union(UnionType::All, next);
    }
    let mut select = Query::select();
    select
        .column(Asterisk)
        .from_subquery(union, Alias::new("merged"))
        .order_by(tasks::Column::CreatedAt, Order::Desc)
        .order_by(tasks::Column::Id, Order::Desc)
        .limit(window);
    select
}

/// The newest `window` tasks of the projects `user_id` is a member of (within the token's
/// projects), after `resume`: each project's newest `window` ids from its creation-time
/// index (`ix_tasks_life_project_created`, index only), the newest `window` of those, then
/// each row by its primary key. Written this way because PostgreSQL, asked for the newest
/// tasks of `project_id IN (the member's projects)`, cannot walk one index in order: it
/// reads every task of those projects and sorts them (seconds for a member of a project of
/// 1 000 000 tasks, once other projects make its statistics look small). The row is read by
/// a `LIMIT 1` subquery so that the tier's own condition is tested on these rows only, never
/// pushed down to an index scan of every match.
fn member_window(
    query: &SearchQuery,
    user_id: uuid::Uuid,
    resume: Option<SimpleExpr>,
    window: u64,
) -> SelectStatement {
    let newest_of_project = Alias::new("w");
    let ids = Alias::new("ids");
    let row = Alias::new("t");
    let mut per_project = Query::select();
    per_project
        .column((tasks::Entity, tasks::Column::Id))
        .column((tasks::Entity, tasks::Column::CreatedAt))
        .from(tasks::Entity)
        .and_where(
            Expr::col((tasks::Entity, tasks::Column::ProjectId))
                .equals((project_members::Entity, project_members::Column::ProjectId)),
        )
        .and_where(Expr::col((tasks::Entity, tasks::Column::DeletedAt)).is_null())
        .order_by((tasks::Entity, tasks::Column::CreatedAt), Order::Desc)
        .order_by((tasks::Entity, tasks::Column::Id), Order::Desc)
        .limit(window);
    if let Some(resume) = resume {
        per_project.and_where(resume);
    }
    let mut newest = Query::select();
    newest
        .column((newest_of_project.clone(), tasks::Column::Id))
        .from(project_members::Entity)
        .join_lateral(
            JoinType::InnerJoin,
            per_project,
            newest_of_project.clone(),
            Expr::cust("TRUE"),
        )
        .and_where(Expr::col((project_members::Entity, project_members::Column::UserId)).eq(user_id))
        .order_by((newest_of_project.clone(), tasks::Column::CreatedAt), Order::Desc)
        .order_by((newest_of_project, tasks::Column::Id), Order::Desc)
        .limit(window);
    if let Some(projects) = &query.projects {
        newest.and_where(
            Expr::col((project_members::Entity, project_members::Column::ProjectId))
                .is_in(projects.iter().copied()),
        );
    }
    let mut by_id = Query::select();
    by_id
        .column((tasks::Entity, Asterisk))
        .from(tasks::Entity)
        .and_where(Expr::col((tasks::Entity, tasks::Column::Id)).equals((ids.clone(), tasks::Column::Id)))
        .limit(1);
    let mut select = Query::select();
    select
        .column((row.clone(), Asterisk))
        .from_subquery(newest, ids)
        .join_lateral(JoinType::InnerJoin, by_id, row, Expr::cust("TRUE"));
    select
}

/// How many tasks the caller sees, counted up to `window` (fewer: a window holds them all).
fn window_holds_all(query: &SearchQuery, window: u64) -> SelectStatement {
    let mut visible_tasks = Query::select();
    visible_tasks
        .expr(Expr::val(1))
        .from(tasks::Entity)
        .cond_where(visible(query))
        .limit(window);
    let mut select = Query::select();
    select
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from_subquery(visible_tasks, Alias::new("v"));
    select
}

/// The projects of a member (within the token's), as values: `Scope::All` limited to them.
fn member_projects(user_id: Uuid, limit: Option<&[Uuid]>) -> SelectStatement {
    let mut select = Query::select();
    select
        .column(project_members::Column::ProjectId)
        .from(project_members::Entity)
        .and_where(project_members::Column::UserId.eq(user_id));
    if let Some(limit) = limit {
        select.and_where(project_members::Column::ProjectId.is_in(limit.iter().copied()));
    }
    select
}

/// The two forms of one search's scope on PostgreSQL (see [`SeaOrmSearchIndex::search`]).
struct Reads<'q> {
    /// What a window reads.
    window: &'q SearchQuery,
    /// What an index read, a count and the comments read.
    index: &'q SearchQuery,
}

/// Which tasks a tier's statement reads (see [`tier_source`]).
enum Source {
    /// The newest `rows`, merged from each project's when they are `merged` or fewer.
    Window {
        rows: u64,
        merged: usize,
    },
    Found(SimpleExpr),
}

/// One tier's page: the tasks of `source` (aliased `tasks`) in the tier, newest first.
fn tier_select(
    backend: DbBackend,
    query: &SearchQuery,
    tier: (Tier, SimpleExpr),
    resume: Option<SimpleExpr>,
    source: &Source,
    limit: u64,
) -> SelectStatement {
    let (tier, condition) = tier;
    let mut select = select_tasks(backend);
    select
        .from_clear()
        .from_subquery(tier_source(backend, query, resume, source), tasks::Entity)
        .and_where(condition);
    newest_first(
        &mut select,
        tier.score(),
        Expr::col((tasks::Entity, tasks::Column::CreatedAt)),
        Expr::col((tasks::Entity, tasks::Column::Id)),
        limit,
    );
    select
}

/// The comments of a search, newest first, each with its task: one statement.
fn comment_select(backend: DbBackend, query: &SearchQuery, limit: u64) -> Option<SelectStatement> {
    let words = comment_words(backend, &query.terms.words)?;
    let at: SimpleExpr = Expr::col((comments::Entity, comments::Column::CreatedAt));
    let id: SimpleExpr = Expr::col((comments::Entity, comments::Column::Id));
    let resume = resume(query.after.as_ref(), COMMENT_SCORE, at.clone(), id.clone())?;
    let mut select = select_tasks(backend);
    select_prefixed::<comments::Entity>(&mut select, comments::Entity, "c_");
    select
        .inner_join(
            comments::Entity,
            Expr::col((comments::Entity, comments::Column::TaskId))
                .equals((tasks::Entity, tasks::Column::Id)),
        )
        .cond_where(visible(query))
        .and_where(words);
    if let Some(resume) = resume {
        select.and_where(resume);
    }
    newest_first(&mut select, COMMENT_SCORE, at, id, limit);
    Some(select)
}

impl SeaOrmSearchIndex {
    async fn rows(&self, select: &SelectStatement) -> Result<Vec<QueryResult>, StoreError> {
        self.db.query_all_planned(self.db.backend().build(select)).await
    }

    fn hits(rows: &[QueryResult], with_comment: bool) -> Result<Vec<SearchHit>, StoreError> {
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
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

    /// One tier's page of at most `limit` tasks. On PostgreSQL a word tier first reads the
    /// newest `window` visible tasks: a common word fills the page from them at once. When
    /// they hold too few, and the caller sees more tasks than the window (asked once per
    /// search, the answer kept in `holds_all`), the tier asks the full-text index for every
    /// match — few, since the newest tasks held few — and sorts those.
    async fn tier(
        &self,
        reads: &Reads<'_>,
        tier: Tier,
        limit: u64,
        holds_all: &mut Option<bool>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let backend = self.db.backend();
        let query = reads.index;
        let Some((found, condition)) = tier.conditions(backend, &query.terms) else {
            return Ok(Vec::new());
        };
        let at: SimpleExpr = Expr::col((tasks::Entity, tasks::Column::CreatedAt));
        let id: SimpleExpr = Expr::col((tasks::Entity, tasks::Column::Id));
        let Some(resume) = resume(query.after.as_ref(), tier.score(), at, id) else {
            return Ok(Vec::new());
        };
        if backend == DbBackend::Postgres && tier != Tier::Named {
            let select = tier_select(
                backend,
                reads.window,
                (tier, condition.clone()),
                resume.clone(),
                &Source::Window {
                    rows: self.window,
                    merged: self.merged,
                },
                limit,
            );
            let rows = self.rows(&select).await?;
            if rows.len() as u64 >= limit {
                return Self::hits(&rows, false);
            }
            let held_all = match *holds_all {
                Some(known) => known,
                None => {
                    let row = self.rows(&window_holds_all(query, self.window)).await?;
                    let seen: i64 = match row.first() {
                        Some(row) => row.try_get("", "n").map_err(store_error)?,
                        None => 0,
                    };
                    let fewer = u64::try_from(seen).is_ok_and(|seen| seen < self.window);
                    *holds_all = Some(fewer);
                    fewer
                }
            };
            // A cursor only narrows what the window reads: what held all still does.
            if held_all {
                return Self::hits(&rows, false);
            }
        }
        let select = tier_select(
            backend,
            query,
            (tier, condition),
            resume,
            &Source::Found(found),
            limit,
        );
        Self::hits(&self.rows(&select).await?, false)
    }
}

#[async_trait]
impl SearchIndex for SeaOrmSearchIndex {
    /// The tiers from the highest score, then the comments, each newest first, until the
    /// page is full: their concatenation is the ranked order.
    ///
    /// On PostgreSQL a member's projects are read first (one statement) and the search then
    /// names them as values: the planner then knows each project's own size. Told only "the
    /// projects of a user" it plans for an average project — and, for a member of a project
    /// of 1 000 000 tasks among small ones, read and sorted all of them for a window
    /// (seconds), or intersected a rare word's few matches with a 1 000 000-entry project
    /// index (tens of ms). A window over up to [`MERGED`] projects merges their newest
    /// tasks; over more, it reads each one's newest ids ([`member_window`]).
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let backend = self.db.backend();
        let named;
        let reads = match query.scope {
            Scope::MemberOf(user_id) if backend == DbBackend::Postgres => {
                let rows = self
                    .rows(&member_projects(user_id, query.projects.as_deref()))
                    .await?;
                let mut ids = Vec::with_capacity(rows.len());
                for row in &rows {
                    ids.push(row.try_get::<Uuid>("", "project_id").map_err(store_error)?);
                }
                let merged = ids.len() <= self.merged;
                named = SearchQuery {
                    scope: Scope::All,
                    projects: Some(ids),
                    ..query.clone()
                };
                Reads {
                    window: if merged { &named } else { query },
                    index: &named,
                }
            }
            _ => Reads {
                window: query,
                index: query,
            },
        };
        let query = reads.index;
        let mut hits = Vec::new();
        let remaining = |hits: &Vec<SearchHit>| query.limit.saturating_sub(hits.len() as u64);
        if query.kinds.tasks {
            let mut holds_all = None;
            for tier in Tier::ALL {
                if remaining(&hits) == 0 {
                    break;
                }
                let found = self.tier(&reads, tier, remaining(&hits), &mut holds_all).await?;
                hits.extend(found);
            }
        }
        if query.kinds.comments
            && remaining(&hits) > 0
            && let Some(select) = comment_select(backend, query, remaining(&hits))
        {
            hits.extend(Self::hits(&self.rows(&select).await?, true)?);
        }
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
