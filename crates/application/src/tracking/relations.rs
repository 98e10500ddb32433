//! Relations between tasks: list (anyone who may read the task: the relations to tasks they
//! can see), create and delete (members and up of the task's project, who can see the other
//! task too). One row per relation, shown from both sides with the inverse type.
//!
//! A relation may cross projects; its events and audit entries go to the project of the task
//! it was made from and name the other task by id only, so that members who cannot see the
//! other project learn nothing of it but an id.

use chrono::{DateTime, Utc};
use futures::TryFutureExt;
use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::{Permission, RelatedTask, Relation, RelationType, Task};
use serde_json::json;
use uuid::Uuid;

use super::inputs::CreateRelationBody;
use super::invalidation::Also;
use super::tasks::reach_task;
use super::views::RelationView;
use super::{TrackingPorts, not_found_as};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a relation: oldest first.
pub type RelationCursor = (DateTime<Utc>, Uuid);

/// Who sees what: `None` for an instance admin (every project).
fn seen_by(principal: &Principal) -> Option<Uuid> {
    (!principal.is_admin()).then_some(principal.user_id)
}

pub async fn list_relations(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    cursor: CursorRequest<RelationCursor>,
) -> Result<CursorPage<RelationView>, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::Read).await?;
    let rows = ports
        .relations
        .list(
            task.id,
            seen_by(principal),
            principal.project_limit().map(<[Uuid]>::to_vec),
            cursor.after().copied(),
            cursor.fetch_limit(),
        )
        .await?;
    let views: Vec<RelationView> = rows.iter().map(|r| RelationView::new(r, task.id)).collect();
    CursorPage::from_rows(views, &cursor, |v| (v.created_at, v.id))
}

/// What an event or audit entry of a relation says: the two tasks by id, and the type as the
/// task of the path sees it.
fn relation_data(relation: &Relation, from: &Task) -> serde_json::Value {
    let (kind, other) = relation.seen_from(from.id);
    json!({
        "id": relation.id,
        "taskId": from.id,
        "type": kind.as_str(),
        "relatedTaskId": other,
    })
}

/// Relates the task of the path to `body.taskId` (any task the caller can see: 404
/// otherwise). A self-relation, the same relation twice (from either side) or a `blocks`
/// relation that would close a cycle is a 409.
pub async fn create_relation(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    body: CreateRelationBody,
    meta: &RequestMeta,
) -> Result<RelationView, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::WriteTasks).await?;
    let kind = RelationType::parse(&body.relation_type).map_err(|e| AppError::Validation(vec![e]))?;
    let (other, _) = reach_task(ports, principal, body.task_id.trim(), Permission::Read).await?;
    if other.id == task.id {
        return Err(AppError::Conflict("a task cannot relate to itself".into()));
    }
    let relation = Relation::between(
        Uuid::now_v7(),
        task.id,
        kind,
        other.id,
        principal.user_id,
        ports.clock.now(),
    );
    let view = RelationView::new(
        &RelatedTask {
            relation: relation.clone(),
            other_project_id: other.project_id,
            other_identifier: other.identifier(),
        },
        task.id,
    );
    let data = relation_data(&relation, &task);
    let change = ports
        .change(meta, principal, EventType::RelationCreated, task.project_id)
        .resource(relation.id)
        .needs(Permission::WriteTasks)
        .details(data.clone())
        .data(data)
        .build();
    let blocked = blocked_task(&relation, [&task, &other]);
    ports
        .commit(
            &change,
            ports
                .relations
                .create(&relation, &change)
                .map_ok(|()| Also {
                    written: (),
                    tasks: blocked,
                })
                .map_err(|e| match e {
                    StoreError::Conflict(why) if why == "cycle" => {
                        AppError::Conflict("the relation would close a cycle of blocking tasks".into())
                    }
                    StoreError::Conflict(_) => AppError::Conflict("the tasks are related so already".into()),
                    other => not_found_as("task")(other),
                }),
        )
        .await?;
    Ok(view)
}

