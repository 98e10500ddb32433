//! The real-time event stream (docs/api/events-and-webhooks.md): the bus that carries published events to every
//! instance, and who may see which event.
//!
//! The outbox dispatcher (infrastructure) publishes each committed event once to the
//! [`EventBus`]; every instance's subscription yields it, and each WebSocket session keeps the
//! events its user [`receives`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use keel_domain::events::Envelope;
use keel_domain::identity::Principal;
use keel_domain::{FieldError, StoreError};
use uuid::Uuid;

use crate::AppError;
use crate::tracking::TrackingPorts;

/// What a subscription to the bus yields.
#[derive(Debug, Clone)]
pub enum BusMessage {
    Event(Arc<Envelope>),
    /// Events may have been missed since the last message: this instance lost its link to
    /// the other instances. Every client must resynchronise.
    Interrupted,
    /// This subscriber fell too far behind and events it had not read were dropped: its
    /// client is too slow.
    Lagged,
    /// A new notification, for its user's streams.
    Notification(Arc<crate::notifications::UserNotification>),
}

/// Failure to publish.
#[derive(Debug, thiserror::Error)]
#[error("publishing events failed: {0}")]
pub struct BusError(pub String);

/// Carries published events to every instance, this one included.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes `events`, in order, to every subscriber of every instance.
    /// # Errors
    /// When the events could not be handed to the other instances; they reached this
    /// instance's subscribers all the same.
    async fn publish(&self, events: &[Envelope]) -> Result<(), BusError>;

    /// Publishes new notifications to every subscriber of every instance (each stream keeps
    /// its user's).
    /// # Errors
    /// As [`EventBus::publish`].
    async fn publish_notifications(
        &self,
        notifications: &[crate::notifications::UserNotification],
    ) -> Result<(), BusError>;

    /// A subscription from now on. It ends only when the bus shuts down.
    fn subscribe(&self) -> BoxStream<'static, BusMessage>;
}

/// Whether `principal` receives `envelope`: named in it, or a member of its project now —
/// and, with a personal access token limited to some projects, the project is one of them.
///
/// Membership is read through the cache, which every membership change invalidates on every
/// instance, so a removed member stops receiving at once. Instance admins receive the events
/// of the projects they are members of, like anybody else.
///
/// # Errors
/// When the membership cannot be read (the store is down).
pub async fn receives(
    ports: &TrackingPorts,
    principal: &Principal,
    envelope: &Envelope,
) -> Result<bool, AppError> {
    let user = principal.user_id;
    if !principal.reaches(envelope.event.project_id) {
        return Ok(false);
    }
    if envelope.also_to.contains(&user) {
        return Ok(true);
    }
    Ok(ports.role_of(envelope.event.project_id, user).await?.is_some())
}

/// Who reads the feed: the user, and the projects their personal access token is limited
/// to (`None`: every project they are a member of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedReader {
    pub user_id: Uuid,
    pub projects: Option<Vec<Uuid>>,
}

impl FeedReader {
    pub fn of(principal: &Principal) -> Self {
        Self {
            user_id: principal.user_id,
            projects: principal.project_limit().map(<[Uuid]>::to_vec),
        }
    }
}

/// One page of the feed: the events the reader may see, in `seq` order, and where the next
/// page starts. `next_after` is past every event this page looked at, seen or not, so a
/// reader never scans the same events twice; with fewer than `limit` events the page reached
/// the end of the feed as it stood (`next_after` is then its last `seq`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub events: Vec<Envelope>,
    pub next_after: i64,
}

/// Why a page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// `after` lies before the oldest event kept (the events after it were purged) or beyond
    /// the newest one (it is not a position of this feed).
    #[error("the feed no longer holds the events after this position")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FeedError> for AppError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Gone => AppError::Gone(
                "the events after this position are no longer kept (or it is not a position of this feed); \
                 re-read what you show, then follow the feed from its present position"
                    .into(),
            ),
            FeedError::Store(e) => e.into(),
        }
    }
}

/// The retained, ordered feed of published events (the store of the resumable stream).
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// At most `limit` events after `after` (from the oldest kept when `None`) that `reader`
    /// may see: of a project they are a member of now (and that their token reaches), or
    /// naming them — in `seq` order.
    ///
    /// # Errors
    /// [`FeedError::Gone`] when `after` is older than the oldest kept event allows (some
    /// events after it were purged) or newer than the newest; a store error.
    async fn page(&self, reader: &FeedReader, after: Option<i64>, limit: u64) -> Result<FeedPage, FeedError>;

    /// The newest position (0 when the feed is empty).
    ///
    /// # Errors
    /// A store error.
    async fn head(&self) -> Result<i64, StoreError>;
}

/// The largest page of `GET /events/log`, and its default.
pub const FEED_MAX_LIMIT: u32 = 100;
pub const FEED_DEFAULT_LIMIT: u32 = 50;

