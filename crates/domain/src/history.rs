//! What a change did to a resource's fields: `[{field, from, to}]`, derived by comparing the
//! resource as the API shows it before and after the change. The audit entry keeps the list
//! in its details (`changes`: a task's history and the project's activity read it there) and
//! the event carries the old values beside `data` (`previous`).
//!
//! # What is never recorded
//! The values of some fields are never kept, only that they changed
//! (`{field, redacted: true}`), and they are left out of `previous`: long free text in which
//! people paste secrets and personal data and then edit them out — a task's or a project's
//! `description`, a comment's `body` — and a member's `name` and `email` (personal). The
//! audit log outlives a permanent delete, so a value it kept could not be taken back. See
//! docs/security.md.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Fields that are bookkeeping or follow from another field, never listed as changed:
/// `updatedAt` and `version` change with every write, `labelIds` with `labels`, and
/// `completedAt` and `statusCategory` with `status`.
pub const NOT_COMPARED: [&str; 5] = [
    "updatedAt",
    "version",
    "labelIds",
    "completedAt",
    "statusCategory",
];

/// `(resource, field)` whose values are never recorded (see the module's documentation).
pub const VALUES_NEVER_RECORDED: [(&str, &str); 5] = [
    ("task", "description"),
    ("project", "description"),
    ("comment", "body"),
    ("member", "name"),
    ("member", "email"),
];

/// One changed field: its old and new value as the API shows them, or neither when its
/// values are never recorded (`redacted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A key that is present is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Whether `resource`'s `field` keeps its values in the history.
pub fn records_values(resource: &str, field: &str) -> bool {
    !VALUES_NEVER_RECORDED.contains(&(resource, field))
}

/// The fields of `resource` that differ between `before` and `after` (two JSON objects, the
/// resource as the API shows it), sorted by field name; a key only one of them has counts as
/// `null` in the other. Not objects: no change is listed.
pub fn changes(resource: &str, before: &Value, after: &Value) -> Vec<FieldChange> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = after.keys().collect();
    keys.extend(before.keys().filter(|k| !after.contains_key(*k)));
    keys.sort();
    keys.into_iter()
        .filter(|k| !NOT_COMPARED.contains(&k.as_str()))
        .filter_map(|key| {
            let from = before.get(key).cloned().unwrap_or(Value::Null);
            let to = after.get(key).cloned().unwrap_or(Value::Null);
            (from != to).then(|| {
                if records_values(resource, key) {
                    FieldChange {
                        field: key.clone(),
                        from: Some(from),
                        to: Some(to),
                        redacted: false,
                    }
                } else {
                    FieldChange {
                        field: key.clone(),
                        from: None,
                        to: None,
                        redacted: true,
                    }
                }
            })
        })
        .collect()
}

/// The old values of `changes` as an object (`previous` of an event): `{field: from}`, the
/// fields whose values are never recorded left out.
pub fn previous(changes: &[FieldChange]) -> Value {
    let map: Map<String, Value> = changes
        .iter()
        .filter_map(|c| Some((c.field.clone(), c.from.clone()?)))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_changed_fields_are_listed_with_old_and_new_values() {
        let before = json!({"title": "Old", "priority": 0, "version": 1, "updatedAt": "a",
            "labels": ["bug"], "labelIds": ["1"], "dueDate": null, "status": "todo"});
        let after = json!({"title": "New", "priority": 0, "version": 2, "updatedAt": "b",
            "labels": ["bug", "ui"], "labelIds": ["1", "2"], "dueDate": "2026-12-24", "status": "todo"});
        let changes = changes("task", &before, &after);
        let listed: Vec<(&str, Value, Value)> = changes
            .iter()
            .map(|c| (c.field.as_str(), c.from.clone().unwrap(), c.to.clone().unwrap()))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("dueDate", Value::Null, json!("2026-12-24")),
                ("labels", json!(["bug"]), json!(["bug", "ui"])),
                ("title", json!("Old"), json!("New")),
            ]
        );
        assert_eq!(
            previous(&changes),
            json!({"title": "Old", "labels": ["bug"], "dueDate": null})
        );
    }

    #[test]
    fn values_of_free_text_and_personal_fields_are_never_recorded() {
        let c = changes(
            "task",
            &json!({"description": "my password is hunter2"}),
            &json!({"description": "fixed"}),
        );
        assert_eq!(
            c,
            vec![FieldChange {
                field: "description".into(),
                from: None,
                to: None,
                redacted: true
            }]
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("fixed"), "{json}");
        assert_eq!(json, r#"[{"field":"description","redacted":true}]"#);
        assert_eq!(previous(&c), json!({}));
        for (resource, field) in VALUES_NEVER_RECORDED {
            let c = changes(resource, &json!({ field: "a" }), &json!({ field: "b" }));
            assert!(c[0].redacted && c[0].from.is_none(), "{resource}.{field}");
        }
        // The same field of another resource keeps its values.
        assert!(!changes("label", &json!({"name": "a"}), &json!({"name": "b"}))[0].redacted);
    }

    #[test]
    fn a_null_old_value_survives_a_round_trip() {
        let c = changes("task", &json!({"assigneeId": null}), &json!({"assigneeId": "u"}));
        let back: Vec<FieldChange> = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back[0].from, Some(Value::Null));
    }
}
