//! Invitation rules against mocks: who may invite and with which role, the answer not
//! depending on the address, expiry, the e-mail match, single use.

use keel_domain::StoreError;
use keel_domain::identity::ports::MockUserRepository;
use keel_domain::identity::{Email, Role};
use keel_domain::mail::MailTemplate;
use keel_domain::tracking::ProjectRole;
use keel_domain::tracking::invitations::{Invitation, MockInvitationRepository};

use super::super::fixtures::*;
use super::*;

const BEA: Uuid = Uuid::from_u128(77);

fn bea() -> Principal {
    Principal {
        user_id: BEA,
        session_id: Uuid::from_u128(1077),
        role: Role::User,
        expires_at: now() + chrono::Duration::minutes(15),
        grant: None,
    }
}

/// Users: the owner (Olga) and Bea (bea@example.com).
fn users() -> MockUserRepository {
    let mut users = MockUserRepository::new();
    users.expect_find_by_id().returning(|id| {
        Ok(if id == owner().user_id {
            Some(account(id, "olga@example.com", "Olga", true))
        } else if id == BEA {
            Some(account(id, "bea@example.com", "Bea", true))
        } else {
            None
        })
    });
    users.expect_find_by_email().never();
    users
}

fn stored(email: &str, expires_in: chrono::Duration) -> Invitation {
    Invitation {
        id: Uuid::from_u128(0x1111),
        project_id: PROJECT_ID,
        email: Email::parse(email).unwrap(),
        role: ProjectRole::Viewer,
        invited_by: owner().user_id,
        secret_hash: "hash(s3cret)".into(),
        expires_at: now() + expires_in,
        created_at: now() - chrono::Duration::days(1),
    }
}

fn token() -> String {
    format!("{}.s3cret", Uuid::from_u128(0x1111).simple())
}

#[tokio::test]
async fn admins_invite_any_address_alike_with_a_mailed_token_and_an_entry_without_it() {
    let mut invitations = MockInvitationRepository::new();
    invitations
        .expect_create()
        .withf(|i, mail, entry| {
            let link_token = mail.values.get("token").cloned().unwrap_or_default();
            i.project_id == PROJECT_ID
                && i.role == ProjectRole::Member
                && i.invited_by == owner().user_id
                && i.secret_hash == "hash(s3cret)"
                && i.expires_at == now() + chrono::Duration::days(7)
                && mail.template == MailTemplate::Invitation
                && mail.to == i.email.as_str()
                && link_token == format!("{}.s3cret", i.id.simple())
                && mail.values["project"] == "Keel"
                && mail.values["inviter"] == "Olga"
                && entry.action == "invitation.created"
                && entry.details == Some(json!({ "role": "member" }))
                && entry.restricted == Some(json!({ "email": i.email.as_str() }))
                && entry.authority == Some(Authority::Member(Permission::Administer))
                && !entry
                    .details
                    .iter()
                    .chain(entry.restricted.iter())
                    .any(|d| d.to_string().contains("s3cret"))
        })
        .times(2)
        .returning(|_, _, _| Ok(()));
    let ports = Fixture {
        users: users(),
        invitations,
        token_secrets: secrets(),
        ..Fixture::default()
    }
    .ports();
    // An address with an account and one without: the same work (no look-up: `users`
    // refuses `find_by_email`) and the same answer but for the address.
    let mut views = Vec::new();
    for email in ["Bea@Example.com", "nobody@example.com"] {
        let body = InviteBody {
            email: email.into(),
            role: "member".into(),
        };
        views.push(invite(&ports, &owner(), PROJECT_ID, body, &meta()).await.unwrap());
    }
    assert_eq!(views[0].email, "bea@example.com");
    assert_eq!(
        (views[0].role, views[0].invited_by, views[0].expires_at),
        (views[1].role, views[1].invited_by, views[1].expires_at)
    );
}

