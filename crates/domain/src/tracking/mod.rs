//! Project and task tracking (docs/api/tracking.md): projects, members, labels, tasks, comments, and the
//! ports their use cases need.
//!
//! Every write port takes the [`Change`](crate::events::Change) it makes — the audit entry and
//! the domain event — and stores both in the same transaction as the change, so neither the
//! activity feed nor the event outbox ever misses or invents a change.

pub mod invitations;
pub mod ports;
pub mod search;
pub mod values;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use values::{
    Color, CommentBody, LabelName, LinkTitle, LinkUrl, Permission, Priority, ProjectKey, ProjectName,
    ProjectRole, ProjectStatus, StateCategory, StateKey, StateName, TaskTitle,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: Uuid,
    pub key: ProjectKey,
    pub name: ProjectName,
    pub description: Option<String>,
    pub status: ProjectStatus,
    pub owner_id: Uuid,
    /// The key of the workflow state new tasks get when created without a status.
    pub default_state: StateKey,
    /// The keys of the project's states (read with the project: a task list's `status`
    /// filter is checked against them without a statement of its own).
    pub state_keys: Vec<StateKey>,
    /// Incremented by every change; the basis of the project's `ETag`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A project as one user reaches it: the project and the user's role in it (`None`: not a
/// member). Read in one statement, cached per user, and what every project-scoped
/// authorization looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectAccess {
    pub project: Project,
    pub role: Option<ProjectRole>,
}

/// A user's membership of a project, with the user's public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub role: ProjectRole,
    pub name: String,
    pub email: String,
    pub joined_at: DateTime<Utc>,
}

/// An account as a member list shows it: what adding it to a project needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub email: String,
}

/// Whose accounts a caller can already see, for adding them to a project directly: the
/// members of the projects they share with `user_id` (of `within` only, when the credential
/// is limited to those projects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquaintance {
    pub user_id: Uuid,
    pub within: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: LabelName,
    pub color: Color,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    pub project_key: ProjectKey,
    /// Sequential and gap-free per project, from 1.
    pub number: i64,
    pub title: TaskTitle,
    pub description: Option<String>,
    /// The key of the task's workflow state in its project.
    pub status: StateKey,
    /// The category of that state, stored with the task (kept in step when the state
    /// changes category or its tasks move).
    pub status_category: StateCategory,
    pub priority: Priority,
    pub assignee_id: Option<Uuid>,
    /// Label names, sorted.
    pub labels: Vec<LabelName>,
    /// The ids of [`Task::labels`], in the same order.
    pub label_ids: Vec<Uuid>,
    pub due_date: Option<NaiveDate>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// 1 at creation, incremented by every change; the basis of the task's `ETag`.
    pub version: i64,
    /// Set while the task is archived: lists leave it out unless asked for it.
    pub archived_at: Option<DateTime<Utc>>,
    /// Set while the task is in its project's trash: every read but the trash's leaves it
    /// out.
    pub deleted_at: Option<DateTime<Utc>>,
    /// How many tasks block this one and are still open (neither `done` nor `canceled`, nor
    /// in the trash), in any project. Read with the task, never written: it changes when a
    /// blocker does, without this task's version.
    pub blocked_by_count: i64,
    /// The task this one is a sub-task of (same project), if any.
    pub parent_id: Option<Uuid>,
    /// How many sub-tasks the task has (not in the trash; archived ones included). Read
    /// with the task, never written: it changes when a child does.
    pub child_count: i64,
    /// How many of [`Task::child_count`] are completed (`completed_at` set).
    pub child_done_count: i64,
}

/// How deep tasks nest: a top-level task and at most four levels of sub-tasks below it.
pub const MAX_TASK_DEPTH: usize = 5;

