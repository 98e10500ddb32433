//! The dependency rule (adr/0001): dependencies point inwards only.
//!
//! - `keel-domain` depends on no workspace crate and on no web, database, cache, crypto or
//!   async-runtime library, not even transitively;
//! - `keel-application` depends on `keel-domain` only among workspace crates, and on none of
//!   those libraries either.
//!
//! Checked on `cargo metadata --all-features` (normal dependencies, transitively), so an
//! optional feature cannot sneak a framework in.

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crate-name prefixes that inner layers must never reach.
const OUTER_LIBRARIES: &[&str] = &[
    "actix",
    "axum",
    "hyper",
    "reqwest",
    "tokio",
    "sea-orm",
    "sea-query",
    "sea-schema",
    "sqlx",
    "rusqlite",
    "redis",
    "deadpool",
    "moka",
    "prometheus",
    "argon2",
    "jsonwebtoken",
    "utoipa-swagger-ui",
];

/// Workspace crates each inner crate may depend on.
const ALLOWED_WORKSPACE_DEPS: &[(&str, &[&str])] =
    &[("keel-domain", &[]), ("keel-application", &["keel-domain"])];

fn workspace_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--all-features", "--locked"])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Every broken rule in `metadata`, as readable lines.
fn violations(metadata: &Value) -> Vec<String> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let workspace: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // Normal (non-dev, non-build) edges of the resolved graph.
    let edges: HashMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let deps = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k["kind"].is_null())
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((node["id"].as_str()?, deps))
        })
        .collect();

    let mut found = Vec::new();
    for (inner, allowed) in ALLOWED_WORKSPACE_DEPS {
        let Some(start) = workspace.iter().find(|id| names.get(*id) == Some(inner)) else {
            found.push(format!("{inner} is not in the workspace"));
            continue;
        };
        // Direct workspace dependencies.
        for dep in edges.get(start).into_iter().flatten() {
            let name = names.get(dep).copied().unwrap_or("?");
            if workspace.contains(dep) && !allowed.contains(&name) {
                found.push(format!("{inner} depends on workspace crate {name}"));
            }
        }
        // Transitive third-party dependencies.
        let mut seen = BTreeSet::new();
        let mut stack = vec![(*start, vec![*inner])];
        while let Some((id, path)) = stack.pop() {
            for dep in edges.get(id).into_iter().flatten() {
                if !seen.insert(*dep) {
                    continue;
                }
                let name = names.get(dep).copied().unwrap_or("?");
                let mut via = path.clone();
                via.push(name);
                if OUTER_LIBRARIES.iter().any(|outer| name.starts_with(outer)) {
                    found.push(format!("{inner} reaches {name} via {}", via.join(" -> ")));
                }
                stack.push((dep, via));
            }
        }
    }
    found
}

#[test]
fn inner_crates_depend_only_inwards() {
    let broken = violations(&workspace_metadata());
    assert!(
        broken.is_empty(),
        "the dependency rule is broken:\n{}",
        broken.join("\n")
    );
}

/// The checker itself must catch a violation: a domain that reaches sea-orm through a
/// helper crate, and an application that depends on the api crate.
#[test]
fn the_checker_reports_direct_and_transitive_violations() {
    let normal = serde_json::json!([{"kind": null}]);
    let metadata = serde_json::json!({
        "packages": [
            {"id": "d", "name": "keel-domain"},
            {"id": "a", "name": "keel-application"},
            {"id": "api", "name": "keel-api"},
            {"id": "h", "name": "some-helper"},
            {"id": "s", "name": "sea-orm"},
            {"id": "m", "name": "mockall"},
        ],
        "workspace_members": ["d", "a", "api"],
        "resolve": {"nodes": [
            {"id": "d", "deps": [{"pkg": "h", "dep_kinds": normal}, {"pkg": "m", "dep_kinds": [{"kind": "dev"}]}]},
            {"id": "h", "deps": [{"pkg": "s", "dep_kinds": normal}]},
            {"id": "a", "deps": [{"pkg": "d", "dep_kinds": normal}, {"pkg": "api", "dep_kinds": normal}]},
            {"id": "api", "deps": []},
            {"id": "s", "deps": []},
            {"id": "m", "deps": []},
        ]}
    });
    let broken = violations(&metadata);
    assert!(
        broken.contains(&"keel-domain reaches sea-orm via keel-domain -> some-helper -> sea-orm".to_owned()),
        "{broken:?}"
    );
    assert!(
        broken.contains(&"keel-application depends on workspace crate keel-api".to_owned()),
        "{broken:?}"
    );
    assert!(
        !broken.iter().any(|b| b.contains("mockall")),
        "dev-dependencies are allowed: {broken:?}"
    );
}
