//! Tasks: keyset pagination, filters and scopes, numbering, updates.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::NaiveDate;
use keel_domain::StoreError;
use keel_domain::audit::AuditLog;
use keel_domain::tracking::ports::{LabelRepository, MemberRepository, NewTask, TaskRepository, TaskWrite};
use keel_domain::tracking::{
    AssigneeFilter, LabelName, Priority, ProjectRole, Scope, Task, TaskFilter, TaskQuery, TaskSort,
    TaskSortKey, TaskTitle, WorkflowState,
};
use keel_infrastructure::entities::task_labels;
use keel_infrastructure::tracking::SeaOrmTaskRepository;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

/// `update_many` (a bulk update's write): each task on its own at its expected version — a
/// stale one, and one put in a state its project does not have, are not written and record
/// nothing; the others are written whole (fields, labels replaced), each with its audit
/// entry and its event, in the order given, in one commit.
#[tokio::test]
async fn update_many_writes_each_task_at_its_version_and_records_only_those_written() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "MNY", owner).await;
        let ui = label(&s, &p, "ui").await;
        let bug = label(&s, &p, "bug").await;
        let a = create_task(&s, task_value(&p, owner, "A"), &[bug.id]).await;
        let b = create_task(&s, task_value(&p, owner, "B"), &[]).await;
        let c = create_task(&s, task_value(&p, owner, "C"), &[ui.id]).await;
        let d = create_task(&s, task_value(&p, owner, "D"), &[]).await;
        let (entries, events) = (
            audit_entries(&s, p.id).await,
            outbox_events_of(&s, p.id).await.len(),
        );
        let urgent = Priority::new(1, "priority").unwrap();
        let write = |t: &Task, expected: i64, title: &str, labels: Option<Vec<Uuid>>| {
            let mut after = t.clone();
            after.title = TaskTitle::parse(title).unwrap();
            after.priority = urgent;
            after.version = expected + 1;
            after.updated_at = at(7);
            let mut change = audit("task.updated", Some(p.id));
            change.audit.resource_id = Some(t.id.to_string());
            TaskWrite {
                task: after,
                expected_version: expected,
                label_ids: labels,
                change,
            }
        };
        let mut nowhere = write(&d, d.version, "D2", None);
        nowhere.task.status = key("nowhere");
        let writes = vec![
            write(&a, a.version, "A2", Some(vec![ui.id, bug.id])),
            write(&b, b.version + 5, "B2", None),
            write(&c, c.version, "C2", Some(Vec::new())),
            nowhere,
        ];
        let written = s.tasks.update_many(&writes).await.unwrap();
        assert_eq!(written, [a.id, c.id], "{}", s.name);
        let stored = |id| {
            let tasks = &s.tasks;
            async move { tasks.find(id).await.unwrap().unwrap() }
        };
        let a2 = stored(a.id).await;
        assert_eq!(
            (a2.title.as_str(), a2.version, a2.priority, a2.updated_at),
            ("A2", 2, urgent, at(7)),
            "{}",
            s.name
        );
        let names = |t: &Task| t.labels.iter().map(|l| l.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&a2), ["bug", "ui"], "{}", s.name);
        let c2 = stored(c.id).await;
        assert_eq!((c2.title.as_str(), c2.version, names(&c2).len()), ("C2", 2, 0));
        for (t, title) in [(&b, "B"), (&d, "D")] {
            let untouched = stored(t.id).await;
            assert_eq!(
                (untouched.title.as_str(), untouched.version),
                (title, 1),
                "{}",
                s.name
            );
        }
        // One entry and one event per task written, in the order given.
        assert_eq!(audit_entries(&s, p.id).await, entries + 2, "{}", s.name);
        let outbox = outbox_events_of(&s, p.id).await;
        let tail: Vec<Uuid> = outbox[events..].iter().map(|e| e.event.id).collect();
        let want: Vec<Uuid> = [&writes[0], &writes[2]]
            .iter()
            .map(|w| w.change.event.event.id)
            .collect();
        assert_eq!(tail, want, "{}", s.name);
        // Nothing written: nothing recorded.
        let stale = [write(&b, 9, "X", None)];
        assert!(
            s.tasks.update_many(&stale).await.unwrap().is_empty(),
            "{}",
            s.name
        );
        assert_eq!(audit_entries(&s, p.id).await, entries + 2, "{}", s.name);
    }
}

// (a) Keyset pagination

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
            let states = WorkflowState::defaults(p.id, at(0));
            let pick = &states[rng.random_range(0..states.len())];
            in_state(&mut t, pick.key.as_str());
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
            statuses: vec![key("todo"), key("backlog"), key("done")],
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

