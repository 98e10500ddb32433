//! The tracking adapters against real databases: a fresh SQLite file for every test and, when
//! `KEEL_TEST_DATABASE_URL` (a PostgreSQL URL whose user may create databases) is set, a
//! fresh PostgreSQL database as well. Every scenario runs on each of them.

// Tests: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_mail;
mod activity;
mod comments;
mod common;
mod feed;
mod invitations;
mod labels;
mod links;
mod members;
mod migration;
mod outbox;
mod personal_tokens;
mod projects;
mod relations;
mod search;
mod states;
mod task_lifecycle;
mod tasks;
mod writes;

/// Every `.rs` file beside this one is a module of this binary: a scenario file that is not
/// declared here would never compile or run, and nothing else would say so.
#[test]
fn every_scenario_file_is_declared_as_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracking_store");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let declared: std::collections::BTreeSet<&str> = main
        .lines()
        .filter_map(|line| line.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            files += 1;
            assert!(
                declared.contains(stem),
                "tests/tracking_store/{stem}.rs is not declared (`mod {stem};`) in main.rs"
            );
        }
    }
    assert!(files >= 10, "{files} files");
}

/// Every tracking store (`src/tracking/<resource>.rs`) has its scenarios here, in
/// `<resource>.rs`: a new store without them fails.
#[test]
fn every_tracking_store_has_its_scenarios() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stores = 0;
    for entry in std::fs::read_dir(root.join("src/tracking")).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "mod" {
            stores += 1;
            assert!(
                root.join(format!("tests/tracking_store/{stem}.rs")).is_file(),
                "src/tracking/{stem}.rs has no scenarios: add tests/tracking_store/{stem}.rs"
            );
        }
    }
    assert!(stores >= 6, "{stores} stores");
}
