//! Mocks and builders shared by the tracking use-case tests.

use crate::cache::testing::RecordingCache;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use keel_domain::identity::ports::{MockTokenSecrets, MockUserRepository};
use keel_domain::identity::{Email, PasswordHash, Principal, Role, User, UserName, UserStatus};
use keel_domain::tracking::invitations::MockInvitationRepository;
use keel_domain::tracking::ports::{
    MockActivityFeed, MockCommentRepository, MockLabelRepository, MockLinkRepository, MockMemberRepository,
    MockProjectRepository, MockRelationRepository, MockStateRepository, MockTaskRepository,
};
use keel_domain::tracking::search::MockSearchIndex;
use keel_domain::tracking::{
    Priority, Project, ProjectAccess, ProjectKey, ProjectName, ProjectRole, ProjectStatus, StateCategory,
    StateKey, Task, TaskTitle, WorkflowState,
};
use keel_domain::webhooks::{MockUrlPolicy, MockWebhookRepository, MockWebhookSecrets};
use uuid::Uuid;

use super::TrackingPorts;
use crate::AppError;
use crate::context::RequestMeta;

/// An active account with a valid address and name (the invitee or member of a test).
pub fn account(id: Uuid, email: &str, name: &str, verified: bool) -> User {
    User {
        id,
        email: Email::parse(email).unwrap(),
        name: UserName::parse(name).unwrap(),
        role: Role::User,
        status: UserStatus::Active,
        password_hash: PasswordHash::new("x".into()),
        email_verified: verified,
        created_at: now(),
        updated_at: now(),
    }
}
/// Token secrets: generated `s3cret`, hashed `hash(<secret>)`, compared by hashing.
pub fn secrets() -> MockTokenSecrets {
    let mut secrets = MockTokenSecrets::new();
    secrets.expect_generate().returning(|| "s3cret".into());
    secrets.expect_hash().returning(|s| format!("hash({s})"));
    secrets
        .expect_matches()
        .returning(|secret, hash| format!("hash({secret})") == hash);
    secrets
}

pub struct FixedClock(pub DateTime<Utc>);

impl keel_domain::clock::Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().unwrap()
}

pub fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("req-1".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: None,
        token_id: None,
    }
}

fn principal(n: u128, role: Role) -> Principal {
    Principal {
        user_id: Uuid::from_u128(n),
        session_id: Uuid::from_u128(1000 + n),
        role,
        expires_at: now() + chrono::Duration::minutes(15),
        grant: None,
    }
}

pub fn owner() -> Principal {
    principal(1, Role::User)
}
pub fn member() -> Principal {
    principal(2, Role::User)
}
pub fn viewer() -> Principal {
    principal(3, Role::User)
}
pub fn stranger() -> Principal {
    principal(4, Role::User)
}
pub fn admin() -> Principal {
    principal(5, Role::Admin)
}

pub const PROJECT_ID: Uuid = Uuid::from_u128(0xAAAA);

