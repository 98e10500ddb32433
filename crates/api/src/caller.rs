//! Who a request comes from, decided once per request and shared by every layer after it.
//!
//! The `caller` middleware (`crate::middleware::caller`) reads the request's credential and
//! client address, verifies the credential against a live session (one cache read, or one
//! statement when it misses) and puts the outcome in the request's extensions as a
//! [`Caller`]. The rate limiter, the idempotency middleware, the [`AuthUser`] extractor and
//! the event stream all read that one outcome: none of them parses or verifies a token again,
//! and none of them can disagree about whose a request is. A token whose session was revoked
//! is not anybody's: to the limiter such a request is anonymous, to a handler it is a 401.
//!
//! This module is a leaf: it knows the request and the application's error, nothing of the
//! state, the middleware or the routes.
//!
//! [`AuthUser`]: crate::extractors::AuthUser

use std::net::IpAddr;

use actix_web::http::{Method, header};
use actix_web::{HttpMessage, HttpRequest};
use ipnet::IpNet;
use keel_application::AppError;
use keel_domain::identity::Principal;

/// The only path whose credential may also come in the `access_token` query parameter
/// (browsers cannot set headers on a WebSocket).
pub const QUERY_TOKEN_PATH: &str = "/api/v1/events";

/// Why a presented credential proves nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, forged, or its session is over (logout, revocation, expiry).
    Unauthorized,
    TokenExpired,
    AccountDisabled,
    /// The session could not be checked (the store is down): 503, never a guess.
    Unavailable,
    /// The check failed unexpectedly (logged where it happened).
    Internal,
}

impl Refusal {
    /// The refusal an authentication error stands for.
    pub fn of(error: &AppError) -> Self {
        match error {
            AppError::TokenExpired => Self::TokenExpired,
            AppError::AccountDisabled => Self::AccountDisabled,
            AppError::Unavailable(_) => Self::Unavailable,
            AppError::Internal(_) => Self::Internal,
            _ => Self::Unauthorized,
        }
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthorized => Self::Unauthorized,
            Refusal::TokenExpired => Self::TokenExpired,
            Refusal::AccountDisabled => Self::AccountDisabled,
            Refusal::Unavailable => Self::Unavailable("the session could not be checked".into()),
            Refusal::Internal => Self::internal("the session check failed"),
        }
    }
}

/// What the request's credential proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// No credential was presented.
    Anonymous,
    /// A live principal.
    Principal(Principal),
    /// A live principal whose personal access token does not cover this request's route
    /// (its scopes): the request counts against the user's limit, and is refused with 403
    /// `INSUFFICIENT_SCOPE` by whatever needs the principal.
    OutOfScope(Principal),
    /// A credential was presented and proves nobody.
    Refused(Refusal),
}

impl Authentication {
    /// `self`, or [`Authentication::OutOfScope`] when it is a principal whose token's scopes
    /// do not cover a request with `method` to `path`: `/api/v1/admin/*` needs `admin`
    /// whatever the method, any other route `read` (or `write`) for a safe method and
    /// `write` for the others. A signed-in session is never out of scope.
    pub fn scoped(self, method: &Method, path: &str) -> Self {
        match self {
            Self::Principal(principal) => match &principal.grant {
                Some(grant) if !grant.scopes.cover(is_safe(method), is_admin_route(path)) => {
                    Self::OutOfScope(principal)
                }
                _ => Self::Principal(principal),
            },
            other => other,
        }
    }
}

/// `GET`, `HEAD` and `OPTIONS`: the methods that change nothing.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The routes only instance admins may use, which a token reaches only with `admin`.
fn is_admin_route(path: &str) -> bool {
    path.strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

const ADMIN_PREFIX: &str = "/api/v1/admin";

/// The request's caller: what its credential proved, and its client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub authentication: Authentication,
    /// The client's address ([`client_ip`]); `None` without a peer address.
    pub ip: Option<IpAddr>,
}

impl Caller {
    /// The caller the middleware decided for `req`; a request that did not go through it
    /// (a unit test's bare app) is anonymous with its peer's address.
    pub fn of(req: &HttpRequest) -> Self {
        req.extensions().get::<Self>().cloned().unwrap_or_else(|| Self {
            authentication: Authentication::Anonymous,
            ip: req.peer_addr().map(|a| a.ip()),
        })
    }

    /// The live principal, if the credential proved one that covers this request.
    pub fn principal(&self) -> Option<&Principal> {
        match &self.authentication {
            Authentication::Principal(p) => Some(p),
            _ => None,
        }
    }

    /// The user whose limits the request counts against: the principal's, whether or not
    /// its token covers the route.
    pub fn user_id(&self) -> Option<uuid::Uuid> {
        match &self.authentication {
            Authentication::Principal(p) | Authentication::OutOfScope(p) => Some(p.user_id),
            _ => None,
        }
    }

