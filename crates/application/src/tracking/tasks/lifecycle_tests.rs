//! Unit tests of archive, unarchive, trash, restore, purge and the trash list.

use chrono::Duration;
use keel_domain::events::EventType;
use keel_domain::tracking::ports::{MockTaskRepository, SubtreeAction};
use serde_json::json;

use std::sync::Arc;

use keel_domain::tracking::Task;
use uuid::Uuid;

use super::super::TrackingPorts;
use super::super::fixtures::*;
use super::lifecycle::PURGE_BATCH;
use super::*;
use crate::AppError;
use crate::cache::testing::RecordingCache;
use crate::pagination::{CursorRequest, encode_cursor};

fn trashed() -> Task {
    Task {
        deleted_at: Some(now() - Duration::days(2)),
        version: 4,
        ..task()
    }
}

fn ports_with(tasks: MockTaskRepository) -> (TrackingPorts, Arc<RecordingCache>) {
    let fixture = Fixture {
        tasks,
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    (fixture.ports(), cache)
}

fn both_keys() -> Vec<String> {
    vec![format!("tasks-of:{PROJECT_ID}"), format!("task:{}", task().id)]
}

#[tokio::test]
async fn archive_sets_archived_at_events_and_makes_the_task_and_its_pages_stale() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    // A task without children: the store is asked for the task alone, at the version read.
    tasks.expect_descendants().never();
    tasks
        .expect_archive_subtree()
        .withf(|a| {
            let [w] = a.writes.as_slice() else {
                return false;
            };
            let c = &w.change;
            a.root == task().id
                && a.project_id == PROJECT_ID
                && a.action == SubtreeAction::Archive { at: now() }
                && a.updated_at == now()
                && w.task_id == task().id
                && w.expected_version == 1
                && c.event_type() == EventType::TaskArchived
                && c.resource_id() == Some(task().id)
                && c.audit.authority.is_some()
                && c.event.event.data["archivedAt"] == json!(now())
                && c.event.event.data["version"] == json!(2)
                && c.event.event.previous == Some(json!({ "archivedAt": null }))
        })
        .times(1)
        .returning(|_| Ok(true));
    let (ports, cache) = ports_with(tasks);
    let view = archive_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    assert_eq!((view.archived_at, view.version), (Some(now()), 2));
    assert_eq!(cache.invalidated(), both_keys());
}

#[tokio::test]
async fn archiving_an_archived_task_or_unarchiving_a_live_one_writes_nothing() {
    let archived = Task {
        archived_at: Some(now()),
        ..task()
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, archived.clone());
    tasks.expect_archive_subtree().never();
    let (ports, cache) = ports_with(tasks);
    let view = archive_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    assert_eq!((view.archived_at, view.version), (Some(now()), 1));

    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks.expect_archive_subtree().never();
    let (ports, _) = ports_with(tasks);
    let view = unarchive_task(&ports, &member(), "KEEL-1", &meta())
        .await
        .unwrap();
    assert_eq!(view.archived_at, None);
    assert!(cache.invalidated().is_empty());
}

#[tokio::test]
async fn unarchive_clears_archived_at_and_viewers_and_strangers_may_not() {
    let archived = Task {
        archived_at: Some(now()),
        ..task()
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, archived);
    tasks
        .expect_archive_subtree()
        .withf(|a| {
            a.action == SubtreeAction::Unarchive { at: now() }
                && a.writes.len() == 1
                && a.writes[0].change.event_type() == EventType::TaskUnarchived
                && a.writes[0].change.event.event.data["archivedAt"] == json!(null)
        })
        .times(1)
        .returning(|_| Ok(true));
    let (ports, _) = ports_with(tasks);
    let id = task().id.to_string();
    assert!(matches!(
        unarchive_task(&ports, &viewer(), &id, &meta()).await,
        Err(AppError::Forbidden)
    ));
    assert!(matches!(
        archive_task(&ports, &stranger(), &id, &meta()).await,
        Err(AppError::NotFound("task"))
    ));
    let view = unarchive_task(&ports, &member(), &id, &meta()).await.unwrap();
    assert_eq!(view.archived_at, None);
}

