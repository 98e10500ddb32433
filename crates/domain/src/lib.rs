//! Keel's domain: entities, value objects, domain errors and the ports (traits) that the
//! outer layers implement.
//!
//! This crate performs no I/O and knows no framework. A test in `tests/` fails the build
//! when it gains a dependency on another workspace crate or on a web, database or cache
//! library (see `adr/0001-four-crate-dependency-rule.md`).

// First: the text policy's character classes (macros) are used by the value modules below.
#[macro_use]
pub mod text;

pub mod audit;
pub mod clock;
pub mod error;
pub mod events;
pub mod health;
pub mod history;
pub mod idempotency;
pub mod identity;
pub mod mail;
pub mod rate_limit;
pub mod tracking;
pub mod webhooks;

pub use error::{BoxError, FieldError, StoreError};