/// A list with `q` reads its first tasks before the search index on PostgreSQL (the
/// window): a shortcut, never another answer. Every sort, both directions, pages of 3 and 7,
/// windows of 1, 2, 5 and 1 000 tasks, through `list` and `page_with_access`: the same tasks
/// in the documented order.
#[tokio::test]
async fn lists_with_q_give_the_same_pages_whatever_the_window() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "WQ", owner).await;
        let mut rng = StdRng::seed_from_u64(0x77696e64);
        let mut matching = Vec::new();
        for i in 0..24 {
            let title = if i % 3 == 0 {
                format!("Alpha task {i}")
            } else {
                format!("Task {i}")
            };
            let mut t = task_value(&p, owner, &title);
            t.priority = Priority::new(rng.random_range(0..=4i64), "priority").unwrap();
            t.due_date =
                NaiveDate::from_ymd_opt(2026, 12, rng.random_range(1..=4)).filter(|_| rng.random_bool(0.7));
            t.created_at = at(i / 2);
            t.updated_at = at(50 + rng.random_range(0..6i64));
            let t = create_task(&s, t, &[]).await;
            if i % 3 == 0 {
                matching.push(t);
            }
        }
        let filter = TaskFilter {
            q: Some("alph".into()),
            ..TaskFilter::default()
        };
        for window in [1, 2, 5, 1000] {
            let mut windowed = Store::new(s.name, s.db.clone(), None);
            windowed.tasks = SeaOrmTaskRepository::with_list_window(s.db.clone(), window);
            for key in [
                TaskSortKey::CreatedAt,
                TaskSortKey::UpdatedAt,
                TaskSortKey::Priority,
                TaskSortKey::DueDate,
            ] {
                for descending in [false, true] {
                    let sort = TaskSort { key, descending };
                    let mut expected = matching.clone();
                    expected.sort_by(|a, b| documented_order(sort, a, b));
                    let expected: Vec<Uuid> = expected.iter().map(|t| t.id).collect();
                    for limit in [3, 7] {
                        let walked = walk(&windowed, Scope::Project(p.id), &filter, sort, limit).await;
                        let walked: Vec<Uuid> = walked.iter().map(|t| t.id).collect();
                        assert_eq!(
                            walked, expected,
                            "{}: window {window}, {sort:?}, limit {limit}",
                            s.name
                        );
                    }
                    let (_, page) = windowed
                        .tasks
                        .page_with_access(
                            p.id,
                            owner,
                            &TaskQuery {
                                scope: Scope::Project(p.id),
                                filter: filter.clone(),
                                sort,
                                after: None,
                                limit: 5,
                            },
                        )
                        .await
                        .unwrap()
                        .unwrap();
                    let page: Vec<Uuid> = page.iter().map(|t| t.id).collect();
                    assert_eq!(page, expected[..5], "{}: window {window}, {sort:?}", s.name);
                }
            }
        }
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

// (b) Filters and scopes

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
        in_state(&mut t2, "in_progress");
        t2.priority = Priority::new(2, "priority").unwrap();
        t2.updated_at = at(2);
        let mut t3 = task_value(&p, owner, "Write docs");
        in_state(&mut t3, "done");
        t3.assignee_id = Some(bob);
        t3.completed_at = Some(at(3));
        t3.updated_at = at(3);
        let mut t4 = task_value(&p, owner, "FIX crash");
        in_state(&mut t4, "backlog");
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
                    statuses: vec![key("todo"), key("done")],
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
            // Through the search index: every word as a prefix of a word, any case;
            // punctuation only separates words, so it matches nothing on its own.
            (
                TaskFilter {
                    q: Some("FiX C".into()),
                    ..f()
                },
                set(&["Fix 100% CPU", "FIX crash"]),
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
                set(&[]),
            ),
            (
                TaskFilter {
                    q: Some("_".into()),
                    ..f()
                },
                set(&[]),
            ),
            (
                TaskFilter {
                    q: Some("login".into()),
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
                    statuses: vec![key("in_progress"), key("done")],
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
        // A token's project limit narrows the scope, never widens it.
        let limited = TaskFilter {
            projects: Some(vec![shared.id, theirs.id]),
            ..TaskFilter::default()
        };
        let of_token = all_tasks(&s, Scope::MemberOf(ann), limited).await;
        assert_eq!(titles(&of_token), set(&["in shared"]), "{}", s.name);
    }
}

