//! Links on tasks.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{LinkRepository, TaskRepository};
use keel_domain::tracking::{Link, LinkTitle, LinkUrl};
use keel_infrastructure::tracking::SeaOrmLinkRepository;
use uuid::Uuid;

use crate::common::*;

fn link(task: &keel_domain::tracking::Task, by: Uuid, url: &str, minute: i64) -> Link {
    Link {
        id: Uuid::new_v4(),
        task_id: task.id,
        project_id: task.project_id,
        url: LinkUrl::parse(url).unwrap(),
        title: Some(LinkTitle::parse(&format!("about {url}")).unwrap()),
        created_by: by,
        created_at: at(minute),
        updated_at: at(minute),
    }
}

#[tokio::test]
async fn links_page_oldest_first_one_per_url_and_go_with_their_task() {
    for s in stores().await {
        let links = SeaOrmLinkRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LNK", owner).await;
        let task = create_task(&s, task_value(&p, owner, "Linked"), &[]).await;
        let other = create_task(&s, task_value(&p, owner, "Bare"), &[]).await;
        let mut all = Vec::new();
        for i in 0..5 {
            let l = link(&task, owner, &format!("https://example.com/{i}"), i / 2);
            links
                .create(&l, &audit("link.created", Some(p.id)))
                .await
                .unwrap();
            all.push(l);
        }
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
        });
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = links.list(task.id, after, 2).await.unwrap();
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
        assert!(links.list(other.id, None, 10).await.unwrap().is_empty());

        // One link per URL on a task; the same URL on another task is another link.
        let again = link(&task, owner, "https://example.com/0", 9);
        let before = audit_entries(&s, p.id).await;
        assert!(
            matches!(
                links.create(&again, &audit("link.created", Some(p.id))).await,
                Err(StoreError::Conflict(_))
            ),
            "{}",
            s.name
        );
        assert_eq!(
            audit_entries(&s, p.id).await,
            before,
            "a refused create records nothing"
        );
        links
            .create(
                &link(&other, owner, "https://example.com/0", 9),
                &audit("link.created", Some(p.id)),
            )
            .await
            .unwrap();
        let found = links
            .find_by_url(task.id, "https://example.com/0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.task_id, task.id);
        assert_eq!(found.project_id, p.id);
        assert_eq!(links.find(task.id, found.id).await.unwrap(), Some(found.clone()));
        assert_eq!(
            links.find(other.id, found.id).await.unwrap(),
            None,
            "another task's link"
        );

        // A link on a task that does not exist.
        let mut orphan = link(&task, owner, "https://example.com/orphan", 1);
        orphan.task_id = Uuid::new_v4();
        assert!(matches!(
            links.create(&orphan, &audit("link.created", Some(p.id))).await,
            Err(StoreError::NotFound)
        ));

        let mut retitled = found.clone();
        retitled.title = None;
        retitled.updated_at = at(30);
        links
            .update(&retitled, &audit("link.updated", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(
            links.find(task.id, found.id).await.unwrap(),
            Some(retitled.clone())
        );

        links
            .delete(task.id, found.id, &audit("link.deleted", Some(p.id)))
            .await
            .unwrap();
        assert_eq!(links.find(task.id, found.id).await.unwrap(), None);
        assert!(matches!(
            links
                .delete(task.id, found.id, &audit("link.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            links.update(&retitled, &audit("link.updated", Some(p.id))).await,
            Err(StoreError::NotFound)
        ));
        let events: Vec<&str> = outbox_events_of(&s, p.id)
            .await
            .iter()
            .filter(|e| e.event.event_type.resource() == "link")
            .map(|e| e.event.event_type.as_str())
            .collect::<Vec<_>>();
        assert_eq!(events.len(), 8, "{events:?}");
        assert_eq!(&events[6..], ["link.updated", "link.deleted"]);

        // Purging the task deletes its links.
        s.tasks
            .purge(task.id, None, &audit("task.purged", Some(p.id)))
            .await
            .unwrap();
        assert!(links.list(task.id, None, 10).await.unwrap().is_empty());
        assert_eq!(links.list(other.id, None, 10).await.unwrap().len(), 1);
    }
}
