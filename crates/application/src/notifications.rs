//! Task subscriptions and notifications (docs/api/notifications.md, adr/0025).
//!
//! - A task's creator, its assignee and its commenters follow it automatically; anyone who
//!   may read it can subscribe or unsubscribe (`PUT|DELETE /tasks/{id}/subscription`). An
//!   explicit unsubscription stands: later automatic subscriptions leave it alone.
//! - Notifications are made from the outbox, by the dispatcher, in the transaction that moves
//!   an event into the feed: one per subscriber who is a member of the project, never for the
//!   actor's own change, and at most one per (event, user) whatever is redelivered. Which
//!   events concern which task, who they subscribe and what the notification says is
//!   [`fanout`], a pure function.
//! - Each new notification is pushed on its user's event streams, on every instance, as a
//!   `notification.created` frame.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::events::{DomainEvent, EventType};
use keel_domain::identity::Principal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppError;
use crate::pagination::{CursorPage, CursorRequest};
use crate::tracking::TrackingPorts;

/// A notification as its user reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Uuid,
    /// The type of the event it tells of (`task.updated`, `comment.created`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    pub task_id: Uuid,
    pub project_id: Uuid,
    /// Who made the change; `null` for the system (the trash purge).
    pub actor_id: Option<Uuid>,
    /// The event it was made from (its `id` on the stream and in the feed).
    pub event_id: Uuid,
    /// One line for people: `KEEL-12 updated: Fix the login page`.
    pub summary: String,
    /// When it was marked read; `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A new notification on its way to its user's streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserNotification {
    pub user_id: Uuid,
    pub notification: Notification,
}

/// What an event means for subscriptions and notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    /// The task the event is about.
    pub task_id: Uuid,
    /// Who follows the task from now on (unless they unsubscribed): the creator and the
    /// assignee of a task, the author of a comment.
    pub subscribe: Vec<Uuid>,
    pub summary: String,
}

/// The longest summary (characters).
pub const SUMMARY_MAX: usize = 200;

fn uuid_at(data: &serde_json::Value, field: &str) -> Option<Uuid> {
    data.get(field)?.as_str()?.parse().ok()
}

fn text_at<'a>(data: &'a serde_json::Value, field: &str) -> &'a str {
    data.get(field).and_then(serde_json::Value::as_str).unwrap_or("")
}

/// `text` cut to at most `max` characters (an ellipsis marks the cut), on one line.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What `event` means for the followers of a task; `None` for events about no task (projects,
/// members, labels).
pub fn fanout(event: &DomainEvent) -> Option<Fanout> {
    use EventType as T;
    let data = &event.data;
    let task_id = match event.event_type.resource() {
        "task" => uuid_at(data, "id")?,
        "comment" | "link" | "relation" => uuid_at(data, "taskId")?,
        _ => return None,
    };
    let task = text_at(data, "identifier");
    let title = text_at(data, "title");
    let mut subscribe = Vec::new();
    let summary = match event.event_type {
        T::TaskCreated => {
            subscribe.extend(uuid_at(data, "createdBy"));
            subscribe.extend(uuid_at(data, "assigneeId"));
            format!("{task} created: {title}")
        }
        T::TaskUpdated => {
            subscribe.extend(uuid_at(data, "assigneeId"));
            format!("{task} updated: {title}")
        }
        T::TaskArchived => format!("{task} archived: {title}"),
        T::TaskUnarchived => format!("{task} unarchived: {title}"),
        T::TaskRestored => format!("{task} restored from the trash: {title}"),
        T::TaskDeleted => format!("{task} moved to the trash"),
        T::TaskPurged => format!("{task} deleted for good"),
        T::CommentCreated => {
            subscribe.extend(event.actor_id);
            format!("New comment: {}", text_at(data, "body"))
        }
        T::CommentUpdated => format!("Comment edited: {}", text_at(data, "body")),
        T::CommentDeleted => "A comment was deleted".to_owned(),
        T::LinkCreated => format!("Link added: {}", text_at(data, "url")),
        T::LinkUpdated => format!("Link changed: {}", text_at(data, "url")),
        T::LinkDeleted => "A link was removed".to_owned(),
        T::RelationCreated => format!("Relation added: {}", text_at(data, "type")),
        T::RelationDeleted => "A relation was removed".to_owned(),
        _ => return None,
    };
    subscribe.sort_unstable();
    subscribe.dedup();
    Some(Fanout {
        task_id,
        subscribe,
        summary: one_line(&summary, SUMMARY_MAX),
    })
}

