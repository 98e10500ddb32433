//! Domain events (docs/api/events-and-webhooks.md): every change in a project emits one, written in the change's own
//! transaction (the transactional outbox) and later published to WebSocket clients and
//! webhooks, at least once and in order per project.
//!
//! An event shares its id, actor, project and time with the change's audit entry: the
//! activity feed and the event stream describe the same changes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::audit::{AuditEntry, Authority};
use crate::history;
use crate::identity::Principal;
use crate::tracking::Permission;

/// Declares [`EventType`] from one list of `Variant => "name"`: the enum, [`EventType::ALL`]
/// and [`EventType::as_str`] are all generated from it, so a new variant cannot be missing
/// from `ALL` (which `"*"` subscriptions and the parser use).
macro_rules! event_types {
    ($($variant:ident => $name:literal,)+) => {
        /// The kinds of domain events. Their names are part of the contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant,)+
        }

        impl EventType {
            /// Every event type, in declaration order.
            pub const ALL: [EventType; [$($name),+].len()] = [$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

event_types! {
    ProjectCreated => "project.created",
    ProjectUpdated => "project.updated",
    ProjectDeleted => "project.deleted",
    MemberAdded => "member.added",
    MemberUpdated => "member.updated",
    MemberRemoved => "member.removed",
    TaskCreated => "task.created",
    TaskUpdated => "task.updated",
    TaskDeleted => "task.deleted",
    TaskArchived => "task.archived",
    TaskUnarchived => "task.unarchived",
    TaskRestored => "task.restored",
    TaskPurged => "task.purged",
    CommentCreated => "comment.created",
    CommentUpdated => "comment.updated",
    CommentDeleted => "comment.deleted",
    LabelCreated => "label.created",
    LabelUpdated => "label.updated",
    LabelDeleted => "label.deleted",
    LinkCreated => "link.created",
    LinkUpdated => "link.updated",
    LinkDeleted => "link.deleted",
    RelationCreated => "relation.created",
    RelationDeleted => "relation.deleted",
    StateCreated => "state.created",
    StateUpdated => "state.updated",
    StateDeleted => "state.deleted",
}

impl EventType {
    /// The type named `raw` (exact, lower case); `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The resource the event is about: `task` for `task.updated`.
    pub fn resource(self) -> &'static str {
        let name = self.as_str();
        name.split_once('.').map_or(name, |(resource, _)| resource)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).ok_or_else(|| serde::de::Error::custom(format!("unknown event type `{raw}`")))
    }
}

/// A domain event as clients and webhooks receive it:
/// `{id, seq, type, projectId, actorId, data, previous?, occurredAt}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainEvent {
    /// The id of the change's audit entry: unique, and the same on every delivery.
    pub id: Uuid,
    /// The event's position in the feed: increasing in the order events were found
    /// committed, without holes. Given when the event is published (`None` before, in the
    /// outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub project_id: Uuid,
    pub actor_id: Option<Uuid>,
    /// The resource as the API shows it after the change (for deletions, its id).
    pub data: serde_json::Value,
    /// On changes of a resource's fields (`*.updated`, and archiving, unarchiving and
    /// restoring a task): the old value of each changed field, `{field: old}`, but for the
    /// fields whose values are never recorded (`crate::history`). Absent on other events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
    pub occurred_at: DateTime<Utc>,
}

/// An event with the users who receive it although they are no longer members when it is
/// delivered: the removed member of `member.removed`, the members of a deleted project.
/// Everybody else receives it when they are a member of its project at delivery time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event: DomainEvent,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_to: Vec<Uuid>,
}

/// A change as a tracking store records it, in one transaction: its audit entry and its
/// event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub audit: AuditEntry,
    pub event: Envelope,
}

impl Change {
    /// The change described by `audit` (whose action must be `event_type`'s name, and whose
    /// project is the event's), publishing `data`.
    pub fn new(audit: AuditEntry, event_type: EventType, project_id: Uuid, data: serde_json::Value) -> Self {
        let event = DomainEvent {
            id: audit.id,
            seq: None,
            event_type,
            project_id,
            actor_id: audit.actor_id,
            data,
            previous: None,
            occurred_at: audit.occurred_at,
        };
        Self {
            audit,
            event: Envelope {
                event,
                also_to: Vec::new(),
            },
        }
    }

