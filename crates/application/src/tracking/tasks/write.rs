//! Creating and changing tasks (their lifecycle — archive, trash, restore, purge — is in
//! `lifecycle`).

use futures::TryFutureExt;

use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::StateCategory;
use keel_domain::tracking::ports::{NewTask, TaskWrite, TreeChange};
use keel_domain::tracking::values::{TASK_DESCRIPTION_MAX, parse_description, parse_due_date};
use keel_domain::tracking::{Label, LabelName, Permission, Priority, StateKey, Task, TaskTitle};
use keel_domain::{FieldError, StoreError};
use serde_json::json;
use uuid::Uuid;

use super::super::inputs::{CreateTaskBody, MAX_TASK_LABELS, UpdateTaskBody};
use super::super::states::category_of;
use super::super::views::TaskView;
use super::super::{Expect, TrackingPorts, check, not_found_as, optional, validated, versioned_update};
use super::{
    LabelRefs, check_parent, check_references, label_refs, labelled, load, reach_task, resolve_labels,
    task_data, tree_error,
};
use crate::AppError;
use crate::context::RequestMeta;

/// Creates a task in a project (members and up) with the project's next number.
pub async fn create_task(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: CreateTaskBody,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::WriteTasks, "project", None)
        .await?;
    let mut errors = Vec::new();
    let title = check(&mut errors, TaskTitle::parse(&body.title));
    let description = check(
        &mut errors,
        parse_description(body.description.as_deref(), TASK_DESCRIPTION_MAX),
    )
    .flatten();
    // A key of the project's states (one statement); without one, the project's default.
    let status = match body.status.as_deref() {
        Some(raw) => check(&mut errors, StateKey::parse(raw, "status")),
        None => Some(access.project.default_state.clone()),
    };
    let status = match status {
        Some(key) => {
            let states = ports.states.list(project_id).await?;
            match states.iter().find(|s| s.key == key) {
                Some(state) => Some((key, state.category)),
                None if body.status.is_none() => {
                    return Err(AppError::internal("the project's default state is missing"));
                }
                None => {
                    errors.push(FieldError::new("status", "is not a state of this project"));
                    None
                }
            }
        }
        None => None,
    };
    let priority =
        optional(&mut errors, body.priority, |p| Priority::new(p, "priority")).unwrap_or(Priority::NONE);
    let due_date = optional(&mut errors, body.due_date.as_deref(), parse_due_date);
    let labels = check(
        &mut errors,
        label_refs(body.labels.as_deref().unwrap_or_default(), "labels"),
    );
    validated(errors)?;
    let (Some(title), Some(labels), Some((status, status_category))) = (title, labels, status) else {
        return Err(AppError::internal("validated input missing"));
    };
    let (labels, label_ids) = labelled(
        check_references(ports, project_id, body.assignee_id, Some(&labels))
            .await?
            .unwrap_or_default(),
    );
    if let Some(parent) = body.parent_id {
        check_parent(ports, None, project_id, parent).await?;
    }
    let now = ports.clock.now();
    let task = Task {
        id: Uuid::now_v7(),
        project_id,
        // A project's key never changes: the cached access's is the stored one.
        project_key: access.project.key.clone(),
        number: 0,
        title,
        description,
        status,
        status_category,
        priority,
        assignee_id: body.assignee_id,
        labels,
        label_ids: label_ids.clone(),
        due_date,
        created_by: principal.user_id,
        created_at: now,
        updated_at: now,
        completed_at: (status_category == StateCategory::Completed).then_some(now),
        version: 1,
        archived_at: None,
        blocked_by_count: 0,
        deleted_at: None,
        parent_id: body.parent_id,
        child_count: 0,
        child_done_count: 0,
    };
    // The store completes the event's data (the task's number).
    let change = ports
        .change(meta, principal, EventType::TaskCreated, project_id)
        .resource(task.id)
        .needs(Permission::WriteTasks)
        .details(json!({ "title": task.title.as_str() }))
        .build();
    let stored = ports
        .commit(
            &change,
            ports
                .tasks
                .create(&NewTask { task, label_ids }, &change, task_data)
                .map_err(|e| match e {
                    // The state went away (or changed category) since it was read.
                    StoreError::Conflict(rule) if !rule.starts_with(super::PARENT_RULE) => {
                        AppError::invalid("status", "is not a state of this project")
                    }
                    other => tree_error("project")(other),
                }),
        )
        .await?;
    Ok(TaskView::from(&stored))
}