/// Who is notified of an event: the task's subscribers who are members of its project,
/// without its actor.
pub fn recipients(subscribed_members: &[Uuid], actor: Option<Uuid>) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = subscribed_members
        .iter()
        .copied()
        .filter(|u| Some(*u) != actor)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Which of a user's notifications a request reaches: theirs, and with a personal access
/// token limited to some projects, of those projects only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub user_id: Uuid,
    pub projects: Option<Vec<Uuid>>,
}

impl Mailbox {
    pub fn of(principal: &Principal) -> Self {
        Self {
            user_id: principal.user_id,
            projects: principal.project_limit().map(<[Uuid]>::to_vec),
        }
    }
}

/// Which notifications `POST /notifications/read` marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkRead {
    Ids(Vec<Uuid>),
    All,
}

/// The body of `POST /notifications/read`: `{ids}` or `{all: true}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkReadInput {
    /// The notifications to mark read (1–100 ids); others' ids are ignored.
    pub ids: Option<Vec<Uuid>>,
    /// `true`: every notification of the caller.
    pub all: Option<bool>,
}

/// The most ids one request marks.
pub const MARK_MAX_IDS: usize = 100;

impl MarkReadInput {
    /// # Errors
    /// A validation error: neither or both, `all` not `true`, no or too many ids.
    pub fn validate(self) -> Result<MarkRead, AppError> {
        match (self.ids, self.all) {
            (Some(_), Some(_)) => Err(AppError::invalid("all", "give either `ids` or `all`, not both")),
            (None, Some(true)) => Ok(MarkRead::All),
            (None, Some(false)) => Err(AppError::invalid("all", "must be true (or give `ids`)")),
            (Some(ids), None) if ids.is_empty() || ids.len() > MARK_MAX_IDS => Err(AppError::invalid(
                "ids",
                format!("must list 1 to {MARK_MAX_IDS} notification ids"),
            )),
            (Some(mut ids), None) => {
                ids.sort_unstable();
                ids.dedup();
                Ok(MarkRead::Ids(ids))
            }
            (None, None) => Err(AppError::invalid("ids", "give `ids` or `all: true`")),
        }
    }
}

/// `{count}`: unread notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadCount {
    pub count: u64,
}

