//! `GET /api/v1/events`: the real-time event stream over a WebSocket (docs/api/events-and-webhooks.md).
//!
//! - **Authentication** before the upgrade: `Authorization: Bearer …`, or the `access_token`
//!   query parameter for browsers (which cannot set headers on a WebSocket). The query is
//!   never logged: logs carry the route pattern only.
//! - **What flows:** one text frame per event, `{id, seq, type, projectId, actorId, data,
//!   occurredAt}`, for the projects the user is a member of when the event is delivered
//!   (plus the events that name them: their own removal, the deletion of their project).
//! - **Resuming:** with `?after=<seq>` the stream first replays, in order, the retained events
//!   after that position the user may see, then goes on live. The bus is subscribed before
//!   the replay reads the feed, and every event is stored before it is published, so nothing
//!   falls between the two; live events at or below the last position covered are dropped
//!   (no duplicate), and a live event after a hole makes the stream read the hole from the
//!   feed first (no gap). A position older than the retention closes the stream with 4410.
//!   `GET /api/v1/events/log` is the same feed as JSON pages.
//! - **Liveness:** a ping every `ping_interval`; no pong for two intervals closes the
//!   connection.
//! - **The session ends the stream** (1008) at once: any change of the user or revocation of
//!   one of their sessions invalidates `user:<id>` on every instance, and the stream re-checks
//!   its session when it hears that invalidation (`Cache::invalidations`); logout, logout-all,
//!   a password change, a disabled account all close it within the moment the invalidation
//!   takes to arrive. The token's own expiry closes it too. Each ping re-checks as well.
//! - **A bound per user:** at most `KEEL_EVENTS_MAX_STREAMS_PER_USER` open streams per user on
//!   an instance; one more is a 429.
//! - **Back-pressure:** a client that falls [`SUBSCRIBER_CAPACITY`] events behind, or whose
//!   socket takes longer than `send_timeout` to accept a frame, is closed (1013, "too slow")
//!   rather than buffered for without bound.
//! - **Gaps:** when this instance may have missed events (its Redis subscription dropped),
//!   clients are closed with 1012: reconnect, then re-read what you show.
//! - **Shutdown:** clients are closed with 1001 ("going away").
//!
//! [`SUBSCRIBER_CAPACITY`]: keel_infrastructure::events::bus::SUBSCRIBER_CAPACITY

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use futures::StreamExt;
use keel_application::AppError;
use keel_application::cache::{CacheKey, Invalidated};
use keel_application::events::{
    BusMessage, FeedCursor, FeedError, FeedQuery, FeedReader, LiveStep, parse_after, read_feed, receives,
};
use keel_application::identity::auth::authenticate::authenticate_again;
use keel_domain::events::DomainEvent;
use keel_domain::identity::Principal;
use keel_domain::rate_limit::RateDecision;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
pub use crate::config::StreamSettings;
use crate::error::ApiError;
use crate::state::AppState;
use crate::stream_slots::StreamSlot;

/// The largest frame a client may send (it has nothing to say but pongs and close).
const MAX_CLIENT_FRAME: usize = 4 * 1024;
/// Events read from the feed at a time by a replay.
const REPLAY_PAGE: u64 = 500;
/// The close code of a stream whose `after` is older than the retention (410 `GONE`).
pub const CLOSE_GONE: u16 = 4410;

/// The stream's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The access token, for clients that cannot send `Authorization` (browsers). Never logged.
    pub access_token: Option<String>,
    /// Resume after this feed position (the `seq` of the last event received): the retained
    /// events after it that the caller may see are replayed first, in order.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
}

/// An event as the stream, the log and webhooks carry it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// The id of the change's audit entry: the same on every delivery (deduplicate on it).
    pub id: uuid::Uuid,
    /// The event's feed position: increasing in commit order, without holes.
    pub seq: Option<i64>,
    /// The event type, `task.updated` for example.
    #[serde(rename = "type")]
    pub event_type: String,
    pub project_id: uuid::Uuid,
    /// `null` for changes the system made (the trash purge).
    pub actor_id: Option<uuid::Uuid>,
    /// The resource as the API shows it after the change (for deletions, its id).
    pub data: serde_json::Value,
    /// On changes of a resource's fields (`*.updated`, a task's archive, unarchive and
    /// restore): the old value of each changed field, `{field: old}`, as the stream and the
    /// webhooks carry it. Absent on other events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

