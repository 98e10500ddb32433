//! Tasks: create (numbered per project), read by id or `KEY-12`, change, delete, and the
//! filtered, sorted, cursor-paginated lists of one project or of all the caller's projects.

use futures::TryFutureExt;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use keel_domain::FieldError;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::ports::NewTask;
use keel_domain::tracking::values::{TASK_DESCRIPTION_MAX, parse_description, parse_due_date};
use keel_domain::tracking::{
    AssigneeFilter, LabelName, Permission, Priority, ProjectAccess, ProjectRole, Scope, Task, TaskFilter,
    TaskPosition, TaskQuery, TaskSort, TaskStatus, TaskTitle, parse_identifier,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::inputs::{CreateTaskBody, MAX_TASK_LABELS, TaskListQuery, UpdateTaskBody};
use super::projects::search_text;
use super::views::{TaskView, event_data};
use super::{Expect, TrackingPorts, check, not_found_as, optional, validated, versioned_update};
use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a task list page, tied to the sort it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCursor {
    /// The `sort` parameter as given (`-createdAt`).
    s: String,
    p: TaskPosition,
}

/// Label names of a request: parsed, de-duplicated, at most [`MAX_TASK_LABELS`].
fn label_names(raw: &[String], field: &str) -> Result<Vec<LabelName>, FieldError> {
    if raw.len() > MAX_TASK_LABELS {
        return Err(FieldError::new(
            field,
            format!("must list at most {MAX_TASK_LABELS} labels"),
        ));
    }
    let mut names = BTreeSet::new();
    for name in raw {
        let name = LabelName::parse(name).map_err(|e| FieldError::new(field, e.message))?;
        names.insert(name.into_inner());
    }
    names
        .into_iter()
        .map(|n| LabelName::parse(&n))
        .collect::<Result<Vec<_>, _>>()
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

/// The checks against stored data: the assignee is a member, the labels exist. Returns the
/// label ids.
async fn check_references(
    ports: &TrackingPorts,
    project_id: Uuid,
    assignee: Option<Uuid>,
    labels: Option<&[LabelName]>,
) -> Result<Option<Vec<Uuid>>, AppError> {
    let mut errors = Vec::new();
    if let Some(user) = assignee
        && ports.projects.role_of(project_id, user).await?.is_none()
    {
        errors.push(FieldError::new("assigneeId", "must be a member of the project"));
    }
    let mut ids = None;
    if let Some(names) = labels {
        let found = if names.is_empty() {
            Vec::new()
        } else {
            ports.labels.find_by_names(project_id, names).await?
        };
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !found.iter().any(|l| l.name == **n))
            .map(LabelName::as_str)
            .collect();
        if !unknown.is_empty() {
            errors.push(FieldError::new(
                "labels",
                format!("unknown in this project: {}", unknown.join(", ")),
            ));
        }
        ids = Some(found.iter().map(|l| l.id).collect());
    }
    validated(errors)?;
    Ok(ids)
}

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
        label_names(body.labels.as_deref().unwrap_or_default(), "labels"),
    );
    validated(errors)?;
    let (Some(title), Some(labels)) = (title, labels) else {
        return Err(AppError::internal("validated input missing"));
    };
    let label_ids = check_references(ports, project_id, body.assignee_id, Some(&labels))
        .await?
        .unwrap_or_default();
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
        due_date,
        created_by: principal.user_id,
        created_at: now,
        updated_at: now,
        completed_at: (status == TaskStatus::Done).then_some(now),
        version: 1,
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
    let labels = optional(&mut errors, body.labels.as_deref(), |l| label_names(l, "labels"));
    validated(errors)?;
    let new_assignee = body.assignee_id.flatten();
    let label_ids = check_references(ports, project_id, new_assignee, labels.as_deref()).await?;

    let expect = &expect;
    versioned_update(expect, || {
        let (title, description, labels, label_ids) = (
            title.clone(),
            description.clone(),
            labels.clone(),
            label_ids.clone(),
        );
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
            let new_labels = labels.filter(|l| *l != task.labels);
            if let Some(labels) = &new_labels {
                task.labels.clone_from(labels);
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
            let ids = new_labels.and(label_ids);
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

pub async fn delete_task(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::WriteTasks).await?;
    let id = task.id;
    let change = ports
        .change(meta, principal, EventType::TaskDeleted, task.project_id)
        .resource(id)
        .needs(Permission::WriteTasks)
        .details(json!({ "identifier": task.identifier(), "title": task.title.as_str() }))
        .data(json!({ "id": id, "identifier": task.identifier() }))
        .build();
    ports
        .commit(
            &change,
            ports.tasks.delete(id, &change).map_err(not_found_as("task")),
        )
        .await
}

/// The tasks of one project.
pub async fn list_project_tasks(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    query: TaskListQuery,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let (task_query, shape) = list_query(principal, Scope::Project(project_id), &query, &cursor)?;
    let Some(task_query) = task_query else {
        ports
            .authorize(principal, project_id, Permission::Read, "project")
            .await?;
        return shape.page(&[], &cursor);
    };
    let user_id = principal.user_id;
    let mark = ports.cache.watermark();
    let fresh: Mutex<Option<ProjectAccess>> = Mutex::new(None);
    // The page and the caller's access to the project in one statement; the access is
    // checked below, before anything of the page is shown.
    let load = async {
        let found = ports
            .tasks
            .page_with_access(project_id, user_id, &task_query)
            .await?;
        Ok(found.map(|(access, tasks)| {
            if let Ok(mut slot) = fresh.lock() {
                *slot = Some(access);
            }
            tasks
        }))
    };
    let tasks = if task_query.filter.q.is_some() {
        // Free-text searches are not cached: one caller could fill the cache with variants.
        load.await?.map(Arc::new)
    } else {
        let key = CacheKey::project_tasks(project_id).with_variant(page_variant(&task_query));
        cached(ports.cache.as_ref(), &key, load).await?
    };
    let fresh = fresh.into_inner().ok().flatten().map(Arc::new);
    if let Some(access) = &fresh {
        ports.keep_access(mark, user_id, access).await;
    }
    ports
        .authorize_access(principal, project_id, Permission::Read, "project", fresh)
        .await?;
    let tasks = tasks.ok_or(AppError::NotFound("project"))?;
    shape.page(&tasks, &cursor)
}

/// The cache variant of one page of a project's tasks: everything that decides its rows
/// (filters with `me` resolved, sort, position, size), as written by this build.
fn page_variant(query: &TaskQuery) -> String {
    format!(
        "{:?}|{:?}|{:?}|{}",
        query.filter, query.sort, query.after, query.limit
    )
}

/// The tasks of every project the caller belongs to (every project for instance admins).
pub async fn list_tasks(
    ports: &TrackingPorts,
    principal: &Principal,
    query: TaskListQuery,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let scope = if principal.is_admin() {
        Scope::All
    } else {
        Scope::MemberOf(principal.user_id)
    };
    list(ports, principal, scope, query, cursor).await
}

/// A comma-separated filter of a closed set: every item parsed exactly as written.
fn comma_list<T>(
    raw: Option<&str>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, FieldError>,
) -> Result<Vec<T>, FieldError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(|item| parse(item).map_err(|e| FieldError::new(field, e.message)))
        .collect()
}

/// The label filter: names as they would be stored (trimmed); an item no label could have
/// (too long, control characters) matches nothing rather than failing the request. `None`
/// when names were asked for but none could match: the page is empty.
fn label_filter(raw: Option<&str>) -> Option<Vec<LabelName>> {
    let Some(raw) = raw else { return Some(Vec::new()) };
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
    let names: Vec<LabelName> = items.iter().filter_map(|i| LabelName::parse(i).ok()).collect();
    if !items.is_empty() && names.is_empty() {
        None
    } else {
        Some(names)
    }
}

/// The filter and sort of a list request; `None` for the filter when it can match nothing.
fn parse_filter(
    principal: &Principal,
    query: &TaskListQuery,
) -> Result<(Option<TaskFilter>, TaskSort), AppError> {
    let mut errors = Vec::new();
    let statuses = check(
        &mut errors,
        comma_list(query.status.as_deref(), "status", |s| {
            TaskStatus::parse(s, "status")
        }),
    );
    let priorities = check(
        &mut errors,
        comma_list(query.priority.as_deref(), "priority", |p| {
            let digit = match p {
                "0" | "1" | "2" | "3" | "4" => p.parse::<i64>().ok(),
                _ => None,
            };
            let bad = || {
                FieldError::new(
                    "priority",
                    "must be a comma-separated list of integers from 0 to 4",
                )
            };
            Priority::new(digit.ok_or_else(bad)?, "priority")
        }),
    );
    let assignee = check(
        &mut errors,
        query
            .assignee
            .as_deref()
            .map(|a| match a {
                "me" => Ok(AssigneeFilter::User(principal.user_id)),
                "none" => Ok(AssigneeFilter::Unassigned),
                // The hyphenated form only, as the document's pattern says.
                id => Uuid::parse_str(id)
                    .ok()
                    .filter(|_| id.len() == 36)
                    .map(AssigneeFilter::User)
                    .ok_or_else(|| FieldError::new("assignee", "must be a user id, me or none")),
            })
            .transpose(),
    )
    .flatten();
    let q = check(&mut errors, search_text(query.q.clone(), 200)).flatten();
    let updated_since = check(
        &mut errors,
        query
            .updated_since
            .as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| FieldError::new("updatedSince", "must be an RFC 3339 date-time"))
            })
            .transpose(),
    )
    .flatten();
    let sort = optional(&mut errors, query.sort.as_deref(), TaskSort::parse).unwrap_or_default();
    validated(errors)?;
    let filter = label_filter(query.label.as_deref()).map(|labels| TaskFilter {
        statuses: statuses.unwrap_or_default(),
        priorities: priorities.unwrap_or_default(),
        assignee,
        labels,
        q,
        updated_since,
    });
    Ok((filter, sort))
}

