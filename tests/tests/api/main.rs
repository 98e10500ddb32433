//! Black-box HTTP tests of the whole service. One binary; each test starts its own server
//! on its own database (SQLite, or PostgreSQL when `KEEL_TEST_DATABASE_URL` is set).

mod conventions;
mod migrations;
mod ops;
