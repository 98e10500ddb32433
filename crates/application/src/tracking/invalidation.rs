//! What a change makes stale in the cache, derived from the change itself in one place.
//!
//! Every tracking write goes through [`TrackingPorts::commit`]: it runs the store write of a
//! [`Change`] and, once it succeeded, drops the keys [`stale`] names for it. [`stale`]
//! matches every [`EventType`] exhaustively, so a new event type does not compile until it
//! says what it invalidates (nothing is an answer, written down).

use std::future::Future;

use keel_domain::events::{Change, EventType};
use keel_domain::tracking::Task;
use keel_domain::tracking::ports::TreeWrite;
use uuid::Uuid;

use super::TrackingPorts;
use crate::AppError;
use crate::cache::CacheKey;

/// What a store write answered, as far as the cache is concerned.
pub(crate) trait Written {
    /// Whether the write was applied: a version-guarded write that lost its race was not,
    /// and changed nothing.
    fn applied(&self) -> bool {
        true
    }

    /// Tasks the write changed besides its own resource (a removed member's unassigned
    /// tasks, a deleted label's relabeled tasks).
    fn tasks(&self) -> &[Uuid] {
        &[]
    }

    /// Tasks of any project whose views the write changed, as `(project, task)`: the tasks
    /// a `blocks` relation, or a blocker purged for good, changed the `blockedByCount` of.
    fn tasks_anywhere(&self) -> &[(Uuid, Uuid)] {
        &[]
    }

    /// Tasks of the change's project whose place in the tree or counts the write changed:
    /// a sub-task's old and new parents, a trashed task's detached children.
    fn tree(&self) -> &[Uuid] {
        &[]
    }
}

/// A store write's answer, and the tasks of any project it changed the views of besides.
#[derive(Debug)]
pub(crate) struct Also<T> {
    pub written: T,
    pub tasks: Vec<(Uuid, Uuid)>,
}

impl<T: Written> Written for Also<T> {
    fn applied(&self) -> bool {
        self.written.applied()
    }

    fn tasks(&self) -> &[Uuid] {
        self.written.tasks()
    }

    fn tasks_anywhere(&self) -> &[(Uuid, Uuid)] {
        &self.tasks
    }

    fn tree(&self) -> &[Uuid] {
        self.written.tree()
    }
}

impl Written for () {}

/// A created task, as the store completed it: a sub-task changes its parent's counts.
impl Written for Task {
    fn tree(&self) -> &[Uuid] {
        self.parent_id.as_slice()
    }
}

/// A change of the task tree: the parents whose counts changed, the detached children.
impl Written for TreeWrite {
    fn applied(&self) -> bool {
        self.applied
    }

    fn tree(&self) -> &[Uuid] {
        &self.others
    }
}

/// A version-guarded write: `false` when it lost a race.
impl Written for bool {
    fn applied(&self) -> bool {
        *self
    }
}

/// The ids of the tasks the write changed as a side effect.
impl Written for Vec<Uuid> {
    fn tasks(&self) -> &[Uuid] {
        self
    }
}

/// The cache keys a committed change made stale.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stale {
    pub keys: Vec<CacheKey>,
    /// Also every current member's project lists of this project (a change every member
    /// sees in their lists): the members are read after the commit.
    pub member_lists_of: Option<Uuid>,
    /// Also the tasks this task blocks, and their projects' lists (their `blockedByCount`
    /// counts this task while it is open and not in the trash): read after the commit, so
    /// that a relation made meanwhile is found.
    pub blocked_by: Option<Uuid>,
}