pub fn project() -> Project {
    Project {
        id: PROJECT_ID,
        key: ProjectKey::parse("KEEL").unwrap(),
        name: ProjectName::parse("Keel").unwrap(),
        description: None,
        status: ProjectStatus::Active,
        owner_id: owner().user_id,
        default_state: StateKey::parse("todo", "key").unwrap(),
        state_keys: keel_domain::tracking::default_state_keys(),
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn task() -> Task {
    Task {
        id: Uuid::from_u128(0xBBBB),
        project_id: PROJECT_ID,
        project_key: ProjectKey::parse("KEEL").unwrap(),
        number: 1,
        title: TaskTitle::parse("First").unwrap(),
        description: None,
        status: StateKey::parse("todo", "key").unwrap(),
        status_category: StateCategory::Unstarted,
        priority: Priority::NONE,
        assignee_id: None,
        labels: vec![],
        label_ids: vec![],
        due_date: None,
        created_by: member().user_id,
        created_at: now(),
        updated_at: now(),
        completed_at: None,
        archived_at: None,
        blocked_by_count: 0,
        deleted_at: None,
        parent_id: None,
        child_count: 0,
        child_done_count: 0,
        version: 1,
    }
}

/// The usual cast: owner, member, viewer of [`project`]; the stranger belongs to nothing.
pub fn cast() -> Vec<(Uuid, ProjectRole)> {
    vec![
        (owner().user_id, ProjectRole::Owner),
        (member().user_id, ProjectRole::Member),
        (viewer().user_id, ProjectRole::Viewer),
    ]
}

/// A project store that knows `project` and answers `role_of` and `find_access` from
/// `roles`.
pub fn projects_with(project: &Project, roles: &[(Uuid, ProjectRole)]) -> MockProjectRepository {
    let mut projects = MockProjectRepository::new();
    let id = project.id;
    let roles = roles.to_vec();
    let role_of = move |p: Uuid, u: Uuid| {
        if p == id {
            roles.iter().find(|(user, _)| *user == u).map(|(_, r)| *r)
        } else {
            None
        }
    };
    let role_of_too = role_of.clone();
    projects.expect_role_of().returning(move |p, u| Ok(role_of(p, u)));
    let known = project.clone();
    projects.expect_find_access().returning(move |p, u| {
        Ok((p == id).then(|| ProjectAccess {
            project: known.clone(),
            role: role_of_too(p, u),
        }))
    });
    let stored = project.clone();
    projects
        .expect_find()
        .returning(move |p| Ok((p == id).then(|| stored.clone())));
    projects
}

/// `user`'s access to [`project`] in the usual cast.
pub fn access_of(user: Uuid) -> ProjectAccess {
    ProjectAccess {
        project: project(),
        role: cast().into_iter().find(|(u, _)| *u == user).map(|(_, r)| r),
    }
}

/// Lets `tasks` answer the reads that come with the caller's access (by id and by
/// identifier) with `task` when its id or number is asked for.
pub fn reads_task(tasks: &mut MockTaskRepository, task: Task) {
    let by_number = task.clone();
    tasks
        .expect_find_with_access()
        .returning(move |id, user| Ok((id == task.id).then(|| (task.clone(), access_of(user)))));
    tasks
        .expect_find_by_number_with_access()
        .returning(move |key, number, user| {
            let hit = *key == by_number.project_key && number == by_number.number;
            Ok(hit.then(|| (by_number.clone(), access_of(user))))
        });
}

pub fn fields(e: AppError) -> Vec<String> {
    match e {
        AppError::Validation(details) => details.into_iter().map(|d| d.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

pub struct Fixture {
    pub projects: MockProjectRepository,
    pub members: MockMemberRepository,
    pub labels: MockLabelRepository,
    pub tasks: MockTaskRepository,
    pub comments: MockCommentRepository,
    pub links: MockLinkRepository,
    pub relations: MockRelationRepository,
    pub states: MockStateRepository,
    pub search: MockSearchIndex,
    pub activity: MockActivityFeed,
    pub users: MockUserRepository,
    pub invitations: MockInvitationRepository,
    pub token_secrets: MockTokenSecrets,
    /// Loads through; tests read what was invalidated.
    pub cache: Arc<RecordingCache>,
}

/// The six default states of [`project`], by position.
pub fn the_default_states() -> Vec<WorkflowState> {
    let mut states = WorkflowState::defaults(PROJECT_ID, now());
    for (n, state) in (0xC000_u128..).zip(states.iter_mut()) {
        state.id = Uuid::from_u128(n);
    }
    states
}

/// A state store that lists the six default states of [`project`] (and none of another
/// project) and answers that every key is known.
pub fn default_states() -> MockStateRepository {
    let mut states = MockStateRepository::new();
    states.expect_list().returning(|p| {
        Ok(if p == PROJECT_ID {
            the_default_states()
        } else {
            Vec::new()
        })
    });
    states.expect_known_keys().returning(|_, keys| Ok(keys.to_vec()));
    states
}

/// Relations in which no task blocks another (what a task write asks of them).
pub fn blocking_nothing() -> MockRelationRepository {
    let mut relations = MockRelationRepository::new();
    relations.expect_blocked_by().returning(|_| Ok(Vec::new()));
    relations
}

impl Default for Fixture {
    fn default() -> Self {
        Self {
            projects: projects_with(&project(), &cast()),
            members: MockMemberRepository::new(),
            labels: MockLabelRepository::new(),
            tasks: MockTaskRepository::new(),
            comments: MockCommentRepository::new(),
            links: MockLinkRepository::new(),
            relations: blocking_nothing(),
            states: default_states(),
            activity: MockActivityFeed::new(),
            users: MockUserRepository::new(),
            search: MockSearchIndex::new(),
            invitations: MockInvitationRepository::new(),
            token_secrets: MockTokenSecrets::new(),
            cache: Arc::new(RecordingCache::default()),
        }
    }
}

impl Fixture {
    pub fn ports(self) -> TrackingPorts {
        TrackingPorts {
            projects: Arc::new(self.projects),
            members: Arc::new(self.members),
            labels: Arc::new(self.labels),
            tasks: Arc::new(self.tasks),
            comments: Arc::new(self.comments),
            links: Arc::new(self.links),
            relations: Arc::new(self.relations),
            states: Arc::new(self.states),
            search: Arc::new(self.search),
            activity: Arc::new(self.activity),
            users: Arc::new(self.users),
            clock: Arc::new(FixedClock(now())),
            cache: self.cache,
            webhooks: Arc::new(MockWebhookRepository::new()),
            webhook_urls: Arc::new(MockUrlPolicy::new()),
            webhook_secrets: Arc::new(MockWebhookSecrets::new()),
            invitations: Arc::new(self.invitations),
            token_secrets: Arc::new(self.token_secrets),
        }
    }
}
