//! `keel dev seed`'s bulk loader against real databases: a fresh SQLite file and, when
//! `KEEL_TEST_DATABASE_URL` (a PostgreSQL URL whose user may create databases) is set, a
//! fresh PostgreSQL database as well.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use keel_domain::tracking::ports::TaskRepository;
use keel_domain::tracking::{ProjectRole, Scope, TaskFilter, TaskQuery, TaskSort};
use keel_infrastructure::entities::{labels, project_members, projects, task_labels, tasks, users};
use keel_infrastructure::seed::{SeedOptions, SeedProgress, seed};
use keel_infrastructure::tracking::SeaOrmTaskRepository;
use keel_infrastructure::{Database, DbSettings, migrate};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

async fn open(url: &str) -> Database {
    let db = Database::connect(
        &DbSettings {
            url: url.to_owned(),
            max_connections: 4,
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

/// A fresh SQLite database, and a fresh PostgreSQL one when the suite has PostgreSQL.
async fn databases() -> Vec<(&'static str, Database, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/seed.db?mode=rwc", dir.path().display());
    let mut dbs = vec![("sqlite", open(&url).await, Some(dir))];
    if let Some(admin_url) = std::env::var("KEEL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let name = format!("keel_seed_{}", Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("KEEL_TEST_DATABASE_URL has a database path");
        dbs.push(("postgres", open(&format!("{base}/{name}")).await, None));
    }
    dbs
}

fn options(tasks: u64, batch: usize) -> SeedOptions {
    SeedOptions {
        tasks,
        project_key: "BENCH".to_owned(),
        labels: 6,
        members: 4,
        batch,
        owner_email: "Seed-Owner@Example.com".to_owned(),
        password_hash: "not-a-real-hash".to_owned(),
    }
}

async fn numbers(db: &Database, project_id: Uuid) -> Vec<i64> {
    let mut numbers: Vec<i64> = tasks::Entity::find()
        .select_only()
        .column(tasks::Column::Number)
        .filter(tasks::Column::ProjectId.eq(project_id))
        .into_tuple()
        .all(db.connection())
        .await
        .unwrap();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn seeds_gap_free_numbered_varied_tasks_in_batches_and_continues_on_a_second_run() {
    for (name, db, _dir) in databases().await {
        let mut seen: Vec<SeedProgress> = Vec::new();
        let report = seed(&db, &options(2500, 1000), |p| seen.push(*p)).await.unwrap();
        assert_eq!(report.tasks, 2500, "{name}");
        assert_eq!((report.first_number, report.last_number), (1, 2500), "{name}");
        assert!(report.project_created && report.owner.created, "{name}");
        assert_eq!(report.owner.email, "seed-owner@example.com", "{name}");
        assert_eq!(report.members.len(), 4, "{name}");
        assert_eq!(report.members[0].role, ProjectRole::Admin, "{name}");
        assert_eq!(report.labels.len(), 6, "{name}");
        // Three batches of at most 1000, each reported once committed.
        let progress: Vec<u64> = seen.iter().map(|p| p.inserted).collect();
        assert_eq!(progress, vec![1000, 2000, 2500], "{name}");
        assert!(seen.iter().all(|p| p.total == 2500), "{name}");

        let conn = db.connection();
        let project = projects::Entity::find_by_id(report.project_id)
            .one(conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(project.last_task_number, 2500, "{name}");
        assert_eq!(project.owner_id, report.owner.id, "{name}");
        assert_eq!(tasks::Entity::find().count(conn).await.unwrap(), 2500, "{name}");
        assert_eq!(
            numbers(&db, report.project_id).await,
            (1..=2500).collect::<Vec<i64>>(),
            "{name}: numbers are 1..=2500, each once"
        );

        // Owner and members are members of the project; assignees and creators among them.
        let members: BTreeSet<Uuid> = project_members::Entity::find()
            .filter(project_members::Column::ProjectId.eq(report.project_id))
            .all(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        assert_eq!(members.len(), 5, "{name}");
        let rows = tasks::Entity::find().all(conn).await.unwrap();
        assert!(
            rows.iter()
                .all(|t| t.assignee_id.is_none_or(|a| members.contains(&a))),
            "{name}"
        );
        assert!(rows.iter().all(|t| members.contains(&t.created_by)), "{name}");

        // Variety: every status, priority 0 among others, assigned and not, dated and not.
        let statuses: BTreeSet<&str> = rows.iter().map(|t| t.status.as_str()).collect();
        assert_eq!(statuses.len(), 6, "{name}: {statuses:?}");
        let priorities: BTreeSet<i16> = rows.iter().map(|t| t.priority).collect();
        assert_eq!(priorities, (0..=4).collect(), "{name}");
        assert!(
            rows.iter()
                .all(|t| t.priority_rank == if t.priority == 0 { 5 } else { t.priority }),
            "{name}: priority_rank follows priority"
        );
        assert!(rows.iter().any(|t| t.assignee_id.is_none()), "{name}");
        assert!(rows.iter().any(|t| t.assignee_id.is_some()), "{name}");
        assert!(rows.iter().any(|t| t.due_date.is_none()), "{name}");
        assert!(rows.iter().any(|t| t.due_date.is_some()), "{name}");
        assert!(
            rows.iter()
                .all(|t| (t.status == "done") == t.completed_at.is_some()),
            "{name}: completed_at exactly on done tasks"
        );
        let days: BTreeSet<_> = rows.iter().map(|t| t.created_at.date_naive()).collect();
        assert!(
            days.len() > 300,
            "{name}: created_at spread over time ({} days)",
            days.len()
        );
        let by_number: HashMap<i64, &tasks::Model> = rows.iter().map(|t| (t.number, t)).collect();
        assert!(
            (2..=2500).all(|n| by_number[&(n - 1)].created_at <= by_number[&n].created_at),
            "{name}: later numbers are not older"
        );

        // Labels: 0–3 per task, all of the project, and attached to a good share of tasks.
        let label_ids: BTreeSet<Uuid> = labels::Entity::find()
            .filter(labels::Column::ProjectId.eq(report.project_id))
            .all(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(label_ids.len(), 6, "{name}");
        let links = task_labels::Entity::find().all(conn).await.unwrap();
        assert_eq!(links.len() as u64, report.task_labels, "{name}");
        assert!(links.iter().all(|l| label_ids.contains(&l.label_id)), "{name}");
        let mut per_task: HashMap<Uuid, usize> = HashMap::new();
        for link in &links {
            *per_task.entry(link.task_id).or_default() += 1;
        }
        assert!(per_task.values().all(|n| (1..=3).contains(n)), "{name}");
        assert!(
            per_task.len() > 1000,
            "{name}: {} tasks with labels",
            per_task.len()
        );
        assert!(per_task.values().any(|n| *n == 3), "{name}");

        // The rows are valid for the domain: a list through the repository reads them back.
        let page = SeaOrmTaskRepository::new(db.clone())
            .list(&TaskQuery {
                scope: Scope::Project(report.project_id),
                filter: TaskFilter::default(),
                sort: TaskSort::parse("-createdAt").unwrap(),
                after: None,
                limit: 100,
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 100, "{name}");
        assert_eq!(page[0].number, 2500, "{name}: the newest task comes first");
        assert!(page.iter().any(|t| !t.labels.is_empty()), "{name}");

        // A second run reuses the owner, project, members and labels and numbers on.
        let again = seed(&db, &options(700, 300), |_| {}).await.unwrap();
        assert!(!again.project_created && !again.owner.created, "{name}");
        assert!(again.members.iter().all(|m| !m.created), "{name}");
        assert_eq!((again.first_number, again.last_number), (2501, 3200), "{name}");
        assert_eq!(
            numbers(&db, report.project_id).await,
            (1..=3200).collect::<Vec<i64>>(),
            "{name}"
        );
        assert_eq!(users::Entity::find().count(conn).await.unwrap(), 5, "{name}");
        assert_eq!(labels::Entity::find().count(conn).await.unwrap(), 6, "{name}");
        let project = projects::Entity::find_by_id(report.project_id)
            .one(conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(project.last_task_number, 3200, "{name}");

        // One batch larger than one INSERT may carry (SQLite's 32 766 bind parameters hold
        // 2047 task rows, PostgreSQL's 65 535 hold 4095): split into several statements.
        let big = seed(&db, &options(4500, 5000), |_| {}).await.unwrap();
        assert_eq!((big.first_number, big.last_number), (3201, 7700), "{name}");
        assert_eq!(
            numbers(&db, report.project_id).await,
            (1..=7700).collect::<Vec<i64>>(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn refuses_bad_options_before_writing_anything() {
    let (_, db, _dir) = databases().await.remove(0);
    for bad in [
        SeedOptions {
            project_key: "bench".to_owned(),
            ..options(10, 10)
        },
        SeedOptions {
            batch: 0,
            ..options(10, 10)
        },
        SeedOptions {
            owner_email: "not-an-email".to_owned(),
            ..options(10, 10)
        },
    ] {
        assert!(seed(&db, &bad, |_| {}).await.is_err(), "{bad:?}");
    }
    assert_eq!(users::Entity::find().count(db.connection()).await.unwrap(), 0);
}
