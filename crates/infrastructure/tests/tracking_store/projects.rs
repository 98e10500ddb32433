//! Projects: lists by scope, filter and sort; deletion removes everything in them.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{CommentRepository, MemberRepository, ProjectRepository, TaskRepository};
use keel_domain::tracking::{
    Comment, CommentBody, ProjectFilter, ProjectRole, ProjectSort, ProjectStatus, Scope,
};
use keel_infrastructure::entities::{comments, labels, project_members, task_labels, tasks};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

// Projects, labels, comments, the activity feed

#[tokio::test]
async fn projects_list_by_scope_filter_and_sort() {
    for s in stores().await {
        let ann = user(&s, "Ann").await;
        let bob = user(&s, "Bob").await;
        let alpha = project_value("ALPHA", "Alpha", ann, 1);
        let mut beta = project_value("BETA", "Beta tools", ann, 2);
        beta.status = ProjectStatus::Archived;
        let gamma = project_value("GAMMA", "Gamma", bob, 3);
        let delta = project_value("DELTA", "Delta", bob, 4);
        for p in [&alpha, &beta, &gamma, &delta] {
            s.projects
                .create(p, &audit("project.created", Some(p.id)))
                .await
                .unwrap();
        }
        s.members
            .add(
                gamma.id,
                ann,
                ProjectRole::Viewer,
                at(5),
                &audit("member.added", Some(gamma.id)),
            )
            .await
            .unwrap();

        let list = |scope, filter: ProjectFilter, sort: &'static str, offset, limit| {
            let s = &s;
            async move {
                let (rows, total) = s
                    .projects
                    .list(scope, &filter, ProjectSort::parse(sort).unwrap(), offset, limit)
                    .await
                    .unwrap();
                (
                    rows.into_iter()
                        .map(|r| (r.project.key.as_str().to_owned(), r.role))
                        .collect::<Vec<_>>(),
                    total,
                )
            }
        };
        let key = |k: &str, r| (k.to_owned(), r);
        let none = ProjectFilter::default;

        assert_eq!(
            list(Scope::MemberOf(ann), none(), "name", 0, 10).await,
            (
                vec![
                    key("ALPHA", ProjectRole::Owner),
                    key("BETA", ProjectRole::Owner),
                    key("GAMMA", ProjectRole::Viewer)
                ],
                3
            ),
            "{}",
            s.name
        );
        assert_eq!(
            list(Scope::MemberOf(ann), none(), "-createdAt", 1, 1).await,
            (vec![key("BETA", ProjectRole::Owner)], 3),
            "{}",
            s.name
        );
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: Some(ProjectStatus::Archived),
                    q: None,
                    projects: None,
                },
                "name",
                0,
                10
            )
            .await,
            (vec![key("BETA", ProjectRole::Owner)], 1)
        );
        // q matches the name or the key, in any case.
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: None,
                    q: Some("TOOL".into()),
                    projects: None,
                },
                "name",
                0,
                10
            )
            .await
            .0,
            vec![key("BETA", ProjectRole::Owner)]
        );
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                ProjectFilter {
                    status: None,
                    q: Some("gam".into()),
                    projects: None,
                },
                "name",
                0,
                10
            )
            .await
            .0,
            vec![key("GAMMA", ProjectRole::Viewer)]
        );
        assert_eq!(
            list(Scope::All, none(), "-name", 0, 10).await,
            (
                vec![
                    key("GAMMA", ProjectRole::Owner),
                    key("DELTA", ProjectRole::Owner),
                    key("BETA", ProjectRole::Owner),
                    key("ALPHA", ProjectRole::Owner)
                ],
                4
            ),
            "{}",
            s.name
        );
        assert_eq!(
            list(Scope::All, none(), "createdAt", 2, 10).await.0,
            vec![key("GAMMA", ProjectRole::Owner), key("DELTA", ProjectRole::Owner)]
        );

        // A token's project limit: only the listed projects, and only those of the scope.
        let only = |ids: Vec<Uuid>| ProjectFilter {
            projects: Some(ids),
            ..ProjectFilter::default()
        };
        assert_eq!(
            list(
                Scope::MemberOf(ann),
                only(vec![gamma.id, delta.id]),
                "name",
                0,
                10
            )
            .await,
            (vec![key("GAMMA", ProjectRole::Viewer)], 1),
            "{}",
            s.name
        );
        assert_eq!(
            list(Scope::All, only(vec![alpha.id, delta.id]), "name", 0, 10)
                .await
                .1,
            2
        );

        // updatedAt follows updates.
        let mut touched = alpha.clone();
        touched.updated_at = at(50);
        touched.version = 2;
        assert!(
            s.projects
                .update(&touched, 1, false, &audit("project.updated", Some(alpha.id)))
                .await
                .unwrap()
        );
        assert_eq!(
            list(Scope::MemberOf(ann), none(), "-updatedAt", 0, 1).await.0,
            vec![key("ALPHA", ProjectRole::Owner)]
        );
        assert!(
            s.projects
                .list(Scope::Project(alpha.id), &none(), ProjectSort::default(), 0, 1)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn deleting_a_project_removes_everything_in_it() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let alice = user(&s, "Alice").await;
        let p = project(&s, "DEL", owner).await;
        let kept = project(&s, "KEPT", owner).await;
        s.members
            .add(
                p.id,
                alice,
                ProjectRole::Member,
                at(1),
                &audit("member.added", Some(p.id)),
            )
            .await
            .unwrap();
        let bug = label(&s, &p, "bug").await;
        let task = create_task(&s, task_value(&p, owner, "Doomed"), &[bug.id]).await;
        let kept_task = create_task(&s, task_value(&kept, owner, "Kept"), &[]).await;
        let comment = Comment {
            id: Uuid::now_v7(),
            task_id: task.id,
            project_id: p.id,
            author_id: alice,
            body: CommentBody::parse("bye").unwrap(),
            created_at: at(2),
            updated_at: at(2),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();

        let entry = audit("project.deleted", Some(p.id));
        s.projects.delete(p.id, &entry).await.unwrap();
        assert_eq!(audit_entry_stored(&s, entry.audit.id).await, 1);
        assert_eq!(s.projects.find(p.id).await.unwrap(), None, "{}", s.name);
        let conn = s.db.connection();
        let counts = [
            project_members::Entity::find()
                .filter(project_members::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            labels::Entity::find()
                .filter(labels::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            tasks::Entity::find()
                .filter(tasks::Column::ProjectId.eq(p.id))
                .count(conn)
                .await
                .unwrap(),
            task_labels::Entity::find()
                .filter(task_labels::Column::TaskId.eq(task.id))
                .count(conn)
                .await
                .unwrap(),
            comments::Entity::find()
                .filter(comments::Column::TaskId.eq(task.id))
                .count(conn)
                .await
                .unwrap(),
        ];
        assert_eq!(
            counts, [0; 5],
            "{}: members, labels, tasks, task labels, comments",
            s.name
        );
        assert_eq!(s.tasks.find(kept_task.id).await.unwrap(), Some(kept_task));
        assert!(matches!(
            s.projects
                .delete(p.id, &audit("project.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        // The project's history stays in the audit log.
        assert!(audit_entries(&s, p.id).await >= 5);
    }
}
