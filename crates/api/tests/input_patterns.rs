//! Every free-text input of the document says what it accepts: a string property of a
//! request body (or the items of a list of strings) has a `pattern`, a `format` or an
//! `enum`, or is listed below with the reason it has none. A new text field that was given
//! no pattern (`POLICY_PATTERNS` in `crates/api/src/openapi.rs`) fails here.

// Test code: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::Value;

/// `(schema, property)` that take text with no pattern, and why.
const UNPATTERNED: &[(&str, &str, &str)] = &[
    (
        "BulkTaskPatch",
        "addLabels",
        "label ids or names looked up among the project's labels",
    ),
    (
        "BulkTaskPatch",
        "removeLabels",
        "label ids or names compared with the project's labels",
    ),
    (
        "BulkTasksBody",
        "ids",
        "tasks' ids or identifiers, looked up among the tasks the caller can see",
    ),
    ("LoginBody", "email", "a look-up of an existing account"),
    (
        "LoginBody",
        "password",
        "compared with the stored hash, never stored",
    ),
    (
        "ChangePasswordBody",
        "currentPassword",
        "compared with the stored hash, never stored",
    ),
    (
        "EraseAccountBody",
        "password",
        "compared with the stored hash, never stored",
    ),
    ("RefreshBody", "refreshToken", "a token, verified"),
    (
        "ForgotPasswordBody",
        "email",
        "a look-up of an existing account; any text answers the same 202",
    ),
    (
        "ResetPasswordBody",
        "token",
        "a one-time token, looked up; anything else is INVALID_TOKEN",
    ),
    (
        "VerifyEmailBody",
        "token",
        "a one-time token, looked up; anything else is INVALID_TOKEN",
    ),
    ("CreateWebhookBody", "url", "checked by the webhook URL policy"),
    (
        "CreateRelationBody",
        "taskId",
        "a task's id or identifier, looked up among the tasks the caller can see",
    ),
    ("UpdateWebhookBody", "url", "checked by the webhook URL policy"),
    (
        "CreateWebhookBody",
        "events",
        "event type names, checked against the closed list",
    ),
    (
        "UpdateWebhookBody",
        "events",
        "event type names, checked against the closed list",
    ),
    (
        "CreateTaskBody",
        "labels",
        "label ids or names looked up among the project's labels",
    ),
];

/// Properties with the same reason as one listed, by another schema's name.
const SAME_AS_LISTED: [(&str, &str, &str); 2] = [
    ("UpdateTaskBody", "labels", "CreateTaskBody"),
    ("BulkTaskPatch", "labels", "CreateTaskBody"),
];

fn described(property: &Value) -> bool {
    ["pattern", "format", "enum"]
        .iter()
        .any(|k| property.get(k).is_some())
}

fn is_string(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(types) => types.iter().any(|t| t == "string"),
        _ => false,
    }
}

/// The names of the schemas `schema` references (`$ref`), at any depth.
fn refs_in(schema: &Value) -> Vec<String> {
    match schema {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value.as_str()) {
                ("$ref", Some(r)) => r.rsplit('/').next().map(str::to_owned).into_iter().collect(),
                _ => refs_in(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs_in).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn every_text_input_has_a_pattern_or_a_reason() {
    let document: Value = serde_json::from_str(&keel_api::openapi::document_json().unwrap()).unwrap();
    let schemas = &document["components"]["schemas"];
    let mut bodies = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for content in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                if let Some(name) = content["schema"]["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                {
                    bodies.insert(name.to_owned());
                }
            }
        }
    }
    // Schemas a body nests (the bulk route's `patch`) take text too.
    let mut queue: Vec<String> = bodies.iter().cloned().collect();
    while let Some(body) = queue.pop() {
        for nested in refs_in(&schemas[body.as_str()]) {
            if bodies.insert(nested.clone()) {
                queue.push(nested);
            }
        }
    }
    assert!(bodies.len() >= 15, "{bodies:?}");
    let exempt: BTreeSet<(&str, &str)> = UNPATTERNED
        .iter()
        .map(|(s, p, _)| (*s, *p))
        .chain(SAME_AS_LISTED.iter().map(|(s, p, _)| (*s, *p)))
        .collect();
    let mut seen = BTreeSet::new();
    for body in &bodies {
        let properties = schemas[body.as_str()]["properties"].as_object();
        for (name, property) in properties.into_iter().flatten() {
            let text = if is_string(property) {
                property
            } else if property["items"].is_object() && is_string(&property["items"]) {
                &property["items"]
            } else {
                continue;
            };
            if exempt.contains(&(body.as_str(), name.as_str())) {
                seen.insert((body.clone(), name.clone()));
                continue;
            }
            assert!(
                described(text),
                "{body}.{name} takes text with no pattern: add one to POLICY_PATTERNS \
                 (crates/api/src/openapi.rs) or its reason to UNPATTERNED here"
            );
        }
    }
    for (schema, property) in exempt {
        assert!(
            seen.contains(&(schema.to_owned(), property.to_owned())),
            "{schema}.{property} is listed but is no text input of a request body"
        );
    }
    for (schema, property, like) in SAME_AS_LISTED {
        assert!(
            UNPATTERNED.iter().any(|(s, p, _)| *s == like && *p == property),
            "{schema}.{property}: {like}.{property} is not listed"
        );
    }
}
