use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub number: i64,
    pub title: String,
    /// `title` lower-cased by the application (Unicode), for the case-insensitive search.
    pub title_folded: String,
    pub description: Option<String>,
    pub status: String,
    /// The category of the task's state, kept in step with `workflow_states`.
    pub status_category: String,
    pub priority: i16,
    /// The sort rank of `priority`: 1 urgent … 4 low, 5 none.
    pub priority_rank: i16,
    pub assignee_id: Option<Uuid>,
    pub due_date: Option<Date>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub version: i64,
    /// When the task was archived; NULL when it is not.
    pub archived_at: Option<DateTimeUtc>,
    /// When the task was moved to its project's trash; NULL for a task not in the trash.
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::projects::Entity",
        from = "Column::ProjectId",
        to = "super::projects::Column::Id"
    )]
    Project,
}

impl ActiveModelBehavior for ActiveModel {}
