//! Keel's adapters: they implement the domain's ports on SeaORM (SQLite and PostgreSQL),
//! Redis and Prometheus. Driver errors are translated into domain errors here, once.

pub mod audit;
pub mod cache;
pub mod clock;
pub mod db;
pub mod entities;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod notifications;
pub mod rate_limit;
pub mod redis;
pub mod seed;
pub mod tracking;
pub mod trash_purge;
pub mod webhooks;

pub use db::{Database, DbSettings};
pub use metrics::Metrics;
