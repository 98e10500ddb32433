//! A task's lifecycle: archive and unarchive, move to the trash (`DELETE`), restore, purge
//! for good (`?permanent=true`, and the background purge of expired trash), and the
//! project's trash list.
//!
//! Archiving, trashing and restoring are each a change of one task, written as an update
//! guarded by the version read (retried on a lost race, like `PATCH`).
//!
//! Sub-tasks: archiving a task archives its whole subtree (each descendant its own
//! `task.archived` change, audited and evented like the single route, with the parent's
//! `archivedAt`); unarchiving it unarchives the descendants archived with it (those whose
//! `archivedAt` is the parent's). The task and its descendants are written in one
//! transaction: all or nothing. Moving a task to the trash takes it out of its parent and
//! detaches its children (top-level tasks, in the same transaction); purging does too.

use chrono::{DateTime, Duration, Utc};
use futures::TryFutureExt;
use keel_domain::audit::AuditEntry;
use keel_domain::events::{Change, EventType};
use keel_domain::identity::Principal;
use keel_domain::tracking::ports::{SubtreeAction, SubtreeArchive, SubtreeWrite, TreeChange, TreeWrite};
use keel_domain::tracking::{Permission, Task, parse_identifier};
use serde_json::json;
use uuid::Uuid;

use super::super::invalidation::Also;
use super::super::views::TaskView;
use super::super::{Expect, TrackingPorts, not_found_as, versioned_update};
use super::{load, reach_task, task_data};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a trash page: newest deletion first.
pub type TrashCursor = (DateTime<Utc>, Uuid);

/// How many expired tasks the background purge reads at a time.
pub(super) const PURGE_BATCH: u64 = 100;

/// Where a task is read again after a lost race.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Among the live tasks (a task moved to the trash meanwhile is 404).
    Live,
    /// In the trash (a task restored or purged meanwhile is 404).
    Trash,
}

/// A task in the trash addressed by id or by identifier (`KEEL-12`, any case), unchecked.
async fn find_in_trash(ports: &TrackingPorts, id_or_identifier: &str) -> Result<Option<Task>, AppError> {
    Ok(if let Ok(id) = Uuid::parse_str(id_or_identifier) {
        ports.tasks.find_trashed(id).await?
    } else if let Some((key, number)) = parse_identifier(id_or_identifier) {
        ports.tasks.find_trashed_by_number(&key, number).await?
    } else {
        None
    })
}

async fn reload(ports: &TrackingPorts, id: Uuid, place: Place) -> Result<Task, AppError> {
    match place {
        Place::Live => load(ports, id).await,
        Place::Trash => ports
            .tasks
            .find_trashed(id)
            .await?
            .ok_or(AppError::NotFound("task")),
    }
}

/// The event data of a task that left every list: its id and identifier.
fn gone_data(task: &Task) -> serde_json::Value {
    json!({ "id": task.id, "identifier": task.identifier() })
}

/// Applies `apply` to `found` (read from `place`) and writes it as one change of type
/// `event_type`; `apply` answers `false` when there is nothing to change (archiving an
/// archived task), and then nothing is written. Answers the task as it is now.
async fn transition(
    ports: &TrackingPorts,
    principal: &Principal,
    found: Task,
    place: Place,
    event_type: EventType,
    apply: &(dyn Fn(&mut Task, DateTime<Utc>) -> bool + Sync),
    meta: &RequestMeta,
) -> Result<Task, AppError> {
    let id = found.id;
    let mut preloaded = Some(found);
    versioned_update(&Expect::Any, || {
        let preloaded = preloaded.take();
        async move {
            let mut task = match preloaded {
                Some(task) => task,
                None => reload(ports, id, place).await?,
            };
            let before = task_data(&task);
            let parent_before = task.parent_id;
            let now = ports.clock.now();
            if !apply(&mut task, now) {
                return Ok(Some(task));
            }
            let expected = task.version;
            task.version += 1;
            task.updated_at = now;
            // `task.deleted` keeps the data it always had (and so lists no changes); the
            // others show the task, and what changed in it.
            let (data, before) = if event_type == EventType::TaskDeleted {
                (gone_data(&task), None)
            } else {
                (task_data(&task), Some(before))
            };
            let mut change = ports
                .change(meta, principal, event_type, task.project_id)
                .resource(task.id)
                .needs(Permission::WriteTasks)
                .details(json!({
                    "identifier": task.identifier(),
                    "title": task.title.as_str(),
                    "version": task.version,
                }))
                .data(data);
            if let Some(before) = before {
                change = change.before(before);
            }
            let change = change.build();
            // To the trash: out of its parent, and its children detached, under the
            // project's lock (the store names the tasks whose views that changed).
            // A task outside any tree (no parent, no child) changes no other task's view:
            // the store's plain update still takes the lock and detaches what it finds.
            let in_tree = task.child_count > 0 || parent_before.is_some();
            let write = async {
                if event_type == EventType::TaskDeleted && in_tree {
                    ports
                        .tasks
                        .update_tree(&task, None, expected, TreeChange::Trash, &change)
                        .await
                } else {
                    ports
                        .tasks
                        .update(&task, None, expected, &change)
                        .await
                        .map(|applied| TreeWrite {
                            applied,
                            others: Vec::new(),
                        })
                }
            };
            let saved = ports
                .commit(&change, write.map_err(not_found_as("task")))
                .await?
                .applied;
            Ok(saved.then_some(task))
        }
    })
    .await
}

