//! Request extractors: the authenticated caller and the request's audit context.
//! Handlers that need a user take [`AuthUser`]; handlers that don't, don't.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures::future::LocalBoxFuture;
use ipnet::IpNet;
use keel_application::AppError;
use keel_application::context::RequestMeta;
use keel_application::identity::auth::authenticate::{authenticate, authenticate_verified};
use keel_domain::identity::Principal;

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::middleware::rate_limit::VerifiedAccess;
use crate::state::AppState;

const MAX_USER_AGENT: usize = 512;

/// The caller, authenticated by `Authorization: Bearer <access token>` against a live
/// session (SPEC §4: revocation is immediate).
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Principal);

impl FromRequest for AuthUser {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        let verified = req.extensions().get::<VerifiedAccess>().copied();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::from(AppError::internal("application state missing")))?;
            let principal = match (verified, token) {
                // The rate limiter verified this request's token already.
                (Some(VerifiedAccess(claims)), Some(_)) => {
                    authenticate_verified(&state.identity, claims).await
                }
                (None, Some(token)) => authenticate(&state.identity, &token).await,
                (_, None) => Err(AppError::Unauthorized),
            }
            .map_err(ApiError::from)?;
            Ok(AuthUser(principal))
        })
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    bearer(req).map(str::to_owned)
}

/// [`bearer_token`], borrowed from the request (no allocation).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Request id, client IP and user agent, for the audit log.
#[derive(Debug, Clone)]
pub struct ClientContext(pub RequestMeta);

impl FromRequest for ClientContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trusted: &[IpNet] = req
            .app_data::<web::Data<AppState>>()
            .map_or(&[], |s| s.trusted_proxies.as_slice());
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        ready(Ok(ClientContext(RequestMeta {
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            ip: client_ip(req, trusted).map(|ip| ip.to_string()),
            user_agent,
        })))
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            return Some(peer);
        };
        if !trusted.iter().any(|net| net.contains(&ip)) {
            return Some(ip);
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn req(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(format!("{peer}:5555").parse().unwrap());
        if let Some(x) = xff {
            r = r.insert_header(("x-forwarded-for", x));
        }
        r.to_http_request()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(&req("203.0.113.9", Some("1.2.3.4")), &trusted),
            "203.0.113.9".parse().ok()
        );
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("1.2.3.4")), &trusted),
            "1.2.3.4".parse().ok()
        );
        // A client cannot spoof by prepending: the right-most untrusted hop wins.
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.0.0.7")), &trusted),
            "1.2.3.4".parse().ok()
        );
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("garbage")), &trusted),
            "10.0.0.2".parse().ok()
        );
        assert_eq!(
            client_ip(&req("10.0.0.2", None), &trusted),
            "10.0.0.2".parse().ok()
        );
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("1.2.3.4")), &[]),
            "10.0.0.2".parse().ok()
        );
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let r = |v: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, v))
                .to_http_request()
        };
        assert_eq!(bearer_token(&r("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&r("bearer  abc ")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&r("Basic abc")), None);
        assert_eq!(bearer_token(&r("Bearer ")), None);
        assert_eq!(bearer_token(&TestRequest::default().to_http_request()), None);
    }
}
