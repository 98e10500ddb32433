//! Project invitations: one pending per project and address, pending until they expire,
//! accepted once (the membership in the same transaction), withdrawn with their audit entry.

use keel_domain::StoreError;
use keel_domain::identity::Email;
use keel_domain::mail::Mail;
use keel_domain::tracking::ProjectRole;
use keel_domain::tracking::invitations::{Invitation, InvitationRepository};
use keel_domain::tracking::ports::MemberRepository;
use keel_infrastructure::tracking::{SeaOrmInvitationRepository, SeaOrmMemberRepository};
use uuid::Uuid;

use crate::common::*;

fn invitation(project: Uuid, email: &str, by: Uuid, minute: i64) -> (Invitation, Mail) {
    let email = Email::parse(email).unwrap();
    let i = Invitation::new(
        project,
        email,
        ProjectRole::Member,
        by,
        "ab".repeat(32),
        at(minute),
    );
    let mail = Mail::invitation(
        &i.email,
        "Project",
        "Owner",
        "member",
        format!("{}.x", i.id.simple()),
        at(minute),
    );
    (i, mail)
}

#[tokio::test]
async fn invitations_replace_each_other_expire_and_are_accepted_once() {
    for s in stores().await {
        let invitations = SeaOrmInvitationRepository::new(s.db.clone());
        let members = SeaOrmMemberRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let bea = user(&s, "Bea").await;
        let p = project(&s, "INV", owner).await;

        let (first, mail) = invitation(p.id, "bea@example.com", owner, 0);
        invitations
            .create(&first, &mail, &audit("invitation.created", Some(p.id)).audit)
            .await
            .unwrap();
        let (second, mail) = invitation(p.id, "bea@example.com", owner, 1);
        invitations
            .create(&second, &mail, &audit("invitation.created", Some(p.id)).audit)
            .await
            .unwrap();
        let (other, mail) = invitation(p.id, "cai@example.com", owner, 2);
        invitations
            .create(&other, &mail, &audit("invitation.created", Some(p.id)).audit)
            .await
            .unwrap();
        assert_eq!(
            invitations.find(first.id).await.unwrap(),
            None,
            "replaced: {}",
            s.name
        );
        let (pending, total) = invitations.list_for_project(p.id, at(3), 0, 10).await.unwrap();
        assert_eq!(
            (pending, total),
            (vec![second.clone(), other.clone()], 2),
            "{}",
            s.name
        );
        let later = at(3) + chrono::Duration::days(7);
        assert_eq!(
            invitations.list_for_project(p.id, later, 0, 10).await.unwrap().1,
            0
        );
        let received = invitations
            .list_for_email(&Email::parse("bea@example.com").unwrap(), at(3))
            .await
            .unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].project_key, "INV");
        assert_eq!(received[0].invited_by_name, "Owner");

        // Expired: not accepted, nothing stored.
        let change = audit("member.added", Some(p.id));
        assert!(
            !invitations
                .accept(second.id, bea, ProjectRole::Member, later, None, &change)
                .await
                .unwrap()
        );
        assert_eq!(members.find(p.id, bea).await.unwrap(), None);
        // Accepted once: the membership, and the invitation gone.
        assert!(
            invitations
                .accept(
                    second.id,
                    bea,
                    ProjectRole::Member,
                    at(4),
                    None,
                    &audit("member.added", Some(p.id))
                )
                .await
                .unwrap()
        );
        assert_eq!(
            members.find(p.id, bea).await.unwrap().unwrap().role,
            ProjectRole::Member
        );
        assert!(
            !invitations
                .accept(
                    second.id,
                    bea,
                    ProjectRole::Member,
                    at(4),
                    None,
                    &audit("member.added", Some(p.id))
                )
                .await
                .unwrap(),
            "a used invitation: {}",
            s.name
        );
        // A member already: a conflict, and the invitation stays.
        let (again, mail) = invitation(p.id, "bea@example.com", owner, 5);
        invitations
            .create(&again, &mail, &audit("invitation.created", Some(p.id)).audit)
            .await
            .unwrap();
        assert!(matches!(
            invitations
                .accept(
                    again.id,
                    bea,
                    ProjectRole::Member,
                    at(6),
                    None,
                    &audit("member.added", Some(p.id))
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(invitations.find(again.id).await.unwrap().is_some());

        // Withdrawn with its entry; a second withdrawal is NotFound and records nothing.
        let before = audit_entries(&s, p.id).await;
        invitations
            .delete(p.id, other.id, &audit("invitation.deleted", Some(p.id)).audit)
            .await
            .unwrap();
        assert_eq!(audit_entries(&s, p.id).await, before + 1);
        assert!(matches!(
            invitations
                .delete(p.id, other.id, &audit("invitation.deleted", Some(p.id)).audit)
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(audit_entries(&s, p.id).await, before + 1);
    }
}