#[tokio::test]
async fn only_admins_invite_never_as_owner_and_bad_fields_come_together() {
    let mut invitations = MockInvitationRepository::new();
    invitations.expect_create().never();
    let ports = Fixture {
        users: users(),
        invitations,
        token_secrets: secrets(),
        ..Fixture::default()
    }
    .ports();
    let body = |email: &str, role: &str| InviteBody {
        email: email.into(),
        role: role.into(),
    };
    assert!(matches!(
        invite(&ports, &member(), PROJECT_ID, body("a@b.co", "viewer"), &meta()).await,
        Err(AppError::Forbidden)
    ));
    assert!(matches!(
        invite(&ports, &stranger(), PROJECT_ID, body("a@b.co", "viewer"), &meta()).await,
        Err(AppError::NotFound("project"))
    ));
    let e = invite(&ports, &owner(), PROJECT_ID, body("nope", "owner"), &meta())
        .await
        .unwrap_err();
    assert_eq!(fields(e), vec!["email", "role"]);
}

/// Ports whose store holds `invitation`; `accepts` says what its `accept` answers (never
/// called when `None`).
fn accepting(
    invitation: Invitation,
    accepts: Option<Result<bool, StoreError>>,
) -> (
    TrackingPorts,
    std::sync::Arc<crate::cache::testing::RecordingCache>,
) {
    let mut invitations = MockInvitationRepository::new();
    let found = invitation.clone();
    invitations
        .expect_find()
        .returning(move |id| Ok((id == found.id).then(|| found.clone())));
    match accepts {
        Some(answer) => {
            let answer = std::sync::Mutex::new(Some(answer));
            invitations
                .expect_accept()
                .withf(|id, user, role, _, account, change| {
                    *id == Uuid::from_u128(0x1111)
                        && *user == BEA
                        && *role == ProjectRole::Viewer
                        && account.is_none()
                        && change.event_type() == EventType::MemberAdded
                        && change.audit.authority.is_none()
                        && !change
                            .audit
                            .details
                            .as_ref()
                            .unwrap()
                            .to_string()
                            .contains("s3cret")
                })
                .times(1)
                .returning(move |_, _, _, _, _, _| answer.lock().unwrap().take().unwrap());
        }
        None => {
            invitations.expect_accept().never();
        }
    }
    let mut roles = cast();
    roles.push((BEA, ProjectRole::Viewer));
    let fixture = Fixture {
        users: users(),
        invitations,
        token_secrets: secrets(),
        projects: projects_with(&project(), &roles),
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    (fixture.ports(), cache)
}

fn accept_body(token: String) -> AcceptInvitationBody {
    AcceptInvitationBody { token }
}

#[tokio::test]
async fn the_invited_address_accepts_once_and_joins_with_the_invited_role() {
    let (ports, cache) = accepting(
        stored("bea@example.com", chrono::Duration::days(6)),
        Some(Ok(true)),
    );
    let view = accept_invitation(&ports, &bea(), accept_body(token()), &meta())
        .await
        .unwrap();
    assert_eq!((view.id, view.my_role), (PROJECT_ID, "viewer"));
    assert_eq!(
        cache.invalidated()[..2],
        [format!("project:{PROJECT_ID}"), format!("projects-of:{BEA}")],
        "the new member's role and project list"
    );
    // Used (or withdrawn) meanwhile: the store refuses it, and so does the answer.
    let (ports, cache) = accepting(
        stored("bea@example.com", chrono::Duration::days(6)),
        Some(Ok(false)),
    );
    assert!(matches!(
        accept_invitation(&ports, &bea(), accept_body(token()), &meta()).await,
        Err(AppError::InvalidToken)
    ));
    assert!(cache.invalidated().is_empty());
    // A member already: 409, the invitation stays (the store rolled back).
    let (ports, _) = accepting(
        stored("bea@example.com", chrono::Duration::days(6)),
        Some(Err(StoreError::Conflict("pk".into()))),
    );
    assert!(matches!(
        accept_invitation(&ports, &bea(), accept_body(token()), &meta()).await,
        Err(AppError::Conflict(_))
    ));
}

#[tokio::test]
async fn another_address_an_expired_a_forged_or_a_malformed_token_is_one_invalid_token() {
    let cases = [
        (stored("cai@example.com", chrono::Duration::days(6)), token()),
        (stored("bea@example.com", chrono::Duration::zero()), token()),
        (
            stored("bea@example.com", chrono::Duration::days(6)),
            format!("{}.guess", Uuid::from_u128(0x1111).simple()),
        ),
        (
            stored("bea@example.com", chrono::Duration::days(6)),
            format!("{}.s3cret", Uuid::from_u128(0x2222).simple()),
        ),
        (
            stored("bea@example.com", chrono::Duration::days(6)),
            "s3cret".into(),
        ),
    ];
    for (invitation, raw) in cases {
        let (ports, _) = accepting(invitation, None);
        let e = accept_invitation(&ports, &bea(), accept_body(raw), &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::InvalidToken), "{e:?}");
    }
}

