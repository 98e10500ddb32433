//! Projects: create, list, read, change, delete.

use futures::TryFutureExt;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::text::SearchTerm;
use keel_domain::tracking::values::{PROJECT_DESCRIPTION_MAX, parse_description};
use std::sync::Arc;

use keel_domain::tracking::{
    DEFAULT_STATE_KEY, Permission, Project, ProjectFilter, ProjectKey, ProjectName, ProjectRole, ProjectSort,
    ProjectStatus, ProjectWithRole, Scope, StateKey, default_state_keys,
};
use keel_domain::{FieldError, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::inputs::{CreateProjectBody, ProjectListQuery, UpdateProjectBody};
use super::views::{ProjectView, project_data};
use super::{Expect, TrackingPorts, check, not_found_as, optional, validated, versioned_update};
use crate::AppError;
use crate::cache::{CacheKey, cached};
use crate::context::RequestMeta;
use crate::pagination::{Page, PageRequest};

/// Any signed-in user may create a project; they become its owner.
pub async fn create_project(
    ports: &TrackingPorts,
    principal: &Principal,
    body: CreateProjectBody,
    meta: &RequestMeta,
) -> Result<ProjectView, AppError> {
    if principal.project_limit().is_some() {
        // The new project would be outside the token's limit, out of its own reach.
        return Err(AppError::InsufficientScope);
    }
    let mut errors = Vec::new();
    let key = check(&mut errors, ProjectKey::parse(&body.key));
    let name = check(&mut errors, ProjectName::parse(&body.name));
    let description = check(
        &mut errors,
        parse_description(body.description.as_deref(), PROJECT_DESCRIPTION_MAX),
    );
    validated(errors)?;
    let (Some(key), Some(name), Some(description)) = (key, name, description) else {
        return Err(AppError::internal("validated input missing"));
    };
    let now = ports.clock.now();
    let project = Project {
        id: Uuid::now_v7(),
        key,
        name,
        description,
        status: ProjectStatus::Active,
        default_state: StateKey::from_stored(DEFAULT_STATE_KEY.to_owned()),
        state_keys: default_state_keys(),
        owner_id: principal.user_id,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let change = ports
        .change(meta, principal, EventType::ProjectCreated, project.id)
        .resource(project.id)
        .details(json!({ "key": project.key.as_str(), "name": project.name.as_str() }))
        .data(project_data(&project))
        .build();
    ports
        .commit(
            &change,
            ports.projects.create(&project, &change).map_err(|e| match e {
                StoreError::Conflict(_) => {
                    AppError::Conflict("a project with this key already exists".into())
                }
                other => other.into(),
            }),
        )
        .await?;
    Ok(ProjectView::new(&project, ProjectRole::Owner))
}

/// The caller's projects (every project for instance admins), offset-paginated.
pub async fn list_projects(
    ports: &TrackingPorts,
    principal: &Principal,
    query: ProjectListQuery,
    page: PageRequest,
) -> Result<Page<ProjectView>, AppError> {
    let mut errors = Vec::new();
    let status = optional(&mut errors, query.status.as_deref(), |s| {
        ProjectStatus::parse(s, "status")
    });
    let sort = optional(&mut errors, query.sort.as_deref(), ProjectSort::parse).unwrap_or_default();
    let q = check(&mut errors, search_text(query.q, 100)).flatten();
    validated(errors)?;
    let scope = if principal.is_admin() {
        Scope::All
    } else {
        Scope::MemberOf(principal.user_id)
    };
    let (offset, limit) = (page.offset(), u64::from(page.limit()));
    let list = |filter: ProjectFilter| async move {
        ports
            .projects
            .list(scope, &filter, sort, offset, limit)
            .await
            .map(|(rows, total)| Some(ProjectPage { rows, total }))
    };
    let page_of = match scope {
        // A member's lists change only with their projects and memberships, which
        // invalidate `projects_of`; an admin's list changes with every project: not cached.
        // Nor are searches: free text would let one caller fill the cache with variants.
        // Nor the lists of a token limited to some projects (few callers, one variant each).
        Scope::MemberOf(user) if q.is_none() && principal.project_limit().is_none() => {
            let variant = format!(
                "{}|{sort:?}|{offset}|{limit}",
                status.map_or("", ProjectStatus::as_str),
            );
            cached(
                ports.cache.as_ref(),
                &CacheKey::projects_of(user).with_variant(variant),
                list(ProjectFilter {
                    status,
                    q,
                    projects: None,
                }),
            )
            .await?
        }
        _ => list(ProjectFilter {
            status,
            q,
            projects: principal.project_limit().map(<[Uuid]>::to_vec),
        })
        .await?
        .map(Arc::new),
    }
    .ok_or_else(|| AppError::internal("project list missing"))?;
    let (rows, total) = (&page_of.rows, page_of.total);
    let data = rows
        .iter()
        .map(|r| {
            ProjectView::new(
                &r.project,
                if principal.is_admin() {
                    ProjectRole::Owner
                } else {
                    r.role
                },
            )
        })
        .collect();
    Ok(Page::new(data, page, total))
}

/// One page of a project list, as cached.
#[derive(Debug, Serialize, Deserialize)]
struct ProjectPage {
    rows: Vec<ProjectWithRole>,
    total: u64,
}

/// A search term `q`: at most `max` characters as sent, checked by the text policy,
/// trimmed, empty meaning none.
pub(crate) fn search_text(q: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    match q {
        Some(q) => Ok(SearchTerm::parse(&q, "q", max)?.map(SearchTerm::into_inner)),
        None => Ok(None),
    }
}

/// The stored project, for a read-modify-write (never the cache).
async fn load(ports: &TrackingPorts, id: Uuid) -> Result<Project, AppError> {
    ports
        .projects
        .find(id)
        .await?
        .ok_or(AppError::NotFound("project"))
}

pub async fn get_project(
    ports: &TrackingPorts,
    principal: &Principal,
    id: Uuid,
) -> Result<ProjectView, AppError> {
    // One cache read (or one statement): the project comes with the caller's role.
    let (access, role) = ports
        .authorize_access(principal, id, Permission::Read, "project", None)
        .await?;
    Ok(ProjectView::new(&access.project, role))
}

/// Changes name, description or status (project admins). The key never changes: it is in
/// every task identifier.
pub async fn update_project(
    ports: &TrackingPorts,
    principal: &Principal,
    id: Uuid,
    body: UpdateProjectBody,
    expect: Expect,
    meta: &RequestMeta,
) -> Result<ProjectView, AppError> {
    let role = ports
        .authorize(principal, id, Permission::Administer, "project")
        .await?;
    let mut errors = Vec::new();
    let name = optional(&mut errors, body.name.as_deref(), ProjectName::parse);
    let description = optional(&mut errors, body.description, |d| {
        parse_description(d.as_deref(), PROJECT_DESCRIPTION_MAX)
    });
    let status = optional(&mut errors, body.status.as_deref(), |s| {
        ProjectStatus::parse(s, "status")
    });
    let default_state = optional(&mut errors, body.default_state.as_deref(), |s| {
        StateKey::parse(s, "defaultState")
    });
    validated(errors)?;
    if let Some(key) = &default_state {
        // One of the project's states (checked again in the write's transaction).
        let states = ports.states.list(id).await?;
        if !states.iter().any(|s| s.key == *key) {
            return Err(AppError::invalid(
                "defaultState",
                "is not a state of this project",
            ));
        }
    }
    let expect = &expect;
    versioned_update(expect, || {
        let (name, description, status) = (name.clone(), description.clone(), status);
        let default_state = default_state.clone();
        async move {
            let mut project = load(ports, id).await?;
            if !expect.admits(project.version) {
                return Err(AppError::PreconditionFailed);
            }
            let before = project_data(&project);
            let mut changed = Vec::new();
            if let Some(name) = name.filter(|n| *n != project.name) {
                project.name = name;
                changed.push("name");
            }
            if let Some(description) = description.filter(|d| *d != project.description) {
                project.description = description;
                changed.push("description");
            }
            if let Some(status) = status.filter(|s| *s != project.status) {
                project.status = status;
                changed.push("status");
            }
            let default_changed = default_state
                .as_ref()
                .is_some_and(|s| *s != project.default_state);
            if let Some(default_state) = default_state.filter(|s| *s != project.default_state) {
                project.default_state = default_state;
                changed.push("defaultState");
            }
            if changed.is_empty() {
                return Ok(Some(ProjectView::new(&project, role)));
            }
            let expected = project.version;
            project.version += 1;
            project.updated_at = ports.clock.now();
            let change = ports
                .change(meta, principal, EventType::ProjectUpdated, id)
                .resource(id)
                .needs(Permission::Administer)
                .details(json!({ "changed": changed }))
                .before(before)
                .data(project_data(&project))
                .build();
            let saved = ports
                .commit(
                    &change,
                    ports
                        .projects
                        .update(&project, expected, default_changed, &change)
                        .map_err(|e| match e {
                            // The default state went away meanwhile.
                            StoreError::Conflict(_) => {
                                AppError::invalid("defaultState", "is not a state of this project")
                            }
                            other => not_found_as("project")(other),
                        }),
                )
                .await?;
            Ok(saved.then(|| ProjectView::new(&project, role)))
        }
    })
    .await
}

/// Deletes the project and everything in it (its owner, or an instance admin).
pub async fn delete_project(
    ports: &TrackingPorts,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    ports.authorize(principal, id, Permission::Own, "project").await?;
    let project = load(ports, id).await?;
    let details = json!({ "key": project.key.as_str(), "name": project.name.as_str() });
    let data = json!({ "id": id, "key": project.key.as_str(), "name": project.name.as_str() });
    // Read before the rows go: afterwards nobody is a member any more, so the members of
    // the moment receive the event by name.
    let members = ports.members.user_ids(id).await?;
    let change = ports
        .change(meta, principal, EventType::ProjectDeleted, id)
        .resource(id)
        .needs(Permission::Own)
        .details(details)
        .data(data)
        .also_to(members)
        .build();
    ports
        .commit(
            &change,
            ports
                .projects
                .delete(id, &change)
                .map_err(not_found_as("project")),
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::{MockMemberRepository, MockProjectRepository};

    use super::super::fixtures::*;
    use super::*;

    fn body(key: &str, name: &str) -> CreateProjectBody {
        CreateProjectBody {
            key: key.into(),
            name: name.into(),
            description: None,
        }
    }

    #[tokio::test]
    async fn create_stores_the_project_with_its_audit_entry_and_answers_owner() {
        let mut projects = MockProjectRepository::new();
        projects
            .expect_create()
            .withf(|p, a| {
                p.key.as_str() == "KEEL"
                    && p.owner_id == member().user_id
                    && p.version == 1
                    && a.audit.action == "project.created"
                    && a.audit.project_id == Some(p.id)
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let view = create_project(&ports, &member(), body("KEEL", " Keel app "), &meta())
            .await
            .unwrap();
        assert_eq!(
            (view.name.as_str(), view.my_role, view.status),
            ("Keel app", "owner", "active")
        );
    }

    #[tokio::test]
    async fn create_reports_every_bad_field_and_stores_nothing() {
        let ports = Fixture::default().ports();
        let e = create_project(
            &ports,
            &member(),
            CreateProjectBody {
                key: "k".into(),
                name: "x".into(),
                description: Some("d".repeat(1001)),
            },
            &meta(),
        )
        .await
        .unwrap_err();
        assert_eq!(fields(e), vec!["key", "name", "description"]);
    }

    #[tokio::test]
    async fn a_taken_key_is_a_409() {
        let mut projects = MockProjectRepository::new();
        projects
            .expect_create()
            .returning(|_, _| Err(StoreError::Conflict("ux_projects_key".into())));
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let e = create_project(&ports, &member(), body("KEEL", "Keel"), &meta())
            .await
            .unwrap_err();
        assert!(
            matches!(e, AppError::Conflict(ref m) if m.contains("key")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn list_scopes_members_to_their_projects_and_admins_to_all() {
        let mut projects = MockProjectRepository::new();
        let user = member().user_id;
        projects
            .expect_list()
            .withf(move |scope, _, sort, offset, limit| {
                *scope == Scope::MemberOf(user)
                    && *sort == ProjectSort::default()
                    && *offset == 20
                    && *limit == 20
            })
            .times(1)
            .returning(|_, _, _, _, _| Ok((vec![], 21)));
        projects
            .expect_list()
            .withf(|scope, f, _, _, _| *scope == Scope::All && f.q.as_deref() == Some("web"))
            .times(1)
            .returning(|_, _, _, _, _| Ok((vec![], 0)));
        projects
            .expect_list()
            .withf(move |scope, f, _, _, _| *scope == Scope::MemberOf(user) && f.q.as_deref() == Some("web"))
            .times(1)
            .returning(|_, _, _, _, _| Ok((vec![], 0)));
        let fixture = Fixture {
            projects,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let page2 = PageRequest::parse(Some("2"), None).unwrap();
        let page = list_projects(&ports, &member(), ProjectListQuery::default(), page2)
            .await
            .unwrap();
        assert_eq!(page.pagination.total_pages, 2);
        let q = || ProjectListQuery {
            q: Some(" web ".into()),
            ..Default::default()
        };
        list_projects(&ports, &admin(), q(), PageRequest::parse(None, None).unwrap())
            .await
            .unwrap();
        list_projects(&ports, &member(), q(), PageRequest::parse(None, None).unwrap())
            .await
            .unwrap();
        assert_eq!(
            cache.reads(),
            [format!(
                "projects-of:{user}#|ProjectSort {{ key: CreatedAt, descending: true }}|20|20"
            )],
            "a member's plain list is cached; an admin's list and searches are not"
        );
    }

    /// A member's principal with a personal access token limited to `projects`.
    fn limited(projects: Vec<Uuid>) -> Principal {
        let mut p = member();
        p.grant = Some(Arc::new(keel_domain::identity::tokens::Grant {
            token_id: Uuid::now_v7(),
            scopes: keel_domain::identity::tokens::Scopes::parse(&["write"]).unwrap(),
            project_ids: Some(projects),
        }));
        p
    }

    #[tokio::test]
    async fn a_limited_token_lists_only_its_projects_uncached_and_creates_none() {
        let allowed = Uuid::from_u128(0xB0B);
        let mut projects = MockProjectRepository::new();
        projects
            .expect_list()
            .withf(move |_, f, _, _, _| f.projects == Some(vec![allowed]))
            .times(1)
            .returning(|_, _, _, _, _| Ok((vec![], 0)));
        projects.expect_create().never();
        let fixture = Fixture {
            projects,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let p = limited(vec![allowed]);
        list_projects(
            &ports,
            &p,
            ProjectListQuery::default(),
            PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
        assert!(
            cache.reads().is_empty(),
            "a limited list is not cached beside the full one"
        );
        let e = create_project(&ports, &p, body("KEEL", "Keel"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::InsufficientScope), "{e:?}");
    }

    #[tokio::test]
    async fn a_limited_token_does_not_reach_other_projects() {
        let mut projects = MockProjectRepository::new();
        let existing = project();
        projects.expect_find_access().returning(move |_, _| {
            Ok(Some(keel_domain::tracking::ProjectAccess {
                project: existing.clone(),
                role: Some(ProjectRole::Owner),
            }))
        });
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let e = get_project(&ports, &limited(vec![Uuid::from_u128(0xB0B)]), PROJECT_ID)
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::NotFound("project")), "{e:?}");
        get_project(&ports, &limited(vec![PROJECT_ID]), PROJECT_ID)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn list_refuses_bad_filters_together() {
        let ports = Fixture::default().ports();
        let q = ProjectListQuery {
            status: Some("open".into()),
            sort: Some("key".into()),
            q: Some("x".repeat(101)),
        };
        let e = list_projects(&ports, &member(), q, PageRequest::parse(None, None).unwrap())
            .await
            .unwrap_err();
        assert_eq!(fields(e), vec!["status", "sort", "q"]);
    }

    /// The store checks the default state in the write only when the patch sets a new one;
    /// a patch naming the current default (or none) reads no state.
    #[tokio::test]
    async fn only_a_new_default_state_is_checked_in_the_write() {
        let p = project();
        let id = p.id;
        let mut projects = projects_with(&p, &[(owner().user_id, ProjectRole::Owner)]);
        projects
            .expect_update()
            .withf(|p, _, default_changed, _| *default_changed == (p.default_state.as_str() == "backlog"))
            .times(3)
            .returning(|_, _, _, _| Ok(true));
        let mut states = keel_domain::tracking::ports::MockStateRepository::new();
        // Read to check a key given in the body (the default or not), never otherwise.
        states
            .expect_list()
            .times(2)
            .returning(|_| Ok(the_default_states()));
        let mut members = MockMemberRepository::new();
        members.expect_user_ids().returning(|_| Ok(Vec::new()));
        let ports = Fixture {
            projects,
            states,
            members,
            ..Fixture::default()
        }
        .ports();
        let patch = |name: &str, default: Option<&str>| UpdateProjectBody {
            name: Some(name.into()),
            default_state: default.map(str::to_owned),
            ..Default::default()
        };
        for body in [
            patch("Renamed", None),
            patch("Renamed again", Some("todo")),
            patch("Renamed once more", Some("backlog")),
        ] {
            update_project(&ports, &owner(), id, body, Expect::Any, &meta())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn update_needs_admin_and_bumps_the_version() {
        let p = project();
        let id = p.id;
        let mut projects = projects_with(
            &p,
            &[
                (member().user_id, ProjectRole::Member),
                (owner().user_id, ProjectRole::Owner),
            ],
        );
        projects
            .expect_update()
            .withf(|p, expected, default_changed, a| {
                p.version == 2
                    && *expected == 1
                    && p.name.as_str() == "Renamed"
                    && !*default_changed
                    && a.audit.action == "project.updated"
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut members = MockMemberRepository::new();
        members
            .expect_user_ids()
            .withf(move |p| *p == id)
            .times(1)
            .returning(|_| Ok(vec![owner().user_id, member().user_id]));
        let fixture = Fixture {
            projects,
            members,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let patch = UpdateProjectBody {
            name: Some("Renamed".into()),
            ..Default::default()
        };
        let e = update_project(&ports, &member(), id, patch.clone(), Expect::Any, &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::Forbidden));
        assert!(cache.invalidated().is_empty());
        let view = update_project(&ports, &owner(), id, patch, Expect::Any, &meta())
            .await
            .unwrap();
        assert_eq!((view.name.as_str(), view.version), ("Renamed", 2));
        assert_eq!(
            cache.invalidated(),
            [
                format!("project:{id}"),
                format!("projects-of:{}", owner().user_id),
                format!("projects-of:{}", member().user_id),
            ],
            "the project and every member's lists"
        );
        assert_eq!(
            cache.reads(),
            [
                format!("project:{id}#m:{}", member().user_id),
                format!("project:{id}#m:{}", owner().user_id),
            ],
            "authorization reads roles through the cache; the update itself reads the store"
        );
    }

    #[tokio::test]
    async fn update_with_a_stale_if_match_is_412_and_writes_nothing() {
        let p = project();
        let id = p.id;
        let projects = projects_with(&p, &[(owner().user_id, ProjectRole::Owner)]);
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let patch = UpdateProjectBody {
            name: Some("Renamed".into()),
            ..Default::default()
        };
        let e = update_project(&ports, &owner(), id, patch, Expect::OneOf(vec![7]), &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::PreconditionFailed));
    }

    #[tokio::test]
    async fn an_empty_patch_changes_nothing() {
        let p = project();
        let id = p.id;
        let projects = projects_with(&p, &[(owner().user_id, ProjectRole::Owner)]);
        let ports = Fixture {
            projects,
            ..Fixture::default()
        }
        .ports();
        let view = update_project(
            &ports,
            &owner(),
            id,
            UpdateProjectBody::default(),
            Expect::Any,
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.version, 1);
    }

    #[tokio::test]
    async fn only_the_owner_deletes() {
        let p = project();
        let id = p.id;
        let mut projects = projects_with(
            &p,
            &[
                (member().user_id, ProjectRole::Admin),
                (owner().user_id, ProjectRole::Owner),
            ],
        );
        projects
            .expect_delete()
            .withf(move |pid, a| {
                // Nobody is a member once it is delivered: the members of the moment get it.
                *pid == id
                    && a.audit.action == "project.deleted"
                    && a.event.event.event_type == EventType::ProjectDeleted
                    && a.event.also_to == vec![owner().user_id]
                    && a.event.event.data["id"] == json!(id)
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let mut members = MockMemberRepository::new();
        members
            .expect_user_ids()
            .times(1)
            .returning(|_| Ok(vec![owner().user_id]));
        let fixture = Fixture {
            projects,
            members,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        assert!(matches!(
            delete_project(&ports, &member(), id, &meta()).await,
            Err(AppError::Forbidden)
        ));
        delete_project(&ports, &owner(), id, &meta()).await.unwrap();
        let o = owner().user_id;
        assert_eq!(
            cache.invalidated(),
            [
                format!("project:{id}"),
                format!("tasks-of:{id}"),
                format!("projects-of:{o}"),
            ]
        );
        assert!(matches!(
            delete_project(&ports, &stranger(), id, &meta()).await,
            Err(AppError::NotFound("project"))
        ));
    }
}
