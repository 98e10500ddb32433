//! Tracking use cases (docs/api/tracking.md): projects, members, labels, tasks, comments and the
//! activity feed. One file per resource; they share [`TrackingPorts`], injected at start-up.
//!
//! # Authorization
//! Every use case starts with [`TrackingPorts::authorize`]: a caller who is not a member of
//! the project gets 404 for the project and everything in it (existence is not leaked), a
//! member whose role lacks the permission gets 403, and instance admins act as owners.
//! Handlers in the api crate do no authorization of their own.
//!
//! # Changes
//! Every write describes its change with [`TrackingPorts::change`] (a builder of the
//! domain `Change`: audit entry and event) and hands the store write to
//! [`TrackingPorts::commit`], which invalidates what the change made stale; the rule per
//! event type is in `invalidation`.

pub mod activity;
pub mod comments;
pub mod inputs;
mod invalidation;
pub mod invitations;
pub mod labels;
pub mod links;
pub mod members;
pub mod projects;
pub mod relations;
pub mod search;
pub mod states;
pub mod tasks;
pub mod views;

#[cfg(test)]
pub(crate) mod fixtures;

use std::future::Future;
use std::sync::Arc;

use keel_domain::clock::Clock;
use keel_domain::events::{Change, ChangeBuilder, EventType};
use keel_domain::identity::Principal;
use keel_domain::identity::ports::{TokenSecrets, UserRepository};
use keel_domain::tracking::invitations::InvitationRepository;
use keel_domain::tracking::ports::{
    ActivityFeed, CommentRepository, LabelRepository, LinkRepository, MemberRepository, ProjectRepository,
    RelationRepository, StateRepository, TaskRepository,
};
use keel_domain::tracking::search::SearchIndex;
use keel_domain::tracking::{Permission, ProjectAccess, ProjectRole};
use keel_domain::webhooks::{UrlPolicy, WebhookRepository, WebhookSecrets};
use keel_domain::{FieldError, StoreError};
use uuid::Uuid;

use crate::AppError;
use crate::cache::{Cache, CacheKey, Watermark, cached, store_since};
use crate::context::RequestMeta;

/// The ports every tracking use case may need.
#[derive(Clone)]
pub struct TrackingPorts {
    pub projects: Arc<dyn ProjectRepository>,
    pub members: Arc<dyn MemberRepository>,
    pub labels: Arc<dyn LabelRepository>,
    pub tasks: Arc<dyn TaskRepository>,
    pub comments: Arc<dyn CommentRepository>,
    pub links: Arc<dyn LinkRepository>,
    pub relations: Arc<dyn RelationRepository>,
    /// Each project's workflow states.
    pub states: Arc<dyn StateRepository>,
    /// The search index (`GET /search`).
    pub search: Arc<dyn SearchIndex>,
    pub activity: Arc<dyn ActivityFeed>,
    pub users: Arc<dyn UserRepository>,
    pub clock: Arc<dyn Clock>,
    /// Projects, roles, tasks and project lists as the reads see them; every write,
    /// committed through [`TrackingPorts::commit`], invalidates what its change made stale.
    pub cache: Arc<dyn Cache>,
    pub webhooks: Arc<dyn WebhookRepository>,
    /// Checks webhook URLs (scheme, resolved addresses) when they are set.
    pub webhook_urls: Arc<dyn UrlPolicy>,
    pub webhook_secrets: Arc<dyn WebhookSecrets>,
    /// Project invitations, and how their tokens' secrets are made and checked.
    pub invitations: Arc<dyn InvitationRepository>,
    pub token_secrets: Arc<dyn TokenSecrets>,
}

impl std::fmt::Debug for TrackingPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingPorts").finish_non_exhaustive()
    }
}

impl TrackingPorts {
    /// The caller's effective role in the project, if it grants `permission`.
    ///
    /// `missing` names what the 404 says is missing (`project`, `task`, `comment`): a
    /// stranger learns nothing about the project, not even through a task's id.
    pub(crate) async fn authorize(
        &self,
        principal: &Principal,
        project_id: Uuid,
        permission: Permission,
        missing: &'static str,
    ) -> Result<ProjectRole, AppError> {
        Ok(self
            .authorize_access(principal, project_id, permission, missing, None)
            .await?
            .1)
    }

