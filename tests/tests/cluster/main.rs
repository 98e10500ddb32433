//! The deployment tests (`make cluster-test`): two `keel` processes behind nginx on loopback,
//! on PostgreSQL and Redis, driven only over HTTP — the scale-out behaviour of docs/operations.md
//! (`scale_out`) and what happens when a dependency fails under load (`faults`).
//!
//! Every test here is `#[ignore]`d in the ordinary suite: it needs the release binary
//! (`KEEL_BIN`), nginx, redis-server and PostgreSQL, which `scripts/cluster-test.sh` provides
//! before it runs them with `--ignored`, one at a time.

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod scale_out;