/// Changes a task (members and up); every change increments its version.
pub async fn update_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    body: UpdateTaskBody,
    expect: Expect,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    patch_task(
        ports,
        principal,
        id_or_identifier,
        body,
        &LabelChanges::default(),
        expect,
        meta,
    )
    .await
}

/// Labels to put on a task and to take off it, keeping its others (the bulk patch's
/// `addLabels` and `removeLabels`), each by id or by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelChanges {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl LabelChanges {
    fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// [`LabelChanges`] resolved in the task's project: the labels to add, the ids to take off.
#[derive(Debug, Clone)]
pub(super) struct LabelDelta {
    add: Vec<Label>,
    remove: Vec<Uuid>,
}

impl LabelDelta {
    /// The task's labels with the delta applied, sorted by name as a task stores them;
    /// a 400 when that is more than a task may carry.
    fn apply(&self, task: &Task) -> Result<(Vec<LabelName>, Vec<Uuid>), AppError> {
        let mut pairs: Vec<(LabelName, Uuid)> = task
            .labels
            .iter()
            .cloned()
            .zip(task.label_ids.iter().copied())
            .filter(|(_, id)| !self.remove.contains(id))
            .collect();
        for label in &self.add {
            if !pairs.iter().any(|(_, id)| *id == label.id) {
                pairs.push((label.name.clone(), label.id));
            }
        }
        if pairs.len() > MAX_TASK_LABELS {
            return Err(AppError::invalid(
                "addLabels",
                format!("a task carries at most {MAX_TASK_LABELS} labels"),
            ));
        }
        pairs.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(pairs.into_iter().unzip())
    }
}

/// Resolves `changes` in the project: every label to add must exist (400 on `addLabels`
/// otherwise); a label to take off that the project does not have is on no task, and
/// changes nothing. A label both added and taken off is a 400.
async fn label_delta(
    ports: &TrackingPorts,
    project_id: Uuid,
    add: &LabelRefs,
    remove: &LabelRefs,
) -> Result<LabelDelta, AppError> {
    let mut errors = Vec::new();
    let add = resolve_labels(ports, project_id, add, "addLabels", &mut errors).await?;
    let mut remove_ids = remove.ids.clone();
    if !remove.names.is_empty() {
        let found = ports.labels.find_by_names(project_id, &remove.names).await?;
        remove_ids.extend(found.into_iter().map(|l| l.id));
    }
    if add.iter().any(|l| remove_ids.contains(&l.id)) {
        errors.push(FieldError::new(
            "removeLabels",
            "names a label that addLabels names too",
        ));
    }
    validated(errors)?;
    Ok(LabelDelta {
        add,
        remove: remove_ids,
    })
}

/// A task patch's fields, each checked by its own rule (no look-up): what a `PATCH` body,
/// and the bulk route's one patch for all its tasks, must pass before anything is read.
struct PatchInput {
    title: Option<TaskTitle>,
    description: Option<Option<String>>,
    status: Option<StateKey>,
    priority: Option<Priority>,
    due_date: Option<Option<chrono::NaiveDate>>,
    labels: Option<LabelRefs>,
    add: LabelRefs,
    remove: LabelRefs,
}

impl PatchInput {
    /// One 400 naming every broken rule.
    fn parse(body: &UpdateTaskBody, changes: &LabelChanges) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let title = optional(&mut errors, body.title.as_deref(), TaskTitle::parse);
        let description = optional(&mut errors, body.description.clone(), |d| {
            parse_description(d.as_deref(), TASK_DESCRIPTION_MAX)
        });
        // Its form only: whether the task's project has the state is known once the task is.
        let status = optional(&mut errors, body.status.as_deref(), |s| {
            StateKey::parse(s, "status")
        });
        let priority = optional(&mut errors, body.priority, |p| Priority::new(p, "priority"));
        let due_date = check(
            &mut errors,
            body.due_date
                .as_ref()
                .map(|d| d.as_deref().map(parse_due_date).transpose())
                .transpose(),
        );
        let labels = optional(&mut errors, body.labels.as_deref(), |l| label_refs(l, "labels"));
        if body.labels.is_some() && !changes.is_empty() {
            errors.push(FieldError::new(
                "labels",
                "replaces the labels: it cannot come with addLabels or removeLabels",
            ));
        }
        let add = check(&mut errors, label_refs(&changes.add, "addLabels"));
        let remove = check(&mut errors, label_refs(&changes.remove, "removeLabels"));
        validated(errors)?;
        match (add, remove) {
            (Some(add), Some(remove)) => Ok(Self {
                title,
                description,
                status,
                priority,
                due_date: due_date.flatten(),
                labels,
                add,
                remove,
            }),
            _ => Err(AppError::internal("validated label changes missing")),
        }
    }
}

