//! The filtered, sorted, cursor-paginated task lists of one project or of all the caller's
//! projects.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use keel_domain::FieldError;
use keel_domain::identity::Principal;
use keel_domain::tracking::{
    ArchivedFilter, AssigneeFilter, LabelName, ParentFilter, Permission, Priority, ProjectAccess, Scope,
    StateCategory, StateKey, Task, TaskFilter, TaskPosition, TaskQuery, TaskSort, parse_identifier,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::super::inputs::TaskListQuery;
use super::super::projects::search_text;
use super::super::views::TaskView;
use super::super::{TrackingPorts, check, optional, validated};
use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a task list page, tied to the sort it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCursor {
    /// The `sort` parameter as given (`-createdAt`).
    pub(super) s: String,
    pub(super) p: TaskPosition,
}

/// The tasks of one project.
pub async fn list_project_tasks(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    query: TaskListQuery,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let query = resolve_parent(ports, query).await?;
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
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Read, "project", fresh)
        .await?;
    let tasks = tasks.ok_or(AppError::NotFound("project"))?;
    // The project's state keys came with its access: no statement.
    let known = &access.project.state_keys;
    if !task_query.filter.statuses.iter().all(|key| known.contains(key)) {
        return Err(unknown_status());
    }
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
pub(super) fn label_filter(raw: Option<&str>) -> Option<Vec<LabelName>> {
    let Some(raw) = raw else { return Some(Vec::new()) };
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
    let names: Vec<LabelName> = items.iter().filter_map(|i| LabelName::parse(i).ok()).collect();
    if !items.is_empty() && names.is_empty() {
        None
    } else {
        Some(names)
    }
}

/// The label ids of the label filter: its items that are UUIDs (no label name is one).
fn label_id_filter(raw: Option<&str>) -> Vec<Uuid> {
    let Some(raw) = raw else { return Vec::new() };
    let ids: std::collections::BTreeSet<Uuid> = raw
        .split(',')
        .filter_map(|item| Uuid::parse_str(item.trim()).ok())
        .collect();
    ids.into_iter().collect()
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
            StateKey::parse(s, "status")
        }),
    );
    let categories = check(
        &mut errors,
        comma_list(query.category.as_deref(), "category", |c| {
            StateCategory::parse(c, "category")
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
    let archived = optional(&mut errors, query.archived.as_deref(), |a| {
        ArchivedFilter::parse(a, "archived")
    })
    .unwrap_or_default();
    let blocked = optional(&mut errors, query.blocked.as_deref(), |b| match b {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(FieldError::new("blocked", "must be true or false")),
    });
    // An identifier was turned into its task's id already ([`resolve_parent`]).
    let parent = optional(&mut errors, query.parent.as_deref(), |p| match p {
        "none" => Ok(ParentFilter::TopLevel),
        id => Uuid::parse_str(id)
            .ok()
            .filter(|_| id.len() == 36)
            .map(ParentFilter::Task)
            .ok_or_else(|| FieldError::new("parent", PARENT_FILTER_RULE)),
    });
    validated(errors)?;
    // Label ids beside names: a name no label could have matches nothing, an id may.
    let label_ids = label_id_filter(query.label.as_deref());
    let labels = match label_filter(query.label.as_deref()) {
        None if !label_ids.is_empty() => Some(Vec::new()),
        names => names,
    };
    let filter = labels.map(|labels| TaskFilter {
        statuses: statuses.unwrap_or_default(),
        categories: categories.unwrap_or_default(),
        priorities: priorities.unwrap_or_default(),
        assignee,
        labels,
        label_ids,
        q,
        updated_since,
        projects: principal.project_limit().map(<[Uuid]>::to_vec),
        archived,
        blocked,
        parent,
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

/// What the `parent` filter accepts.
const PARENT_FILTER_RULE: &str = "must be a task id, a task identifier (KEY-12) or none";

/// The list request with a `parent` given as an identifier (`KEEL-12`, any case) turned
/// into that task's id — the nil id, which no task has, when there is no such task (the
/// page is empty, as for an id of a task the caller cannot see). Anything else that is not
/// `none` or an id is a 400.
async fn resolve_parent(ports: &TrackingPorts, mut query: TaskListQuery) -> Result<TaskListQuery, AppError> {
    let Some(raw) = query.parent.as_deref() else {
        return Ok(query);
    };
    if raw == "none" || (raw.len() == 36 && Uuid::parse_str(raw).is_ok()) {
        return Ok(query);
    }
    let Some((key, number)) = parse_identifier(raw) else {
        return Err(AppError::invalid("parent", PARENT_FILTER_RULE));
    };
    let id = ports
        .tasks
        .find_by_number(&key, number)
        .await?
        .map_or(Uuid::nil(), |t| t.id);
    query.parent = Some(id.to_string());
    Ok(query)
}

/// The children of a task (its sub-tasks; archived ones included, none in the trash),
/// oldest first: a cursor page like the task lists'.
pub async fn list_task_children(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let (task, _) = super::reach_task(ports, principal, id_or_identifier, Permission::Read).await?;
    let query = TaskListQuery {
        parent: Some(task.id.to_string()),
        archived: Some("include".to_owned()),
        sort: Some("createdAt".to_owned()),
        ..TaskListQuery::default()
    };
    list(ports, principal, Scope::Project(task.project_id), query, cursor).await
}

async fn list(
    ports: &TrackingPorts,
    principal: &Principal,
    scope: Scope,
    query: TaskListQuery,
    cursor: CursorRequest<TaskCursor>,
) -> Result<CursorPage<TaskView>, AppError> {
    let query = resolve_parent(ports, query).await?;
    let (task_query, shape) = list_query(principal, scope, &query, &cursor)?;
    let tasks = match task_query {
        Some(query) => {
            let tasks = ports.tasks.list(&query).await?;
            known_statuses(ports, &query.scope, &query.filter.statuses, &tasks).await?;
            tasks
        }
        None => Vec::new(),
    };
    shape.page(&tasks, &cursor)
}

/// A 400 on `status` when the filter names a key no state of the listed projects has. The
/// keys the page's tasks are in are known; the others are looked up, in one statement (none
/// when every key is on the page).
async fn known_statuses(
    ports: &TrackingPorts,
    scope: &Scope,
    statuses: &[StateKey],
    page: &[Task],
) -> Result<(), AppError> {
    let unseen: Vec<StateKey> = statuses
        .iter()
        .filter(|key| !page.iter().any(|t| t.status == **key))
        .cloned()
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    let known = ports.states.known_keys(scope, &unseen).await?;
    if unseen.iter().all(|key| known.contains(key)) {
        Ok(())
    } else {
        Err(unknown_status())
    }
}

fn unknown_status() -> AppError {
    AppError::invalid(
        "status",
        "must be a comma-separated list of the keys of the projects' states",
    )
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
