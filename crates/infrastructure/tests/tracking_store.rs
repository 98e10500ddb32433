//! The tracking adapters against real databases: a fresh SQLite file for every test and, when
//! `KEEL_TEST_DATABASE_URL` (a PostgreSQL URL whose user may create databases) is set, a
//! fresh PostgreSQL database as well. Every scenario runs on each of them.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SubsecRound, TimeZone, Utc};
use futures::StreamExt;
use keel_application::events::{BusMessage, EventBus};
use keel_domain::StoreError;
use keel_domain::audit::{AuditEntry, AuditLog, Authority};
use keel_domain::events::{Change, Envelope, EventType};
use keel_domain::tracking::ports::{
    ActivityFeed, CommentRepository, LabelRepository, MemberRepository, NewTask, ProjectRepository,
    TaskRepository,
};
use keel_domain::tracking::{
    AssigneeFilter, Color, Comment, CommentBody, Label, LabelName, Permission, Priority, Project,
    ProjectFilter, ProjectKey, ProjectName, ProjectRole, ProjectSort, ProjectStatus, Scope, Task, TaskFilter,
    TaskQuery, TaskSort, TaskSortKey, TaskStatus, TaskTitle,
};
use keel_infrastructure::audit::SeaOrmAuditLog;
use keel_infrastructure::entities::{
    audit_log, comments, labels, outbox_events, project_members, task_labels, tasks, users,
    webhook_deliveries, webhooks,
};
use keel_infrastructure::events::{Dispatcher, DispatcherSettings, InProcessBus, Outbox};
use keel_infrastructure::tracking::{
    SeaOrmCommentRepository, SeaOrmLabelRepository, SeaOrmMemberRepository, SeaOrmProjectRepository,
    SeaOrmTaskRepository,
};
use keel_infrastructure::{Database, DbSettings, migrate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Databases and fixtures
// ---------------------------------------------------------------------------------------------

/// One migrated database of its own, and the adapters on it.
struct Store {
    name: &'static str,
    db: Database,
    projects: SeaOrmProjectRepository,
    members: SeaOrmMemberRepository,
    labels: SeaOrmLabelRepository,
    tasks: SeaOrmTaskRepository,
    comments: SeaOrmCommentRepository,
    audit: SeaOrmAuditLog,
    _dir: Option<tempfile::TempDir>,
}

async fn open(url: &str) -> Database {
    let db = Database::connect(
        &DbSettings {
            url: url.to_owned(),
            max_connections: 8,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
        },
        None,
    )
    .await
    .expect("open the test database");
    migrate::up(&db).await.expect("migrate the test database");
    db
}

impl Store {
    fn new(name: &'static str, db: Database, dir: Option<tempfile::TempDir>) -> Self {
        Self {
            name,
            projects: SeaOrmProjectRepository::new(db.clone()),
            members: SeaOrmMemberRepository::new(db.clone()),
            labels: SeaOrmLabelRepository::new(db.clone()),
            tasks: SeaOrmTaskRepository::new(db.clone()),
            comments: SeaOrmCommentRepository::new(db.clone()),
            audit: SeaOrmAuditLog::new(db.clone()),
            db,
            _dir: dir,
        }
    }
}

/// A fresh SQLite database, and a fresh PostgreSQL one when the suite has PostgreSQL.
async fn stores() -> Vec<Store> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/keel.db?mode=rwc", dir.path().display());
    let mut stores = vec![Store::new("sqlite", open(&url).await, Some(dir))];
    if let Some(admin_url) = std::env::var("KEEL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let name = format!("keel_store_{}", Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("KEEL_TEST_DATABASE_URL has a database path");
        stores.push(Store::new(
            "postgres",
            open(&format!("{base}/{name}")).await,
            None,
        ));
    }
    stores
}

/// 2026-11-22 10:00 UTC plus `minutes`.
fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// A change as a use case would record it: its audit entry, and its event (of the action's
/// type; `project.updated` for actions that name none).
fn audit(action: &str, project_id: Option<Uuid>) -> Change {
    let entry = AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: Utc::now().trunc_subsecs(6),
        actor_id: None,
        action: action.to_owned(),
        resource_type: "test".to_owned(),
        resource_id: None,
        project_id,
        request_id: None,
        ip: None,
        details: Some(serde_json::json!({"test": true})),
        restricted: None,
        authority: None,
    };
    let event_type = EventType::parse(action).unwrap_or(EventType::ProjectUpdated);
    Change::new(
        entry,
        event_type,
        project_id.unwrap_or_default(),
        serde_json::json!({"test": true}),
    )
}

/// What a task-created event shows: the number the store handed out.
fn numbered(task: &Task) -> serde_json::Value {
    serde_json::json!({ "number": task.number })
}

async fn user(s: &Store, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        email: Set(format!("{name}-{}@example.com", id.simple())),
        name: Set(name.to_owned()),
        role: Set("user".to_owned()),
        status: Set("active".to_owned()),
        password_hash: Set("not-a-hash".to_owned()),
        created_at: Set(at(0)),
        updated_at: Set(at(0)),
    })
    .exec_without_returning(s.db.connection())
    .await
    .unwrap();
    id
}

fn project_value(key: &str, name: &str, owner: Uuid, created: i64) -> Project {
    Project {
        id: Uuid::now_v7(),
        key: ProjectKey::parse(key).unwrap(),
        name: ProjectName::parse(name).unwrap(),
        description: Some(format!("About {name}")),
        status: ProjectStatus::Active,
        owner_id: owner,
        version: 1,
        created_at: at(created),
        updated_at: at(created),
    }
}

async fn project(s: &Store, key: &str, owner: Uuid) -> Project {
    let p = project_value(key, &format!("Project {key}"), owner, 0);
    s.projects
        .create(&p, &audit("project.created", Some(p.id)))
        .await
        .unwrap();
    p
}

fn task_value(p: &Project, creator: Uuid, title: &str) -> Task {
    Task {
        id: Uuid::new_v4(),
        project_id: p.id,
        project_key: p.key.clone(),
        number: 0,
        title: TaskTitle::parse(title).unwrap(),
        description: None,
        status: TaskStatus::Todo,
        priority: Priority::NONE,
        assignee_id: None,
        labels: vec![],
        due_date: None,
        created_by: creator,
        created_at: at(0),
        updated_at: at(0),
        completed_at: None,
        version: 1,
    }
}

async fn create_task(s: &Store, task: Task, label_ids: &[Uuid]) -> Task {
    let entry = audit("task.created", Some(task.project_id));
    s.tasks
        .create(
            &NewTask {
                task,
                label_ids: label_ids.to_vec(),
            },
            &entry,
            numbered,
        )
        .await
        .unwrap()
}

async fn label(s: &Store, p: &Project, name: &str) -> Label {
    let l = Label {
        id: Uuid::now_v7(),
        project_id: p.id,
        name: LabelName::parse(name).unwrap(),
        color: Color::parse("#a1b2c3").unwrap(),
        created_at: at(0),
    };
    s.labels
        .create(&l, &audit("label.created", Some(p.id)))
        .await
        .unwrap();
    l
}

async fn audit_entries(s: &Store, project_id: Uuid) -> u64 {
    audit_log::Entity::find()
        .filter(audit_log::Column::ProjectId.eq(project_id))
        .count(s.db.connection())
        .await
        .unwrap()
}

