//! The tracking migrations.

use keel_domain::tracking::Priority;
use keel_domain::tracking::ports::{ProjectRepository, TaskRepository};
use keel_infrastructure::entities::tasks;
use keel_infrastructure::migrate;
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::common::*;

// The migration

#[tokio::test]
async fn the_tracking_lists_migration_goes_down_and_up_again() {
    const NAME: &str = "m20261122_000004_tracking_lists";
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "MIG", owner).await;
        let mut t = task_value(&p, owner, "Urgent");
        t.priority = Priority::new(1, "priority").unwrap();
        let t = create_task(&s, t, &[]).await;

        let status = migrate::status(&s.db).await.unwrap();
        let at_index = status.iter().position(|m| m.name == NAME).expect("registered");
        let steps = u32::try_from(status.len() - at_index).unwrap();
        migrate::down(&s.db, steps).await.unwrap();
        let conn = s.db.connection();
        let backend = conn.get_database_backend();
        for column in [
            "SELECT version FROM projects",
            "SELECT priority_rank FROM tasks",
            "SELECT version FROM comments",
        ] {
            assert!(
                conn.query_all_raw(sea_orm::Statement::from_string(backend, column))
                    .await
                    .is_err(),
                "{}: down dropped `{column}`",
                s.name
            );
        }

        migrate::up(&s.db).await.unwrap();
        assert!(migrate::status(&s.db).await.unwrap().iter().all(|m| m.applied));
        let back = s.tasks.find(t.id).await.unwrap().unwrap();
        assert_eq!(back, t, "{}: rows survive", s.name);
        let rank: Option<i16> = tasks::Entity::find_by_id(t.id)
            .one(conn)
            .await
            .unwrap()
            .map(|m| m.priority_rank);
        assert_eq!(rank, Some(1), "{}: up ranks existing rows", s.name);
        assert_eq!(s.projects.find(p.id).await.unwrap().unwrap().version, 1);
    }
}
