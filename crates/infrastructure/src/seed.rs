//! `keel dev seed`: fills one project with many tasks, fast, for benchmarks and manual tests.
//!
//! A development tool, not a port: it writes straight into the tables with multi-row INSERTs
//! (several statements per transaction, each under the database's bind-parameter limit) and
//! skips the audit log. It creates — or reuses, on a second run — a seed owner, a project, a
//! few labels and a handful of members, then numbers the new tasks after the project's
//! `last_task_number`. Each batch reserves its numbers with `UPDATE projects SET
//! last_task_number = last_task_number + n … RETURNING` as its first statement, so numbers stay
//! sequential and gap-free even with tasks created through the API meanwhile, and an
//! interrupted seed leaves a consistent project behind.
//!
//! The data is varied like a real tracker's: every status, priorities 0–4 (0 "none"
//! included), about two tasks in three assigned, about two in five with a due date, 0–3 labels
//! each, `created_at` spread over the two years before the run (increasing with the number,
//! ids UUIDv7 of that time). The random generator is seeded from the project and its first new
//! number: the same run on the same database gives the same data.

use std::time::{Duration, Instant};

use chrono::{DateTime, Days, SubsecRound, Utc};
use keel_domain::identity::{Email, Role, UserStatus};
use keel_domain::tracking::{
    Color, DEFAULT_STATE_KEY, DEFAULT_STATES, LabelName, Priority, ProjectKey, ProjectRole, ProjectStatus,
    StateCategory, WorkflowState,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, Iterable, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use uuid::Uuid;

use crate::db::Database;
use crate::entities::{labels, project_members, projects, task_labels, tasks, users};

/// Bind parameters one statement may carry: PostgreSQL's protocol limit, and SQLite's
/// default `SQLITE_MAX_VARIABLE_NUMBER` (32 766 since 3.32).
fn max_binds(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 65_535,
        _ => 32_766,
    }
}

/// Rows of `E` one multi-row INSERT may carry: every row binds each of the entity's columns
/// (all are set), so the count follows the entity when a column is added.
fn rows_per_statement<E: EntityTrait>(backend: DbBackend) -> usize {
    (max_binds(backend) / E::Column::iter().count().max(1)).max(1)
}
/// Tasks per transaction at most.
pub const MAX_BATCH: usize = 50_000;
/// Labels and members a seed may create at most.
pub const MAX_LABELS: usize = 50;
pub const MAX_MEMBERS: usize = 50;
/// `created_at` of the new tasks spreads over this many days before the run.
const SPREAD_DAYS: i64 = 730;

const LABEL_NAMES: &[&str] = &[
    "bug",
    "feature",
    "chore",
    "docs",
    "performance",
    "security",
    "ux",
    "infra",
    "tech-debt",
    "needs-review",
    "blocked",
    "good-first-issue",
];
const LABEL_COLORS: &[&str] = &[
    "#D73A4A", "#0E8A16", "#FBCA04", "#0075CA", "#5319E7", "#B60205", "#C5DEF5", "#1D76DB",
];
const VERBS: &[&str] = &[
    "Fix",
    "Add",
    "Remove",
    "Refactor",
    "Document",
    "Speed up",
    "Test",
    "Review",
    "Migrate",
    "Investigate",
];
const OBJECTS: &[&str] = &[
    "login form",
    "task list pagination",
    "webhook retries",
    "CSV export",
    "label colors",
    "search index",
    "session expiry",
    "email digest",
    "project settings page",
    "audit log filters",
    "dark mode",
    "rate limiter",
];
const AREAS: &[&str] = &[
    "api",
    "web",
    "mobile",
    "backend",
    "billing",
    "onboarding",
    "reports",
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

fn invalid(message: impl Into<String>) -> SeedError {
    SeedError::Invalid(message.into())
}

/// What to seed.
#[derive(Clone)]
pub struct SeedOptions {
    /// New tasks to insert (0: only the owner, project, labels and members).
    pub tasks: u64,
    pub project_key: String,
    /// Labels the project should have (created when missing, by name).
    pub labels: usize,
    /// Member accounts besides the owner (`seed-member-<i>@<owner's domain>`); the first is
    /// an admin of the project, the others members.
    pub members: usize,
    /// Tasks per transaction; each transaction runs as few multi-row INSERTs as the
    /// database's bind-parameter limit allows.
    pub batch: usize,
    /// The owner's e-mail. When the project already exists its own owner is kept.
    pub owner_email: String,
    /// The PHC password hash stored for the accounts this run creates (owner and members);
    /// existing accounts keep theirs.
    pub password_hash: String,
}

impl std::fmt::Debug for SeedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedOptions")
            .field("tasks", &self.tasks)
            .field("project_key", &self.project_key)
            .field("labels", &self.labels)
            .field("members", &self.members)
            .field("batch", &self.batch)
            .field("owner_email", &self.owner_email)
            .finish_non_exhaustive()
    }
}

