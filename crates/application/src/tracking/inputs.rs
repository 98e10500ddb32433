//! The request bodies of the tracking routes, as clients send them. Values arrive raw and
//! are parsed by the use cases into domain values, so every broken rule is reported by
//! field; unknown fields are refused.

use serde::{Deserialize, Deserializer};

/// For `PATCH` fields that may be cleared: absent → `None`, `null` → `Some(None)`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An optional integer as JSON Schema has it: `3` and `3.0` are the same integer (a client
/// or generator may write either); `3.5`, or a number beyond `i64`, is refused.
fn integral<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "invalid value: {number}, expected an integer"
        ))),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProjectBody {
    /// 2–10 upper-case letters and digits, starting with a letter; unique on the instance.
    #[cfg_attr(feature = "openapi", schema(example = "KEEL"))]
    pub key: String,
    /// 3–100 letters, digits, spaces, `-`, `_`, `.` after trimming.
    #[cfg_attr(feature = "openapi", schema(example = "Keel backend"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateProjectBody {
    pub name: Option<String>,
    /// `null` or `""` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 1000))]
    pub description: Option<Option<String>>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^(active|completed|archived)$"))]
    pub status: Option<String>,
    /// The key of one of the project's states: the state new tasks get.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "todo", pattern = "^[a-z][a-z0-9_]{0,29}$")
    )]
    pub default_state: Option<String>,
}

/// An optional whole number, written as JSON allows it (`6`, or `6.0`, which JSON Schema
/// counts as an integer too); anything else is refused.
fn whole<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    match Option::<Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        #[allow(clippy::cast_possible_truncation)]
        Some(Number::Float(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
        Some(Number::Float(_)) => Err(serde::de::Error::custom("expected a whole number")),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateStateBody {
    /// Unique in the project; never changes.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "qa", pattern = "^[a-z][a-z0-9_]{0,29}$")
    )]
    pub key: String,
    /// 1–30 characters after trimming.
    #[cfg_attr(feature = "openapi", schema(example = "QA"))]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "started",
            pattern = "^(backlog|unstarted|started|completed|canceled)$"
        )
    )]
    pub category: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "#0EA5E9", pattern = "^#[0-9A-Fa-f]{6}$")
    )]
    pub color: String,
    /// Where the state is listed (ascending); absent: after the last.
    #[serde(default, deserialize_with = "whole")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10000))]
    pub position: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateStateBody {
    /// 1–30 characters after trimming.
    #[cfg_attr(feature = "openapi", schema(example = "Quality"))]
    pub name: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "#0EA5E9", pattern = "^#[0-9A-Fa-f]{6}$")
    )]
    pub color: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10000))]
    pub position: Option<i64>,
    /// A new category: every task in the state takes it (`completedAt` follows).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "completed",
            pattern = "^(backlog|unstarted|started|completed|canceled)$"
        )
    )]
    pub category: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMemberBody {
    /// An e-mail address: an account the caller shares a project with is added; any other
    /// address is invited (`202`), whether or not it has an account.
    #[cfg_attr(
        feature = "openapi",
        schema(format = "email", example = "ann@example.com", max_length = 254)
    )]
    pub email: String,
    /// `admin`, `member` or `viewer`; ownership is handed over with `PATCH`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(admin|member|viewer)$"))]
    pub role: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMemberBody {
    /// `owner` hands the project over (owner only; the previous owner becomes `admin`).
    #[cfg_attr(feature = "openapi", schema(pattern = "^(owner|admin|member|viewer)$"))]
    pub role: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateLabelBody {
    /// 1–30 characters after trimming; unique in the project.
    #[cfg_attr(feature = "openapi", schema(example = "bug"))]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "#D73A4A", pattern = "^#[0-9A-Fa-f]{6}$")
    )]
    pub color: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateLabelBody {
    /// 1–30 characters after trimming; unique in the project.
    #[cfg_attr(feature = "openapi", schema(example = "defect"))]
    pub name: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "#D73A4A", pattern = "^#[0-9A-Fa-f]{6}$")
    )]
    pub color: Option<String>,
}