/// Subscriptions and notifications as stored.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Subscribes (`true`) or unsubscribes `user` from `task`, explicitly.
    async fn set_subscription(
        &self,
        task: Uuid,
        user: Uuid,
        subscribed: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Newest first, after the notification `after` (the cursor), at most `limit`.
    async fn list(
        &self,
        mailbox: &Mailbox,
        unread_only: bool,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError>;

    async fn unread_count(&self, mailbox: &Mailbox) -> Result<u64, StoreError>;

    /// Marks unread ones read at `at`; answers how many changed.
    async fn mark_read(
        &self,
        mailbox: &Mailbox,
        which: &MarkRead,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// `PUT` (`true`) / `DELETE` (`false`) `/tasks/{id}/subscription`: anyone who may read the
/// task.
///
/// # Errors
/// 404 for a task the caller may not read; a store error.
pub async fn set_subscription(
    tracking: &TrackingPorts,
    store: &dyn NotificationStore,
    principal: &Principal,
    task: &str,
    subscribed: bool,
) -> Result<(), AppError> {
    let view = crate::tracking::tasks::get_task(tracking, principal, task).await?;
    store
        .set_subscription(view.id, principal.user_id, subscribed, tracking.clock.now())
        .await?;
    Ok(())
}

/// `GET /notifications`.
///
/// # Errors
/// A store error.
pub async fn list_notifications(
    store: &dyn NotificationStore,
    principal: &Principal,
    unread_only: bool,
    cursor: CursorRequest<Uuid>,
) -> Result<CursorPage<Notification>, AppError> {
    let rows = store
        .list(
            &Mailbox::of(principal),
            unread_only,
            cursor.after().copied(),
            cursor.fetch_limit(),
        )
        .await?;
    CursorPage::from_rows(rows, &cursor, |n| n.id)
}

/// `GET /notifications/unread-count`.
///
/// # Errors
/// A store error.
pub async fn unread_count(
    store: &dyn NotificationStore,
    principal: &Principal,
) -> Result<UnreadCount, AppError> {
    Ok(UnreadCount {
        count: store.unread_count(&Mailbox::of(principal)).await?,
    })
}

/// `POST /notifications/read`: answers the unread count after.
///
/// # Errors
/// A validation error; a store error.
pub async fn mark_read(
    store: &dyn NotificationStore,
    principal: &Principal,
    input: MarkReadInput,
    now: DateTime<Utc>,
) -> Result<UnreadCount, AppError> {
    let which = input.validate()?;
    let mailbox = Mailbox::of(principal);
    store.mark_read(&mailbox, &which, now).await?;
    Ok(UnreadCount {
        count: store.unread_count(&mailbox).await?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: EventType, actor: Option<Uuid>, data: serde_json::Value) -> DomainEvent {
        DomainEvent {
            id: Uuid::from_u128(1),
            seq: None,
            event_type,
            project_id: Uuid::from_u128(2),
            actor_id: actor,
            data,
            previous: None,
            occurred_at: Utc::now(),
        }
    }

    const TASK: Uuid = Uuid::from_u128(10);
    const ALICE: Uuid = Uuid::from_u128(20);
    const BOB: Uuid = Uuid::from_u128(21);

    #[test]
    fn a_new_task_subscribes_its_creator_and_assignee() {
        let f = fanout(&event(
            EventType::TaskCreated,
            Some(ALICE),
            json!({"id": TASK, "identifier": "KEEL-1", "title": "Fix\nlogin", "createdBy": ALICE, "assigneeId": BOB}),
        ))
        .unwrap();
        assert_eq!(f.task_id, TASK);
        assert_eq!(f.subscribe, vec![ALICE, BOB]);
        assert_eq!(f.summary, "KEEL-1 created: Fix login");
        // Unassigned: the creator alone.
        let f = fanout(&event(
            EventType::TaskCreated,
            Some(ALICE),
            json!({"id": TASK, "identifier": "KEEL-1", "title": "T", "createdBy": ALICE, "assigneeId": null}),
        ))
        .unwrap();
        assert_eq!(f.subscribe, vec![ALICE]);
    }

    #[test]
    fn an_update_subscribes_the_assignee_and_a_comment_its_author() {
        let f = fanout(&event(
            EventType::TaskUpdated,
            Some(ALICE),
            json!({"id": TASK, "identifier": "KEEL-1", "title": "T", "assigneeId": BOB}),
        ))
        .unwrap();
        assert_eq!(f.subscribe, vec![BOB]);
        let long = "x".repeat(500);
        let f = fanout(&event(
            EventType::CommentCreated,
            Some(BOB),
            json!({"id": Uuid::from_u128(99), "taskId": TASK, "body": long}),
        ))
        .unwrap();
        assert_eq!((f.task_id, f.subscribe), (TASK, vec![BOB]));
        assert_eq!(f.summary.chars().count(), SUMMARY_MAX);
        assert!(f.summary.ends_with('…'));
        // Edits and deletions subscribe nobody.
        let f = fanout(&event(
            EventType::CommentDeleted,
            Some(BOB),
            json!({"id": Uuid::from_u128(99), "taskId": TASK}),
        ))
        .unwrap();
        assert!(f.subscribe.is_empty());
    }

    #[test]
    fn events_about_no_task_notify_nobody() {
        for t in [
            EventType::ProjectCreated,
            EventType::ProjectDeleted,
            EventType::MemberAdded,
            EventType::LabelCreated,
        ] {
            assert_eq!(fanout(&event(t, Some(ALICE), json!({"id": TASK}))), None, "{t}");
        }
        // A task event whose data names no task (it cannot happen; it is not a panic).
        assert_eq!(fanout(&event(EventType::TaskUpdated, None, json!({}))), None);
    }

    #[test]
    fn the_actor_is_never_notified_of_their_own_change() {
        assert_eq!(recipients(&[ALICE, BOB, ALICE], Some(ALICE)), vec![BOB]);
        assert_eq!(recipients(&[ALICE, BOB], None), vec![ALICE, BOB]);
        assert!(recipients(&[ALICE], Some(ALICE)).is_empty());
    }

    #[test]
    fn marking_read_takes_ids_or_all_never_both_nor_neither() {
        let ids = |n: usize| (0..n).map(|i| Uuid::from_u128(i as u128)).collect::<Vec<_>>();
        let input = |ids: Option<Vec<Uuid>>, all: Option<bool>| MarkReadInput { ids, all };
        assert_eq!(input(None, Some(true)).validate().unwrap(), MarkRead::All);
        assert_eq!(
            input(Some(vec![ALICE, ALICE, BOB]), None).validate().unwrap(),
            MarkRead::Ids(vec![ALICE, BOB])
        );
        for (bad, field) in [
            (input(None, None), "ids"),
            (input(Some(vec![]), None), "ids"),
            (input(Some(ids(101)), None), "ids"),
            (input(None, Some(false)), "all"),
            (input(Some(vec![ALICE]), Some(true)), "all"),
        ] {
            match bad.validate() {
                Err(AppError::Validation(details)) => assert_eq!(details[0].field, field),
                other => panic!("expected a validation error, got {other:?}"),
            }
        }
    }
}
