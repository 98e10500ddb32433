//! SeaORM entities: the tables as the database sees them. Adapters convert them to domain
//! types; nothing outside this crate sees them.

pub mod audit_log;
pub mod comments;
pub mod projects;
pub mod refresh_tokens;
pub mod sessions;
pub mod tasks;
pub mod users;