    /// Starts a change of `event_type` in `project_id`, made by `actor` at `at`; the
    /// [`ChangeBuilder`] names the rest: `Change::by(actor, EventType::TaskUpdated,
    /// project_id, now).resource(task.id).needs(Permission::WriteTasks).details(..)
    /// .data(..).build()`.
    pub fn by(
        actor: &Principal,
        event_type: EventType,
        project_id: Uuid,
        at: DateTime<Utc>,
    ) -> ChangeBuilder {
        ChangeBuilder {
            audit: AuditEntry {
                id: Uuid::now_v7(),
                occurred_at: at,
                actor_id: Some(actor.user_id),
                action: event_type.as_str().to_owned(),
                resource_type: event_type.resource().to_owned(),
                resource_id: None,
                project_id: Some(project_id),
                request_id: None,
                ip: None,
                details: None,
                restricted: None,
                authority: None,
                token_id: actor.token_id(),
            },
            actor: actor.clone(),
            event_type,
            project_id,
            data: serde_json::Value::Null,
            before: None,
            also_to: Vec::new(),
        }
    }

    /// The type of the change's event.
    pub fn event_type(&self) -> EventType {
        self.event.event.event_type
    }

    /// The project the change is in.
    pub fn project_id(&self) -> Uuid {
        self.event.event.project_id
    }

    /// The id of the resource the change is about (the task of `task.updated`, the user of
    /// `member.removed`), when it is a UUID.
    pub fn resource_id(&self) -> Option<Uuid> {
        self.audit
            .resource_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok())
    }

    /// Also delivers the event to `users`, member or not.
    #[must_use]
    pub fn also_to(mut self, users: Vec<Uuid>) -> Self {
        self.event.also_to = users;
        self
    }

    /// The same change publishing `data` instead (a store completing what only it knows).
    #[must_use]
    pub fn with_data(&self, data: serde_json::Value) -> Self {
        let mut change = self.clone();
        change.event.event.data = data;
        change
    }
}

/// A [`Change`] being described; see [`Change::by`].
#[derive(Debug, Clone)]
#[must_use = "a change is recorded only once built and written"]
pub struct ChangeBuilder {
    audit: AuditEntry,
    actor: Principal,
    event_type: EventType,
    project_id: Uuid,
    data: serde_json::Value,
    before: Option<serde_json::Value>,
    also_to: Vec<Uuid>,
}

impl ChangeBuilder {
    /// The resource the change is about.
    pub fn resource(mut self, id: Uuid) -> Self {
        self.audit.resource_id = Some(id.to_string());
        self
    }

    /// The permission the change was authorized with: the store writes the change only if
    /// the actor still holds it when its transaction commits. Without it, nothing beyond
    /// being signed in is needed (as for creating a project).
    pub fn needs(mut self, permission: Permission) -> Self {
        self.audit.authority = Some(Authority::of(&self.actor, permission));
        self
    }

    /// The request the change came with (for the audit log).
    pub fn request(mut self, request_id: Option<String>, ip: Option<String>) -> Self {
        self.audit.request_id = request_id;
        self.audit.ip = ip;
        self
    }