impl From<DomainEvent> for EventView {
    fn from(e: DomainEvent) -> Self {
        Self {
            id: e.id,
            seq: e.seq,
            event_type: e.event_type.as_str().to_owned(),
            project_id: e.project_id,
            actor_id: e.actor_id,
            data: e.data,
            previous: e.previous,
            occurred_at: e.occurred_at,
        }
    }
}

/// One page of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventLogPage {
    /// The events the caller may see, in `seq` order.
    pub data: Vec<EventView>,
    /// Where the next page starts (pass it as `after`). Past every event this page looked
    /// at; when `data` has fewer than `limit` events the page reached the end of the feed.
    pub next_after: i64,
}

/// `after` (≥ 0) and `limit` (1–100, default 50) of the log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The position to read after (the `seq` of the last event received, or the previous
    /// page's `nextAfter`); without it, from the oldest retained event.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/events/log",
    operation_id = "listEventLog",
    tag = "events",
    params(LogParams),
    responses(
        (status = 200, description = "The events after `after` that the caller may see, in feed order: \
            of the projects they are a member of (and their token reaches), and those naming them", body = EventLogPage),
        (status = 400, description = "`VALIDATION_ERROR`: `after` is not an integer ≥ 0 or `limit` not one from 1 to 100", body = crate::error::ErrorBody),
        (status = 401, description = crate::openapi::response::UNAUTHORIZED, body = crate::error::ErrorBody),
        (status = 403, description = crate::openapi::response::ACCOUNT_DISABLED, body = crate::error::ErrorBody),
        (status = 410, description = "`GONE`: events after `after` are no longer kept (older than `KEEL_EVENT_RETENTION_HOURS`), \
            or `after` is beyond the newest position; re-read what you show and follow the feed from its present position", body = crate::error::ErrorBody),
    ),
    security(("bearerAuth" = [])),
)]
pub async fn events_log_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<LogParams>,
) -> Result<HttpResponse, ApiError> {
    let principal = Caller::of(&req).require()?;
    let query = FeedQuery::parse(params.after.as_deref(), params.limit.as_deref())?;
    let page = read_feed(state.feed.as_ref(), &principal, query).await?;
    Ok(HttpResponse::Ok().json(EventLogPage {
        data: page
            .events
            .into_iter()
            .map(|e| EventView::from(e.event))
            .collect(),
        next_after: page.next_after,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "streamEvents",
    tag = "events",
    params(StreamParams),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. The server then sends one text frame per event: \
            `{id, seq, type, projectId, actorId, data, previous?, occurredAt}` (the `EventView` schema), in feed order. With `after`, the \
            retained events after that position are replayed first, then the stream goes on live with no gap and no duplicate. \
            Close codes: 1001 server going away, 1008 session ended (logout, revocation, a disabled account) or access token expired, \
            1012 events may have been missed (reconnect with `after` = the last `seq` received), 1013 client too slow, \
            4410 `after` is older than the retention (or not a position of this feed): re-read, then connect without `after`."),
        (status = 400, description = "Not a WebSocket upgrade request, or `after` is not an integer ≥ 0 (`VALIDATION_ERROR`)", body = crate::error::ErrorBody),
        (status = 401, description = "No valid access token", body = crate::error::ErrorBody),
        (status = 429, description = "The user holds as many open streams on this instance as it allows \
            (`KEEL_EVENTS_MAX_STREAMS_PER_USER`); `Retry-After` says when to try again", body = crate::error::ErrorBody),
        (status = 503, description = "This instance is shutting down: reconnect (a load balancer retries another instance)", body = crate::error::ErrorBody),
    ),
    security(("bearerAuth" = []), ()),
)]
pub async fn events_route(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    params: web::Query<StreamParams>,
) -> Result<HttpResponse, ApiError> {
    // The header or the `access_token` query parameter, verified by the `caller` middleware.
    let principal = Caller::of(&req).require()?;
    let after = parse_after(params.after.as_deref()).map_err(|e| AppError::Validation(vec![e]))?;
    let Some(slot) = state.stream_slots.take(principal.user_id) else {
        let wait = settings_retry(&state);
        return Err(AppError::RateLimited(RateDecision {
            allowed: false,
            limit: u32::try_from(state.stream_slots.per_user()).unwrap_or(u32::MAX),
            remaining: 0,
            retry_after_secs: wait,
            reset_secs: wait,
        })
        .into());
    };
    if *state.shutdown.borrow() {
        // A stream opened now would close at once: the client should go to another instance.
        return Err(AppError::Unavailable("this instance is shutting down; reconnect".into()).into());
    }
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        AppError::invalid(
            "upgrade",
            format!("this endpoint speaks WebSocket only ({e}); send a WebSocket upgrade request"),
        )
    })?;
    // Subscribed before the handshake completes: no event after it is missed.
    let events = state.events.subscribe();
    let stream = stream.max_frame_size(MAX_CLIENT_FRAME);
    // Subscribed before the handshake completes too: no revocation after it is missed.
    let invalidations = state.identity.cache.invalidations();
    actix_web::rt::spawn(serve(
        state.into_inner(),
        principal,
        Watched {
            session,
            incoming: stream,
            events,
            invalidations,
            after,
            _slot: slot,
        },
    ));
    Ok(response)
}