fn sort_text(sort: TaskSort) -> String {
    let name = match sort.key {
        keel_domain::tracking::TaskSortKey::CreatedAt => "createdAt",
        keel_domain::tracking::TaskSortKey::UpdatedAt => "updatedAt",
        keel_domain::tracking::TaskSortKey::Priority => "priority",
        keel_domain::tracking::TaskSortKey::DueDate => "dueDate",
    };
    if sort.descending {
        format!("-{name}")
    } else {
        name.to_owned()
    }
}

async fn list(
    ports: &TrackingPorts,
    principal: &Principal,
    scope: Scope,
    query: TaskListQuery,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let (task_query, shape) = list_query(principal, scope, &query, &cursor)?;
    let tasks = match task_query {
        Some(query) => ports.tasks.list(&query).await?,
        None => Vec::new(),
    };
    shape.page(&tasks, &cursor)
}

/// How a page's cursors are made: the sort, by name and as parsed.
struct PageShape {
    sort_name: String,
    sort: TaskSort,
}

impl PageShape {
    /// The page of `tasks` (the store's rows, one more than asked for when there is more).
    fn page(
        &self,
        tasks: &[Task],
        cursor: &CursorRequest<TaskCursor>,
    ) -> Result<CursorPage<TaskView>, AppError> {
        let rows: Vec<&Task> = tasks.iter().collect();
        let page = CursorPage::from_rows(rows, cursor, |t| TaskCursor {
            s: self.sort_name.clone(),
            p: self.sort.position_of(t),
        })?;
        Ok(CursorPage {
            data: page.data.into_iter().map(TaskView::from).collect(),
            pagination: page.pagination,
        })
    }
}

