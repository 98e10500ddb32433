//! Keel's application layer: use-case handlers, DTOs and validation.
//!
//! Handlers receive their ports through constructor injection (`Arc<dyn Port>`) and hold
//! the real orchestration: authorization, transactions, events and caching. They return
//! [`AppError`], which the api crate maps to HTTP in exactly one place.

pub mod cache;
pub mod context;
pub mod error;
pub mod events;
pub mod identity;
pub mod mail;
pub mod notifications;
pub mod pagination;
pub mod readiness;
pub mod tracking;
pub mod webhooks;

pub use error::AppError;
