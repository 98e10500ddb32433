//! What tracking use cases return, shaped as the API contract's JSON (camelCase).
//! Versions travel beside the JSON (`#[serde(skip)]` where the contract shows none) so the
//! api crate can set `ETag`.

use chrono::{DateTime, NaiveDate, Utc};
use keel_domain::audit::AuditEntry;
use keel_domain::history::FieldChange;
use keel_domain::tracking::{Comment, Label, Member, Project, ProjectRole, Task, WorkflowState};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "KEEL"))]
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(example = "active"))]
    pub status: &'static str,
    pub owner_id: Uuid,
    /// The key of the workflow state new tasks get when created without a status.
    #[cfg_attr(feature = "openapi", schema(example = "todo"))]
    pub default_state: String,
    /// The caller's role; instance admins see `owner`.
    #[cfg_attr(feature = "openapi", schema(example = "owner"))]
    pub my_role: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub version: i64,
}

impl ProjectView {
    pub fn new(p: &Project, role: ProjectRole) -> Self {
        Self {
            id: p.id,
            key: p.key.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            description: p.description.clone(),
            status: p.status.as_str(),
            owner_id: p.owner_id,
            default_state: p.default_state.as_str().to_owned(),
            my_role: role.as_str(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            version: p.version,
        }
    }
}

/// A view as an event's `data`. Views serialize to JSON objects of strings, numbers and
/// dates, which cannot fail; should one ever fail, the event carries `null` and the cause is
/// logged.
pub(crate) fn event_data(view: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(view).unwrap_or_else(|e| {
        tracing::error!(error = %e, "an event's data did not serialize");
        serde_json::Value::Null
    })
}

/// A project as events show it: its view without the reader's role (events go to every
/// member).
pub(crate) fn project_data(p: &Project) -> serde_json::Value {
    let mut data = event_data(&ProjectView::new(p, ProjectRole::Owner));
    if let Some(object) = data.as_object_mut() {
        object.remove("myRole");
    }
    data
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "member"))]
    pub role: &'static str,
    pub joined_at: DateTime<Utc>,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            user_id: m.user_id,
            name: m.name.clone(),
            email: m.email.clone(),
            role: m.role.as_str(),
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelView {
    pub id: Uuid,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "#D73A4A"))]
    pub color: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Label> for LabelView {
    fn from(l: &Label) -> Self {
        Self {
            id: l.id,
            name: l.name.as_str().to_owned(),
            color: l.color.as_str().to_owned(),
            created_at: l.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "KEEL-12"))]
    pub identifier: String,
    pub number: i64,
    pub project_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    /// The key of the task's workflow state in its project.
    #[cfg_attr(feature = "openapi", schema(example = "todo"))]
    pub status: String,
    /// The category of that state: `backlog`, `unstarted`, `started`, `completed` or
    /// `canceled`.
    #[cfg_attr(feature = "openapi", schema(example = "unstarted"))]
    pub status_category: &'static str,
    /// 0 none, 1 urgent, 2 high, 3 medium, 4 low.
    pub priority: u8,
    pub assignee_id: Option<Uuid>,
    /// Label names, sorted.
    pub labels: Vec<String>,
    /// The ids of `labels`, in the same order.
    pub label_ids: Vec<Uuid>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub due_date: Option<NaiveDate>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// When the task was archived; null when it is not.
    pub archived_at: Option<DateTime<Utc>>,
    /// When the task was moved to the trash: set only in the trash's list (every other
    /// route answers 404 for a task in the trash).
    pub deleted_at: Option<DateTime<Utc>>,
    /// How many tasks block this one and are still open (not in a `completed` or `canceled`
    /// state), in any
    /// project — also those the caller cannot see, which its relations list leaves out.
    pub blocked_by_count: i64,
    /// The task this one is a sub-task of; null for a top-level task.
    pub parent_id: Option<Uuid>,
    /// How many sub-tasks the task has (archived ones included, none in the trash).
    pub child_count: i64,
    /// How many of its sub-tasks are completed (`completedAt` set).
    pub child_done_count: i64,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            identifier: t.identifier(),
            number: t.number,
            project_id: t.project_id,
            title: t.title.as_str().to_owned(),
            description: t.description.clone(),
            status: t.status.as_str().to_owned(),
            status_category: t.status_category.as_str(),
            priority: t.priority.value(),
            assignee_id: t.assignee_id,
            labels: t.labels.iter().map(|l| l.as_str().to_owned()).collect(),
            label_ids: t.label_ids.clone(),
            due_date: t.due_date,
            created_by: t.created_by,
            created_at: t.created_at,
            updated_at: t.updated_at,
            completed_at: t.completed_at,
            version: t.version,
            archived_at: t.archived_at,
            deleted_at: t.deleted_at,
            blocked_by_count: t.blocked_by_count,
            parent_id: t.parent_id,
            child_count: t.child_count,
            child_done_count: t.child_done_count,
        }
    }
}

