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

/// The names of the indexes on `tasks`, as the database lists them.
async fn task_indexes(s: &Store) -> Vec<String> {
    let conn = s.db.connection();
    let backend = conn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'tasks'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'",
    };
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(backend, sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect()
}

#[tokio::test]
async fn the_task_lifecycle_migration_goes_down_and_up_again() {
    const NAME: &str = "m20261207_000009_task_lifecycle";
    const OLD: [&str; 5] = [
        "ix_tasks_project_created",
        "ix_tasks_project_updated",
        "ix_tasks_project_priority",
        "ix_tasks_project_due",
        "ix_tasks_created",
    ];
    const NEW: [&str; 6] = [
        "ix_tasks_life_project_created",
        "ix_tasks_life_project_updated",
        "ix_tasks_life_project_priority",
        "ix_tasks_life_project_due",
        "ix_tasks_life_created",
        "ix_tasks_trash",
    ];
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "LIFE", owner).await;
        let live = create_task(&s, task_value(&p, owner, "Live"), &[]).await;
        let mut trashed = create_task(&s, task_value(&p, owner, "Trashed"), &[]).await;
        let expected = trashed.version;
        trashed.version += 1;
        trashed.archived_at = Some(at(5));
        trashed.deleted_at = Some(at(6));
        assert!(
            s.tasks
                .update(&trashed, None, expected, &audit("task.deleted", Some(p.id)))
                .await
                .unwrap()
        );
        let indexes = task_indexes(&s).await;
        for name in NEW {
            assert!(indexes.iter().any(|i| i == name), "{}: up made {name}", s.name);
        }
        for name in OLD {
            assert!(
                !indexes.iter().any(|i| i == name),
                "{}: up dropped {name}",
                s.name
            );
        }

        let status = migrate::status(&s.db).await.unwrap();
        let at_index = status.iter().position(|m| m.name == NAME).expect("registered");
        let steps = u32::try_from(status.len() - at_index).unwrap();
        migrate::down(&s.db, steps).await.unwrap();
        let conn = s.db.connection();
        let backend = conn.get_database_backend();
        for column in ["SELECT archived_at FROM tasks", "SELECT deleted_at FROM tasks"] {
            assert!(
                conn.query_all_raw(sea_orm::Statement::from_string(backend, column))
                    .await
                    .is_err(),
                "{}: down dropped `{column}`",
                s.name
            );
        }
        let indexes = task_indexes(&s).await;
        for name in OLD {
            assert!(
                indexes.iter().any(|i| i == name),
                "{}: down made {name} again",
                s.name
            );
        }
        for name in NEW {
            assert!(
                !indexes.iter().any(|i| i == name),
                "{}: down dropped {name}",
                s.name
            );
        }

        migrate::up(&s.db).await.unwrap();
        assert!(migrate::status(&s.db).await.unwrap().iter().all(|m| m.applied));
        assert_eq!(
            s.tasks.find(live.id).await.unwrap(),
            Some(live),
            "{}: rows survive",
            s.name
        );
        // Down forgets the archive and the trash: the trashed task comes back as a live one
        // (a rollback loses no task).
        let back = s
            .tasks
            .find(trashed.id)
            .await
            .unwrap()
            .expect("back among the live");
        assert_eq!((back.archived_at, back.deleted_at), (None, None), "{}", s.name);
        assert_eq!(back.title, trashed.title, "{}", s.name);
    }
}
