//! Members of a project: list, add, change roles (and hand ownership over), remove.
//!
//! Rules: a project has exactly one owner. Project admins add, change and remove members
//! but never make or unmake the owner; the owner (or an instance admin) hands ownership to
//! another member with `role: owner`, and the previous owner becomes an admin. The owner
//! cannot be removed. Any member may leave a project (remove themselves), but its owner.
//! Adding by e-mail adds only an account the caller can already see (one sharing a project
//! with them); any other address is invited, with one answer whether or not it has an
//! account (docs/security.md, "Adding members by e-mail").

use futures::TryFutureExt;
use keel_domain::events::EventType;
use keel_domain::identity::tokens::Scope;
use keel_domain::identity::{Email, Principal};
use keel_domain::tracking::{Account, Acquaintance, Member, Permission, ProjectRole};
use keel_domain::{FieldError, StoreError};
use serde_json::json;
use uuid::Uuid;

use super::inputs::{AddMemberBody, UpdateMemberBody};
use super::invitations::{InvitationView, send_invitation};
use super::views::{MemberView, event_data};
use super::{TrackingPorts, check, not_found_as, validated};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{Page, PageRequest};

pub async fn list_members(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    page: PageRequest,
) -> Result<Page<MemberView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Read, "project")
        .await?;
    let (members, total) = ports
        .members
        .list(project_id, page.offset(), u64::from(page.limit()))
        .await?;
    Ok(Page::new(
        members.iter().map(MemberView::from).collect(),
        page,
        total,
    ))
}

pub(crate) fn assignable_role(raw: &str) -> Result<ProjectRole, FieldError> {
    match ProjectRole::parse(raw, "role")? {
        ProjectRole::Owner => Err(FieldError::new(
            "role",
            "must be admin, member or viewer; ownership is handed over by changing a member's role to owner",
        )),
        role => Ok(role),
    }
}

fn owner_unchanged() -> AppError {
    AppError::Conflict("the owner's role changes only by handing ownership to another member".into())
}

fn owner_stays() -> AppError {
    AppError::Conflict("the owner cannot be removed; hand ownership to another member first".into())
}

/// What `POST /projects/{id}/members` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddedMember {
    /// An account the caller could already see joined the project.
    Added(MemberView),
    /// Any other address — an account the caller cannot see, or none — was invited: the
    /// same answer either way.
    Invited(InvitationView),
}

/// Whose accounts `principal` can see, or `None` for every account: an instance admin lists
/// them all (`GET /admin/users`) unless the credential is a personal access token without
/// the `admin` scope. Anyone else sees the members of the projects they share, and a token
/// limited to some projects only those projects' members.
fn acquaintances_of(principal: &Principal) -> Option<Acquaintance> {
    let sees_everyone = principal.is_admin()
        && principal
            .grant
            .as_ref()
            .is_none_or(|g| g.scopes.contains(Scope::Admin));
    (!sees_everyone).then(|| Acquaintance {
        user_id: principal.user_id,
        within: principal.project_limit().map(<[Uuid]>::to_vec),
    })
}

