//! The activity feed.

use keel_domain::audit::{AuditEntry, AuditLog};
use keel_domain::tracking::ports::ActivityFeed;
use keel_infrastructure::entities::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

#[tokio::test]
async fn activity_feed_pages_newest_first() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "ACT", owner).await;
        let other = project(&s, "QUIET", owner).await;
        // Entries sharing a time: the id breaks the tie.
        for i in 0..9 {
            let mut entry = audit("task.updated", Some(p.id)).audit;
            entry.id = Uuid::new_v4();
            entry.occurred_at = at(i / 3);
            entry.actor_id = Some(owner);
            entry.resource_id = Some(format!("ACT-{i}"));
            s.audit.record(&entry).await.unwrap();
        }
        let mut expected: Vec<AuditEntry> = audit_log::Entity::find()
            .filter(audit_log::Column::ProjectId.eq(p.id))
            .all(s.db.connection())
            .await
            .unwrap()
            .into_iter()
            .map(|m| AuditEntry {
                id: m.id,
                occurred_at: m.occurred_at,
                actor_id: m.actor_id,
                action: m.action,
                resource_type: m.resource_type,
                resource_id: m.resource_id,
                project_id: m.project_id,
                request_id: m.request_id,
                ip: m.ip,
                details: m.details,
                restricted: m.restricted_details,
                authority: None,
                token_id: m.token_id,
            })
            .collect();
        assert_eq!(expected.len(), 10);
        expected.sort_by(|a, b| {
            b.occurred_at
                .cmp(&a.occurred_at)
                .then_with(|| b.id.as_bytes().cmp(a.id.as_bytes()))
        });
        let mut walked = Vec::new();
        let mut before = None;
        loop {
            let page = ActivityFeed::list(&s.audit, p.id, before, 4).await.unwrap();
            let full = page.len() == 4;
            if let Some(last) = page.last() {
                before = Some((last.occurred_at, last.id));
            }
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(walked, expected, "{}", s.name);
        let quiet = ActivityFeed::list(&s.audit, other.id, None, 10).await.unwrap();
        assert_eq!(quiet.len(), 1, "{}: only the project's own entries", s.name);
    }
}

#[tokio::test]
async fn a_resource_history_pages_its_own_entries_newest_first() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "HIS", owner).await;
        let (task, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut ids = Vec::new();
        for i in 0..7 {
            let mut entry = audit("task.updated", Some(p.id)).audit;
            entry.id = Uuid::new_v4();
            entry.occurred_at = at(i / 2);
            entry.actor_id = Some(owner);
            entry.resource_type = "task".into();
            entry.resource_id = Some(task.to_string());
            s.audit.record(&entry).await.unwrap();
            ids.push((entry.occurred_at, entry.id));
        }
        // Another task's entry, and another kind of resource with the same id: not its
        // history.
        for (resource_type, id) in [("task", other), ("comment", task)] {
            let mut entry = audit("task.updated", Some(p.id)).audit;
            entry.id = Uuid::new_v4();
            entry.resource_type = resource_type.into();
            entry.resource_id = Some(id.to_string());
            s.audit.record(&entry).await.unwrap();
        }
        ids.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.as_bytes().cmp(a.1.as_bytes())));
        let mut walked = Vec::new();
        let mut before = None;
        loop {
            let page = ActivityFeed::history(&s.audit, "task", task, before, 3)
                .await
                .unwrap();
            let full = page.len() == 3;
            if let Some(last) = page.last() {
                before = Some((last.occurred_at, last.id));
            }
            walked.extend(page.into_iter().map(|e| (e.occurred_at, e.id)));
            if !full {
                break;
            }
        }
        assert_eq!(walked, ids, "{}", s.name);
    }
}
