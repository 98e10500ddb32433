//! SeaORM entities: the tables as the database sees them. Adapters convert them to domain
//! types; nothing outside this crate sees them.

pub mod account_tokens;
pub mod audit_log;
pub mod comments;
pub mod event_feed;
pub mod event_feed_marks;
pub mod event_feed_recipients;
pub mod idempotency_keys;
pub mod invitations;
pub mod labels;
pub mod mail_outbox;
pub mod notifications;
pub mod outbox_events;
pub mod outbox_leases;
pub mod personal_tokens;
pub mod project_members;
pub mod projects;
pub mod refresh_tokens;
pub mod sessions;
pub mod task_labels;
pub mod task_links;
pub mod task_relations;
pub mod task_subscriptions;
pub mod tasks;
pub mod users;
pub mod webhook_attempts;
pub mod webhook_deliveries;
pub mod webhooks;
pub mod workflow_states;
