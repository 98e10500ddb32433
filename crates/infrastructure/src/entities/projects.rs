use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub key: String,
    pub name: String,
    /// `name` lower-cased by the application (Unicode), for the case-insensitive search.
    pub name_folded: String,
    pub description: Option<String>,
    pub status: String,
    pub owner_id: Uuid,
    pub last_task_number: i64,
    /// The key of the state new tasks get (`workflow_states.key`).
    pub default_state: String,
    /// The keys of the project's states, comma-separated (kept in step by the state store).
    pub state_keys: String,
    /// Incremented by every change of the project (its `ETag`).
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
