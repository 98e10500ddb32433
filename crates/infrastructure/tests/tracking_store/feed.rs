//! The resumable event feed: positions in commit order, replay boundaries and visibility,
//! retention (docs/events.md, adr/0021).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use keel_application::events::{BusMessage, EventBus, EventFeed, FeedError, FeedReader};
use keel_domain::events::Envelope;
use keel_domain::tracking::ProjectRole;
use keel_domain::tracking::ports::MemberRepository;
use keel_infrastructure::entities::{event_feed, outbox_events, webhook_deliveries, webhooks};
use keel_infrastructure::events::feed::purge;
use keel_infrastructure::events::{Dispatcher, DispatcherSettings, InProcessBus, Outbox, SeaOrmEventFeed};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use crate::common::*;

fn dispatcher(s: &Store, bus: Arc<InProcessBus>) -> Dispatcher {
    Dispatcher::new(
        Outbox::new(s.db.clone()),
        bus,
        None,
        DispatcherSettings {
            batch_size: 3,
            ..DispatcherSettings::default()
        },
    )
}

fn reader(user: Uuid) -> FeedReader {
    FeedReader {
        user_id: user,
        projects: None,
    }
}

fn seqs(events: &[Envelope]) -> Vec<i64> {
    events.iter().filter_map(|e| e.event.seq).collect()
}

async fn published(stream: &mut futures::stream::BoxStream<'static, BusMessage>) -> Vec<(Uuid, Option<i64>)> {
    let mut out = Vec::new();
    while let Ok(Some(BusMessage::Event(e))) =
        tokio::time::timeout(Duration::from_millis(50), stream.next()).await
    {
        out.push((e.event.id, e.event.seq));
    }
    out
}

/// Writes an event to the outbox as a change of project `project` would, with the outbox
/// position `seq` (as a transaction that took it at insert).
async fn outbox_event(s: &Store, project: Uuid, seq: i64, also_to: Vec<Uuid>) -> Uuid {
    let mut envelope = audit("task.updated", Some(project)).event;
    envelope.also_to = also_to;
    let id = envelope.event.id;
    outbox_events::Entity::insert(outbox_events::ActiveModel {
        seq: Set(seq),
        id: Set(id),
        project_id: Set(project),
        event_type: Set("task.updated".into()),
        envelope: Set(serde_json::to_value(&envelope).unwrap()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(s.db.connection())
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn positions_follow_the_order_events_are_found_committed_not_the_outbox_order() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "SEQ", owner).await;
        let hook = Uuid::now_v7();
        webhooks::Entity::insert(webhooks::ActiveModel {
            id: Set(hook),
            project_id: Set(p.id),
            url: Set("https://hooks.example.com/keel".into()),
            events: Set(serde_json::json!(["task.updated"])),
            secret: Set("sealed".into()),
            enabled: Set(true),
            disabled_reason: Set(None),
            created_by: Set(owner),
            created_at: Set(at(0)),
            updated_at: Set(at(0)),
            consecutive_failures: Set(0),
            open_until: Set(None),
            failing_since: Set(None),
        })
        .exec_without_returning(s.db.connection())
        .await
        .unwrap();
        let bus = Arc::new(InProcessBus::default());
        let mut stream = bus.subscribe();
        let d = dispatcher(&s, bus.clone());
        // The project's own event, then one with a high outbox position, committed first.
        let late_high = outbox_event(&s, p.id, 1000, vec![]).await;
        assert_eq!(d.drain().await.unwrap(), 2, "{}", s.name);
        // A transaction that took a lower outbox position commits after it was published.
        let early_low = outbox_event(&s, p.id, 999, vec![]).await;
        assert_eq!(d.drain().await.unwrap(), 1, "{}", s.name);
        let heard = published(&mut stream).await;
        assert_eq!(heard.len(), 3, "{}", s.name);
        assert_eq!(heard[1], (late_high, Some(2)), "{}", s.name);
        assert_eq!(
            heard[2],
            (early_low, Some(3)),
            "{}: found committed later, placed later",
            s.name
        );
        assert_eq!(
            heard.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3)],
            "{}: no holes",
            s.name
        );
        // The webhook deliveries carry the position too.
        let payloads: Vec<serde_json::Value> = webhook_deliveries::Entity::find()
            .order_by_asc(webhook_deliveries::Column::Id)
            .all(s.db.connection())
            .await
            .unwrap()
            .iter()
            .map(|d| serde_json::from_str(&d.payload).unwrap())
            .collect();
        let mut positions: Vec<i64> = payloads.iter().filter_map(|p| p["seq"].as_i64()).collect();
        positions.sort_unstable();
        assert_eq!(positions, vec![2, 3], "{}", s.name);
        // And the feed holds them, in order.
        let feed = SeaOrmEventFeed::new(s.db.clone());
        let page = feed.page(&reader(owner), None, 10).await.unwrap();
        assert_eq!(seqs(&page.events), vec![1, 2, 3], "{}", s.name);
        assert_eq!(page.next_after, 3, "{}", s.name);
        assert_eq!(feed.head().await.unwrap(), 3, "{}", s.name);
    }
}

