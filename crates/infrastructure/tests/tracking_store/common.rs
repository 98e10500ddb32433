//! The databases every scenario runs on, and the fixtures the modules share.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use keel_domain::audit::AuditEntry;
use keel_domain::events::{Change, Envelope, EventType};
use keel_domain::tracking::ports::{LabelRepository, NewTask, ProjectRepository, TaskRepository};
use keel_domain::tracking::{
    Color, Label, LabelName, Priority, Project, ProjectKey, ProjectName, ProjectStatus, Scope, StateCategory,
    StateKey, Task, TaskFilter, TaskQuery, TaskSort, TaskTitle, WorkflowState,
};
use keel_infrastructure::audit::SeaOrmAuditLog;
use keel_infrastructure::entities::{audit_log, outbox_events, users};
use keel_infrastructure::tracking::{
    SeaOrmCommentRepository, SeaOrmLabelRepository, SeaOrmMemberRepository, SeaOrmProjectRepository,
    SeaOrmTaskRepository,
};
use keel_infrastructure::{Database, DbSettings, migrate};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

/// One migrated database of its own, and the adapters on it.
pub(crate) struct Store {
    pub(crate) name: &'static str,
    pub(crate) db: Database,
    pub(crate) projects: SeaOrmProjectRepository,
    pub(crate) members: SeaOrmMemberRepository,
    pub(crate) labels: SeaOrmLabelRepository,
    pub(crate) tasks: SeaOrmTaskRepository,
    pub(crate) comments: SeaOrmCommentRepository,
    pub(crate) audit: SeaOrmAuditLog,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn open(url: &str) -> Database {
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
    pub(crate) fn new(name: &'static str, db: Database, dir: Option<tempfile::TempDir>) -> Self {
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
pub(crate) async fn stores() -> Vec<Store> {
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
pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// A change as a use case would record it: its audit entry, and its event (of the action's
/// type; `project.updated` for actions that name none).
pub(crate) fn audit(action: &str, project_id: Option<Uuid>) -> Change {
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
        token_id: None,
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
pub(crate) fn numbered(task: &Task) -> serde_json::Value {
    serde_json::json!({ "number": task.number })
}

pub(crate) async fn user(s: &Store, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        email: Set(format!("{name}-{}@example.com", id.simple())),
        name: Set(name.to_owned()),
        role: Set("user".to_owned()),
        status: Set("active".to_owned()),
        password_hash: Set("not-a-hash".to_owned()),
        email_verified: Set(false),
        created_at: Set(at(0)),
        updated_at: Set(at(0)),
    })
    .exec_without_returning(s.db.connection())
    .await
    .unwrap();
    id
}

pub(crate) fn project_value(key: &str, name: &str, owner: Uuid, created: i64) -> Project {
    Project {
        id: Uuid::now_v7(),
        key: ProjectKey::parse(key).unwrap(),
        name: ProjectName::parse(name).unwrap(),
        description: Some(format!("About {name}")),
        status: ProjectStatus::Active,
        owner_id: owner,
        default_state: self::key("todo"),
        state_keys: keel_domain::tracking::default_state_keys(),
        version: 1,
        created_at: at(created),
        updated_at: at(created),
    }
}

pub(crate) async fn project(s: &Store, key: &str, owner: Uuid) -> Project {
    let p = project_value(key, &format!("Project {key}"), owner, 0);
    s.projects
        .create(&p, &audit("project.created", Some(p.id)))
        .await
        .unwrap();
    p
}

pub(crate) fn task_value(p: &Project, creator: Uuid, title: &str) -> Task {
    Task {
        id: Uuid::new_v4(),
        project_id: p.id,
        project_key: p.key.clone(),
        number: 0,
        title: TaskTitle::parse(title).unwrap(),
        description: None,
        status: key("todo"),
        status_category: StateCategory::Unstarted,
        priority: Priority::NONE,
        assignee_id: None,
        labels: vec![],
        label_ids: vec![],
        due_date: None,
        created_by: creator,
        created_at: at(0),
        updated_at: at(0),
        completed_at: None,
        archived_at: None,
        blocked_by_count: 0,
        parent_id: None,
        child_count: 0,
        child_done_count: 0,
        deleted_at: None,
        version: 1,
    }
}

pub(crate) async fn create_task(s: &Store, task: Task, label_ids: &[Uuid]) -> Task {
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

pub(crate) async fn label(s: &Store, p: &Project, name: &str) -> Label {
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

pub(crate) async fn audit_entries(s: &Store, project_id: Uuid) -> u64 {
    audit_log::Entity::find()
        .filter(audit_log::Column::ProjectId.eq(project_id))
        .count(s.db.connection())
        .await
        .unwrap()
}

/// The outbox's events of a project, in publication order.
pub(crate) async fn outbox_events_of(s: &Store, project_id: Uuid) -> Vec<Envelope> {
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

pub(crate) async fn audit_entry_stored(s: &Store, id: Uuid) -> u64 {
    audit_log::Entity::find_by_id(id)
        .count(s.db.connection())
        .await
        .unwrap()
}

pub(crate) fn query(scope: Scope, filter: TaskFilter, sort: TaskSort, limit: u64) -> TaskQuery {
    TaskQuery {
        scope,
        filter,
        sort,
        after: None,
        limit,
    }
}

/// Every task the query matches, in one page.
pub(crate) async fn all_tasks(s: &Store, scope: Scope, filter: TaskFilter) -> Vec<Task> {
    s.tasks
        .list(&query(scope, filter, TaskSort::default(), 1000))
        .await
        .unwrap()
}

pub(crate) fn titles(tasks: &[Task]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.title.as_str().to_owned()).collect()
}

pub(crate) fn set(titles: &[&str]) -> BTreeSet<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}

/// A state key of the default states.
pub fn key(k: &str) -> StateKey {
    StateKey::parse(k, "status").unwrap()
}

/// Puts `task` in the default state `k`, with its category.
pub fn in_state(task: &mut Task, k: &str) {
    task.status = key(k);
    task.status_category = WorkflowState::default_category(k).unwrap();
}
