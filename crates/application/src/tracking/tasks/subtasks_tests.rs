//! Unit tests of the sub-task rules in the task use cases: the parent is checked before
//! anything is written (same project, no cycle, five levels), a refusal in the write's
//! transaction is the same 400, and trash and archive carry the tree along.

use std::sync::Arc;

use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::tracking::ports::{MockTaskRepository, SubtreeAction, TreeChange, TreeWrite};
use keel_domain::tracking::{Placement, Task};
use uuid::Uuid;

use super::super::fixtures::*;
use super::super::inputs::{CreateTaskBody, UpdateTaskBody};
use super::super::{Expect, TrackingPorts};
use super::*;
use crate::AppError;
use crate::cache::testing::RecordingCache;

const PARENT: Uuid = Uuid::from_u128(0xCCCC);
const CHILD: Uuid = Uuid::from_u128(0xDDDD);

fn ports_with(tasks: MockTaskRepository) -> (TrackingPorts, Arc<RecordingCache>) {
    let fixture = Fixture {
        tasks,
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    (fixture.ports(), cache)
}

/// `PARENT` has `ancestors` above it, in `project`; the moved task's subtree is `height`
/// levels.
fn placement(project: Uuid, ancestors: Vec<Uuid>, height: usize) -> Placement {
    Placement {
        parent_id: PARENT,
        parent_project_id: project,
        parent_ancestors: ancestors,
        subtree_height: height,
    }
}

fn parent_message(e: AppError) -> String {
    match e {
        AppError::Validation(details) => {
            assert_eq!(details.len(), 1, "{details:?}");
            assert_eq!(details[0].field, "parentId");
            details[0].message.clone()
        }
        other => panic!("expected a 400 on parentId, got {other:?}"),
    }
}

async fn create_under(ports: &TrackingPorts) -> Result<TaskView, AppError> {
    let body = CreateTaskBody {
        title: "Child".into(),
        parent_id: Some(PARENT),
        ..Default::default()
    };
    create_task(ports, &member(), PROJECT_ID, body, &meta()).await
}

async fn move_under(ports: &TrackingPorts, parent: Option<Uuid>) -> Result<TaskView, AppError> {
    let body = UpdateTaskBody {
        parent_id: Some(parent),
        ..Default::default()
    };
    update_task(
        ports,
        &member(),
        &task().id.to_string(),
        body,
        Expect::Any,
        &meta(),
    )
    .await
}

#[tokio::test]
async fn a_parent_of_another_project_or_none_at_all_is_refused_before_anything_is_written() {
    for found in [Some(placement(Uuid::from_u128(0xEEEE), vec![], 1)), None] {
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_placement()
            .withf(|task, parent| task.is_none() && *parent == PARENT)
            .returning(move |_, _| Ok(found.clone()));
        tasks.expect_create().never();
        let (ports, _) = ports_with(tasks);
        let message = parent_message(create_under(&ports).await.unwrap_err());
        assert!(message.contains("same project"), "{message}");
    }
}

#[tokio::test]
async fn a_sixth_level_is_refused_and_a_fifth_is_stored_with_its_parent() {
    let mut tasks = MockTaskRepository::new();
    let four_deep = (1..=4).map(Uuid::from_u128).collect::<Vec<_>>();
    tasks
        .expect_placement()
        .returning(move |_, _| Ok(Some(placement(PROJECT_ID, four_deep.clone(), 1))));
    tasks.expect_create().never();
    let (ports, _) = ports_with(tasks);
    let message = parent_message(create_under(&ports).await.unwrap_err());
    assert!(message.contains("5 levels"), "{message}");

    let mut tasks = MockTaskRepository::new();
    let three_deep = (1..=3).map(Uuid::from_u128).collect::<Vec<_>>();
    tasks
        .expect_placement()
        .returning(move |_, _| Ok(Some(placement(PROJECT_ID, three_deep.clone(), 1))));
    tasks
        .expect_create()
        .withf(|n, _, _| n.task.parent_id == Some(PARENT))
        .times(1)
        .returning(|n, _, _| {
            Ok(Task {
                number: 2,
                ..n.task.clone()
            })
        });
    let (ports, cache) = ports_with(tasks);
    let view = create_under(&ports).await.unwrap();
    assert_eq!(view.parent_id, Some(PARENT));
    // The parent counts one child more: its cached view goes.
    assert!(cache.invalidated().contains(&format!("task:{PARENT}")));
}

#[tokio::test]
async fn moving_a_task_under_its_own_descendant_or_too_deep_is_refused() {
    // PARENT is a grandchild of the moved task: a cycle.
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    let moved = task().id;
    tasks
        .expect_placement()
        .withf(move |t, p| *t == Some(moved) && *p == PARENT)
        .returning(move |_, _| Ok(Some(placement(PROJECT_ID, vec![CHILD, moved], 1))));
    tasks.expect_update_tree().never();
    tasks.expect_update().never();
    let (ports, _) = ports_with(tasks);
    let message = parent_message(move_under(&ports, Some(PARENT)).await.unwrap_err());
    assert!(message.contains("itself"), "{message}");

    // A subtree of three levels under a parent on level 3: six levels.
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks
        .expect_placement()
        .returning(|_, _| Ok(Some(placement(PROJECT_ID, vec![CHILD, Uuid::from_u128(9)], 3))));
    tasks.expect_update_tree().never();
    let (ports, _) = ports_with(tasks);
    let message = parent_message(move_under(&ports, Some(PARENT)).await.unwrap_err());
    assert!(message.contains("5 levels"), "{message}");
}

#[tokio::test]
async fn a_move_is_a_tree_write_and_a_refusal_in_its_transaction_is_the_same_400() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks.expect_find().returning(|_| Ok(Some(task())));
    tasks
        .expect_placement()
        .returning(|_, _| Ok(Some(placement(PROJECT_ID, vec![], 1))));
    // The tree changed between the check and the write: the store refuses under its lock.
    tasks
        .expect_update_tree()
        .withf(|t, _, expected, tree, c| {
            t.parent_id == Some(PARENT)
                && *expected == 1
                && *tree == TreeChange::Reparent
                && c.event_type() == EventType::TaskUpdated
                && c.audit.details.as_ref().unwrap()["changed"] == serde_json::json!(["parentId"])
                && c.event
                    .event
                    .previous
                    .as_ref()
                    .is_some_and(|p| p["parentId"].is_null())
        })
        .times(1)
        .returning(|_, _, _, _, _| {
            Err(StoreError::Conflict(
                "parent: would make the task a sub-task of itself or of one of its sub-tasks".into(),
            ))
        });
    let (ports, cache) = ports_with(tasks);
    let message = parent_message(move_under(&ports, Some(PARENT)).await.unwrap_err());
    assert!(message.contains("itself"), "{message}");
    assert!(cache.invalidated().is_empty());

    // Applied: the old and new parents the store names go stale with the task.
    let mut tasks = MockTaskRepository::new();
    reads_task(
        &mut tasks,
        Task {
            parent_id: Some(CHILD),
            ..task()
        },
    );
    tasks
        .expect_update_tree()
        .withf(|t, _, _, _, _| t.parent_id.is_none())
        .times(1)
        .returning(|_, _, _, _, _| {
            Ok(TreeWrite {
                applied: true,
                others: vec![CHILD],
            })
        });
    tasks.expect_placement().never();
    let (ports, cache) = ports_with(tasks);
    let view = move_under(&ports, None).await.unwrap();
    assert_eq!((view.parent_id, view.version), (None, 2));
    assert!(cache.invalidated().contains(&format!("task:{CHILD}")));
}

