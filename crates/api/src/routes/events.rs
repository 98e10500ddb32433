//! `GET /api/v1/events`: the real-time event stream over a WebSocket (docs/api/events-and-webhooks.md).
//!
//! - **Authentication** before the upgrade: `Authorization: Bearer …`, or the `access_token`
//!   query parameter for browsers (which cannot set headers on a WebSocket). The query is
//!   never logged: logs carry the route pattern only.
//! - **What flows:** one text frame per event, `{id, type, projectId, actorId, data,
//!   occurredAt}`, for the projects the user is a member of when the event is delivered
//!   (plus the events that name them: their own removal, the deletion of their project).
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
use keel_application::events::{BusMessage, receives};
use keel_application::identity::auth::authenticate::authenticate_again;
use keel_domain::identity::Principal;
use keel_domain::rate_limit::RateDecision;

use crate::caller::Caller;
pub use crate::config::StreamSettings;
use crate::error::ApiError;
use crate::state::AppState;
use crate::stream_slots::StreamSlot;

/// The largest frame a client may send (it has nothing to say but pongs and close).
const MAX_CLIENT_FRAME: usize = 4 * 1024;

#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "streamEvents",
    tag = "events",
    params(
        ("access_token" = Option<String>, Query,
            description = "The access token, for clients that cannot send `Authorization` (browsers). Never logged."),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. The server then sends one text frame per event: \
            `{id, type, projectId, actorId, data, occurredAt}`, in order per project, at least once (deduplicate on `id`). \
            Close codes: 1001 server going away, 1008 session ended (logout, revocation, a disabled account) or access token expired, \
            1012 events may have been missed (reconnect and resynchronise), 1013 client too slow."),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::error::ErrorBody),
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
) -> Result<HttpResponse, ApiError> {
    // The header or the `access_token` query parameter, verified by the `caller` middleware.
    let principal = Caller::of(&req).require()?;
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
    let reason = loop {
        tokio::select! {
            message = events.next() => match message {
                Some(BusMessage::Event(envelope)) => {
                    match receives(&state.tracking, &principal, &envelope).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "membership unreadable; closing an event stream");
                            break close(CloseCode::Again, "events may have been missed; reconnect");
                        }
                    }
                    let text = match serde_json::to_string(&envelope.event) {
                        Ok(text) => text,
                        Err(e) => {
                            tracing::error!(error = %e, "an event did not serialize");
                            continue;
                        }
                    };
                    match tokio::time::timeout(settings.send_timeout, session.text(text)).await {
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
