//! A one-statement read: reference (b) that `make bench` measures Keel's uncached reads
//! against in the same run (the budget is a share of it). actix-web + SeaORM selecting one row
//! by primary key from the same PostgreSQL and JSON-encoding it: no authentication, no
//! middleware, no cache — what a hand-written handler on the same stack costs for one round
//! trip to the database.
//!
//!   KEEL_BIND=127.0.0.1:18099 DATABASE_URL=postgres://… \
//!       cargo run --release -p keel-api --example one_statement
//!
//! Routes: `GET /projects/{id}`, `GET /tasks/{id}` and `GET /users/{id}` (every column but
//! the password hash); 404 for an id with no row, 503 when the database fails.
//!
//! It reads keel's own configuration (`keel_api::Settings::from_env`), so that it runs with
//! keel's environment and gets what keel would: the address (`KEEL_BIND`), the database and
//! the same pool (`KEEL_DB_MAX_CONNECTIONS`, its timeouts, the same connection checks:
//! `keel_infrastructure::Database::connect`, without the statement metrics), and the same
//! number of workers (`KEEL_WORKERS`, else actix's default, one per CPU).

use actix_web::{App, HttpResponse, HttpServer, web};
use keel_infrastructure::Database;
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

mod project {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "projects")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub key: String,
        pub name: String,
        pub description: Option<String>,
        pub status: String,
        pub owner_id: Uuid,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod task {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "tasks")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub project_id: Uuid,
        pub number: i64,
        pub title: String,
        pub description: Option<String>,
        pub status: String,
        pub priority: i16,
        pub assignee_id: Option<Uuid>,
        pub due_date: Option<Date>,
        pub created_by: Uuid,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub completed_at: Option<DateTimeUtc>,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod user {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    /// Every column but `password_hash` (never selected).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "users")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub name: String,
        pub role: String,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `SELECT … FROM <table> WHERE id = $1`, the row as JSON.
async fn by_id<E>(db: &DatabaseConnection, id: Uuid) -> HttpResponse
where
    E: EntityTrait,
    E::PrimaryKey: sea_orm::PrimaryKeyTrait<ValueType = Uuid>,
    E::Model: serde::Serialize,
{
    match E::find_by_id(id).one(db).await {
        Ok(Some(row)) => HttpResponse::Ok().json(row),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = keel_api::Settings::from_env()?;
    let db = Database::connect(&keel_api::startup::db_settings(&settings), None)
        .await
        .map_err(|error| anyhow::anyhow!("database: {error}"))?;
    let db = web::Data::new(db.connection().pool().clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(db.clone())
            .route(
                "/projects/{id}",
                web::get().to(
                    |db: web::Data<DatabaseConnection>, id: web::Path<Uuid>| async move {
                        by_id::<project::Entity>(&db, id.into_inner()).await
                    },
                ),
            )
            .route(
                "/tasks/{id}",
                web::get().to(
                    |db: web::Data<DatabaseConnection>, id: web::Path<Uuid>| async move {
                        by_id::<task::Entity>(&db, id.into_inner()).await
                    },
                ),
            )
            .route(
                "/users/{id}",
                web::get().to(
                    |db: web::Data<DatabaseConnection>, id: web::Path<Uuid>| async move {
                        by_id::<user::Entity>(&db, id.into_inner()).await
                    },
                ),
            )
    });
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    server.bind(settings.bind)?.run().await?;
    Ok(())
}