#[tokio::test]
async fn a_lost_race_reads_the_task_again_and_a_task_trashed_meanwhile_is_404() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks.expect_archive_subtree().times(1).returning(|_| Ok(false));
    // The re-read finds no live task: it went to the trash.
    tasks.expect_find().times(1).returning(|_| Ok(None));
    let (ports, cache) = ports_with(tasks);
    assert!(matches!(
        archive_task(&ports, &member(), "KEEL-1", &meta()).await,
        Err(AppError::NotFound("task"))
    ));
    assert!(cache.invalidated().is_empty(), "a lost race makes nothing stale");
}

#[tokio::test]
async fn restore_takes_a_task_out_of_the_trash_with_its_number() {
    let live = Task {
        id: Uuid::from_u128(0x11FE),
        number: 2,
        ..task()
    };
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, live.clone());
    tasks
        .expect_find_trashed()
        .returning(|id| Ok((id == task().id).then(trashed)));
    tasks
        .expect_find_trashed_by_number()
        .returning(|key, number| Ok((key.as_str() == "KEEL" && number == 1).then(trashed)));
    tasks
        .expect_update()
        .withf(|t, _, expected, c| {
            t.deleted_at.is_none()
                && t.number == 1
                && *expected == 4
                && c.event_type() == EventType::TaskRestored
                && c.event.event.data["identifier"] == "KEEL-1"
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let (ports, cache) = ports_with(tasks);
    let (trashed_id, live_id) = (task().id.to_string(), live.id.to_string());
    for (who, what, expected) in [
        (member(), Uuid::from_u128(0xDEAD).to_string(), "404"),
        (member(), live_id.clone(), "404"),
        (viewer(), live_id, "403"),
        (stranger(), trashed_id.clone(), "404"),
        (viewer(), trashed_id, "403"),
    ] {
        let got = match restore_task(&ports, &who, &what, &meta()).await {
            Err(AppError::NotFound("task")) => "404",
            Err(AppError::Forbidden) => "403",
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(got, expected, "{what}");
    }
    let view = restore_task(&ports, &member(), "keel-1", &meta()).await.unwrap();
    assert_eq!(
        (view.identifier.as_str(), view.deleted_at, view.version),
        ("KEEL-1", None, 5)
    );
    assert_eq!(cache.invalidated(), both_keys());
}

#[tokio::test]
async fn permanent_delete_needs_a_project_admin_and_works_in_and_out_of_the_trash() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    let in_trash = Uuid::from_u128(0x7777);
    tasks.expect_find_trashed_by_number().returning(|_, _| Ok(None));
    tasks.expect_find_trashed().returning(move |id| {
        Ok((id == in_trash).then(|| Task {
            id: in_trash,
            ..trashed()
        }))
    });
    tasks
        .expect_purge()
        .withf(move |id, before, c| {
            before.is_none()
                && c.event_type() == EventType::TaskPurged
                && c.audit.details.as_ref().unwrap()["fromTrash"] == json!(*id == in_trash)
                && c.event.event.data == json!({"id": id, "identifier": "KEEL-1"})
        })
        .times(2)
        .returning(|_, _, _| Ok(true));
    let (ports, cache) = ports_with(tasks);
    for who in [member(), viewer()] {
        assert!(matches!(
            purge_task(&ports, &who, "KEEL-1", &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            purge_task(&ports, &who, &in_trash.to_string(), &meta()).await,
            Err(AppError::Forbidden)
        ));
    }
    purge_task(&ports, &owner(), "KEEL-1", &meta()).await.unwrap();
    purge_task(&ports, &owner(), &in_trash.to_string(), &meta())
        .await
        .unwrap();
    assert_eq!(
        cache.invalidated(),
        [
            both_keys(),
            vec![format!("tasks-of:{PROJECT_ID}"), format!("task:{in_trash}")]
        ]
        .concat()
    );
}

#[tokio::test]
async fn a_permanent_delete_that_finds_nothing_left_is_404() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks.expect_find_trashed().returning(|_| Ok(None));
    tasks.expect_purge().times(1).returning(|_, _, _| Ok(false));
    let (ports, cache) = ports_with(tasks);
    assert!(matches!(
        purge_task(&ports, &owner(), &task().id.to_string(), &meta()).await,
        Err(AppError::NotFound("task"))
    ));
    assert!(cache.invalidated().is_empty());
}

#[tokio::test]
async fn the_trash_is_read_by_members_newest_deletion_first_with_a_cursor() {
    let mut tasks = MockTaskRepository::new();
    let after = (now(), Uuid::from_u128(3));
    tasks
        .expect_trash_page()
        .withf(move |p, a, limit| *p == PROJECT_ID && *a == Some(after) && *limit == 2)
        .times(1)
        .returning(|_, _, _| {
            Ok(vec![
                trashed(),
                Task {
                    id: Uuid::from_u128(9),
                    ..trashed()
                },
            ])
        });
    let (ports, _) = ports_with(tasks);
    let cursor = encode_cursor(&after).unwrap();
    assert!(matches!(
        list_project_trash(
            &ports,
            &stranger(),
            PROJECT_ID,
            CursorRequest::parse(Some("1"), Some(&cursor)).unwrap()
        )
        .await,
        Err(AppError::NotFound("project"))
    ));
    let page = list_project_trash(
        &ports,
        &viewer(),
        PROJECT_ID,
        CursorRequest::parse(Some("1"), Some(&cursor)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].deleted_at, trashed().deleted_at);
    assert!(page.pagination.next_cursor.is_some());
}

#[tokio::test]
async fn the_background_purge_deletes_what_is_past_retention_as_system_changes() {
    let retention = Duration::days(30);
    let before = now() - retention;
    let mut tasks = MockTaskRepository::new();
    let (gone, restored_meanwhile) = (Uuid::from_u128(0x1), Uuid::from_u128(0x2));
    tasks
        .expect_expired_trash()
        .withf(move |b, _| *b == before)
        .times(1)
        .returning(move |_, _| {
            Ok(vec![
                Task {
                    id: gone,
                    ..trashed()
                },
                Task {
                    id: restored_meanwhile,
                    ..trashed()
                },
            ])
        });
    tasks
        .expect_purge()
        .withf(move |_, b, c| {
            *b == Some(before)
                && c.audit.actor_id.is_none()
                && c.event.event.actor_id.is_none()
                && c.audit.authority.is_none()
                && c.event_type() == EventType::TaskPurged
                && c.audit.details.as_ref().unwrap()["expired"] == json!(true)
        })
        .times(2)
        // The store refuses the task restored since it was read.
        .returning(move |id, _, _| Ok(id == gone));
    let (ports, cache) = ports_with(tasks);
    assert_eq!(purge_expired_trash(&ports, now(), retention).await.unwrap(), 1);
    assert_eq!(
        cache.invalidated(),
        [format!("tasks-of:{PROJECT_ID}"), format!("task:{gone}")]
    );
}

#[tokio::test]
async fn the_background_purge_reads_full_batches_again_and_stops_when_nothing_moves() {
    let mut tasks = MockTaskRepository::new();
    let mut batches = 0;
    tasks.expect_expired_trash().times(2).returning(move |_, limit| {
        batches += 1;
        let n = if batches == 1 { limit } else { 3 };
        Ok((0..n)
            .map(|i| Task {
                id: Uuid::from_u128(u128::from(i) + 100 * batches),
                ..trashed()
            })
            .collect())
    });
    tasks.expect_purge().returning(|_, _, _| Ok(true));
    let (ports, _) = ports_with(tasks);
    assert_eq!(
        purge_expired_trash(&ports, now(), Duration::days(30))
            .await
            .unwrap(),
        PURGE_BATCH + 3
    );

    // A full batch none of which can be purged is not read forever.
    let mut tasks = MockTaskRepository::new();
    tasks.expect_expired_trash().times(1).returning(|_, limit| {
        Ok((0..limit)
            .map(|i| Task {
                id: Uuid::from_u128(u128::from(i)),
                ..trashed()
            })
            .collect())
    });
    tasks.expect_purge().returning(|_, _, _| Ok(false));
    let (ports, _) = ports_with(tasks);
    assert_eq!(
        purge_expired_trash(&ports, now(), Duration::days(30))
            .await
            .unwrap(),
        0
    );
}