/// A validated feed position and page size, from the query's raw strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedQuery {
    pub after: Option<i64>,
    pub limit: u32,
}

impl FeedQuery {
    /// `after`: an integer ≥ 0 (optional); `limit`: 1–100, default 50. Every bad field is
    /// reported.
    ///
    /// # Errors
    /// A validation error naming each bad field.
    pub fn parse(after: Option<&str>, limit: Option<&str>) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let after = parse_after(after).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        let limit = match limit.map(|raw| raw.trim().parse::<u32>()) {
            None => FEED_DEFAULT_LIMIT,
            Some(Ok(v)) if (1..=FEED_MAX_LIMIT).contains(&v) => v,
            Some(_) => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be an integer from 1 to {FEED_MAX_LIMIT}"),
                ));
                FEED_DEFAULT_LIMIT
            }
        };
        if errors.is_empty() {
            Ok(Self { after, limit })
        } else {
            Err(AppError::Validation(errors))
        }
    }
}

/// A feed position from the query: an integer ≥ 0 (`None` when absent).
///
/// # Errors
/// The field error of a value that is not one.
pub fn parse_after(raw: Option<&str>) -> Result<Option<i64>, FieldError> {
    match raw.map(|raw| raw.trim().parse::<i64>()) {
        None => Ok(None),
        Some(Ok(v)) if v >= 0 => Ok(Some(v)),
        Some(_) => Err(FieldError::new(
            "after",
            "must be a feed position: an integer ≥ 0 (the `seq` of the last event you received)",
        )),
    }
}

/// `GET /events/log`: one page of the feed as `principal` may see it.
///
/// # Errors
/// [`AppError::Gone`] past the retention; a store error.
pub async fn read_feed(
    feed: &dyn EventFeed,
    principal: &Principal,
    query: FeedQuery,
) -> Result<FeedPage, AppError> {
    Ok(feed
        .page(&FeedReader::of(principal), query.after, u64::from(query.limit))
        .await?)
}

/// What a resuming stream does with an event that came live, given the last position it
/// delivered or skipped (`last`): the merge of a replay with the live flow, so that a client
/// gets every event once, in `seq` order, across the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStep {
    /// The next position: deliver it (when the reader may see it).
    Next,
    /// At or before `last`: the replay (or an earlier copy) already covered it.
    Duplicate,
    /// After a hole (events between `last` and it never came live, e.g. published while
    /// this instance's subscription was being made): read the feed after `last` first.
    Gap,
    /// An event without a position (published by an older version): deliver it as it is.
    Unpositioned,
}

/// Where a resuming stream stands: the last position it delivered or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedCursor {
    last: Option<i64>,
}

impl FeedCursor {
    /// A stream that has covered every position up to `last` (`None`: nothing yet; the first
    /// live event sets it).
    pub fn at(last: Option<i64>) -> Self {
        Self { last }
    }

    pub fn last(self) -> Option<i64> {
        self.last
    }

    /// What to do with `seq`, come live.
    pub fn step(self, seq: Option<i64>) -> LiveStep {
        match (seq, self.last) {
            (None, _) => LiveStep::Unpositioned,
            (Some(_), None) => LiveStep::Next,
            (Some(seq), Some(last)) if seq <= last => LiveStep::Duplicate,
            (Some(seq), Some(last)) if seq == last + 1 => LiveStep::Next,
            (Some(_), Some(_)) => LiveStep::Gap,
        }
    }