/// Checks a patch's fields alone (the bulk route, before any task is read): a patch that
/// breaks a rule is one 400 for the whole request, whatever its tasks.
pub(crate) fn check_patch(body: &UpdateTaskBody, changes: &LabelChanges) -> Result<(), AppError> {
    PatchInput::parse(body, changes).map(|_| ())
}

/// A patch's fields checked (a 400 naming every broken rule) and its references resolved
/// in the project `project_id`: the assignee a member, the labels found (a 400 otherwise).
pub(super) async fn resolve_patch(
    ports: &TrackingPorts,
    project_id: Uuid,
    body: &UpdateTaskBody,
    changes: &LabelChanges,
) -> Result<ResolvedPatch, AppError> {
    let PatchInput {
        title,
        description,
        status,
        priority,
        due_date,
        labels,
        add,
        remove,
    } = PatchInput::parse(body, changes)?;
    let new_assignee = body.assignee_id.flatten();
    let labels = check_references(ports, project_id, new_assignee, labels.as_ref())
        .await?
        .map(labelled);
    let delta = match (add, remove) {
        (add, remove) if !changes.is_empty() => Some(label_delta(ports, project_id, &add, &remove).await?),
        _ => None,
    };
    Ok(ResolvedPatch {
        title,
        description,
        status,
        priority,
        assignee: body.assignee_id,
        due_date,
        parent: body.parent_id,
        labels,
        delta,
    })
}