/// Progress after each committed batch.
#[derive(Debug, Clone, Copy)]
pub struct SeedProgress {
    pub inserted: u64,
    pub total: u64,
    pub task_labels: u64,
    /// Since the first task batch started.
    pub elapsed: Duration,
}

/// An account the seed uses.
#[derive(Debug, Clone)]
pub struct SeededUser {
    pub id: Uuid,
    pub email: String,
    pub role: ProjectRole,
    /// Created by this run (false: it existed).
    pub created: bool,
}

/// What the seed did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub project_id: Uuid,
    pub project_key: String,
    pub project_created: bool,
    pub owner: SeededUser,
    pub members: Vec<SeededUser>,
    pub labels: Vec<String>,
    /// Numbers of the new tasks (`first > last` when none were inserted).
    pub first_number: i64,
    pub last_number: i64,
    pub tasks: u64,
    pub task_labels: u64,
    /// Time spent inserting tasks and their labels (set-up excluded).
    pub elapsed: Duration,
}

impl SeedReport {
    /// Rows per second of the task phase: tasks alone, and tasks with their label rows.
    pub fn rates(&self) -> (f64, f64) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)] // row counts far below 2^52
        let (tasks, all) = (self.tasks as f64, (self.tasks + self.task_labels) as f64);
        (tasks / secs, all / secs)
    }
}

