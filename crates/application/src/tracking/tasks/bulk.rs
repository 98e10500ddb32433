//! One action on many tasks (`POST /tasks/bulk`). Every item is validated, authorized,
//! written under its own version guard, audited, evented and invalidated by the single
//! route's rules, and succeeds or fails on its own; the answer lists the items in the order
//! given.
//!
//! `update` is set-based (adr/0028-set-based-bulk-update.md): the named tasks and the
//! caller's role in their projects are one read; each item is authorized and planned in
//! memory by `PATCH`'s own rules ([`ResolvedPatch::plan`], which [`patch_task`] uses too),
//! the patch's references resolved once per project; the writes of every item that
//! changes its task are one store write (one transaction of a few statements, whatever the
//! number of tasks); an item whose version guard lost a race is read again and re-planned,
//! as a `PATCH` without `If-Match` is, up to the same number of attempts, then 409. A task
//! named twice is acted on twice, in rounds: round `k` takes the `k`th naming of each task,
//! on what the rounds before left. An `update` that moves tasks to another parent, and the
//! other actions, run each item through its single route's use case — [`patch_task`],
//! [`archive_task`], [`unarchive_task`], [`delete_task`], [`restore_task`] — one after
//! another, holding at most one database connection at a time. A failure of the database
//! itself (`Unavailable`) stops the run: the items not decided yet are not tried and answer
//! the same 503.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use keel_domain::events::Change;
use keel_domain::identity::Principal;
use keel_domain::tracking::ports::TaskWrite;
use keel_domain::tracking::{Permission, ProjectKey, Task, WorkflowState, parse_identifier};
use keel_domain::{FieldError, StoreError};
use uuid::Uuid;

use super::super::inputs::{BulkTasksBody, MAX_BULK_TASKS, UpdateTaskBody};
use super::super::views::TaskView;
use super::super::{Expect, TrackingPorts, UPDATE_ATTEMPTS, validated};
use super::lifecycle::{archive_task, delete_task, restore_task, unarchive_task};
use super::write::{LabelChanges, Planned, ResolvedPatch, check_patch, patch_task, resolve_patch};
use crate::AppError;
use crate::context::RequestMeta;

/// What a bulk request does to each of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Update,
    Archive,
    Unarchive,
    Delete,
    Restore,
}