#[tokio::test]
async fn a_page_holds_what_the_reader_may_see_after_its_position_and_says_where_to_go_on() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let member = user(&s, "Member").await;
        let stranger = user(&s, "Stranger").await;
        let shared = project(&s, "SHR", owner).await; // 1
        let private = project(&s, "PRV", owner).await; // 2
        let change = audit("member.added", Some(shared.id));
        s.members
            .add(shared.id, member, ProjectRole::Member, at(1), &change)
            .await
            .unwrap(); // 3
        outbox_event(&s, shared.id, 100, vec![]).await; // 4
        outbox_event(&s, private.id, 101, vec![]).await; // 5
        outbox_event(&s, private.id, 102, vec![stranger]).await; // 6: names the stranger
        outbox_event(&s, shared.id, 103, vec![]).await; // 7
        let d = dispatcher(&s, Arc::new(InProcessBus::default()));
        assert_eq!(d.drain().await.unwrap(), 7, "{}", s.name);
        let feed = SeaOrmEventFeed::new(s.db.clone());

        let page = feed.page(&reader(owner), Some(0), 100).await.unwrap();
        assert_eq!(seqs(&page.events), (1..=7).collect::<Vec<_>>(), "{}", s.name);
        let page = feed.page(&reader(member), Some(0), 100).await.unwrap();
        assert_eq!(seqs(&page.events), vec![1, 3, 4, 7], "{}: shared only", s.name);
        assert_eq!(page.next_after, 7, "{}", s.name);
        let page = feed.page(&reader(stranger), Some(0), 100).await.unwrap();
        assert_eq!(seqs(&page.events), vec![6], "{}: what names them", s.name);
        assert_eq!(page.next_after, 7, "{}: past what they may not see", s.name);

        // Boundaries: strictly after `after`; a full page ends at its last event.
        let page = feed.page(&reader(member), Some(3), 1).await.unwrap();
        assert_eq!((seqs(&page.events), page.next_after), (vec![4], 4), "{}", s.name);
        let page = feed.page(&reader(member), Some(4), 1).await.unwrap();
        assert_eq!((seqs(&page.events), page.next_after), (vec![7], 7), "{}", s.name);
        let page = feed.page(&reader(member), Some(7), 1).await.unwrap();
        assert_eq!(
            (seqs(&page.events), page.next_after),
            (vec![], 7),
            "{}: the end",
            s.name
        );

        // A token limited to the private project sees nothing of the shared one.
        let limited = FeedReader {
            user_id: owner,
            projects: Some(vec![private.id]),
        };
        let page = feed.page(&limited, Some(0), 100).await.unwrap();
        assert_eq!(seqs(&page.events), vec![2, 5, 6], "{}", s.name);
        let nowhere = FeedReader {
            user_id: owner,
            projects: Some(vec![]),
        };
        assert!(feed.page(&nowhere, Some(0), 100).await.unwrap().events.is_empty());

        // A position beyond the newest is not one of this feed.
        assert!(matches!(
            feed.page(&reader(owner), Some(8), 10).await,
            Err(FeedError::Gone)
        ));
    }
}

