//! Black-box HTTP tests of the whole service. One binary; each test starts its own server
//! on its own database (SQLite, or PostgreSQL when `KEEL_TEST_DATABASE_URL` is set).

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod account_mail;
mod admin;
mod auth;
mod bulk;
mod cache;
mod comments;
mod conventions;
mod events;
mod feed;
mod hardening;
mod idempotency;
mod invitations;
mod labels;
mod links;
mod members;
mod members_by_email;
mod migrations;
mod notifications;
mod ops;
mod projects;
mod rate_limits;
mod relations;
mod search;
mod statements;
mod states;
mod subtasks;
mod task_history;
mod task_lifecycle;
mod tasks;
mod text_policy;
mod tokens;
mod tracking_access;
mod webhooks;
mod write_guards;

/// Every `.rs` file beside this one is a module of this binary: a test file that is not
/// declared here would never compile or run, and nothing else would say so.
#[test]
fn every_test_file_is_declared_as_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
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
                "tests/api/{stem}.rs is not declared (`mod {stem};`) in main.rs"
            );
        }
    }
    assert!(files >= 10, "{files} files");
}

/// Every tag of the API document (a resource, or a group of routes) has its black-box tests
/// in `tests/api/<tag>.rs`: a new resource without them fails.
#[test]
fn every_tag_of_the_document_has_a_test_file() {
    /// Tags whose tests carry another name.
    const FILE_OF: [(&str, &str); 1] = [("operations", "ops")];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let document: serde_json::Value =
        serde_json::from_str(&keel_api::openapi::document_json().unwrap()).unwrap();
    let mut tags = std::collections::BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for tag in operation["tags"].as_array().into_iter().flatten() {
                tags.insert(tag.as_str().unwrap().to_owned());
            }
        }
    }
    assert!(tags.len() >= 8, "{tags:?}");
    for tag in tags {
        let file = FILE_OF
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(tag.as_str(), |(_, f)| *f);
        assert!(
            dir.join(format!("{file}.rs")).is_file(),
            "the tag {tag} has no black-box tests: add tests/api/{file}.rs"
        );
    }
}

/// `make bench`'s statements-per-request column leaves out the same background tables as
/// the statement budgets (`keel_tests::BACKGROUND_TABLES`): a table added to one list and
/// not the other made a bench row read 2.01 statements where the budget tests counted 2.
#[test]
fn the_bench_counts_statements_as_the_budgets_do() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let pattern = text
        .lines()
        .find(|l| l.contains("db_query_duration_seconds_count{") && l.contains("table=\"("))
        .expect("stmt_count's awk line in scripts/bench.sh");
    let listed: std::collections::BTreeSet<&str> = pattern
        .split("table=\"(")
        .nth(1)
        .and_then(|rest| rest.split(")\"").next())
        .expect("a (a|b|…) list of tables")
        .split('|')
        .collect();
    let expected: std::collections::BTreeSet<&str> = keel_tests::BACKGROUND_TABLES.iter().copied().collect();
    assert_eq!(listed, expected);
}