/// What the sub-task rules need to know to hang a task under a parent: read from the store
/// before the write, and again in the write's transaction (under the project's lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub parent_id: Uuid,
    pub parent_project_id: Uuid,
    /// The parent's ancestors, its own parent first, up to the top-level task.
    pub parent_ancestors: Vec<Uuid>,
    /// Levels in the subtree of the task being placed: 1 for a task without children (and
    /// a new task), 2 with children but no grandchildren, …
    pub subtree_height: usize,
}

impl Placement {
    /// Whether `task` (in `project_id`) may become a child of [`Placement::parent_id`]: a
    /// task of the same project, that is neither the task nor one of its descendants (no
    /// cycle), and deep enough in the tree that the task's whole subtree stays within
    /// [`MAX_TASK_DEPTH`] levels. The error names `parentId`.
    ///
    /// # Errors
    /// The broken rule, on the field `parentId`.
    pub fn check(&self, task: Option<Uuid>, project_id: Uuid) -> Result<(), crate::FieldError> {
        let refuse = |message: &str| Err(crate::FieldError::new("parentId", message));
        if self.parent_project_id != project_id {
            return refuse("must be a task of the same project");
        }
        if let Some(task) = task
            && (task == self.parent_id || self.parent_ancestors.contains(&task))
        {
            return refuse("would make the task a sub-task of itself or of one of its sub-tasks");
        }
        // The parent's level (top-level is 1), then the deepest level of the moved subtree.
        let parent_level = self.parent_ancestors.len() + 1;
        if parent_level + self.subtree_height.max(1) > MAX_TASK_DEPTH {
            return refuse(&format!(
                "would nest tasks more than {MAX_TASK_DEPTH} levels deep (counting the top-level task)"
            ));
        }
        Ok(())
    }
}

impl Task {
    /// `KEY-12`.
    pub fn identifier(&self) -> String {
        format!("{}-{}", self.project_key, self.number)
    }

    /// Moves the task to the state `status` of category `category`: `completed_at` is set
    /// on entering the `completed` category and cleared on leaving it; moving between two
    /// completed states keeps the original completion time.
    pub fn set_status(&mut self, status: StateKey, category: StateCategory, now: DateTime<Utc>) {
        self.completed_at = completed_at(self.status_category, category, self.completed_at, now);
        self.status = status;
        self.status_category = category;
    }
}

/// A task's `completed_at` once it goes from a state of category `from` to one of `to`.
pub fn completed_at(
    from: StateCategory,
    to: StateCategory,
    was: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (from == StateCategory::Completed, to == StateCategory::Completed) {
        (false, true) => Some(now),
        (true, false) => None,
        (true, true) => was.or(Some(now)),
        (false, false) => None,
    }
}

/// A workflow state of a project: a task's `status` is the `key` of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowState {
    pub id: Uuid,
    pub project_id: Uuid,
    pub key: StateKey,
    pub name: StateName,
    pub category: StateCategory,
    pub color: Color,
    /// Ascending order of the states in the project's lists.
    pub position: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The key of the default state of a new project (`todo`).
pub const DEFAULT_STATE_KEY: &str = "todo";

/// The six states every new project gets: `(key, name, category, color)`, in position
/// order. Their keys are the six statuses tasks had before states were per project.
pub const DEFAULT_STATES: [(&str, &str, StateCategory, &str); 6] = [
    ("backlog", "Backlog", StateCategory::Backlog, "#94A3B8"),
    ("todo", "Todo", StateCategory::Unstarted, "#64748B"),
    ("in_progress", "In Progress", StateCategory::Started, "#F59E0B"),
    ("in_review", "In Review", StateCategory::Started, "#8B5CF6"),
    ("done", "Done", StateCategory::Completed, "#22C55E"),
    ("canceled", "Canceled", StateCategory::Canceled, "#EF4444"),
];

/// The keys of [`DEFAULT_STATES`], in order.
pub fn default_state_keys() -> Vec<StateKey> {
    DEFAULT_STATES
        .iter()
        .map(|(key, ..)| StateKey::from_stored((*key).to_owned()))
        .collect()
}

