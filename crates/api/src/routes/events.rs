//! `GET /api/v1/events`: the real-time event stream over a WebSocket (SPEC §6).
//!
//! - **Authentication** before the upgrade: `Authorization: Bearer …`, or the `access_token`
//!   query parameter for browsers (which cannot set headers on a WebSocket). The query is
//!   never logged: logs carry the route pattern only.
//! - **What flows:** one text frame per event, `{id, type, projectId, actorId, data,
//!   occurredAt}`, for the projects the user is a member of when the event is delivered
//!   (plus the events that name them: their own removal, the deletion of their project).
//! - **Liveness:** a ping every `ping_interval`; no pong for two intervals closes the
//!   connection. Each ping also re-checks the session: logout, revocation or a disabled
//!   account close it (1008).
//! - **Back-pressure:** a client that falls [`SUBSCRIBER_CAPACITY`] events behind, or whose
//!   socket takes longer than `send_timeout` to accept a frame, is closed (1013, "too slow")
//!   rather than buffered for without bound.
//! - **Gaps:** when this instance may have missed events (its Redis subscription dropped),
//!   clients are closed with 1012: reconnect, then re-read what you show.
//! - **Shutdown:** clients are closed with 1001 ("going away").
//!
//! [`SUBSCRIBER_CAPACITY`]: keel_infrastructure::events::bus::SUBSCRIBER_CAPACITY

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use futures::StreamExt;
use keel_application::AppError;
use keel_application::events::{BusMessage, receives};
use keel_application::identity::auth::authenticate::authenticate_verified;
use keel_domain::identity::ports::AccessClaims;

use crate::error::ApiError;
use crate::extractors::bearer;
use crate::state::AppState;

/// The largest frame a client may send (it has nothing to say but pongs and close).
const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// How the stream treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub ping_interval: Duration,
    pub send_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
        }
    }
}

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
            Close codes: 1001 server going away, 1008 session ended, 1012 events may have been missed (reconnect and resynchronise), \
            1013 client too slow."),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::error::ErrorBody),
        (status = 401, description = "No valid access token", body = crate::error::ErrorBody),
        (status = 503, description = "This instance is shutting down: reconnect (a load balancer retries another instance)", body = crate::error::ErrorBody),
    ),
    security(("bearerAuth" = []), ()),
)]
pub async fn events_route(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let claims = {
        let token = match bearer(&req) {
            Some(token) => token.to_owned(),
            None => query_token(req.query_string()).ok_or(AppError::Unauthorized)?,
        };
        state
            .identity
            .tokens
            .verify_access(&token)
            .map_err(AppError::from)?
    };
    authenticate_verified(&state.identity, claims).await?;
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
    actix_web::rt::spawn(serve(state.into_inner(), claims, session, stream, events));
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// `access_token` from a query string (percent-decoded); other parameters are ignored.
fn query_token(query: &str) -> Option<String> {
    web::Query::<TokenQuery>::from_query(query)
        .ok()?
        .into_inner()
        .access_token
        .filter(|token| !token.is_empty())
}

/// Why a session ended, as a close frame.
fn close(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// One client's session: events out, pings and pongs, until something ends it.
async fn serve(
    state: std::sync::Arc<AppState>,
    claims: AccessClaims,
    mut session: actix_ws::Session,
    mut incoming: actix_ws::MessageStream,
    mut events: futures::stream::BoxStream<'static, BusMessage>,
) {
    let user = claims.user_id;
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
                    match receives(&state.tracking, user, &envelope).await {
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
            _ = ping.tick() => {
                if last_pong.elapsed() > settings.ping_interval * 2 {
                    break close(CloseCode::Away, "no pong");
                }
                match authenticate_verified(&state.identity, claims).await {
                    Ok(_) => {}
                    Err(AppError::Unauthorized | AppError::AccountDisabled) => {
                        break close(CloseCode::Policy, "the session has ended");
                    }
                    // The store is down: keep the stream; the next ping checks again.
                    Err(e) => tracing::debug!(error = %e, "session re-check failed"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_query_string() {
        assert_eq!(query_token("access_token=abc.def").as_deref(), Some("abc.def"));
        assert_eq!(query_token("x=1&access_token=a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(query_token("access_token="), None);
        assert_eq!(query_token("token=abc"), None);
        assert_eq!(query_token(""), None);
        // Malformed input is no token, never a panic.
        assert_eq!(
            query_token("access_token=%E2%82").as_deref(),
            Some("\u{FFFD}"),
            "decoded lossily; such a token fails verification"
        );
    }
}
