//! The general rate limits (docs/api/caching-and-limits.md, adr/0008): one limiter call per request.
//!
//! - A request whose caller is a live principal (`crate::caller`: a token whose session is
//!   active, decided once by the `caller` middleware) counts for its user against the `user`
//!   quota, whatever address it comes from; so does a personal access token's request on a
//!   route its scopes do not cover (refused later, counted all the same). A token that is
//!   forged, expired or whose session was revoked buys nothing: such a request is anonymous
//!   here.
//! - Every other request counts for its client address (`X-Forwarded-For` only from a
//!   trusted proxy) against the `anonymous` quota; IPv6 addresses count per /64, the block
//!   one subscriber usually holds.
//! - `/health`, `/ready` and `/metrics` are exempt: probes and scrapers must never be refused.
//!
//! Every other response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
//! (seconds); a refusal is a 429 `RATE_LIMITED` with `Retry-After`, answered before the
//! handler (and the idempotency middleware) runs. The login limit per address and e-mail is
//! the login use case's, on the same limiter.
//!
//! It sits inside CORS and the request context, so a 429 has CORS headers, a request id and
//! the contract's error shape.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use keel_application::AppError;
use keel_domain::rate_limit::{Quota, RateLimiter};
use keel_infrastructure::Metrics;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub use crate::error::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, insert_rate_headers};

/// Paths never limited and answered without the headers.
pub const EXEMPT_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Which quota a request counted against: the `policy` label of `rate_limit_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Anonymous,
    User,
}

impl Policy {
    pub fn label(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::User => "user",
        }
    }
}

/// The limiter and the quotas, wired at start-up (`AppState::rate_limits`).
#[derive(Clone)]
pub struct RateLimitPolicy {
    limiter: Arc<dyn RateLimiter>,
    anonymous: Quota,
    user: Quota,
}

impl std::fmt::Debug for RateLimitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitPolicy")
            .field("anonymous", &self.anonymous)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The middleware, for `App::wrap(from_fn(rate_limit))`: the state's [`RateLimitPolicy`].
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match req.app_data::<web::Data<AppState>>().cloned() {
        Some(state) => state.rate_limits.handle(req, next, Some(&state.metrics)).await,
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

impl RateLimitPolicy {
    pub fn new(limiter: Arc<dyn RateLimiter>, anonymous: Quota, user: Quota) -> Self {
        Self {
            limiter,
            anonymous,
            user,
        }
    }

    /// The middleware's work, given where to count refusals (tests wrap an app with it
    /// directly).
    pub async fn handle<B: MessageBody + 'static>(
        &self,
        req: ServiceRequest,
        next: Next<B>,
        metrics: Option<&Metrics>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        if EXEMPT_PATHS.contains(&req.path()) {
            return Ok(next.call(req).await?.map_into_boxed_body());
        }
        let (policy, key) = self.classify(&Caller::of(req.request()));
        let quota = match policy {
            Policy::Anonymous => self.anonymous,
            Policy::User => self.user,
        };
        let decision = self.limiter.hit(&key, quota).await;
        if !decision.allowed {
            if let Some(metrics) = metrics {
                metrics.rate_limit_rejection(policy.label());
            }
            // The error's response carries this decision's headers and `Retry-After`.
            let response = HttpResponse::from_error(ApiError::from(AppError::RateLimited(decision)));
            // Not `req.into_response`: it would drop the error that request_context renders.
            return Ok(ServiceResponse::new(req.into_parts().0, response));
        }
        let mut response = next.call(req).await?.map_into_boxed_body();
        // A 429 of another limit (login, password, streams) keeps that limit's figures: the
        // general quota's would say there is room while the request was refused.
        if !response.headers().contains_key(RATELIMIT_LIMIT) {
            insert_rate_headers(response.headers_mut(), &decision);
        }
        Ok(response)
    }

    /// The policy and the limiter key of a caller: `user:<id>` for a live principal, else
    /// `ip:<address>` (`ip:<prefix>/64` for IPv6, `ip:-` with no peer address).
    pub fn classify(&self, caller: &Caller) -> (Policy, String) {
        // A token's request counts against its user whether or not its scopes cover it.
        if let Some(user_id) = caller.user_id() {
            return (Policy::User, format!("user:{user_id}"));
        }
        let mut key = String::with_capacity(48);
        key.push_str("ip:");
        match caller.ip.map(client_block) {
            Some(IpAddr::V6(v6)) => {
                let _ = write!(key, "{v6}/64");
            }
            Some(IpAddr::V4(v4)) => {
                let _ = write!(key, "{v4}");
            }
            None => key.push('-'),
        }
        (Policy::Anonymous, key)
    }
}

/// The address a client is counted by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 cut to its
/// /64, since one subscriber usually holds a whole /64 and could otherwise rotate addresses.
fn client_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests;