/// Archives (`archive`) or unarchives a task together with the descendants that follow it,
/// as one write ([`TaskRepository::archive_subtree`]): archiving takes every live
/// descendant not archived yet, with the task's `archivedAt` (also descendants added since
/// the task was archived, when it was already); unarchiving takes those archived at the
/// task's time (archived with it). Each task written is its own change — audit entry and
/// event, as if by its own route — recorded in the one transaction; a lost race (any of
/// them changed meanwhile, or a child added) reads everything again. Answers the task as it
/// is now.
///
/// [`TaskRepository::archive_subtree`]: keel_domain::tracking::ports::TaskRepository::archive_subtree
async fn archive_tree(
    ports: &TrackingPorts,
    principal: &Principal,
    found: Task,
    archive: bool,
    meta: &RequestMeta,
) -> Result<Task, AppError> {
    let id = found.id;
    let mut preloaded = Some(found);
    versioned_update(&Expect::Any, || {
        let preloaded = preloaded.take();
        async move {
            let task = match preloaded {
                Some(task) => task,
                None => load(ports, id).await?,
            };
            let now = ports.clock.now();
            let (action, event_type) = match (archive, task.archived_at) {
                (true, at) => (
                    SubtreeAction::Archive {
                        at: at.unwrap_or(now),
                    },
                    EventType::TaskArchived,
                ),
                (false, Some(at)) => (SubtreeAction::Unarchive { at }, EventType::TaskUnarchived),
                // Not archived: nothing to bring back.
                (false, None) => return Ok(Some(task)),
            };
            // Whether a task follows the action: the task itself too (archiving an archived
            // task changes it no more).
            let follows = |t: &Task| match action {
                SubtreeAction::Archive { .. } => t.archived_at.is_none(),
                SubtreeAction::Unarchive { at } => t.archived_at == Some(at),
            };
            let descendants = if task.child_count > 0 {
                ports.tasks.descendants(id).await?
            } else {
                Vec::new()
            };
            let mut result = task.clone();
            let mut writes = Vec::new();
            for before in std::iter::once(&task).chain(&descendants).filter(|t| follows(t)) {
                let mut after = before.clone();
                after.archived_at = match action {
                    SubtreeAction::Archive { at } => Some(at),
                    SubtreeAction::Unarchive { .. } => None,
                };
                after.version += 1;
                after.updated_at = now;
                let change = ports
                    .change(meta, principal, event_type, after.project_id)
                    .resource(after.id)
                    .needs(Permission::WriteTasks)
                    .details(json!({
                        "identifier": after.identifier(),
                        "title": after.title.as_str(),
                        "version": after.version,
                    }))
                    .before(task_data(before))
                    .data(task_data(&after))
                    .build();
                writes.push(SubtreeWrite {
                    task_id: after.id,
                    expected_version: before.version,
                    change,
                });
                if after.id == id {
                    result = after;
                }
            }
            let Some(first) = writes.first().map(|w| w.change.clone()) else {
                // Archiving an archived task whose subtree is archived: nothing to record.
                return Ok(Some(task));
            };
            // The other tasks written: their cached views and pages go too.
            let others: Vec<Uuid> = writes.iter().skip(1).map(|w| w.task_id).collect();
            let subtree = SubtreeArchive {
                root: id,
                project_id: task.project_id,
                action,
                updated_at: now,
                writes,
            };
            let applied = ports
                .commit(
                    &first,
                    ports
                        .tasks
                        .archive_subtree(&subtree)
                        .map_ok(|applied| TreeWrite { applied, others })
                        .map_err(not_found_as("task")),
                )
                .await?
                .applied;
            Ok(applied.then_some(result))
        }
    })
    .await
}

/// Archives a task (members and up): lists leave it out unless asked for archived tasks.
/// Its subtree follows, in the same transaction. Archiving an archived task changes
/// nothing (but descendants added since, which follow it).
pub async fn archive_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    let task = archive_tree(ports, principal, task, true, meta).await?;
    Ok(TaskView::from(&task))
}

/// Takes a task out of the archive (members and up), with the descendants archived with it
/// (at its time), in the same transaction; a descendant archived on its own before stays
/// archived. A task not archived stays as it is.
pub async fn unarchive_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    let task = archive_tree(ports, principal, task, false, meta).await?;
    Ok(TaskView::from(&task))
}

/// Moves a task to its project's trash (members and up): from then on it answers 404 to
/// every route but the trash's, and is in no list. Its event is `task.deleted`.
pub async fn delete_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    transition(
        ports,
        principal,
        task,
        Place::Live,
        EventType::TaskDeleted,
        &|task, now| {
            task.deleted_at = Some(now);
            // It leaves its parent: restored, it is a top-level task.
            task.parent_id = None;
            true
        },
        meta,
    )
    .await?;
    Ok(())
}