/// Seeds the database; `progress` is called after every committed batch.
pub async fn seed(
    db: &Database,
    options: &SeedOptions,
    mut progress: impl FnMut(&SeedProgress),
) -> Result<SeedReport, SeedError> {
    let key = ProjectKey::parse(&options.project_key)
        .map_err(|e| invalid(format!("--project-key {}: {}", options.project_key, e.message)))?;
    let owner_email =
        Email::parse(&options.owner_email).map_err(|e| invalid(format!("--owner-email: {}", e.message)))?;
    if options.batch == 0 || options.batch > MAX_BATCH {
        return Err(invalid(format!("--batch must be 1–{MAX_BATCH}")));
    }
    if options.labels > MAX_LABELS {
        return Err(invalid(format!("--labels must be 0–{MAX_LABELS}")));
    }
    if options.members > MAX_MEMBERS {
        return Err(invalid(format!("--members must be 0–{MAX_MEMBERS}")));
    }
    let conn = db.connection().pool();
    let now = Utc::now().trunc_subsecs(6);

    let (project_id, project_created, owner) = project(conn, &key, &owner_email, options, now).await?;
    let domain = owner
        .email
        .rsplit_once('@')
        .map_or("example.com", |(_, d)| d)
        .to_owned();
    let mut members = Vec::with_capacity(options.members);
    for i in 1..=options.members {
        let role = if i == 1 {
            ProjectRole::Admin
        } else {
            ProjectRole::Member
        };
        let email = format!("seed-member-{i}@{domain}");
        let (id, created) = user(conn, &email, &format!("Seed Member {i}"), options, now).await?;
        let role = membership(conn, project_id, id, role, now).await?;
        members.push(SeededUser {
            id,
            email,
            role,
            created,
        });
    }
    let label_rows = ensure_labels(conn, project_id, options.labels, now).await?;

    let mut people: Vec<Uuid> = vec![owner.id];
    people.extend(members.iter().map(|m| m.id));
    let label_ids: Vec<Uuid> = label_rows.iter().map(|l| l.0).collect();

    let start_number = current_last_number(conn, project_id).await? + 1;
    let mut rng = StdRng::seed_from_u64(
        u64::from_le_bytes(project_id.as_bytes()[8..16].try_into().unwrap_or_default())
            ^ start_number.unsigned_abs(),
    );
    let plan = Plan {
        project_id,
        owner_id: owner.id,
        people: &people,
        label_ids: &label_ids,
        now,
        step_us: (SPREAD_DAYS * 86_400_000_000 / i64::try_from(options.tasks.max(1)).unwrap_or(i64::MAX))
            .max(1),
        start: now - chrono::Duration::days(SPREAD_DAYS),
    };

    let started = Instant::now();
    let mut inserted: u64 = 0;
    let mut labels_inserted: u64 = 0;
    let mut first_number = start_number;
    let mut last_number = start_number - 1;
    while inserted < options.tasks {
        let n = usize::try_from(options.tasks - inserted)
            .unwrap_or(usize::MAX)
            .min(options.batch);
        let (first, with_labels) = insert_batch(db, &plan, &mut rng, inserted, n).await?;
        if inserted == 0 {
            first_number = first;
        }
        last_number = first + i64::try_from(n).unwrap_or(i64::MAX) - 1;
        inserted += n as u64;
        labels_inserted += with_labels;
        progress(&SeedProgress {
            inserted,
            total: options.tasks,
            task_labels: labels_inserted,
            elapsed: started.elapsed(),
        });
    }
    let elapsed = started.elapsed();
    if inserted > 0 && db.backend() == DbBackend::Postgres {
        // Fresh statistics for the planner (autovacuum would get there, later).
        conn.execute_unprepared("ANALYZE tasks, task_labels").await?;
    }

    Ok(SeedReport {
        project_id,
        project_key: key.as_str().to_owned(),
        project_created,
        owner,
        members,
        labels: label_rows.into_iter().map(|l| l.1).collect(),
        first_number,
        last_number,
        tasks: inserted,
        task_labels: labels_inserted,
        elapsed,
    })
}

