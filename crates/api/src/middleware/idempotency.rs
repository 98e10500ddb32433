//! `Idempotency-Key` on the `POST` routes that create (docs/api/conventions.md, adr/0006).
//!
//! It wraps the routes flagged `idempotent` in the route table (`crate::routes`), between
//! routing and the handler, so it runs only for them and never looks a route up. It acts on
//! `POST` requests that carry the header and come from a live principal (`crate::caller`;
//! anything else passes through untouched: without a user there is no one to remember the
//! key for, and the handler answers 401 — so a revoked token can never replay a stored
//! response). The request's
//! fingerprint is SHA-256 of its method, path and exact body bytes. Then:
//! - first use of the key: the handler runs; a 2xx response is stored, anything else
//!   releases the key so that a corrected retry can run;
//! - same key and fingerprint, finished: the stored response is replayed with
//!   `Idempotency-Replayed: true`;
//! - same key, other fingerprint: 409; same key still running: 409.
//!
//! It runs inside every application middleware (request context, CORS, rate limits): the
//! request context's error rendering gives its 400/409/503 the contract's shape, and a
//! request refused by a rate limit claims no key.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse};
use futures::StreamExt;
use keel_application::AppError;
use keel_domain::clock::Clock;
use keel_domain::idempotency::{
    Claim, ClaimId, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");

/// The response headers a replay repeats; the others (request id, security headers, CORS)
/// belong to the replaying request and are added by the outer middleware again.
const REPLAYED_HEADERS: [HeaderName; 3] = [header::LOCATION, header::ETAG, header::CONTENT_TYPE];

/// What the middleware needs, wired at start-up (`AppState::idempotency`).
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").finish_non_exhaustive()
    }
}

/// The middleware, for `Route::wrap(from_fn(idempotency))` (the route table applies it to
/// the routes flagged `idempotent`): the state's [`Idempotency`] at work.
pub async fn idempotency(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let guard = state.idempotency.clone();
            guard.handle(req, next).await
        }
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// An answer the middleware gives itself, without running the handler.
enum Reply {
    Error(ApiError),
    Replay(StoredResponse),
}

impl Idempotency {
    pub fn new(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The middleware's work, given its dependencies (tests wrap an app with it directly).
    pub async fn handle<B: MessageBody + 'static>(
        &self,
        mut req: ServiceRequest,
        next: Next<B>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let Some((user_id, raw_key)) = self.applies_to(&req) else {
            return Ok(next.call(req).await?.map_into_boxed_body());
        };
        let key = match parse_key(&raw_key) {
            Ok(key) => key,
            Err(e) => return Ok(answer_early(req, Reply::Error(e))),
        };
        if declared_length(&req).is_some_and(|len| len > BODY_LIMIT) {
            // The handler refuses it with 413 before creating anything.
            return Ok(next.call(req).await?.map_into_boxed_body());
        }
        let body = match read_body(&mut req).await {
            Ok(body) => body,
            Err(e) => return Ok(answer_early(req, Reply::Error(e))),
        };
        let fingerprint = fingerprint(req.method(), req.path(), &body);
        let claim = match self
            .store
            .claim(user_id, &key, &fingerprint, self.clock.now())
            .await
        {
            Ok(Claim::Acquired(claim)) => claim,
            Ok(Claim::Completed(stored)) => return Ok(answer_early(req, Reply::Replay(stored))),
            Ok(Claim::Mismatch) => {
                return Ok(answer_early(
                    req,
                    Reply::Error(conflict("Idempotency-Key was used with another request body")),
                ));
            }
            Ok(Claim::InProgress) => {
                return Ok(answer_early(
                    req,
                    Reply::Error(conflict(
                        "a request with this Idempotency-Key is still in progress",
                    )),
                ));
            }
            Err(e) => return Ok(answer_early(req, Reply::Error(AppError::from(e).into()))),
        };

        req.set_payload(Payload::from(body));
        let response = match next.call(req).await {
            Ok(response) => response,
            Err(e) => {
                self.release(user_id, &key, claim).await;
                return Err(e);
            }
        };
        if !response.status().is_success() {
            self.release(user_id, &key, claim).await;
            return Ok(response.map_into_boxed_body());
        }
        self.store_response(user_id, &key, claim, response).await
    }

