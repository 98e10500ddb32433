//! Labels.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{LabelRepository, TaskRepository};
use keel_domain::tracking::{Label, LabelName};
use uuid::Uuid;

use crate::common::*;

#[tokio::test]
async fn labels_are_unique_by_name_and_deleting_one_takes_it_off_tasks() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LAB", owner).await;
        let other = project(&s, "OTHER", owner).await;
        let ui = label(&s, &p, "ui").await;
        let bug = label(&s, &p, "bug").await;
        let _other_bug = label(&s, &other, "bug").await;
        let dup = Label {
            id: Uuid::now_v7(),
            ..bug.clone()
        };
        assert!(matches!(
            s.labels.create(&dup, &audit("label.created", Some(p.id))).await,
            Err(StoreError::Conflict(_))
        ));

        let (page, total) = s.labels.list(p.id, 0, 10).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(page, vec![bug.clone(), ui.clone()], "{}", s.name);
        assert_eq!(s.labels.find(p.id, bug.id).await.unwrap(), Some(bug.clone()));
        assert_eq!(s.labels.find(other.id, bug.id).await.unwrap(), None);
        let found = s
            .labels
            .find_by_names(
                p.id,
                &[
                    LabelName::parse("bug").unwrap(),
                    LabelName::parse("nope").unwrap(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(found, vec![bug.clone()], "{}", s.name);
        assert!(s.labels.find_by_names(p.id, &[]).await.unwrap().is_empty());

        let task = create_task(&s, task_value(&p, owner, "Labelled"), &[bug.id, ui.id]).await;
        assert!(matches!(
            s.labels
                .delete(other.id, bug.id, &audit("label.deleted", Some(other.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(s.tasks.find(task.id).await.unwrap().unwrap(), task, "{}", s.name);
        s.labels
            .delete(p.id, bug.id, &audit("label.deleted", Some(p.id)))
            .await
            .unwrap();
        let now = s.tasks.find(task.id).await.unwrap().unwrap();
        assert_eq!(now.labels, vec![LabelName::parse("ui").unwrap()], "{}", s.name);
        assert_eq!(now.version, task.version + 1, "{}: a new ETag", s.name);
        assert_eq!(s.labels.find(p.id, bug.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn tasks_read_their_label_ids_beside_the_names_and_a_rename_changes_the_tasks_carrying_it() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "REN", owner).await;
        let ui = label(&s, &p, "ui").await;
        let bug = label(&s, &p, "bug").await;
        let both = create_task(&s, task_value(&p, owner, "Both"), &[ui.id, bug.id]).await;
        assert_eq!(both.labels, [bug.name.clone(), ui.name.clone()], "{}", s.name);
        assert_eq!(both.label_ids, [bug.id, ui.id], "ids in the names' order");
        let bare = create_task(&s, task_value(&p, owner, "Bare"), &[]).await;
        let read = s.tasks.find(both.id).await.unwrap().unwrap();
        assert_eq!(read.label_ids, [bug.id, ui.id], "{}", s.name);
        assert_eq!(read.labels, both.labels);
        let by_id = s
            .labels
            .find_by_ids(p.id, &[ui.id, Uuid::now_v7()])
            .await
            .unwrap();
        assert_eq!(by_id, vec![ui.clone()]);

        // Rename `bug` to `zz`: the task's labels are re-ordered by name, its version moves.
        let mut renamed = bug.clone();
        renamed.name = LabelName::parse("zz").unwrap();
        let relabeled = s
            .labels
            .update(&renamed, true, &audit("label.updated", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(relabeled, vec![both.id]);
        let read = s.tasks.find(both.id).await.unwrap().unwrap();
        assert_eq!(read.labels, [ui.name.clone(), renamed.name.clone()], "{}", s.name);
        assert_eq!(read.label_ids, [ui.id, bug.id]);
        assert_eq!(read.version, both.version + 1);
        assert_eq!(
            s.tasks.find(bare.id).await.unwrap().unwrap().version,
            bare.version
        );
        let page = all_tasks(
            &s,
            keel_domain::tracking::Scope::Project(p.id),
            keel_domain::tracking::TaskFilter {
                label_ids: vec![bug.id],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(titles(&page), set(&["Both"]), "{}", s.name);

        // A new colour changes no task.
        let mut recoloured = ui.clone();
        recoloured.color = keel_domain::tracking::Color::parse("#000000").unwrap();
        let relabeled = s
            .labels
            .update(&recoloured, false, &audit("label.updated", Some(p.id)))
            .await
            .unwrap();
        assert!(relabeled.is_empty());
        assert_eq!(
            s.labels.find(p.id, ui.id).await.unwrap(),
            Some(recoloured.clone())
        );
        assert_eq!(
            s.tasks.find(both.id).await.unwrap().unwrap().version,
            both.version + 1
        );

        // Another label's name is taken; a label of another project is not found.
        let mut clash = ui.clone();
        clash.name = LabelName::parse("zz").unwrap();
        let before = audit_entries(&s, p.id).await;
        assert!(matches!(
            s.labels
                .update(&clash, true, &audit("label.updated", Some(p.id)))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(audit_entries(&s, p.id).await, before, "nothing recorded");
        let other = project(&s, "ELSE", owner).await;
        let mut stray = ui.clone();
        stray.project_id = other.id;
        assert!(matches!(
            s.labels
                .update(&stray, true, &audit("label.updated", Some(other.id)))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}
