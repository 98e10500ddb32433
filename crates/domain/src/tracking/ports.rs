//! Ports of the tracking use cases.
//!
//! Every write takes the [`Change`] it makes (its audit entry and its domain event) and
//! stores both in the same transaction as the change: the activity feed and the event outbox
//! never miss or invent a change.
//! Writes guarded by a version (`expected_version`) change nothing and answer `false` when
//! the stored version differs: the caller decides between 412 and a retry.
//!
//! Every check that guards a write holds in the write's own transaction: the actor's
//! authority (the audit entry's `authority`: a write whose actor lost the role it was
//! authorized with is refused with `AuthorityLost`, nothing written), and rules about the
//! rows written (an owner is never demoted or removed but by a hand-over).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Account, Acquaintance, Comment, Label, LabelName, Link, Member, Placement, Project, ProjectAccess,
    ProjectFilter, ProjectKey, ProjectRole, ProjectSort, ProjectWithRole, RelatedTask, Relation, Scope,
    StateKey, Task, TaskQuery, WorkflowState,
};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::events::Change;
use crate::identity::Email;

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ProjectRepository: Send + Sync {
    /// Stores the project and its owner's membership.
    /// # Errors
    /// `Conflict` when the key is taken.
    async fn create(&self, project: &Project, change: &Change) -> Result<(), StoreError>;
    async fn find(&self, id: Uuid) -> Result<Option<Project>, StoreError>;
    /// The project with the user's role in it, in one statement; `None` when there is no
    /// such project.
    async fn find_access(&self, project_id: Uuid, user_id: Uuid)
    -> Result<Option<ProjectAccess>, StoreError>;
    /// The user's role in the project; `None` when not a member (or no such project).
    async fn role_of(&self, project_id: Uuid, user_id: Uuid) -> Result<Option<ProjectRole>, StoreError>;
    /// Saves name, description, status, default state and `updated_at`, and sets the
    /// version to `expected_version + 1`. With `default_changed` (the write sets a new
    /// default state) the default is checked to be a state of the project in the write's
    /// transaction; otherwise it is written as it was read, and not read again.
    /// # Errors
    /// `Conflict` when the new default state is no state of the project (any more).
    async fn update(
        &self,
        project: &Project,
        expected_version: i64,
        default_changed: bool,
        change: &Change,
    ) -> Result<bool, StoreError>;
    /// Deletes the project with its members, labels, tasks and comments.
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError>;
    /// One page of the projects in `scope` (never `Scope::Project`) with the total. In
    /// `Scope::All` the role of a project the user is not a member of is `owner`.
    async fn list(
        &self,
        scope: Scope,
        filter: &ProjectFilter,
        sort: ProjectSort,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<ProjectWithRole>, u64), StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MemberRepository: Send + Sync {
    /// Members oldest first (user id breaks ties), with the total.
    async fn list(&self, project_id: Uuid, offset: u64, limit: u64)
    -> Result<(Vec<Member>, u64), StoreError>;
    async fn find(&self, project_id: Uuid, user_id: Uuid) -> Result<Option<Member>, StoreError>;
    /// Every member's user id (for invalidating what each member sees).
    async fn user_ids(&self, project_id: Uuid) -> Result<Vec<Uuid>, StoreError>;
    /// The account with `email` if `seen_by` can see it — it is a member of a project
    /// `seen_by.user_id` is a member of (one of `seen_by.within`, when given) — in one
    /// statement; `None` otherwise, whether or not such an account exists: the caller must
    /// not tell the two apart.
    async fn find_acquaintance(
        &self,
        email: &Email,
        seen_by: &Acquaintance,
    ) -> Result<Option<Account>, StoreError>;
    /// # Errors
    /// `Conflict` when the user is a member already.
    async fn add(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Changes a member's role (never to or from `owner`; see `transfer_ownership`).
    /// # Errors
    /// `NotFound` when the user is not a member; `Conflict` when they own the project (as
    /// they may have come to since the caller read their role).
    async fn set_role(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Makes `to` (a member) the owner and the current owner an admin, and records the new
    /// owner on the project, atomically.
    /// # Errors
    /// `NotFound` when `to` is not a member.
    async fn transfer_ownership(
        &self,
        project_id: Uuid,
        to: Uuid,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Removes a member and unassigns their tasks in the project; returns those tasks' ids.
    /// # Errors
    /// `NotFound` when the user is not a member; `Conflict` when they own the project.
    async fn remove(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<Vec<Uuid>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LabelRepository: Send + Sync {
    /// Labels by name (id breaks ties), with the total.
    async fn list(&self, project_id: Uuid, offset: u64, limit: u64) -> Result<(Vec<Label>, u64), StoreError>;
    /// # Errors
    /// `Conflict` when the project has a label of that name.
    async fn create(&self, label: &Label, change: &Change) -> Result<(), StoreError>;
    async fn find(&self, project_id: Uuid, label_id: Uuid) -> Result<Option<Label>, StoreError>;
    /// The project's labels with these names (one query); unknown names are absent.
    async fn find_by_names(&self, project_id: Uuid, names: &[LabelName]) -> Result<Vec<Label>, StoreError>;
    /// The project's labels with these ids (one query); unknown ids are absent.
    async fn find_by_ids(&self, project_id: Uuid, ids: &[Uuid]) -> Result<Vec<Label>, StoreError>;
    /// Saves the label's name and color. A rename (`renamed`) changes every task carrying
    /// the label (its view shows the name): each gets a new version and `updated_at`, and
    /// their ids are returned.
    /// # Errors
    /// `NotFound` when the project has no such label; `Conflict` when it has another label
    /// of the new name.
    async fn update(&self, label: &Label, renamed: bool, change: &Change) -> Result<Vec<Uuid>, StoreError>;
    /// Deletes the label and takes it off every task; returns the ids of those tasks.
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn delete(
        &self,
        project_id: Uuid,
        label_id: Uuid,
        change: &Change,
    ) -> Result<Vec<Uuid>, StoreError>;
}

/// Builds an event's data from what the store returns.
pub type EventData<T> = fn(&T) -> serde_json::Value;

/// A task to store; the repository hands out its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The task as it will be, but for `number` (ignored, assigned by the store).
    pub task: Task,
    pub label_ids: Vec<Uuid>,
}

/// How a [`TaskRepository::update_tree`] changes the tree of sub-tasks besides the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeChange {
    /// The task moves to `task.parent_id` (`None`: top-level). Checked again in the write's
    /// transaction, under the project's lock ([`Placement::check`]).
    Reparent,
    /// The task goes to the trash (`task.deleted_at` set, `task.parent_id` already `None`):
    /// its children are detached (top-level, each a new version).
    Trash,
}

/// What a [`TaskRepository::update_tree`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeWrite {
    /// `false`: the stored version differed, nothing was written.
    pub applied: bool,
    /// Other tasks of the project whose views the write changed: the old and new parents
    /// (their counts), the detached children.
    pub others: Vec<Uuid>,
}

/// Whether a [`TaskRepository::archive_subtree`] archives or unarchives, and at what time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtreeAction {
    /// Every task written gets `archived_at = at`; once written, the root is archived at
    /// `at` and no live descendant of it is left unarchived.
    Archive { at: DateTime<Utc> },
    /// Every task written gets `archived_at = NULL`; once written, the root is not
    /// archived and no live descendant of it is left archived at `at` (the root's time:
    /// those archived with it).
    Unarchive { at: DateTime<Utc> },
}

/// One task written by a [`TaskRepository::archive_subtree`]: its id, the version it was
/// read at, and its change (audit entry and event, built from the task as it will be).
#[derive(Debug, Clone, PartialEq)]
pub struct SubtreeWrite {
    pub task_id: Uuid,
    pub expected_version: i64,
    pub change: Change,
}

/// A task archived or unarchived with its subtree, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtreeArchive {
    /// The task archived or unarchived.
    pub root: Uuid,
    pub project_id: Uuid,
    pub action: SubtreeAction,
    /// The `updated_at` of every task written (each also gets `version + 1`).
    pub updated_at: DateTime<Utc>,
    /// The root first when it changes, then its descendants that change.
    pub writes: Vec<SubtreeWrite>,
}

/// One task of a [`TaskRepository::update_many`]: the task as it will be (its `version`
/// already `expected_version + 1`), the labels that replace its own when given, and its
/// change (audit entry and event, built from the task as it will be).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    pub task: Task,
    pub expected_version: i64,
    pub label_ids: Option<Vec<Uuid>>,
    pub change: Change,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskRepository: Send + Sync {
    /// Stores the task with the project's next number (sequential and gap-free per project,
    /// unique when creates race on several instances) and returns it as stored. A task with
    /// a parent is checked against [`Placement::check`] under the project's lock.
    /// # Errors
    /// `NotFound` when the project does not exist; `Conflict("parent: <message>")` when the
    /// parent breaks a rule (or is gone); `Conflict` when the project has no state
    /// `task.status` of category `task.status_category` (any more) when the write happens.
    /// The event published is `change`'s with `data(&stored)` as its data (it shows the
    /// number the store hands out).
    async fn create(&self, new: &NewTask, change: &Change, data: EventData<Task>)
    -> Result<Task, StoreError>;
    /// The task with its labels, in one statement.
    async fn find(&self, id: Uuid) -> Result<Option<Task>, StoreError>;
    async fn find_by_number(&self, key: &ProjectKey, number: i64) -> Result<Option<Task>, StoreError>;
    /// The task with its labels, and its project with `user_id`'s role in it — one statement
    /// (a read of a task authorizes the caller with what it read).
    async fn find_with_access(
        &self,
        id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<(Task, ProjectAccess)>, StoreError>;
    /// The live tasks named by id (`ids`) or by identifier (`numbers`), each with its
    /// project and `user_id`'s role in it, in one statement; those not found are left out,
    /// in no particular order.
    async fn find_many_with_access<'a>(
        &self,
        ids: &'a [Uuid],
        numbers: &'a [(ProjectKey, i64)],
        user_id: Uuid,
    ) -> Result<Vec<(Task, ProjectAccess)>, StoreError>;
    /// [`TaskRepository::find_with_access`] by identifier (`KEY-12`).
    async fn find_by_number_with_access(
        &self,
        key: &ProjectKey,
        number: i64,
        user_id: Uuid,
    ) -> Result<Option<(Task, ProjectAccess)>, StoreError>;
    /// Saves every field of `task` (its `version` already `expected_version + 1`), its
    /// `archived_at` and `deleted_at` included (archiving, moving to the trash and restoring
    /// are updates), and, when given, replaces its labels. `false`, nothing written, when the
    /// version differs or the project has no state `task.status` of category
    /// `task.status_category` (any more) when the write happens: the caller reads again. Its
    /// parent is not written, but for a move to the trash (`deleted_at` set): then the task
    /// leaves its parent and its children are detached, under the project's lock (see
    /// [`TaskRepository::update_tree`], which also names the tasks that changed).
    async fn update<'a>(
        &self,
        task: &Task,
        label_ids: Option<&'a [Uuid]>,
        expected_version: i64,
        change: &Change,
    ) -> Result<bool, StoreError>;
    /// Many [`TaskRepository::update`]s (never a move to the trash, never a parent) in one
    /// transaction, set-based: the states the tasks are in are checked (held) in one
    /// statement, the tasks written in one version-guarded statement per 500, their labels
    /// replaced in two, the changes of the tasks written recorded (per project the first
    /// audit entry with the actor's authority checked, the others and the events in one
    /// multi-row insert each), one commit. Each task on its own: one at another version, gone,
    /// or whose state is gone or of another category is not written and records nothing
    /// (the caller reads it again); the others are. Answers the ids of the tasks written.
    /// # Errors
    /// Any error (`AuthorityLost` as every write) rolls back everything: nothing written.
    async fn update_many(&self, writes: &[TaskWrite]) -> Result<Vec<Uuid>, StoreError>;
    /// [`TaskRepository::update`] that also writes `task.parent_id` and changes the tree as
    /// `tree` says, in one transaction that holds the project's lock (parent changes, creates
    /// with a parent, trash and purge of one project are serialized, so concurrent writes
    /// never close a cycle or nest too deep).
    /// # Errors
    /// `Conflict("parent: <message>")` when the new parent breaks a rule of
    /// [`Placement::check`] (or is gone); nothing is written.
    async fn update_tree<'a>(
        &self,
        task: &Task,
        label_ids: Option<&'a [Uuid]>,
        expected_version: i64,
        tree: TreeChange,
        change: &Change,
    ) -> Result<TreeWrite, StoreError>;
    /// Archives or unarchives a task and its subtree in one transaction, under the
    /// project's lock (no child is created under or moved into the subtree meanwhile):
    /// every task of `archive.writes` at its expected version, set-based, with the change of
    /// each recorded (audit entry and outbox event). All or nothing: `false`, nothing
    /// written, when a task is gone or at another version, or when the subtree is not as
    /// `archive.action` says once written (a descendant the caller did not know of) — the
    /// caller reads again.
    /// # Errors
    /// `NotFound` when the project does not exist; `AuthorityLost` as every write.
    async fn archive_subtree(&self, archive: &SubtreeArchive) -> Result<bool, StoreError>;
    /// What the sub-task rules need to place `task` (`None`: a new task) under `parent_id`;
    /// `None` when `parent_id` is no live task (absent or in the trash).
    async fn placement(&self, task: Option<Uuid>, parent_id: Uuid) -> Result<Option<Placement>, StoreError>;
    /// The task's descendants that are not in the trash, children first (breadth first),
    /// with their labels.
    async fn descendants(&self, id: Uuid) -> Result<Vec<Task>, StoreError>;
    /// The ids of the task's children.
    async fn child_ids(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError>;
    /// A task in its project's trash, with its labels; `None` when there is no such task
    /// or it is not in the trash. (Every other read leaves trashed tasks out.)
    async fn find_trashed(&self, id: Uuid) -> Result<Option<Task>, StoreError>;
    /// [`TaskRepository::find_trashed`] by identifier (`KEY-12`).
    async fn find_trashed_by_number(&self, key: &ProjectKey, number: i64)
    -> Result<Option<Task>, StoreError>;
    /// Deletes the task for good, with its labels and comments, and detaches its children
    /// (each a new version), under the project's lock; its number is never handed out again. With `trashed_before`, only if it is in the trash since before then (the
    /// background purge: a task restored meanwhile stays). `false` when nothing was deleted
    /// (and nothing was recorded).
    async fn purge(
        &self,
        id: Uuid,
        trashed_before: Option<DateTime<Utc>>,
        change: &Change,
    ) -> Result<bool, StoreError>;
    /// Newest first: up to `limit` tasks of the project's trash after `(deleted_at, id)`,
    /// with their labels — one statement.
    async fn trash_page(
        &self,
        project_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Task>, StoreError>;
    /// Oldest first: up to `limit` tasks (of every project) in the trash since before
    /// `before`.
    async fn expired_trash(&self, before: DateTime<Utc>, limit: u64) -> Result<Vec<Task>, StoreError>;
    /// Up to `query.limit` tasks after `query.after` in the query's order, with their labels:
    /// one statement.
    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>, StoreError>;
    /// A page of one project's tasks ([`TaskRepository::list`] with `Scope::Project`) and the
    /// project with `user_id`'s role in it, in one statement; `None` when there is no such
    /// project.
    async fn page_with_access(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        query: &TaskQuery,
    ) -> Result<Option<(ProjectAccess, Vec<Task>)>, StoreError>;
}

/// The workflow states of projects. Every write holds the project row (its writes are
/// serialized per project) and keeps the tasks of the states it changes in step in its
/// transaction: their `status`, `status_category` and `completed_at`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StateRepository: Send + Sync {
    /// The project's states by position (key breaks ties), in one statement.
    async fn list(&self, project_id: Uuid) -> Result<Vec<WorkflowState>, StoreError>;
    /// # Errors
    /// `NotFound` when the project does not exist; `Conflict` when it has a state of that
    /// key.
    async fn create(&self, state: &WorkflowState, change: &Change) -> Result<(), StoreError>;
    /// Saves the state's name, colour, position and category. When the category changes,
    /// every task in the state takes it (`completed_at` set on entering `completed`, cleared
    /// on leaving it, a new version and `updated_at = state.updated_at`), and each live one
    /// gets its `task.updated` event (the task as it is then, `previous` its old
    /// `statusCategory`; `change`'s actor and time) in the outbox. Returns the
    /// `(project, task)` of the tasks whose views changed: those tasks and the tasks they
    /// block (whose `blockedByCount` may change).
    /// # Errors
    /// `NotFound` when the project has no such state.
    async fn update(&self, state: &WorkflowState, change: &Change) -> Result<Vec<(Uuid, Uuid)>, StoreError>;
    /// Moves the state's tasks (the trash's too) to the state `move_to` (new version,
    /// `updated_at = at`, `completed_at` by the categories; each live one its `task.updated`
    /// event, as [`StateRepository::update`] writes them), then deletes the state, in one
    /// transaction; returns what [`StateRepository::update`] returns.
    /// # Errors
    /// `NotFound` when the project has no such state; `Conflict` when it is the project's
    /// last or default state, or `move_to` is no other state of the project.
    async fn delete(
        &self,
        project_id: Uuid,
        state_id: Uuid,
        move_to: &StateKey,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError>;
    /// Which of `keys` are the key of a state in a project of `scope` — one statement.
    async fn known_keys(&self, scope: &Scope, keys: &[StateKey]) -> Result<Vec<StateKey>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CommentRepository: Send + Sync {
    async fn create(&self, comment: &Comment, change: &Change) -> Result<(), StoreError>;
    async fn find(&self, id: Uuid) -> Result<Option<Comment>, StoreError>;
    /// Saves body, `updated_at` and version (already `expected_version + 1`).
    async fn update(
        &self,
        comment: &Comment,
        expected_version: i64,
        change: &Change,
    ) -> Result<bool, StoreError>;
    /// # Errors
    /// `NotFound` when it does not exist.
    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError>;
    /// Oldest first: up to `limit` comments of the task after `(created_at, id)`.
    async fn list(
        &self,
        task_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Comment>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LinkRepository: Send + Sync {
    /// Oldest first: up to `limit` links of the task after `(created_at, id)`.
    async fn list(
        &self,
        task_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Link>, StoreError>;
    /// The task's link with this URL (normalised, as stored).
    async fn find_by_url(&self, task_id: Uuid, url: &str) -> Result<Option<Link>, StoreError>;
    async fn find(&self, task_id: Uuid, link_id: Uuid) -> Result<Option<Link>, StoreError>;
    /// # Errors
    /// `Conflict` when the task has a link with this URL (a concurrent create won);
    /// `NotFound` when the task does not exist.
    async fn create(&self, link: &Link, change: &Change) -> Result<(), StoreError>;
    /// Saves title and `updated_at`.
    /// # Errors
    /// `NotFound` when the link does not exist.
    async fn update(&self, link: &Link, change: &Change) -> Result<(), StoreError>;
    /// # Errors
    /// `NotFound` when the task has no such link.
    async fn delete(&self, task_id: Uuid, link_id: Uuid, change: &Change) -> Result<(), StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RelationRepository: Send + Sync {
    /// Oldest first: up to `limit` relations of the task after `(created_at, id)` whose other
    /// task `viewer` may see (a member of its project; `None`: an instance admin, who sees
    /// every project) and, with `projects` (a personal access token's limit), whose other
    /// task is in one of those projects.
    async fn list(
        &self,
        task_id: Uuid,
        viewer: Option<Uuid>,
        projects: Option<Vec<Uuid>>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<RelatedTask>, StoreError>;
    /// The relation `id` when `task_id` is one of its two tasks.
    async fn find(&self, task_id: Uuid, id: Uuid) -> Result<Option<Relation>, StoreError>;
    /// Stores the relation. `blocks` relations are written one at a time (the check below
    /// and the insert cannot interleave with another's), so concurrent creates never close
    /// a cycle.
    /// # Errors
    /// `Conflict("duplicate")` when the same relation exists; `Conflict("cycle")` when a
    /// `blocks` relation would close a cycle of `blocks`; `NotFound` when a task is gone.
    async fn create(&self, relation: &Relation, change: &Change) -> Result<(), StoreError>;
    /// # Errors
    /// `NotFound` when there is no such relation.
    async fn delete(&self, id: Uuid, change: &Change) -> Result<(), StoreError>;
    /// The tasks `task_id` blocks, as `(project, task)`, in any project.
    async fn blocked_by(&self, task_id: Uuid) -> Result<Vec<(Uuid, Uuid)>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ActivityFeed: Send + Sync {
    /// Newest first: up to `limit` audit entries of the project before `(occurred_at, id)`.
    async fn list(
        &self,
        project_id: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// A resource's history, newest first: up to `limit` audit entries about the resource
    /// (`resource_type` and `resource_id`, as `task` and the task's id) before
    /// `(occurred_at, id)` — one indexed statement.
    async fn history(
        &self,
        resource_type: &str,
        resource_id: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}
