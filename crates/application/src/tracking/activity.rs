//! A project's activity feed: its audit entries, newest first, cursor-paginated.

use chrono::{DateTime, Utc};
use keel_domain::identity::Principal;
use keel_domain::tracking::Permission;
use uuid::Uuid;

use super::TrackingPorts;
use super::views::ActivityView;
use crate::AppError;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of an activity entry.
pub type ActivityCursor = (DateTime<Utc>, Uuid);

pub async fn list_activity(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    cursor: CursorRequest<ActivityCursor>,
) -> Result<CursorPage<ActivityView>, AppError> {
    let role = ports
        .authorize(principal, project_id, Permission::Read, "project")
        .await?;
    let entries = ports
        .activity
        .list(project_id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    // Restricted details are for those who may administer the project (its webhooks).
    let admin = role.allows(Permission::Administer);
    let views: Vec<ActivityView> = entries.into_iter().map(|e| ActivityView::new(e, admin)).collect();
    CursorPage::from_rows(views, &cursor, |v| (v.occurred_at, v.id))
}

#[cfg(test)]
mod tests {
    use keel_domain::audit::AuditEntry;
    use keel_domain::tracking::ports::MockActivityFeed;

    use super::super::fixtures::*;
    use super::*;

    fn entry(n: u128) -> AuditEntry {
        AuditEntry {
            id: Uuid::from_u128(n),
            occurred_at: now(),
            actor_id: None,
            action: "task.created".into(),
            resource_type: "task".into(),
            resource_id: None,
            project_id: Some(PROJECT_ID),
            request_id: Some("r".into()),
            ip: Some("203.0.113.9".into()),
            details: None,
            restricted: None,
            authority: None,
            token_id: None,
        }
    }

    #[tokio::test]
    async fn restricted_details_are_shown_to_those_who_may_administer_only() {
        let mut activity = MockActivityFeed::new();
        activity.expect_list().returning(|_, _, _| {
            let mut e = entry(1);
            e.action = "webhook.created".into();
            e.details = Some(serde_json::json!({}));
            e.restricted = Some(serde_json::json!({"url": "https://hooks.example/t0ken"}));
            Ok(vec![e])
        });
        let ports = Fixture {
            activity,
            ..Fixture::default()
        }
        .ports();
        for (who, sees) in [
            (owner(), true),
            (admin(), true),
            (member(), false),
            (viewer(), false),
        ] {
            let page = list_activity(
                &ports,
                &who,
                PROJECT_ID,
                CursorRequest::parse(None, None).unwrap(),
            )
            .await
            .unwrap();
            let json = serde_json::to_string(&page.data).unwrap();
            assert_eq!(json.contains("t0ken"), sees, "{json}");
        }
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_and_hide_request_origins() {
        let mut activity = MockActivityFeed::new();
        activity
            .expect_list()
            .withf(|p, before, limit| *p == PROJECT_ID && before.is_none() && *limit == 3)
            .returning(|_, _, _| Ok(vec![entry(9), entry(8), entry(7)]));
        activity
            .expect_list()
            .withf(|_, before, _| *before == Some((now(), Uuid::from_u128(8))))
            .returning(|_, _, _| Ok(vec![entry(7)]));
        let ports = Fixture {
            activity,
            ..Fixture::default()
        }
        .ports();
        let first = list_activity(
            &ports,
            &viewer(),
            PROJECT_ID,
            CursorRequest::parse(Some("2"), None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(first.data.len(), 2);
        let json = serde_json::to_value(&first.data[0]).unwrap();
        assert!(json.get("ip").is_none() && json.get("requestId").is_none());
        let next = first.pagination.next_cursor.unwrap();
        let second = list_activity(
            &ports,
            &viewer(),
            PROJECT_ID,
            CursorRequest::parse(Some("2"), Some(&next)).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(second.data.len(), 1);
        assert_eq!(second.pagination.next_cursor, None);
        assert!(matches!(
            list_activity(
                &ports,
                &stranger(),
                PROJECT_ID,
                CursorRequest::parse(None, None).unwrap()
            )
            .await,
            Err(AppError::NotFound("project"))
        ));
    }
}