impl WorkflowState {
    /// The six default states of a new project (ids made here), positions 0–5.
    pub fn defaults(project_id: Uuid, now: DateTime<Utc>) -> Vec<Self> {
        DEFAULT_STATES
            .iter()
            .zip(0..)
            .map(|(&(key, name, category, color), position)| Self {
                id: Uuid::now_v7(),
                project_id,
                key: StateKey::from_stored(key.to_owned()),
                name: StateName::from_stored(name.to_owned()),
                category,
                color: Color::from_stored(color.to_owned()),
                position,
                created_at: now,
                updated_at: now,
            })
            .collect()
    }

    /// The category of the default state `key`, for data written before states existed.
    pub fn default_category(key: &str) -> Option<StateCategory> {
        DEFAULT_STATES
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|&(_, _, category, _)| category)
    }
}

/// Splits `KEY-12` into the key and the number; `None` for anything else.
pub fn parse_identifier(raw: &str) -> Option<(ProjectKey, i64)> {
    let (key, number) = raw.rsplit_once('-')?;
    let key = ProjectKey::parse(&key.to_ascii_uppercase()).ok()?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = number.parse().ok().filter(|n| *n >= 1)?;
    Some((key, number))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: Uuid,
    pub task_id: Uuid,
    pub project_id: Uuid,
    pub author_id: Uuid,
    pub body: CommentBody,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A link on a task: one per URL on a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: Uuid,
    pub task_id: Uuid,
    pub project_id: Uuid,
    pub url: LinkUrl,
    pub title: Option<LinkTitle>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How one task relates to another, as seen from the first (`blocks`: the first blocks the
/// second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationType {
    Blocks,
    BlockedBy,
    RelatesTo,
    DuplicateOf,
    DuplicatedBy,
}

impl RelationType {
    pub const ALLOWED: &'static str = "blocks, blocked_by, relates_to, duplicate_of, duplicated_by";

    pub fn parse(raw: &str) -> Result<Self, crate::FieldError> {
        Ok(match raw {
            "blocks" => Self::Blocks,
            "blocked_by" => Self::BlockedBy,
            "relates_to" => Self::RelatesTo,
            "duplicate_of" => Self::DuplicateOf,
            "duplicated_by" => Self::DuplicatedBy,
            _ => {
                return Err(crate::FieldError::new(
                    "type",
                    format!("must be one of {}", Self::ALLOWED),
                ));
            }
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::BlockedBy => "blocked_by",
            Self::RelatesTo => "relates_to",
            Self::DuplicateOf => "duplicate_of",
            Self::DuplicatedBy => "duplicated_by",
        }
    }

    /// The same relation seen from the other task.
    pub const fn inverse(self) -> Self {
        match self {
            Self::Blocks => Self::BlockedBy,
            Self::BlockedBy => Self::Blocks,
            Self::RelatesTo => Self::RelatesTo,
            Self::DuplicateOf => Self::DuplicatedBy,
            Self::DuplicatedBy => Self::DuplicateOf,
        }
    }

    /// Whether this type is stored as it reads (`blocks`, `relates_to`, `duplicate_of`);
    /// the others are stored as their inverse, from the other task.
    pub const fn is_canonical(self) -> bool {
        matches!(self, Self::Blocks | Self::RelatesTo | Self::DuplicateOf)
    }
}

/// A relation between two tasks, stored once: `source` relates to `target` by `kind`, one of
/// the canonical types ([`RelationType::is_canonical`]). A `relates_to` relation has the
/// smaller task id as its source, so that either direction is the same row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: Uuid,
    pub source_task_id: Uuid,
    pub target_task_id: Uuid,
    pub kind: RelationType,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl Relation {
    /// The one row of "`task` relates to `other` by `kind`" (`task != other`).
    pub fn between(
        id: Uuid,
        task: Uuid,
        kind: RelationType,
        other: Uuid,
        by: Uuid,
        at: DateTime<Utc>,
    ) -> Self {
        let (source, target, kind) = match kind {
            RelationType::RelatesTo => (task.min(other), task.max(other), kind),
            k if k.is_canonical() => (task, other, k),
            k => (other, task, k.inverse()),
        };
        Self {
            id,
            source_task_id: source,
            target_task_id: target,
            kind,
            created_by: by,
            created_at: at,
        }
    }

    /// How `task` (one of the two) relates to the other task, and that task's id.
    pub fn seen_from(&self, task: Uuid) -> (RelationType, Uuid) {
        if task == self.source_task_id {
            (self.kind, self.target_task_id)
        } else {
            (self.kind.inverse(), self.source_task_id)
        }
    }
}

/// A relation as a task's list shows it: with the other task's identifier and project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedTask {
    pub relation: Relation,
    pub other_project_id: Uuid,
    /// `KEY-12` of the other task.
    pub other_identifier: String,
}

/// Whose tasks or projects a list covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One project (the caller's access already checked).
    Project(Uuid),
    /// Every project this user is a member of.
    MemberOf(Uuid),
    /// Every project (instance admins).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeFilter {
    User(Uuid),
    Unassigned,
}