#[tokio::test]
async fn the_purge_removes_only_what_is_older_than_the_retention_and_never_the_newest() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "RET", owner).await;
        for n in 0..4 {
            outbox_event(&s, p.id, 100 + n, vec![owner]).await;
        }
        let d = dispatcher(&s, Arc::new(InProcessBus::default()));
        assert_eq!(d.drain().await.unwrap(), 5, "{}", s.name);
        let now = Utc::now();
        let retention = chrono::Duration::hours(72);
        // 1 and 2 got their positions 73 hours ago, 3 exactly at the limit, 4 and 5 now.
        let age = |seqs: Vec<i64>, hours: i64| {
            let db = s.db.clone();
            async move {
                event_feed::Entity::update_many()
                    .col_expr(
                        event_feed::Column::CreatedAt,
                        Expr::value(now - chrono::Duration::hours(hours)),
                    )
                    .filter(event_feed::Column::Seq.is_in(seqs))
                    .exec(db.connection())
                    .await
                    .unwrap();
            }
        };
        age(vec![1, 2], 73).await;
        age(vec![3], 72).await;
        assert_eq!(purge(&s.db, now, retention).await.unwrap(), 2, "{}", s.name);
        let feed = SeaOrmEventFeed::new(s.db.clone());
        let page = feed.page(&reader(owner), None, 10).await.unwrap();
        assert_eq!(seqs(&page.events), vec![3, 4, 5], "{}", s.name);
        // Resuming after 2 (everything up to it seen) is fine; after 1 lost event 2.
        assert!(feed.page(&reader(owner), Some(2), 10).await.is_ok());
        assert!(matches!(
            feed.page(&reader(owner), Some(1), 10).await,
            Err(FeedError::Gone)
        ));
        assert!(matches!(
            feed.page(&reader(owner), Some(0), 10).await,
            Err(FeedError::Gone)
        ));
        assert_eq!(
            purge(&s.db, now, retention).await.unwrap(),
            0,
            "{}: nothing twice",
            s.name
        );

        // Everything old: the newest stays, so the head is known and positions go on.
        age(vec![3, 4, 5], 100).await;
        assert_eq!(purge(&s.db, now, retention).await.unwrap(), 2, "{}", s.name);
        assert_eq!(feed.head().await.unwrap(), 5, "{}", s.name);
        assert!(feed.page(&reader(owner), Some(5), 10).await.is_ok());
        assert!(matches!(
            feed.page(&reader(owner), Some(3), 10).await,
            Err(FeedError::Gone)
        ));
        outbox_event(&s, p.id, 200, vec![]).await;
        assert_eq!(d.drain().await.unwrap(), 1, "{}", s.name);
        let page = feed.page(&reader(owner), Some(5), 10).await.unwrap();
        assert_eq!(seqs(&page.events), vec![6], "{}", s.name);
    }
}

#[tokio::test]
async fn a_notification_is_made_once_per_event_and_user_whatever_is_redelivered() {
    use keel_infrastructure::entities::notifications;
    use sea_orm::PaginatorTrait;
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let member = user(&s, "Member").await;
        let p = project(&s, "NOT", owner).await;
        let change = audit("member.added", Some(p.id));
        s.members
            .add(p.id, member, ProjectRole::Member, at(1), &change)
            .await
            .unwrap();
        let task = create_task(&s, task_value(&p, owner, "Yours"), &[]).await;
        // The task's event as the use case writes it: the task, assigned to the member.
        let mut envelope = audit("task.created", Some(p.id)).event;
        envelope.event.actor_id = Some(owner);
        envelope.event.data = serde_json::json!({
            "id": task.id, "identifier": "NOT-1", "title": "Yours", "createdBy": owner, "assigneeId": member,
        });
        outbox_events::Entity::insert(outbox_events::ActiveModel {
            id: Set(envelope.event.id),
            project_id: Set(p.id),
            event_type: Set("task.created".into()),
            envelope: Set(serde_json::to_value(&envelope).unwrap()),
            created_at: Set(Utc::now()),
            ..Default::default()
        })
        .exec_without_returning(s.db.connection())
        .await
        .unwrap();
        let d = dispatcher(&s, Arc::new(InProcessBus::default()));
        d.drain().await.unwrap();
        let count = || async {
            notifications::Entity::find()
                .filter(notifications::Column::EventId.eq(envelope.event.id))
                .count(s.db.connection())
                .await
                .unwrap()
        };
        assert_eq!(count().await, 1, "{}: the assignee's, not the actor's", s.name);
        // The same event fanned out again (a redelivery): nothing more.
        let again =
            keel_infrastructure::notifications::fan_out(s.db.connection(), &[envelope.clone()], Utc::now())
                .await
                .unwrap();
        assert!(again.is_empty(), "{}", s.name);
        assert_eq!(count().await, 1, "{}", s.name);
    }
}
