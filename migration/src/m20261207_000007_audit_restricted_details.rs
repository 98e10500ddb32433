//! Audit entries get a second part of their details, `restricted_details`, that only a
//! project's admins (and instance admins) may read: the activity feed shows every member
//! `details` alone. Entries written before it held a webhook's URL and events in `details`,
//! shown to every member: they move to the new column.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::prelude::{Json, Uuid};
use sea_orm_migration::sea_orm::{ConnectionTrait, FromQueryResult};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The actions whose details held what is now restricted, and those keys.
const MOVED: [&str; 2] = ["webhook.created", "webhook.deleted"];
const RESTRICTED_KEYS: [&str; 2] = ["url", "events"];

#[derive(Debug, FromQueryResult)]
struct Row {
    id: Uuid,
    details: Option<Json>,
    restricted_details: Option<Json>,
}

async fn rows(manager: &SchemaManager<'_>, condition: SimpleExpr) -> Result<Vec<Row>, DbErr> {
    let conn = manager.get_connection();
    let select = Query::select()
        .columns([AuditLog::Id, AuditLog::Details, AuditLog::RestrictedDetails])
        .from(AuditLog::Table)
        .and_where(condition)
        .to_owned();
    Row::find_by_statement(conn.get_database_backend().build(&select))
        .all(conn)
        .await
}

async fn save(
    manager: &SchemaManager<'_>,
    id: Uuid,
    details: Option<Json>,
    restricted: Option<Json>,
) -> Result<(), DbErr> {
    manager
        .exec_stmt(
            Query::update()
                .table(AuditLog::Table)
                .value(AuditLog::Details, details)
                .value(AuditLog::RestrictedDetails, restricted)
                .and_where(Expr::col(AuditLog::Id).eq(id))
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .add_column(json_null(AuditLog::RestrictedDetails))
                    .to_owned(),
            )
            .await?;
        for row in rows(manager, Expr::col(AuditLog::Action).is_in(MOVED)).await? {
            let Some(mut details) = row.details.filter(Json::is_object) else {
                continue;
            };
            let mut restricted = empty_object();
            if let (Some(from), Some(to)) = (details.as_object_mut(), restricted.as_object_mut()) {
                for key in RESTRICTED_KEYS {
                    if let Some(value) = from.remove(key) {
                        to.insert(key.to_owned(), value);
                    }
                }
            }
            if restricted.as_object().is_some_and(|r| !r.is_empty()) {
                save(manager, row.id, Some(details), Some(restricted)).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The restricted keys go back into `details`, as they were before.
        for row in rows(manager, Expr::col(AuditLog::RestrictedDetails).is_not_null()).await? {
            let mut details = row.details.filter(Json::is_object).unwrap_or_else(empty_object);
            if let (Some(into), Some(Json::Object(restricted))) =
                (details.as_object_mut(), row.restricted_details)
            {
                into.extend(restricted);
            }
            save(manager, row.id, Some(details), None).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(AuditLog::RestrictedDetails)
                    .to_owned(),
            )
            .await
    }
}

fn empty_object() -> Json {
    Json::Object(Default::default())
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Action,
    Details,
    RestrictedDetails,
}