/// The outbox's events of a project, in publication order.
async fn outbox_events_of(s: &Store, project_id: Uuid) -> Vec<Envelope> {
    outbox_events::Entity::find()
        .filter(outbox_events::Column::ProjectId.eq(project_id))
        .order_by_asc(outbox_events::Column::Seq)
        .all(s.db.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| serde_json::from_value(row.envelope).unwrap())
        .collect()
}

async fn audit_entry_stored(s: &Store, id: Uuid) -> u64 {
    audit_log::Entity::find_by_id(id)
        .count(s.db.connection())
        .await
        .unwrap()
}

fn query(scope: Scope, filter: TaskFilter, sort: TaskSort, limit: u64) -> TaskQuery {
    TaskQuery {
        scope,
        filter,
        sort,
        after: None,
        limit,
    }
}

/// Every task the query matches, in one page.
async fn all_tasks(s: &Store, scope: Scope, filter: TaskFilter) -> Vec<Task> {
    s.tasks
        .list(&query(scope, filter, TaskSort::default(), 1000))
        .await
        .unwrap()
}

fn titles(tasks: &[Task]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.title.as_str().to_owned()).collect()
}

fn set(titles: &[&str]) -> BTreeSet<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// (a) Keyset pagination
// ---------------------------------------------------------------------------------------------

/// The documented order of a task list, written independently of the adapter: the sort value
/// ascending (urgent … low, then no priority; dates, then no due date), the id breaking ties;
/// descending is the exact reverse.
fn documented_order(sort: TaskSort, a: &Task, b: &Task) -> Ordering {
    fn rank(p: Priority) -> u8 {
        match p.value() {
            0 => 5,
            v => v,
        }
    }
    let by_value = match sort.key {
        TaskSortKey::CreatedAt => a.created_at.cmp(&b.created_at),
        TaskSortKey::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        TaskSortKey::Priority => rank(a.priority).cmp(&rank(b.priority)),
        TaskSortKey::DueDate => match (a.due_date, b.due_date) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    };
    let ascending = by_value.then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()));
    if sort.descending {
        ascending.reverse()
    } else {
        ascending
    }
}

/// Walks the whole list in pages of `limit`, each after the last task of the one before.
async fn walk(s: &Store, scope: Scope, filter: &TaskFilter, sort: TaskSort, limit: u64) -> Vec<Task> {
    let mut walked: Vec<Task> = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .tasks
            .list(&TaskQuery {
                scope,
                filter: filter.clone(),
                sort,
                after,
                limit,
            })
            .await
            .unwrap();
        assert!(
            page.len() as u64 <= limit,
            "{}: a page holds at most the limit",
            s.name
        );
        let full = page.len() as u64 == limit;
        if let Some(last) = page.last() {
            after = Some(sort.position_of(last));
        }
        walked.extend(page);
        assert!(walked.len() <= 1000, "{}: the walk ends", s.name);
        if !full {
            return walked;
        }
    }
}

#[tokio::test]
async fn task_keyset_pages_walk_every_sort_exactly() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "KEY", owner).await;
        let bug = label(&s, &p, "bug").await;
        let mut rng = StdRng::seed_from_u64(0x6b65656c);
        let mut created = Vec::new();
        for i in 0..40 {
            let mut t = task_value(&p, owner, &format!("Task {i}"));
            t.priority = Priority::new(rng.random_range(0..=4i64), "priority").unwrap();
            t.status = TaskStatus::ALL[rng.random_range(0..TaskStatus::ALL.len())];
            t.due_date = if rng.random_bool(0.3) {
                None
            } else {
                NaiveDate::from_ymd_opt(2026, 12, rng.random_range(1..=6))
            };
            // Groups of four share a creation time; update times collide often.
            t.created_at = at(i / 4);
            t.updated_at = at(100 + rng.random_range(0..8i64))
                + chrono::Duration::microseconds(rng.random_range(0..3i64));
            let labels = if i % 5 == 0 { vec![bug.id] } else { vec![] };
            created.push(create_task(&s, t, &labels).await);
        }
        assert!(created.iter().any(|t| t.due_date.is_none()));
        assert!(created.iter().any(|t| t.due_date.is_some()));

        let some_statuses = TaskFilter {
            statuses: vec![TaskStatus::Todo, TaskStatus::Backlog, TaskStatus::Done],
            ..TaskFilter::default()
        };
        for key in [
            TaskSortKey::CreatedAt,
            TaskSortKey::UpdatedAt,
            TaskSortKey::Priority,
            TaskSortKey::DueDate,
        ] {
            for descending in [false, true] {
                let sort = TaskSort { key, descending };
                for filter in [TaskFilter::default(), some_statuses.clone()] {
                    let mut expected: Vec<Task> = created
                        .iter()
                        .filter(|t| filter.statuses.is_empty() || filter.statuses.contains(&t.status))
                        .cloned()
                        .collect();
                    expected.sort_by(|a, b| documented_order(sort, a, b));
                    for limit in [3, 7] {
                        let walked = walk(&s, Scope::Project(p.id), &filter, sort, limit).await;
                        assert_eq!(
                            walked.iter().map(|t| t.id).collect::<Vec<_>>(),
                            expected.iter().map(|t| t.id).collect::<Vec<_>>(),
                            "{}: {sort:?}, limit {limit}, statuses {:?}",
                            s.name,
                            filter.statuses
                        );
                        // Every field round-trips, labels and project key included.
                        assert_eq!(walked, expected, "{}: {sort:?}", s.name);
                    }
                }
            }
        }
        // The cross-project scopes page the same way.
        let all = walk(&s, Scope::All, &TaskFilter::default(), TaskSort::default(), 3).await;
        assert_eq!(all.len(), 40, "{}", s.name);
    }
}

