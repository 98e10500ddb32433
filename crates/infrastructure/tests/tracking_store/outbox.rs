//! The outbox and its dispatcher.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keel_application::events::{BusMessage, EventBus};
use keel_domain::tracking::Project;
use keel_infrastructure::entities::{webhook_deliveries, webhooks};
use keel_infrastructure::events::{Dispatcher, DispatcherSettings, InProcessBus, Outbox};
use sea_orm::{EntityTrait, QueryOrder, Set};
use uuid::Uuid;

use crate::common::*;

// The outbox and its dispatcher (docs/api/events-and-webhooks.md)

fn dispatcher(s: &Store, bus: Arc<InProcessBus>) -> Dispatcher {
    Dispatcher::new(
        Outbox::new(s.db.clone()),
        bus,
        None,
        DispatcherSettings {
            batch_size: 4,
            ..DispatcherSettings::default()
        },
    )
}

async fn webhook(s: &Store, p: &Project, owner: Uuid, events: serde_json::Value, enabled: bool) -> Uuid {
    let id = Uuid::now_v7();
    webhooks::Entity::insert(webhooks::ActiveModel {
        id: Set(id),
        project_id: Set(p.id),
        url: Set("https://hooks.example.com/keel".into()),
        events: Set(events),
        secret: Set("sealed".into()),
        enabled: Set(enabled),
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
    id
}

async fn received(stream: &mut futures::stream::BoxStream<'static, BusMessage>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
        match message {
            BusMessage::Event(e) => ids.push(e.event.id),
            BusMessage::Notification(_) => {}
            BusMessage::Interrupted | BusMessage::Lagged => panic!("no interruption expected"),
        }
    }
    ids
}

#[tokio::test]
async fn the_dispatcher_publishes_in_commit_order_queues_deliveries_and_empties_the_outbox() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "OUT", owner).await;
        let all = webhook(
            &s,
            &p,
            owner,
            serde_json::json!(["task.created", "project.created"]),
            true,
        )
        .await;
        let _tasks_only = webhook(&s, &p, owner, serde_json::json!(["task.deleted"]), true).await;
        let _disabled = webhook(&s, &p, owner, serde_json::json!(["task.created"]), false).await;
        for n in 0..9 {
            create_task(&s, task_value(&p, owner, &format!("T{n}")), &[]).await;
        }
        let expected: Vec<Uuid> = outbox_events_of(&s, p.id)
            .await
            .iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(expected.len(), 10, "{}: the project and nine tasks", s.name);

        let bus = Arc::new(InProcessBus::default());
        let mut stream = bus.subscribe();
        let d = dispatcher(&s, bus.clone());
        // 10 events in batches of 4.
        assert_eq!(d.drain().await.unwrap(), 10, "{}", s.name);
        assert_eq!(
            received(&mut stream).await,
            expected,
            "{}: in commit order",
            s.name
        );
        assert!(outbox_events_of(&s, p.id).await.is_empty(), "{}", s.name);

        let deliveries = webhook_deliveries::Entity::find()
            .order_by_asc(webhook_deliveries::Column::Id)
            .all(s.db.connection())
            .await
            .unwrap();
        assert_eq!(
            deliveries.len(),
            10,
            "{}: only the subscribed, enabled webhook",
            s.name
        );
        assert!(
            deliveries
                .iter()
                .all(|d| d.webhook_id == all && d.status == "pending")
        );
        let first: serde_json::Value = serde_json::from_str(&deliveries[0].payload).unwrap();
        assert_eq!(first["type"], "project.created", "{}", s.name);
        assert_eq!(first["id"], serde_json::json!(expected[0]), "{}", s.name);
        assert_eq!(d.drain().await.unwrap(), 0, "{}: nothing twice", s.name);
    }
}

#[tokio::test]
async fn one_instance_dispatches_at_a_time_and_a_crash_between_storing_and_publishing_publishes_later() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LEASE", owner).await;
        let bus = Arc::new(InProcessBus::default());
        let short = |s: &Store| {
            Dispatcher::new(
                Outbox::new(s.db.clone()),
                bus.clone(),
                None,
                DispatcherSettings {
                    lease_ttl: Duration::from_millis(300),
                    ..DispatcherSettings::default()
                },
            )
        };
        let (a, b) = (short(&s), short(&s));
        assert!(a.claim().await.unwrap(), "{}", s.name);
        assert!(!b.claim().await.unwrap(), "{}: the lease is held", s.name);
        assert_eq!(b.drain().await.unwrap(), 0, "{}: b publishes nothing", s.name);

        // a is "killed" between moving a batch into the feed and publishing it: the event
        // is stored with its position, and no client heard of it.
        let mut stream = bus.subscribe();
        let outbox = Outbox::new(s.db.clone());
        let batch = outbox.next_batch(10).await.unwrap();
        let expected: Vec<Uuid> = batch
            .iter()
            .filter_map(|p| p.envelope.as_ref().map(|e| e.event.id))
            .collect();
        assert_eq!(expected.len(), 1, "{}", s.name);
        assert!(
            outbox
                .finish(a.holder(), chrono::Utc::now(), Duration::from_millis(300), &batch)
                .await
                .unwrap()
                .is_some(),
            "{}: moved under a's lease",
            s.name
        );
        assert!(received(&mut stream).await.is_empty(), "{}", s.name);

        // Its lease runs out; b takes over and publishes what a stored and never published.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(b.claim().await.unwrap(), "{}: b takes the expired lease", s.name);
        assert_eq!(
            b.drain().await.unwrap(),
            1,
            "{}: the stored, unpublished event",
            s.name
        );
        assert_eq!(
            received(&mut stream).await,
            expected,
            "{}: published once",
            s.name
        );
        assert_eq!(b.drain().await.unwrap(), 0, "{}: and not again", s.name);
        assert!(outbox_events_of(&s, p.id).await.is_empty(), "{}", s.name);
        assert!(
            !a.claim().await.unwrap(),
            "{}: a is not the holder any more",
            s.name
        );
    }
}