#[tokio::test]
async fn trashing_a_task_in_a_tree_detaches_it_and_its_children_make_them_stale() {
    let mut tasks = MockTaskRepository::new();
    reads_task(
        &mut tasks,
        Task {
            parent_id: Some(PARENT),
            child_count: 1,
            ..task()
        },
    );
    tasks
        .expect_update_tree()
        .withf(|t, _, _, tree, c| {
            t.parent_id.is_none()
                && t.deleted_at == Some(now())
                && *tree == TreeChange::Trash
                && c.event_type() == EventType::TaskDeleted
        })
        .times(1)
        .returning(|_, _, _, _, _| {
            Ok(TreeWrite {
                applied: true,
                others: vec![PARENT, CHILD],
            })
        });
    let (ports, cache) = ports_with(tasks);
    delete_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    let stale = cache.invalidated();
    for key in [format!("task:{PARENT}"), format!("task:{CHILD}")] {
        assert!(stale.contains(&key), "{key} in {stale:?}");
    }
}

#[tokio::test]
async fn archiving_a_parent_archives_its_subtree_with_its_time_and_unarchiving_brings_back_those() {
    let parent = Task {
        child_count: 2,
        ..task()
    };
    let alone = Task {
        id: Uuid::from_u128(0x1001),
        archived_at: Some(now() - chrono::Duration::days(1)),
        ..task()
    };
    let child = Task {
        id: CHILD,
        parent_id: Some(parent.id),
        version: 5,
        ..task()
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, parent.clone());
    let subtree = vec![child.clone(), alone.clone()];
    tasks.expect_descendants().returning(move |_| Ok(subtree.clone()));
    // The parent and the child in ONE store write: one `task.archived` change each (its own
    // audit entry and event, `previous` included), at the parent's time, each at the version
    // read; the task archived before stays as it was.
    tasks
        .expect_archive_subtree()
        .withf(|a| {
            let ids: Vec<(Uuid, i64)> = a.writes.iter().map(|w| (w.task_id, w.expected_version)).collect();
            ids == [(task().id, 1), (CHILD, 5)]
                && a.action == SubtreeAction::Archive { at: now() }
                && a.writes.iter().all(|w| {
                    let c = &w.change;
                    c.event_type() == EventType::TaskArchived
                        && c.resource_id() == Some(w.task_id)
                        && c.audit.authority.is_some()
                        && c.event.event.data["archivedAt"] == serde_json::json!(now())
                        && c.event.event.previous == Some(serde_json::json!({ "archivedAt": null }))
                })
                && a.writes[1].change.event.event.data["version"] == serde_json::json!(6)
                && a.writes[0].change.audit.id != a.writes[1].change.audit.id
        })
        .times(1)
        .returning(|_| Ok(true));
    let (ports, cache) = ports_with(tasks);
    let view = archive_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    assert_eq!(view.archived_at, Some(now()));
    // Each task written is stale: the parent, the child, their project's pages.
    let stale = cache.invalidated();
    for key in [
        format!("task:{}", task().id),
        format!("task:{CHILD}"),
        format!("tasks-of:{PROJECT_ID}"),
    ] {
        assert!(stale.contains(&key), "{key} in {stale:?}");
    }
    assert!(!stale.contains(&format!("task:{}", alone.id)), "{stale:?}");

    let archived_parent = Task {
        archived_at: Some(now()),
        ..parent
    };
    let archived_child = Task {
        archived_at: Some(now()),
        ..child
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, archived_parent);
    let subtree = vec![archived_child, alone];
    tasks.expect_descendants().returning(move |_| Ok(subtree.clone()));
    tasks
        .expect_archive_subtree()
        .withf(|a| {
            let ids: Vec<Uuid> = a.writes.iter().map(|w| w.task_id).collect();
            ids == [task().id, CHILD]
                && a.action == SubtreeAction::Unarchive { at: now() }
                && a.writes
                    .iter()
                    .all(|w| w.change.event_type() == EventType::TaskUnarchived)
        })
        .times(1)
        .returning(|_| Ok(true));
    let (ports, _) = ports_with(tasks);
    unarchive_task(&ports, &member(), "KEEL-1", &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cascade_the_store_refuses_is_read_again_whole_and_invalidates_nothing_until_written() {
    // First attempt: the parent and one child. The store refuses it (a grandchild was added
    // meanwhile): nothing was written; the second attempt reads the parent and the subtree
    // again and writes all three.
    let parent = Task {
        child_count: 1,
        ..task()
    };
    let child = Task {
        id: CHILD,
        parent_id: Some(parent.id),
        ..task()
    };
    let grandchild = Task {
        id: Uuid::from_u128(0xEEEE),
        parent_id: Some(CHILD),
        ..task()
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, parent.clone());
    let reread = parent.clone();
    tasks
        .expect_find()
        .times(1)
        .returning(move |_| Ok(Some(reread.clone())));
    let mut subtrees = vec![vec![child.clone()], vec![child, grandchild.clone()]].into_iter();
    tasks
        .expect_descendants()
        .times(2)
        .returning(move |_| Ok(subtrees.next().unwrap_or_default()));
    let mut seq = mockall::Sequence::new();
    tasks
        .expect_archive_subtree()
        .withf(|a| a.writes.len() == 2)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(false));
    tasks
        .expect_archive_subtree()
        .withf(|a| a.writes.len() == 3)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(true));
    let (ports, cache) = ports_with(tasks);
    archive_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    let stale = cache.invalidated();
    assert!(stale.contains(&format!("task:{}", grandchild.id)), "{stale:?}");

    // A store error (the database, a lost role) is the answer: nothing is retried.
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, parent);
    tasks.expect_descendants().returning(|_| Ok(Vec::new()));
    tasks
        .expect_archive_subtree()
        .times(1)
        .returning(|_| Err(StoreError::AuthorityLost));
    let (ports, cache) = ports_with(tasks);
    assert!(archive_task(&ports, &member(), "KEEL-1", &meta()).await.is_err());
    assert!(cache.invalidated().is_empty());
}