#[tokio::test]
async fn a_cursor_of_another_sort_is_refused() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "CUR", owner).await;
        let t = create_task(&s, task_value(&p, owner, "One"), &[]).await;
        let created = TaskSort::parse("createdAt").unwrap();
        let mut q = query(
            Scope::Project(p.id),
            TaskFilter::default(),
            TaskSort::parse("priority").unwrap(),
            10,
        );
        q.after = Some(created.position_of(&t));
        assert!(matches!(s.tasks.list(&q).await, Err(StoreError::Unexpected(_))));
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Filters and scopes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn task_filters_each_narrow_the_list() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let bob = user(&s, "Bob").await;
        let p = project(&s, "FLT", owner).await;
        let bug = label(&s, &p, "bug").await;
        let ui = label(&s, &p, "ui").await;
        let docs = label(&s, &p, "docs").await;
        let _unused = label(&s, &p, "unused").await;

        let mut t1 = task_value(&p, owner, "Fix 100% CPU");
        t1.priority = Priority::new(1, "priority").unwrap();
        t1.assignee_id = Some(alice);
        t1.updated_at = at(1);
        let mut t2 = task_value(&p, owner, "fix_login");
        t2.status = TaskStatus::InProgress;
        t2.priority = Priority::new(2, "priority").unwrap();
        t2.updated_at = at(2);
        let mut t3 = task_value(&p, owner, "Write docs");
        t3.status = TaskStatus::Done;
        t3.assignee_id = Some(bob);
        t3.completed_at = Some(at(3));
        t3.updated_at = at(3);
        let mut t4 = task_value(&p, owner, "FIX crash");
        t4.status = TaskStatus::Backlog;
        t4.priority = Priority::new(1, "priority").unwrap();
        t4.updated_at = at(50);
        create_task(&s, t1, &[bug.id]).await;
        create_task(&s, t2, &[ui.id]).await;
        let t3 = create_task(&s, t3, &[ui.id, docs.id, ui.id]).await;
        let t4 = create_task(&s, t4, &[]).await;
        assert_eq!(
            t3.labels.iter().map(LabelName::as_str).collect::<Vec<_>>(),
            ["docs", "ui"],
            "{}: labels sorted, each once",
            s.name
        );

        let scope = Scope::Project(p.id);
        let f = TaskFilter::default;
        let cases: Vec<(TaskFilter, BTreeSet<String>)> = vec![
            (
                f(),
                set(&["Fix 100% CPU", "fix_login", "Write docs", "FIX crash"]),
            ),
            (
                TaskFilter {
                    statuses: vec![TaskStatus::Todo, TaskStatus::Done],
                    ..f()
                },
                set(&["Fix 100% CPU", "Write docs"]),
            ),
            (
                TaskFilter {
                    priorities: vec![Priority::new(1, "priority").unwrap()],
                    ..f()
                },
                set(&["Fix 100% CPU", "FIX crash"]),
            ),
            (
                TaskFilter {
                    priorities: vec![Priority::NONE, Priority::new(2, "priority").unwrap()],
                    ..f()
                },
                set(&["fix_login", "Write docs"]),
            ),
            (
                TaskFilter {
                    assignee: Some(AssigneeFilter::Unassigned),
                    ..f()
                },
                set(&["fix_login", "FIX crash"]),
            ),
            (
                TaskFilter {
                    assignee: Some(AssigneeFilter::User(alice)),
                    ..f()
                },
                set(&["Fix 100% CPU"]),
            ),
            (
                TaskFilter {
                    labels: vec![
                        LabelName::parse("bug").unwrap(),
                        LabelName::parse("docs").unwrap(),
                    ],
                    ..f()
                },
                set(&["Fix 100% CPU", "Write docs"]),
            ),
            (
                TaskFilter {
                    labels: vec![LabelName::parse("ui").unwrap()],
                    ..f()
                },
                set(&["fix_login", "Write docs"]),
            ),
            (
                TaskFilter {
                    labels: vec![LabelName::parse("unused").unwrap()],
                    ..f()
                },
                set(&[]),
            ),
            (
                TaskFilter {
                    q: Some("fix".into()),
                    ..f()
                },
                set(&["Fix 100% CPU", "fix_login", "FIX crash"]),
            ),
            (
                TaskFilter {
                    q: Some("FiX C".into()),
                    ..f()
                },
                set(&["FIX crash"]),
            ),
            (
                TaskFilter {
                    q: Some("100%".into()),
                    ..f()
                },
                set(&["Fix 100% CPU"]),
            ),
            (
                TaskFilter {
                    q: Some("%".into()),
                    ..f()
                },
                set(&["Fix 100% CPU"]),
            ),
            (
                TaskFilter {
                    q: Some("_".into()),
                    ..f()
                },
                set(&["fix_login"]),
            ),
            (
                TaskFilter {
                    updated_since: Some(t4.updated_at),
                    ..f()
                },
                set(&["FIX crash"]),
            ),
            (
                TaskFilter {
                    updated_since: Some(at(2)),
                    ..f()
                },
                set(&["fix_login", "Write docs", "FIX crash"]),
            ),
            (
                TaskFilter {
                    statuses: vec![TaskStatus::InProgress, TaskStatus::Done],
                    labels: vec![LabelName::parse("ui").unwrap()],
                    assignee: Some(AssigneeFilter::User(bob)),
                    q: Some("DOCS".into()),
                    ..f()
                },
                set(&["Write docs"]),
            ),
        ];
        for (filter, expected) in cases {
            let listed = all_tasks(&s, scope, filter.clone()).await;
            assert_eq!(titles(&listed), expected, "{}: {filter:?}", s.name);
        }
    }
}

#[tokio::test]
async fn task_scopes_cover_member_projects_or_all() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let mine = project(&s, "MINE", ann).await;
        let shared = project(&s, "SHARED", bob).await;
        let theirs = project(&s, "THEIRS", bob).await;
        s.members
            .add(
                shared.id,
                ann,
                ProjectRole::Viewer,
                at(1),
                &audit("member.added", Some(shared.id)),
            )
            .await
            .unwrap();
        create_task(&s, task_value(&mine, ann, "in mine"), &[]).await;
        create_task(&s, task_value(&shared, bob, "in shared"), &[]).await;
        create_task(&s, task_value(&theirs, bob, "in theirs"), &[]).await;

        let of_ann = all_tasks(&s, Scope::MemberOf(ann), TaskFilter::default()).await;
        assert_eq!(titles(&of_ann), set(&["in mine", "in shared"]), "{}", s.name);
        let keys: BTreeSet<_> = of_ann.iter().map(|t| t.identifier()).collect();
        assert_eq!(
            keys,
            ["MINE-1", "SHARED-1"].map(String::from).into(),
            "{}",
            s.name
        );
        let all = all_tasks(&s, Scope::All, TaskFilter::default()).await;
        assert_eq!(all.len(), 3, "{}", s.name);
        let one = all_tasks(&s, Scope::Project(theirs.id), TaskFilter::default()).await;
        assert_eq!(titles(&one), set(&["in theirs"]), "{}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Numbering
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_number_tasks_one_to_twenty() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "RACE", owner).await;
        let mut handles = Vec::new();
        for i in 0..20 {
            let repo = s.tasks.clone();
            let task = task_value(&p, owner, &format!("Racer {i}"));
            let entry = audit("task.created", Some(p.id));
            handles.push(tokio::spawn(async move {
                repo.create(
                    &NewTask {
                        task,
                        label_ids: vec![],
                    },
                    &entry,
                    numbered,
                )
                .await
            }));
        }
        let mut numbers = Vec::new();
        for handle in handles {
            let task = handle.await.unwrap().unwrap();
            numbers.push(task.number);
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=20).collect::<Vec<i64>>(), "{}", s.name);
        // The stored rows agree with what the creates answered.
        let mut stored: Vec<i64> = all_tasks(&s, Scope::Project(p.id), TaskFilter::default())
            .await
            .iter()
            .map(|t| t.number)
            .collect();
        stored.sort_unstable();
        assert_eq!(stored, numbers, "{}", s.name);
        // One entry for the project, one per task.
        assert_eq!(audit_entries(&s, p.id).await, 21, "{}", s.name);
    }
}

