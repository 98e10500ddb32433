//! Request extractors: the authenticated caller and the request's audit context, both read
//! from the [`Caller`] the `caller` middleware decided.
//! Handlers that need a user take [`AuthUser`]; handlers that don't, don't.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use keel_application::context::RequestMeta;
use keel_domain::identity::Principal;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::middleware::RequestId;

const MAX_USER_AGENT: usize = 512;

/// The caller, authenticated by `Authorization: Bearer <access token>` against a live
/// session (revocation is immediate): what the `caller` middleware decided for the request.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl FromRequest for AuthUser {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            Caller::of(req)
                .require()
                .map(AuthUser)
                .map_err(|e| ApiError::from(e).into()),
        )
    }
}

/// Request id, client IP and user agent, for the audit log.
#[derive(Debug, Clone)]
pub struct ClientContext(pub RequestMeta);

impl FromRequest for ClientContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        let caller = Caller::of(req);
        ready(Ok(ClientContext(RequestMeta {
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            ip: caller.ip.map(|ip| ip.to_string()),
            user_agent,
            token_id: caller.principal().and_then(|p| p.token_id()),
        })))
    }
}
