//! Adding a member by e-mail against mocks: an account the caller can already see is added;
//! any other address is invited, with one answer whether or not it has an account, and the
//! work done does not depend on it either.

use std::sync::Arc;

use keel_domain::audit::Authority;
use keel_domain::identity::ports::MockUserRepository;
use keel_domain::identity::tokens::{Grant, Scopes};
use keel_domain::tracking::invitations::MockInvitationRepository;
use keel_domain::tracking::ports::MockMemberRepository;

use super::super::fixtures::*;
use super::*;

const BEA: Uuid = Uuid::from_u128(77);

fn bea() -> Account {
    Account {
        id: BEA,
        name: "Bea".into(),
        email: "bea@example.com".into(),
    }
}

/// `add_member` to the fixture's project by `who`, of `email` with `role`.
async fn add(
    ports: &TrackingPorts,
    who: &Principal,
    email: &str,
    role: &str,
) -> Result<AddedMember, AppError> {
    let body = AddMemberBody {
        email: email.into(),
        role: role.into(),
    };
    add_member(ports, who, PROJECT_ID, body, &meta()).await
}

/// The caller's own account (the inviter's name in the mail); never a look-up by e-mail.
fn users_without_lookups() -> MockUserRepository {
    let mut users = MockUserRepository::new();
    users
        .expect_find_by_id()
        .returning(|id| Ok(Some(account(id, "olga@example.com", "Olga", true))));
    users.expect_find_by_email().never();
    users
}
/// A member store in which the caller sees `visible` only; it adds Bea (once) and then
/// finds her membership.
fn members_seeing(visible: Option<Account>, seen_by: Acquaintance) -> MockMemberRepository {
    let mut members = MockMemberRepository::new();
    members
        .expect_find_acquaintance()
        .withf(move |_, s| *s == seen_by)
        .returning(move |e, _| Ok(visible.clone().filter(|a| a.email == e.as_str())));
    members
        .expect_add()
        .withf(|p, u, r, _, c| {
            *p == PROJECT_ID
                && *u == BEA
                && *r == ProjectRole::Viewer
                && c.audit.action == "member.added"
                && c.audit.authority == Some(Authority::Member(Permission::Administer))
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    members
        .expect_add()
        .returning(|_, _, _, _, _| Err(StoreError::Conflict("pk".into())));
    members.expect_find().returning(|p, u| {
        Ok((u == BEA).then(|| Member {
            project_id: p,
            user_id: u,
            role: ProjectRole::Viewer,
            name: "Bea".into(),
            email: "bea@example.com".into(),
            joined_at: now(),
        }))
    });
    members
}

fn of_owner() -> Acquaintance {
    Acquaintance {
        user_id: owner().user_id,
        within: None,
    }
}

#[tokio::test]
async fn an_account_the_caller_shares_a_project_with_is_added_and_a_second_add_is_409() {
    let mut invitations = MockInvitationRepository::new();
    invitations.expect_create().never();
    let ports = Fixture {
        members: members_seeing(Some(bea()), of_owner()),
        users: users_without_lookups(),
        invitations,
        ..Fixture::default()
    }
    .ports();
    // Matched as stored: trimmed and lower-cased.
    let added = add(&ports, &owner(), " Bea@Example.com ", "viewer")
        .await
        .unwrap();
    let AddedMember::Added(view) = added else {
        panic!("added directly: {added:?}");
    };
    assert_eq!(
        (view.user_id, view.role, view.name.as_str()),
        (BEA, "viewer", "Bea")
    );
    assert!(matches!(
        add(&ports, &owner(), "bea@example.com", "viewer").await,
        Err(AppError::Conflict(_))
    ));
}

#[tokio::test]
async fn an_address_the_caller_cannot_see_is_invited_alike_whether_or_not_it_has_an_account() {
    // The store answers `None` for an account the owner shares no project with and for an
    // address without an account alike; the use case does the same work after it: one
    // invitation each, no look-up by e-mail, nothing added.
    let mut members = MockMemberRepository::new();
    members
        .expect_find_acquaintance()
        .withf(|_, s| *s == of_owner())
        .times(2)
        .returning(|_, _| Ok(None));
    members.expect_add().never();
    let mut invitations = MockInvitationRepository::new();
    invitations
        .expect_create()
        .withf(|i, mail, entry| {
            i.project_id == PROJECT_ID
                && i.role == ProjectRole::Member
                && i.invited_by == owner().user_id
                && mail.to == i.email.as_str()
                && mail.values["inviter"] == "Olga"
                && entry.action == "invitation.created"
                && entry.authority == Some(Authority::Member(Permission::Administer))
        })
        .times(2)
        .returning(|_, _, _| Ok(()));
    let ports = Fixture {
        members,
        users: users_without_lookups(),
        invitations,
        token_secrets: secrets(),
        ..Fixture::default()
    }
    .ports();
    let mut answers = Vec::new();
    for email in ["bea@example.com", "nobody@example.com"] {
        match add(&ports, &owner(), email, "member").await {
            Ok(AddedMember::Invited(view)) => answers.push(view),
            other => panic!("{email}: invited, not {other:?}"),
        }
    }
    let shape = |v: &InvitationView| {
        let mut json = serde_json::to_value(v).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("id");
        object.remove("email");
        json
    };
    // The same answer but for the address and the invitation's own id.
    assert_eq!(shape(&answers[0]), shape(&answers[1]));
    assert_eq!(
        serde_json::to_value(&answers[0])
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        (answers[0].email.as_str(), answers[1].email.as_str()),
        ("bea@example.com", "nobody@example.com")
    );
}

#[tokio::test]
async fn only_project_admins_add_and_nothing_is_looked_up_before_the_role_check() {
    let mut members = MockMemberRepository::new();
    members.expect_find_acquaintance().never();
    let mut invitations = MockInvitationRepository::new();
    invitations.expect_create().never();
    let ports = Fixture {
        members,
        users: users_without_lookups(),
        invitations,
        ..Fixture::default()
    }
    .ports();
    for (who, refused) in [(member(), "403"), (viewer(), "403"), (stranger(), "404")] {
        let e = add(&ports, &who, "bea@example.com", "member").await.unwrap_err();
        match refused {
            "403" => assert!(matches!(e, AppError::Forbidden), "{e:?}"),
            _ => assert!(matches!(e, AppError::NotFound("project")), "{e:?}"),
        }
    }
}

#[tokio::test]
async fn an_instance_admin_sees_every_account_and_invites_only_unknown_addresses() {
    let mut users = MockUserRepository::new();
    users.expect_find_by_email().returning(|e| {
        Ok((e.as_str() == "bea@example.com").then(|| account(BEA, "bea@example.com", "Bea", true)))
    });
    users
        .expect_find_by_id()
        .returning(|id| Ok(Some(account(id, "root@example.com", "Root", true))));
    let mut members = MockMemberRepository::new();
    members.expect_find_acquaintance().never();
    members.expect_add().times(1).returning(|_, _, _, _, _| Ok(()));
    members.expect_find().returning(|p, u| {
        Ok(Some(Member {
            project_id: p,
            user_id: u,
            role: ProjectRole::Viewer,
            name: "Bea".into(),
            email: "bea@example.com".into(),
            joined_at: now(),
        }))
    });
    let mut invitations = MockInvitationRepository::new();
    invitations.expect_create().times(1).returning(|_, _, _| Ok(()));
    let ports = Fixture {
        members,
        users,
        invitations,
        token_secrets: secrets(),
        ..Fixture::default()
    }
    .ports();
    assert!(matches!(
        add(&ports, &admin(), "bea@example.com", "viewer").await,
        Ok(AddedMember::Added(_))
    ));
    assert!(matches!(
        add(&ports, &admin(), "nobody@example.com", "viewer").await,
        Ok(AddedMember::Invited(_))
    ));
}

#[tokio::test]
async fn a_token_limited_to_projects_sees_the_members_of_those_projects_only() {
    let mut limited = owner();
    limited.grant = Some(Arc::new(Grant {
        token_id: Uuid::from_u128(0x70),
        scopes: Scopes::parse(&["write"]).unwrap(),
        project_ids: Some(vec![PROJECT_ID]),
    }));
    let seen_by = Acquaintance {
        user_id: owner().user_id,
        within: Some(vec![PROJECT_ID]),
    };
    let ports = Fixture {
        members: members_seeing(Some(bea()), seen_by),
        users: users_without_lookups(),
        ..Fixture::default()
    }
    .ports();
    assert!(matches!(
        add(&ports, &limited, "bea@example.com", "viewer").await,
        Ok(AddedMember::Added(_))
    ));
    // An instance admin's token without the `admin` scope cannot list every account: it
    // sees as its user does.
    let mut admin_token = admin();
    admin_token.grant = Some(Arc::new(Grant {
        token_id: Uuid::from_u128(0x71),
        scopes: Scopes::parse(&["write"]).unwrap(),
        project_ids: None,
    }));
    assert_eq!(
        acquaintances_of(&admin_token),
        Some(Acquaintance {
            user_id: admin().user_id,
            within: None
        })
    );
    assert_eq!(acquaintances_of(&admin()), None);
}

#[tokio::test]
async fn an_address_only_the_old_rule_accepts_is_refused_when_it_would_be_invited() {
    // `parse_existing` finds old accounts; an invitation follows the rule for new
    // addresses: a 400 naming the field, nothing written — for every such address alike.
    let mut members = MockMemberRepository::new();
    members
        .expect_find_acquaintance()
        .times(1)
        .returning(|_, _| Ok(None));
    let mut invitations = MockInvitationRepository::new();
    invitations.expect_create().never();
    let ports = Fixture {
        members,
        users: users_without_lookups(),
        invitations,
        ..Fixture::default()
    }
    .ports();
    let e = add(&ports, &owner(), "jörg@example.com", "member")
        .await
        .unwrap_err();
    assert_eq!(fields(e), vec!["email"]);
}