/// At most this many labels on one task.
pub const MAX_TASK_LABELS: usize = 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTaskBody {
    /// 1–200 characters after trimming.
    pub title: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 10000))]
    pub description: Option<String>,
    /// The key of one of the project's states; default: the project's `defaultState`.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "todo", pattern = "^[a-z][a-z0-9_]{0,29}$")
    )]
    pub status: Option<String>,
    /// 0 none (default), 1 urgent, 2 high, 3 medium, 4 low.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 4))]
    #[serde(default, deserialize_with = "integral")]
    pub priority: Option<i64>,
    /// A member of the project.
    pub assignee_id: Option<uuid::Uuid>,
    /// Labels of the project, each by id or by name (an entry that is a UUID is an id).
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub labels: Option<Vec<String>>,
    /// `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(format = Date))]
    pub due_date: Option<String>,
    /// Makes the task a sub-task of this task of the same project (at most 5 levels,
    /// counting the top-level task).
    pub parent_id: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateTaskBody {
    pub title: Option<String>,
    /// `null` or `""` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 10000))]
    pub description: Option<Option<String>>,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "todo", pattern = "^[a-z][a-z0-9_]{0,29}$")
    )]
    pub status: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 4))]
    #[serde(default, deserialize_with = "integral")]
    pub priority: Option<i64>,
    /// `null` unassigns.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub assignee_id: Option<Option<uuid::Uuid>>,
    /// Replaces the task's labels; each by id or by name (an entry that is a UUID is an id).
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub labels: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub due_date: Option<Option<String>>,
    /// Moves the task (with its sub-tasks) under this task of the same project; `null`
    /// makes it a top-level task. No cycles; at most 5 levels, counting the top-level task.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub parent_id: Option<Option<uuid::Uuid>>,
}

/// At most this many tasks in one bulk request.
pub const MAX_BULK_TASKS: usize = 100;

/// `POST /tasks/bulk`: one action on up to [`MAX_BULK_TASKS`] tasks, each succeeding or
/// failing on its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkTasksBody {
    /// 1–100 tasks, each by id or by identifier (`KEEL-12`, any case), in the order the
    /// results come back. A task named twice is acted on twice.
    #[cfg_attr(
        feature = "openapi",
        schema(min_items = 1, max_items = 100, example = json!(["KEEL-12", "KEEL-13"]))
    )]
    pub ids: Vec<String>,
    /// What to do to each task, as its single route does: `update` (`PATCH /tasks/{id}`),
    /// `archive`, `unarchive`, `delete` (to the trash) or `restore` (from the trash).
    #[cfg_attr(
        feature = "openapi",
        schema(example = "update", pattern = "^(update|archive|unarchive|delete|restore)$")
    )]
    pub action: String,
    /// The change, for `update` only (and required with it).
    pub patch: Option<BulkTaskPatch>,
}

/// A bulk `update`'s change: the body of `PATCH /tasks/{id}`, plus `addLabels` and
/// `removeLabels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkTaskPatch {
    pub title: Option<String>,
    /// `null` or `""` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 10000))]
    pub description: Option<Option<String>>,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "todo", pattern = "^[a-z][a-z0-9_]{0,29}$")
    )]
    pub status: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 4))]
    #[serde(default, deserialize_with = "integral")]
    pub priority: Option<i64>,
    /// `null` unassigns.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub assignee_id: Option<Option<uuid::Uuid>>,
    /// Replaces each task's labels; each by id or by name, looked up in the task's project.
    /// Not with `addLabels` or `removeLabels`.
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub labels: Option<Vec<String>>,
    /// Puts these labels on each task, keeping its others; each by id or by name, looked up
    /// in the task's project (an unknown one fails that task with a 400).
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub add_labels: Option<Vec<String>>,
    /// Takes these labels off each task; each by id or by name. One the task's project does
    /// not have changes nothing.
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub remove_labels: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub due_date: Option<Option<String>>,
}