#[tokio::test]
async fn a_failed_create_leaves_no_gap_and_no_trace() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "GAP", owner).await;
        let first = create_task(&s, task_value(&p, owner, "First"), &[]).await;
        assert_eq!(first.number, 1);
        assert_eq!(first.identifier(), "GAP-1");

        // The same id again: the insert fails after the number was taken.
        let mut clash = task_value(&p, owner, "Clash");
        clash.id = first.id;
        let entry = audit("task.created", Some(p.id));
        let err = s
            .tasks
            .create(
                &NewTask {
                    task: clash,
                    label_ids: vec![],
                },
                &entry,
                numbered,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err:?}", s.name);
        assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 0, "{}", s.name);

        // The audit entry fails (its id is taken): the task and its number go too.
        let reused = audit("task.created", Some(p.id));
        s.audit.record(&reused.audit).await.unwrap();
        let doomed = task_value(&p, owner, "Doomed");
        let doomed_id = doomed.id;
        let err = s
            .tasks
            .create(
                &NewTask {
                    task: doomed,
                    label_ids: vec![],
                },
                &reused,
                numbered,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err:?}", s.name);
        assert_eq!(s.tasks.find(doomed_id).await.unwrap(), None, "{}", s.name);

        let second = create_task(&s, task_value(&p, owner, "Second"), &[]).await;
        assert_eq!(second.number, 2, "{}: no gap", s.name);

        // No such project.
        let mut orphan = task_value(&p, owner, "Orphan");
        orphan.project_id = Uuid::now_v7();
        let err = s
            .tasks
            .create(
                &NewTask {
                    task: orphan,
                    label_ids: vec![],
                },
                &audit("task.created", None),
                numbered,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{}: {err:?}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// (d) Version guards
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stale_versions_change_nothing_and_record_nothing() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "VER", owner).await;
        let task = create_task(&s, task_value(&p, owner, "Versioned"), &[]).await;
        let comment = Comment {
            id: Uuid::now_v7(),
            task_id: task.id,
            project_id: p.id,
            author_id: owner,
            body: CommentBody::parse("first").unwrap(),
            created_at: at(1),
            updated_at: at(1),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();
        let entries = audit_entries(&s, p.id).await;

        // Projects.
        let mut renamed = p.clone();
        renamed.name = ProjectName::parse("Renamed").unwrap();
        renamed.updated_at = at(5);
        renamed.version = 3;
        let stale = audit("project.updated", Some(p.id));
        assert!(
            !s.projects.update(&renamed, 2, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap(), p, "{}", s.name);
        renamed.version = 2;
        assert!(
            s.projects
                .update(&renamed, 1, &audit("project.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            s.projects.find(p.id).await.unwrap().unwrap(),
            renamed,
            "{}",
            s.name
        );

        // Tasks.
        let mut changed = task.clone();
        changed.title = TaskTitle::parse("Changed").unwrap();
        changed.version = 6;
        let stale = audit("task.updated", Some(p.id));
        assert!(
            !s.tasks.update(&changed, None, 5, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), task, "{}", s.name);

        // Comments.
        let mut edited = comment.clone();
        edited.body = CommentBody::parse("edited").unwrap();
        edited.version = 8;
        let stale = audit("comment.updated", Some(p.id));
        assert!(
            !s.comments.update(&edited, 7, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(
            s.comments.find(comment.id).await.unwrap().unwrap(),
            comment,
            "{}",
            s.name
        );
        edited.version = 2;
        edited.updated_at = at(9);
        assert!(
            s.comments
                .update(&edited, 1, &audit("comment.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            s.comments.find(comment.id).await.unwrap().unwrap(),
            edited,
            "{}",
            s.name
        );

        // Two successful updates, two entries; the stale ones none.
        assert_eq!(audit_entries(&s, p.id).await, entries + 2, "{}", s.name);
    }
}

#[tokio::test]
async fn task_update_saves_every_field_and_replaces_labels() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let p = project(&s, "UPD", owner).await;
        let bug = label(&s, &p, "bug").await;
        let ui = label(&s, &p, "ui").await;
        let docs = label(&s, &p, "docs").await;
        let task = create_task(&s, task_value(&p, owner, "Before"), &[bug.id, ui.id]).await;

        let mut after = task.clone();
        after.title = TaskTitle::parse("After").unwrap();
        after.description = Some("Now described".into());
        after.set_status(TaskStatus::Done, at(7));
        after.priority = Priority::new(2, "priority").unwrap();
        after.assignee_id = Some(alice);
        after.due_date = NaiveDate::from_ymd_opt(2027, 1, 31);
        after.updated_at = at(7);
        after.version = 2;
        assert!(
            s.tasks
                .update(
                    &after,
                    Some(&[docs.id, ui.id]),
                    1,
                    &audit("task.updated", Some(p.id))
                )
                .await
                .unwrap()
        );
        after.labels = vec![LabelName::parse("docs").unwrap(), LabelName::parse("ui").unwrap()];
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), after, "{}", s.name);
        assert_eq!(
            s.tasks.find_by_number(&p.key, 1).await.unwrap().unwrap(),
            after,
            "{}",
            s.name
        );
        assert_eq!(s.tasks.find_by_number(&p.key, 2).await.unwrap(), None);

        // Without label ids the labels stay.
        after.version = 3;
        after.title = TaskTitle::parse("Again").unwrap();
        assert!(
            s.tasks
                .update(&after, None, 2, &audit("task.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), after, "{}", s.name);

        // The priority rank follows the priority: sorting by priority sees the change.
        let urgent = {
            let mut t = task_value(&p, owner, "Urgent");
            t.priority = Priority::new(1, "priority").unwrap();
            create_task(&s, t, &[]).await
        };
        let by_priority = s
            .tasks
            .list(&query(
                Scope::Project(p.id),
                TaskFilter::default(),
                TaskSort::parse("priority").unwrap(),
                10,
            ))
            .await
            .unwrap();
        assert_eq!(
            by_priority.iter().map(|t| t.id).collect::<Vec<_>>(),
            [urgent.id, task.id],
            "{}",
            s.name
        );

        // Deleting.
        s.tasks
            .delete(task.id, &audit("task.deleted", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(s.tasks.find(task.id).await.unwrap(), None);
        assert!(matches!(
            s.tasks.delete(task.id, &audit("task.deleted", Some(p.id))).await,
            Err(StoreError::NotFound)
        ));
        let orphans = task_labels::Entity::find()
            .filter(task_labels::Column::TaskId.eq(task.id))
            .count(s.db.connection())
            .await
            .unwrap();
        assert_eq!(orphans, 0, "{}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// (e) Audit entries in the transaction of their change
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn writes_record_exactly_one_audit_entry_in_their_transaction() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project_value("AUD", "Audited", owner, 0);
        let entry = audit("project.created", Some(p.id));
        s.projects.create(&p, &entry).await.unwrap();
        assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 1, "{}", s.name);
        assert_eq!(audit_entries(&s, p.id).await, 1, "{}", s.name);
        assert_eq!(
            outbox_events_of(&s, p.id).await,
            vec![entry.event.clone()],
            "{}: the event is in the outbox, as given",
            s.name
        );
        assert_eq!(
            s.projects.role_of(p.id, owner).await.unwrap(),
            Some(ProjectRole::Owner),
            "{}: the owner's membership is stored with the project",
            s.name
        );

        // A taken key: Conflict, and the entry of the failed change is not kept.
        let taken = project_value("AUD", "Another", owner, 0);
        let refused = audit("project.created", Some(taken.id));
        assert!(matches!(
            s.projects.create(&taken, &refused).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(audit_entry_stored(&s, refused.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.projects.find(taken.id).await.unwrap(), None);
        assert!(
            outbox_events_of(&s, taken.id).await.is_empty(),
            "{}: no event",
            s.name
        );

        // A failing audit insert undoes the change it records.
        let other = project_value("AUDB", "Other", owner, 0);
        assert!(matches!(
            s.projects.create(&other, &entry).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.projects.find(other.id).await.unwrap(), None, "{}", s.name);
        assert_eq!(s.projects.role_of(other.id, owner).await.unwrap(), None);

        let task = create_task(&s, task_value(&p, owner, "Audited task"), &[]).await;
        let mut changed = task.clone();
        changed.version = 2;
        assert!(
            !s.tasks
                .update(&changed, None, 1, &entry)
                .await
                .is_ok_and(|updated| updated),
            "{}: the duplicate entry fails the update",
            s.name
        );
        assert_eq!(
            s.tasks.find(task.id).await.unwrap().unwrap().version,
            1,
            "{}",
            s.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (f), (g) Members
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn removing_a_member_unassigns_their_tasks() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let p = project(&s, "REM", owner).await;
        let elsewhere = project(&s, "ELSE", owner).await;
        for project_id in [p.id, elsewhere.id] {
            s.members
                .add(
                    project_id,
                    alice,
                    ProjectRole::Member,
                    at(1),
                    &audit("member.added", Some(project_id)),
                )
                .await
                .unwrap();
        }
        let assigned = |pr: &Project, who: Uuid, title: &str| {
            let mut t = task_value(pr, owner, title);
            t.assignee_id = Some(who);
            t
        };
        let a1 = create_task(&s, assigned(&p, alice, "Alice 1"), &[]).await;
        let a2 = create_task(&s, assigned(&p, alice, "Alice 2"), &[]).await;
        let o1 = create_task(&s, assigned(&p, owner, "Owner 1"), &[]).await;
        let a3 = create_task(&s, assigned(&elsewhere, alice, "Alice elsewhere"), &[]).await;

        s.members
            .remove(p.id, alice, at(30), &audit("member.removed", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(s.projects.role_of(p.id, alice).await.unwrap(), None, "{}", s.name);
        assert_eq!(s.members.find(p.id, alice).await.unwrap(), None);
        for t in [&a1, &a2] {
            let now = s.tasks.find(t.id).await.unwrap().unwrap();
            assert_eq!(now.assignee_id, None, "{}", s.name);
            assert_eq!(now.version, t.version + 1, "{}", s.name);
            assert_eq!(now.updated_at, at(30), "{}", s.name);
        }
        assert_eq!(s.tasks.find(o1.id).await.unwrap().unwrap(), o1, "{}", s.name);
        assert_eq!(
            s.tasks.find(a3.id).await.unwrap().unwrap(),
            a3,
            "{}: other projects keep the assignment",
            s.name
        );
        assert!(matches!(
            s.members
                .remove(p.id, alice, at(31), &audit("member.removed", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn transferring_ownership_swaps_roles_and_owner() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let carol = user(&s, "Carol").await;
        let p = project(&s, "OWN", ann).await;
        s.members
            .add(
                p.id,
                bob,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();

        s.members
            .transfer_ownership(p.id, bob, at(10), &audit("project.transferred", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(
            s.projects.role_of(p.id, ann).await.unwrap(),
            Some(ProjectRole::Admin)
        );
        assert_eq!(
            s.projects.role_of(p.id, bob).await.unwrap(),
            Some(ProjectRole::Owner)
        );
        let now = s.projects.find(p.id).await.unwrap().unwrap();
        assert_eq!(now.owner_id, bob, "{}", s.name);
        assert_eq!(now.version, p.version + 1, "{}", s.name);
        assert_eq!(now.updated_at, at(10), "{}", s.name);

        // Not a member (and not even a user): NotFound, nothing changes.
        for stranger in [carol, Uuid::now_v7()] {
            let entry = audit("project.transferred", Some(p.id));
            assert!(matches!(
                s.members.transfer_ownership(p.id, stranger, at(20), &entry).await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 0, "{}", s.name);
        }
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap(), now, "{}", s.name);
        assert_eq!(
            s.projects.role_of(p.id, bob).await.unwrap(),
            Some(ProjectRole::Owner)
        );
        assert!(matches!(
            s.members
                .transfer_ownership(Uuid::now_v7(), bob, at(20), &audit("x", None))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn members_list_find_add_and_set_role() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let carol = user(&s, "Carol").await;
        let p = project(&s, "MEM", ann).await;
        // Bob and Carol join at the same time: the user id breaks the tie.
        for who in [carol, bob] {
            s.members
                .add(
                    p.id,
                    who,
                    ProjectRole::Viewer,
                    at(5),
                    &audit("member.added", Some(p.id)),
                )
                .await
                .unwrap();
        }
        assert!(matches!(
            s.members
                .add(
                    p.id,
                    bob,
                    ProjectRole::Admin,
                    at(6),
                    &audit("member.added", Some(p.id))
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        s.members
            .set_role(
                p.id,
                bob,
                ProjectRole::Admin,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.members
                .set_role(p.id, Uuid::now_v7(), ProjectRole::Admin, &audit("x", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));

        let (page, total) = s.members.list(p.id, 0, 10).await.unwrap();
        assert_eq!(total, 3);
        let mut later = [bob, carol];
        later.sort_by_key(|id| *id.as_bytes());
        assert_eq!(
            page.iter().map(|m| m.user_id).collect::<Vec<_>>(),
            [ann, later[0], later[1]],
            "{}",
            s.name
        );
        let (second, total) = s.members.list(p.id, 1, 1).await.unwrap();
        assert_eq!((second.len(), total), (1, 3));
        assert_eq!(second[0].user_id, later[0]);

        let b = s.members.find(p.id, bob).await.unwrap().unwrap();
        assert_eq!(b.role, ProjectRole::Admin);
        assert_eq!(b.name, "Bob");
        assert!(b.email.starts_with("Bob-"));
        assert_eq!(b.joined_at, at(5));
        assert_eq!(b.project_id, p.id);
        assert_eq!(s.members.find(p.id, Uuid::now_v7()).await.unwrap(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Checks that guard a write, in the write's transaction
// ---------------------------------------------------------------------------------------------

/// `change` made by `actor`, who needed `authority` for it.
fn by(actor: Uuid, authority: Authority, mut change: Change) -> Change {
    change.audit.actor_id = Some(actor);
    change.audit.authority = Some(authority);
    change.event.event.actor_id = Some(actor);
    change
}

/// Sets a membership's role behind the stores' back: a write that committed first.
async fn set_role_directly(s: &Store, project_id: Uuid, user_id: Uuid, role: ProjectRole) {
    project_members::Entity::update_many()
        .col_expr(
            project_members::Column::Role,
            sea_orm::sea_query::Expr::value(role.as_str()),
        )
        .filter(project_members::Column::ProjectId.eq(project_id))
        .filter(project_members::Column::UserId.eq(user_id))
        .exec(s.db.connection())
        .await
        .unwrap();
}

async fn role(s: &Store, project_id: Uuid, user_id: Uuid) -> Option<ProjectRole> {
    s.projects.role_of(project_id, user_id).await.unwrap()
}

#[tokio::test]
async fn a_write_whose_actor_lost_the_role_it_needs_is_refused_in_its_transaction() {
    use Permission::{Administer, Own, WriteTasks};
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let admin = user(&s, "Admin").await;
        let member = user(&s, "Member").await;
        let p = project(&s, "AUTH", owner).await;
        for (who, r) in [(admin, ProjectRole::Admin), (member, ProjectRole::Member)] {
            s.members
                .add(p.id, who, r, at(1), &audit("member.added", Some(p.id)))
                .await
                .unwrap();
        }
        // Authorized as an admin, demoted before the write runs.
        set_role_directly(&s, p.id, admin, ProjectRole::Member).await;
        let lost = |action: &str| by(admin, Authority::Member(Administer), audit(action, Some(p.id)));

        let change = lost("member.updated");
        let e = s
            .members
            .set_role(p.id, member, ProjectRole::Viewer, &change)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, member).await,
            Some(ProjectRole::Member),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, change.audit.id).await, 0, "{}", s.name);

        let change = lost("member.removed");
        let e = s.members.remove(p.id, member, at(2), &change).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, member).await,
            Some(ProjectRole::Member),
            "{}",
            s.name
        );

        let bug = Label {
            id: Uuid::now_v7(),
            project_id: p.id,
            name: LabelName::parse("bug").unwrap(),
            color: Color::parse("#a1b2c3").unwrap(),
            created_at: at(2),
        };
        let e = s.labels.create(&bug, &lost("label.created")).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(s.labels.list(p.id, 0, 10).await.unwrap().1, 0, "{}", s.name);

        // Still enough for what a member may do.
        let held = by(
            admin,
            Authority::Member(WriteTasks),
            audit("task.created", Some(p.id)),
        );
        let first = s
            .tasks
            .create(
                &NewTask {
                    task: task_value(&p, admin, "Allowed"),
                    label_ids: vec![],
                },
                &held,
                numbered,
            )
            .await
            .unwrap();
        // A member made a viewer: no task, and no number used.
        set_role_directly(&s, p.id, member, ProjectRole::Viewer).await;
        let e = s
            .tasks
            .create(
                &NewTask {
                    task: task_value(&p, member, "Refused"),
                    label_ids: vec![],
                },
                &by(
                    member,
                    Authority::Member(WriteTasks),
                    audit("task.created", Some(p.id)),
                ),
                numbered,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        let next = create_task(&s, task_value(&p, owner, "Next"), &[]).await;
        assert_eq!(next.number, first.number + 1, "{}: no gap", s.name);

        // The owner hands the project over; a hand-over or a delete they were authorized
        // for before it is refused after it.
        s.members
            .transfer_ownership(
                p.id,
                admin,
                at(3),
                &by(owner, Authority::Member(Own), audit("member.updated", Some(p.id))),
            )
            .await
            .unwrap();
        let stale = by(owner, Authority::Member(Own), audit("member.updated", Some(p.id)));
        let e = s
            .members
            .transfer_ownership(p.id, member, at(4), &stale)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, admin).await,
            Some(ProjectRole::Owner),
            "{}",
            s.name
        );
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap().owner_id, admin);
        let stale = by(
            owner,
            Authority::Member(Own),
            audit("project.deleted", Some(p.id)),
        );
        let e = s.projects.delete(p.id, &stale).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert!(s.projects.find(p.id).await.unwrap().is_some(), "{}", s.name);
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);

        // An instance admin's authority is their account's role.
        let not_admin = by(
            member,
            Authority::InstanceAdmin,
            audit("project.deleted", Some(p.id)),
        );
        let e = s.projects.delete(p.id, &not_admin).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        users::Entity::update_many()
            .col_expr(users::Column::Role, sea_orm::sea_query::Expr::value("admin"))
            .filter(users::Column::Id.eq(member))
            .exec(s.db.connection())
            .await
            .unwrap();
        let root = by(
            member,
            Authority::InstanceAdmin,
            audit("project.deleted", Some(p.id)),
        );
        s.projects.delete(p.id, &root).await.unwrap();
        assert!(s.projects.find(p.id).await.unwrap().is_none(), "{}", s.name);
        assert_eq!(audit_entry_stored(&s, root.audit.id).await, 1, "{}", s.name);
    }
}

#[tokio::test]
async fn a_role_change_or_removal_never_touches_the_owner_it_read_as_a_member() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let heir = user(&s, "Heir").await;
        let p = project(&s, "HEIR", owner).await;
        s.members
            .add(
                p.id,
                heir,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();
        // The heir became the owner after an admin read them as a member.
        s.members
            .transfer_ownership(p.id, heir, at(2), &audit("member.updated", Some(p.id)))
            .await
            .unwrap();
        let e = s
            .members
            .set_role(
                p.id,
                heir,
                ProjectRole::Viewer,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{}: {e:?}", s.name);
        let e = s
            .members
            .remove(p.id, heir, at(3), &audit("member.removed", Some(p.id)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{}: {e:?}", s.name);
        assert_eq!(role(&s, p.id, heir).await, Some(ProjectRole::Owner), "{}", s.name);
        let stranger = Uuid::now_v7();
        let e = s
            .members
            .set_role(
                p.id,
                stranger,
                ProjectRole::Viewer,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound), "{}: {e:?}", s.name);
    }
}

#[tokio::test]
async fn restricted_details_are_stored_apart_and_read_back() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "RSTR", owner).await;
        let mut change = audit("label.created", Some(p.id));
        change.audit.restricted = Some(serde_json::json!({"url": "https://x.example/t0ken"}));
        s.audit.record(&change.audit).await.unwrap();
        let page = ActivityFeed::list(&s.audit, p.id, None, 10).await.unwrap();
        let read = page.iter().find(|e| e.id == change.audit.id).unwrap();
        assert_eq!(read.restricted, change.audit.restricted, "{}", s.name);
        assert_eq!(read.details, change.audit.details, "{}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Projects, labels, comments, the activity feed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn projects_list_by_scope_filter_and_sort() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let alpha = project_value("ALPHA", "Alpha", ann, 1);
        let mut beta = project_value("BETA", "Beta tools", ann, 2);
        beta.status = ProjectStatus::Archived;
        let gamma = project_value("GAMMA", "Gamma", bob, 3);
        let delta = project_value("DELTA", "Delta", bob, 4);
        for p in [&alpha, &beta, &gamma, &delta] {
            s.projects
                .create(p, &audit("project.created", Some(p.id)))
                .await
                .unwrap();
        }
        s.members
            .add(
                gamma.id,
                ann,
                ProjectRole::Viewer,
                at(5),
                &audit("member.added", Some(gamma.id)),
            )
            .await
            .unwrap();

        let list = |scope, filter: ProjectFilter, sort: &'static str, offset, limit| {
            let s = &s;
            async move {
                let (rows, total) = s
                    .projects
                    .list(scope, &filter, ProjectSort::parse(sort).unwrap(), offset, limit)
                    .await
                    .unwrap();
                (
                    rows.into_iter()
                        .map(|r| (r.project.key.as_str().to_owned(), r.role))
                        .collect::<Vec<_>>(),
                    total,
                )
            }
        };
        let key = |k: &str, r| (k.to_owned(), r);
        let none = ProjectFilter::default;

        assert_eq!(
            list(Scope::MemberOf(ann), none(), "name", 0, 10).await,
            (
                vec![
                    key("ALPHA", ProjectRole::Owner),
                    key("BETA", ProjectRole::Owner),
                    key("GAMMA", ProjectRole::Viewer)
                ],
                3
            ),
            "{}",
            s.name
        );
        assert_eq!(
            list(Scope::MemberOf(ann), none(), "-createdAt", 1, 1).await,
            (vec![key("BETA", ProjectRole::Owner)], 3),
            "{}",
            s.name
        );
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: Some(ProjectStatus::Archived),
                    q: None
                },
                "name",
                0,
                10
            )
            .await,
            (vec![key("BETA", ProjectRole::Owner)], 1)
        );
        // q matches the name or the key, in any case.
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: None,
                    q: Some("TOOL".into())
                },
                "name",
                0,
                10
            )
            .await
            .0,
            vec![key("BETA", ProjectRole::Owner)]
        );
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: None,
                    q: Some("gam".into())
                },
                "name",
                0,
                10
            )
            .await
            .0,
            vec![key("GAMMA", ProjectRole::Viewer)]
        );
        assert_eq!(
            list(Scope::All, none(), "-name", 0, 10).await,
            (
                vec![
                    key("GAMMA", ProjectRole::Owner),
                    key("DELTA", ProjectRole::Owner),
                    key("BETA", ProjectRole::Owner),
                    key("ALPHA", ProjectRole::Owner)
                ],
                4
            ),
            "{}",
            s.name
        );
        assert_eq!(
            list(Scope::All, none(), "createdAt", 2, 10).await.0,
            vec![key("GAMMA", ProjectRole::Owner), key("DELTA", ProjectRole::Owner)]
        );

        // updatedAt follows updates.
        let mut touched = alpha.clone();
        touched.updated_at = at(50);
        touched.version = 2;
        assert!(
            s.projects
                .update(&touched, 1, &audit("project.updated", Some(alpha.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            list(Scope::MemberOf(ann), none(), "-updatedAt", 0, 1).await.0,
            vec![key("ALPHA", ProjectRole::Owner)]
        );
        assert!(
            s.projects
                .list(Scope::Project(alpha.id), &none(), ProjectSort::default(), 0, 1)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn labels_are_unique_by_name_and_deleting_one_takes_it_off_tasks() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LAB", owner).await;
        let other = project(&s, "OTHER", owner).await;
        let ui = label(&s, &p, "ui").await;
        let bug = label(&s, &p, "bug").await;
        let _other_bug = label(&s, &other, "bug").await;
        let dup = Label {
            id: Uuid::now_v7(),
            ..bug.clone()
        };
        assert!(matches!(
            s.labels.create(&dup, &audit("label.created", Some(p.id))).await,
            Err(StoreError::Conflict(_))
        ));

        let (page, total) = s.labels.list(p.id, 0, 10).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(page, vec![bug.clone(), ui.clone()], "{}", s.name);
        assert_eq!(s.labels.find(p.id, bug.id).await.unwrap(), Some(bug.clone()));
        assert_eq!(s.labels.find(other.id, bug.id).await.unwrap(), None);
        let found = s
            .labels
            .find_by_names(
                p.id,
                &[
                    LabelName::parse("bug").unwrap(),
                    LabelName::parse("nope").unwrap(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(found, vec![bug.clone()], "{}", s.name);
        assert!(s.labels.find_by_names(p.id, &[]).await.unwrap().is_empty());

        let task = create_task(&s, task_value(&p, owner, "Labelled"), &[bug.id, ui.id]).await;
        assert!(matches!(
            s.labels
                .delete(other.id, bug.id, &audit("label.deleted", Some(other.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), task, "{}", s.name);
        s.labels
            .delete(p.id, bug.id, &audit("label.deleted", Some(p.id)))
            .await
            .unwrap();
        let now = s.tasks.find(task.id).await.unwrap().unwrap();
        assert_eq!(now.labels, vec![LabelName::parse("ui").unwrap()], "{}", s.name);
        assert_eq!(now.version, task.version + 1, "{}: a new ETag", s.name);
        assert_eq!(s.labels.find(p.id, bug.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn comments_page_oldest_first_with_their_project() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "COM", owner).await;
        let task = create_task(&s, task_value(&p, owner, "Discussed"), &[]).await;
        let other = create_task(&s, task_value(&p, owner, "Quiet"), &[]).await;
        let mut all = Vec::new();
        for i in 0..7 {
            let c = Comment {
                id: Uuid::new_v4(),
                task_id: task.id,
                project_id: p.id,
                author_id: owner,
                body: CommentBody::parse(&format!("comment {i}\nsecond line")).unwrap(),
                created_at: at(i / 3),
                updated_at: at(i / 3),
                version: 1,
            };
            s.comments
                .create(&c, &audit("comment.created", Some(p.id)))
                .await
                .unwrap();
            all.push(c);
        }
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
        });
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = s.comments.list(task.id, after, 2).await.unwrap();
            let full = page.len() == 2;
            if let Some(last) = page.last() {
                after = Some((last.created_at, last.id));
            }
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(walked, all, "{}", s.name);
        assert!(s.comments.list(other.id, None, 10).await.unwrap().is_empty());
        assert_eq!(s.comments.find(all[0].id).await.unwrap(), Some(all[0].clone()));

        s.comments
            .delete(all[0].id, &audit("comment.deleted", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(s.comments.find(all[0].id).await.unwrap(), None);
        assert!(matches!(
            s.comments
                .delete(all[0].id, &audit("comment.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn activity_feed_pages_newest_first() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "ACT", owner).await;
        let other = project(&s, "QUIET", owner).await;
        // Entries sharing a time: the id breaks the tie.
        for i in 0..9 {
            let mut entry = audit("task.updated", Some(p.id)).audit;
            entry.id = Uuid::new_v4();
            entry.occurred_at = at(i / 3);
            entry.actor_id = Some(owner);
            entry.resource_id = Some(format!("ACT-{i}"));
            s.audit.record(&entry).await.unwrap();
        }
        let mut expected: Vec<AuditEntry> = audit_log::Entity::find()
            .filter(audit_log::Column::ProjectId.eq(p.id))
            .all(s.db.connection())
            .await
            .unwrap()
            .into_iter()
            .map(|m| AuditEntry {
                id: m.id,
                occurred_at: m.occurred_at,
                actor_id: m.actor_id,
                action: m.action,
                resource_type: m.resource_type,
                resource_id: m.resource_id,
                project_id: m.project_id,
                request_id: m.request_id,
                ip: m.ip,
                details: m.details,
                restricted: m.restricted_details,
                authority: None,
            })
            .collect();
        assert_eq!(expected.len(), 10);
        expected.sort_by(|a, b| {
            b.occurred_at
                .cmp(&a.occurred_at)
                .then_with(|| b.id.as_bytes().cmp(a.id.as_bytes()))
        });
        let mut walked = Vec::new();
        let mut before = None;
        loop {
            let page = ActivityFeed::list(&s.audit, p.id, before, 4).await.unwrap();
            let full = page.len() == 4;
            if let Some(last) = page.last() {
                before = Some((last.occurred_at, last.id));
            }
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(walked, expected, "{}", s.name);
        let quiet = ActivityFeed::list(&s.audit, other.id, None, 10).await.unwrap();
        assert_eq!(quiet.len(), 1, "{}: only the project's own entries", s.name);
    }
}

#[tokio::test]
async fn deleting_a_project_removes_everything_in_it() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let p = project(&s, "DEL", owner).await;
        let kept = project(&s, "KEPT", owner).await;
        s.members
            .add(
                p.id,
                alice,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();
        let bug = label(&s, &p, "bug").await;
        let task = create_task(&s, task_value(&p, owner, "Doomed"), &[bug.id]).await;
        let kept_task = create_task(&s, task_value(&kept, owner, "Kept"), &[]).await;
        let comment = Comment {
            id: Uuid::now_v7(),
            task_id: task.id,
            project_id: p.id,
            author_id: alice,
            body: CommentBody::parse("bye").unwrap(),
            created_at: at(2),
            updated_at: at(2),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();

        let entry = audit("project.deleted", Some(p.id));
        s.projects.delete(p.id, &entry).await.unwrap();
        assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 1);
        assert_eq!(s.projects.find(p.id).await.unwrap(), None, "{}", s.name);
        let conn = s.db.connection();
        let counts = [
            project_members::Entity::find()
                .filter(project_members::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            labels::Entity::find()
                .filter(labels::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            tasks::Entity::find()
                .filter(tasks::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            task_labels::Entity::find()
                .filter(task_labels::Column::TaskId.eq(task.id))
                .count(conn)
                .await
                .unwrap(),
            comments::Entity::find()
                .filter(comments::Column::TaskId.eq(task.id))
                .count(conn)
                .await
                .unwrap(),
        ];
        assert_eq!(
            counts, [0; 5],
            "{}: members, labels, tasks, task labels, comments",
            s.name
        );
        assert_eq!(s.tasks.find(kept_task.id).await.unwrap(), Some(kept_task));
        assert!(matches!(
            s.projects
                .delete(p.id, &audit("project.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        // The project's history stays in the audit log.
        assert!(audit_entries(&s, p.id).await >= 5);
    }
}

// ---------------------------------------------------------------------------------------------
// The migration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_tracking_lists_migration_goes_down_and_up_again() {
    const NAME: &str = "m20261122_000004_tracking_lists";
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "MIG", owner).await;
        let mut t = task_value(&p, owner, "Urgent");
        t.priority = Priority::new(1, "priority").unwrap();
        let t = create_task(&s, t, &[]).await;

        let status = migrate::status(&s.db).await.unwrap();
        let at_index = status.iter().position(|m| m.name == NAME).expect("registered");
        let steps = u32::try_from(status.len() - at_index).unwrap();
        migrate::down(&s.db, steps).await.unwrap();
        let conn = s.db.connection();
        let backend = conn.get_database_backend();
        for column in [
            "SELECT version FROM projects",
            "SELECT priority_rank FROM tasks",
            "SELECT version FROM comments",
        ] {
            assert!(
                conn.query_all_raw(sea_orm::Statement::from_string(backend, column))
                    .await
                    .is_err(),
                "{}: down dropped `{column}`",
                s.name
            );
        }

        migrate::up(&s.db).await.unwrap();
        assert!(migrate::status(&s.db).await.unwrap().iter().all(|m| m.applied));
        let back = s.tasks.find(t.id).await.unwrap().unwrap();
        assert_eq!(back, t, "{}: rows survive", s.name);
        let rank: Option<i16> = tasks::Entity::find_by_id(t.id)
            .one(conn)
            .await
            .unwrap()
            .map(|m| m.priority_rank);
        assert_eq!(rank, Some(1), "{}: up ranks existing rows", s.name);
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap().version, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The outbox and its dispatcher (SPEC §6)
// ---------------------------------------------------------------------------------------------

fn dispatcher(s: &Store, bus: Arc<InProcessBus>) -> Dispatcher {
    Dispatcher::new(
        Outbox::new(s.db.clone()),
        bus,
        None,
        DispatcherSettings {
            batch_size: 4,
            ..DispatcherSettings::default()
        },
    )
}

async fn webhook(s: &Store, p: &Project, owner: Uuid, events: serde_json::Value, enabled: bool) -> Uuid {
    let id = Uuid::now_v7();
    webhooks::Entity::insert(webhooks::ActiveModel {
        id: Set(id),
        project_id: Set(p.id),
        url: Set("https://hooks.example.com/keel".into()),
        events: Set(events),
        secret: Set("sealed".into()),
        enabled: Set(enabled),
        disabled_reason: Set(None),
        created_by: Set(owner),
        created_at: Set(at(0)),
        updated_at: Set(at(0)),
        consecutive_failures: Set(0),
        open_until: Set(None),
        failing_since: Set(None),
    })
    .exec_without_returning(s.db.connection())
    .await
    .unwrap();
    id
}

async fn received(stream: &mut futures::stream::BoxStream<'static, BusMessage>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
        match message {
            BusMessage::Event(e) => ids.push(e.event.id),
            BusMessage::Interrupted | BusMessage::Lagged => panic!("no interruption expected"),
        }
    }
    ids
}

#[tokio::test]
async fn the_dispatcher_publishes_in_commit_order_queues_deliveries_and_empties_the_outbox() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "OUT", owner).await;
        let all = webhook(
            &s,
            &p,
            owner,
            serde_json::json!(["task.created", "project.created"]),
            true,
        )
        .await;
        let _tasks_only = webhook(&s, &p, owner, serde_json::json!(["task.deleted"]), true).await;
        let _disabled = webhook(&s, &p, owner, serde_json::json!(["task.created"]), false).await;
        for n in 0..9 {
            create_task(&s, task_value(&p, owner, &format!("T{n}")), &[]).await;
        }
        let expected: Vec<Uuid> = outbox_events_of(&s, p.id)
            .await
            .iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(expected.len(), 10, "{}: the project and nine tasks", s.name);

        let bus = Arc::new(InProcessBus::default());
        let mut stream = bus.subscribe();
        let d = dispatcher(&s, bus.clone());
        // 10 events in batches of 4.
        assert_eq!(d.drain().await.unwrap(), 10, "{}", s.name);
        assert_eq!(
            received(&mut stream).await,
            expected,
            "{}: in commit order",
            s.name
        );
        assert!(outbox_events_of(&s, p.id).await.is_empty(), "{}", s.name);

        let deliveries = webhook_deliveries::Entity::find()
            .order_by_asc(webhook_deliveries::Column::Id)
            .all(s.db.connection())
            .await
            .unwrap();
        assert_eq!(
            deliveries.len(),
            10,
            "{}: only the subscribed, enabled webhook",
            s.name
        );
        assert!(
            deliveries
                .iter()
                .all(|d| d.webhook_id == all && d.status == "pending")
        );
        let first: serde_json::Value = serde_json::from_str(&deliveries[0].payload).unwrap();
        assert_eq!(first["type"], "project.created", "{}", s.name);
        assert_eq!(first["id"], serde_json::json!(expected[0]), "{}", s.name);
        assert_eq!(d.drain().await.unwrap(), 0, "{}: nothing twice", s.name);
    }
}

#[tokio::test]
async fn one_instance_dispatches_at_a_time_and_a_crash_before_marking_republishes() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LEASE", owner).await;
        let bus = Arc::new(InProcessBus::default());
        let short = |s: &Store| {
            Dispatcher::new(
                Outbox::new(s.db.clone()),
                bus.clone(),
                None,
                DispatcherSettings {
                    lease_ttl: Duration::from_millis(300),
                    ..DispatcherSettings::default()
                },
            )
        };
        let (a, b) = (short(&s), short(&s));
        assert!(a.claim().await.unwrap(), "{}", s.name);
        assert!(!b.claim().await.unwrap(), "{}: the lease is held", s.name);
        assert_eq!(b.drain().await.unwrap(), 0, "{}: b publishes nothing", s.name);

        // a is "killed" between publishing a batch and marking it: it read and published the
        // event, and never finished.
        let mut stream = bus.subscribe();
        let batch = Outbox::new(s.db.clone()).next_batch(10).await.unwrap();
        let envelopes: Vec<Envelope> = batch.iter().filter_map(|p| p.envelope.clone()).collect();
        bus.publish(&envelopes).await.unwrap();
        let first = received(&mut stream).await;
        assert_eq!(first, vec![envelopes[0].event.id], "{}", s.name);

        // Its lease runs out; b takes over and publishes the same event again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(b.claim().await.unwrap(), "{}: b takes the expired lease", s.name);
        assert_eq!(
            b.drain().await.unwrap(),
            1,
            "{}: the unmarked event again",
            s.name
        );
        assert_eq!(received(&mut stream).await, first, "{}: the same event", s.name);
        assert!(outbox_events_of(&s, p.id).await.is_empty(), "{}", s.name);
        assert!(
            !a.claim().await.unwrap(),
            "{}: a is not the holder any more",
            s.name
        );
    }
}