/// The filters of a task list; empty lists and `None` filter nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Tasks in any of these states (by key).
    pub statuses: Vec<StateKey>,
    /// Tasks in a state of any of these categories.
    pub categories: Vec<StateCategory>,
    pub priorities: Vec<Priority>,
    pub assignee: Option<AssigneeFilter>,
    /// Tasks carrying any of these labels (by name) or of [`TaskFilter::label_ids`].
    pub labels: Vec<LabelName>,
    /// Tasks carrying any of these labels (by id) or of [`TaskFilter::labels`].
    pub label_ids: Vec<Uuid>,
    /// Case-insensitive substring of the title.
    pub q: Option<String>,
    pub updated_since: Option<DateTime<Utc>>,
    /// Only tasks of these projects (a personal access token's limit); `None`: no limit.
    pub projects: Option<Vec<Uuid>>,
    /// Whether archived tasks are left out (the default), shown too, or shown alone.
    pub archived: ArchivedFilter,
    /// `Some(true)`: only tasks with an open blocker (`blocked_by_count > 0`); `Some(false)`:
    /// only tasks without one.
    pub blocked: Option<bool>,
    /// Only the sub-tasks of one task, or only top-level tasks.
    pub parent: Option<ParentFilter>,
}

/// The `parent` filter of a task list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentFilter {
    /// The children of this task.
    Task(Uuid),
    /// Top-level tasks (`parent=none`).
    TopLevel,
}

/// The `archived` filter of a task list. Tasks in the trash are in no list but the trash's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArchivedFilter {
    /// Live tasks that are not archived.
    #[default]
    Exclude,
    /// Archived tasks too (`archived=include`).
    Include,
    /// Archived tasks only (`archived=only`).
    Only,
}