#[tokio::test]
async fn a_personal_access_token_cannot_accept() {
    let (ports, _) = accepting(stored("bea@example.com", chrono::Duration::days(6)), None);
    let mut by_token = bea();
    by_token.grant = Some(std::sync::Arc::new(keel_domain::identity::tokens::Grant {
        token_id: Uuid::now_v7(),
        scopes: keel_domain::identity::tokens::Scopes::parse(&["write"]).unwrap(),
        project_ids: None,
    }));
    assert!(matches!(
        accept_invitation(&ports, &by_token, accept_body(token()), &meta()).await,
        Err(AppError::InsufficientScope)
    ));
}

#[tokio::test]
async fn the_invitee_lists_pending_invitations_only_once_the_address_is_verified() {
    for verified in [true, false] {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_id()
            .returning(move |id| Ok(Some(account(id, "bea@example.com", "Bea", verified))));
        let mut invitations = MockInvitationRepository::new();
        invitations
            .expect_list_for_email()
            .withf(|email, at| email.as_str() == "bea@example.com" && *at == now())
            .times(usize::from(verified))
            .returning(|_, _| {
                Ok(vec![keel_domain::tracking::invitations::ReceivedInvitation {
                    invitation: stored("bea@example.com", chrono::Duration::days(6)),
                    project_key: "KEEL".into(),
                    project_name: "Keel".into(),
                    invited_by_name: "Olga".into(),
                }])
            });
        let ports = Fixture {
            users,
            invitations,
            ..Fixture::default()
        }
        .ports();
        let list = received_invitations(&ports, &bea()).await.unwrap();
        assert_eq!(list.data.len(), usize::from(verified));
        if verified {
            assert_eq!(
                (
                    list.data[0].project_key.as_str(),
                    list.data[0].invited_by_name.as_str(),
                    list.data[0].role
                ),
                ("KEEL", "Olga", "viewer")
            );
        }
    }
}

#[tokio::test]
async fn admins_list_and_withdraw_their_projects_invitations_only() {
    let mut invitations = MockInvitationRepository::new();
    invitations
        .expect_list_for_project()
        .withf(|p, at, offset, limit| *p == PROJECT_ID && *at == now() && *offset == 0 && *limit == 20)
        .times(1)
        .returning(|_, _, _, _| Ok((vec![stored("bea@example.com", chrono::Duration::days(6))], 1)));
    invitations.expect_find().returning(|id| {
        let mut elsewhere = stored("cai@example.com", chrono::Duration::days(6));
        elsewhere.project_id = Uuid::from_u128(0xCCCC);
        Ok(match id.as_u128() {
            0x1111 => Some(stored("bea@example.com", chrono::Duration::days(6))),
            0x3333 => Some(elsewhere),
            _ => None,
        })
    });
    invitations
        .expect_delete()
        .withf(|p, id, entry| {
            *p == PROJECT_ID
                && *id == Uuid::from_u128(0x1111)
                && entry.action == "invitation.deleted"
                && entry.restricted == Some(json!({ "email": "bea@example.com" }))
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let ports = Fixture {
        invitations,
        ..Fixture::default()
    }
    .ports();
    let page = list_invitations(
        &ports,
        &owner(),
        PROJECT_ID,
        PageRequest::parse(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(matches!(
        list_invitations(
            &ports,
            &viewer(),
            PROJECT_ID,
            PageRequest::parse(None, None).unwrap()
        )
        .await,
        Err(AppError::Forbidden)
    ));
    withdraw_invitation(&ports, &owner(), PROJECT_ID, Uuid::from_u128(0x1111), &meta())
        .await
        .unwrap();
    for other in [0x3333, 0x4444] {
        assert!(matches!(
            withdraw_invitation(&ports, &owner(), PROJECT_ID, Uuid::from_u128(other), &meta()).await,
            Err(AppError::NotFound("invitation"))
        ));
    }
}
