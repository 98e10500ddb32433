//! What every write guarantees: version guards, one audit entry in the change's transaction, and the checks that guard it there.

use keel_domain::StoreError;
use keel_domain::audit::{AuditLog, Authority};
use keel_domain::events::Change;
use keel_domain::tracking::ports::{
    ActivityFeed, CommentRepository, LabelRepository, MemberRepository, NewTask, ProjectRepository,
    TaskRepository,
};
use keel_domain::tracking::{
    Color, Comment, CommentBody, Label, LabelName, Permission, ProjectName, ProjectRole, TaskTitle,
};
use keel_infrastructure::entities::{project_members, users};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

// (d) Version guards

#[tokio::test]
async fn stale_versions_change_nothing_and_record_nothing() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "VER", owner).await;
        let task = create_task(&s, task_value(&p, owner, "Versioned"), &[]).await;
        let comment = Comment {
            id: Uuid::now_v7(),
            task_id: task.id,
            project_id: p.id,
            author_id: owner,
            body: CommentBody::parse("first").unwrap(),
            created_at: at(1),
            updated_at: at(1),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();
        let entries = audit_entries(&s, p.id).await;

        // Projects.
        let mut renamed = p.clone();
        renamed.name = ProjectName::parse("Renamed").unwrap();
        renamed.updated_at = at(5);
        renamed.version = 3;
        let stale = audit("project.updated", Some(p.id));
        assert!(
            !s.projects.update(&renamed, 2, false, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap(), p, "{}", s.name);
        renamed.version = 2;
        assert!(
            s.projects
                .update(&renamed, 1, false, &audit("project.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            s.projects.find(p.id).await.unwrap().unwrap(),
            renamed,
            "{}",
            s.name
        );

        // Tasks.
        let mut changed = task.clone();
        changed.title = TaskTitle::parse("Changed").unwrap();
        changed.version = 6;
        let stale = audit("task.updated", Some(p.id));
        assert!(
            !s.tasks.update(&changed, None, 5, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), task, "{}", s.name);

        // Comments.
        let mut edited = comment.clone();
        edited.body = CommentBody::parse("edited").unwrap();
        edited.version = 8;
        let stale = audit("comment.updated", Some(p.id));
        assert!(
            !s.comments.update(&edited, 7, &stale).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);
        assert_eq!(
            s.comments.find(comment.id).await.unwrap().unwrap(),
            comment,
            "{}",
            s.name
        );
        edited.version = 2;
        edited.updated_at = at(9);
        assert!(
            s.comments
                .update(&edited, 1, &audit("comment.updated", Some(p.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            s.comments.find(comment.id).await.unwrap().unwrap(),
            edited,
            "{}",
            s.name
        );

        // Two successful updates, two entries; the stale ones none.
        assert_eq!(audit_entries(&s, p.id).await, entries + 2, "{}", s.name);
    }
}

// (e) Audit entries in the transaction of their change

#[tokio::test]
async fn writes_record_exactly_one_audit_entry_in_their_transaction() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project_value("AUD", "Audited", owner, 0);
        let entry = audit("project.created", Some(p.id));
        s.projects.create(&p, &entry).await.unwrap();
        assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 1, "{}", s.name);
        assert_eq!(audit_entries(&s, p.id).await, 1, "{}", s.name);
        assert_eq!(
            outbox_events_of(&s, p.id).await,
            vec![entry.event.clone()],
            "{}: the event is in the outbox, as given",
            s.name
        );
        assert_eq!(
            s.projects.role_of(p.id, owner).await.unwrap(),
            Some(ProjectRole::Owner),
            "{}: the owner's membership is stored with the project",
            s.name
        );

        // A taken key: Conflict, and the entry of the failed change is not kept.
        let taken = project_value("AUD", "Another", owner, 0);
        let refused = audit("project.created", Some(taken.id));
        assert!(matches!(
            s.projects.create(&taken, &refused).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(audit_entry_stored(&s, refused.audit.id).await, 0, "{}", s.name);
        assert_eq!(s.projects.find(taken.id).await.unwrap(), None);
        assert!(
            outbox_events_of(&s, taken.id).await.is_empty(),
            "{}: no event",
            s.name
        );

        // A failing audit insert undoes the change it records.
        let other = project_value("AUDB", "Other", owner, 0);
        assert!(matches!(
            s.projects.create(&other, &entry).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.projects.find(other.id).await.unwrap(), None, "{}", s.name);
        assert_eq!(s.projects.role_of(other.id, owner).await.unwrap(), None);

        let task = create_task(&s, task_value(&p, owner, "Audited task"), &[]).await;
        let mut changed = task.clone();
        changed.version = 2;
        assert!(
            !s.tasks
                .update(&changed, None, 1, &entry)
                .await
                .is_ok_and(|updated| updated),
            "{}: the duplicate entry fails the update",
            s.name
        );
        assert_eq!(
            s.tasks.find(task.id).await.unwrap().unwrap().version,
            1,
            "{}",
            s.name
        );
    }
}

// Checks that guard a write, in the write's transaction

/// `change` made by `actor`, who needed `authority` for it.
fn by(actor: Uuid, authority: Authority, mut change: Change) -> Change {
    change.audit.actor_id = Some(actor);
    change.audit.authority = Some(authority);
    change.event.event.actor_id = Some(actor);
    change
}

/// Sets a membership's role behind the stores' back: a write that committed first.
async fn set_role_directly(s: &Store, project_id: Uuid, user_id: Uuid, role: ProjectRole) {
    project_members::Entity::update_many()
        .col_expr(
            project_members::Column::Role,
            sea_orm::sea_query::Expr::value(role.as_str()),
        )
        .filter(project_members::Column::ProjectId.eq(project_id))
        .filter(project_members::Column::UserId.eq(user_id))
        .exec(s.db.connection())
        .await
        .unwrap();
}

async fn role(s: &Store, project_id: Uuid, user_id: Uuid) -> Option<ProjectRole> {
    s.projects.role_of(project_id, user_id).await.unwrap()
}

#[tokio::test]
async fn a_write_whose_actor_lost_the_role_it_needs_is_refused_in_its_transaction() {
    use Permission::{Administer, Own, WriteTasks};
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let admin = user(&s, "Admin").await;
        let member = user(&s, "Member").await;
        let p = project(&s, "AUTH", owner).await;
        for (who, r) in [(admin, ProjectRole::Admin), (member, ProjectRole::Member)] {
            s.members
                .add(p.id, who, r, at(1), &audit("member.added", Some(p.id)))
                .await
                .unwrap();
        }
        // Authorized as an admin, demoted before the write runs.
        set_role_directly(&s, p.id, admin, ProjectRole::Member).await;
        let lost = |action: &str| by(admin, Authority::Member(Administer), audit(action, Some(p.id)));

        let change = lost("member.updated");
        let e = s
            .members
            .set_role(p.id, member, ProjectRole::Viewer, &change)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, member).await,
            Some(ProjectRole::Member),
            "{}",
            s.name
        );
        assert_eq!(audit_entry_stored(&s, change.audit.id).await, 0, "{}", s.name);

        let change = lost("member.removed");
        let e = s.members.remove(p.id, member, at(2), &change).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, member).await,
            Some(ProjectRole::Member),
            "{}",
            s.name
        );

        let bug = Label {
            id: Uuid::now_v7(),
            project_id: p.id,
            name: LabelName::parse("bug").unwrap(),
            color: Color::parse("#a1b2c3").unwrap(),
            created_at: at(2),
        };
        let e = s.labels.create(&bug, &lost("label.created")).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(s.labels.list(p.id, 0, 10).await.unwrap().1, 0, "{}", s.name);

        // Still enough for what a member may do.
        let held = by(
            admin,
            Authority::Member(WriteTasks),
            audit("task.created", Some(p.id)),
        );
        let first = s
            .tasks
            .create(
                &NewTask {
                    task: task_value(&p, admin, "Allowed"),
                    label_ids: vec![],
                },
                &held,
                numbered,
            )
            .await
            .unwrap();
        // A member made a viewer: no task, and no number used.
        set_role_directly(&s, p.id, member, ProjectRole::Viewer).await;
        let e = s
            .tasks
            .create(
                &NewTask {
                    task: task_value(&p, member, "Refused"),
                    label_ids: vec![],
                },
                &by(
                    member,
                    Authority::Member(WriteTasks),
                    audit("task.created", Some(p.id)),
                ),
                numbered,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        let next = create_task(&s, task_value(&p, owner, "Next"), &[]).await;
        assert_eq!(next.number, first.number + 1, "{}: no gap", s.name);

        // The owner hands the project over; a hand-over or a delete they were authorized
        // for before it is refused after it.
        s.members
            .transfer_ownership(
                p.id,
                admin,
                at(3),
                &by(owner, Authority::Member(Own), audit("member.updated", Some(p.id))),
            )
            .await
            .unwrap();
        let stale = by(owner, Authority::Member(Own), audit("member.updated", Some(p.id)));
        let e = s
            .members
            .transfer_ownership(p.id, member, at(4), &stale)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert_eq!(
            role(&s, p.id, admin).await,
            Some(ProjectRole::Owner),
            "{}",
            s.name
        );
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap().owner_id, admin);
        let stale = by(
            owner,
            Authority::Member(Own),
            audit("project.deleted", Some(p.id)),
        );
        let e = s.projects.delete(p.id, &stale).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        assert!(s.projects.find(p.id).await.unwrap().is_some(), "{}", s.name);
        assert_eq!(audit_entry_stored(&s, stale.audit.id).await, 0, "{}", s.name);

        // An instance admin's authority is their account's role.
        let not_admin = by(
            member,
            Authority::InstanceAdmin,
            audit("project.deleted", Some(p.id)),
        );
        let e = s.projects.delete(p.id, &not_admin).await.unwrap_err();
        assert!(matches!(e, StoreError::AuthorityLost), "{}: {e:?}", s.name);
        users::Entity::update_many()
            .col_expr(users::Column::Role, sea_orm::sea_query::Expr::value("admin"))
            .filter(users::Column::Id.eq(member))
            .exec(s.db.connection())
            .await
            .unwrap();
        let root = by(
            member,
            Authority::InstanceAdmin,
            audit("project.deleted", Some(p.id)),
        );
        s.projects.delete(p.id, &root).await.unwrap();
        assert!(s.projects.find(p.id).await.unwrap().is_none(), "{}", s.name);
        assert_eq!(audit_entry_stored(&s, root.audit.id).await, 1, "{}", s.name);
    }
}