impl ArchivedFilter {
    /// `include` or `only` (exactly as written); anything else is a 400 naming `field`.
    pub fn parse(raw: &str, field: &str) -> Result<Self, crate::FieldError> {
        match raw {
            "include" => Ok(Self::Include),
            "only" => Ok(Self::Only),
            _ => Err(crate::FieldError::new(field, "must be include or only")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskSortKey {
    CreatedAt,
    UpdatedAt,
    /// By [`Priority::rank`]: urgent first, none last.
    Priority,
    /// Tasks without a due date come after those with one.
    DueDate,
}

/// A task list's order. Descending is the exact reverse of ascending; the task id breaks
/// ties in the same direction, so the order is total and keyset pagination is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskSort {
    pub key: TaskSortKey,
    pub descending: bool,
}

impl Default for TaskSort {
    fn default() -> Self {
        Self {
            key: TaskSortKey::CreatedAt,
            descending: true,
        }
    }
}

impl TaskSort {
    pub const ALLOWED: &'static str = "createdAt, updatedAt, priority, dueDate (prefix - for descending)";

    pub fn parse(raw: &str) -> Result<Self, crate::FieldError> {
        let (descending, name) = raw.strip_prefix('-').map_or((false, raw), |rest| (true, rest));
        let key = match name {
            "createdAt" => TaskSortKey::CreatedAt,
            "updatedAt" => TaskSortKey::UpdatedAt,
            "priority" => TaskSortKey::Priority,
            "dueDate" => TaskSortKey::DueDate,
            _ => {
                return Err(crate::FieldError::new(
                    "sort",
                    format!("must be one of {}", Self::ALLOWED),
                ));
            }
        };
        Ok(Self { key, descending })
    }

    /// Where `task` stands in this order.
    pub fn position_of(&self, task: &Task) -> TaskPosition {
        let value = match self.key {
            TaskSortKey::CreatedAt => SortValue::Time(task.created_at),
            TaskSortKey::UpdatedAt => SortValue::Time(task.updated_at),
            TaskSortKey::Priority => SortValue::Rank(task.priority.rank()),
            TaskSortKey::DueDate => SortValue::Date(task.due_date),
        };
        TaskPosition { value, id: task.id }
    }
}

/// The value a task is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortValue {
    Time(DateTime<Utc>),
    Rank(i16),
    Date(Option<NaiveDate>),
}

/// A keyset position in a task list: the sort value and the id that breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPosition {
    pub value: SortValue,
    pub id: Uuid,
}

impl TaskPosition {
    /// Whether the value has the type `key` sorts by (a cursor of another sort does not).
    pub fn fits(&self, key: TaskSortKey) -> bool {
        matches!(
            (key, self.value),
            (
                TaskSortKey::CreatedAt | TaskSortKey::UpdatedAt,
                SortValue::Time(_)
            ) | (TaskSortKey::Priority, SortValue::Rank(1..=5))
                | (TaskSortKey::DueDate, SortValue::Date(_))
        )
    }
}

/// One page request of a task list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    pub scope: Scope,
    pub filter: TaskFilter,
    pub sort: TaskSort,
    /// Tasks strictly after this position.
    pub after: Option<TaskPosition>,
    pub limit: u64,
}