/// A workflow state of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateView {
    pub id: Uuid,
    /// What a task's `status` holds; unique in the project, never changes.
    #[cfg_attr(feature = "openapi", schema(example = "in_review"))]
    pub key: String,
    #[cfg_attr(feature = "openapi", schema(example = "In Review"))]
    pub name: String,
    /// `backlog`, `unstarted`, `started`, `completed` or `canceled`.
    #[cfg_attr(feature = "openapi", schema(example = "started"))]
    pub category: &'static str,
    #[cfg_attr(feature = "openapi", schema(example = "#8B5CF6"))]
    pub color: String,
    /// The states are listed by ascending position.
    pub position: i32,
    /// Whether this is the project's `defaultState`.
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StateView {
    pub fn new(s: &WorkflowState, default_state: &str) -> Self {
        Self {
            id: s.id,
            key: s.key.as_str().to_owned(),
            name: s.name.as_str().to_owned(),
            category: s.category.as_str(),
            color: s.color.as_str().to_owned(),
            position: s.position,
            is_default: s.key.as_str() == default_state,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The states of a project, by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateList {
    pub data: Vec<StateView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommentView {
    pub id: Uuid,
    pub task_id: Uuid,
    pub author_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub version: i64,
}

impl From<&Comment> for CommentView {
    fn from(c: &Comment) -> Self {
        Self {
            id: c.id,
            task_id: c.task_id,
            author_id: c.author_id,
            body: c.body.as_str().to_owned(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

/// A relation as one of its tasks sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelationView {
    pub id: Uuid,
    /// How this task relates to the other: `blocks`, `blocked_by`, `relates_to`,
    /// `duplicate_of` or `duplicated_by`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "blocked_by"))]
    pub relation_type: &'static str,
    /// The other task.
    pub task_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "KEEL-12"))]
    pub identifier: String,
    pub project_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl RelationView {
    /// `related` as the task `from` (one of its two tasks) sees it.
    pub fn new(related: &keel_domain::tracking::RelatedTask, from: Uuid) -> Self {
        let r = &related.relation;
        let (relation_type, other) = r.seen_from(from);
        Self {
            id: r.id,
            relation_type: relation_type.as_str(),
            task_id: other,
            identifier: related.other_identifier.clone(),
            project_id: related.other_project_id,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// One changed field of a change: its old and new value as the API shows them, or, for a
/// field whose values are never recorded (a description, a comment's body), neither and
/// `redacted: true`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldChangeView {
    #[cfg_attr(feature = "openapi", schema(example = "priority"))]
    pub field: String,
    /// The value before the change (any JSON value, `null` included).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = 0))]
    pub from: Option<serde_json::Value>,
    /// The value after the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = 2))]
    pub to: Option<serde_json::Value>,
    /// The field changed, but its values are never recorded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl From<FieldChange> for FieldChangeView {
    fn from(c: FieldChange) -> Self {
        Self {
            field: c.field,
            from: c.from,
            to: c.to,
            redacted: c.redacted,
        }
    }
}

/// The changes an audit entry lists (`details.changes`), taken out of its details; none for
/// an entry that lists none (a creation, or an entry written before changes were kept).
fn take_changes(details: &mut Option<serde_json::Value>) -> Vec<FieldChangeView> {
    let listed = details
        .as_mut()
        .and_then(serde_json::Value::as_object_mut)
        .and_then(|d| d.remove("changes"));
    listed
        .and_then(|l| serde_json::from_value::<Vec<FieldChange>>(l).ok())
        .unwrap_or_default()
        .into_iter()
        .map(FieldChangeView::from)
        .collect()
}

/// One entry of a task's history: a change of the task, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryView {
    /// The change's id (its event's id too).
    pub id: Uuid,
    /// Who made the change (`null`: the system, as the trash purge).
    pub actor_id: Option<Uuid>,
    #[cfg_attr(feature = "openapi", schema(example = "task.updated"))]
    pub action: String,
    /// The fields the change changed, sorted by name; empty for a creation and a move to
    /// the trash.
    pub changes: Vec<FieldChangeView>,
    pub occurred_at: DateTime<Utc>,
}

impl From<AuditEntry> for HistoryView {
    fn from(mut e: AuditEntry) -> Self {
        Self {
            id: e.id,
            actor_id: e.actor_id,
            action: e.action,
            changes: take_changes(&mut e.details),
            occurred_at: e.occurred_at,
        }
    }
}

/// One entry of a project's activity feed: an audit entry without the request's origin.
/// `details` holds what changed; for the project's admins it also holds the restricted
/// details (a webhook's URL and events), which other members never see. `changes` lists
/// the changed fields with their old and new values, as a task's history does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityView {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    #[cfg_attr(feature = "openapi", schema(example = "task.updated"))]
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
    /// The fields the change changed, sorted by name (empty when it changed no field of a
    /// resource: a creation, a deletion, an entry older than the history).
    pub changes: Vec<FieldChangeView>,
}

impl ActivityView {
    /// The entry as a member reads it: with its restricted details only for an `admin`.
    pub fn new(e: AuditEntry, admin: bool) -> Self {
        let mut details = if admin { e.all_details() } else { e.details };
        let changes = take_changes(&mut details);
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor_id: e.actor_id,
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            details,
            changes,
        }
    }
}