/// How long a refused stream should wait before trying again: one ping interval, when the
/// server notices a dead stream of the user's at the latest.
fn settings_retry(state: &AppState) -> u64 {
    state.stream.ping_interval.as_secs().max(1)
}

/// What one client's session listens to.
struct Watched {
    session: actix_ws::Session,
    incoming: actix_ws::MessageStream,
    events: futures::stream::BoxStream<'static, BusMessage>,
    invalidations: futures::stream::BoxStream<'static, Invalidated>,
    /// Where to resume: replay the feed after it before going live.
    after: Option<i64>,
    /// The user's place among their open streams, freed when the session ends.
    _slot: StreamSlot,
}

/// The close frame of a stream whose session has ended (logout, revocation, a disabled
/// account, an expired or deleted token); `None` while it is live — or when it cannot be
/// checked now (the store is down: the next invalidation or ping checks again).
async fn session_ended(state: &AppState, principal: &Principal) -> Option<Option<CloseReason>> {
    match authenticate_again(&state.identity, principal).await {
        Ok(_) => None,
        Err(AppError::Unauthorized | AppError::AccountDisabled | AppError::TokenExpired) => {
            Some(close(CloseCode::Policy, "the session has ended"))
        }
        Err(e) => {
            tracing::debug!(error = %e, "session re-check failed");
            None
        }
    }
}