impl BulkAction {
    pub const ALL: [Self; 5] = [
        Self::Update,
        Self::Archive,
        Self::Unarchive,
        Self::Delete,
        Self::Restore,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Archive => "archive",
            Self::Unarchive => "unarchive",
            Self::Delete => "delete",
            Self::Restore => "restore",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

/// One item's outcome: the id as the request gave it, and what its single route would
/// have answered — the task (`None` for `delete`, whose route answers 204) or the error.
#[derive(Debug)]
pub struct BulkItem {
    pub id: String,
    pub outcome: Result<Option<TaskView>, AppError>,
}

/// Applies `body.action` to each of `body.ids` in turn. A malformed request (no ids or more
/// than [`MAX_BULK_TASKS`], an unknown action, `update` without a patch, a patch with
/// another action) is one 400 and changes nothing; past that, every item has its own
/// outcome.
pub async fn bulk_tasks(
    ports: &TrackingPorts,
    principal: &Principal,
    body: BulkTasksBody,
    meta: &RequestMeta,
) -> Result<Vec<BulkItem>, AppError> {
    let mut errors = Vec::new();
    if body.ids.is_empty() || body.ids.len() > MAX_BULK_TASKS {
        errors.push(FieldError::new(
            "ids",
            format!("must list 1 to {MAX_BULK_TASKS} tasks"),
        ));
    }
    let action = BulkAction::parse(&body.action);
    match (action, body.patch.is_some()) {
        (None, _) => errors.push(FieldError::new(
            "action",
            "must be one of update, archive, unarchive, delete, restore",
        )),
        (Some(BulkAction::Update), false) => {
            errors.push(FieldError::new("patch", "is required for update"));
        }
        (Some(action), true) if action != BulkAction::Update => {
            errors.push(FieldError::new("patch", "is only for update"));
        }
        _ => {}
    }
    validated(errors)?;
    let Some(action) = action else {
        return Err(AppError::internal("validated action missing"));
    };
    let (update, changes) = match body.patch.map(|p| p.split()) {
        Some((update, add, remove)) => (update, LabelChanges { add, remove }),
        None => (UpdateTaskBody::default(), LabelChanges::default()),
    };
    // The one patch breaks a rule of its own: the same for every task, so one 400 for the
    // request (its fields named under `patch.`), before any task is read.
    check_patch(&update, &changes).map_err(|e| match e {
        AppError::Validation(details) => AppError::Validation(
            details
                .into_iter()
                .map(|d| FieldError::new(format!("patch.{}", d.field), d.message))
                .collect(),
        ),
        other => other,
    })?;

    if action == BulkAction::Update && update.parent_id.is_none() {
        return Ok(update_set_based(ports, principal, body.ids, &update, &changes, meta).await);
    }
    Ok(each_in_turn(ports, principal, action, body.ids, &update, &changes, meta).await)
}

/// Each item through its single route's use case, one after another: the other actions,
/// an `update` that moves tasks to another parent, and the fallback of a set-based
/// `update` whose read or write failed otherwise than by the database's unavailability.
async fn each_in_turn(
    ports: &TrackingPorts,
    principal: &Principal,
    action: BulkAction,
    ids: Vec<String>,
    update: &UpdateTaskBody,
    changes: &LabelChanges,
    meta: &RequestMeta,
) -> Vec<BulkItem> {
    let mut items = Vec::with_capacity(ids.len());
    let mut unavailable = false;
    for id in ids {
        let outcome = if unavailable {
            Err(untried())
        } else {
            let id = id.as_str();
            match action {
                BulkAction::Update => {
                    patch_task(ports, principal, id, update.clone(), changes, Expect::Any, meta)
                        .await
                        .map(Some)
                }
                BulkAction::Archive => archive_task(ports, principal, id, meta).await.map(Some),
                BulkAction::Unarchive => unarchive_task(ports, principal, id, meta).await.map(Some),
                BulkAction::Delete => delete_task(ports, principal, id, meta).await.map(|()| None),
                BulkAction::Restore => restore_task(ports, principal, id, meta).await.map(Some),
            }
        };
        unavailable |= matches!(outcome, Err(AppError::Unavailable(_)));
        items.push(BulkItem { id, outcome });
    }
    items
}

/// The answer of an item not tried because the database was unavailable.
fn untried() -> AppError {
    AppError::Unavailable("not tried: the database was unavailable for an earlier item".into())
}

/// The same error again, for another item it applies to (a project's reference that
/// fails every task of the project).
fn again(e: &AppError) -> AppError {
    match e {
        AppError::Validation(details) => AppError::Validation(details.clone()),
        AppError::NotFound(what) => AppError::NotFound(what),
        AppError::Forbidden => AppError::Forbidden,
        AppError::Conflict(message) => AppError::Conflict(message.clone()),
        AppError::PreconditionFailed => AppError::PreconditionFailed,
        AppError::Unavailable(cause) => AppError::Unavailable(cause.to_string().into()),
        other => AppError::internal(format!("{other:?}")),
    }
}

/// A task named by id or by identifier, as the request gave it.
enum Named {
    Id(Uuid),
    Number(ProjectKey, i64),
    /// Neither: no task has that name (404).
    Nothing,
}

impl Named {
    fn parse(raw: &str) -> Self {
        if let Ok(id) = Uuid::parse_str(raw) {
            Self::Id(id)
        } else if let Some((key, number)) = parse_identifier(raw) {
            Self::Number(key, number)
        } else {
            Self::Nothing
        }
    }

    fn names(&self, task: &Task) -> bool {
        match self {
            Self::Id(id) => task.id == *id,
            Self::Number(key, number) => task.project_key == *key && task.number == *number,
            Self::Nothing => false,
        }
    }
}

type Outcome = Result<Option<TaskView>, AppError>;

/// `update` set-based (adr/0028): the named tasks with the caller's role in their projects
/// in one statement; each item authorized and planned in memory by the single route's rules
/// ([`ResolvedPatch::plan`]); the references of the patch resolved once per project; the
/// writes of every item that changes its task in one store write ([`TaskRepository::
/// update_many`]: one transaction, a few statements whatever the number of tasks); the
/// items that lost their version race read again and re-planned, up to the attempts of a
/// `PATCH`, then 409. A task named more than once is acted on once per round: round `k`
/// takes the `k`th naming of every task, on what the rounds before left.
///
/// [`TaskRepository::update_many`]: keel_domain::tracking::ports::TaskRepository::update_many
async fn update_set_based(
    ports: &TrackingPorts,
    principal: &Principal,
    ids: Vec<String>,
    update: &UpdateTaskBody,
    changes: &LabelChanges,
    meta: &RequestMeta,
) -> Vec<BulkItem> {
    let named: Vec<Named> = ids.iter().map(|raw| Named::parse(raw)).collect();
    let mut by_id: Vec<Uuid> = Vec::new();
    let mut by_number: Vec<(ProjectKey, i64)> = Vec::new();
    for n in &named {
        match n {
            Named::Id(id) if !by_id.contains(id) => by_id.push(*id),
            Named::Number(key, number) if !by_number.iter().any(|(k, m)| k == key && m == number) => {
                by_number.push((key.clone(), *number));
            }
            _ => {}
        }
    }
    let found = match ports
        .tasks
        .find_many_with_access(&by_id, &by_number, principal.user_id)
        .await
    {
        Ok(found) => found,
        Err(_) => {
            return each_in_turn(ports, principal, BulkAction::Update, ids, update, changes, meta).await;
        }
    };
    let mut outcomes: Vec<Option<Outcome>> = (0..ids.len()).map(|_| None).collect();
    // Each authorized item's task, and how many times the task was named before it.
    let mut rounds: Vec<Vec<(usize, Task)>> = Vec::new();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for (i, name) in named.iter().enumerate() {
        let Some((task, access)) = found.iter().find(|(t, _)| name.names(t)) else {
            outcomes[i] = Some(Err(AppError::NotFound("task")));
            continue;
        };
        let authorized = ports
            .authorize_access(
                principal,
                task.project_id,
                Permission::WriteTasks,
                "task",
                Some(Arc::new(access.clone())),
            )
            .await;
        if let Err(e) = authorized {
            outcomes[i] = Some(Err(e));
            continue;
        }
        let round = seen.entry(task.id).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push((i, task.clone()));
        *round += 1;
    }

    let mut run = Run {
        ports,
        principal,
        meta,
        update,
        changes,
        patches: HashMap::new(),
        unavailable: false,
    };
    for (n, round) in rounds.into_iter().enumerate() {
        if run.unavailable {
            break;
        }
        // A later round works on what the earlier ones left: read again.
        let round = if n == 0 {
            round
        } else {
            run.reread(round, &mut outcomes).await
        };
        run.round(round, &mut outcomes).await;
    }
    ids.into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| BulkItem {
            id,
            outcome: outcome.unwrap_or_else(|| Err(untried())),
        })
        .collect()
}

/// One set-based `update`: what its rounds share.
struct Run<'a> {
    ports: &'a TrackingPorts,
    principal: &'a Principal,
    meta: &'a RequestMeta,
    update: &'a UpdateTaskBody,
    changes: &'a LabelChanges,
    /// The patch resolved in each project (once per request, as a `PATCH` does once).
    patches: HashMap<Uuid, Result<ResolvedPatch, AppError>>,
    /// The database failed: what is not decided yet is not tried (503).
    unavailable: bool,
}