    /// Covered up to `seq` (never moves back).
    pub fn advance(&mut self, seq: i64) {
        self.last = Some(self.last.map_or(seq, |last| last.max(seq)));
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_domain::events::{DomainEvent, EventType};

    use uuid::Uuid;

    use super::*;
    use crate::tracking::fixtures::*;

    fn envelope(also_to: Vec<Uuid>) -> Envelope {
        Envelope {
            event: DomainEvent {
                seq: None,
                id: Uuid::from_u128(5),
                event_type: EventType::TaskCreated,
                project_id: PROJECT_ID,
                actor_id: None,
                data: serde_json::Value::Null,
                previous: None,
                occurred_at: Utc::now(),
            },
            also_to,
        }
    }

    #[tokio::test]
    async fn members_and_named_users_receive_strangers_do_not() {
        let ports = Fixture::default().ports();
        let e = envelope(vec![]);
        assert!(receives(&ports, &member(), &e).await.unwrap());
        assert!(receives(&ports, &viewer(), &e).await.unwrap());
        assert!(!receives(&ports, &stranger(), &e).await.unwrap());
        let named = envelope(vec![stranger().user_id]);
        assert!(receives(&ports, &stranger(), &named).await.unwrap());
        // Instance admins are not members: they see nothing of a project they are not in.
        assert!(!receives(&ports, &admin(), &e).await.unwrap());
        // A member's token limited to another project receives nothing of this one.
        let mut limited = member();
        limited.grant = Some(std::sync::Arc::new(keel_domain::identity::tokens::Grant {
            token_id: Uuid::nil(),
            scopes: keel_domain::identity::tokens::Scopes::parse(&["read"]).unwrap(),
            project_ids: Some(vec![Uuid::from_u128(0xB0B)]),
        }));
        assert!(!receives(&ports, &limited, &e).await.unwrap());
        assert!(
            !receives(&ports, &limited, &envelope(vec![limited.user_id]))
                .await
                .unwrap()
        );
    }

    fn fields(e: AppError) -> Vec<String> {
        match e {
            AppError::Validation(details) => details.into_iter().map(|d| d.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_feed_query_takes_a_position_and_a_bounded_limit_and_names_every_bad_field() {
        assert_eq!(
            FeedQuery::parse(None, None).unwrap(),
            FeedQuery {
                after: None,
                limit: 50
            }
        );
        assert_eq!(
            FeedQuery::parse(Some("0"), Some("100")).unwrap(),
            FeedQuery {
                after: Some(0),
                limit: 100
            }
        );
        assert_eq!(FeedQuery::parse(Some(" 42 "), Some("1")).unwrap().after, Some(42));
        for bad in ["-1", "x", "1.5", "", "99999999999999999999"] {
            assert_eq!(
                fields(FeedQuery::parse(Some(bad), None).unwrap_err()),
                ["after"],
                "{bad}"
            );
        }
        for bad in ["0", "101", "ten"] {
            assert_eq!(
                fields(FeedQuery::parse(None, Some(bad)).unwrap_err()),
                ["limit"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(FeedQuery::parse(Some("-5"), Some("0")).unwrap_err()),
            ["after", "limit"]
        );
    }

    #[test]
    fn a_resuming_stream_delivers_each_position_once_in_order_and_reads_holes_from_the_feed() {
        // Live only: the first event sets the position.
        let mut cursor = FeedCursor::at(None);
        assert_eq!(cursor.step(Some(40)), LiveStep::Next);
        cursor.advance(40);
        assert_eq!(cursor.step(Some(41)), LiveStep::Next);
        // Replayed up to 10: the buffered live copies of 9 and 10 are dropped, 11 goes out.
        let mut cursor = FeedCursor::at(Some(10));
        assert_eq!(cursor.step(Some(9)), LiveStep::Duplicate);
        assert_eq!(cursor.step(Some(10)), LiveStep::Duplicate);
        assert_eq!(cursor.step(Some(11)), LiveStep::Next);
        cursor.advance(11);
        // 12 never came live: 13 makes the stream read after 11 first.
        assert_eq!(cursor.step(Some(13)), LiveStep::Gap);
        cursor.advance(13);
        assert_eq!(cursor.step(Some(12)), LiveStep::Duplicate);
        // The position never moves back.
        cursor.advance(5);
        assert_eq!(cursor.last(), Some(13));
        // An event without a position (an older publisher) is passed on as it is.
        assert_eq!(cursor.step(None), LiveStep::Unpositioned);
    }

    /// A feed that records what it was asked.
    #[derive(Default)]
    struct RecordingFeed {
        asked: std::sync::Mutex<Vec<(FeedReader, Option<i64>, u64)>>,
        gone: bool,
    }

    #[async_trait]
    impl EventFeed for RecordingFeed {
        async fn page(
            &self,
            reader: &FeedReader,
            after: Option<i64>,
            limit: u64,
        ) -> Result<FeedPage, FeedError> {
            self.asked.lock().unwrap().push((reader.clone(), after, limit));
            if self.gone {
                return Err(FeedError::Gone);
            }
            Ok(FeedPage {
                events: vec![],
                next_after: after.unwrap_or(0),
            })
        }

        async fn head(&self) -> Result<i64, StoreError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn the_log_reads_as_the_caller_with_their_token_s_project_limit_and_says_gone() {
        let feed = RecordingFeed::default();
        let query = FeedQuery::parse(Some("7"), Some("20")).unwrap();
        read_feed(&feed, &member(), query).await.unwrap();
        let mut limited = member();
        limited.grant = Some(std::sync::Arc::new(keel_domain::identity::tokens::Grant {
            token_id: Uuid::nil(),
            scopes: keel_domain::identity::tokens::Scopes::parse(&["read"]).unwrap(),
            project_ids: Some(vec![Uuid::from_u128(0xB0B)]),
        }));
        read_feed(&feed, &limited, query).await.unwrap();
        let asked = feed.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![
                (
                    FeedReader {
                        user_id: member().user_id,
                        projects: None
                    },
                    Some(7),
                    20
                ),
                (
                    FeedReader {
                        user_id: member().user_id,
                        projects: Some(vec![Uuid::from_u128(0xB0B)])
                    },
                    Some(7),
                    20
                ),
            ]
        );
        let gone = RecordingFeed {
            gone: true,
            ..RecordingFeed::default()
        };
        assert!(matches!(
            read_feed(&gone, &member(), query).await,
            Err(AppError::Gone(_))
        ));
    }
}
