//! The workflow state store: a project's six default states, the tasks of a state kept in
//! step with its category, deletion with the tasks moved first, the refusals held in the
//! write, and the migration that gave existing projects their states.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{ProjectRepository, StateRepository, TaskRepository};
use keel_domain::tracking::{
    Color, Scope, StateCategory, StateKey, StateName, Task, TaskFilter, WorkflowState,
};
use keel_infrastructure::migrate;
use keel_infrastructure::tracking::SeaOrmStateRepository;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::common::*;

fn state_value(project_id: Uuid, k: &str, category: StateCategory, position: i32) -> WorkflowState {
    WorkflowState {
        id: Uuid::now_v7(),
        project_id,
        key: key(k),
        name: StateName::parse(k).unwrap(),
        category,
        color: Color::parse("#123456").unwrap(),
        position,
        created_at: at(1),
        updated_at: at(1),
    }
}

fn keys(states: &[WorkflowState]) -> Vec<&str> {
    states.iter().map(|s| s.key.as_str()).collect()
}

async fn reread(s: &Store, t: &Task) -> Task {
    s.tasks.find(t.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_new_project_has_the_six_default_states_and_todo_as_its_default() {
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "DEF", owner).await;
        let listed = states.list(p.id).await.unwrap();
        assert_eq!(
            keys(&listed),
            ["backlog", "todo", "in_progress", "in_review", "done", "canceled"],
            "{}",
            s.name
        );
        assert_eq!(
            s.projects
                .find(p.id)
                .await
                .unwrap()
                .unwrap()
                .default_state
                .as_str(),
            "todo"
        );
        assert_eq!(states.list(Uuid::now_v7()).await.unwrap(), Vec::new());
    }
}

