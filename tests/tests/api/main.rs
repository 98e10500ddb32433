//! Black-box HTTP tests of the whole service. One binary; each test starts its own server
//! on its own database (SQLite, or PostgreSQL when `KEEL_TEST_DATABASE_URL` is set).

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod cache;
mod comments;
mod conventions;
mod events;
mod hardening;
mod idempotency;
mod labels;
mod members;
mod migrations;
mod ops;
mod projects;
mod rate_limits;
mod statements;
mod tasks;
mod text_policy;
mod tracking_access;
mod webhooks;
mod write_guards;