/// Why a session ended, as a close frame.
fn close(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// One client's session: events out, pings and pongs, until something ends it.
async fn serve(state: std::sync::Arc<AppState>, principal: Principal, watched: Watched) {
    let Watched {
        mut session,
        mut incoming,
        mut events,
        mut invalidations,
        after,
        _slot,
    } = watched;
    let user = principal.user_id;
    let user_key = CacheKey::user(user);
    // The token's own end: the stream never outlives the credential that opened it.
    let lifetime = (principal.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expiry = tokio::time::sleep(lifetime);
    tokio::pin!(expiry);
    let settings = state.stream;
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_pong = Instant::now();
    // The bus was subscribed before the upgrade: what is published from now on waits in the
    // subscription while the replay reads what was stored before.
    let mut cursor = FeedCursor::at(None);
    if let Some(after) = after {
        match replay(&state, &principal, &mut session, after).await {
            Ok(last) => cursor = FeedCursor::at(Some(last)),
            Err(Stop::Closed) => return,
            Err(Stop::With(reason)) => {
                let _ = session.close(reason).await;
                return;
            }
        }
    }
    let reason = loop {
        tokio::select! {
            message = events.next() => match message {
                Some(BusMessage::Event(envelope)) => {
                    let seq = envelope.event.seq;
                    match cursor.step(seq) {
                        LiveStep::Duplicate => continue,
                        LiveStep::Gap => {
                            // Events between the last position and this one never came live:
                            // read them from the feed, then go on.
                            let last = cursor.last().unwrap_or_default();
                            match replay(&state, &principal, &mut session, last).await {
                                Ok(covered) => cursor.advance(covered),
                                Err(Stop::Closed) => return,
                                Err(Stop::With(reason)) => break reason,
                            }
                            if cursor.step(seq) == LiveStep::Duplicate {
                                continue;
                            }
                        }
                        LiveStep::Next | LiveStep::Unpositioned => {}
                    }
                    if let Some(seq) = seq {
                        cursor.advance(seq);
                    }
                    match receives(&state.tracking, &principal, &envelope).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "membership unreadable; closing an event stream");
                            break close(CloseCode::Again, "events may have been missed; reconnect");
                        }
                    }
                    match send(&mut session, &envelope.event, settings.send_timeout).await {
                        Ok(()) => {}
                        Err(Stop::Closed) => return,
                        Err(Stop::With(reason)) => break reason,
                    }
                }
                Some(BusMessage::Notification(n)) => {
                    // The user's own, of a project their credential reaches.
                    if n.user_id != user || !principal.reaches(n.notification.project_id) {
                        continue;
                    }
                    let frame = serde_json::json!({"type": "notification.created", "data": n.notification});
                    match tokio::time::timeout(settings.send_timeout, session.text(frame.to_string())).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_closed)) => return,
                        Err(_) => break close(CloseCode::Again, "too slow: events are not buffered without bound"),
                    }
                }
                Some(BusMessage::Interrupted) => {
                    break close(CloseCode::Restart, "events may have been missed; reconnect and resynchronise");
                }
                Some(BusMessage::Lagged) => {
                    break close(CloseCode::Again, "too slow: events are not buffered without bound");
                }
                None => break close(CloseCode::Away, "the server is going away"),
            },
            frame = incoming.next() => match frame {
                Some(Ok(Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Close(_))) | None => break None,
                // Clients have nothing to say; other frames are ignored.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "event stream protocol error");
                    break close(CloseCode::Protocol, "protocol error");
                }
            },
            invalidated = invalidations.next() => match invalidated {
                Some(invalidated) if invalidated.covers(&user_key) => {
                    if let Some(reason) = session_ended(&state, &principal).await {
                        break reason;
                    }
                }
                Some(_) => {}
                // The cache has no invalidations to tell (none kept): the pings re-check.
                None => invalidations = Box::pin(futures::stream::pending()),
            },
            () = &mut expiry => break close(CloseCode::Policy, "the access token has expired"),
            _ = ping.tick() => {
                if last_pong.elapsed() > settings.ping_interval * 2 {
                    break close(CloseCode::Away, "no pong");
                }
                if let Some(reason) = session_ended(&state, &principal).await {
                    break reason;
                }
                if session.ping(b"").await.is_err() {
                    return;
                }
            },
            _ = shutdown.changed() => break close(CloseCode::Away, "the server is shutting down"),
        }
    };
    let _ = session.close(reason).await;
}

/// Why a stream stops sending.
enum Stop {
    /// The client is gone: nothing more to say.
    Closed,
    /// Close with this frame.
    With(Option<CloseReason>),
}

/// Sends one event frame, within `timeout`.
async fn send(
    session: &mut actix_ws::Session,
    event: &DomainEvent,
    timeout: std::time::Duration,
) -> Result<(), Stop> {
    let text = match serde_json::to_string(event) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "an event did not serialize");
            return Ok(());
        }
    };
    match tokio::time::timeout(timeout, session.text(text)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_closed)) => Err(Stop::Closed),
        Err(_) => Err(Stop::With(close(
            CloseCode::Again,
            "too slow: events are not buffered without bound",
        ))),
    }
}

/// Sends the retained events after `after` that the user may see, in order; answers the last
/// position covered (seen or not).
async fn replay(
    state: &AppState,
    principal: &keel_domain::identity::Principal,
    session: &mut actix_ws::Session,
    after: i64,
) -> Result<i64, Stop> {
    let reader = FeedReader::of(principal);
    let mut last = after;
    loop {
        let page = match state.feed.page(&reader, Some(last), REPLAY_PAGE).await {
            Ok(page) => page,
            Err(FeedError::Gone) => {
                return Err(Stop::With(close(
                    CloseCode::Other(CLOSE_GONE),
                    "GONE: the events after this position are no longer kept; re-read, then connect without `after`",
                )));
            }
            Err(FeedError::Store(e)) => {
                tracing::warn!(error = %e, "the event feed is unreadable; closing an event stream");
                return Err(Stop::With(close(
                    CloseCode::Again,
                    "events could not be replayed; reconnect",
                )));
            }
        };
        let full = u64::try_from(page.events.len()).unwrap_or(u64::MAX) >= REPLAY_PAGE;
        for envelope in &page.events {
            send(session, &envelope.event, state.stream.send_timeout).await?;
        }
        last = page.next_after;
        if !full {
            return Ok(last);
        }
    }
}