#[tokio::test]
async fn a_role_change_or_removal_never_touches_the_owner_it_read_as_a_member() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let heir = user(&s, "Heir").await;
        let p = project(&s, "HEIR", owner).await;
        s.members
            .add(
                p.id,
                heir,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();
        // The heir became the owner after an admin read them as a member.
        s.members
            .transfer_ownership(p.id, heir, at(2), &audit("member.updated", Some(p.id)))
            .await
            .unwrap();
        let e = s
            .members
            .set_role(
                p.id,
                heir,
                ProjectRole::Viewer,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{}: {e:?}", s.name);
        let e = s
            .members
            .remove(p.id, heir, at(3), &audit("member.removed", Some(p.id)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{}: {e:?}", s.name);
        assert_eq!(role(&s, p.id, heir).await, Some(ProjectRole::Owner), "{}", s.name);
        let stranger = Uuid::now_v7();
        let e = s
            .members
            .set_role(
                p.id,
                stranger,
                ProjectRole::Viewer,
                &audit("member.updated", Some(p.id)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound), "{}: {e:?}", s.name);
    }
}

#[tokio::test]
async fn restricted_details_are_stored_apart_and_read_back() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "RSTR", owner).await;
        let mut change = audit("label.created", Some(p.id));
        change.audit.restricted = Some(serde_json::json!({"url": "https://x.example/t0ken"}));
        s.audit.record(&change.audit).await.unwrap();
        let page = ActivityFeed::list(&s.audit, p.id, None, 10).await.unwrap();
        let read = page.iter().find(|e| e.id == change.audit.id).unwrap();
        assert_eq!(read.restricted, change.audit.restricted, "{}", s.name);
        assert_eq!(read.details, change.audit.details, "{}", s.name);
    }
}
