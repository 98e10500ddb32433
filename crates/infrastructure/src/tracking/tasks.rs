//! The task store on SeaORM: gap-free numbering per project and keyset-paged lists.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::audit::AuditEntry;
use keel_domain::events::Change;
use keel_domain::events::Envelope;
use keel_domain::tracking::ports::{
    EventData, NewTask, SubtreeAction, SubtreeArchive, SubtreeWrite, TaskRepository, TaskWrite, TreeChange,
    TreeWrite,
};
use keel_domain::tracking::search::SearchTerms;
use keel_domain::tracking::{
    ArchivedFilter, AssigneeFilter, LabelName, MAX_TASK_DEPTH, ParentFilter, Placement, Priority,
    ProjectAccess, ProjectKey, RelationType, Scope, SortValue, StateCategory, StateKey, Task, TaskPosition,
    TaskQuery, TaskSort, TaskSortKey, TaskTitle,
};
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, NullOrdering, Query, SelectStatement, Value};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult,
    IdenStatic, Iterable, JoinType, Order, QueryFilter, QueryResult, QuerySelect, RelationTrait, Set,
    Statement,
};
use uuid::Uuid;

use super::search::task_list_match;
use super::states::state_category;
use super::{
    access_from_row, commit_change, commit_recorded, corrupt, finish_guarded, lock_project, roll_back,
    select_prefixed, with_access,
};
use crate::audit::{insert_entry, insert_held_entries};
use crate::db::{Database, fold, store_error};
use crate::entities::tasks::{self, Column, Entity};
use crate::entities::{labels, project_members, projects, task_labels};
use crate::events::outbox::insert_events;

#[derive(Debug, Clone)]
pub struct SeaOrmTaskRepository {
    db: Database,
    list_window: u64,
}

impl SeaOrmTaskRepository {
    pub fn new(db: Database) -> Self {
        Self::with_list_window(db, LIST_WINDOW)
    }

    /// A store whose lists with `q` read their first `window` tasks first (see
    /// [`Reading`]); the pages are the same whatever the window, only the statements differ
    /// (tests set a small one to take every path with few tasks).
    pub fn with_list_window(db: Database, window: u64) -> Self {
        Self {
            db,
            list_window: Ord::max(window, 1),
        }
    }
}

/// A task row with its project's key.
#[derive(Debug)]
struct TaskRow {
    task: tasks::Model,
    project_key: String,
}

/// `(SELECT <[name, id] pairs as a JSON array> FROM task_labels … WHERE task_id =
/// tasks.id)`: a task's labels inside the statement that reads the task (NULL or `[]` when
/// it has none). SQLite stores ids as 16-byte blobs, which JSON cannot hold: their hex.
///
/// On PostgreSQL each label's name is looked up by its primary key, not joined: for a
/// prepared statement's generic plan the join of `task_labels` to `labels` is a hash join
/// that reads the whole `labels` table (every project's labels) for each task that has one
/// — measured at 25 µs of a 80 µs task read with 408 labels, and once per row of a page
/// (docs/performance.md, "The task read statement"). A label row always exists for a
/// `task_labels` row (foreign key, deleted with it).
fn labels_json(backend: DbBackend) -> Expr {
    Expr::cust(match backend {
        DbBackend::Postgres => {
            "(SELECT json_agg(json_build_array(\
             (SELECT l.\"name\" FROM \"labels\" l WHERE l.\"id\" = tl.\"label_id\"), tl.\"label_id\"))::text \
             FROM \"task_labels\" tl WHERE tl.\"task_id\" = \"tasks\".\"id\")"
        }
        _ => {
            "(SELECT json_group_array(json_array(l.\"name\", hex(l.\"id\"))) \
             FROM \"task_labels\" tl JOIN \"labels\" l ON l.\"id\" = tl.\"label_id\" \
             WHERE tl.\"task_id\" = \"tasks\".\"id\")"
        }
    })
}

/// `FROM task_relations r JOIN tasks b … WHERE …`: the open blockers of the task of the
/// enclosing row (`tasks`): `blocks` relations whose source is neither closed (a state of
/// the `completed` or `canceled` category) nor in the trash, in any project. Served by the
/// relations' target index.
fn open_blockers() -> String {
    let closed: Vec<String> = StateCategory::ALL
        .iter()
        .filter(|s| s.is_closed())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!(
        "FROM \"task_relations\" r JOIN \"tasks\" b ON b.\"id\" = r.\"source_task_id\" \
         WHERE r.\"target_task_id\" = \"tasks\".\"id\" AND r.\"kind\" = '{}' \
         AND b.\"deleted_at\" IS NULL AND b.\"status_category\" NOT IN ({})",
        RelationType::Blocks.as_str(),
        closed.join(", ")
    )
}

/// `(SELECT COUNT(*) …)` of [`open_blockers`]: a task's `blocked_by_count`.
fn blocked_by_count() -> Expr {
    Expr::cust(format!("(SELECT COUNT(*) {})", open_blockers()))
}

/// `(SELECT COUNT(*) FROM tasks ch WHERE ch.parent_id = tasks.id …)`: the children of the
/// task of the enclosing row that are not in the trash (`done`: only the completed ones).
/// Served by `ix_tasks_parent`.
fn child_count(done: bool) -> Expr {
    Expr::cust(child_count_sql(done))
}

/// The SQL of [`child_count`].
pub(super) fn child_count_sql(done: bool) -> String {
    let completed = if done {
        " AND ch.\"completed_at\" IS NOT NULL"
    } else {
        ""
    };
    format!(
        "(SELECT COUNT(*) FROM \"tasks\" ch WHERE ch.\"parent_id\" = \"tasks\".\"id\" \
         AND ch.\"deleted_at\" IS NULL{completed})"
    )
}

/// `tasks.parent_id`, by name: it is no field of the SeaORM model, which other code builds
/// field by field (a task's place in the tree is written only here, under the project's
/// lock).
fn parent_column() -> Alias {
    Alias::new("parent_id")
}

/// [`parent_column`] of the `tasks` table.
fn parent_of_task() -> Expr {
    Expr::col((Entity, parent_column()))
}

/// The computed columns every task read selects beside the task's own (`t_…`).
const EXTRAS: [&str; 6] = [
    "t_parent_id",
    "t_project_key",
    "t_labels",
    "t_blocked_by_count",
    "t_child_count",
    "t_child_done_count",
];

/// Every task read starts here: the task's columns (`t_…`), its project's key
/// (`t_project_key`), its labels (`t_labels`) and open blockers (`t_blocked_by_count`), one
/// row per task — of tasks not in the
/// trash: only the trash's own reads ([`select_any_task`]) see those.
pub(super) fn select_tasks(backend: DbBackend) -> SelectStatement {
    let mut query = select_any_task(backend);
    query.and_where(Expr::col((Entity, Column::DeletedAt)).is_null());
    query
}

/// [`select_tasks`], tasks in the trash included.
fn select_any_task(backend: DbBackend) -> SelectStatement {
    let mut query = Query::select();
    select_prefixed::<Entity>(&mut query, Entity, "t_");
    query
        .expr_as(
            Expr::col((projects::Entity, projects::Column::Key)),
            Alias::new("t_project_key"),
        )
        .expr_as(labels_json(backend), Alias::new("t_labels"))
        .expr_as(blocked_by_count(), Alias::new("t_blocked_by_count"))
        .expr_as(parent_of_task(), Alias::new("t_parent_id"))
        .expr_as(child_count(false), Alias::new("t_child_count"))
        .expr_as(child_count(true), Alias::new("t_child_done_count"))
        .from(Entity)
        .inner_join(
            projects::Entity,
            Expr::col((projects::Entity, projects::Column::Id)).equals((Entity, Column::ProjectId)),
        );
    query
}