/// The rule: what `change`, written with the answer `written`, made stale.
pub(crate) fn stale(change: &Change, written: &impl Written) -> Stale {
    if !written.applied() {
        return Stale::default();
    }
    let project = change.project_id();
    let resource = change.resource_id();
    let tasks = |keys: &mut Vec<CacheKey>, ids: &[Uuid]| {
        keys.push(CacheKey::project_tasks(project));
        keys.extend(ids.iter().copied().map(CacheKey::task));
    };
    let mut keys = Vec::new();
    let mut member_lists_of = None;
    let mut blocked_by = None;
    match change.event_type() {
        // The creator's project lists (the only member yet).
        EventType::ProjectCreated => keys.extend(change.audit.actor_id.map(CacheKey::projects_of)),
        // The project with every member's access, and each member's project lists.
        EventType::ProjectUpdated => {
            keys.push(CacheKey::project(project));
            member_lists_of = Some(project);
        }
        // The members of the moment receive its event by name; every member's access goes,
        // so that a cached task of the project finds no member to show it to.
        EventType::ProjectDeleted => {
            keys.push(CacheKey::project(project));
            keys.push(CacheKey::project_tasks(project));
            keys.extend(change.event.also_to.iter().copied().map(CacheKey::projects_of));
        }
        // Handing ownership over changes two roles and the project's owner, which every
        // member's lists show.
        EventType::MemberUpdated if transfers_ownership(change) => {
            keys.push(CacheKey::project(project));
            member_lists_of = Some(project);
        }
        // One membership: the project's cached access (every member's, as one name) and the
        // user's project lists; a removed member's tasks are unassigned.
        EventType::MemberAdded | EventType::MemberUpdated | EventType::MemberRemoved => {
            keys.push(CacheKey::project(project));
            keys.extend(resource.map(CacheKey::projects_of));
            if change.event_type() == EventType::MemberRemoved {
                tasks(&mut keys, written.tasks());
            }
        }
        // Every cached page of the project's task list; a new task is in no cache yet (a
        // sub-task's parent counts one child more).
        EventType::TaskCreated => tasks(&mut keys, written.tree()),
        // The task itself and every page it was on (or, restored, is on again): archiving
        // moves it between the lists' `archived` variants, the trash out of every list.
        EventType::TaskUpdated
        | EventType::TaskDeleted
        | EventType::TaskArchived
        | EventType::TaskUnarchived
        | EventType::TaskRestored
        | EventType::TaskPurged => {
            let mut ids: Vec<Uuid> = resource.into_iter().collect();
            // The tree: parents whose counts changed, detached children (the store's
            // answer), and the parent of a sub-task that completed or reopened.
            ids.extend(written.tree().iter().filter(|id| !ids.contains(id)).collect::<Vec<_>>());
            if change.event_type() == EventType::TaskUpdated
                && changes_field(change, "status")
                && let Some(parent) = parent_in_data(change)
                && !ids.contains(&parent)
            {
                ids.push(parent);
            }
            tasks(&mut keys, &ids);
            // A blocker that closes or reopens, leaves the trash or goes into it, changes
            // the count of the tasks it blocks. (One purged for good has no relations left
            // to read: its use case names them, as `written.tasks_anywhere()`.)
            let toggles_blocking = match change.event_type() {
                EventType::TaskUpdated => changes_field(change, "status"),
                EventType::TaskDeleted | EventType::TaskRestored => true,
                _ => false,
            };
            if toggles_blocking {
                blocked_by = resource;
            }
        }
        // A deleted label is taken off tasks; a renamed one shows its new name on them (a new
        // colour shows on no task, and changes none).
        EventType::LabelDeleted => tasks(&mut keys, written.tasks()),
        EventType::LabelUpdated if !written.tasks().is_empty() => tasks(&mut keys, written.tasks()),
        // Comments, labels and links are not cached, a new label is on no task, and a task's
        // links are no part of its view (nor of its version).
        EventType::LabelCreated
        | EventType::LabelUpdated
        | EventType::CommentCreated
        | EventType::CommentUpdated
        | EventType::CommentDeleted
        | EventType::LinkCreated
        | EventType::LinkUpdated
        | EventType::LinkDeleted
        // A `blocks` relation changes the blocked task's count: its use case names it, as
        // `written.tasks_anywhere()` (the task may be in another project).
        | EventType::RelationCreated
        | EventType::RelationDeleted
        // States are not cached, and a new one holds no task. A state's new category
        // changes its tasks and the tasks they block: the store names them, as
        // `written.tasks_anywhere()`.
        | EventType::StateUpdated => {}
        // The project holds its state keys (every member's access, as one name); a deleted
        // state's tasks moved (named by the store, as for an update).
        EventType::StateCreated | EventType::StateDeleted => keys.push(CacheKey::project(project)),
    }
    for &(project, task) in written.tasks_anywhere() {
        for key in [CacheKey::project_tasks(project), CacheKey::task(task)] {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    Stale {
        keys,
        member_lists_of,
        blocked_by,
    }
}

/// Whether a change's audit details name `field` among the fields it changed.
fn changes_field(change: &Change, field: &str) -> bool {
    change
        .audit
        .details
        .as_ref()
        .and_then(|d| d.get("changed"))
        .and_then(serde_json::Value::as_array)
        .is_some_and(|changed| changed.iter().any(|f| f.as_str() == Some(field)))
}

/// The `parentId` of the task an event's data shows, if any.
fn parent_in_data(change: &Change) -> Option<Uuid> {
    change
        .event
        .event
        .data
        .get("parentId")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Whether a `member.updated` change hands the project over (its audit details say so).
fn transfers_ownership(change: &Change) -> bool {
    change
        .audit
        .details
        .as_ref()
        .and_then(|d| d.get("ownershipTransferred"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

impl TrackingPorts {
    /// Runs `write`, the store write of `change`, and once it succeeded drops on every
    /// instance what the change made stale ([`stale`]), before the caller answers.
    ///
    /// An error after the write is the look-up of the members whose lists went stale: the
    /// change is committed, and the other keys are dropped before it is reported.
    pub(crate) async fn commit<T: Written>(
        &self,
        change: &Change,
        write: impl Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let written = write.await?;
        let Stale {
            mut keys,
            member_lists_of,
            blocked_by,
        } = stale(change, &written);
        if let Some(project) = member_lists_of {
            match self.members.user_ids(project).await {
                Ok(members) => keys.extend(members.into_iter().map(CacheKey::projects_of)),
                Err(e) => {
                    self.cache.invalidate(&keys).await;
                    return Err(e.into());
                }
            }
        }
        if let Some(task) = blocked_by {
            match self.relations.blocked_by(task).await {
                Ok(blocked) => {
                    for (project, task) in blocked {
                        keys.push(CacheKey::project_tasks(project));
                        keys.push(CacheKey::task(task));
                    }
                }
                Err(e) => {
                    self.cache.invalidate(&keys).await;
                    return Err(e.into());
                }
            }
        }
        if !keys.is_empty() {
            self.cache.invalidate(&keys).await;
        }
        Ok(written)
    }
}

impl TrackingPorts {
    /// What many committed changes (one store write: a bulk update's) made stale, dropped
    /// in one call: each change's keys by [`stale`], once each, and the tasks each blocks
    /// when it names them. An error is the look-up of those (the changes are committed;
    /// the other keys are dropped before it is reported).
    pub(crate) async fn invalidate_changes(&self, changes: &[&Change]) -> Result<(), AppError> {
        let mut keys: Vec<CacheKey> = Vec::new();
        let add = |keys: &mut Vec<CacheKey>, key: CacheKey| {
            if !keys.contains(&key) {
                keys.push(key);
            }
        };
        let mut lookups = Ok(());
        for change in changes {
            let Stale {
                keys: stale_keys,
                member_lists_of,
                blocked_by,
            } = stale(change, &true);
            for key in stale_keys {
                add(&mut keys, key);
            }
            if lookups.is_err() {
                continue;
            }
            if let Some(project) = member_lists_of {
                match self.members.user_ids(project).await {
                    Ok(members) => members
                        .into_iter()
                        .for_each(|m| add(&mut keys, CacheKey::projects_of(m))),
                    Err(e) => lookups = Err(e),
                }
            }
            if let Some(task) = blocked_by {
                match self.relations.blocked_by(task).await {
                    Ok(blocked) => {
                        for (project, task) in blocked {
                            add(&mut keys, CacheKey::project_tasks(project));
                            add(&mut keys, CacheKey::task(task));
                        }
                    }
                    Err(e) => lookups = Err(e),
                }
            }
        }
        if !keys.is_empty() {
            self.cache.invalidate(&keys).await;
        }
        lookups.map_err(AppError::from)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_domain::identity::{Principal, Role};
    use serde_json::json;

    use super::*;

    const PROJECT: Uuid = Uuid::from_u128(0x9);
    const RESOURCE: Uuid = Uuid::from_u128(0x7);
    const ACTOR: Uuid = Uuid::from_u128(0x1);
    const OTHER: Uuid = Uuid::from_u128(0x5);

    fn change(event_type: EventType, details: serde_json::Value) -> Change {
        let actor = Principal {
            user_id: ACTOR,
            session_id: Uuid::nil(),
            role: Role::User,
            expires_at: Utc::now(),
            grant: None,
        };
        Change::by(&actor, event_type, PROJECT, Utc::now())
            .resource(RESOURCE)
            .details(details)
            .before(json!({}))
            .also_to(vec![OTHER])
            .build()
    }

    fn names(stale: &Stale) -> Vec<String> {
        stale.keys.iter().map(|k| k.name().to_owned()).collect()
    }

    /// Every event type's rule, written out: a new type fails to compile in [`stale`] and
    /// then fails here until its keys are listed.
    #[test]
    fn every_event_type_names_what_it_makes_stale() {
        let (p, r, a, o) = (PROJECT, RESOURCE, ACTOR, OTHER);
        let side = vec![Uuid::from_u128(0x33)];
        for event_type in EventType::ALL {
            let c = change(event_type, json!({}));
            let (keys, lists) = match event_type {
                EventType::ProjectCreated => (vec![format!("projects-of:{a}")], None),
                EventType::ProjectUpdated => (vec![format!("project:{p}")], Some(p)),
                EventType::ProjectDeleted => (
                    vec![
                        format!("project:{p}"),
                        format!("tasks-of:{p}"),
                        format!("projects-of:{o}"),
                    ],
                    None,
                ),
                EventType::MemberAdded | EventType::MemberUpdated => {
                    (vec![format!("project:{p}"), format!("projects-of:{r}")], None)
                }
                EventType::MemberRemoved => (
                    vec![
                        format!("project:{p}"),
                        format!("projects-of:{r}"),
                        format!("tasks-of:{p}"),
                        format!("task:{}", side[0]),
                    ],
                    None,
                ),
                EventType::TaskCreated => (vec![format!("tasks-of:{p}")], None),
                EventType::TaskUpdated
                | EventType::TaskDeleted
                | EventType::TaskArchived
                | EventType::TaskUnarchived
                | EventType::TaskRestored
                | EventType::TaskPurged => (vec![format!("tasks-of:{p}"), format!("task:{r}")], None),
                EventType::LabelDeleted | EventType::LabelUpdated => {
                    (vec![format!("tasks-of:{p}"), format!("task:{}", side[0])], None)
                }
                EventType::LabelCreated
                | EventType::CommentCreated
                | EventType::CommentUpdated
                | EventType::CommentDeleted
                | EventType::LinkCreated
                | EventType::LinkUpdated
                | EventType::LinkDeleted
                | EventType::RelationCreated
                | EventType::RelationDeleted
                | EventType::StateUpdated => (vec![], None),
                EventType::StateCreated | EventType::StateDeleted => (vec![format!("project:{p}")], None),
            };
            let got = stale(&c, &side);
            assert_eq!(names(&got), keys, "{event_type}");
            assert_eq!(got.member_lists_of, lists, "{event_type}");
        }
    }

    #[test]
    fn a_change_of_the_tree_makes_the_parents_and_children_stale() {
        let (old_parent, child) = (Uuid::from_u128(0x41), Uuid::from_u128(0x42));
        let moved = TreeWrite {
            applied: true,
            others: vec![old_parent, child],
        };
        let got = stale(
            &change(EventType::TaskUpdated, json!({"changed": ["parentId"]})),
            &moved,
        );
        assert_eq!(
            names(&got),
            vec![
                format!("tasks-of:{PROJECT}"),
                format!("task:{RESOURCE}"),
                format!("task:{old_parent}"),
                format!("task:{child}"),
            ]
        );
        let lost = TreeWrite {
            applied: false,
            others: vec![old_parent],
        };
        assert_eq!(
            stale(&change(EventType::TaskDeleted, json!({})), &lost),
            Stale::default()
        );
    }

    #[test]
    fn a_sub_task_that_completes_makes_its_parent_stale() {
        let parent = Uuid::from_u128(0x43);
        let mut c = change(EventType::TaskUpdated, json!({"changed": ["status"]}));
        c.event.event.data = json!({ "parentId": parent.to_string() });
        assert!(names(&stale(&c, &true)).contains(&format!("task:{parent}")));
        let mut retitled = change(EventType::TaskUpdated, json!({"changed": ["title"]}));
        retitled.event.event.data = json!({ "parentId": parent.to_string() });
        assert!(!names(&stale(&retitled, &true)).contains(&format!("task:{parent}")));
    }

    #[test]
    fn a_write_that_lost_its_race_makes_nothing_stale() {
        for event_type in EventType::ALL {
            assert_eq!(stale(&change(event_type, json!({})), &false), Stale::default());
        }
        assert!(
            !stale(&change(EventType::TaskUpdated, json!({})), &true)
                .keys
                .is_empty()
        );
    }

    #[test]
    fn a_state_write_makes_stale_the_tasks_the_store_names_in_any_project() {
        let (moved, blocked, elsewhere) = (
            Uuid::from_u128(0x41),
            Uuid::from_u128(0x42),
            Uuid::from_u128(0x43),
        );
        for (event_type, project) in [
            (EventType::StateUpdated, vec![]),
            (EventType::StateDeleted, vec![format!("project:{PROJECT}")]),
        ] {
            let written = Also {
                written: (),
                tasks: vec![(PROJECT, moved), (elsewhere, blocked)],
            };
            let got = stale(&change(event_type, json!({})), &written);
            let tasks = vec![
                format!("tasks-of:{PROJECT}"),
                format!("task:{moved}"),
                format!("tasks-of:{elsewhere}"),
                format!("task:{blocked}"),
            ];
            assert_eq!(names(&got), [project, tasks].concat(), "{event_type}");
        }
    }

    #[test]
    fn recolouring_a_label_changes_no_task_and_makes_nothing_stale() {
        let c = change(EventType::LabelUpdated, json!({"changed": ["color"]}));
        assert_eq!(stale(&c, &Vec::<Uuid>::new()), Stale::default());
    }

    #[test]
    fn handing_ownership_over_makes_every_members_lists_stale() {
        let c = change(EventType::MemberUpdated, json!({"ownershipTransferred": true}));
        let got = stale(&c, &());
        assert_eq!(names(&got), vec![format!("project:{PROJECT}")]);
        assert_eq!(got.member_lists_of, Some(PROJECT));
    }
}
