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