    /// What changed, for every member to read in the activity feed.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.audit.details = Some(details);
        self
    }

    /// The resource after the change as the API shows it (for deletions, its id): the
    /// event's `data`. Left out, it is `null` (a store completing what only it knows).
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    /// Also delivers the event to `users`, member or not (see [`Envelope::also_to`]).
    pub fn also_to(mut self, users: Vec<Uuid>) -> Self {
        self.also_to = users;
        self
    }

    /// The resource as the API showed it before the change (the same shape as `data`): the
    /// fields that differ are the change's `changes` — listed in the audit entry's details
    /// (`changes: [{field, from, to}]`), their old values in the event's `previous`
    /// ([`crate::history`] says which fields count and whose values are never kept).
    pub fn before(mut self, before: serde_json::Value) -> Self {
        self.before = Some(before);
        self
    }

    /// # Panics
    /// In debug builds (the tests), when a `*.updated` change was given no
    /// [`ChangeBuilder::before`]: its event would go out without `previous` and its entry
    /// without `changes`.
    pub fn build(self) -> Change {
        debug_assert!(
            self.before.is_some() || !self.event_type.as_str().ends_with(".updated"),
            "{} changes a resource's fields: give its builder `.before(<the resource as the \
             API showed it before>)`, from which its `changes` and `previous` are derived",
            self.event_type
        );
        let mut audit = self.audit;
        let mut previous = None;
        if let Some(before) = &self.before {
            let changes = history::changes(self.event_type.resource(), before, &self.data);
            previous = Some(history::previous(&changes));
            let listed = serde_json::to_value(&changes).unwrap_or_default();
            match &mut audit.details {
                _ if changes.is_empty() => {}
                Some(serde_json::Value::Object(details)) => {
                    details.insert("changes".to_owned(), listed);
                }
                None => audit.details = Some(serde_json::json!({ "changes": listed })),
                Some(_) => {}
            }
        }
        let mut change =
            Change::new(audit, self.event_type, self.project_id, self.data).also_to(self.also_to);
        change.event.event.previous = previous;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
        }
        assert_eq!(EventType::parse("task.Created"), None);
        assert_eq!(EventType::parse("task"), None);
        assert!(serde_json::from_str::<EventType>("\"task.moved\"").is_err());
    }

    #[test]
    fn every_type_is_listed_once_with_a_distinct_resource_dot_action_name() {
        let names: std::collections::BTreeSet<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), EventType::ALL.len());
        for name in names {
            let (resource, action) = name.split_once('.').unwrap();
            assert!(!resource.is_empty() && !action.is_empty(), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '.'), "{name}");
        }
    }

    #[test]
    fn the_builder_fills_the_audit_entry_and_the_event_alike() {
        use crate::identity::Role;
        let at = Utc::now();
        let mut actor = Principal {
            user_id: Uuid::from_u128(2),
            session_id: Uuid::from_u128(4),
            role: Role::User,
            expires_at: at,
            grant: None,
        };
        let (project, task) = (Uuid::from_u128(3), Uuid::from_u128(5));
        let change = Change::by(&actor, EventType::TaskUpdated, project, at)
            .before(serde_json::json!({"id": task}))
            .resource(task)
            .needs(Permission::WriteTasks)
            .request(Some("req".into()), Some("10.0.0.1".into()))
            .details(serde_json::json!({"changed": ["title"]}))
            .data(serde_json::json!({"id": task}))
            .also_to(vec![Uuid::from_u128(9)])
            .build();
        let audit = &change.audit;
        assert_eq!(audit.id, change.event.event.id);
        assert_eq!((audit.occurred_at, change.event.event.occurred_at), (at, at));
        assert_eq!(audit.actor_id, Some(actor.user_id));
        assert_eq!(change.event.event.actor_id, Some(actor.user_id));
        assert_eq!(
            (audit.action.as_str(), audit.resource_type.as_str()),
            ("task.updated", "task")
        );
        assert_eq!(audit.project_id, Some(project));
        assert_eq!(change.project_id(), project);
        assert_eq!(change.resource_id(), Some(task));
        assert_eq!(change.event_type(), EventType::TaskUpdated);
        assert_eq!(audit.authority, Some(Authority::Member(Permission::WriteTasks)));
        assert_eq!(audit.request_id.as_deref(), Some("req"));
        assert_eq!(audit.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(audit.details, Some(serde_json::json!({"changed": ["title"]})));
        assert_eq!(change.event.event.data, serde_json::json!({"id": task}));
        assert_eq!(change.event.also_to, vec![Uuid::from_u128(9)]);
        assert_eq!(audit.token_id, None, "a signed-in session names no token");
        let mut with_token = actor.clone();
        with_token.grant = Some(std::sync::Arc::new(crate::identity::tokens::Grant {
            token_id: Uuid::from_u128(8),
            scopes: crate::identity::tokens::Scopes::parse(&["write"]).unwrap(),
            project_ids: None,
        }));
        let by_token = Change::by(&with_token, EventType::TaskUpdated, project, at)
            .before(serde_json::json!({}))
            .build();
        assert_eq!(
            by_token.audit.token_id,
            Some(Uuid::from_u128(8)),
            "the token is named"
        );

        actor.role = Role::Admin;
        let by_admin = Change::by(&actor, EventType::ProjectCreated, project, at).build();
        assert_eq!(
            by_admin.audit.authority, None,
            "nothing needed, nothing re-checked"
        );
        assert_eq!(by_admin.event.event.data, serde_json::Value::Null);
        let by_admin = Change::by(&actor, EventType::ProjectDeleted, project, at)
            .needs(Permission::Own)
            .build();
        assert_eq!(by_admin.audit.authority, Some(Authority::InstanceAdmin));
    }

    #[test]
    fn a_change_with_its_before_lists_changes_in_the_audit_and_previous_in_the_event() {
        use crate::identity::Role;
        let at = Utc::now();
        let actor = Principal {
            user_id: Uuid::from_u128(2),
            session_id: Uuid::from_u128(4),
            role: Role::User,
            expires_at: at,
            grant: None,
        };
        let change = Change::by(&actor, EventType::TaskUpdated, Uuid::from_u128(3), at)
            .details(serde_json::json!({"changed": ["title", "description"]}))
            .before(serde_json::json!({"title": "Old", "description": "secret", "version": 1}))
            .data(serde_json::json!({"title": "New", "description": "clean", "version": 2}))
            .build();
        assert_eq!(
            change.audit.details,
            Some(serde_json::json!({
                "changed": ["title", "description"],
                "changes": [
                    {"field": "description", "redacted": true},
                    {"field": "title", "from": "Old", "to": "New"},
                ],
            }))
        );
        assert_eq!(
            change.event.event.previous,
            Some(serde_json::json!({"title": "Old"}))
        );
        let json = serde_json::to_value(&change.event.event).unwrap();
        assert_eq!(json["previous"], serde_json::json!({"title": "Old"}));
        assert!(!json.to_string().contains("secret"));
        // Without a before: no `previous` key at all.
        let plain = Change::by(&actor, EventType::TaskCreated, Uuid::from_u128(3), at).build();
        assert!(
            serde_json::to_value(&plain.event.event)
                .unwrap()
                .get("previous")
                .is_none()
        );
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "give its builder `.before(")]
    fn an_updated_change_built_without_its_before_is_caught_in_tests() {
        let actor = Principal {
            user_id: Uuid::from_u128(2),
            session_id: Uuid::from_u128(4),
            role: crate::identity::Role::User,
            expires_at: Utc::now(),
            grant: None,
        };
        let _ = Change::by(&actor, EventType::LabelUpdated, Uuid::from_u128(3), Utc::now()).build();
    }

    #[test]
    fn resource_is_the_part_before_the_dot() {
        assert_eq!(EventType::TaskUpdated.resource(), "task");
        assert_eq!(EventType::MemberRemoved.resource(), "member");
        assert_eq!(EventType::LabelDeleted.resource(), "label");
    }

    #[test]
    fn events_serialize_in_the_contract_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .to_utc();
        let audit = AuditEntry {
            id: Uuid::from_u128(1),
            occurred_at: at,
            actor_id: Some(Uuid::from_u128(2)),
            action: "task.created".into(),
            resource_type: "task".into(),
            resource_id: None,
            project_id: Some(Uuid::from_u128(3)),
            request_id: None,
            ip: None,
            details: None,
            restricted: None,
            authority: None,
            token_id: None,
        };
        let change = Change::new(
            audit,
            EventType::TaskCreated,
            Uuid::from_u128(3),
            serde_json::json!({"n": 1}),
        );
        let json = serde_json::to_value(&change.event.event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": Uuid::from_u128(1),
                "type": "task.created",
                "projectId": Uuid::from_u128(3),
                "actorId": Uuid::from_u128(2),
                "data": {"n": 1},
                "occurredAt": "2026-11-23T10:00:00Z",
            })
        );
        let with = change.clone().also_to(vec![Uuid::from_u128(9)]);
        let back: Envelope = serde_json::from_value(serde_json::to_value(&with.event).unwrap()).unwrap();
        assert_eq!(back, with.event);
        assert_eq!(
            change.with_data(serde_json::json!(7)).event.event.data,
            serde_json::json!(7)
        );
    }
}
