//! Creating and changing tasks (their lifecycle — archive, trash, restore, purge — is in
//! `lifecycle`).

use futures::TryFutureExt;

use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::ports::NewTask;
use keel_domain::tracking::values::{TASK_DESCRIPTION_MAX, parse_description, parse_due_date};
use keel_domain::tracking::{Permission, Priority, Task, TaskStatus, TaskTitle};
use serde_json::json;
use uuid::Uuid;

use super::super::inputs::{CreateTaskBody, UpdateTaskBody};
use super::super::views::TaskView;
use super::super::{Expect, TrackingPorts, check, not_found_as, optional, validated, versioned_update};
use super::{check_references, label_refs, labelled, load, reach_task, task_data};
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
    let status = optional(&mut errors, body.status.as_deref(), |s| {
        TaskStatus::parse(s, "status")
    })
    .unwrap_or(TaskStatus::Todo);
    let priority =
        optional(&mut errors, body.priority, |p| Priority::new(p, "priority")).unwrap_or(Priority::NONE);
    let due_date = optional(&mut errors, body.due_date.as_deref(), parse_due_date);
    let labels = check(
        &mut errors,
        label_refs(body.labels.as_deref().unwrap_or_default(), "labels"),
    );
    validated(errors)?;
    let (Some(title), Some(labels)) = (title, labels) else {
        return Err(AppError::internal("validated input missing"));
    };
    let (labels, label_ids) = labelled(
        check_references(ports, project_id, body.assignee_id, Some(&labels))
            .await?
            .unwrap_or_default(),
    );
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
        priority,
        assignee_id: body.assignee_id,
        labels,
        label_ids: label_ids.clone(),
        due_date,
        created_by: principal.user_id,
        created_at: now,
        updated_at: now,
        completed_at: (status == TaskStatus::Done).then_some(now),
        version: 1,
        archived_at: None,
        blocked_by_count: 0,
        deleted_at: None,
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
                .map_err(not_found_as("project")),
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
    let (found, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    let (id, project_id) = (found.id, found.project_id);
    // The first attempt works on the task just read; a retry after a lost race re-reads it.
    let mut preloaded = Some(found);
    let mut errors = Vec::new();
    let title = optional(&mut errors, body.title.as_deref(), TaskTitle::parse);
    let description = optional(&mut errors, body.description, |d| {
        parse_description(d.as_deref(), TASK_DESCRIPTION_MAX)
    });
    let status = optional(&mut errors, body.status.as_deref(), |s| {
        TaskStatus::parse(s, "status")
    });
    let priority = optional(&mut errors, body.priority, |p| Priority::new(p, "priority"));
    let due_date = check(
        &mut errors,
        body.due_date
            .map(|d| d.as_deref().map(parse_due_date).transpose())
            .transpose(),
    )
    .flatten();
    let labels = optional(&mut errors, body.labels.as_deref(), |l| label_refs(l, "labels"));
    validated(errors)?;
    let new_assignee = body.assignee_id.flatten();
    let labels = check_references(ports, project_id, new_assignee, labels.as_ref())
        .await?
        .map(labelled);

    let expect = &expect;
    versioned_update(expect, || {
        let (title, description, labels) = (title.clone(), description.clone(), labels.clone());
        let preloaded = preloaded.take();
        async move {
            let mut task = match preloaded {
                Some(task) => task,
                None => load(ports, id).await?,
            };
            if !expect.admits(task.version) {
                return Err(AppError::PreconditionFailed);
            }
            let now = ports.clock.now();
            let mut changed = Vec::new();
            if let Some(title) = title.filter(|t| *t != task.title) {
                task.title = title;
                changed.push("title");
            }
            if let Some(description) = description.filter(|d| *d != task.description) {
                task.description = description;
                changed.push("description");
            }
            if let Some(status) = status.filter(|s| *s != task.status) {
                task.set_status(status, now);
                changed.push("status");
            }
            if let Some(priority) = priority.filter(|p| *p != task.priority) {
                task.priority = priority;
                changed.push("priority");
            }
            if let Some(assignee) = body.assignee_id.filter(|a| *a != task.assignee_id) {
                task.assignee_id = assignee;
                changed.push("assigneeId");
            }
            if let Some(due_date) = due_date.filter(|d| *d != task.due_date) {
                task.due_date = due_date;
                changed.push("dueDate");
            }
            // Compared by id: a label renamed since the task was read is the same label.
            let new_labels = labels.filter(|(_, ids)| !same_set(ids, &task.label_ids));
            if let Some((names, ids)) = &new_labels {
                task.labels.clone_from(names);
                task.label_ids.clone_from(ids);
                changed.push("labels");
            }
            if changed.is_empty() {
                return Ok(Some(TaskView::from(&task)));
            }
            let expected = task.version;
            task.version += 1;
            task.updated_at = now;
            let change = ports
                .change(meta, principal, EventType::TaskUpdated, task.project_id)
                .resource(task.id)
                .needs(Permission::WriteTasks)
                .details(json!({ "changed": changed, "version": task.version }))
                .data(task_data(&task))
                .build();
            let ids = new_labels.map(|(_, ids)| ids);
            let saved = ports
                .commit(
                    &change,
                    ports
                        .tasks
                        .update(&task, ids.as_deref(), expected, &change)
                        .map_err(not_found_as("task")),
                )
                .await?;
            Ok(saved.then(|| TaskView::from(&task)))
        }
    })
    .await
}

/// Whether two lists of ids hold the same ids.
fn same_set(a: &[Uuid], b: &[Uuid]) -> bool {
    let set = |ids: &[Uuid]| ids.iter().copied().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}