/// Filters of the project list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    pub status: Option<ProjectStatus>,
    /// Case-insensitive substring of the name or the key.
    pub q: Option<String>,
    /// Only these projects (a personal access token's limit); `None`: no limit.
    pub projects: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectSortKey {
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectSort {
    pub key: ProjectSortKey,
    pub descending: bool,
}

impl Default for ProjectSort {
    fn default() -> Self {
        Self {
            key: ProjectSortKey::CreatedAt,
            descending: true,
        }
    }
}

impl ProjectSort {
    pub const ALLOWED: &'static str = "name, createdAt, updatedAt (prefix - for descending)";

    pub fn parse(raw: &str) -> Result<Self, crate::FieldError> {
        let (descending, name) = raw.strip_prefix('-').map_or((false, raw), |rest| (true, rest));
        let key = match name {
            "name" => ProjectSortKey::Name,
            "createdAt" => ProjectSortKey::CreatedAt,
            "updatedAt" => ProjectSortKey::UpdatedAt,
            _ => {
                return Err(crate::FieldError::new(
                    "sort",
                    format!("must be one of {}", Self::ALLOWED),
                ));
            }
        };
        Ok(Self { key, descending })
    }
}

/// A project as one user sees it: with the user's effective role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectWithRole {
    pub project: Project,
    pub role: ProjectRole,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn task() -> Task {
        Task {
            id: Uuid::nil(),
            project_id: Uuid::nil(),
            project_key: ProjectKey::parse("KEEL").unwrap(),
            number: 12,
            title: TaskTitle::parse("t").unwrap(),
            description: None,
            status: key("todo"),
            status_category: StateCategory::Unstarted,
            priority: Priority::NONE,
            assignee_id: None,
            labels: vec![],
            label_ids: vec![],
            due_date: None,
            created_by: Uuid::nil(),
            created_at: at("2026-11-22T10:00:00Z"),
            updated_at: at("2026-11-22T10:00:00Z"),
            completed_at: None,
            version: 1,
            archived_at: None,
            blocked_by_count: 0,
            deleted_at: None,
            parent_id: None,
            child_count: 0,
            child_done_count: 0,
        }
    }

    fn placement(ancestors: usize, height: usize) -> Placement {
        Placement {
            parent_id: Uuid::from_u128(100),
            parent_project_id: Uuid::nil(),
            parent_ancestors: (0..ancestors as u128).map(|i| Uuid::from_u128(200 + i)).collect(),
            subtree_height: height,
        }
    }

    #[test]
    fn a_parent_is_a_task_of_the_same_project() {
        let p = placement(0, 1);
        assert!(p.check(Some(Uuid::from_u128(1)), Uuid::nil()).is_ok());
        let e = p.check(Some(Uuid::from_u128(1)), Uuid::from_u128(9)).unwrap_err();
        assert_eq!(e.field, "parentId");
        assert!(e.message.contains("same project"), "{e}");
    }

    #[test]
    fn a_task_is_never_its_own_ancestor() {
        let p = placement(3, 1);
        for task in [Uuid::from_u128(100), Uuid::from_u128(200), Uuid::from_u128(202)] {
            let e = p.check(Some(task), Uuid::nil()).unwrap_err();
            assert!(e.message.contains("itself"), "{e}");
        }
        assert!(p.check(Some(Uuid::from_u128(1)), Uuid::nil()).is_ok());
        assert!(
            p.check(None, Uuid::nil()).is_ok(),
            "a new task is no one's ancestor"
        );
    }

    #[test]
    fn five_levels_at_most_counting_the_moved_subtree() {
        // A parent with 3 ancestors is on level 4: a leaf goes on level 5, no deeper.
        assert!(placement(3, 1).check(None, Uuid::nil()).is_ok());
        assert!(placement(4, 1).check(None, Uuid::nil()).is_err());
        // A subtree of 2 levels needs a parent on level 3 at most.
        assert!(
            placement(2, 2)
                .check(Some(Uuid::from_u128(1)), Uuid::nil())
                .is_ok()
        );
        let e = placement(3, 2)
            .check(Some(Uuid::from_u128(1)), Uuid::nil())
            .unwrap_err();
        assert!(e.message.contains("5 levels"), "{e}");
        assert!(
            placement(0, 4)
                .check(Some(Uuid::from_u128(1)), Uuid::nil())
                .is_ok()
        );
        assert!(
            placement(0, 5)
                .check(Some(Uuid::from_u128(1)), Uuid::nil())
                .is_err()
        );
    }

    fn key(k: &str) -> StateKey {
        StateKey::parse(k, "status").unwrap()
    }

    #[test]
    fn completed_at_follows_the_completed_category() {
        use StateCategory::*;
        let mut t = task();
        t.set_status(key("in_progress"), Started, at("2026-11-22T11:00:00Z"));
        assert_eq!(t.completed_at, None);
        t.set_status(key("done"), Completed, at("2026-11-22T12:00:00Z"));
        assert_eq!(t.completed_at, Some(at("2026-11-22T12:00:00Z")));
        t.set_status(key("shipped"), Completed, at("2026-11-22T13:00:00Z"));
        assert_eq!(
            (t.completed_at, t.status.as_str(), t.status_category),
            (Some(at("2026-11-22T12:00:00Z")), "shipped", Completed),
            "moving between completed states keeps the time"
        );
        t.set_status(key("wont_do"), Canceled, at("2026-11-22T14:00:00Z"));
        assert_eq!(t.completed_at, None, "canceled is not completed");
        t.set_status(key("todo"), Unstarted, at("2026-11-22T15:00:00Z"));
        assert_eq!(t.completed_at, None);
    }

    #[test]
    fn the_default_states_are_the_six_former_statuses_with_todo_the_default() {
        let states = WorkflowState::defaults(Uuid::nil(), at("2026-11-22T10:00:00Z"));
        let keys: Vec<_> = states.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            ["backlog", "todo", "in_progress", "in_review", "done", "canceled"]
        );
        let positions: Vec<_> = states.iter().map(|s| s.position).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4, 5]);
        for state in &states {
            assert!(StateKey::parse(state.key.as_str(), "key").is_ok());
            assert!(StateName::parse(state.name.as_str()).is_ok());
            assert_eq!(Color::parse(state.color.as_str()).unwrap(), state.color);
            assert_eq!(
                WorkflowState::default_category(state.key.as_str()),
                Some(state.category)
            );
        }
        assert_eq!(
            WorkflowState::default_category(DEFAULT_STATE_KEY),
            Some(StateCategory::Unstarted)
        );
        assert_eq!(WorkflowState::default_category("open"), None);
    }

    #[test]
    fn relations_are_stored_once_and_read_back_from_either_side() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let at = at("2026-11-22T10:00:00Z");
        for (kind, from, to, stored) in [
            (RelationType::Blocks, a, b, RelationType::Blocks),
            (RelationType::BlockedBy, b, a, RelationType::Blocks),
            (RelationType::DuplicateOf, a, b, RelationType::DuplicateOf),
            (RelationType::DuplicatedBy, b, a, RelationType::DuplicateOf),
            (RelationType::RelatesTo, a, b, RelationType::RelatesTo),
            (RelationType::RelatesTo, b, a, RelationType::RelatesTo),
        ] {
            let r = Relation::between(Uuid::nil(), from, kind, to, Uuid::nil(), at);
            assert_eq!(
                (r.kind, r.source_task_id, r.target_task_id),
                (stored, a, b),
                "{kind:?}"
            );
            assert_eq!(r.seen_from(from), (kind, to), "{kind:?}");
            assert_eq!(r.seen_from(to), (kind.inverse(), from), "{kind:?}");
            assert_eq!(RelationType::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(RelationType::parse("Blocks").is_err());
        assert!(RelationType::parse("parent_of").is_err());
    }

    #[test]
    fn identifiers_round_trip() {
        assert_eq!(task().identifier(), "KEEL-12");
        let (key, n) = parse_identifier("keel-12").unwrap();
        assert_eq!((key.as_str(), n), ("KEEL", 12));
        for bad in [
            "KEEL",
            "KEEL-",
            "KEEL-0",
            "KEEL-1a",
            "K-1",
            "KEEL--1",
            "KEEL-+1",
            "KEEL-99999999999999999999",
        ] {
            assert!(parse_identifier(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sorts_parse_and_default_to_newest_first() {
        assert_eq!(TaskSort::default(), TaskSort::parse("-createdAt").unwrap());
        assert_eq!(
            TaskSort::parse("priority").unwrap(),
            TaskSort {
                key: TaskSortKey::Priority,
                descending: false
            }
        );
        assert!(TaskSort::parse("title").is_err());
        assert!(TaskSort::parse("--createdAt").is_err());
        assert_eq!(ProjectSort::default(), ProjectSort::parse("-createdAt").unwrap());
        assert!(ProjectSort::parse("key").is_err());
    }

    #[test]
    fn positions_carry_the_sort_value_and_only_fit_their_sort() {
        let mut t = task();
        t.priority = Priority::new(0, "priority").unwrap();
        let p = TaskSort::parse("priority").unwrap().position_of(&t);
        assert_eq!(p.value, SortValue::Rank(5));
        assert!(p.fits(TaskSortKey::Priority));
        assert!(!p.fits(TaskSortKey::CreatedAt));
        let bogus = TaskPosition {
            value: SortValue::Rank(9),
            id: Uuid::nil(),
        };
        assert!(!bogus.fits(TaskSortKey::Priority));
        let d = TaskSort::parse("-dueDate").unwrap().position_of(&t);
        assert!(d.fits(TaskSortKey::DueDate) && !d.fits(TaskSortKey::UpdatedAt));
    }
}
