//! The API reference in `docs/api/` names every route of the route table and every event
//! type: a route or an event added without its documentation fails here, instead of being
//! left to review. Routes are matched as the reference writes them, `` `POST /tasks/{id}/links`
//! `` (with or without the `/api/v1` prefix; parameter names free: `{id}` and `{taskId}` are
//! one segment).

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use keel_domain::events::EventType;

/// The text of every page of `docs/api/`.
fn reference() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no page in {}", dir.display());
    pages
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/tasks/{id}/links` → `/tasks/{}/links`.
fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every `` `METHOD /path `` the reference writes, shaped.
fn documented_routes(text: &str) -> BTreeSet<(String, String)> {
    const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
    let mut found = BTreeSet::new();
    for (start, _) in text.match_indices('`') {
        let rest = &text[start + 1..];
        for method in METHODS {
            if let Some(after) = rest.strip_prefix(method).and_then(|r| r.strip_prefix(' ')) {
                let path: String = after
                    .chars()
                    .take_while(|c| !matches!(c, '`' | '?' | ' '))
                    .collect();
                if path.starts_with('/') {
                    found.insert((method.to_owned(), shape(&path)));
                }
            }
        }
    }
    found
}

#[test]
fn shapes_ignore_parameter_names_and_the_reference_is_read_as_written() {
    assert_eq!(shape("/tasks/{taskId}/links/{linkId}"), "/tasks/{}/links/{}");
    let found = documented_routes("| `GET /tasks/{id}/links?limit&cursor` | and `DELETE /x` |");
    assert!(found.contains(&("GET".to_owned(), "/tasks/{}/links".to_owned())));
    assert!(found.contains(&("DELETE".to_owned(), "/x".to_owned())));
    assert_eq!(found.len(), 2);
}

#[test]
fn every_route_of_the_table_is_in_the_api_reference() {
    let documented = documented_routes(&reference());
    let missing: Vec<String> = keel_api::routes::endpoints()
        .iter()
        .filter_map(|e| {
            let method = e.method().as_str().to_owned();
            let short = e.path().strip_prefix("/api/v1").unwrap_or(e.path());
            let written = [short, e.path()]
                .iter()
                .any(|path| documented.contains(&(method.clone(), shape(path))));
            (!written).then(|| format!("{method} {}", e.path()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes with no `METHOD /path` in docs/api/*.md: {missing:?}"
    );
}

#[test]
fn every_event_type_is_in_the_api_reference() {
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/events-and-webhooks.md");
    let text = std::fs::read_to_string(&page).unwrap();
    let missing: Vec<&str> = EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "event types not named in docs/api/events-and-webhooks.md: {missing:?}"
    );
}