/// Changes a task: [`update_task`]'s one code path, which the bulk route's `update` shares.
/// `changes` adds and takes off labels, applied to the labels the task has when the write
/// happens (so a label another request put on meanwhile stays); it cannot be combined with
/// `body.labels`, which replaces them.
pub(crate) async fn patch_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    body: UpdateTaskBody,
    changes: &LabelChanges,
    expect: Expect,
    meta: &RequestMeta,
) -> Result<TaskView, AppError> {
    let (found, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    let (id, project_id) = (found.id, found.project_id);
    // The first attempt works on the task just read; a retry after a lost race re-reads it.
    let mut preloaded = Some(found);
    let patch = resolve_patch(ports, project_id, &body, changes).await?;
    // A new parent is checked here (a clear 400 before anything is written), and again in
    // the write's transaction, where a concurrent change of the tree is seen.
    if let Some(Some(parent)) = body.parent_id
        && preloaded.as_ref().is_some_and(|t| t.parent_id != Some(parent))
    {
        check_parent(ports, Some(id), project_id, parent).await?;
    }

    let expect = &expect;
    versioned_update(expect, || {
        let preloaded = preloaded.take();
        let patch = &patch;
        async move {
            let task = match preloaded {
                Some(task) => task,
                None => load(ports, id).await?,
            };
            if !expect.admits(task.version) {
                return Err(AppError::PreconditionFailed);
            }
            // Read on each attempt: a lost race may have been with the state's change.
            let category = match patch.status_change(&task) {
                Some(status) => Some(category_of(ports, task.project_id, status, "status").await?),
                None => None,
            };
            let (write, reparent) = match patch.plan(ports, meta, principal, task, category)? {
                Planned::Unchanged(task) => return Ok(Some(TaskView::from(&*task))),
                Planned::Write(write, reparent) => (write, reparent),
            };
            let TaskWrite {
                task,
                expected_version: expected,
                label_ids: ids,
                change,
            } = *write;
            let saved = if reparent {
                ports
                    .commit(
                        &change,
                        ports
                            .tasks
                            .update_tree(&task, ids.as_deref(), expected, TreeChange::Reparent, &change)
                            .map_err(tree_error("task")),
                    )
                    .await?
                    .applied
            } else {
                ports
                    .commit(
                        &change,
                        ports
                            .tasks
                            .update(&task, ids.as_deref(), expected, &change)
                            .map_err(not_found_as("task")),
                    )
                    .await?
            };
            Ok(saved.then(|| TaskView::from(&task)))
        }
    })
    .await
}

/// A patch with its references resolved in the task's project (the assignee checked, the
/// labels found): what [`ResolvedPatch::plan`] applies to a task — for a `PATCH`, and for
/// each task of a bulk `update`, by the same rules.
#[derive(Debug, Clone)]
pub(super) struct ResolvedPatch {
    pub title: Option<TaskTitle>,
    pub description: Option<Option<String>>,
    pub status: Option<StateKey>,
    pub priority: Option<Priority>,
    pub assignee: Option<Option<Uuid>>,
    pub due_date: Option<Option<chrono::NaiveDate>>,
    pub parent: Option<Option<Uuid>>,
    /// The labels that replace the task's (`labels`).
    pub labels: Option<(Vec<LabelName>, Vec<Uuid>)>,
    /// The labels added and taken off (`addLabels`, `removeLabels`).
    pub delta: Option<LabelDelta>,
}

/// What a patch does to one task.
#[derive(Debug)]
pub(super) enum Planned {
    /// Nothing changes: the task as it is (no write, nothing recorded).
    Unchanged(Box<Task>),
    /// The task's write (its change built), and whether it moves to another parent.
    Write(Box<TaskWrite>, bool),
}

impl ResolvedPatch {
    /// The new state of `task`, when the patch changes it: the caller reads its category.
    pub fn status_change(&self, task: &Task) -> Option<&StateKey> {
        self.status.as_ref().filter(|s| **s != task.status)
    }

    /// Applies the patch to `task` as it is now (`category`: of the new state, when
    /// [`Self::status_change`] named one): the fields that differ change, the version goes
    /// up, and the change (audit entry with its `changes`, `task.updated` with `previous`)
    /// is built from the task before and after.
    pub fn plan(
        &self,
        ports: &TrackingPorts,
        meta: &RequestMeta,
        principal: &Principal,
        mut task: Task,
        category: Option<StateCategory>,
    ) -> Result<Planned, AppError> {
        let before = task_data(&task);
        // Added and taken off against the labels the task has now.
        let labels = match &self.delta {
            Some(delta) => Some(delta.apply(&task)?),
            None => self.labels.clone(),
        };
        let now = ports.clock.now();
        let mut changed = Vec::new();
        if let Some(title) = self.title.as_ref().filter(|t| **t != task.title) {
            task.title = title.clone();
            changed.push("title");
        }
        if let Some(description) = self.description.as_ref().filter(|d| **d != task.description) {
            task.description.clone_from(description);
            changed.push("description");
        }
        if let Some(status) = self.status_change(&task).cloned() {
            let Some(category) = category else {
                return Err(AppError::internal("the new state's category was not read"));
            };
            task.set_status(status, category, now);
            changed.push("status");
        }
        if let Some(priority) = self.priority.filter(|p| *p != task.priority) {
            task.priority = priority;
            changed.push("priority");
        }
        if let Some(assignee) = self.assignee.filter(|a| *a != task.assignee_id) {
            task.assignee_id = assignee;
            changed.push("assigneeId");
        }
        if let Some(due_date) = self.due_date.filter(|d| *d != task.due_date) {
            task.due_date = due_date;
            changed.push("dueDate");
        }
        let reparent = self.parent.filter(|p| *p != task.parent_id);
        if let Some(parent) = reparent {
            task.parent_id = parent;
            changed.push("parentId");
        }
        // Compared by id: a label renamed since the task was read is the same label.
        let new_labels = labels.filter(|(_, ids)| !same_set(ids, &task.label_ids));
        if let Some((names, ids)) = &new_labels {
            task.labels.clone_from(names);
            task.label_ids.clone_from(ids);
            changed.push("labels");
        }
        if changed.is_empty() {
            return Ok(Planned::Unchanged(Box::new(task)));
        }
        let expected_version = task.version;
        task.version += 1;
        task.updated_at = now;
        let change = ports
            .change(meta, principal, EventType::TaskUpdated, task.project_id)
            .resource(task.id)
            .needs(Permission::WriteTasks)
            .details(json!({ "changed": changed, "version": task.version }))
            .before(before)
            .data(task_data(&task))
            .build();
        Ok(Planned::Write(
            Box::new(TaskWrite {
                task,
                expected_version,
                label_ids: new_labels.map(|(_, ids)| ids),
                change,
            }),
            reparent.is_some(),
        ))
    }
}

/// Whether two lists of ids hold the same ids.
fn same_set(a: &[Uuid], b: &[Uuid]) -> bool {
    let set = |ids: &[Uuid]| ids.iter().copied().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}
