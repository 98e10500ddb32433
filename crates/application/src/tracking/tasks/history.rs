//! A task's history (`GET /tasks/{id}/history`): the changes of the task, newest first, each
//! with the fields it changed and their old and new values. It is the task's audit entries
//! (written with every change, in its transaction: adr/0019), read by one indexed
//! statement.

use chrono::{DateTime, Utc};
use keel_domain::identity::Principal;
use keel_domain::tracking::Permission;
use uuid::Uuid;

use super::super::TrackingPorts;
use super::super::views::HistoryView;
use super::reach_task;
use crate::AppError;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a history entry: newest first.
pub type HistoryCursor = (DateTime<Utc>, Uuid);

/// The history of a task the caller may read (404 for a task in the trash, as everywhere).
pub async fn task_history(
    ports: &TrackingPorts,
    principal: &Principal,
    id_or_identifier: &str,
    cursor: CursorRequest<HistoryCursor>,
) -> Result<CursorPage<HistoryView>, AppError> {
    let (task, _) = reach_task(ports, principal, id_or_identifier, Permission::Read).await?;
    let entries = ports
        .activity
        .history("task", task.id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    let views: Vec<HistoryView> = entries.into_iter().map(HistoryView::from).collect();
    CursorPage::from_rows(views, &cursor, |v| (v.occurred_at, v.id))
}

#[cfg(test)]
mod tests {
    use keel_domain::audit::AuditEntry;
    use keel_domain::events::EventType;
    use keel_domain::tracking::ports::{MockActivityFeed, MockTaskRepository};
    use serde_json::json;

    use super::super::super::Expect;
    use super::super::super::fixtures::*;
    use super::super::super::inputs::UpdateTaskBody;
    use super::super::update_task;
    use super::*;

    fn entry(n: u128, details: serde_json::Value) -> AuditEntry {
        AuditEntry {
            id: Uuid::from_u128(n),
            occurred_at: now(),
            actor_id: Some(member().user_id),
            action: "task.updated".into(),
            resource_type: "task".into(),
            resource_id: Some(task().id.to_string()),
            project_id: Some(PROJECT_ID),
            request_id: Some("r".into()),
            ip: Some("203.0.113.9".into()),
            details: Some(details),
            restricted: None,
            authority: None,
            token_id: None,
        }
    }

    #[tokio::test]
    async fn the_history_is_the_tasks_entries_with_their_changes_and_404_for_others() {
        let mut tasks = MockTaskRepository::new();
        reads_task(&mut tasks, task());
        let mut activity = MockActivityFeed::new();
        activity
            .expect_history()
            .withf(|kind, id, before, limit| {
                *kind == *"task" && *id == task().id && before.is_none() && *limit == 3
            })
            .times(1)
            .returning(|_, _, _, _| {
                Ok(vec![
                    entry(
                        2,
                        json!({"changed": ["priority"], "changes": [
                            {"field": "priority", "from": 0, "to": 2},
                            {"field": "description", "redacted": true}]}),
                    ),
                    // Written before changes were kept.
                    entry(1, json!({"changed": ["title"]})),
                ])
            });
        let ports = Fixture {
            tasks,
            activity,
            ..Fixture::default()
        }
        .ports();
        let page = task_history(
            &ports,
            &viewer(),
            "KEEL-1",
            CursorRequest::parse(Some("2"), None).unwrap(),
        )
        .await
        .unwrap();
        let json = serde_json::to_value(&page.data).unwrap();
        assert_eq!(
            json,
            json!([
                {"id": Uuid::from_u128(2), "actorId": member().user_id, "action": "task.updated",
                 "changes": [{"field": "priority", "from": 0, "to": 2},
                             {"field": "description", "redacted": true}],
                 "occurredAt": now()},
                {"id": Uuid::from_u128(1), "actorId": member().user_id, "action": "task.updated",
                 "changes": [], "occurredAt": now()},
            ])
        );
        assert!(
            page.pagination.next_cursor.is_none(),
            "two entries fit a page of two"
        );
        for (who, id) in [(stranger(), "KEEL-1"), (member(), "KEEL-9")] {
            assert!(matches!(
                task_history(&ports, &who, id, CursorRequest::parse(None, None).unwrap()).await,
                Err(AppError::NotFound("task"))
            ));
        }
    }

    #[tokio::test]
    async fn an_update_records_old_and_new_values_and_the_event_carries_previous() {
        let mut tasks = MockTaskRepository::new();
        let mut before = task();
        before.description = Some("my token is abc123".into());
        reads_task(&mut tasks, before);
        tasks
            .expect_update()
            .withf(|_, _, _, c| {
                c.event_type() == EventType::TaskUpdated
                    && c.audit.details.as_ref().unwrap()["changes"]
                        == json!([
                            {"field": "description", "redacted": true},
                            {"field": "priority", "from": 0, "to": 1},
                            {"field": "title", "from": "First", "to": "Renamed"},
                        ])
                    && c.event.event.previous == Some(json!({"priority": 0, "title": "First"}))
                    && !format!("{:?}", c.audit).contains("abc123")
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let ports = Fixture {
            tasks,
            ..Fixture::default()
        }
        .ports();
        let body = UpdateTaskBody {
            title: Some("Renamed".into()),
            priority: Some(1),
            description: Some(Some("cleaned".into())),
            ..Default::default()
        };
        update_task(&ports, &member(), "KEEL-1", body, Expect::Any, &meta())
            .await
            .unwrap();
    }
}
