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