impl Run<'_> {
    /// The items' tasks read again (one statement); an item whose task is gone (or in the
    /// trash) is a 404, as a `PATCH`'s re-read answers.
    async fn reread(
        &mut self,
        items: Vec<(usize, Task)>,
        outcomes: &mut [Option<Outcome>],
    ) -> Vec<(usize, Task)> {
        let ids: Vec<Uuid> = items.iter().map(|(_, t)| t.id).collect();
        let found = match self
            .ports
            .tasks
            .find_many_with_access(&ids, &[], self.principal.user_id)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let e = AppError::from(e);
                self.unavailable |= matches!(e, AppError::Unavailable(_));
                for (i, _) in items {
                    outcomes[i] = Some(Err(again(&e)));
                }
                return Vec::new();
            }
        };
        let mut fresh = Vec::with_capacity(items.len());
        for (i, task) in items {
            match found.iter().find(|(t, _)| t.id == task.id) {
                Some((t, _)) => fresh.push((i, t.clone())),
                None => outcomes[i] = Some(Err(AppError::NotFound("task"))),
            }
        }
        fresh
    }

    /// The patch planned on `task` by the single route's rules, with the patch's references
    /// resolved in its project (once) and the new state's category read (once per project
    /// and attempt, as a `PATCH` reads it on each attempt).
    async fn plan(
        &mut self,
        task: Task,
        states: &mut HashMap<Uuid, Result<Vec<WorkflowState>, AppError>>,
    ) -> Result<Planned, AppError> {
        let project = task.project_id;
        if !self.patches.contains_key(&project) {
            let resolved = resolve_patch(self.ports, project, self.update, self.changes).await;
            self.patches.insert(project, resolved);
        }
        let patch = match self.patches.get(&project) {
            Some(Ok(patch)) => patch,
            Some(Err(e)) => return Err(again(e)),
            None => return Err(AppError::internal("the resolved patch is missing")),
        };
        let category = match patch.status_change(&task) {
            Some(status) => {
                if let Entry::Vacant(slot) = states.entry(project) {
                    slot.insert(self.ports.states.list(project).await.map_err(AppError::from));
                }
                match states.get(&project) {
                    Some(Ok(listed)) => Some(
                        listed
                            .iter()
                            .find(|s| s.key == *status)
                            .map(|s| s.category)
                            .ok_or_else(|| AppError::invalid("status", "is not a state of this project"))?,
                    ),
                    Some(Err(e)) => return Err(again(e)),
                    None => return Err(AppError::internal("the states read is missing")),
                }
            }
            None => None,
        };
        patch.plan(self.ports, self.meta, self.principal, task, category)
    }

    /// One round: every task at most once. Planned in memory, written in one store write;
    /// the items whose write lost its race read again and re-planned, up to the attempts of
    /// a `PATCH` ([`UPDATE_ATTEMPTS`]), then 409.
    async fn round(&mut self, items: Vec<(usize, Task)>, outcomes: &mut [Option<Outcome>]) {
        let mut pending = items;
        for attempt in 0..UPDATE_ATTEMPTS {
            if pending.is_empty() || self.unavailable {
                return;
            }
            if attempt > 0 {
                pending = self.reread(pending, outcomes).await;
            }
            let mut states = HashMap::new();
            let mut writes: Vec<TaskWrite> = Vec::new();
            let mut writing: Vec<usize> = Vec::new();
            for (i, task) in std::mem::take(&mut pending) {
                if self.unavailable {
                    continue;
                }
                match self.plan(task, &mut states).await {
                    Err(e) => {
                        self.unavailable |= matches!(e, AppError::Unavailable(_));
                        outcomes[i] = Some(Err(e));
                    }
                    Ok(Planned::Unchanged(task)) => outcomes[i] = Some(Ok(Some(TaskView::from(&*task)))),
                    Ok(Planned::Write(write, _)) => {
                        writing.push(i);
                        writes.push(*write);
                    }
                }
            }
            if self.unavailable || writes.is_empty() {
                return;
            }
            match self.ports.tasks.update_many(&writes).await {
                Ok(applied) => {
                    let done: Vec<&Change> = writes
                        .iter()
                        .filter(|w| applied.contains(&w.task.id))
                        .map(|w| &w.change)
                        .collect();
                    let invalidated = self.ports.invalidate_changes(&done).await;
                    for (i, write) in writing.into_iter().zip(writes) {
                        if !applied.contains(&write.task.id) {
                            pending.push((i, write.task));
                            continue;
                        }
                        outcomes[i] = Some(match &invalidated {
                            Ok(()) => Ok(Some(TaskView::from(&write.task))),
                            Err(e) => Err(again(e)),
                        });
                    }
                }
                Err(StoreError::Unavailable(cause)) => {
                    self.unavailable = true;
                    let e = AppError::Unavailable(cause);
                    for i in writing {
                        outcomes[i] = Some(Err(again(&e)));
                    }
                    return;
                }
                // Refused as a whole (a role lost in one of the projects, say): each item
                // through the single route, which answers it exactly.
                Err(_) => {
                    for (i, write) in writing.into_iter().zip(writes) {
                        if self.unavailable {
                            continue;
                        }
                        let id = write.task.id.to_string();
                        let outcome = patch_task(
                            self.ports,
                            self.principal,
                            &id,
                            self.update.clone(),
                            self.changes,
                            Expect::Any,
                            self.meta,
                        )
                        .await
                        .map(Some);
                        self.unavailable |= matches!(outcome, Err(AppError::Unavailable(_)));
                        outcomes[i] = Some(outcome);
                    }
                    return;
                }
            }
        }
        for (i, _) in pending {
            outcomes[i] = Some(Err(AppError::Conflict(
                "the resource is being changed concurrently; try again".into(),
            )));
        }
    }
}