    /// [`Self::authorize`], also answering the project. `prefetched` is the caller's access
    /// to `project_id` when this request read it already (with the resource, in the same
    /// statement): then no look-up is made.
    pub(crate) async fn authorize_access(
        &self,
        principal: &Principal,
        project_id: Uuid,
        permission: Permission,
        missing: &'static str,
        prefetched: Option<Arc<ProjectAccess>>,
    ) -> Result<(Arc<ProjectAccess>, ProjectRole), AppError> {
        // A token limited to other projects does not reach this one: as for a stranger.
        if !principal.reaches(project_id) {
            return Err(AppError::NotFound(missing));
        }
        let access = match prefetched {
            Some(access) if access.project.id == project_id => Some(access),
            _ => self.access(project_id, principal.user_id).await?,
        };
        let Some(access) = access else {
            return Err(AppError::NotFound(missing));
        };
        let role = match access.role {
            // Instance admins act as owners of every project.
            _ if principal.is_admin() => ProjectRole::Owner,
            Some(role) => role,
            None => return Err(AppError::NotFound(missing)),
        };
        if role.allows(permission) {
            Ok((access, role))
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// A project with a user's role in it, through the cache (`project:<id>` variant
    /// `m:<user>`): one statement on a miss; `None` when there is no such project.
    pub(crate) async fn access(
        &self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Arc<ProjectAccess>>, AppError> {
        Ok(cached(
            self.cache.as_ref(),
            &CacheKey::access(project_id, user_id),
            self.projects.find_access(project_id, user_id),
        )
        .await?)
    }

    /// Keeps an access read together with a resource (the same statement), so that the next
    /// authorization in this project hits the cache; dropped if anything was invalidated
    /// since `mark`.
    pub(crate) async fn keep_access(&self, mark: Watermark, user_id: Uuid, access: &Arc<ProjectAccess>) {
        store_since(
            self.cache.as_ref(),
            mark,
            &CacheKey::access(access.project.id, user_id),
            Arc::clone(access),
        )
        .await;
    }

    /// A user's role in a project (`None`: not a member, or no such project), through the
    /// cache.
    pub(crate) async fn role_of(
        &self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<ProjectRole>, AppError> {
        Ok(self.access(project_id, user_id).await?.and_then(|a| a.role))
    }

    /// Starts a change in a project made by `principal` in the request `meta`, for the
    /// builder to complete: its audit entry (`details` says what changed, for every member
    /// to read) and its domain event (`data` is the resource after the change, as the API
    /// shows it). `needs` names the permission the change was authorized with (the store
    /// re-checks it in the change's transaction). Written with [`Self::commit`], which drops
    /// what the change made stale.
    pub(crate) fn change(
        &self,
        meta: &RequestMeta,
        principal: &Principal,
        event_type: EventType,
        project_id: Uuid,
    ) -> ChangeBuilder {
        Change::by(principal, event_type, project_id, self.clock.now())
            .request(meta.request_id.clone(), meta.ip.clone())
    }
}

/// What `If-Match` asks of a versioned resource, in versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    /// No `If-Match` (or `*`): write whatever the current version is.
    #[default]
    Any,
    /// The write applies only if the current version is one of these (none: never).
    OneOf(Vec<i64>),
}

impl Expect {
    pub fn admits(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(versions) => versions.contains(&version),
        }
    }
}

/// How many times an unconditional update re-reads and re-applies itself when another
/// write slipped in between its read and its version-guarded write. Every lost race means
/// another write to the same row committed, so the writers as a whole always progress; 8
/// lets one writer lose to 7 others in a row (3 gave up under the benchmark's mix, where
/// several clients patch the same hot task at once).
pub(crate) const UPDATE_ATTEMPTS: usize = 8;

/// Runs a read-modify-write `attempt` guarded by a version. `attempt` re-reads the resource,
/// checks `expect` (412), applies the change and answers `Ok(None)` when the guarded write
/// lost a race. With `If-Match` a lost race is a 412; without, the change is re-applied to
/// the fresh state a few times, then it is a 409.
pub(crate) async fn versioned_update<T, F, Fut>(expect: &Expect, mut attempt: F) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, AppError>>,
{
    for _ in 0..UPDATE_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
        if matches!(expect, Expect::OneOf(_)) {
            return Err(AppError::PreconditionFailed);
        }
    }
    Err(AppError::Conflict(
        "the resource is being changed concurrently; try again".into(),
    ))
}

/// The value of a parse, or `None` with its error pushed to `errors`.
pub(crate) fn check<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// An optional field: parsed when present, its error pushed to `errors`.
pub(crate) fn optional<R, T>(
    errors: &mut Vec<FieldError>,
    raw: Option<R>,
    parse: impl FnOnce(R) -> Result<T, FieldError>,
) -> Option<T> {
    check(errors, raw.map(parse).transpose()).flatten()
}

/// `Ok(())` when no rule was broken, else one 400 listing them all.
pub(crate) fn validated(errors: Vec<FieldError>) -> Result<(), AppError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// A store `NotFound` reported as the named resource.
pub(crate) fn not_found_as(what: &'static str) -> impl Fn(StoreError) -> AppError {
    move |e| match e {
        StoreError::NotFound => AppError::NotFound(what),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::MockProjectRepository;

    use super::fixtures::*;
    use super::*;

    #[tokio::test]
    async fn a_stranger_gets_404_and_a_weak_role_403() {
        let mut stored = super::fixtures::project();
        stored.id = Uuid::now_v7();
        let project = stored.id;
        let mut projects = MockProjectRepository::new();
        projects.expect_find_access().returning(move |p, u| {
            Ok((p == project).then(|| ProjectAccess {
                project: stored.clone(),
                role: (u == viewer().user_id).then_some(ProjectRole::Viewer),
            }))
        });
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let e = ports
            .authorize(&stranger(), project, Permission::Read, "task")
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::NotFound("task")), "{e:?}");
        assert_eq!(
            ports
                .authorize(&viewer(), project, Permission::Read, "project")
                .await
                .unwrap(),
            ProjectRole::Viewer
        );
        let e = ports
            .authorize(&viewer(), project, Permission::WriteTasks, "project")
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::Forbidden), "{e:?}");
    }

    #[tokio::test]
    async fn instance_admins_act_as_owners_of_existing_projects_only() {
        let mut projects = MockProjectRepository::new();
        let existing = project();
        let id = existing.id;
        projects.expect_find_access().returning(move |p, _| {
            Ok((p == id).then(|| ProjectAccess {
                project: existing.clone(),
                role: None,
            }))
        });
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        assert_eq!(
            ports
                .authorize(&admin(), id, Permission::Own, "project")
                .await
                .unwrap(),
            ProjectRole::Owner
        );
        let e = ports
            .authorize(&admin(), Uuid::now_v7(), Permission::Read, "project")
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::NotFound("project")));
    }

    #[tokio::test]
    async fn versioned_update_retries_without_if_match_and_412s_with_it() {
        let mut calls = 0;
        let r: Result<u8, _> = versioned_update(&Expect::Any, || {
            calls += 1;
            let won = calls == 2;
            async move { Ok(won.then_some(7)) }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 2);

        let mut calls = 0;
        let r: Result<u8, _> = versioned_update(&Expect::OneOf(vec![1]), || {
            calls += 1;
            async { Ok(None) }
        })
        .await;
        assert!(matches!(r, Err(AppError::PreconditionFailed)));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r: Result<u8, _> = versioned_update(&Expect::Any, || {
            calls += 1;
            async { Ok(None) }
        })
        .await;
        assert!(matches!(r, Err(AppError::Conflict(_))));
        assert_eq!(calls, UPDATE_ATTEMPTS);
    }

    #[test]
    fn expect_admits_listed_versions_only() {
        assert!(Expect::Any.admits(9));
        assert!(Expect::OneOf(vec![2, 3]).admits(3));
        assert!(!Expect::OneOf(vec![2]).admits(3));
        assert!(!Expect::OneOf(vec![]).admits(1));
    }
}