// (c) Numbering

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
        after.set_status(
            key("done"),
            keel_domain::tracking::StateCategory::Completed,
            at(7),
        );
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
        after.label_ids = vec![docs.id, ui.id];
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

        // Deleting for good (a live task: the trash is in `task_lifecycle.rs`).
        assert!(
            s.tasks
                .purge(task.id, None, &audit("task.purged", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(s.tasks.find(task.id).await.unwrap(), None);
        assert!(
            !s.tasks
                .purge(task.id, None, &audit("task.purged", Some(p.id)))
                .await
                .unwrap()
        );
        let orphans = task_labels::Entity::find()
            .filter(task_labels::Column::TaskId.eq(task.id))
            .count(s.db.connection())
            .await
            .unwrap();
        assert_eq!(orphans, 0, "{}", s.name);
    }
}

/// A page (a task page, an offset page) is planned with its values on every execution: on
/// PostgreSQL it never becomes a named prepared statement, so PostgreSQL can never swap in
/// the generic plan that cannot see the page's limit nor how many rows its filter matches (docs/performance.md: 233 ms
/// instead of 3 ms over a project of 1 000 000 tasks).
#[tokio::test]
async fn pages_are_never_kept_as_prepared_statements_on_postgresql() {
    use sea_orm::ConnectionTrait;
    for s in stores().await {
        if s.name != "postgres" {
            continue;
        }
        let owner = user(&s, "Planner").await;
        let p = project(&s, "PLN", owner).await;
        create_task(&s, task_value(&p, owner, "One"), &[]).await;
        for _ in 0..8 {
            let q = query(
                Scope::Project(p.id),
                TaskFilter::default(),
                TaskSort::default(),
                10,
            );
            assert!(s.tasks.page_with_access(p.id, owner, &q).await.unwrap().is_some());
            assert_eq!(s.tasks.list(&q).await.unwrap().len(), 1);
            // An offset page (labels, members, projects, users, the audit log) as well.
            assert_eq!(s.labels.list(p.id, 0, 10).await.unwrap().1, 0);
        }
        // Sequential use of a fresh pool: every statement above ran on this one connection,
        // whose prepared statements the view lists (this query's own among them).
        let row =
            s.db.connection()
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) FILTER (WHERE statement LIKE '%pg_prepared_statements%') AS own, \
                 coalesce(string_agg(statement, ' | ') FILTER (WHERE \
                   (statement LIKE '%FROM \"tasks\"%' OR statement LIKE '% OFFSET %') \
                   AND statement NOT LIKE '%pg_prepared_statements%'), '') AS kept \
                 FROM pg_prepared_statements",
                ))
                .await
                .unwrap()
                .unwrap();
        let own: i64 = row.try_get("", "own").unwrap();
        let kept: String = row.try_get("", "kept").unwrap();
        assert_eq!(own, 1, "the check runs in the session that ran the pages");
        assert_eq!(kept, "", "a page was kept as a prepared statement");
    }
}

/// Moves `task` under `parent` (`None`: top-level) as `PATCH` does, at its stored version.
async fn move_task(
    s: &Store,
    task: Uuid,
    parent: Option<Uuid>,
) -> Result<keel_domain::tracking::ports::TreeWrite, StoreError> {
    let mut t = s.tasks.find(task).await.unwrap().unwrap();
    let expected = t.version;
    t.version += 1;
    t.parent_id = parent;
    s.tasks
        .update_tree(
            &t,
            None,
            expected,
            keel_domain::tracking::ports::TreeChange::Reparent,
            &audit("task.updated", Some(t.project_id)),
        )
        .await
}

/// Two moves written at once that each pass alone but close a cycle together: the store
/// checks in the write's transaction under the project's lock, so exactly one commits —
/// on both databases, every round (without the lock, PostgreSQL commits both).
#[tokio::test]
async fn concurrent_moves_that_would_close_a_cycle_commit_one() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "TREE", owner).await;
        let a = create_task(&s, task_value(&p, owner, "A"), &[]).await.id;
        let b = create_task(&s, task_value(&p, owner, "B"), &[]).await.id;
        for round in 0..5 {
            let (first, second) = tokio::join!(move_task(&s, a, Some(b)), move_task(&s, b, Some(a)));
            let results = [first, second];
            let won = results.iter().filter(|r| matches!(r, Ok(w) if w.applied)).count();
            let refused = results
                .iter()
                .filter(|r| matches!(r, Err(StoreError::Conflict(why)) if why.starts_with("parent: ")))
                .count();
            assert_eq!((won, refused), (1, 1), "{} round {round}: {results:?}", s.name);
            for task in [a, b] {
                move_task(&s, task, None).await.unwrap();
            }
        }
        // The counts and the children read back from the tree.
        move_task(&s, b, Some(a)).await.unwrap();
        let parent = s.tasks.find(a).await.unwrap().unwrap();
        assert_eq!(
            (parent.child_count, parent.child_done_count),
            (1, 0),
            "{}",
            s.name
        );
        assert_eq!(s.tasks.child_ids(a).await.unwrap(), vec![b], "{}", s.name);
        let placement = s.tasks.placement(Some(a), b).await.unwrap().unwrap();
        assert!(placement.check(Some(a), p.id).is_err(), "{}", s.name);
    }
}