/// Adds an account the caller can already see to the project (project admins); any other
/// address is invited instead (`invitations`), with one answer whether or not it has an
/// account: a project admin — which any user can be, of a project of their own — learns
/// nothing about accounts they do not share a project with.
pub async fn add_member(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: AddMemberBody,
    meta: &RequestMeta,
) -> Result<AddedMember, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Administer, "project", None)
        .await?;
    let mut errors = Vec::new();
    // A look-up of an existing account, which may predate the ASCII-only rule.
    let email = check(&mut errors, Email::parse_existing(&body.email));
    let role = check(&mut errors, assignable_role(&body.role));
    validated(errors)?;
    let (Some(email), Some(role)) = (email, role) else {
        return Err(AppError::internal("validated input missing"));
    };
    // One statement, the same whether the address has an account the caller cannot see or
    // none: both are `None`.
    let visible = match acquaintances_of(principal) {
        Some(seen_by) => ports.members.find_acquaintance(&email, &seen_by).await?,
        None => ports.users.find_by_email(&email).await?.map(|u| Account {
            id: u.id,
            name: u.name.as_str().to_owned(),
            email: u.email.as_str().to_owned(),
        }),
    };
    let Some(user) = visible else {
        // An invitation is addressed under the rule new addresses follow.
        let email = Email::parse(&body.email).map_err(|e| AppError::Validation(vec![e]))?;
        let invited = send_invitation(ports, principal, &access, email, role, meta).await?;
        return Ok(AddedMember::Invited(invited));
    };
    let now = ports.clock.now();
    let joined = Member {
        project_id,
        user_id: user.id,
        role,
        name: user.name,
        email: user.email,
        joined_at: now,
    };
    let change = ports
        .change(meta, principal, EventType::MemberAdded, project_id)
        .resource(user.id)
        .needs(Permission::Administer)
        .details(json!({ "userId": user.id, "role": role.as_str() }))
        .data(event_data(&MemberView::from(&joined)))
        .build();
    ports
        .commit(
            &change,
            ports
                .members
                .add(project_id, user.id, role, now, &change)
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        AppError::Conflict("this user is a member of the project already".into())
                    }
                    other => other.into(),
                }),
        )
        .await?;
    let member = ports
        .members
        .find(project_id, user.id)
        .await?
        .ok_or(AppError::NotFound("member"))?;
    Ok(AddedMember::Added(MemberView::from(&member)))
}

/// Changes a member's role (project admins); `owner` hands the project over (its owner or
/// an instance admin).
pub async fn update_member(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    user_id: Uuid,
    body: UpdateMemberBody,
    meta: &RequestMeta,
) -> Result<MemberView, AppError> {
    let my_role = ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let role = ProjectRole::parse(&body.role, "role").map_err(|e| AppError::Validation(vec![e]))?;
    let member = ports
        .members
        .find(project_id, user_id)
        .await?
        .ok_or(AppError::NotFound("member"))?;
    if member.role == role {
        return Ok(MemberView::from(&member));
    }
    let now = ports.clock.now();
    if role == ProjectRole::Owner {
        if !my_role.allows(Permission::Own) {
            return Err(AppError::Forbidden);
        }
        let mut data = event_data(&MemberView::from(&Member {
            role: ProjectRole::Owner,
            ..member.clone()
        }));
        let previous_owner = ports
            .projects
            .find(project_id)
            .await?
            .ok_or(AppError::NotFound("project"))?
            .owner_id;
        let mut before = event_data(&MemberView::from(&member));
        for object in [data.as_object_mut(), before.as_object_mut()]
            .into_iter()
            .flatten()
        {
            // The previous owner is an admin now; the one event says so (not a change of
            // this member's: both sides carry it).
            object.insert("previousOwnerId".into(), json!(previous_owner));
        }
        // `ownershipTransferred` also tells the cache that the project's owner changed.
        let change = ports
            .change(meta, principal, EventType::MemberUpdated, project_id)
            .resource(user_id)
            .needs(Permission::Own)
            .details(json!({ "userId": user_id, "role": "owner", "ownershipTransferred": true }))
            .before(before)
            .data(data)
            .build();
        ports
            .commit(
                &change,
                ports
                    .members
                    .transfer_ownership(project_id, user_id, now, &change)
                    .map_err(not_found_as("member")),
            )
            .await?;
    } else {
        if member.role == ProjectRole::Owner {
            return Err(owner_unchanged());
        }
        let change = ports
            .change(meta, principal, EventType::MemberUpdated, project_id)
            .resource(user_id)
            .needs(Permission::Administer)
            .details(
                json!({ "userId": user_id, "role": role.as_str(), "previousRole": member.role.as_str() }),
            )
            .before(event_data(&MemberView::from(&member)))
            .data(event_data(&MemberView::from(&Member {
                role,
                ..member.clone()
            })))
            .build();
        // The store refuses too if they became the owner since they were read.
        ports
            .commit(
                &change,
                ports
                    .members
                    .set_role(project_id, user_id, role, &change)
                    .map_err(|e| match e {
                        StoreError::Conflict(_) => owner_unchanged(),
                        other => not_found_as("member")(other),
                    }),
            )
            .await?;
    }
    let member = ports
        .members
        .find(project_id, user_id)
        .await?
        .ok_or(AppError::NotFound("member"))?;
    Ok(MemberView::from(&member))
}

