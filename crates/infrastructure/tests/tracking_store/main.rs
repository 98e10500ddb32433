//! The tracking adapters against real databases: a fresh SQLite file for every test and, when
//! `KEEL_TEST_DATABASE_URL` (a PostgreSQL URL whose user may create databases) is set, a
//! fresh PostgreSQL database as well. Every scenario runs on each of them.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod comments;
mod common;
mod labels;
mod members;
mod migration;
mod outbox;
mod projects;
mod tasks;
mod writes;
