//! One action on many tasks (`POST /tasks/bulk`): each item goes through the single route's
//! use case — [`patch_task`] for `update` (`PATCH /tasks/{id}`), [`archive_task`],
//! [`unarchive_task`], [`delete_task`], [`restore_task`] — so it is validated, authorized,
//! written with its version guard, audited, evented and invalidated exactly as that route
//! does it, and succeeds or fails on its own.
//!
//! Items run one after another, in the order given: the answer lists them in that order,
//! a task named twice is acted on twice (the second time on what the first left), and one
//! request holds at most one database connection at a time. A failure of the database
//! itself (`Unavailable`) stops the run: the items after it are not tried and answer the
//! same 503, instead of each waiting for a connection in turn.

use keel_domain::FieldError;
use keel_domain::identity::Principal;

use super::super::inputs::{BulkTasksBody, MAX_BULK_TASKS, UpdateTaskBody};
use super::super::views::TaskView;
use super::super::{Expect, TrackingPorts, validated};
use super::lifecycle::{archive_task, delete_task, restore_task, unarchive_task};
use super::write::{LabelChanges, check_patch, patch_task};
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

    let mut items = Vec::with_capacity(body.ids.len());
    let mut unavailable = false;
    for id in body.ids {
        let outcome = if unavailable {
            Err(AppError::Unavailable(
                "not tried: the database was unavailable for an earlier item".into(),
            ))
        } else {
            let id = id.as_str();
            match action {
                BulkAction::Update => {
                    patch_task(ports, principal, id, update.clone(), &changes, Expect::Any, meta)
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
    Ok(items)
}