/// A task read looks each of its labels up by primary key, whatever plan PostgreSQL keeps for
/// it: joined, the generic plan of the prepared read walked the whole `labels` table (every
/// project's) for each task that has labels — a hash of it, or a merge along its primary key —
/// a third of a task read's executor time with a few hundred labels, and once per row of a
/// page (docs/performance.md, "The task read statement").
#[tokio::test]
async fn a_task_read_never_scans_every_label_on_postgresql() {
    use sea_orm::ConnectionTrait;
    for s in stores().await {
        if s.name != "postgres" {
            continue;
        }
        let owner = user(&s, "Labeller").await;
        let p = project(&s, "LBL", owner).await;
        // Three labels on the task: the planner expects as many per task.
        let bug = label(&s, &p, "bug").await;
        let docs = label(&s, &p, "docs").await;
        let ui = label(&s, &p, "ui").await;
        let task = create_task(&s, task_value(&p, owner, "Labelled"), &[ui.id, bug.id, docs.id]).await;
        let run = |sql: String| {
            let db = s.db.clone();
            async move {
                db.connection()
                    .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
                    .await
                    .unwrap()
            }
        };
        // Other projects' labels, as on any real instance: 400 rows the planner knows of.
        run(format!(
            "INSERT INTO labels (id, project_id, name, color, created_at) \
             SELECT gen_random_uuid(), '{}', 'filler-' || i, '#a1b2c3', now() \
             FROM generate_series(1, 400) i",
            p.id
        ))
        .await;
        run("ANALYZE labels, task_labels, tasks, projects, project_members".to_owned()).await;
        // The read's statement text, from the prepared statements of a session that ran it.
        let mut statement = None;
        for _ in 0..20 {
            let (read, _) = s.tasks.find_with_access(task.id, owner).await.unwrap().unwrap();
            assert_eq!(
                read.labels,
                vec![bug.name.clone(), docs.name.clone(), ui.name.clone()]
            );
            assert_eq!(read.label_ids, vec![bug.id, docs.id, ui.id]);
            let rows = run(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%\"t_labels\"%' \
                 AND statement LIKE '%\"caller_role\"%' AND statement NOT LIKE '%pg_prepared_statements%'"
                    .to_owned(),
            )
            .await;
            if let Some(row) = rows.first() {
                statement = Some(row.try_get::<String>("", "statement").unwrap());
                break;
            }
        }
        let statement = statement.expect("the task read is a prepared statement");
        // Its generic plan, as PostgreSQL keeps it after five executions: prepared, explained
        // and dropped in one call (one session).
        run(
            "CREATE FUNCTION keel_test_generic_plan(stmt text, a uuid, b uuid) RETURNS SETOF text \
             LANGUAGE plpgsql AS $$ DECLARE line text; BEGIN \
             SET LOCAL plan_cache_mode = force_generic_plan; \
             EXECUTE 'PREPARE keel_test_read(uuid, uuid) AS ' || stmt; \
             FOR line IN EXECUTE format('EXPLAIN EXECUTE keel_test_read(%L, %L)', a, b) LOOP \
             RETURN NEXT line; END LOOP; DEALLOCATE keel_test_read; END $$"
                .to_owned(),
        )
        .await;
        let plan: Vec<String> = run(format!(
            "SELECT keel_test_generic_plan('{}', '{owner}', '{}') AS line",
            statement.replace('\'', "''"),
            task.id
        ))
        .await
        .iter()
        .map(|row| row.try_get("", "line").unwrap())
        .collect();
        let plan = plan.join("\n");
        // Each label by its id (joined, the plan walked `labels`: a hash of it, or a merge
        // along its whole primary key).
        assert!(plan.contains("Index Cond: (id = tl.label_id)"), "{plan}");
        assert!(!plan.contains("Seq Scan on labels"), "{plan}");
    }
}