#[tokio::test]
async fn a_state_category_change_reaches_its_tasks_and_completed_at_follows() {
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "CAT", owner).await;
        let qa = state_value(p.id, "qa", StateCategory::Started, 9);
        states
            .create(&qa, &audit("state.created", Some(p.id)))
            .await
            .unwrap();
        let project = s.projects.find(p.id).await.unwrap().unwrap();
        assert_eq!(project.state_keys.last(), Some(&key("qa")), "{}", s.name);
        assert_eq!(project.state_keys.len(), 7);
        let duplicate = state_value(p.id, "qa", StateCategory::Backlog, 10);
        assert!(matches!(
            states
                .create(&duplicate, &audit("state.created", Some(p.id)))
                .await,
            Err(StoreError::Conflict(_))
        ));

        let mut t = task_value(&p, owner, "In QA");
        t.status = key("qa");
        t.status_category = StateCategory::Started;
        let t = create_task(&s, t, &[]).await;
        let other = create_task(&s, task_value(&p, owner, "Todo"), &[]).await;

        let mut done_qa = qa.clone();
        done_qa.category = StateCategory::Completed;
        done_qa.updated_at = at(5);
        let changed = states
            .update(&done_qa, &audit("state.updated", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(changed, vec![(p.id, t.id)], "{}", s.name);
        let now = reread(&s, &t).await;
        assert_eq!(
            (now.status_category, now.completed_at, now.version, now.updated_at),
            (StateCategory::Completed, Some(at(5)), 2, at(5)),
            "{}",
            s.name
        );
        assert_eq!(
            reread(&s, &other).await,
            other,
            "{}: other states' tasks untouched",
            s.name
        );
        let completed = all_tasks(
            &s,
            Scope::Project(p.id),
            TaskFilter {
                categories: vec![StateCategory::Completed],
                ..TaskFilter::default()
            },
        )
        .await;
        assert_eq!(completed.iter().map(|t| t.id).collect::<Vec<_>>(), [t.id]);

        // Back to started: the completion time goes.
        let mut reopened = done_qa.clone();
        reopened.category = StateCategory::Started;
        reopened.updated_at = at(6);
        states
            .update(&reopened, &audit("state.updated", Some(p.id)))
            .await
            .unwrap();
        let now = reread(&s, &t).await;
        assert_eq!(
            (now.status_category, now.completed_at, now.version),
            (StateCategory::Started, None, 3)
        );

        // A task write whose state changed category since it was read writes nothing.
        let mut stale = now.clone();
        stale.status_category = StateCategory::Completed;
        stale.version = 4;
        assert!(
            !s.tasks
                .update(&stale, None, 3, &audit("task.updated", Some(p.id)))
                .await
                .unwrap()
        );
        let mut gone = now.clone();
        gone.status = key("nowhere");
        assert!(
            !s.tasks
                .update(&gone, None, 3, &audit("task.updated", Some(p.id)))
                .await
                .unwrap()
        );
        let mut nowhere = task_value(&p, owner, "Nowhere");
        nowhere.status = key("nowhere");
        assert!(matches!(
            s.tasks
                .create(
                    &keel_domain::tracking::ports::NewTask {
                        task: nowhere,
                        label_ids: vec![]
                    },
                    &audit("task.created", Some(p.id)),
                    numbered
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(reread(&s, &t).await.version, 3);
    }
}

#[tokio::test]
async fn deleting_a_state_moves_its_tasks_first_and_refuses_the_default_and_the_last() {
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "DEL", owner).await;
        let mut t = task_value(&p, owner, "Done");
        in_state(&mut t, "done");
        t.completed_at = Some(at(0));
        let t = create_task(&s, t, &[]).await;
        let listed = states.list(p.id).await.unwrap();
        let by_key = |k: &str| listed.iter().find(|s| s.key.as_str() == k).unwrap().id;
        let delete = |id, to: &str| {
            let to = StateKey::parse(to, "moveTo").unwrap();
            let states = states.clone();
            async move {
                states
                    .delete(p.id, id, &to, at(9), &audit("state.deleted", Some(p.id)))
                    .await
            }
        };

        for (id, to) in [
            (by_key("todo"), "backlog"),
            (by_key("done"), "done"),
            (by_key("done"), "nope"),
        ] {
            assert!(
                matches!(delete(id, to).await, Err(StoreError::Conflict(_))),
                "{}: {to}",
                s.name
            );
        }
        assert!(matches!(
            delete(Uuid::now_v7(), "todo").await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(reread(&s, &t).await, t, "{}: refusals change nothing", s.name);

        let changed = delete(by_key("done"), "in_review").await.unwrap();
        assert_eq!(changed, vec![(p.id, t.id)]);
        let moved = reread(&s, &t).await;
        assert_eq!(
            (
                moved.status.as_str(),
                moved.status_category,
                moved.completed_at,
                moved.version
            ),
            ("in_review", StateCategory::Started, None, 2),
            "{}",
            s.name
        );
        assert_eq!(
            keys(&states.list(p.id).await.unwrap()),
            ["backlog", "todo", "in_progress", "in_review", "canceled"]
        );
        // Down to the default alone: it is the last, and cannot go.
        for k in ["backlog", "in_progress", "in_review", "canceled"] {
            let id = by_key(k);
            delete(id, "todo").await.unwrap();
        }
        assert!(matches!(
            delete(by_key("todo"), "todo").await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(reread(&s, &t).await.status.as_str(), "todo");
        let project = s.projects.find(p.id).await.unwrap().unwrap();
        assert_eq!(
            project.state_keys,
            [key("todo")],
            "{}: the project's keys follow",
            s.name
        );
    }
}

#[tokio::test]
async fn the_default_state_is_one_of_the_project_states_when_it_is_written() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "DFT", owner).await;
        let mut changed = p.clone();
        changed.default_state = key("backlog");
        changed.version = 2;
        assert!(
            s.projects
                .update(&changed, 1, true, &audit("project.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            s.projects
                .find(p.id)
                .await
                .unwrap()
                .unwrap()
                .default_state
                .as_str(),
            "backlog"
        );
        let mut unknown = changed.clone();
        unknown.default_state = key("nope");
        unknown.version = 3;
        assert!(matches!(
            s.projects
                .update(&unknown, 2, true, &audit("project.updated", Some(p.id)))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.projects.find(p.id).await.unwrap().unwrap().version,
            2,
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn known_keys_are_those_of_the_projects_in_scope() {
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let other = user(&s, "Other").await;
        let p = project(&s, "KNA", owner).await;
        let q = project(&s, "KNB", other).await;
        states
            .create(
                &state_value(q.id, "qa", StateCategory::Started, 9),
                &audit("state.created", Some(q.id)),
            )
            .await
            .unwrap();
        let asked = [key("todo"), key("qa"), key("open")];
        let known = |scope| {
            let (states, asked) = (states.clone(), asked.clone());
            async move {
                let mut k: Vec<String> = states
                    .known_keys(&scope, &asked)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(StateKey::into_inner)
                    .collect();
                k.sort();
                k
            }
        };
        assert_eq!(known(Scope::Project(p.id)).await, ["todo"]);
        assert_eq!(known(Scope::MemberOf(owner)).await, ["todo"]);
        assert_eq!(known(Scope::MemberOf(other)).await, ["qa", "todo"]);
        assert_eq!(known(Scope::All).await, ["qa", "todo"], "{}", s.name);
    }
}

/// Data of before the migration (projects and tasks, a custom state) goes down and up: down
/// moves tasks of custom states to the default state of their category; up gives every
/// project the six states and each task its category.
#[tokio::test]
async fn the_workflow_states_migration_goes_down_and_up_with_existing_data() {
    const NAME: &str = "m20261207_000021_workflow_states";
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "MIGS", owner).await;
        let shipped = state_value(p.id, "shipped", StateCategory::Completed, 9);
        states
            .create(&shipped, &audit("state.created", Some(p.id)))
            .await
            .unwrap();
        let mut a = task_value(&p, owner, "Shipped");
        a.status = key("shipped");
        a.status_category = StateCategory::Completed;
        a.completed_at = Some(at(2));
        let a = create_task(&s, a, &[]).await;
        let mut b = task_value(&p, owner, "Doing");
        in_state(&mut b, "in_progress");
        let b = create_task(&s, b, &[]).await;

        let status = migrate::status(&s.db).await.unwrap();
        let at_index = status.iter().position(|m| m.name == NAME).expect("registered");
        let steps = u32::try_from(status.len() - at_index).unwrap();
        migrate::down(&s.db, steps).await.unwrap();
        let conn = s.db.connection();
        let backend = conn.get_database_backend();
        for gone in [
            "SELECT key FROM workflow_states",
            "SELECT default_state FROM projects",
            "SELECT status_category FROM tasks",
        ] {
            assert!(
                conn.query_all_raw(sea_orm::Statement::from_string(backend, gone))
                    .await
                    .is_err(),
                "{}: down dropped `{gone}`",
                s.name
            );
        }
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                format!("SELECT status FROM tasks WHERE number = {}", a.number),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "status").unwrap(), "done", "{}", s.name);

        migrate::up(&s.db).await.unwrap();
        assert_eq!(
            keys(&states.list(p.id).await.unwrap()),
            ["backlog", "todo", "in_progress", "in_review", "done", "canceled"]
        );
        assert_eq!(
            s.projects
                .find(p.id)
                .await
                .unwrap()
                .unwrap()
                .default_state
                .as_str(),
            "todo"
        );
        let a = reread(&s, &a).await;
        assert_eq!(
            (a.status.as_str(), a.status_category, a.completed_at),
            ("done", StateCategory::Completed, Some(at(2))),
            "{}",
            s.name
        );
        let b2 = reread(&s, &b).await;
        assert_eq!(
            (b2.status_category, b2.version),
            (StateCategory::Started, b.version),
            "{}",
            s.name
        );
    }
}

/// The `task.updated` events in the project's outbox, by task id.
async fn task_updates(
    s: &Store,
    project: Uuid,
) -> std::collections::BTreeMap<String, keel_domain::events::DomainEvent> {
    outbox_events_of(s, project)
        .await
        .into_iter()
        .filter(|e| e.event.event_type == keel_domain::events::EventType::TaskUpdated)
        .map(|e| (e.event.data["id"].as_str().unwrap().to_owned(), e.event))
        .collect()
}

/// The task as `GET /tasks/{id}` shows it.
fn view(t: &Task) -> serde_json::Value {
    serde_json::to_value(keel_application::tracking::views::TaskView::from(t)).unwrap()
}

#[tokio::test]
async fn tasks_rewritten_by_a_state_write_get_a_task_updated_event_each_showing_them_as_read_after() {
    for s in stores().await {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "EVT", owner).await;
        let qa = state_value(p.id, "qa", StateCategory::Started, 9);
        states
            .create(&qa, &audit("state.created", Some(p.id)))
            .await
            .unwrap();
        let ui = label(&s, &p, "ui").await;
        let api = label(&s, &p, "Api").await;
        let mut first = task_value(&p, owner, "Labelled \"quoted\" é");
        first.status = key("qa");
        first.status_category = StateCategory::Started;
        first.description = Some("line\nbreak".into());
        first.due_date = chrono::NaiveDate::from_ymd_opt(2026, 12, 24);
        first.assignee_id = Some(owner);
        first.created_at = at(0) + chrono::Duration::microseconds(123_456);
        let first = create_task(&s, first, &[ui.id, api.id]).await;
        let mut child = task_value(&p, owner, "Child");
        child.status = key("qa");
        child.status_category = StateCategory::Started;
        child.parent_id = Some(first.id);
        child.created_at = at(0) + chrono::Duration::milliseconds(5);
        let child = create_task(&s, child, &[]).await;
        let elsewhere = create_task(&s, task_value(&p, owner, "Todo"), &[]).await;
        // One in the trash: rewritten, but no event names it.
        let mut trashed = task_value(&p, owner, "Trashed");
        trashed.status = key("qa");
        trashed.status_category = StateCategory::Started;
        let trashed = create_task(&s, trashed, &[]).await;
        let mut gone = trashed.clone();
        gone.deleted_at = Some(at(2));
        gone.version = 2;
        assert!(
            s.tasks
                .update(&gone, None, 1, &audit("task.deleted", Some(p.id)))
                .await
                .unwrap()
        );

        let mut done_qa = qa.clone();
        done_qa.category = StateCategory::Completed;
        done_qa.updated_at = at(5) + chrono::Duration::nanoseconds(7_000);
        let change = audit("state.updated", Some(p.id));
        states.update(&done_qa, &change).await.unwrap();
        let events = task_updates(&s, p.id).await;
        assert_eq!(events.len(), 2, "{}: {events:?}", s.name);
        for t in [&first, &child] {
            let event = &events[&t.id.to_string()];
            let now = reread(&s, t).await;
            assert_eq!(event.data, view(&now), "{}", s.name);
            assert_eq!(
                event.previous,
                Some(serde_json::json!({"statusCategory": "started"})),
                "{}",
                s.name
            );
            assert_eq!(
                (event.project_id, event.actor_id, event.occurred_at),
                (p.id, change.audit.actor_id, change.audit.occurred_at)
            );
        }
        assert_ne!(events[&first.id.to_string()].id, events[&child.id.to_string()].id);
        assert!(!events.contains_key(&elsewhere.id.to_string()));

        // Deleted with `moveTo`: each its event again, naming the old key and category.
        let listed = states.list(p.id).await.unwrap();
        let qa_id = listed.iter().find(|st| st.key.as_str() == "qa").unwrap().id;
        let before = outbox_events_of(&s, p.id).await.len();
        states
            .delete(
                p.id,
                qa_id,
                &key("in_progress"),
                at(9),
                &audit("state.deleted", Some(p.id)),
            )
            .await
            .unwrap();
        let outbox = outbox_events_of(&s, p.id).await;
        let moved: Vec<_> = outbox[before..]
            .iter()
            .filter(|e| e.event.event_type == keel_domain::events::EventType::TaskUpdated)
            .collect();
        assert_eq!(moved.len(), 2, "{}", s.name);
        for e in moved {
            let id: Uuid = e.event.data["id"].as_str().unwrap().parse().unwrap();
            let now = s.tasks.find(id).await.unwrap().unwrap();
            assert_eq!(e.event.data, view(&now), "{}", s.name);
            assert_eq!(now.status.as_str(), "in_progress");
            assert_eq!(
                e.event.previous,
                Some(serde_json::json!({"status": "qa", "statusCategory": "completed"})),
                "{}",
                s.name
            );
        }
    }
}

/// Measures a category change of a state holding `KEEL_MEASURE_TASKS` tasks (default
/// 50 000) on PostgreSQL — the rewrite with one `task.updated` per task:
/// `cargo test -p keel-infrastructure --test tracking_store measure_a_category_change -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn measure_a_category_change_of_a_large_state() {
    let n: i64 = std::env::var("KEEL_MEASURE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    for s in stores().await.into_iter().filter(|s| s.name == "postgres") {
        let states = SeaOrmStateRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "BIG", owner).await;
        let qa = state_value(p.id, "qa", StateCategory::Started, 9);
        states
            .create(&qa, &audit("state.created", Some(p.id)))
            .await
            .unwrap();
        s.db.connection()
            .execute_unprepared(&format!(
                "INSERT INTO tasks (id, project_id, number, title, title_folded, status, \
                 status_category, priority, priority_rank, created_by, created_at, updated_at, version) \
                 SELECT gen_random_uuid(), '{p}', g, 'Task ' || g, 'task ' || g, 'qa', 'started', 0, 5, \
                 '{owner}', now(), now(), 1 FROM generate_series(1, {n}) g",
                p = p.id
            ))
            .await
            .unwrap();
        s.db.connection()
            .execute_unprepared("ANALYZE tasks")
            .await
            .unwrap();
        let mut done = qa.clone();
        done.category = StateCategory::Completed;
        done.updated_at = at(5);
        let started = std::time::Instant::now();
        let changed = states
            .update(&done, &audit("state.updated", Some(p.id)))
            .await
            .unwrap();
        let took = started.elapsed();
        let events = outbox_events_of(&s, p.id).await.len();
        println!(
            "category change of a state of {n} tasks: {took:?} ({} tasks named, {events} outbox events)",
            changed.len()
        );
    }
}