    /// The user and raw key, when this request is one the middleware acts on.
    fn applies_to(&self, req: &ServiceRequest) -> Option<(Uuid, Vec<u8>)> {
        if req.method() != Method::POST {
            return None;
        }
        let mut values = req.headers().get_all(&IDEMPOTENCY_KEY);
        let first = values.next()?;
        let user_id = Caller::of(req.request()).principal()?.user_id;
        // Two keys are as invalid as a malformed one: an empty value is refused below.
        let raw = if values.next().is_some() {
            Vec::new()
        } else {
            first.as_bytes().to_vec()
        };
        Some((user_id, raw))
    }

    /// Buffers a successful response, stores it, and returns it. The response goes out even
    /// when storing fails: the resource exists, and the key stays claimed (a retry gets 409
    /// until the claim is abandoned) rather than allowing a duplicate at once.
    async fn store_response<B: MessageBody + 'static>(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        claim: ClaimId,
        response: ServiceResponse<B>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let (req, response) = response.into_parts();
        let (response, body) = response.into_parts();
        let bytes = match actix_web::body::to_bytes(body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.release(user_id, key, claim).await;
                let cause = e.into().to_string();
                let error = ApiError::from(AppError::internal(format!(
                    "cannot buffer a response to store it: {cause}"
                )));
                return Ok(ServiceResponse::new(req, HttpResponse::from_error(error)));
            }
        };
        let stored = StoredResponse {
            status: response.status().as_u16(),
            headers: REPLAYED_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = response.headers().get(name)?.to_str().ok()?;
                    Some((name.as_str().to_owned(), value.to_owned()))
                })
                .collect(),
            body: bytes.to_vec(),
        };
        match self.store.complete(user_id, key, claim, &stored).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("idempotency claim was taken over before the response was stored"),
            Err(e) => tracing::error!(error = %e, "storing the response of an idempotent request failed"),
        }
        Ok(ServiceResponse::new(req, response.set_body(BoxBody::new(bytes))))
    }

    async fn release(&self, user_id: Uuid, key: &IdempotencyKey, claim: ClaimId) {
        if let Err(e) = self.store.release(user_id, key, claim).await {
            // The claim blocks the key until it counts as abandoned.
            tracing::warn!(error = %e, "releasing an idempotency claim failed");
        }
    }
}

fn parse_key(raw: &[u8]) -> Result<IdempotencyKey, ApiError> {
    // Bytes that are not UTF-8 are not visible ASCII either: the lossy text fails alike.
    IdempotencyKey::parse(&String::from_utf8_lossy(raw)).map_err(|e| ApiError::validation(vec![e]))
}

fn conflict(message: &str) -> ApiError {
    AppError::Conflict(message.to_owned()).into()
}

fn declared_length(req: &ServiceRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads the whole body (at most [`BODY_LIMIT`] bytes) so it can be fingerprinted; the caller
/// puts it back for the handler.
async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, ApiError> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::validation(vec![keel_domain::FieldError::new(
                "body",
                format!("could not read the body: {e}"),
            )])
        })?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// SHA-256 over the method, the path as requested and the exact body bytes.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finalize().into()
}

fn answer_early(req: ServiceRequest, reply: Reply) -> ServiceResponse<BoxBody> {
    let response = match reply {
        Reply::Error(error) => HttpResponse::from_error(error),
        Reply::Replay(stored) => replay(&stored),
    };
    // Not `req.into_response`: it would drop the error that request_context renders.
    ServiceResponse::new(req.into_parts().0, response)
}

fn replay(stored: &StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.insert_header((name, value));
        }
    }
    response.insert_header((IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true")));
    response.body(stored.body.clone())
}

#[cfg(test)]
mod tests;
