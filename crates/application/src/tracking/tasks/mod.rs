//! Tasks: create (numbered per project), read by id or `KEY-12`, change, delete, and the
//! filtered, sorted, cursor-paginated lists of one project or of all the caller's projects.
//!
//! `write` holds the changes (create, update), `lifecycle` archive, trash, restore and
//! purge, `bulk` one action on many tasks through those use cases, `history` the task's
//! changes, `list` the lists and their filters; this module the reads and checks they share.

mod bulk;
mod history;
mod lifecycle;
mod list;
mod write;

#[cfg(test)]
mod bulk_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod subtasks_tests;
#[cfg(test)]
mod tests;

pub use bulk::{BulkAction, BulkItem, bulk_tasks};
pub use history::{HistoryCursor, task_history};
pub use lifecycle::{
    TrashCursor, archive_task, delete_task, list_project_trash, purge_expired_trash, purge_task,
    restore_task, unarchive_task,
};
pub use list::{TaskCursor, list_project_tasks, list_task_children, list_tasks};
pub use write::{LabelChanges, create_task, update_task};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use keel_domain::identity::Principal;
use keel_domain::tracking::{
    Label, LabelName, Permission, ProjectAccess, ProjectRole, Task, parse_identifier,
};
use keel_domain::{FieldError, StoreError};
use uuid::Uuid;

use super::inputs::MAX_TASK_LABELS;
use super::views::{TaskView, event_data};
use super::{TrackingPorts, not_found_as, validated};
use crate::AppError;
use crate::cache::{CacheKey, cached};

/// The labels a request names: by name or by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LabelRefs {
    names: Vec<LabelName>,
    ids: Vec<Uuid>,
}