impl BulkTaskPatch {
    /// The single route's body, and the labels to add and take off.
    pub fn split(self) -> (UpdateTaskBody, Vec<String>, Vec<String>) {
        (
            UpdateTaskBody {
                title: self.title,
                description: self.description,
                status: self.status,
                priority: self.priority,
                assignee_id: self.assignee_id,
                labels: self.labels,
                due_date: self.due_date,
                // Bulk updates do not move tasks in the tree.
                parent_id: None,
            },
            self.add_labels.unwrap_or_default(),
            self.remove_labels.unwrap_or_default(),
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommentBodyInput {
    /// 1–5000 characters, not only white space.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 5000))]
    pub body: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRelationBody {
    /// How the task of the path relates to `taskId`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "blocks",
            pattern = "^(blocks|blocked_by|relates_to|duplicate_of|duplicated_by)$"
        )
    )]
    #[serde(rename = "type")]
    pub relation_type: String,
    /// The other task: its id or its identifier (`KEEL-12`, any case); any project the caller
    /// can see.
    #[cfg_attr(feature = "openapi", schema(example = "KEEL-12", max_length = 100))]
    pub task_id: String,
}

/// Raw filters of a task list (`GET /projects/{id}/tasks`, `GET /tasks`).
#[derive(Debug, Clone, Default)]
pub struct TaskListQuery {
    pub status: Option<String>,
    /// Comma list of state categories.
    pub category: Option<String>,
    pub priority: Option<String>,
    pub assignee: Option<String>,
    pub label: Option<String>,
    pub q: Option<String>,
    pub updated_since: Option<String>,
    pub sort: Option<String>,
    /// `include` or `only`; absent leaves archived tasks out.
    pub archived: Option<String>,
    /// `true` or `false`: tasks with, or without, an open blocker.
    pub blocked: Option<String>,
    /// `<id>`, `<identifier>` or `none`.
    pub parent: Option<String>,
}

/// Raw filters of `GET /projects`.
#[derive(Debug, Clone, Default)]
pub struct ProjectListQuery {
    pub status: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_whole_numbers_however_json_writes_them() {
        let parse = |json: &str| serde_json::from_str::<UpdateStateBody>(json).map(|b| b.position);
        assert_eq!(parse(r#"{"position": 6}"#).unwrap(), Some(6));
        assert_eq!(parse(r#"{"position": 6559.0}"#).unwrap(), Some(6559));
        assert_eq!(parse("{}").unwrap(), None);
        assert!(parse(r#"{"position": 1.5}"#).is_err());
        assert!(parse(r#"{"position": "1"}"#).is_err());
    }

    #[test]
    fn patch_fields_tell_absent_from_null() {
        let absent: UpdateTaskBody = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.assignee_id, None);
        let null: UpdateTaskBody = serde_json::from_str(r#"{"assigneeId": null, "dueDate": null}"#).unwrap();
        assert_eq!(null.assignee_id, Some(None));
        assert_eq!(null.due_date, Some(None));
        assert!(serde_json::from_str::<UpdateTaskBody>(r#"{"colour": 1}"#).is_err());
    }

    #[test]
    fn a_priority_is_an_integer_written_either_way() {
        for (raw, want) in [
            ("3", Some(3)),
            ("3.0", Some(3)),
            ("-0.0", Some(0)),
            ("null", None),
        ] {
            let body: UpdateTaskBody = serde_json::from_str(&format!(r#"{{"priority": {raw}}}"#)).unwrap();
            assert_eq!(body.priority, want, "{raw}");
        }
        for raw in ["3.5", "1e300", "\"3\""] {
            let body =
                serde_json::from_str::<CreateTaskBody>(&format!(r#"{{"title": "t", "priority": {raw}}}"#));
            assert!(body.is_err(), "{raw}");
        }
        let absent: CreateTaskBody = serde_json::from_str(r#"{"title": "t"}"#).unwrap();
        assert_eq!(absent.priority, None);
    }
}
