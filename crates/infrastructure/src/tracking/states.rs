//! The workflow state store on SeaORM. Every write holds the project row first (state writes
//! of one project queue, and a task create — which holds it to number the task — sees the
//! states as they are); a task write holds the row of the state it puts the task in
//! ([`state_category`]), so a state's category change or deletion and a task entering that
//! state never interleave. The tasks of a changed state are rewritten in the same
//! transaction: `status`, `status_category`, `completed_at`, a new version.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::Change;
use keel_domain::tracking::ports::StateRepository;
use keel_domain::tracking::{
    Color, RelationType, Scope, StateCategory, StateKey, StateName, WorkflowState, completed_at,
};
use sea_orm::sea_query::Value;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::tasks::{child_count_sql, numbered_param};
use super::{commit_change, corrupt, lock_project, roll_back};
use crate::db::{Database, store_error};
use crate::entities::workflow_states::{self, Column, Entity};
use crate::entities::{project_members, projects, task_relations, tasks};

#[derive(Debug, Clone)]
pub struct SeaOrmStateRepository {
    db: Database,
}

impl SeaOrmStateRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn to_domain(m: workflow_states::Model) -> Result<WorkflowState, StoreError> {
    let bad = |what| corrupt("workflow_states", m.id, what);
    Ok(WorkflowState {
        id: m.id,
        project_id: m.project_id,
        key: StateKey::from_stored(m.key.clone()),
        name: StateName::from_stored(m.name.clone()),
        category: StateCategory::parse(&m.category, "category").map_err(|_| bad("category"))?,
        color: Color::from_stored(m.color.clone()),
        position: m.position,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// The row of a state to store.
pub(crate) fn active_model(state: &WorkflowState) -> workflow_states::ActiveModel {
    workflow_states::ActiveModel {
        id: Set(state.id),
        project_id: Set(state.project_id),
        key: Set(state.key.as_str().to_owned()),
        name: Set(state.name.as_str().to_owned()),
        category: Set(state.category.as_str().to_owned()),
        color: Set(state.color.as_str().to_owned()),
        position: Set(state.position),
        created_at: Set(state.created_at),
        updated_at: Set(state.updated_at),
    }
}

/// `projects.state_keys` of these states.
pub(crate) fn joined(states: &[WorkflowState]) -> String {
    states
        .iter()
        .map(|s| s.key.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets `projects.state_keys` to the keys of the project's states as they are in the
/// transaction.
async fn keep_keys(txn: &DatabaseTransaction, project_id: Uuid) -> Result<(), StoreError> {
    let keys: Vec<String> = Entity::find()
        .select_only()
        .column(Column::Key)
        .filter(Column::ProjectId.eq(project_id))
        .order_by_asc(Column::Position)
        .order_by_asc(Column::Key)
        .into_tuple()
        .all(txn)
        .await
        .map_err(store_error)?;
    projects::Entity::update_many()
        .col_expr(projects::Column::StateKeys, Expr::value(keys.join(",")))
        .filter(projects::Column::Id.eq(project_id))
        .exec(txn)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The category of the project's state `key`, its row held until the end of the
/// transaction (`FOR SHARE` on PostgreSQL: a state write waits for the task write and the
/// other way round; SQLite's write transactions are serialized already). `None`: no such
/// state.
pub(crate) async fn state_category(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    key: &StateKey,
) -> Result<Option<StateCategory>, StoreError> {
    let found: Option<String> = Entity::find()
        .select_only()
        .column(Column::Category)
        .filter(Column::ProjectId.eq(project_id))
        .filter(Column::Key.eq(key.as_str()))
        .lock(LockType::Share)
        .into_tuple()
        .one(conn)
        .await
        .map_err(store_error)?;
    found
        .map(|c| {
            StateCategory::parse(&c, "category")
                .map_err(|_| corrupt("workflow_states", project_id, "category"))
        })
        .transpose()
}

/// The project's default state, its row held ([`lock_project`]); `None`: no such project.
async fn lock_default(txn: &DatabaseTransaction, project_id: Uuid) -> Result<Option<String>, StoreError> {
    if !lock_project(txn, project_id).await? {
        return Ok(None);
    }
    projects::Entity::find_by_id(project_id)
        .select_only()
        .column(projects::Column::DefaultState)
        .into_tuple()
        .one(txn)
        .await
        .map_err(store_error)
}

/// How a state write sets the `completed_at` of the tasks it rewrites.
#[derive(Debug, Clone, Copy)]
enum Completion {
    /// Each keeps its own (moving between two completed states).
    Keep,
    /// Set to this time (entering the `completed` category).
    Set(DateTime<Utc>),
    /// Cleared (leaving it, or neither side completed).
    Clear,
}

/// A timestamp expression as the API shows it in JSON (`2026-12-07T17:55:04.482310Z`); NULL
/// stays NULL. SQLite holds timestamps as RFC 3339 text with a `+00:00` offset.
fn json_time(backend: DbBackend, expr: &str) -> String {
    match backend {
        // As the API writes them: no fraction for whole seconds, milliseconds when that is
        // exact, else microseconds (what PostgreSQL keeps).
        DbBackend::Postgres => {
            let expr = format!("CAST(({expr}) AS timestamptz)");
            let micros = format!("CAST(EXTRACT(MICROSECONDS FROM ({expr})) AS bigint)");
            let with = |fraction: &str| {
                format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS{fraction}\"Z\"')")
            };
            format!(
                "CASE WHEN ({expr}) IS NULL THEN NULL WHEN {micros} % 1000000 = 0 THEN {} \
                 WHEN {micros} % 1000 = 0 THEN {} ELSE {} END",
                with(""),
                with(".MS"),
                with(".US")
            )
        }
        _ => format!("replace({expr}, '+00:00', 'Z')"),
    }
}

/// A UUID expression as text (`0193…-…`): SQLite holds UUIDs as 16-byte blobs.
fn json_uuid(backend: DbBackend, expr: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("CAST({expr} AS text)"),
        _ => {
            let part = |from: usize, len: usize| format!("substr(lower(hex({expr})), {from}, {len})");
            format!(
                "CASE WHEN {expr} IS NULL THEN NULL ELSE {} || '-' || {} || '-' || {} || '-' || {} || '-' || {} END",
                part(1, 8),
                part(9, 4),
                part(13, 4),
                part(17, 4),
                part(21, 12)
            )
        }
    }
}

/// Writes one `task.updated` event to the outbox for every live task of the project's state
/// `from`, showing the task as it will be once rewritten into `to` (`version + 1`,
/// `updated_at = at`, `completed_at` by `completion`) with `previous` naming what changes
/// (`status` when the key changes, `statusCategory` when the category does) — in ONE
/// `INSERT … SELECT`, before the rewrite, whatever the number of tasks. Its actor and time are
/// `change`'s (the state's write). Answers how many events were written.
async fn record_moved(
    txn: &DatabaseTransaction,
    project_id: Uuid,
    from: (&str, StateCategory),
    to: (&str, StateCategory),
    completion: Completion,
    at: DateTime<Utc>,
    change: &Change,
) -> Result<u64, StoreError> {
    let backend = txn.get_database_backend();
    let param = numbered_param(backend);
    let mut previous = serde_json::Map::new();
    if from.0 != to.0 {
        previous.insert("status".into(), from.0.into());
    }
    if from.1 != to.1 {
        previous.insert("statusCategory".into(), from.1.as_str().into());
    }
    if previous.is_empty() {
        return Ok(0);
    }
    let mut values: Vec<Value> = vec![
        project_id.into(),                                      // 1
        from.0.into(),                                          // 2
        to.0.into(),                                            // 3
        to.1.as_str().into(),                                   // 4
        at.into(),                                              // 5
        serde_json::Value::Object(previous).to_string().into(), // 6
        project_id.to_string().into(),                          // 7
        change.audit.actor_id.map(|a| a.to_string()).into(),    // 8
        change
            .audit
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .into(), // 9
        change.audit.occurred_at.into(),                        // 10
    ];
    let completed = match completion {
        Completion::Keep => "\"tasks\".\"completed_at\"".to_owned(),
        Completion::Set(at) => {
            values.push(at.into()); // 11
            param(11)
        }
        Completion::Clear => "NULL".to_owned(),
    };
    let (object, array, json, new_id, label_order, as_json, as_text) = match backend {
        DbBackend::Postgres => (
            "json_build_object",
            "json_agg",
            "CAST({} AS json)",
            "gen_random_uuid()",
            "l.\"name\" COLLATE \"C\"",
            "",
            "CAST({} AS text)",
        ),
        _ => (
            "json_object",
            "json_group_array",
            "json({})",
            "randomblob(16)",
            "l.\"name\"",
            "json",
            "{}",
        ),
    };
    let wrap = |template: &str, inner: &str| template.replace("{}", inner);
    // A task's labels as the view shows them (names sorted byte-wise, as the store sorts
    // them; ids in the same order): `[]` without any.
    let labels = |column: &str| {
        let inner = match backend {
            DbBackend::Postgres => format!(
                "COALESCE((SELECT {array}({column} ORDER BY {label_order}) FROM \"task_labels\" tl \
                 JOIN \"labels\" l ON l.\"id\" = tl.\"label_id\" WHERE tl.\"task_id\" = \"tasks\".\"id\"), \
                 CAST('[]' AS json))"
            ),
            _ => format!(
                "(SELECT {array}(v) FROM (SELECT {column} AS v FROM \"task_labels\" tl \
                 JOIN \"labels\" l ON l.\"id\" = tl.\"label_id\" WHERE tl.\"task_id\" = \"tasks\".\"id\" \
                 ORDER BY {label_order}))"
            ),
        };
        if as_json.is_empty() {
            inner
        } else {
            format!("{as_json}({inner})")
        }
    };
    let label_names = labels("l.\"name\"");
    let label_ids = labels(&json_uuid(backend, "l.\"id\""));
    // The counts as they will be: a blocker or a child in the same state is rewritten by
    // the same write (its category, its completion).
    let closed: Vec<String> = StateCategory::ALL
        .iter()
        .filter(|c| c.is_closed())
        .map(|c| format!("'{}'", c.as_str()))
        .collect();
    let blocked_after = format!(
        "(SELECT COUNT(*) FROM \"task_relations\" r JOIN \"tasks\" b ON b.\"id\" = r.\"source_task_id\" \
         WHERE r.\"target_task_id\" = \"tasks\".\"id\" AND r.\"kind\" = '{blocks}' \
         AND b.\"deleted_at\" IS NULL AND (CASE WHEN b.\"project_id\" = {project} AND b.\"status\" = {from} \
         THEN {to_category} ELSE b.\"status_category\" END) NOT IN ({closed}))",
        blocks = RelationType::Blocks.as_str(),
        project = param(1),
        from = param(2),
        to_category = wrap(as_text, &param(4)),
        closed = closed.join(", "),
    );
    let child_completed = match completion {
        Completion::Keep => "ch.\"completed_at\"".to_owned(),
        Completion::Set(_) => param(11),
        Completion::Clear => "NULL".to_owned(),
    };
    let done_after = format!(
        "(SELECT COUNT(*) FROM \"tasks\" ch WHERE ch.\"parent_id\" = \"tasks\".\"id\" \
         AND ch.\"deleted_at\" IS NULL AND (CASE WHEN ch.\"status\" = {from} THEN {child_completed} \
         ELSE ch.\"completed_at\" END) IS NOT NULL)",
        from = param(2),
    );
    let t = |column: &str| format!("\"tasks\".\"{column}\"");
    let time = |expr: &str| json_time(backend, expr);
    let uuid = |expr: &str| json_uuid(backend, expr);
    let due = match backend {
        DbBackend::Postgres => format!("to_char({}, 'YYYY-MM-DD')", t("due_date")),
        _ => t("due_date"),
    };
    let fields: Vec<(&str, String)> = vec![
        ("id", uuid(&t("id"))),
        ("identifier", format!("p.\"key\" || '-' || {}", t("number"))),
        ("number", t("number")),
        ("projectId", uuid(&t("project_id"))),
        ("title", t("title")),
        ("description", t("description")),
        ("status", wrap(as_text, &param(3))),
        ("statusCategory", wrap(as_text, &param(4))),
        ("priority", t("priority")),
        ("assigneeId", uuid(&t("assignee_id"))),
        ("labels", label_names),
        ("labelIds", label_ids),
        ("dueDate", due),
        ("createdBy", uuid(&t("created_by"))),
        ("createdAt", time(&t("created_at"))),
        ("updatedAt", time(&param(5))),
        ("completedAt", time(&completed)),
        ("version", format!("{} + 1", t("version"))),
        ("archivedAt", time(&t("archived_at"))),
        ("deletedAt", time(&t("deleted_at"))),
        ("blockedByCount", blocked_after),
        ("parentId", uuid(&t("parent_id"))),
        ("childCount", child_count_sql(false)),
        ("childDoneCount", done_after),
    ];
    let data = format!(
        "{object}({})",
        fields
            .iter()
            .map(|(k, v)| format!("'{k}', {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let event = format!(
        "{object}('event', {object}('id', {id}, 'type', 'task.updated', 'projectId', {project}, \
         'actorId', {actor}, 'data', {data}, 'previous', {previous}, 'occurredAt', {occurred}))",
        id = uuid("moved.eid"),
        project = wrap(as_text, &param(7)),
        actor = wrap(as_text, &param(8)),
        data = wrap(json, "moved.data"),
        previous = wrap(json, &param(6)),
        occurred = wrap(as_text, &param(9)),
    );
    let sql = format!(
        "WITH moved AS MATERIALIZED ( \
           SELECT {new_id} AS eid, {data} AS data FROM \"tasks\" \
           JOIN \"projects\" p ON p.\"id\" = \"tasks\".\"project_id\" \
           WHERE \"tasks\".\"project_id\" = {project} AND \"tasks\".\"status\" = {from} \
           AND \"tasks\".\"deleted_at\" IS NULL \
         ) INSERT INTO \"outbox_events\" (\"id\", \"project_id\", \"event_type\", \"envelope\", \"created_at\") \
         SELECT moved.eid, {project}, 'task.updated', {event}, {created} FROM moved",
        project = param(1),
        from = param(2),
        created = param(10),
    );
    let written = txn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map_err(store_error)?;
    Ok(written.rows_affected())
}

/// Rewrites the tasks of the project's state `from` (of category `from_category`) into the
/// state `to` of category `to_category`, at `at`; returns the `(project, task)` whose views
/// changed: those tasks and, when they close or reopen, the tasks they block.
async fn move_tasks(
    txn: &DatabaseTransaction,
    project_id: Uuid,
    from: (&str, StateCategory),
    to: (&str, StateCategory),
    at: DateTime<Utc>,
    change: &Change,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let in_state = || {
        Query::select()
            .column(tasks::Column::Id)
            .from(tasks::Entity)
            .and_where(Expr::col(tasks::Column::ProjectId).eq(project_id))
            .and_where(Expr::col(tasks::Column::Status).eq(from.0))
            .to_owned()
    };
    let moved: Vec<Uuid> = tasks::Entity::find()
        .select_only()
        .column(tasks::Column::Id)
        .filter(tasks::Column::ProjectId.eq(project_id))
        .filter(tasks::Column::Status.eq(from.0))
        .into_tuple()
        .all(txn)
        .await
        .map_err(store_error)?;
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    let mut changed: Vec<(Uuid, Uuid)> = moved.iter().map(|id| (project_id, *id)).collect();
    if from.1.is_closed() != to.1.is_closed() {
        let blocked: Vec<(Uuid, Uuid)> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::ProjectId)
            .column(tasks::Column::Id)
            .filter(
                tasks::Column::Id.in_subquery(
                    Query::select()
                        .column(task_relations::Column::TargetTaskId)
                        .from(task_relations::Entity)
                        .and_where(Expr::col(task_relations::Column::Kind).eq(RelationType::Blocks.as_str()))
                        .and_where(Expr::col(task_relations::Column::SourceTaskId).in_subquery(in_state()))
                        .to_owned(),
                ),
            )
            .into_tuple()
            .all(txn)
            .await
            .map_err(store_error)?;
        changed.extend(blocked);
    }
    // Every task of the state had the state's category: one `completed_at` rule for all.
    let rule = match completed_at(from.1, to.1, None, at) {
        Some(_) if from.1 == StateCategory::Completed => Completion::Keep,
        Some(at) => Completion::Set(at),
        None => Completion::Clear,
    };
    let completion: SimpleExpr = match rule {
        Completion::Keep => Expr::col(tasks::Column::CompletedAt),
        Completion::Set(at) => Expr::value(at),
        Completion::Clear => Expr::value(Option::<DateTime<Utc>>::None),
    };
    // Each live task its `task.updated` event, as it will be: before the rewrite, which
    // would mix them with the tasks already in `to`.
    record_moved(txn, project_id, from, to, rule, at, change).await?;
    tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value(to.0))
        .col_expr(tasks::Column::StatusCategory, Expr::value(to.1.as_str()))
        .col_expr(tasks::Column::CompletedAt, completion)
        .col_expr(tasks::Column::Version, Expr::col(tasks::Column::Version).add(1))
        .col_expr(tasks::Column::UpdatedAt, Expr::value(at))
        .filter(tasks::Column::ProjectId.eq(project_id))
        .filter(tasks::Column::Status.eq(from.0))
        .exec(txn)
        .await
        .map_err(store_error)?;
    Ok(changed)
}

#[async_trait]
impl StateRepository for SeaOrmStateRepository {
    async fn list(&self, project_id: Uuid) -> Result<Vec<WorkflowState>, StoreError> {
        Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .order_by_asc(Column::Position)
            .order_by_asc(Column::Key)
            .all(self.db.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn create(&self, state: &WorkflowState, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        if lock_default(&txn, state.project_id).await?.is_none() {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        // `ux_workflow_states_project_key` turns a second state of a key into `Conflict`.
        Entity::insert(active_model(state))
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        keep_keys(&txn, state.project_id).await?;
        commit_change(&self.db, txn, change).await
    }

    async fn update(&self, state: &WorkflowState, change: &Change) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let txn = self.db.begin_write().await?;
        if lock_default(&txn, state.project_id).await?.is_none() {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        }
        let Some(stored) = Entity::find_by_id(state.id)
            .filter(Column::ProjectId.eq(state.project_id))
            .lock(LockType::Update)
            .one(&txn)
            .await
            .map_err(store_error)?
        else {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        };
        let stored = to_domain(stored)?;
        Entity::update_many()
            .col_expr(Column::Name, Expr::value(state.name.as_str()))
            .col_expr(Column::Color, Expr::value(state.color.as_str()))
            .col_expr(Column::Position, Expr::value(state.position))
            .col_expr(Column::Category, Expr::value(state.category.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(state.updated_at))
            .filter(Column::Id.eq(state.id))
            .exec(&txn)
            .await
            .map_err(store_error)?;
        let mut changed = Vec::new();
        if stored.category != state.category {
            let key = stored.key.as_str();
            changed = move_tasks(
                &txn,
                state.project_id,
                (key, stored.category),
                (key, state.category),
                state.updated_at,
                change,
            )
            .await?;
        }
        commit_change(&self.db, txn, change).await?;
        Ok(changed)
    }

    async fn delete(
        &self,
        project_id: Uuid,
        state_id: Uuid,
        move_to: &StateKey,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let txn = self.db.begin_write().await?;
        let Some(default) = lock_default(&txn, project_id).await? else {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        };
        let states: Vec<WorkflowState> = Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .lock(LockType::Update)
            .all(&txn)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(to_domain)
            .collect::<Result<_, _>>()?;
        let Some(gone) = states.iter().find(|s| s.id == state_id) else {
            roll_back(txn).await?;
            return Err(StoreError::NotFound);
        };
        let target = states.iter().find(|s| s.key == *move_to && s.id != state_id);
        let refusal = if states.len() == 1 {
            Some("a project keeps at least one state")
        } else if gone.key.as_str() == default {
            Some("the default state cannot be deleted")
        } else if target.is_none() {
            Some("moveTo is no other state of the project")
        } else {
            None
        };
        let (Some(target), None) = (target, refusal) else {
            roll_back(txn).await?;
            return Err(StoreError::Conflict(refusal.unwrap_or_default().to_owned()));
        };
        let changed = move_tasks(
            &txn,
            project_id,
            (gone.key.as_str(), gone.category),
            (target.key.as_str(), target.category),
            at,
            change,
        )
        .await?;
        Entity::delete_by_id(state_id)
            .exec(&txn)
            .await
            .map_err(store_error)?;
        keep_keys(&txn, project_id).await?;
        commit_change(&self.db, txn, change).await?;
        Ok(changed)
    }

    async fn known_keys(&self, scope: &Scope, keys: &[StateKey]) -> Result<Vec<StateKey>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = Entity::find()
            .select_only()
            .column(Column::Key)
            .distinct()
            .filter(Column::Key.is_in(keys.iter().map(StateKey::as_str)));
        match scope {
            Scope::Project(id) => select = select.filter(Column::ProjectId.eq(*id)),
            Scope::MemberOf(user_id) => {
                select = select.filter(
                    Column::ProjectId.in_subquery(
                        Query::select()
                            .column(project_members::Column::ProjectId)
                            .from(project_members::Entity)
                            .and_where(Expr::col(project_members::Column::UserId).eq(*user_id))
                            .to_owned(),
                    ),
                );
            }
            Scope::All => {}
        }
        let found: Vec<String> = select
            .into_tuple()
            .all(self.db.connection())
            .await
            .map_err(store_error)?;
        Ok(found.into_iter().map(StateKey::from_stored).collect())
    }
}