/// The store query of a list request (`None` when its filter can match nothing), and the
/// shape of its pages.
fn list_query(
    principal: &Principal,
    scope: Scope,
    query: &TaskListQuery,
    cursor: &CursorRequest<TaskCursor>,
) -> Result<(Option<TaskQuery>, PageShape), AppError> {
    let (filter, sort) = parse_filter(principal, query)?;
    let sort_name = sort_text(sort);
    let after = match cursor.after() {
        None => None,
        Some(c) if c.s == sort_name && c.p.fits(sort.key) => Some(c.p),
        Some(_) => {
            return Err(AppError::invalid(
                "cursor",
                "was made for another sort order; start again without a cursor",
            ));
        }
    };
    let task_query = filter.map(|filter| TaskQuery {
        scope,
        filter,
        sort,
        after,
        limit: cursor.fetch_limit(),
    });
    Ok((task_query, PageShape { sort_name, sort }))
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::{MockLabelRepository, MockTaskRepository};
    use keel_domain::tracking::{Color, Label, SortValue, TaskSortKey};

    /// `update_task` of the fixture's task by `who`.
    async fn update_as(
        ports: &TrackingPorts,
        who: &Principal,
        body: UpdateTaskBody,
        expect: Expect,
    ) -> Result<TaskView, AppError> {
        update_task(ports, who, &task().id.to_string(), body, expect, &meta()).await
    }

    use super::super::fixtures::*;
    use super::*;
    use crate::pagination::encode_cursor;

    fn label(name: &str) -> Label {
        Label {
            id: Uuid::now_v7(),
            project_id: PROJECT_ID,
            name: LabelName::parse(name).unwrap(),
            color: Color::parse("#000000").unwrap(),
            created_at: now(),
        }
    }

    fn labels_known(names: &'static [&'static str]) -> MockLabelRepository {
        let mut labels = MockLabelRepository::new();
        labels.expect_find_by_names().returning(move |_, wanted| {
            Ok(wanted
                .iter()
                .filter(|w| names.contains(&w.as_str()))
                .map(|w| label(w.as_str()))
                .collect())
        });
        labels
    }

    fn stored(mut new: NewTask, number: i64) -> Task {
        new.task.number = number;
        new.task
    }

    #[tokio::test]
    async fn create_validates_references_and_stores_with_labels() {
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_create()
            .withf(|n, a, data| {
                // The event shows the number the store hands out, as the API shows it.
                let shown = data(&stored(n.clone(), 7));
                n.task.title.as_str() == "Ship it"
                    && n.label_ids.len() == 1
                    && n.task.status == TaskStatus::Done
                    && n.task.completed_at == Some(now())
                    && a.audit.action == "task.created"
                    && a.event.event.event_type == EventType::TaskCreated
                    && a.event.event.id == a.audit.id
                    && shown["identifier"] == "KEEL-7"
                    && shown["labels"] == json!(["bug"])
            })
            .times(1)
            .returning(|n, _, _| Ok(stored(n.clone(), 7)));
        let ports = Fixture {
            tasks,
            labels: labels_known(&["bug"]),
            ..Fixture::default()
        }
        .ports();
        let body = CreateTaskBody {
            title: "Ship it".into(),
            status: Some("done".into()),
            priority: Some(1),
            labels: Some(vec!["bug".into(), "bug".into()]),
            assignee_id: Some(viewer().user_id),
            ..Default::default()
        };
        let view = create_task(&ports, &member(), PROJECT_ID, body, &meta())
            .await
            .unwrap();
        assert_eq!(
            (view.identifier.as_str(), view.priority, view.labels.clone()),
            ("KEEL-7", 1, vec!["bug".to_owned()])
        );
    }

    #[tokio::test]
    async fn create_refuses_strangers_viewers_bad_fields_and_unknown_references() {
        let ports = Fixture {
            labels: labels_known(&["bug"]),
            ..Fixture::default()
        }
        .ports();
        let ok = || CreateTaskBody {
            title: "t".into(),
            ..Default::default()
        };
        assert!(matches!(
            create_task(&ports, &stranger(), PROJECT_ID, ok(), &meta()).await,
            Err(AppError::NotFound("project"))
        ));
        assert!(matches!(
            create_task(&ports, &viewer(), PROJECT_ID, ok(), &meta()).await,
            Err(AppError::Forbidden)
        ));
        let bad = CreateTaskBody {
            title: " ".into(),
            status: Some("open".into()),
            priority: Some(5),
            due_date: Some("2026-13-01".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(
                create_task(&ports, &member(), PROJECT_ID, bad, &meta())
                    .await
                    .unwrap_err()
            ),
            vec!["title", "status", "priority", "dueDate"]
        );
        let refs = CreateTaskBody {
            title: "t".into(),
            assignee_id: Some(stranger().user_id),
            labels: Some(vec!["bug".into(), "nope".into()]),
            ..Default::default()
        };
        let e = create_task(&ports, &member(), PROJECT_ID, refs, &meta())
            .await
            .unwrap_err();
        let AppError::Validation(details) = e else {
            panic!()
        };
        assert_eq!(details[0].field, "assigneeId");
        assert_eq!(
            (details[1].field.as_str(), details[1].message.as_str()),
            ("labels", "unknown in this project: nope")
        );
    }

    #[tokio::test]
    async fn get_accepts_an_id_or_an_identifier_and_hides_other_projects() {
        let mut tasks = MockTaskRepository::new();
        reads_task(&mut tasks, task());
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        assert_eq!(
            get_task(&ports, &viewer(), &task().id.to_string())
                .await
                .unwrap()
                .number,
            1
        );
        assert_eq!(get_task(&ports, &viewer(), "keel-1").await.unwrap().id, task().id);
        assert!(matches!(
            get_task(&ports, &viewer(), "nonsense").await,
            Err(AppError::NotFound("task"))
        ));
        assert!(matches!(
            get_task(&ports, &stranger(), "KEEL-1").await,
            Err(AppError::NotFound("task"))
        ));
    }

    #[tokio::test]
    async fn update_moves_status_bumps_version_and_keeps_unsent_fields() {
        let mut tasks = MockTaskRepository::new();
        tasks.expect_find().returning(|_| Ok(Some(task())));
        reads_task(&mut tasks, task());
        tasks
            .expect_update()
            .withf(|t, labels, expected, a| {
                t.version == 2
                    && *expected == 1
                    && t.status == TaskStatus::Done
                    && t.completed_at == Some(now())
                    && t.title.as_str() == "First"
                    && labels.is_none()
                    && a.audit.details.as_ref().unwrap()["changed"] == json!(["status"])
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let body = UpdateTaskBody {
            status: Some("done".into()),
            ..Default::default()
        };
        let view = update_as(&ports, &member(), body, Expect::OneOf(vec![1]))
            .await
            .unwrap();
        assert_eq!((view.version, view.status), (2, "done"));
    }

    #[tokio::test]
    async fn update_is_412_on_a_stale_version_and_403_for_viewers() {
        let mut tasks = MockTaskRepository::new();
        tasks.expect_find().returning(|_| Ok(Some(task())));
        reads_task(&mut tasks, task());
        tasks.expect_update().returning(|_, _, _, _| Ok(false));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let body = || UpdateTaskBody {
            title: Some("New".into()),
            ..Default::default()
        };
        assert!(matches!(
            update_as(&ports, &member(), body(), Expect::OneOf(vec![3])).await,
            Err(AppError::PreconditionFailed)
        ));
        assert!(
            matches!(
                update_as(&ports, &member(), body(), Expect::OneOf(vec![1])).await,
                Err(AppError::PreconditionFailed)
            ),
            "lost the race after the check"
        );
        assert!(matches!(
            update_as(&ports, &viewer(), body(), Expect::Any).await,
            Err(AppError::Forbidden)
        ));
    }

    #[tokio::test]
    async fn update_can_clear_assignee_and_replace_labels() {
        let mut tasks = MockTaskRepository::new();
        let mut assigned = task();
        assigned.assignee_id = Some(member().user_id);
        reads_task(&mut tasks, assigned.clone());
        tasks.expect_find().returning(move |_| Ok(Some(assigned.clone())));
        tasks
            .expect_update()
            .withf(|t, labels, _, _| {
                t.assignee_id.is_none() && labels.is_some_and(|l| l.len() == 1) && t.labels.len() == 1
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let ports = Fixture {
            tasks,
            labels: labels_known(&["ui"]),
            ..Fixture::default()
        }
        .ports();
        let body = UpdateTaskBody {
            assignee_id: Some(None),
            labels: Some(vec!["ui".into()]),
            ..Default::default()
        };
        let view = update_as(&ports, &member(), body, Expect::Any).await.unwrap();
        assert_eq!(view.assignee_id, None);
    }

    #[tokio::test]
    async fn lists_parse_every_filter_and_scope_by_membership() {
        let mut tasks = MockTaskRepository::new();
        let me = member().user_id;
        tasks
            .expect_list()
            .withf(move |q| {
                q.scope == Scope::MemberOf(me)
                    && q.filter.statuses == vec![TaskStatus::Todo, TaskStatus::Done]
                    && q.filter.priorities.iter().map(|p| p.value()).collect::<Vec<_>>() == vec![1, 0]
                    && q.filter.assignee == Some(AssigneeFilter::User(me))
                    && q.filter.labels.len() == 2
                    && q.filter.q.as_deref() == Some("fix")
                    && q.filter.updated_since.is_some()
                    && q.sort
                        == TaskSort {
                            key: TaskSortKey::Priority,
                            descending: false,
                        }
                    && q.limit == 51
            })
            .times(1)
            .returning(|_| Ok(vec![task()]));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let query = TaskListQuery {
            status: Some("todo,done".into()),
            priority: Some("1,0".into()),
            assignee: Some("me".into()),
            label: Some("bug, ui".into()),
            q: Some(" fix ".into()),
            updated_since: Some("2026-11-01T00:00:00Z".into()),
            sort: Some("priority".into()),
        };
        let page = list_tasks(
            &ports,
            &member(),
            query,
            CursorRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(page.data.len(), 1);
        assert_eq!(page.pagination.next_cursor, None);
    }

    #[tokio::test]
    async fn lists_report_every_bad_filter() {
        let ports = Fixture::default().ports();
        let query = TaskListQuery {
            status: Some("todo,,".into()),
            priority: Some("+1".into()),
            assignee: Some("{00000000-0000-0000-0000-000000000000}".into()),
            label: Some(" ".into()),
            q: Some("x".repeat(201)),
            updated_since: Some("yesterday".into()),
            sort: Some("title".into()),
        };
        let e = list_tasks(
            &ports,
            &member(),
            query,
            CursorRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            fields(e),
            vec!["status", "priority", "assignee", "q", "updatedSince", "sort"]
        );
    }

    #[tokio::test]
    async fn a_cursor_of_another_sort_is_refused_and_a_matching_one_is_passed_on() {
        let mut tasks = MockTaskRepository::new();
        let position = TaskPosition {
            value: SortValue::Rank(2),
            id: Uuid::from_u128(5),
        };
        tasks
            .expect_page_with_access()
            .withf(move |p, _, q| {
                *p == PROJECT_ID && q.after == Some(position) && q.scope == Scope::Project(PROJECT_ID)
            })
            .times(1)
            .returning(|_, user, _| Ok(Some((access_of(user), vec![]))));
        // The page comes with the caller's access; a stranger's is read, then refused.
        tasks
            .expect_page_with_access()
            .withf(|_, _, q| q.after.is_none())
            .times(1)
            .returning(|_, user, _| Ok(Some((access_of(user), vec![task()]))));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let cursor = encode_cursor(&TaskCursor {
            s: "priority".into(),
            p: position,
        })
        .unwrap();
        let with_sort = |sort: &str| TaskListQuery {
            sort: Some(sort.into()),
            ..Default::default()
        };
        let e = list_project_tasks(
            &ports,
            &viewer(),
            PROJECT_ID,
            with_sort("-priority"),
            CursorRequest::parse(None, Some(&cursor)).unwrap(),
        )
        .await
        .unwrap_err();
        assert_eq!(fields(e), vec!["cursor"]);
        list_project_tasks(
            &ports,
            &viewer(),
            PROJECT_ID,
            with_sort("priority"),
            CursorRequest::parse(None, Some(&cursor)).unwrap(),
        )
        .await
        .unwrap();
        assert!(matches!(
            list_project_tasks(
                &ports,
                &stranger(),
                PROJECT_ID,
                TaskListQuery::default(),
                CursorRequest::parse(None, None).unwrap()
            )
            .await,
            Err(AppError::NotFound("project"))
        ));
    }

    #[tokio::test]
    async fn a_task_read_authorizes_with_the_access_read_in_the_same_statement_and_keeps_it() {
        let mut tasks = MockTaskRepository::new();
        reads_task(&mut tasks, task());
        let fixture = Fixture {
            // No expectation: a separate access read would panic.
            projects: keel_domain::tracking::ports::MockProjectRepository::new(),
            tasks,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let view = get_task(&ports, &viewer(), &task().id.to_string()).await.unwrap();
        assert_eq!(view.id, task().id);
        assert_eq!(cache.reads(), [format!("task:{}", task().id)]);
        assert_eq!(
            cache.filled(),
            [format!("project:{PROJECT_ID}#m:{}", viewer().user_id)],
            "the access came with the task: kept for the next authorization"
        );
        assert!(matches!(
            get_task(&ports, &stranger(), "KEEL-1").await,
            Err(AppError::NotFound("task"))
        ));
    }

    #[tokio::test]
    async fn a_page_of_a_project_is_one_store_read_cached_per_query_and_free_text_is_not_cached() {
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_page_with_access()
            .times(2)
            .returning(|_, user, _| Ok(Some((access_of(user), vec![task()]))));
        let fixture = Fixture {
            projects: keel_domain::tracking::ports::MockProjectRepository::new(),
            tasks,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let page = list_project_tasks(
            &ports,
            &viewer(),
            PROJECT_ID,
            TaskListQuery::default(),
            CursorRequest::parse(Some("25"), None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(page.data.len(), 1);
        let reads = cache.reads();
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert!(
            reads[0].starts_with(&format!("tasks-of:{PROJECT_ID}#")),
            "{reads:?}"
        );
        let searched = TaskListQuery {
            q: Some("first".into()),
            ..Default::default()
        };
        list_project_tasks(
            &ports,
            &viewer(),
            PROJECT_ID,
            searched,
            CursorRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            cache.reads().len(),
            1,
            "a free-text search is not read through the cache"
        );
    }

    #[tokio::test]
    async fn every_task_write_makes_the_project_pages_stale() {
        let mut tasks = MockTaskRepository::new();
        tasks.expect_find().returning(|_| Ok(Some(task())));
        reads_task(&mut tasks, task());
        tasks.expect_delete().returning(|_, _| Ok(()));
        let fixture = Fixture {
            tasks,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        delete_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
        assert_eq!(
            cache.invalidated(),
            [format!("tasks-of:{PROJECT_ID}"), format!("task:{}", task().id)]
        );
    }

    #[tokio::test]
    async fn delete_needs_write_access_and_audits() {
        let mut tasks = MockTaskRepository::new();
        tasks.expect_find().returning(|_| Ok(Some(task())));
        reads_task(&mut tasks, task());
        tasks
            .expect_delete()
            .withf(|id, a| {
                *id == task().id
                    && a.audit.action == "task.deleted"
                    && a.audit.details.as_ref().unwrap()["identifier"] == "KEEL-1"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        assert!(matches!(
            delete_task(&ports, &viewer(), &task().id.to_string(), &meta()).await,
            Err(AppError::Forbidden)
        ));
        delete_task(&ports, &member(), &task().id.to_string(), &meta())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_label_filter_no_label_can_match_answers_an_empty_page_without_a_query() {
        let ports = Fixture::default().ports();
        let query = TaskListQuery {
            label: Some(format!("{},\u{7}", "x".repeat(31))),
            ..Default::default()
        };
        let page = list_tasks(
            &ports,
            &member(),
            query,
            CursorRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
        assert!(page.data.is_empty());
        assert_eq!(
            label_filter(Some(" , ")),
            Some(vec![]),
            "blank items filter nothing"
        );
        assert_eq!(label_filter(Some(" bug ,x")).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_lost_race_without_if_match_re_reads_and_re_applies() {
        let mut tasks = MockTaskRepository::new();
        let mut seq = mockall::Sequence::new();
        tasks
            .expect_find_with_access()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, user| Ok(Some((task(), access_of(user)))));
        tasks
            .expect_update()
            .withf(|_, _, expected, _| *expected == 1)
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _| Ok(false));
        tasks.expect_find().times(1).in_sequence(&mut seq).returning(|_| {
            let mut moved = task();
            moved.version = 2;
            moved.priority = Priority::new(3, "priority").unwrap();
            Ok(Some(moved))
        });
        tasks
            .expect_update()
            .withf(|t, _, expected, _| {
                *expected == 2 && t.version == 3 && t.title.as_str() == "New" && t.priority.value() == 3
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _| Ok(true));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let body = UpdateTaskBody {
            title: Some("New".into()),
            ..Default::default()
        };
        let view = update_as(&ports, &member(), body, Expect::Any).await.unwrap();
        assert_eq!(
            (view.version, view.priority),
            (3, 3),
            "the other write's change is kept"
        );
    }
}