/// The project with `key` (created with the owner when missing) and its owner.
async fn project(
    conn: &sea_orm::DatabaseConnection,
    key: &ProjectKey,
    owner_email: &Email,
    options: &SeedOptions,
    now: DateTime<Utc>,
) -> Result<(Uuid, bool, SeededUser), SeedError> {
    let existing = projects::Entity::find()
        .filter(projects::Column::Key.eq(key.as_str()))
        .one(conn)
        .await?;
    if let Some(project) = existing {
        let owner = users::Entity::find_by_id(project.owner_id)
            .one(conn)
            .await?
            .ok_or_else(|| invalid(format!("project {} has no owner account", key.as_str())))?;
        return Ok((
            project.id,
            false,
            SeededUser {
                id: owner.id,
                email: owner.email,
                role: ProjectRole::Owner,
                created: false,
            },
        ));
    }
    let (owner_id, created) = user(conn, owner_email.as_str(), "Seed Owner", options, now).await?;
    let id = Uuid::now_v7();
    let txn = conn.begin().await?;
    projects::Entity::insert(projects::ActiveModel {
        id: Set(id),
        key: Set(key.as_str().to_owned()),
        name: Set(format!("Benchmark {}", key.as_str())),
        name_folded: Set(crate::db::fold(&format!("Benchmark {}", key.as_str()))),
        description: Set(Some("Seeded by `keel dev seed`.".to_owned())),
        status: Set(ProjectStatus::Active.as_str().to_owned()),
        owner_id: Set(owner_id),
        last_task_number: Set(0),
        default_state: Set(DEFAULT_STATE_KEY.to_owned()),
        state_keys: Set(crate::tracking::states::joined(&WorkflowState::defaults(id, now))),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    crate::entities::workflow_states::Entity::insert_many(
        WorkflowState::defaults(id, now)
            .iter()
            .map(crate::tracking::states::active_model),
    )
    .exec_without_returning(&txn)
    .await?;
    project_members::Entity::insert(project_members::ActiveModel {
        project_id: Set(id),
        user_id: Set(owner_id),
        role: Set(ProjectRole::Owner.as_str().to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok((
        id,
        true,
        SeededUser {
            id: owner_id,
            email: owner_email.as_str().to_owned(),
            role: ProjectRole::Owner,
            created,
        },
    ))
}

/// The account with `email`, created (an active user) when missing.
async fn user(
    conn: &impl ConnectionTrait,
    email: &str,
    name: &str,
    options: &SeedOptions,
    now: DateTime<Utc>,
) -> Result<(Uuid, bool), SeedError> {
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(conn)
        .await?;
    if let Some(user) = existing {
        return Ok((user.id, false));
    }
    let id = Uuid::now_v7();
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        email: Set(email.to_owned()),
        name: Set(name.to_owned()),
        role: Set(Role::User.as_str().to_owned()),
        status: Set(UserStatus::Active.as_str().to_owned()),
        password_hash: Set(options.password_hash.clone()),
        // Made-up data: no mail is ever sent to verify it.
        email_verified: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok((id, true))
}

/// Makes `user_id` a member with `role` unless it already is one; returns its role.
async fn membership(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    user_id: Uuid,
    role: ProjectRole,
    now: DateTime<Utc>,
) -> Result<ProjectRole, SeedError> {
    if let Some(member) = project_members::Entity::find_by_id((project_id, user_id))
        .one(conn)
        .await?
    {
        return ProjectRole::parse(&member.role, "role")
            .map_err(|_| invalid(format!("member {user_id} has an unknown role {}", member.role)));
    }
    project_members::Entity::insert(project_members::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        role: Set(role.as_str().to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(role)
}

/// The name of the `i`-th seed label (0-based).
fn label_name(i: usize) -> String {
    LABEL_NAMES
        .get(i)
        .map_or_else(|| format!("label-{}", i + 1), |n| (*n).to_owned())
}

/// The project's first `count` seed labels, created when missing: `(id, name)` in seed order.
async fn ensure_labels(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    count: usize,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, String)>, SeedError> {
    let existing = labels::Entity::find()
        .filter(labels::Column::ProjectId.eq(project_id))
        .order_by_asc(labels::Column::Name)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let name = label_name(i);
        if let Some(label) = existing.iter().find(|l| l.name == name) {
            out.push((label.id, name));
            continue;
        }
        let checked = LabelName::parse(&name).map_err(|e| invalid(format!("label {name}: {}", e.message)))?;
        let color = LABEL_COLORS[i % LABEL_COLORS.len()];
        let color = Color::parse(color).map_err(|e| invalid(format!("color {color}: {}", e.message)))?;
        let id = Uuid::now_v7();
        labels::Entity::insert(labels::ActiveModel {
            id: Set(id),
            project_id: Set(project_id),
            name: Set(checked.as_str().to_owned()),
            color: Set(color.as_str().to_owned()),
            created_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        out.push((id, name));
    }
    Ok(out)
}

async fn current_last_number(conn: &impl ConnectionTrait, project_id: Uuid) -> Result<i64, SeedError> {
    let project = projects::Entity::find_by_id(project_id)
        .one(conn)
        .await?
        .ok_or_else(|| invalid("the project disappeared during the seed"))?;
    Ok(project.last_task_number)
}

/// What every batch needs to generate its rows.
struct Plan<'a> {
    project_id: Uuid,
    owner_id: Uuid,
    /// Possible assignees and creators: the owner, then the members.
    people: &'a [Uuid],
    label_ids: &'a [Uuid],
    now: DateTime<Utc>,
    /// Mean distance between two consecutive tasks' `created_at`, in microseconds.
    step_us: i64,
    start: DateTime<Utc>,
}

/// Picks by weight: `weights[i]` out of their sum.
fn weighted<T: Copy>(rng: &mut StdRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for &(value, weight) in choices {
        if roll < weight {
            return value;
        }
        roll -= weight;
    }
    choices[0].0
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// One generated task and its label ids.
fn generate(plan: &Plan<'_>, rng: &mut StdRng, index: u64, number: i64) -> (tasks::ActiveModel, Vec<Uuid>) {
    let offset_us = i64::try_from(index)
        .unwrap_or(i64::MAX)
        .saturating_mul(plan.step_us)
        + rng.random_range(0..plan.step_us);
    let created_at = (plan.start + chrono::Duration::microseconds(offset_us)).min(plan.now);
    let age_us = (plan.now - created_at).num_microseconds().unwrap_or(0).max(0);
    let updated_at =
        created_at + chrono::Duration::microseconds(rng.random_range(0..=age_us.min(30 * 86_400_000_000)));
    // The default states, weighted as backlog 15, todo 25, in_progress 15, in_review 10,
    // done 30, canceled 5.
    let (status, _, category, _) = *weighted(
        rng,
        &[
            (&DEFAULT_STATES[0], 15),
            (&DEFAULT_STATES[1], 25),
            (&DEFAULT_STATES[2], 15),
            (&DEFAULT_STATES[3], 10),
            (&DEFAULT_STATES[4], 30),
            (&DEFAULT_STATES[5], 5),
        ],
    );
    // 0 none, 1 urgent, 2 high, 3 medium, 4 low.
    let priority = weighted(rng, &[(0_u8, 30), (1, 5), (2, 15), (3, 30), (4, 20)]);
    let priority = Priority::new(i64::from(priority), "priority").unwrap_or(Priority::NONE);
    let assignee_id = (rng.random_range(0..100) >= 35).then(|| *pick(rng, plan.people));
    let due_date = (rng.random_range(0..100) < 40)
        .then(|| created_at.date_naive() + Days::new(rng.random_range(1..=90)));
    let created_by = if rng.random_bool(0.5) {
        plan.owner_id
    } else {
        *pick(rng, plan.people)
    };
    let title = format!(
        "{} {} in {} (#{number})",
        pick(rng, VERBS),
        pick(rng, OBJECTS),
        pick(rng, AREAS)
    );
    let description = rng.random_bool(0.5).then(|| {
        format!(
            "Seeded task {number}. Steps: open the {}, check the {}; expected to work.",
            pick(rng, OBJECTS),
            pick(rng, OBJECTS)
        )
    });
    let mut label_count = weighted(rng, &[(0_usize, 40), (1, 35), (2, 18), (3, 7)]).min(plan.label_ids.len());
    let mut task_label_ids = Vec::with_capacity(label_count);
    while label_count > 0 {
        let label = *pick(rng, plan.label_ids);
        if !task_label_ids.contains(&label) {
            task_label_ids.push(label);
            label_count -= 1;
        }
    }
    let mut random = [0_u8; 10];
    rng.fill_bytes(&mut random);
    let millis = u64::try_from(created_at.timestamp_millis()).unwrap_or(0);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let task = tasks::ActiveModel {
        id: Set(id),
        project_id: Set(plan.project_id),
        number: Set(number),
        title_folded: Set(crate::db::fold(&title)),
        title: Set(title),
        description: Set(description),
        status: Set(status.to_owned()),
        status_category: Set(category.as_str().to_owned()),
        priority: Set(i16::from(priority.value())),
        priority_rank: Set(priority.rank()),
        assignee_id: Set(assignee_id),
        due_date: Set(due_date),
        created_by: Set(created_by),
        created_at: Set(created_at),
        updated_at: Set(updated_at),
        completed_at: Set((category == StateCategory::Completed).then_some(updated_at)),
        version: Set(1),
        archived_at: Set(None),
        deleted_at: Set(None),
    };
    (task, task_label_ids)
}

/// `UPDATE projects SET last_task_number = last_task_number + n WHERE id = ? RETURNING
/// last_task_number`: reserves `n` numbers (and, on PostgreSQL, locks the project row until
/// the batch commits, as a task create through the API does).
fn reserve(project_id: Uuid, n: i64) -> sea_orm::sea_query::UpdateStatement {
    use sea_orm::sea_query::ExprTrait as _;
    Query::update()
        .table(projects::Entity)
        .value(
            projects::Column::LastTaskNumber,
            Expr::col(projects::Column::LastTaskNumber).add(n),
        )
        .and_where(Expr::col(projects::Column::Id).eq(project_id))
        .returning(Query::returning().columns([projects::Column::LastTaskNumber]))
        .to_owned()
}

/// Inserts `n` tasks (the `done`-th onwards of this run) in one transaction; returns the
/// first number and the task-label rows written.
async fn insert_batch(
    db: &Database,
    plan: &Plan<'_>,
    rng: &mut StdRng,
    done: u64,
    n: usize,
) -> Result<(i64, u64), SeedError> {
    let n_i64 = i64::try_from(n).map_err(|_| invalid("batch too large"))?;
    let tasks_per_statement = rows_per_statement::<tasks::Entity>(db.backend());
    let labels_per_statement = rows_per_statement::<task_labels::Entity>(db.backend());
    let txn = db.connection().pool().begin().await?;
    let reserved = txn
        .query_one(&reserve(plan.project_id, n_i64))
        .await?
        .ok_or_else(|| invalid("the project disappeared during the seed"))?;
    let last: i64 = reserved.try_get("", "last_task_number")?;
    let first = last - n_i64 + 1;

    let mut label_rows: Vec<task_labels::ActiveModel> = Vec::new();
    let mut labels_written: u64 = 0;
    let mut offset = 0_usize;
    while offset < n {
        let count = (n - offset).min(tasks_per_statement);
        let mut rows = Vec::with_capacity(count);
        for i in offset..offset + count {
            let index = done + i as u64;
            let number = first + i64::try_from(i).map_err(|_| invalid("batch too large"))?;
            let (task, task_label_ids) = generate(plan, rng, index, number);
            if let sea_orm::ActiveValue::Set(task_id) = task.id {
                label_rows.extend(
                    task_label_ids
                        .into_iter()
                        .map(|label_id| task_labels::ActiveModel {
                            task_id: Set(task_id),
                            label_id: Set(label_id),
                        }),
                );
            }
            rows.push(task);
        }
        tasks::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        offset += count;
    }
    while !label_rows.is_empty() {
        let rest = label_rows.split_off(label_rows.len().min(labels_per_statement));
        labels_written += label_rows.len() as u64;
        task_labels::Entity::insert_many(std::mem::replace(&mut label_rows, rest))
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok((first, labels_written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_the_bind_limits() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let binds = max_binds(backend);
            let task_columns = tasks::Column::iter().count();
            assert!(rows_per_statement::<tasks::Entity>(backend) * task_columns <= binds);
            assert!(rows_per_statement::<task_labels::Entity>(backend) * 2 <= binds);
        }
        // 16 columns since `title_folded`: 2047 rows on SQLite, 4095 on PostgreSQL.
        assert_eq!(
            rows_per_statement::<tasks::Entity>(DbBackend::Sqlite),
            32_766 / tasks::Column::iter().count()
        );
    }

    #[test]
    fn label_names_are_valid_and_distinct() {
        let names: Vec<String> = (0..MAX_LABELS).map(label_name).collect();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), MAX_LABELS);
        for name in &names {
            assert!(LabelName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn weighted_picks_every_choice_with_weight() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0_u32; 3];
        for _ in 0..3000 {
            seen[weighted(&mut rng, &[(0_usize, 1), (1, 1), (2, 0)])] += 1;
        }
        assert!(seen[0] > 1000 && seen[1] > 1000 && seen[2] == 0, "{seen:?}");
    }
}
