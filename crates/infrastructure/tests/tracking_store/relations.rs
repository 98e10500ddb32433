//! Relations between tasks.

use keel_domain::StoreError;
use keel_domain::tracking::ports::{RelationRepository, TaskRepository};
use keel_domain::tracking::{Relation, RelationType};
use keel_infrastructure::tracking::SeaOrmRelationRepository;
use uuid::Uuid;

use crate::common::*;

fn relation(task: Uuid, kind: RelationType, other: Uuid, by: Uuid, minute: i64) -> Relation {
    Relation::between(Uuid::now_v7(), task, kind, other, by, at(minute))
}

#[tokio::test]
async fn relations_are_one_row_seen_from_both_sides_and_refuse_duplicates_and_cycles() {
    for s in stores().await {
        let relations = SeaOrmRelationRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let outsider = user(&s, "Outsider").await;
        let p = project(&s, "REL", owner).await;
        let q = project(&s, "QQQ", owner).await;
        let a = create_task(&s, task_value(&p, owner, "A"), &[]).await;
        let b = create_task(&s, task_value(&p, owner, "B"), &[]).await;
        let c = create_task(&s, task_value(&p, owner, "C"), &[]).await;
        let x = create_task(&s, task_value(&q, owner, "X"), &[]).await;
        let add = |r: Relation| {
            let relations = relations.clone();
            async move {
                relations
                    .create(&r, &audit("relation.created", Some(p.id)))
                    .await
                    .map(|()| r)
            }
        };
        // B blocked_by A is stored as A blocks B.
        let ab = add(relation(b.id, RelationType::BlockedBy, a.id, owner, 0))
            .await
            .unwrap();
        assert_eq!(
            (ab.source_task_id, ab.target_task_id, ab.kind),
            (a.id, b.id, RelationType::Blocks)
        );
        let bc = add(relation(b.id, RelationType::Blocks, c.id, owner, 1))
            .await
            .unwrap();
        let ax = add(relation(a.id, RelationType::RelatesTo, x.id, owner, 2))
            .await
            .unwrap();

        let from_b = relations.list(b.id, Some(owner), None, None, 10).await.unwrap();
        let seen: Vec<(RelationType, Uuid, String)> = from_b
            .iter()
            .map(|r| {
                let (kind, other) = r.relation.seen_from(b.id);
                (kind, other, r.other_identifier.clone())
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (RelationType::BlockedBy, a.id, "REL-1".to_owned()),
                (RelationType::Blocks, c.id, "REL-3".to_owned()),
            ],
            "{}",
            s.name
        );
        // Paged, and only relations to tasks the viewer can see.
        let first = relations.list(a.id, None, None, None, 1).await.unwrap();
        assert_eq!(first.len(), 1);
        let rest = relations
            .list(
                a.id,
                None,
                None,
                Some((first[0].relation.created_at, first[0].relation.id)),
                10,
            )
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].relation, ax);
        assert_eq!(rest[0].other_project_id, q.id);
        assert!(
            relations
                .list(a.id, Some(outsider), None, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // A token limited to `p` sees only the relations to tasks of `p`.
        let limited = relations
            .list(a.id, Some(owner), Some(vec![p.id]), None, 10)
            .await
            .unwrap();
        assert!(limited.iter().all(|r| r.other_project_id == p.id), "{}", s.name);
        assert_eq!(limited.len(), 1, "{}", s.name);

        // The same relation again, from either side, is a conflict; so is a cycle of blocks.
        let before = audit_entries(&s, p.id).await;
        for again in [
            relation(a.id, RelationType::Blocks, b.id, owner, 3),
            relation(x.id, RelationType::RelatesTo, a.id, owner, 3),
        ] {
            assert!(
                matches!(add(again).await, Err(StoreError::Conflict(why)) if why == "duplicate"),
                "{}",
                s.name
            );
        }
        for cycle in [
            relation(c.id, RelationType::Blocks, a.id, owner, 3),
            relation(b.id, RelationType::Blocks, a.id, owner, 3),
            relation(a.id, RelationType::BlockedBy, c.id, owner, 3),
        ] {
            assert!(
                matches!(add(cycle).await, Err(StoreError::Conflict(why)) if why == "cycle"),
                "{}",
                s.name
            );
        }
        assert_eq!(
            audit_entries(&s, p.id).await,
            before,
            "refused writes record nothing"
        );
        // Not a cycle: another kind, or the same direction.
        add(relation(c.id, RelationType::DuplicateOf, a.id, owner, 4))
            .await
            .unwrap();
        add(relation(a.id, RelationType::Blocks, c.id, owner, 4))
            .await
            .unwrap();
        let mut orphan = relation(a.id, RelationType::Blocks, x.id, owner, 5);
        orphan.target_task_id = Uuid::now_v7();
        assert!(matches!(add(orphan).await, Err(StoreError::NotFound)));

        assert_eq!(relations.find(c.id, bc.id).await.unwrap(), Some(bc.clone()));
        assert_eq!(
            relations.find(a.id, bc.id).await.unwrap(),
            None,
            "not a relation of A"
        );
        relations
            .delete(bc.id, &audit("relation.deleted", Some(p.id)))
            .await
            .unwrap();
        assert!(matches!(
            relations
                .delete(bc.id, &audit("relation.deleted", Some(p.id)))
                .await,
            Err(StoreError::NotFound)
        ));
        // Without B blocks C, C blocks A still closes a cycle through A blocks C.
        assert!(matches!(
            add(relation(c.id, RelationType::Blocks, a.id, owner, 6)).await,
            Err(StoreError::Conflict(_))
        ));
        // Purging a task deletes its relations.
        s.tasks
            .purge(x.id, None, &audit("task.purged", Some(q.id)))
            .await
            .unwrap();
        assert_eq!(relations.find(a.id, ax.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn concurrent_blocks_that_would_close_a_cycle_commit_one() {
    for s in stores().await {
        let relations = SeaOrmRelationRepository::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "RACE", owner).await;
        let mut tasks = Vec::new();
        for i in 0..4 {
            tasks.push(
                create_task(&s, task_value(&p, owner, &format!("T{i}")), &[])
                    .await
                    .id,
            );
        }
        for round in 0..5 {
            // A ring of four: each create alone is fine, all four together close a cycle.
            let (a, b, c, d) = (tasks[0], tasks[1], tasks[2], tasks[3]);
            let ring = [(a, b), (b, c), (c, d), (d, a)];
            let writes = ring.iter().map(|&(from, to)| {
                let relations = relations.clone();
                let r = relation(from, RelationType::Blocks, to, owner, round);
                async move {
                    relations
                        .create(&r, &audit("relation.created", Some(p.id)))
                        .await
                        .map(|()| r.id)
                }
            });
            let results = futures::future::join_all(writes).await;
            let won: Vec<Uuid> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
            assert_eq!(won.len(), 3, "{}: {results:?}", s.name);
            assert!(
                results
                    .iter()
                    .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict(why)) if why == "cycle")),
                "{}: {results:?}",
                s.name
            );
            for id in won {
                relations
                    .delete(id, &audit("relation.deleted", Some(p.id)))
                    .await
                    .unwrap();
            }
        }
    }
}