/// Deletes a relation of the task of the path (members and up), when the caller can see the
/// other task too (404 otherwise: the relation does not exist for them).
pub async fn delete_relation(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    relation_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::WriteTasks).await?;
    let relation = ports
        .relations
        .find(task.id, relation_id)
        .await?
        .ok_or(AppError::NotFound("relation"))?;
    let (_, other) = relation.seen_from(task.id);
    let (other, _) = reach_task(ports, principal, &other.to_string(), Permission::Read)
        .await
        .map_err(|e| match e {
            AppError::NotFound(_) => AppError::NotFound("relation"),
            other => other,
        })?;
    let blocked = blocked_task(&relation, [&task, &other]);
    let data = relation_data(&relation, &task);
    let change = ports
        .change(meta, principal, EventType::RelationDeleted, task.project_id)
        .resource(relation_id)
        .needs(Permission::WriteTasks)
        .details(data.clone())
        .data(data)
        .build();
    ports
        .commit(
            &change,
            ports
                .relations
                .delete(relation_id, &change)
                .map_ok(|()| Also {
                    written: (),
                    tasks: blocked,
                })
                .map_err(not_found_as("relation")),
        )
        .await
        .map(|_| ())
}

/// The task a `blocks` relation between `tasks` blocks, as `(project, task)`: its
/// `blockedByCount` counts the relation. Other relations change no task's view.
fn blocked_task(relation: &Relation, tasks: [&Task; 2]) -> Vec<(Uuid, Uuid)> {
    if relation.kind != RelationType::Blocks {
        return Vec::new();
    }
    tasks
        .iter()
        .find(|t| t.id == relation.target_task_id)
        .map(|t| vec![(t.project_id, t.id)])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::{MockRelationRepository, MockTaskRepository};
    use keel_domain::tracking::{ProjectAccess, TaskTitle};

    use super::super::fixtures::*;
    use super::*;

    /// The fixture's task `KEEL-1`, `KEEL-2` in the same project, and `HIDE-1` in a project
    /// nobody of the cast belongs to.
    fn tasks() -> MockTaskRepository {
        let one = task();
        let mut two = task();
        two.id = Uuid::from_u128(0x2222);
        two.number = 2;
        two.title = TaskTitle::parse("Second").unwrap();
        let mut hidden = task();
        hidden.id = Uuid::from_u128(0x3333);
        hidden.project_id = Uuid::from_u128(0x4444);
        hidden.project_key = keel_domain::tracking::ProjectKey::parse("HIDE").unwrap();
        let all = vec![one, two, hidden];
        let by_number = all.clone();
        let mut tasks = MockTaskRepository::new();
        let access = |t: &Task, user: Uuid| {
            if t.project_id == PROJECT_ID {
                access_of(user)
            } else {
                let mut project = project();
                project.id = t.project_id;
                ProjectAccess { project, role: None }
            }
        };
        tasks.expect_find_with_access().returning(move |id, user| {
            Ok(all
                .iter()
                .find(|t| t.id == id)
                .map(|t| (t.clone(), access(t, user))))
        });
        tasks
            .expect_find_by_number_with_access()
            .returning(move |key, n, user| {
                Ok(by_number
                    .iter()
                    .find(|t| t.project_key == *key && t.number == n)
                    .map(|t| (t.clone(), access(t, user))))
            });
        tasks
    }

    fn body(kind: &str, other: &str) -> CreateRelationBody {
        CreateRelationBody {
            relation_type: kind.into(),
            task_id: other.into(),
        }
    }

    #[tokio::test]
    async fn members_relate_tasks_stored_canonically_and_shown_from_their_side() {
        let mut relations = MockRelationRepository::new();
        relations
            .expect_create()
            .withf(|r, c| {
                // KEEL-1 blocked_by KEEL-2 is KEEL-2 blocks KEEL-1.
                r.source_task_id == Uuid::from_u128(0x2222)
                    && r.target_task_id == task().id
                    && r.kind == RelationType::Blocks
                    && c.audit.action == "relation.created"
                    && c.event.event.data["type"] == "blocked_by"
                    && c.event.event.data["relatedTaskId"] == json!(Uuid::from_u128(0x2222))
            })
            .times(1)
            .returning(|_, _| Ok(()));
        relations.expect_create().returning(|_, _| Ok(()));
        let fixture = Fixture {
            relations,
            tasks: tasks(),
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let view = create_relation(&ports, &member(), "KEEL-1", body("blocked_by", "keel-2"), &meta())
            .await
            .unwrap();
        // KEEL-1 counts one more blocker: its view and its project's pages are stale.
        assert_eq!(
            cache.invalidated(),
            [format!("tasks-of:{PROJECT_ID}"), format!("task:{}", task().id)]
        );
        // A relation that blocks nothing makes nothing stale.
        create_relation(&ports, &member(), "KEEL-1", body("relates_to", "KEEL-2"), &meta())
            .await
            .unwrap();
        assert_eq!(cache.invalidated().len(), 2);
        assert_eq!(view.relation_type, "blocked_by");
        assert_eq!(
            (view.task_id, view.identifier.as_str()),
            (Uuid::from_u128(0x2222), "KEEL-2")
        );
        assert!(matches!(
            create_relation(&ports, &viewer(), "KEEL-1", body("blocks", "KEEL-2"), &meta()).await,
            Err(AppError::Forbidden)
        ));
    }

    #[tokio::test]
    async fn self_relations_invisible_tasks_and_bad_types_are_refused_before_any_write() {
        let mut relations = MockRelationRepository::new();
        relations.expect_create().never();
        let ports = Fixture {
            relations,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        assert!(matches!(
            create_relation(
                &ports,
                &member(),
                "KEEL-1",
                body("relates_to", &task().id.to_string()),
                &meta()
            )
            .await,
            Err(AppError::Conflict(_))
        ));
        for hidden in ["HIDE-1", "NONE-9", "not a task"] {
            assert!(
                matches!(
                    create_relation(&ports, &member(), "KEEL-1", body("blocks", hidden), &meta()).await,
                    Err(AppError::NotFound("task"))
                ),
                "{hidden}"
            );
        }
        assert_eq!(
            fields(
                create_relation(&ports, &member(), "KEEL-1", body("parent_of", "KEEL-2"), &meta())
                    .await
                    .unwrap_err()
            ),
            vec!["type"]
        );
    }

    #[tokio::test]
    async fn the_stores_refusals_are_409s_with_their_reason() {
        let mut relations = MockRelationRepository::new();
        relations
            .expect_create()
            .times(1)
            .returning(|_, _| Err(StoreError::Conflict("cycle".into())));
        relations
            .expect_create()
            .times(1)
            .returning(|_, _| Err(StoreError::Conflict("duplicate".into())));
        let ports = Fixture {
            relations,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        for want in ["cycle", "related so already"] {
            match create_relation(&ports, &member(), "KEEL-1", body("blocks", "KEEL-2"), &meta()).await {
                Err(AppError::Conflict(message)) => assert!(message.contains(want), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_relation_to_a_task_the_caller_cannot_see_cannot_be_deleted_and_is_404() {
        let hidden = Relation::between(
            Uuid::from_u128(0x51),
            task().id,
            RelationType::RelatesTo,
            Uuid::from_u128(0x3333),
            owner().user_id,
            now(),
        );
        let visible = Relation::between(
            Uuid::from_u128(0x52),
            task().id,
            RelationType::Blocks,
            Uuid::from_u128(0x2222),
            owner().user_id,
            now(),
        );
        let mut relations = MockRelationRepository::new();
        let known = [hidden.clone(), visible.clone()];
        relations
            .expect_find()
            .returning(move |_, id| Ok(known.iter().find(|r| r.id == id).cloned()));
        relations
            .expect_delete()
            .withf(|id, c| *id == Uuid::from_u128(0x52) && c.audit.action == "relation.deleted")
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            relations,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        assert!(matches!(
            delete_relation(&ports, &member(), "KEEL-1", hidden.id, &meta()).await,
            Err(AppError::NotFound("relation"))
        ));
        assert!(matches!(
            delete_relation(&ports, &viewer(), "KEEL-1", visible.id, &meta()).await,
            Err(AppError::Forbidden)
        ));
        delete_relation(&ports, &member(), "KEEL-1", visible.id, &meta())
            .await
            .unwrap();
    }
}
