//! The `caller` middleware: decides once per request who it comes from (`crate::caller`).
//!
//! Under `/api/` a presented credential is verified here and only here — the token's
//! signature and expiry, then its session and user through the cache (one statement on a
//! miss); a personal access token's row, secret and user the same way, and its scopes
//! against the request's method and path — and the outcome goes into the request's extensions with the client address. It
//! sits inside CORS (preflights are answered before it) and the request context (its
//! warnings carry the request id), and outside the rate limiter, which counts by its outcome.
//!
//! A safe request (GET, HEAD) runs, from here on, with its statements on one database
//! connection (`keel_infrastructure::db::Connection`): the principal's statement and the
//! resource's share it, paying one release round trip instead of one per statement. A write
//! takes its transaction's connection instead.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use keel_application::AppError;
use keel_application::identity::IdentityPorts;
use keel_application::identity::auth::authenticate::authenticate;
use keel_infrastructure::db::one_connection_per_request;

use crate::caller::{Authentication, Caller, Refusal, client_ip, credential};
use crate::state::AppState;

/// Only API routes read credentials: probes, the document and the viewer never do.
const API_PREFIX: &str = "/api/";

pub async fn caller(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        one_connection_per_request(decide(req, next)).await
    } else {
        decide(req, next).await
    }
}

async fn decide(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned() {
        let ip = client_ip(req.request(), &state.trusted_proxies);
        let authentication = match credential(req.request()) {
            Some(token) if req.path().starts_with(API_PREFIX) => resolve(&state.identity, &token)
                .await
                .scoped(req.method(), req.path()),
            _ => Authentication::Anonymous,
        };
        req.extensions_mut().insert(Caller { authentication, ip });
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// What `token` proves: a live principal, or why not.
pub async fn resolve(identity: &IdentityPorts, token: &str) -> Authentication {
    match authenticate(identity, token).await {
        Ok(principal) => Authentication::Principal(principal),
        Err(error) => {
            if matches!(error, AppError::Unavailable(_) | AppError::Internal(_)) {
                tracing::warn!(error = %error, "a credential could not be checked");
            }
            Authentication::Refused(Refusal::of(&error))
        }
    }
}