/// The task of a row read through [`select_tasks`]; `None` when the row has no task (the
/// empty page of [`TaskRepository::page_with_access`]).
pub(super) fn task_from_row(row: &QueryResult) -> Result<Option<Task>, StoreError> {
    let id: Option<Uuid> = row.try_get("t_", "id").map_err(store_error)?;
    if id.is_none() {
        return Ok(None);
    }
    let task = tasks::Model::from_query_result(row, "t_").map_err(store_error)?;
    let project_key: String = row.try_get("t_", "project_key").map_err(store_error)?;
    let labels: Option<String> = row.try_get("t_", "labels").map_err(store_error)?;
    let labels = parse_labels(labels.as_deref(), task.id)?;
    let blocked_by_count: i64 = row.try_get("t_", "blocked_by_count").map_err(store_error)?;
    let parent_id: Option<Uuid> = row.try_get("t_", "parent_id").map_err(store_error)?;
    let child_count: i64 = row.try_get("t_", "child_count").map_err(store_error)?;
    let child_done_count: i64 = row.try_get("t_", "child_done_count").map_err(store_error)?;
    let mut task = to_domain(TaskRow { task, project_key }, labels)?;
    task.blocked_by_count = blocked_by_count;
    task.parent_id = parent_id;
    task.child_count = child_count;
    task.child_done_count = child_done_count;
    Ok(Some(task))
}

/// A task's labels: names sorted, and their ids in the same order.
type Labels = (Vec<LabelName>, Vec<Uuid>);

/// The labels of [`labels_json`].
fn parse_labels(json: Option<&str>, task_id: Uuid) -> Result<Labels, StoreError> {
    let Some(json) = json else {
        return Ok(Labels::default());
    };
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json).map_err(|_| corrupt("tasks", task_id, "labels"))?;
    let pairs = pairs
        .iter()
        .map(|(name, id)| {
            let name = LabelName::parse(name).map_err(|_| corrupt("tasks", task_id, "label name"))?;
            let id = Uuid::parse_str(id).map_err(|_| corrupt("tasks", task_id, "label id"))?;
            Ok((name, id))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(sorted_labels(pairs))
}

/// `(name, id)` pairs as a task holds them.
fn sorted_labels(mut pairs: Vec<(LabelName, Uuid)>) -> Labels {
    pairs.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    pairs.into_iter().unzip()
}

fn to_domain(row: TaskRow, (labels, label_ids): Labels) -> Result<Task, StoreError> {
    let m = row.task;
    let bad = |what| corrupt("tasks", m.id, what);
    Ok(Task {
        id: m.id,
        project_id: m.project_id,
        project_key: ProjectKey::parse(&row.project_key)
            .map_err(|_| corrupt("projects", m.project_id, "key"))?,
        number: m.number,
        title: TaskTitle::from_stored(m.title.clone()),
        description: m.description,
        status: StateKey::from_stored(m.status.clone()),
        status_category: StateCategory::parse(&m.status_category, "status")
            .map_err(|_| bad("status_category"))?,
        priority: Priority::new(i64::from(m.priority), "priority").map_err(|_| bad("priority"))?,
        assignee_id: m.assignee_id,
        labels,
        label_ids,
        due_date: m.due_date,
        created_by: m.created_by,
        created_at: m.created_at,
        updated_at: m.updated_at,
        completed_at: m.completed_at,
        version: m.version,
        archived_at: m.archived_at,
        deleted_at: m.deleted_at,
        blocked_by_count: 0,
        parent_id: None,
        child_count: 0,
        child_done_count: 0,
    })
}

/// The labels of each of `task_ids`, in one query.
async fn labels_of(
    conn: &impl ConnectionTrait,
    task_ids: &[Uuid],
) -> Result<HashMap<Uuid, Labels>, StoreError> {
    let mut by_task: HashMap<Uuid, Vec<(LabelName, Uuid)>> = HashMap::new();
    if task_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Uuid, String)> = task_labels::Entity::find()
        .select_only()
        .column(task_labels::Column::TaskId)
        .column(labels::Column::Id)
        .column(labels::Column::Name)
        .join(JoinType::InnerJoin, task_labels::Relation::Label.def())
        .filter(task_labels::Column::TaskId.is_in(task_ids.iter().copied()))
        .into_tuple()
        .all(conn)
        .await
        .map_err(store_error)?;
    for (task_id, label_id, name) in rows {
        let name = LabelName::from_stored(name);
        by_task.entry(task_id).or_default().push((name, label_id));
    }
    Ok(by_task
        .into_iter()
        .map(|(task, pairs)| (task, sorted_labels(pairs)))
        .collect())
}