    /// The principal, or the error a route that needs one answers: 401 without a
    /// credential, the refusal's own error with one that proves nobody, 403
    /// `INSUFFICIENT_SCOPE` with a token that does not cover the route.
    pub fn require(&self) -> Result<Principal, AppError> {
        match &self.authentication {
            Authentication::Principal(p) => Ok(p.clone()),
            Authentication::OutOfScope(_) => Err(AppError::InsufficientScope),
            Authentication::Anonymous => Err(AppError::Unauthorized),
            Authentication::Refused(refusal) => Err((*refusal).into()),
        }
    }
}

/// The request's credential: the `Authorization: Bearer …` token (scheme case-insensitive),
/// or, on [`QUERY_TOKEN_PATH`] only, the `access_token` query parameter.
pub fn credential(req: &HttpRequest) -> Option<String> {
    if let Some(token) = bearer(req) {
        return Some(token.to_owned());
    }
    if req.path() == QUERY_TOKEN_PATH {
        return query_token(req.query_string());
    }
    None
}

/// The token of an `Authorization: Bearer …` header, borrowed (no allocation).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// `access_token` from a query string (percent-decoded); other parameters are ignored.
pub fn query_token(query: &str) -> Option<String> {
    actix_web::web::Query::<TokenQuery>::from_query(query)
        .ok()?
        .into_inner()
        .access_token
        .filter(|token| !token.is_empty())
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
        assert_eq!(bearer(&r("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&r("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&r("Basic abc")), None);
        assert_eq!(bearer(&r("Bearer ")), None);
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
    }

    #[test]
    fn the_query_token_counts_on_the_event_stream_only() {
        let at = |uri: &str| TestRequest::get().uri(uri).to_http_request();
        assert_eq!(
            credential(&at("/api/v1/events?access_token=abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(credential(&at("/api/v1/projects?access_token=abc")), None);
        let header = TestRequest::get()
            .uri("/api/v1/events?access_token=abc")
            .insert_header((header::AUTHORIZATION, "Bearer xyz"))
            .to_http_request();
        assert_eq!(credential(&header).as_deref(), Some("xyz"), "the header wins");
    }

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

    #[test]
    fn a_token_is_out_of_scope_where_its_scopes_do_not_reach() {
        use std::sync::Arc;

        use keel_domain::identity::Role;
        use keel_domain::identity::tokens::{Grant, Scopes};

        let principal = |scopes: Option<&[&str]>| Principal {
            user_id: uuid::Uuid::nil(),
            session_id: uuid::Uuid::nil(),
            role: Role::Admin,
            expires_at: chrono::Utc::now(),
            grant: scopes.map(|s| {
                Arc::new(Grant {
                    token_id: uuid::Uuid::nil(),
                    scopes: Scopes::parse(s).unwrap(),
                    project_ids: None,
                })
            }),
        };
        let in_scope = |scopes: Option<&[&str]>, method: Method, path: &str| {
            matches!(
                Authentication::Principal(principal(scopes)).scoped(&method, path),
                Authentication::Principal(_)
            )
        };
        let read = Some(&["read"][..]);
        let write = Some(&["write"][..]);
        let admin = Some(&["admin"][..]);
        assert!(in_scope(read, Method::GET, "/api/v1/projects"));
        assert!(in_scope(read, Method::GET, "/api/v1/events"));
        assert!(!in_scope(read, Method::POST, "/api/v1/projects"));
        assert!(!in_scope(read, Method::GET, "/api/v1/admin/users"));
        assert!(in_scope(write, Method::DELETE, "/api/v1/tasks/x"));
        assert!(!in_scope(write, Method::GET, "/api/v1/admin"));
        assert!(in_scope(admin, Method::PATCH, "/api/v1/admin/users/x"));
        assert!(!in_scope(admin, Method::GET, "/api/v1/projects"));
        assert!(
            in_scope(read, Method::GET, "/api/v1/administrators"),
            "a prefix of a word is not the admin tree"
        );
        assert!(
            in_scope(None, Method::POST, "/api/v1/admin/users"),
            "a session has no scopes to leave"
        );
        let caller = Caller {
            authentication: Authentication::Principal(principal(read))
                .scoped(&Method::POST, "/api/v1/projects"),
            ip: None,
        };
        assert!(matches!(caller.require(), Err(AppError::InsufficientScope)));
        assert_eq!(
            caller.user_id(),
            Some(uuid::Uuid::nil()),
            "counted against its user"
        );
        assert!(caller.principal().is_none(), "nothing acts for it");
    }

    #[test]
    fn a_refused_credential_answers_its_own_error_and_none_answers_401() {
        let caller = |authentication| Caller {
            authentication,
            ip: None,
        };
        assert!(matches!(
            caller(Authentication::Anonymous).require(),
            Err(AppError::Unauthorized)
        ));
        assert!(matches!(
            caller(Authentication::Refused(Refusal::TokenExpired)).require(),
            Err(AppError::TokenExpired)
        ));
        assert!(matches!(
            caller(Authentication::Refused(Refusal::AccountDisabled)).require(),
            Err(AppError::AccountDisabled)
        ));
        assert!(matches!(
            caller(Authentication::Refused(Refusal::Unavailable)).require(),
            Err(AppError::Unavailable(_))
        ));
    }
}
