//! `GET /admin/users/metrics` as one aggregate statement: every figure comes from a derived
//! table grouped by user and joined to `users` — no per-user query, whatever the page size.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::ports::{MetricsSort, MetricsSortKey, UserMetrics, UserMetricsQuery};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, Statement};
use uuid::Uuid;

use crate::db::{Database, store_error};
use crate::entities::users;

#[derive(Debug, Clone)]
pub struct SqlUserMetricsQuery {
    db: Database,
}

impl SqlUserMetricsQuery {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

const METRICS_SQL: &str = "\
SELECT u.id AS user_id, u.name AS name, u.email AS email,
       COALESCE(po.n, 0) AS projects_owned,
       COALESCE(tc.n, 0) AS tasks_created,
       COALESCE(ta.open_n, 0) AS tasks_open_assigned,
       COALESCE(ta.done_n, 0) AS tasks_completed,
       COALESCE(cp.n, 0) AS comments_posted,
       la.at AS last_active_at
FROM users u
LEFT JOIN (SELECT owner_id AS uid, COUNT(*) AS n FROM projects GROUP BY owner_id) po ON po.uid = u.id
LEFT JOIN (SELECT created_by AS uid, COUNT(*) AS n FROM tasks WHERE deleted_at IS NULL GROUP BY created_by) tc ON tc.uid = u.id
LEFT JOIN (SELECT assignee_id AS uid,
                  SUM(CASE WHEN status_category IN ('completed', 'canceled') THEN 0 ELSE 1 END) AS open_n,
                  SUM(CASE WHEN status_category = 'completed' THEN 1 ELSE 0 END) AS done_n
           FROM tasks WHERE assignee_id IS NOT NULL AND deleted_at IS NULL GROUP BY assignee_id) ta ON ta.uid = u.id
LEFT JOIN (SELECT author_id AS uid, COUNT(*) AS n FROM comments GROUP BY author_id) cp ON cp.uid = u.id
LEFT JOIN (SELECT user_id AS uid, MAX(last_used_at) AS at FROM sessions GROUP BY user_id) la ON la.uid = u.id";

/// The ORDER BY clause, from a closed set of columns (never from input text). NULLs of
/// `last_active_at` sort last both ways, on both databases.
fn order_by(sort: MetricsSort) -> String {
    let column = match sort.key {
        MetricsSortKey::Name => "u.name",
        MetricsSortKey::Email => "u.email",
        MetricsSortKey::ProjectsOwned => "projects_owned",
        MetricsSortKey::TasksCreated => "tasks_created",
        MetricsSortKey::TasksOpenAssigned => "tasks_open_assigned",
        MetricsSortKey::TasksCompleted => "tasks_completed",
        MetricsSortKey::CommentsPosted => "comments_posted",
        MetricsSortKey::LastActiveAt => "la.at",
    };
    let direction = if sort.descending { "DESC" } else { "ASC" };
    let nulls_last = if sort.key == MetricsSortKey::LastActiveAt {
        "CASE WHEN la.at IS NULL THEN 1 ELSE 0 END, "
    } else {
        ""
    };
    format!(" ORDER BY {nulls_last}{column} {direction}, u.id ASC")
}

fn count(row: &sea_orm::QueryResult, column: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get("", column).map_err(store_error)?;
    u64::try_from(n).map_err(|_| StoreError::Unexpected(format!("negative {column}").into()))
}

#[async_trait]
impl UserMetricsQuery for SqlUserMetricsQuery {
    async fn page(
        &self,
        sort: MetricsSort,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<UserMetrics>, u64), StoreError> {
        let conn = self.db.connection();
        let backend = conn.get_database_backend();
        let paging = match backend {
            DbBackend::Postgres => " LIMIT $1 OFFSET $2",
            _ => " LIMIT ? OFFSET ?",
        };
        let sql = format!("{METRICS_SQL}{}{paging}", order_by(sort));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [limit.into(), offset.into()],
            ))
            .await
            .map_err(store_error)?;
        let total = users::Entity::find().count(conn).await.map_err(store_error)?;
        let metrics = rows
            .iter()
            .map(|row| {
                Ok(UserMetrics {
                    user_id: row.try_get::<Uuid>("", "user_id").map_err(store_error)?,
                    name: row.try_get("", "name").map_err(store_error)?,
                    email: row.try_get("", "email").map_err(store_error)?,
                    projects_owned: count(row, "projects_owned")?,
                    tasks_created: count(row, "tasks_created")?,
                    tasks_open_assigned: count(row, "tasks_open_assigned")?,
                    tasks_completed: count(row, "tasks_completed")?,
                    comments_posted: count(row, "comments_posted")?,
                    last_active_at: row
                        .try_get::<Option<DateTime<Utc>>>("", "last_active_at")
                        .map_err(store_error)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((metrics, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_uses_only_known_columns_and_a_unique_tiebreaker() {
        let clause = order_by(MetricsSort {
            key: MetricsSortKey::TasksCreated,
            descending: true,
        });
        assert_eq!(clause, " ORDER BY tasks_created DESC, u.id ASC");
        let clause = order_by(MetricsSort {
            key: MetricsSortKey::LastActiveAt,
            descending: false,
        });
        assert!(clause.starts_with(" ORDER BY CASE WHEN la.at IS NULL THEN 1 ELSE 0 END, la.at ASC"));
    }
}