/// Takes a task out of the trash (members and up), with its number and identifier; 404
/// when the task is not in the trash.
pub async fn restore_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    let Some(task) = find_in_trash(ports, id_or_identifier).await? else {
        // Not in the trash. A live task says so (404) only to those who could restore it:
        // others get what any other write on it gives them (404 for a stranger, 403).
        reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
        return Err(AppError::NotFound("task"));
    };
    ports
        .authorize(principal, task.project_id, Permission::WriteTasks, "task")
        .await?;
    let task = transition(
        ports,
        principal,
        task,
        Place::Trash,
        EventType::TaskRestored,
        &|task, _| task.deleted_at.take().is_some(),
        meta,
    )
    .await?;
    Ok(TaskView::from(&task))
}

/// Deletes a task for good (project admins), whether it is in the trash or not, with its
/// labels and comments; its number is never handed out again.
pub async fn purge_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (task, from_trash) = match find_in_trash(ports, id_or_identifier).await? {
        Some(task) => {
            ports
                .authorize(principal, task.project_id, Permission::Administer, "task")
                .await?;
            (task, true)
        }
        None => (
            reach_task(ports, principal, id_or_identifier, Permission::Administer)
                .await?
                .0,
            false,
        ),
    };
    let change = ports
        .change(meta, principal, EventType::TaskPurged, task.project_id)
        .resource(task.id)
        .needs(Permission::Administer)
        .details(json!({
            "identifier": task.identifier(),
            "title": task.title.as_str(),
            "fromTrash": from_trash,
        }))
        .data(gone_data(&task))
        .build();
    // A live, open task purged for good takes its `blocks` relations along: the tasks it
    // blocked count one blocker fewer, and there is nothing left to read them from after.
    let mut blocked = if from_trash || task.status_category.is_closed() {
        Vec::new()
    } else {
        ports.relations.blocked_by(task.id).await?
    };
    // Its parent counts one child fewer; its children are detached (the store does it, in
    // the purge's transaction; they are read first, as nothing names them after).
    let project = task.project_id;
    blocked.extend(task.parent_id.map(|parent| (project, parent)));
    if task.child_count > 0 {
        blocked.extend(
            ports
                .tasks
                .child_ids(task.id)
                .await?
                .into_iter()
                .map(|child| (project, child)),
        );
    }
    let purged = ports
        .commit(
            &change,
            ports
                .tasks
                .purge(task.id, None, &change)
                .map_ok(|written| Also {
                    written,
                    tasks: blocked,
                })
                .map_err(AppError::from),
        )
        .await?
        .written;
    if purged {
        Ok(())
    } else {
        // Purged by another request meanwhile.
        Err(AppError::NotFound("task"))
    }
}

/// The project's trash (members and up can see it), the most recently deleted first.
pub async fn list_project_trash(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    cursor: CursorRequest<TrashCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Read, "project")
        .await?;
    let tasks = ports
        .tasks
        .trash_page(project_id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
    CursorPage::from_rows(views, &cursor, |t| (t.deleted_at.unwrap_or(t.updated_at), t.id))
}

/// The change of the background purge of one expired task: no actor, no request.
fn expiry_change(task: &Task, now: DateTime<Utc>) -> Change {
    let audit = AuditEntry {
        id: Uuid::now_v7(),
        occurred_at: now,
        actor_id: None,
        action: EventType::TaskPurged.as_str().to_owned(),
        resource_type: EventType::TaskPurged.resource().to_owned(),
        resource_id: Some(task.id.to_string()),
        project_id: Some(task.project_id),
        request_id: None,
        ip: None,
        details: Some(json!({
            "identifier": task.identifier(),
            "title": task.title.as_str(),
            "fromTrash": true,
            "expired": true,
        })),
        restricted: None,
        authority: None,
        token_id: None,
    };
    Change::new(audit, EventType::TaskPurged, task.project_id, gone_data(task))
}

/// Deletes for good every task that has been in a trash for longer than `retention` at
/// `now`, each as its own `task.purged` change (audited without an actor). A task restored
/// meanwhile stays. Answers how many were purged.
///
/// The caller makes sure one instance runs it at a time; two running at once would only
/// repeat each other's reads (a task is purged, and recorded, once).
pub async fn purge_expired_trash(
    ports: &TrackingPorts,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<u64, AppError> {
    let before = now - retention;
    let mut purged = 0;
    loop {
        let expired = ports.tasks.expired_trash(before, PURGE_BATCH).await?;
        let full = expired.len() as u64 == PURGE_BATCH;
        let mut this_batch = 0;
        for task in &expired {
            let change = expiry_change(task, now);
            let done = ports
                .commit(
                    &change,
                    ports
                        .tasks
                        .purge(task.id, Some(before), &change)
                        .map_err(AppError::from),
                )
                .await?;
            if done {
                this_batch += 1;
            }
        }
        purged += this_batch;
        // A full batch of which nothing could be purged would be read again: stop.
        if !full || this_batch == 0 {
            return Ok(purged);
        }
    }
}
