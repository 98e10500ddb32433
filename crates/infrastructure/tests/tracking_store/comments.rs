//! Comments.

use keel_domain::StoreError;
use keel_domain::tracking::ports::CommentRepository;
use keel_domain::tracking::{Comment, CommentBody};
use uuid::Uuid;

use crate::common::*;

#[tokio::test]
async fn comments_page_oldest_first_with_their_project() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "COM", owner).await;
        let task = create_task(&s, task_value(&p, owner, "Discussed"), &[]).await;
        let other = create_task(&s, task_value(&p, owner, "Quiet"), &[]).await;
        let mut all = Vec::new();
        for i in 0..7 {
            let c = Comment {
                id: Uuid::new_v4(),
                task_id: task.id,
                project_id: p.id,
                author_id: owner,
                body: CommentBody::parse(&format!("comment {i}\nsecond line")).unwrap(),
                created_at: at(i / 3),
                updated_at: at(i / 3),
                version: 1,
            };
            s.comments
                .create(&c, &audit("comment.created", Some(p.id)))
                .await
                .unwrap();
            all.push(c);
        }
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
        });
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = s.comments.list(task.id, after, 2).await.unwrap();
            let full = page.len() == 2;
            if let Some(last) = page.last() {
                after = Some((last.created_at, last.id));
            }
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(walked, all, "{}", s.name);
        assert!(s.comments.list(other.id, None, 10).await.unwrap().is_empty());
        assert_eq!(s.comments.find(all[0].id).await.unwrap(), Some(all[0].clone()));

        s.comments
            .delete(all[0].id, &audit("comment.deleted", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(s.comments.find(all[0].id).await.unwrap(), None);
        assert!(matches!(
            s.comments
                .delete(all[0].id, &audit("comment.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
    }
}