/// Labels of a request, each given by id or by name: an entry that is a UUID is a label's
/// id, anything else a label's name (a name is at most 30 characters, so no name is a
/// UUID). Parsed, de-duplicated, at most [`MAX_TASK_LABELS`] entries.
fn label_refs(raw: &[String], field: &str) -> Result<LabelRefs, FieldError> {
    if raw.len() > MAX_TASK_LABELS {
        return Err(FieldError::new(
            field,
            format!("must list at most {MAX_TASK_LABELS} labels"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for entry in raw {
        if let Ok(id) = Uuid::parse_str(entry.trim()) {
            ids.insert(id);
            continue;
        }
        let name = LabelName::parse(entry).map_err(|e| FieldError::new(field, e.message))?;
        names.insert(name.into_inner());
    }
    Ok(LabelRefs {
        names: names
            .into_iter()
            .map(|n| LabelName::parse(&n))
            .collect::<Result<Vec<_>, _>>()?,
        ids: ids.into_iter().collect(),
    })
}

/// A task's labels as it stores them: names sorted, and their ids in the same order.
fn labelled(mut labels: Vec<Label>) -> (Vec<LabelName>, Vec<Uuid>) {
    labels.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    labels.dedup_by_key(|l| l.id);
    labels.into_iter().map(|l| (l.name, l.id)).unzip()
}

/// The stored task, for a read-modify-write (never the cache).
async fn load(ports: &TrackingPorts, id: Uuid) -> Result<Task, AppError> {
    ports.tasks.find(id).await?.ok_or(AppError::NotFound("task"))
}

/// A task addressed by id or by identifier (`KEEL-12`, any case) that the caller may reach
/// with `permission`, and the caller's role in its project; 404 for anything else.
///
/// By id the task is read through the cache (`task:<id>`); a miss reads the task with the
/// caller's access to its project in one statement, and that access is used at once (and
/// kept for the next request). By identifier it is that same one statement, uncached.
pub(crate) async fn reach_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    permission: Permission,
) -> Result<(Task, ProjectRole), AppError> {
    let user_id = principal.user_id;
    let mark = ports.cache.watermark();
    let (task, fresh) = if let Ok(id) = Uuid::parse_str(id_or_identifier) {
        let fresh: Mutex<Option<ProjectAccess>> = Mutex::new(None);
        let task = cached(ports.cache.as_ref(), &CacheKey::task(id), async {
            let found = ports.tasks.find_with_access(id, user_id).await?;
            Ok(found.map(|(task, access)| {
                if let Ok(mut slot) = fresh.lock() {
                    *slot = Some(access);
                }
                task
            }))
        })
        .await?
        .map(Arc::unwrap_or_clone);
        (task, fresh.into_inner().ok().flatten())
    } else if let Some((key, number)) = parse_identifier(id_or_identifier) {
        match ports
            .tasks
            .find_by_number_with_access(&key, number, user_id)
            .await?
        {
            Some((task, access)) => (Some(task), Some(access)),
            None => (None, None),
        }
    } else {
        (None, None)
    };
    let task = task.ok_or(AppError::NotFound("task"))?;
    let fresh = fresh.map(Arc::new);
    if let Some(access) = &fresh {
        ports.keep_access(mark, user_id, access).await;
    }
    let (_, role) = ports
        .authorize_access(principal, task.project_id, permission, "task", fresh)
        .await?;
    Ok((task, role))
}

/// The checks against stored data: the assignee is a member, the labels exist (by name or
/// by id). Returns the labels.
async fn check_references(
    ports: &TrackingPorts,
    project_id: Uuid,
    assignee: Option<Uuid>,
    labels: Option<&LabelRefs>,
) -> Result<Option<Vec<Label>>, AppError> {
    let mut errors = Vec::new();
    if let Some(user) = assignee
        && ports.projects.role_of(project_id, user).await?.is_none()
    {
        errors.push(FieldError::new("assigneeId", "must be a member of the project"));
    }
    let mut resolved = None;
    if let Some(refs) = labels {
        resolved = Some(resolve_labels(ports, project_id, refs, "labels", &mut errors).await?);
    }
    validated(errors)?;
    Ok(resolved)
}

/// The project's labels `refs` names (by name, by id: one statement each); a name or id the
/// project does not have is reported on `field` in `errors`.
async fn resolve_labels(
    ports: &TrackingPorts,
    project_id: Uuid,
    LabelRefs { names, ids }: &LabelRefs,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Vec<Label>, AppError> {
    let mut found = if names.is_empty() {
        Vec::new()
    } else {
        ports.labels.find_by_names(project_id, names).await?
    };
    let by_id = if ids.is_empty() {
        Vec::new()
    } else {
        ports.labels.find_by_ids(project_id, ids).await?
    };
    let mut unknown: Vec<String> = names
        .iter()
        .filter(|n| !found.iter().any(|l| l.name == **n))
        .map(|n| n.as_str().to_owned())
        .collect();
    unknown.extend(
        ids.iter()
            .filter(|id| !by_id.iter().any(|l| l.id == **id))
            .map(Uuid::to_string),
    );
    if !unknown.is_empty() {
        errors.push(FieldError::new(
            field,
            format!("unknown in this project: {}", unknown.join(", ")),
        ));
    }
    found.extend(by_id);
    Ok(found)
}

/// A task as events show it (its view).
fn task_data(task: &Task) -> serde_json::Value {
    event_data(&TaskView::from(task))
}

/// A task by id or by identifier (`KEEL-12`, any case).
pub async fn get_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
) -> Result<TaskView, AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::Read).await?;
    Ok(TaskView::from(&task))
}

/// Whether `task` (`None`: a new task) of `project_id` may become a child of `parent`: a
/// live task of the same project, no cycle, at most five levels ([`Placement::check`]);
/// a 400 on `parentId` otherwise. A parent the caller cannot see (another project, absent,
/// in the trash) gets the same answer as one of another project.
///
/// [`Placement::check`]: keel_domain::tracking::Placement::check
async fn check_parent(
    ports: &TrackingPorts,
    task: Option<Uuid>,
    project_id: Uuid,
    parent: Uuid,
) -> Result<(), AppError> {
    let Some(placement) = ports.tasks.placement(task, parent).await? else {
        return Err(AppError::invalid(
            "parentId",
            "must be a task of the same project",
        ));
    };
    placement
        .check(task, project_id)
        .map_err(|e| AppError::invalid(e.field, e.message))
}

/// The store error of a write that places a task: a parent refused in the write's
/// transaction (the tree changed since [`check_parent`]) is a 400 on `parentId`; `NotFound`
/// is a 404 for `what`.
fn tree_error(what: &'static str) -> impl Fn(StoreError) -> AppError {
    move |e| match e {
        StoreError::Conflict(rule) if rule.starts_with(PARENT_RULE) => {
            AppError::invalid("parentId", rule[PARENT_RULE.len()..].to_owned())
        }
        other => not_found_as(what)(other),
    }
}

/// How the task store names a refused parent in its `Conflict`.
const PARENT_RULE: &str = "parent: ";
