//! Members: removal unassigns, ownership transfer, list, add and roles.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{MemberRepository, ProjectRepository, TaskRepository};
use keel_domain::tracking::{Project, ProjectRole};
use uuid::Uuid;

use crate::common::*;

// (f), (g) Members

#[tokio::test]
async fn removing_a_member_unassigns_their_tasks() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let p = project(&s, "REM", owner).await;
        let elsewhere = project(&s, "ELSE", owner).await;
        for project_id in [p.id, elsewhere.id] {
            s.members
                .add(
                    project_id,
                    alice,
                    ProjectRole::Member,
                    at(1),
                    &audit("member.added", Some(project_id)),
                )
                .await
                .unwrap();
        }
        let assigned = |pr: &Project, who: Uuid, title: &str| {
            let mut t = task_value(pr, owner, title);
            t.assignee_id = Some(who);
            t
        };
        let a1 = create_task(&s, assigned(&p, alice, "Alice 1"), &[]).await;
        let a2 = create_task(&s, assigned(&p, alice, "Alice 2"), &[]).await;
        let o1 = create_task(&s, assigned(&p, owner, "Owner 1"), &[]).await;
        let a3 = create_task(&s, assigned(&elsewhere, alice, "Alice elsewhere"), &[]).await;

        s.members
            .remove(p.id, alice, at(30), &audit("member.removed", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(s.projects.role_of(p.id, alice).await.unwrap(), None, "{}", s.name);
        assert_eq!(s.members.find(p.id, alice).await.unwrap(), None);
        for t in [&a1, &a2] {
            let now = s.tasks.find(t.id).await.unwrap().unwrap();
            assert_eq!(now.assignee_id, None, "{}", s.name);
            assert_eq!(now.version, t.version + 1, "{}", s.name);
            assert_eq!(now.updated_at, at(30), "{}", s.name);
        }
        assert_eq!(s.tasks.find(o1.id).await.unwrap().unwrap(), o1, "{}", s.name);
        assert_eq!(
            s.tasks.find(a3.id).await.unwrap().unwrap(),
            a3,
            "{}: other projects keep the assignment",
            s.name
        );
        assert!(matches!(
            s.members
                .remove(p.id, alice, at(31), &audit("member.removed", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn transferring_ownership_swaps_roles_and_owner() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let carol = user(&s, "Carol").await;
        let p = project(&s, "OWN", ann).await;
        s.members
            .add(
                p.id,
                bob,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();

        s.members
            .transfer_ownership(p.id, bob, at(10), &audit("project.transferred", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(
            s.projects.role_of(p.id, ann).await.unwrap(),
            Some(ProjectRole::Admin)
        );
        assert_eq!(
            s.projects.role_of(p.id, bob).await.unwrap(),
            Some(ProjectRole::Owner)
        );
        let now = s.projects.find(p.id).await.unwrap().unwrap();
        assert_eq!(now.owner_id, bob, "{}", s.name);
        assert_eq!(now.version, p.version + 1, "{}", s.name);
        assert_eq!(now.updated_at, at(10), "{}", s.name);

        // Not a member (and not even a user): NotFound, nothing changes.
        for stranger in [carol, Uuid::now_v7()] {
            let entry = audit("project.transferred", Some(p.id));
            assert!(matches!(
                s.members.transfer_ownership(p.id, stranger, at(20), &entry).await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 0, "{}", s.name);
        }
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap(), now, "{}", s.name);
        assert_eq!(
            s.projects.role_of(p.id, bob).await.unwrap(),
            Some(ProjectRole::Owner)
        );
        assert!(matches!(
            s.members
                .transfer_ownership(Uuid::now_v7(), bob, at(20), &audit("x", None))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn members_list_find_add_and_set_role() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let carol = user(&s, "Carol").await;
        let p = project(&s, "MEM", ann).await;
        // Bob and Carol join at the same time: the user id breaks the tie.
        for who in [carol, bob] {
            s.members
                .add(
                    p.id,
                    who,
                    ProjectRole::Viewer,
                    at(5),
                    &audit("member.added", Some(p.id)),
                )
                .await
                .unwrap();
        }
        assert!(matches!(
            s.members
                .add(
                    p.id,
                    bob,
                    ProjectRole::Admin,
                    at(6),
                    &audit("member.added", Some(p.id))
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        s.members
            .set_role(
                p.id,
                bob,
                ProjectRole::Admin,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.members
                .set_role(p.id, Uuid::now_v7(), ProjectRole::Admin, &audit("x", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));

        let (page, total) = s.members.list(p.id, 0, 10).await.unwrap();
        assert_eq!(total, 3);
        let mut later = [bob, carol];
        later.sort_by_key(|id| *id.as_bytes());
        assert_eq!(
            page.iter().map(|m| m.user_id).collect::<Vec<_>>(),
            [ann, later[0], later[1]],
            "{}",
            s.name
        );
        let (second, total) = s.members.list(p.id, 1, 1).await.unwrap();
        assert_eq!((second.len(), total), (1, 3));
        assert_eq!(second[0].user_id, later[0]);

        let b = s.members.find(p.id, bob).await.unwrap().unwrap();
        assert_eq!(b.role, ProjectRole::Admin);
        assert_eq!(b.name, "Bob");
        assert!(b.email.starts_with("Bob-"));
        assert_eq!(b.joined_at, at(5));
        assert_eq!(b.project_id, p.id);
        assert_eq!(s.members.find(p.id, Uuid::now_v7()).await.unwrap(), None);
    }
}

#[tokio::test]
async fn an_account_is_an_acquaintance_only_through_a_shared_project_in_one_answer() {
    use keel_domain::identity::Email;
    use keel_domain::tracking::{Account, Acquaintance};
    for s in stores().await {
        let ann = user(&s, "ann").await;
        let bea = user(&s, "bea").await;
        let cara = user(&s, "cara").await;
        let shared = project(&s, "SHR", ann).await;
        let beas = project(&s, "BEA", bea).await;
        let other = project(&s, "OTH", ann).await;
        s.members
            .add(
                shared.id,
                bea,
                ProjectRole::Viewer,
                at(1),
                &audit("member.added", Some(shared.id)),
            )
            .await
            .unwrap();
        // Cara is in a project of Bea's only: Ann does not see her.
        s.members
            .add(
                beas.id,
                cara,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(beas.id)),
            )
            .await
            .unwrap();
        let email = |id: Uuid, name: &str| {
            Email::parse_existing(&format!("{name}-{}@example.com", id.simple())).unwrap()
        };
        let seen_by = |within: Option<Vec<Uuid>>| Acquaintance { user_id: ann, within };
        assert_eq!(
            s.members
                .find_acquaintance(&email(bea, "bea"), &seen_by(None))
                .await
                .unwrap(),
            Some(Account {
                id: bea,
                name: "bea".into(),
                email: format!("bea-{}@example.com", bea.simple()),
            }),
            "{}",
            s.name
        );
        for (who, within, why) in [
            (email(cara, "cara"), None, "an account Ann shares no project with"),
            (Email::parse("nobody@example.com").unwrap(), None, "no account"),
            (
                email(bea, "bea"),
                Some(vec![other.id]),
                "shared, but not within the token's projects",
            ),
            (email(bea, "bea"), Some(vec![]), "a token that reaches no project"),
        ] {
            assert_eq!(
                s.members.find_acquaintance(&who, &seen_by(within)).await.unwrap(),
                None,
                "{}: {why}",
                s.name
            );
        }
        // Within the shared project, and as Bea sees Cara.
        assert!(
            s.members
                .find_acquaintance(&email(bea, "bea"), &seen_by(Some(vec![other.id, shared.id])))
                .await
                .unwrap()
                .is_some()
        );
        let by_bea = Acquaintance {
            user_id: bea,
            within: None,
        };
        assert_eq!(
            s.members
                .find_acquaintance(&email(cara, "cara"), &by_bea)
                .await
                .unwrap()
                .map(|a| a.id),
            Some(cara),
            "{}",
            s.name
        );
    }
}