/// Each label once, in a stable order.
fn distinct(label_ids: &[Uuid]) -> Vec<Uuid> {
    label_ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn insert_labels(
    conn: &impl ConnectionTrait,
    task_id: Uuid,
    label_ids: &[Uuid],
) -> Result<(), StoreError> {
    if label_ids.is_empty() {
        return Ok(());
    }
    task_labels::Entity::insert_many(label_ids.iter().map(|label_id| task_labels::ActiveModel {
        task_id: Set(task_id),
        label_id: Set(*label_id),
    }))
    .exec_without_returning(conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// The column a sort key orders by.
fn sort_column(key: TaskSortKey) -> Column {
    match key {
        TaskSortKey::CreatedAt => Column::CreatedAt,
        TaskSortKey::UpdatedAt => Column::UpdatedAt,
        TaskSortKey::Priority => Column::PriorityRank,
        TaskSortKey::DueDate => Column::DueDate,
    }
}

/// The id strictly beyond `id` in the list's direction.
fn id_beyond(id: Uuid, descending: bool) -> Expr {
    if descending {
        Column::Id.lt(id)
    } else {
        Column::Id.gt(id)
    }
}

/// Rows whose non-null `(column, id)` comes strictly after `(value, id)` in the direction.
///
/// Written as one row-value comparison, `(column, id) > (value, id)` (`<` descending):
/// PostgreSQL and SQLite both take it as the start of the range scan on the index
/// `(project_id, column, id)`, so a deep cursor seeks to its exact position. A bound on the
/// column alone (`column >= value AND (column > value OR id > after_id)`) only seeks to the
/// first row with that value, and a column with few values (priority has five) then reads
/// and discards up to a fifth of the project before the page.
fn beyond(column: Column, value: Value, id: Uuid, descending: bool) -> Condition {
    let row = Expr::tuple([Expr::col((Entity, column)), Expr::col((Entity, Column::Id))]);
    let at = Expr::tuple([Expr::val(value), Expr::val(id)]);
    // `any`: callers add alternatives (undated tasks) to it.
    Condition::any().add(if descending { row.lt(at) } else { row.gt(at) })
}

/// The keyset predicate "strictly after `after`" in `sort`'s order.
///
/// Ascending due dates put tasks without one after every date, so descending (the exact
/// reverse) puts them first; the NULLs are handled explicitly, as comparisons with NULL are
/// never true.
fn after_position(sort: TaskSort, after: &TaskPosition) -> Result<Condition, StoreError> {
    let desc = sort.descending;
    let condition = match (sort.key, after.value) {
        (TaskSortKey::CreatedAt | TaskSortKey::UpdatedAt, SortValue::Time(at)) => {
            beyond(sort_column(sort.key), at.into(), after.id, desc)
        }
        (TaskSortKey::Priority, SortValue::Rank(rank)) => {
            beyond(Column::PriorityRank, rank.into(), after.id, desc)
        }
        (TaskSortKey::DueDate, SortValue::Date(Some(date))) => {
            let dated = beyond(Column::DueDate, date.into(), after.id, desc);
            if desc {
                // Undated tasks came first: all of them are behind.
                dated
            } else {
                // Undated tasks come after every date.
                Condition::any().add(dated).add(Column::DueDate.is_null())
            }
        }
        (TaskSortKey::DueDate, SortValue::Date(None)) => {
            let undated = Condition::all()
                .add(Column::DueDate.is_null())
                .add(id_beyond(after.id, desc));
            if desc {
                // Every dated task follows the undated ones.
                Condition::any().add(undated).add(Column::DueDate.is_not_null())
            } else {
                Condition::any().add(undated)
            }
        }
        _ => {
            return Err(StoreError::Unexpected(
                format!("a task cursor of another sort was used with {:?}", sort.key).into(),
            ));
        }
    };
    Ok(condition)
}

fn filter_condition(query: &TaskQuery, backend: DbBackend) -> Condition {
    let filter = &query.filter;
    let mut condition = Condition::all();
    match query.scope {
        Scope::Project(project_id) => condition = condition.add(Column::ProjectId.eq(project_id)),
        Scope::MemberOf(user_id) => {
            condition = condition.add(
                Column::ProjectId.in_subquery(
                    Query::select()
                        .column(project_members::Column::ProjectId)
                        .from(project_members::Entity)
                        .and_where(Expr::col(project_members::Column::UserId).eq(user_id))
                        .to_owned(),
                ),
            );
        }
        Scope::All => {}
    }
    if let Some(ids) = &filter.projects {
        condition = condition.add(Column::ProjectId.is_in(ids.iter().copied()));
    }
    if !filter.statuses.is_empty() {
        condition = condition.add(Column::Status.is_in(filter.statuses.iter().map(StateKey::as_str)));
    }
    if !filter.categories.is_empty() {
        condition = condition.add(Column::StatusCategory.is_in(filter.categories.iter().map(|c| c.as_str())));
    }
    if !filter.priorities.is_empty() {
        condition =
            condition.add(Column::Priority.is_in(filter.priorities.iter().map(|p| i16::from(p.value()))));
    }
    match filter.assignee {
        Some(AssigneeFilter::User(user_id)) => condition = condition.add(Column::AssigneeId.eq(user_id)),
        Some(AssigneeFilter::Unassigned) => condition = condition.add(Column::AssigneeId.is_null()),
        None => {}
    }
    if !filter.labels.is_empty() || !filter.label_ids.is_empty() {
        let mut any = Condition::any();
        if !filter.labels.is_empty() {
            any = any.add(
                Expr::col((labels::Entity, labels::Column::Name))
                    .is_in(filter.labels.iter().map(|l| l.as_str().to_owned())),
            );
        }
        if !filter.label_ids.is_empty() {
            any = any.add(
                Expr::col((task_labels::Entity, task_labels::Column::LabelId))
                    .is_in(filter.label_ids.iter().copied()),
            );
        }
        let carrying = Query::select()
            .expr(Expr::val(1))
            .from(task_labels::Entity)
            .inner_join(
                labels::Entity,
                Expr::col((labels::Entity, labels::Column::Id))
                    .equals((task_labels::Entity, task_labels::Column::LabelId)),
            )
            .cond_where(
                Condition::all()
                    .add(
                        Expr::col((task_labels::Entity, task_labels::Column::TaskId))
                            .equals((Entity, Column::Id)),
                    )
                    .add(any),
            )
            .to_owned();
        condition = condition.add(Expr::exists(carrying));
    }
    if let Some(q) = &filter.q {
        // The search index (title, description, identifier).
        let terms = SearchTerms::parse(q);
        condition = condition.add(task_list_match(backend, &terms));
    }
    if let Some(since) = filter.updated_since {
        condition = condition.add(Column::UpdatedAt.gte(since));
    }
    if let Some(blocked) = filter.blocked {
        let exists = Expr::cust(format!("EXISTS (SELECT 1 {})", open_blockers()));
        condition = condition.add(if blocked { exists } else { exists.not() });
    }
    match filter.parent {
        Some(ParentFilter::Task(parent)) => condition = condition.add(parent_of_task().eq(parent)),
        Some(ParentFilter::TopLevel) => condition = condition.add(parent_of_task().is_null()),
        None => {}
    }
    match filter.archived {
        ArchivedFilter::Exclude => condition = condition.add(Column::ArchivedAt.is_null()),
        ArchivedFilter::Only => condition = condition.add(Column::ArchivedAt.is_not_null()),
        ArchivedFilter::Include => {}
    }
    condition
}

/// `UPDATE projects SET last_task_number = last_task_number + 1 WHERE id = ? RETURNING
/// last_task_number, key`: hands out the project's next task number (no row: no project).
fn next_number(project_id: Uuid) -> sea_orm::sea_query::UpdateStatement {
    Query::update()
        .table(projects::Entity)
        .value(
            projects::Column::LastTaskNumber,
            Expr::col(projects::Column::LastTaskNumber).add(1),
        )
        .and_where(Expr::col(projects::Column::Id).eq(project_id))
        .returning(Query::returning().columns([projects::Column::LastTaskNumber, projects::Column::Key]))
        .to_owned()
}

/// Orders a page in the sort's total order, `column` naming where each task column is read
/// (the tasks table, or the page's subquery).
fn order_page(query: &mut SelectStatement, sort: TaskSort, column: impl Fn(Column) -> Expr) {
    let order = if sort.descending { Order::Desc } else { Order::Asc };
    match sort.key {
        // Undated last ascending, hence first descending; explicit, so that SQLite (NULLs
        // smallest) and PostgreSQL (NULLs largest) agree.
        TaskSortKey::DueDate => {
            let nulls = if sort.descending {
                NullOrdering::First
            } else {
                NullOrdering::Last
            };
            query.order_by_expr_with_nulls(column(Column::DueDate), order.clone(), nulls);
        }
        key => {
            query.order_by_expr(column(sort_column(key)), order.clone());
        }
    }
    query.order_by_expr(column(Column::Id), order);
}

/// How many tasks of a list with `q` a [`Reading::Window`] reads (as the search's levels:
/// adr/0020-search-index.md, "Common words").
const LIST_WINDOW: u64 = crate::tracking::search::WINDOW;

/// The column of a [`Reading::Window`] page holding how many tasks its window read.
const WINDOW_ROWS: &str = "t_window_rows";

/// How a page is read. Without `q`, or on SQLite, always [`Reading::Table`]. With `q` on
/// PostgreSQL, whose estimate of a prefix search is the same for every word, the store
/// chooses from what it reads: first the window (the list's first tasks without `q`, in its
/// order, then `q` on those: a common word fills the page at once), then — when the window
/// held too few and not every task of the list — the index's matches, sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Table,
    Window(u64),
    Found,
}

/// One page of a task list: filtered, after the cursor, in the sort's total order, each task
/// with its project's key and labels — one statement, read as `reading` says.
fn list_select(
    query: &TaskQuery,
    backend: DbBackend,
    reading: Reading,
) -> Result<SelectStatement, StoreError> {
    let position = |select: &mut SelectStatement| -> Result<(), StoreError> {
        if let Some(after) = &query.after {
            select.cond_where(after_position(query.sort, after)?);
        }
        Ok(())
    };
    let q = query.filter.q.as_deref().filter(|_| reading != Reading::Table);
    let mut select = select_tasks(backend);
    match (q, reading) {
        (Some(q), Reading::Window(window)) => {
            let mut plain = query.clone();
            plain.filter.q = None;
            let mut first = Query::select();
            first
                .column((Entity, Asterisk))
                .from(Entity)
                .cond_where(filter_condition(&plain, backend));
            position(&mut first)?;
            order_page(&mut first, query.sort, |c| Expr::col((Entity, c)));
            first.limit(window);
            let newest = Alias::new("newest");
            let mut counted = Query::select();
            counted
                .column((newest.clone(), Asterisk))
                .expr_as(Expr::cust("COUNT(*) OVER ()"), Alias::new("window_rows"))
                .from_subquery(first, newest);
            select
                .from_clear()
                .from_subquery(counted, Entity)
                .expr_as(
                    Expr::col((Entity, Alias::new("window_rows"))),
                    Alias::new(WINDOW_ROWS),
                )
                .cond_where(task_list_match(backend, &SearchTerms::parse(q)));
        }
        (Some(_), _) => {
            // `OFFSET 0`: planned on its own (the index's matches), not merged into the
            // outer `ORDER BY … LIMIT` (a walk of the sort's index testing every task).
            let mut found = Query::select();
            found
                .column((Entity, Asterisk))
                .from(Entity)
                .cond_where(filter_condition(query, backend))
                .offset(0);
            position(&mut found)?;
            select.from_clear().from_subquery(found, Entity);
        }
        (None, _) => {
            select.cond_where(filter_condition(query, backend));
            position(&mut select)?;
        }
    }
    order_page(&mut select, query.sort, |c| Expr::col((Entity, c)));
    select.limit(query.limit);
    Ok(select)
}

/// How many tasks the list would hold without `q`, counted up to `window`.
fn list_size(query: &TaskQuery, backend: DbBackend, window: u64) -> Result<SelectStatement, StoreError> {
    let mut plain = query.clone();
    plain.filter.q = None;
    let mut listed = Query::select();
    listed
        .expr(Expr::val(1))
        .from(Entity)
        .cond_where(filter_condition(&plain, backend));
    if let Some(after) = &query.after {
        listed.cond_where(after_position(query.sort, after)?);
    }
    listed.limit(window);
    let mut select = Query::select();
    select
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from_subquery(listed, Alias::new("listed"));
    Ok(select)
}

/// [`list_select`] of one project as a subquery, joined to the project and the caller's
/// membership: the page and the caller's access in one statement, with one row (no task)
/// when the page is empty and none when the project does not exist.
fn page_with_access_select(
    project_id: Uuid,
    user_id: Uuid,
    query: &TaskQuery,
    backend: DbBackend,
    reading: Reading,
) -> Result<SelectStatement, StoreError> {
    let page = Alias::new("page");
    let read = |name: String| Expr::col((page.clone(), Alias::new(name)));
    let mut select = Query::select();
    for column in Column::iter().map(|c| format!("t_{}", c.as_str())) {
        select.expr_as(read(column.clone()), Alias::new(column));
    }
    for extra in EXTRAS {
        select.expr_as(read(extra.to_owned()), Alias::new(extra));
    }
    if matches!(reading, Reading::Window(_)) {
        select.expr_as(read(WINDOW_ROWS.to_owned()), Alias::new(WINDOW_ROWS));
    }
    select.from(projects::Entity);
    with_access(&mut select, user_id);
    select
        .join_subquery(
            JoinType::LeftJoin,
            list_select(query, backend, reading)?,
            page.clone(),
            Expr::val(1).eq(1),
        )
        .and_where(Expr::col((projects::Entity, projects::Column::Id)).eq(project_id));
    order_page(&mut select, query.sort, |c| read(format!("t_{}", c.as_str())));
    Ok(select)
}

/// What a window's page says of the list: `Some(true)` when it is the page (full, or the
/// window held the whole list), `Some(false)` when the index must be asked, `None` when it
/// cannot tell (no task in the page: the window's size is not in any row).
fn window_verdict(
    rows: &[QueryResult],
    tasks: usize,
    limit: u64,
    window: u64,
) -> Result<Option<bool>, StoreError> {
    if tasks as u64 >= limit {
        return Ok(Some(true));
    }
    for row in rows {
        let read: Option<i64> = row.try_get("", WINDOW_ROWS).map_err(store_error)?;
        if let Some(read) = read {
            return Ok(Some(u64::try_from(read).is_ok_and(|read| read < window)));
        }
    }
    Ok(None)
}

impl SeaOrmTaskRepository {
    /// The reading of a list: [`Reading::Table`] unless `q` on PostgreSQL.
    fn first_reading(&self, query: &TaskQuery) -> Reading {
        if query.filter.q.is_some() && self.db.backend() == DbBackend::Postgres {
            Reading::Window(self.list_window)
        } else {
            Reading::Table
        }
    }

    /// After a window's page fell short: whether the window held the whole list (`verdict`,
    /// else counted), i.e. whether the page stands.
    async fn window_held_all(&self, query: &TaskQuery, verdict: Option<bool>) -> Result<bool, StoreError> {
        if let Some(verdict) = verdict {
            return Ok(verdict);
        }
        let backend = self.db.backend();
        let rows = self
            .db
            .query_all_planned(backend.build(&list_size(query, backend, self.list_window)?))
            .await?;
        let listed: i64 = match rows.first() {
            Some(row) => row.try_get("", "n").map_err(store_error)?,
            None => 0,
        };
        Ok(u64::try_from(listed).is_ok_and(|listed| listed < self.list_window))
    }
}

#[async_trait]
impl TaskRepository for SeaOrmTaskRepository {
    async fn create(
        &self,
        new: &NewTask,
        change: &Change,
        data: EventData<Task>,
    ) -> Result<Task, StoreError> {
        let task = &new.task;
        let txn = self.db.begin_write().await?;
        // First statement of the transaction: on PostgreSQL it locks the project row until
        // commit, on SQLite it takes the write lock, so racing creates (on any instance) queue
        // here. A failed insert below rolls the increment back: numbers stay gap-free.
        let numbered = txn
            .query_one(&next_number(task.project_id))
            .await
            .map_err(store_error)?;
        let Some(numbered) = numbered else {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        };
        // The task's state, as it is now (state writes hold the project row too, so none is
        // half-way): gone or of another category since the caller read it, nothing is written.
        if state_category(&txn, task.project_id, &task.status).await? != Some(task.status_category) {
            roll_back(txn).await?;
            return Err(StoreError::Conflict("the task's state changed".into()));
        }
        let number: i64 = numbered.try_get("", "last_task_number").map_err(store_error)?;
        let key: String = numbered.try_get("", "key").map_err(store_error)?;
        let project_key = ProjectKey::parse(&key).map_err(|_| corrupt("projects", task.project_id, "key"))?;
        // Under the project's lock (taken by the number's update): placed as it is now.
        if let Some(parent) = task.parent_id
            && let Err(refused) = check_placement(&txn, None, parent, task.project_id).await?
        {
            roll_back(txn).await?;
            return Err(refused);
        }

        Entity::insert(tasks::ActiveModel {
            id: Set(task.id),
            project_id: Set(task.project_id),
            number: Set(number),
            title: Set(task.title.as_str().to_owned()),
            title_folded: Set(fold(task.title.as_str())),
            description: Set(task.description.clone()),
            status: Set(task.status.as_str().to_owned()),
            status_category: Set(task.status_category.as_str().to_owned()),
            priority: Set(i16::from(task.priority.value())),
            priority_rank: Set(task.priority.rank()),
            assignee_id: Set(task.assignee_id),
            due_date: Set(task.due_date),
            created_by: Set(task.created_by),
            created_at: Set(task.created_at),
            updated_at: Set(task.updated_at),
            completed_at: Set(task.completed_at),
            version: Set(task.version),
            archived_at: Set(task.archived_at),
            deleted_at: Set(task.deleted_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        if task.parent_id.is_some() {
            Entity::update_many()
                .col_expr(parent_column(), Expr::value(task.parent_id))
                .filter(Column::Id.eq(task.id))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        let label_ids = distinct(&new.label_ids);
        insert_labels(&txn, task.id, &label_ids).await?;
        let (labels, label_ids) = labels_of(&txn, &[task.id])
            .await?
            .remove(&task.id)
            .unwrap_or_default();
        let stored = Task {
            project_key,
            number,
            labels,
            label_ids,
            ..task.clone()
        };
        commit_change(&self.db, txn, &change.with_data(data(&stored))).await?;
        Ok(stored)
    }

    async fn find(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        let mut select = select_tasks(self.db.backend());
        select.and_where(Expr::col((Entity, Column::Id)).eq(id));
        self.one_task(&select)
            .await
            .map(|found| found.map(|(task, _)| task))
    }

    async fn find_by_number(&self, key: &ProjectKey, number: i64) -> Result<Option<Task>, StoreError> {
        let mut select = select_tasks(self.db.backend());
        by_number(&mut select, key, number);
        self.one_task(&select)
            .await
            .map(|found| found.map(|(task, _)| task))
    }

    async fn find_with_access(
        &self,
        id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<(Task, ProjectAccess)>, StoreError> {
        let mut select = select_tasks(self.db.backend());
        with_access(&mut select, user_id);
        select.and_where(Expr::col((Entity, Column::Id)).eq(id));
        self.one_task_with_access(&select).await
    }

    async fn find_many_with_access<'a>(
        &self,
        ids: &'a [Uuid],
        numbers: &'a [(ProjectKey, i64)],
        user_id: Uuid,
    ) -> Result<Vec<(Task, ProjectAccess)>, StoreError> {
        if ids.is_empty() && numbers.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = select_tasks(self.db.backend());
        with_access(&mut select, user_id);
        let mut named = Condition::any();
        if !ids.is_empty() {
            named = named.add(Expr::col((Entity, Column::Id)).is_in(ids.iter().copied()));
        }
        for (key, number) in numbers {
            named = named.add(
                Condition::all()
                    .add(Expr::col((projects::Entity, projects::Column::Key)).eq(key.as_str()))
                    .add(Expr::col((Entity, Column::Number)).eq(*number)),
            );
        }
        select.cond_where(named);
        let rows = self
            .db
            .connection()
            .query_all(&select)
            .await
            .map_err(store_error)?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(task) = task_from_row(row)? {
                found.push((task, access_from_row(row)?));
            }
        }
        Ok(found)
    }

    async fn find_by_number_with_access(
        &self,
        key: &ProjectKey,
        number: i64,
        user_id: Uuid,
    ) -> Result<Option<(Task, ProjectAccess)>, StoreError> {
        let mut select = select_tasks(self.db.backend());
        with_access(&mut select, user_id);
        by_number(&mut select, key, number);
        self.one_task_with_access(&select).await
    }

    async fn update<'a>(
        &self,
        task: &Task,
        label_ids: Option<&'a [Uuid]>,
        expected_version: i64,
        change: &Change,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        // To the trash: out of the tree, under the project's lock, whatever the caller knew
        // of its place (a child may have come since it read the task).
        let trashed = task.deleted_at.is_some();
        if trashed {
            lock_project(&txn, task.project_id).await?;
        }
        if !write_task(&txn, task, label_ids, expected_version, trashed).await? {
            roll_back(txn).await?;
            return Ok(false);
        }
        if trashed {
            detach_children(&txn, task.id, task.updated_at).await?;
        }
        commit_change(&self.db, txn, change).await?;
        Ok(true)
    }

    async fn update_many(&self, writes: &[TaskWrite]) -> Result<Vec<Uuid>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_write().await?;
        // The tasks' states held first (a state write waits, or was waited for), as in
        // `write_task`: a task whose state is gone or of another category is not written.
        let states = states_held(&txn, writes).await?;
        let mut eligible: Vec<&TaskWrite> = writes
            .iter()
            .filter(|w| {
                states.contains(&(
                    w.task.project_id,
                    w.task.status.as_str().to_owned(),
                    w.task.status_category.as_str().to_owned(),
                ))
            })
            .collect();
        // In id order: two bulk writes over the same tasks take their rows in the same
        // order (the plan walks the list), so they queue instead of deadlocking.
        eligible.sort_by_key(|w| w.task.id);
        let mut written = BTreeSet::new();
        for chunk in eligible.chunks(ROWS_PER_STATEMENT) {
            written.extend(write_tasks(&txn, chunk).await?);
        }
        let applied: Vec<&TaskWrite> = writes.iter().filter(|w| written.contains(&w.task.id)).collect();
        if applied.is_empty() {
            roll_back(txn).await?;
            return Ok(Vec::new());
        }
        let relabeled: Vec<(Uuid, &[Uuid])> = applied
            .iter()
            .filter_map(|w| w.label_ids.as_deref().map(|ids| (w.task.id, ids)))
            .collect();
        for chunk in relabeled.chunks(ROWS_PER_STATEMENT) {
            replace_labels(&txn, chunk).await?;
        }
        // Per project, the first entry checks the actor's authority after the rows it
        // changes are held (see `insert_entry`); the others are the same actor's in the same
        // transaction, already checked.
        let mut checked: Vec<Uuid> = Vec::new();
        let mut held: Vec<&AuditEntry> = Vec::new();
        for write in &applied {
            let project = write.task.project_id;
            if checked.contains(&project) {
                held.push(&write.change.audit);
            } else {
                insert_entry(&txn, &write.change.audit).await?;
                checked.push(project);
            }
        }
        for chunk in held.chunks(ROWS_PER_STATEMENT) {
            insert_held_entries(&txn, chunk).await?;
        }
        let events: Vec<&Envelope> = applied.iter().map(|w| &w.change.event).collect();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            insert_events(&txn, chunk).await?;
        }
        commit_recorded(&self.db, txn).await?;
        Ok(applied.iter().map(|w| w.task.id).collect())
    }

    async fn update_tree<'a>(
        &self,
        task: &Task,
        label_ids: Option<&'a [Uuid]>,
        expected_version: i64,
        tree: TreeChange,
        change: &Change,
    ) -> Result<TreeWrite, StoreError> {
        let txn = self.db.begin_write().await?;
        // First: every change of the project's tree waits here for the one before it
        // (creates wait on the same row for their number).
        if !lock_project(&txn, task.project_id).await? {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        let old_parent = stored_parent(&txn, task.id, expected_version).await?;
        let Some(old_parent) = old_parent else {
            // Changed or gone since it was read: the caller reads it again.
            roll_back(txn).await?;
            return Ok(TreeWrite::default());
        };
        let mut others: Vec<Uuid> = old_parent.into_iter().collect();
        match tree {
            TreeChange::Reparent => {
                if let Some(parent) = task.parent_id {
                    if let Err(refused) =
                        check_placement(&txn, Some(task.id), parent, task.project_id).await?
                    {
                        roll_back(txn).await?;
                        return Err(refused);
                    }
                    others.push(parent);
                }
            }
            TreeChange::Trash => {
                let children = detach_children(&txn, task.id, task.updated_at).await?;
                others.extend(children);
            }
        }
        if !write_task(&txn, task, label_ids, expected_version, true).await? {
            roll_back(txn).await?;
            return Ok(TreeWrite::default());
        }
        commit_change(&self.db, txn, change).await?;
        others.sort_unstable();
        others.dedup();
        Ok(TreeWrite {
            applied: true,
            others,
        })
    }

    async fn archive_subtree(&self, archive: &SubtreeArchive) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        // First: the subtree cannot grow or move meanwhile (creates and parent changes of
        // the project take the same lock).
        if !lock_project(&txn, archive.project_id).await? {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        let archived_at = match archive.action {
            SubtreeAction::Archive { at } => Some(at),
            SubtreeAction::Unarchive { .. } => None,
        };
        let mut written = 0;
        for chunk in archive.writes.chunks(ROWS_PER_STATEMENT) {
            written += write_archived(&txn, chunk, archived_at, archive.updated_at).await?;
        }
        if written != archive.writes.len() as u64 || !subtree_settled(&txn, archive).await? {
            // A task changed or gone since it was read, or one the caller did not know of.
            roll_back(txn).await?;
            return Ok(false);
        }
        // The first entry checks the actor's authority after the rows it changes are held
        // (see `insert_entry`); the others are the same actor's in the same transaction.
        let Some((first, rest)) = archive.writes.split_first() else {
            roll_back(txn).await?;
            return Ok(true);
        };
        insert_entry(&txn, &first.change.audit).await?;
        let rest: Vec<&AuditEntry> = rest.iter().map(|w| &w.change.audit).collect();
        for chunk in rest.chunks(ROWS_PER_STATEMENT) {
            insert_held_entries(&txn, chunk).await?;
        }
        let events: Vec<&Envelope> = archive.writes.iter().map(|w| &w.change.event).collect();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            insert_events(&txn, chunk).await?;
        }
        commit_recorded(&self.db, txn).await?;
        Ok(true)
    }

    async fn placement(&self, task: Option<Uuid>, parent_id: Uuid) -> Result<Option<Placement>, StoreError> {
        placement_in(self.db.connection(), task, parent_id).await
    }

    async fn descendants(&self, id: Uuid) -> Result<Vec<Task>, StoreError> {
        let backend = self.db.backend();
        let mut ids = Vec::new();
        let mut level = vec![id];
        // One statement per level (at most five).
        for _ in 0..MAX_TASK_DEPTH {
            let mut select = select_tasks(backend);
            select
                .and_where(parent_of_task().is_in(level.clone()))
                .order_by((Entity, Column::CreatedAt), Order::Asc)
                .order_by((Entity, Column::Id), Order::Asc);
            let rows = self.db.query_all_planned(backend.build(&select)).await?;
            let tasks = rows
                .iter()
                .filter_map(|row| task_from_row(row).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            if tasks.is_empty() {
                break;
            }
            level = tasks.iter().map(|t| t.id).collect();
            ids.extend(tasks);
        }
        Ok(ids)
    }

    async fn child_ids(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(parent_of_task().eq(id))
            .into_tuple()
            .all(self.db.connection())
            .await
            .map_err(store_error)
    }

    async fn find_trashed(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        let mut select = select_any_task(self.db.backend());
        select
            .and_where(Expr::col((Entity, Column::Id)).eq(id))
            .and_where(Expr::col((Entity, Column::DeletedAt)).is_not_null());
        self.one_task(&select)
            .await
            .map(|found| found.map(|(task, _)| task))
    }

    async fn find_trashed_by_number(
        &self,
        key: &ProjectKey,
        number: i64,
    ) -> Result<Option<Task>, StoreError> {
        let mut select = select_any_task(self.db.backend());
        by_number(&mut select, key, number);
        select.and_where(Expr::col((Entity, Column::DeletedAt)).is_not_null());
        self.one_task(&select)
            .await
            .map(|found| found.map(|(task, _)| task))
    }

    async fn purge(
        &self,
        id: Uuid,
        trashed_before: Option<DateTime<Utc>>,
        change: &Change,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().await?;
        // Under the project's lock, like every change of its tree: no child is placed under
        // the task meanwhile.
        lock_project(&txn, change.project_id()).await?;
        let mut delete = Entity::delete_many().filter(Column::Id.eq(id));
        if let Some(before) = trashed_before {
            delete = delete.filter(Column::DeletedAt.lt(before));
        }
        // Its labels and comments go by the foreign keys' ON DELETE CASCADE; the project's
        // `last_task_number` stays, so the number is never handed out again.
        let result = delete.exec(&txn).await.map_err(store_error)?;
        if result.rows_affected > 0 {
            detach_children(&txn, id, change.audit.occurred_at).await?;
        }
        finish_guarded(&self.db, txn, result.rows_affected, change).await
    }

    async fn trash_page(
        &self,
        project_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Task>, StoreError> {
        let backend = self.db.backend();
        let mut select = select_any_task(backend);
        select
            .and_where(Expr::col((Entity, Column::ProjectId)).eq(project_id))
            .and_where(Expr::col((Entity, Column::DeletedAt)).is_not_null());
        if let Some((at, id)) = after {
            select.cond_where(beyond(Column::DeletedAt, at.into(), id, true));
        }
        select
            .order_by((Entity, Column::DeletedAt), Order::Desc)
            .order_by((Entity, Column::Id), Order::Desc)
            .limit(limit);
        let rows = self.db.query_all_planned(backend.build(&select)).await?;
        rows.iter()
            .filter_map(|row| task_from_row(row).transpose())
            .collect()
    }

    async fn expired_trash(&self, before: DateTime<Utc>, limit: u64) -> Result<Vec<Task>, StoreError> {
        let backend = self.db.backend();
        let mut select = select_any_task(backend);
        select
            .and_where(Expr::col((Entity, Column::DeletedAt)).lt(before))
            .order_by((Entity, Column::DeletedAt), Order::Asc)
            .order_by((Entity, Column::Id), Order::Asc)
            .limit(limit);
        let rows = self.db.query_all_planned(backend.build(&select)).await?;
        rows.iter()
            .filter_map(|row| task_from_row(row).transpose())
            .collect()
    }

    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>, StoreError> {
        let backend = self.db.backend();
        let tasks_of = |rows: &[QueryResult]| -> Result<Vec<Task>, StoreError> {
            rows.iter()
                .filter_map(|row| task_from_row(row).transpose())
                .collect()
        };
        let reading = self.first_reading(query);
        let rows = self
            .db
            .query_all_planned(backend.build(&list_select(query, backend, reading)?))
            .await?;
        let tasks = tasks_of(&rows)?;
        if let Reading::Window(window) = reading {
            let verdict = window_verdict(&rows, tasks.len(), query.limit, window)?;
            if !self.window_held_all(query, verdict).await? {
                let select = list_select(query, backend, Reading::Found)?;
                return tasks_of(&self.db.query_all_planned(backend.build(&select)).await?);
            }
        }
        Ok(tasks)
    }

    async fn page_with_access(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        query: &TaskQuery,
    ) -> Result<Option<(ProjectAccess, Vec<Task>)>, StoreError> {
        let backend = self.db.backend();
        let mut reading = self.first_reading(query);
        loop {
            let select = page_with_access_select(project_id, user_id, query, backend, reading)?;
            // A page: planned with its values every time (a filter may match one task or most).
            let rows = self.db.query_all_planned(backend.build(&select)).await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let access = access_from_row(first)?;
            let tasks = rows
                .iter()
                .filter_map(|row| task_from_row(row).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            if let Reading::Window(window) = reading {
                let verdict = window_verdict(&rows, tasks.len(), query.limit, window)?;
                if !self.window_held_all(query, verdict).await? {
                    reading = Reading::Found;
                    continue;
                }
            }
            return Ok(Some((access, tasks)));
        }
    }
}

/// Saves every field of `task` but its parent (and, with `parent`, its parent too) guarded by
/// `expected_version`, and replaces its labels when given; `false` when the version differed.
async fn write_task(
    txn: &DatabaseTransaction,
    task: &Task,
    label_ids: Option<&[Uuid]>,
    expected_version: i64,
    parent: bool,
) -> Result<bool, StoreError> {
    // The task's state held first (a state write waits, or was waited for): gone or of
    // another category since the caller read it, nothing is written and the caller reads
    // again.
    if state_category(txn, task.project_id, &task.status).await? != Some(task.status_category) {
        return Ok(false);
    }
    let mut update = Entity::update_many()
        .col_expr(Column::Title, Expr::value(task.title.as_str()))
        .col_expr(Column::TitleFolded, Expr::value(fold(task.title.as_str())))
        .col_expr(Column::Description, Expr::value(task.description.clone()))
        .col_expr(Column::Status, Expr::value(task.status.as_str()))
        .col_expr(Column::StatusCategory, Expr::value(task.status_category.as_str()))
        .col_expr(Column::Priority, Expr::value(i16::from(task.priority.value())))
        .col_expr(Column::PriorityRank, Expr::value(task.priority.rank()))
        .col_expr(Column::AssigneeId, Expr::value(task.assignee_id))
        .col_expr(Column::DueDate, Expr::value(task.due_date))
        .col_expr(Column::UpdatedAt, Expr::value(task.updated_at))
        .col_expr(Column::CompletedAt, Expr::value(task.completed_at))
        .col_expr(Column::ArchivedAt, Expr::value(task.archived_at))
        .col_expr(Column::DeletedAt, Expr::value(task.deleted_at))
        .col_expr(Column::Version, Expr::value(expected_version + 1));
    if parent {
        update = update.col_expr(parent_column(), Expr::value(task.parent_id));
    }
    let result = update
        .filter(Column::Id.eq(task.id))
        .filter(Column::Version.eq(expected_version))
        .exec(txn)
        .await
        .map_err(store_error)?;
    if result.rows_affected == 0 {
        return Ok(false);
    }
    if let Some(label_ids) = label_ids {
        task_labels::Entity::delete_many()
            .filter(task_labels::Column::TaskId.eq(task.id))
            .exec(txn)
            .await
            .map_err(store_error)?;
        insert_labels(txn, task.id, &distinct(label_ids)).await?;
    }
    Ok(true)
}

/// At most this many rows per statement of a set-based write (`archive_subtree`): the
/// bound parameters stay far below both databases' limits (PostgreSQL 65 535, SQLite
/// 32 766), and a subtree of any size is a few statements.
const ROWS_PER_STATEMENT: usize = 500;

/// The `n`th bound parameter (from 1) of a raw statement, which may appear more than once:
/// `$n` on PostgreSQL, `?n` on SQLite.
pub(super) fn numbered_param(backend: DbBackend) -> impl Fn(usize) -> String {
    move |n| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// The `(project, key, category)` of the states `writes` put their tasks in, held until the
/// end of the transaction (`FOR SHARE` on PostgreSQL; SQLite's write transaction holds the
/// database): one statement.
async fn states_held(
    txn: &DatabaseTransaction,
    writes: &[TaskWrite],
) -> Result<BTreeSet<(Uuid, String, String)>, StoreError> {
    let backend = txn.get_database_backend();
    let param = numbered_param(backend);
    let mut wanted: Vec<(Uuid, &str)> = writes
        .iter()
        .map(|w| (w.task.project_id, w.task.status.as_str()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut values: Vec<Value> = Vec::with_capacity(wanted.len() * 2);
    let mut pairs = Vec::with_capacity(wanted.len());
    for (project, key) in wanted {
        pairs.push(format!(
            "({}, {})",
            param(values.len() + 1),
            param(values.len() + 2)
        ));
        values.push(project.into());
        values.push(key.into());
    }
    let lock = if backend == DbBackend::Postgres {
        " FOR SHARE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT project_id, \"key\" AS state_key, category FROM workflow_states \
         WHERE (project_id, \"key\") IN (VALUES {}){lock}",
        pairs.join(", ")
    );
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<Uuid>("", "project_id").map_err(store_error)?,
                row.try_get::<String>("", "state_key").map_err(store_error)?,
                row.try_get::<String>("", "category").map_err(store_error)?,
            ))
        })
        .collect()
}

/// Saves every field of each write's task but its parent and `deleted_at` (a live task
/// only), each at its expected version, in one statement: `UPDATE … FROM (VALUES …)` with
/// `RETURNING` (PostgreSQL, and SQLite since 3.35), which both name the list's columns
/// `column1`, `column2`, …; answers the ids written.
async fn write_tasks(txn: &DatabaseTransaction, writes: &[&TaskWrite]) -> Result<Vec<Uuid>, StoreError> {
    const COLUMNS: [&str; 12] = [
        "title",
        "title_folded",
        "description",
        "status",
        "status_category",
        "priority",
        "priority_rank",
        "assignee_id",
        "due_date",
        "updated_at",
        "completed_at",
        "archived_at",
    ];
    let backend = txn.get_database_backend();
    let param = numbered_param(backend);
    let mut values: Vec<Value> = Vec::with_capacity(writes.len() * (COLUMNS.len() + 2));
    let mut rows = Vec::with_capacity(writes.len());
    for write in writes {
        let task = &write.task;
        let row: [Value; COLUMNS.len() + 2] = [
            task.id.into(),
            write.expected_version.into(),
            task.title.as_str().into(),
            fold(task.title.as_str()).into(),
            task.description.clone().into(),
            task.status.as_str().into(),
            task.status_category.as_str().into(),
            i16::from(task.priority.value()).into(),
            task.priority.rank().into(),
            task.assignee_id.into(),
            task.due_date.into(),
            task.updated_at.into(),
            task.completed_at.into(),
            task.archived_at.into(),
        ];
        let start = values.len();
        rows.push(format!(
            "({})",
            (1..=row.len())
                .map(|n| param(start + n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        values.extend(row);
    }
    let set = COLUMNS
        .iter()
        .enumerate()
        .map(|(n, column)| format!("{column} = v.column{}", n + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE tasks SET {set}, version = v.column2 + 1 FROM (VALUES {}) AS v \
         WHERE tasks.id = v.column1 AND tasks.version = v.column2 AND tasks.deleted_at IS NULL \
         RETURNING tasks.id",
        rows.join(", ")
    );
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| row.try_get::<Uuid>("", "id").map_err(store_error))
        .collect()
}

/// Replaces the labels of each `(task, labels)`: one delete and one multi-row insert.
async fn replace_labels(txn: &DatabaseTransaction, tasks: &[(Uuid, &[Uuid])]) -> Result<(), StoreError> {
    task_labels::Entity::delete_many()
        .filter(task_labels::Column::TaskId.is_in(tasks.iter().map(|(id, _)| *id)))
        .exec(txn)
        .await
        .map_err(store_error)?;
    let rows: Vec<task_labels::ActiveModel> = tasks
        .iter()
        .flat_map(|(task_id, label_ids)| {
            distinct(label_ids)
                .into_iter()
                .map(move |label_id| task_labels::ActiveModel {
                    task_id: Set(*task_id),
                    label_id: Set(label_id),
                })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    task_labels::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Sets `archived_at` and `updated_at` (and `version + 1`) of the live tasks of `writes`,
/// each only at its expected version, in one statement; answers how many were written.
async fn write_archived(
    txn: &DatabaseTransaction,
    writes: &[SubtreeWrite],
    archived_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let backend = txn.get_database_backend();
    let param = numbered_param(backend);
    let mut values: Vec<Value> = vec![archived_at.into(), updated_at.into()];
    let mut pairs = Vec::with_capacity(writes.len());
    for write in writes {
        pairs.push(format!(
            "({}, {})",
            param(values.len() + 1),
            param(values.len() + 2)
        ));
        values.push(write.task_id.into());
        values.push(write.expected_version.into());
    }
    // `(id, version) IN (VALUES …)`: a row value against a list of rows, which both
    // databases take (SQLite wants the list as a subquery: `VALUES` is one).
    let sql = format!(
        "UPDATE tasks SET archived_at = {}, updated_at = {}, version = version + 1 \
         WHERE deleted_at IS NULL AND (id, version) IN (VALUES {})",
        param(1),
        param(2),
        pairs.join(", ")
    );
    let result = txn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map_err(store_error)?;
    Ok(result.rows_affected())
}

/// Whether the subtree of `archive.root` is as `archive.action` leaves it: the root archived
/// at `at` (not archived) and no live descendant left unarchived (archived at `at`). One
/// recursive statement, bounded so that a corrupt tree cannot loop.
async fn subtree_settled(txn: &DatabaseTransaction, archive: &SubtreeArchive) -> Result<bool, StoreError> {
    let backend = txn.get_database_backend();
    let param = numbered_param(backend);
    let (root_rule, left_rule, at) = match archive.action {
        SubtreeAction::Archive { at } => (
            format!("archived_at = {}", param(2)),
            "archived_at IS NULL".to_owned(),
            at,
        ),
        SubtreeAction::Unarchive { at } => (
            "archived_at IS NULL".to_owned(),
            format!("archived_at = {}", param(2)),
            at,
        ),
    };
    let bound = MAX_TASK_DEPTH * 2;
    let sql = format!(
        "WITH RECURSIVE down(id, depth) AS ( \
           SELECT id, 1 FROM tasks WHERE parent_id = {root} AND deleted_at IS NULL \
           UNION ALL \
           SELECT t.id, down.depth + 1 FROM tasks t JOIN down ON t.parent_id = down.id \
           WHERE down.depth < {bound} AND t.deleted_at IS NULL \
         ) SELECT \
           (SELECT COUNT(*) FROM tasks WHERE id = {root} AND deleted_at IS NULL AND {root_rule}) AS root_ok, \
           (SELECT COUNT(*) FROM tasks WHERE id IN (SELECT id FROM down) AND {left_rule}) AS left_over",
        root = param(1),
    );
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [archive.root.into(), at.into()],
        ))
        .await
        .map_err(store_error)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let root_ok: i64 = row.try_get("", "root_ok").map_err(store_error)?;
    let left_over: i64 = row.try_get("", "left_over").map_err(store_error)?;
    Ok(root_ok == 1 && left_over == 0)
}

/// The stored parent of the live task `id` at `version` (`Some(None)`: top-level); `None`
/// when the task is gone or at another version.
async fn stored_parent(
    conn: &impl ConnectionTrait,
    id: Uuid,
    version: i64,
) -> Result<Option<Option<Uuid>>, StoreError> {
    let found: Option<Option<Uuid>> = Entity::find_by_id(id)
        .select_only()
        .expr_as(parent_of_task(), "parent_id")
        .filter(Column::Version.eq(version))
        .into_tuple()
        .one(conn)
        .await
        .map_err(store_error)?;
    Ok(found)
}

/// Makes the children of `parent` top-level tasks, each with a new version and `at` as its
/// `updated_at`; returns their ids.
async fn detach_children(
    conn: &impl ConnectionTrait,
    parent: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<Uuid>, StoreError> {
    let children: Vec<Uuid> = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(parent_of_task().eq(parent))
        .into_tuple()
        .all(conn)
        .await
        .map_err(store_error)?;
    if !children.is_empty() {
        Entity::update_many()
            .col_expr(parent_column(), Expr::value(Option::<Uuid>::None))
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(parent_of_task().eq(parent))
            .exec(conn)
            .await
            .map_err(store_error)?;
    }
    Ok(children)
}

/// The tree around `parent_id` as it is stored now ([`Placement`]); `None` when it is no
/// live task. Two recursive statements (the same SQL on both databases), each bounded so
/// that a corrupt tree cannot loop.
async fn placement_in(
    conn: &impl ConnectionTrait,
    task: Option<Uuid>,
    parent_id: Uuid,
) -> Result<Option<Placement>, StoreError> {
    let backend = conn.get_database_backend();
    let param = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let bound = MAX_TASK_DEPTH * 2;
    let up = format!(
        "WITH RECURSIVE up(id, parent_id, project_id, deleted_at, depth) AS ( \
           SELECT id, parent_id, project_id, deleted_at, 0 FROM tasks WHERE id = {p} \
           UNION ALL \
           SELECT t.id, t.parent_id, t.project_id, t.deleted_at, up.depth + 1 FROM tasks t \
           JOIN up ON t.id = up.parent_id WHERE up.depth < {bound} \
         ) SELECT id, project_id, deleted_at IS NULL AS live FROM up ORDER BY depth",
        p = param(1)
    );
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, up, [parent_id.into()]))
        .await
        .map_err(store_error)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let live: bool = first.try_get("", "live").map_err(store_error)?;
    if !live {
        return Ok(None);
    }
    let parent_project_id: Uuid = first.try_get("", "project_id").map_err(store_error)?;
    let parent_ancestors = rows
        .iter()
        .skip(1)
        .map(|row| row.try_get::<Uuid>("", "id").map_err(store_error))
        .collect::<Result<Vec<_>, _>>()?;
    let subtree_height = match task {
        None => 1,
        Some(task) => {
            let down = format!(
                "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 1 FROM tasks WHERE id = {p} \
                   UNION ALL \
                   SELECT t.id, down.depth + 1 FROM tasks t JOIN down ON t.parent_id = down.id \
                   WHERE down.depth < {bound} AND t.deleted_at IS NULL \
                 ) SELECT CAST(MAX(depth) AS BIGINT) AS height FROM down",
                p = param(1)
            );
            let row = conn
                .query_one_raw(Statement::from_sql_and_values(backend, down, [task.into()]))
                .await
                .map_err(store_error)?;
            let height: Option<i64> = match row {
                Some(row) => row.try_get("", "height").map_err(store_error)?,
                None => None,
            };
            usize::try_from(height.unwrap_or(1)).unwrap_or(usize::MAX)
        }
    };
    Ok(Some(Placement {
        parent_id,
        parent_project_id,
        parent_ancestors,
        subtree_height,
    }))
}

/// [`Placement::check`] against the tree as stored now: `Ok(Err(Conflict("parent: …")))`
/// when the parent is gone or breaks a rule.
async fn check_placement(
    conn: &impl ConnectionTrait,
    task: Option<Uuid>,
    parent_id: Uuid,
    project_id: Uuid,
) -> Result<Result<(), StoreError>, StoreError> {
    let refused = |message: String| Ok(Err(StoreError::Conflict(format!("parent: {message}"))));
    match placement_in(conn, task, parent_id).await? {
        None => refused("must be a task of the same project".to_owned()),
        Some(placement) => match placement.check(task, project_id) {
            Ok(()) => Ok(Ok(())),
            Err(e) => refused(e.message),
        },
    }
}

/// Narrows a task read to the identifier `KEY-<number>`.
fn by_number(select: &mut SelectStatement, key: &ProjectKey, number: i64) {
    select
        .and_where(Expr::col((projects::Entity, projects::Column::Key)).eq(key.as_str()))
        .and_where(Expr::col((Entity, Column::Number)).eq(number));
}

impl SeaOrmTaskRepository {
    /// The task of a one-row read, if any.
    async fn one_task(&self, select: &SelectStatement) -> Result<Option<(Task, QueryResult)>, StoreError> {
        let Some(row) = self
            .db
            .connection()
            .query_one(select)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        Ok(task_from_row(&row)?.map(|task| (task, row)))
    }

    /// The task and the caller's access of a one-row read through [`with_access`].
    async fn one_task_with_access(
        &self,
        select: &SelectStatement,
    ) -> Result<Option<(Task, ProjectAccess)>, StoreError> {
        let Some((task, row)) = self.one_task(select).await? else {
            return Ok(None);
        };
        Ok(Some((task, access_from_row(&row)?)))
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use keel_domain::tracking::{TaskFilter, TaskPosition};
    use sea_orm::DbBackend;

    use super::*;

    fn sql(backend: DbBackend, sort: &str, after: Option<SortValue>) -> String {
        let query = TaskQuery {
            scope: Scope::Project(Uuid::nil()),
            filter: TaskFilter::default(),
            sort: TaskSort::parse(sort).unwrap(),
            after: after.map(|value| TaskPosition {
                value,
                id: Uuid::nil(),
            }),
            limit: 3,
        };
        backend
            .build(&list_select(&query, backend, Reading::Table).unwrap())
            .to_string()
    }

    #[test]
    fn the_next_number_is_one_statement_on_both_databases() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let sql = backend.build(&next_number(Uuid::nil())).to_string();
            assert!(
                sql.starts_with(r#"UPDATE "projects" SET "last_task_number" = "last_task_number" + 1 WHERE"#)
                    && sql.ends_with(r#"RETURNING "last_task_number", "key""#),
                "{sql}"
            );
        }
    }

    #[test]
    fn due_dates_order_their_nulls_explicitly_on_both_databases() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let asc = sql(backend, "dueDate", None);
            assert!(
                asc.contains(r#""tasks"."due_date" ASC NULLS LAST, "tasks"."id" ASC"#),
                "{asc}"
            );
            let desc = sql(backend, "-dueDate", None);
            assert!(
                desc.contains(r#""tasks"."due_date" DESC NULLS FIRST, "tasks"."id" DESC"#),
                "{desc}"
            );
        }
    }

    #[test]
    fn keyset_predicates_name_null_due_dates() {
        let after_undated = sql(DbBackend::Postgres, "-dueDate", Some(SortValue::Date(None)));
        assert!(
            after_undated.contains(r#""tasks"."due_date" IS NULL"#),
            "{after_undated}"
        );
        assert!(
            after_undated.contains(r#""tasks"."due_date" IS NOT NULL"#),
            "{after_undated}"
        );
        let after_dated = sql(
            DbBackend::Postgres,
            "dueDate",
            NaiveDate::from_ymd_opt(2026, 1, 1).map(|d| SortValue::Date(Some(d))),
        );
        assert!(
            after_dated.contains(r#"OR "tasks"."due_date" IS NULL"#),
            "{after_dated}"
        );
    }

    #[test]
    fn keyset_predicates_are_row_value_comparisons_an_index_can_seek_to() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let after_rank = sql(backend, "priority", Some(SortValue::Rank(3)));
            assert!(
                after_rank.contains(r#"("tasks"."priority_rank", "tasks"."id") > (3, "#),
                "{after_rank}"
            );
            let newer = sql(
                backend,
                "-createdAt",
                Some(SortValue::Time(chrono::DateTime::UNIX_EPOCH)),
            );
            assert!(
                newer.contains(r#"("tasks"."created_at", "tasks"."id") < ("#),
                "{newer}"
            );
        }
    }
}