/// Removes a member (project admins), or the caller leaves (any member but the owner).
/// Their tasks in the project are unassigned.
pub async fn remove_member(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let permission = if user_id == principal.user_id {
        Permission::Read
    } else {
        Permission::Administer
    };
    ports
        .authorize(principal, project_id, permission, "project")
        .await?;
    let member = ports
        .members
        .find(project_id, user_id)
        .await?
        .ok_or(AppError::NotFound("member"))?;
    if member.role == ProjectRole::Owner {
        return Err(owner_stays());
    }
    let details = json!({ "userId": user_id, "role": member.role.as_str() });
    // The member is gone when the event is delivered: they receive it by name.
    let change = ports
        .change(meta, principal, EventType::MemberRemoved, project_id)
        .resource(user_id)
        .needs(permission)
        .details(details.clone())
        .data(details)
        .also_to(vec![user_id])
        .build();
    // Their tasks are unassigned: the store answers which.
    ports
        .commit(
            &change,
            ports
                .members
                .remove(project_id, user_id, ports.clock.now(), &change)
                .map_err(|e| match e {
                    StoreError::Conflict(_) => owner_stays(),
                    other => not_found_as("member")(other),
                }),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
#[path = "members_add_tests.rs"]
mod add_tests;

#[cfg(test)]
mod tests {
    use keel_domain::audit::Authority;
    use keel_domain::identity::Role;
    use keel_domain::tracking::Member;
    use keel_domain::tracking::ports::MockMemberRepository;

    use super::super::fixtures::*;
    use super::*;

    fn membership(user_id: Uuid, role: ProjectRole) -> Member {
        Member {
            project_id: PROJECT_ID,
            user_id,
            role,
            name: "Bea".into(),
            email: "bea@example.com".into(),
            joined_at: now(),
        }
    }

    /// A member store holding `cast()` plus user 77, whose `find` reflects `role`.
    fn members_with(role_of_77: ProjectRole) -> MockMemberRepository {
        let mut members = MockMemberRepository::new();
        members.expect_find().returning(move |_, u| {
            let role = cast()
                .into_iter()
                .find(|(id, _)| *id == u)
                .map(|(_, r)| r)
                .or((u == Uuid::from_u128(77)).then_some(role_of_77));
            Ok(role.map(|r| membership(u, r)))
        });
        members
    }

    #[tokio::test]
    async fn owner_is_not_an_assignable_role_and_errors_come_together() {
        let ports = Fixture::default().ports();
        let body = AddMemberBody {
            email: "nope".into(),
            role: "owner".into(),
        };
        let e = add_member(&ports, &owner(), PROJECT_ID, body, &meta())
            .await
            .unwrap_err();
        assert_eq!(fields(e), vec!["email", "role"]);
    }

    #[tokio::test]
    async fn role_owner_transfers_ownership_and_only_the_owner_may() {
        let mut members = members_with(ProjectRole::Member);
        members
            .expect_transfer_ownership()
            .withf(|p, to, _, a| {
                // The store re-checks, in its transaction, that the caller still owns it.
                *p == PROJECT_ID
                    && *to == Uuid::from_u128(77)
                    && a.audit.action == "member.updated"
                    && a.audit.authority == Some(Authority::Member(Permission::Own))
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        members
            .expect_user_ids()
            .times(1)
            .returning(|_| Ok(vec![owner().user_id, Uuid::from_u128(77)]));
        let mut roles = cast();
        roles.push((Uuid::from_u128(88), ProjectRole::Admin));
        let projects = projects_with(&project(), &roles);
        let fixture = Fixture {
            members,
            projects,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let to_owner = || UpdateMemberBody { role: "owner".into() };
        let admin_of_project = keel_domain::identity::Principal {
            user_id: Uuid::from_u128(88),
            session_id: Uuid::nil(),
            role: Role::User,
            expires_at: super::super::fixtures::now() + chrono::Duration::minutes(15),
            grant: None,
        };
        assert!(matches!(
            update_member(
                &ports,
                &admin_of_project,
                PROJECT_ID,
                Uuid::from_u128(77),
                to_owner(),
                &meta()
            )
            .await,
            Err(AppError::Forbidden)
        ));
        update_member(
            &ports,
            &owner(),
            PROJECT_ID,
            Uuid::from_u128(77),
            to_owner(),
            &meta(),
        )
        .await
        .unwrap();
        let new_owner = Uuid::from_u128(77);
        let old_owner = owner().user_id;
        assert_eq!(
            cache.invalidated(),
            [
                format!("project:{PROJECT_ID}"),
                format!("projects-of:{old_owner}"),
                format!("projects-of:{new_owner}"),
            ],
            "the project (with every member's access) and both members' lists"
        );
    }

    #[tokio::test]
    async fn the_owner_cannot_be_demoted_or_removed() {
        let ports = Fixture {
            members: members_with(ProjectRole::Member),
            ..Fixture::default()
        }
        .ports();
        let e = update_member(
            &ports,
            &owner(),
            PROJECT_ID,
            owner().user_id,
            UpdateMemberBody { role: "admin".into() },
            &meta(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AppError::Conflict(_)), "{e:?}");
        let e = remove_member(&ports, &admin(), PROJECT_ID, owner().user_id, &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::Conflict(_)), "{e:?}");
    }

    #[tokio::test]
    async fn members_may_leave_but_not_remove_others() {
        let mut members = members_with(ProjectRole::Member);
        members
            .expect_remove()
            .withf(|p, u, _, a| {
                // The removed member is no longer one when it is delivered: named, they get it.
                *p == PROJECT_ID
                    && *u == viewer().user_id
                    && a.audit.action == "member.removed"
                    // Leaving needs only to be a member still.
                    && a.audit.authority == Some(Authority::Member(Permission::Read))
                    && a.event.also_to == vec![viewer().user_id]
                    && a.event.event.data["userId"] == json!(viewer().user_id)
            })
            .times(1)
            .returning(|_, _, _, _| Ok(vec![Uuid::from_u128(41)]));
        let fixture = Fixture {
            members,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        assert!(matches!(
            remove_member(&ports, &viewer(), PROJECT_ID, member().user_id, &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(
            cache.invalidated().is_empty(),
            "a refused removal invalidates nothing"
        );
        remove_member(&ports, &viewer(), PROJECT_ID, viewer().user_id, &meta())
            .await
            .unwrap();
        let viewer_id = viewer().user_id;
        assert_eq!(
            cache.invalidated(),
            [
                format!("project:{PROJECT_ID}"),
                format!("projects-of:{viewer_id}"),
                format!("tasks-of:{PROJECT_ID}"),
                format!("task:{}", Uuid::from_u128(41)),
            ],
            "the leaver's role and lists, and the tasks they no longer hold"
        );
        assert!(matches!(
            remove_member(&ports, &stranger(), PROJECT_ID, stranger().user_id, &meta()).await,
            Err(AppError::NotFound("project"))
        ));
    }

    #[tokio::test]
    async fn set_role_changes_a_member_and_unknown_users_are_404() {
        let mut members = members_with(ProjectRole::Member);
        members
            .expect_set_role()
            .withf(|_, u, r, _| *u == Uuid::from_u128(77) && *r == ProjectRole::Admin)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let ports = Fixture {
            members,
            ..Fixture::default()
        }
        .ports();
        let body = || UpdateMemberBody { role: "admin".into() };
        update_member(&ports, &owner(), PROJECT_ID, Uuid::from_u128(77), body(), &meta())
            .await
            .unwrap();
        assert!(matches!(
            update_member(&ports, &owner(), PROJECT_ID, Uuid::from_u128(99), body(), &meta()).await,
            Err(AppError::NotFound("member"))
        ));
    }
}
