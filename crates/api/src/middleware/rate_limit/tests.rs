//! The middleware in front of a tiny app, on the in-process limiter. A stand-in for the
//! `caller` middleware turns `Authorization: Bearer user:<uuid>` into that user's principal
//! and any other bearer into a refused credential.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::dev::Service;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::http::header::HeaderName;
use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse};
use ipnet::IpNet;
use keel_domain::identity::{Principal, Role};
use keel_infrastructure::rate_limit::InProcessRateLimiter;
use uuid::Uuid;

use super::*;
use crate::caller::{Authentication, Refusal, bearer, client_ip};
use crate::middleware::request_context;

fn per_minute(requests: u32) -> Quota {
    Quota {
        requests,
        window: Duration::from_secs(60),
    }
}

fn token_for(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

fn principal(user_id: Uuid) -> Principal {
    Principal {
        user_id,
        session_id: Uuid::nil(),
        role: Role::User,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
        grant: None,
    }
}

/// What the `caller` middleware would decide, without a store.
fn caller_of(req: &actix_web::HttpRequest, trusted: &[IpNet]) -> Caller {
    let authentication = match bearer(req) {
        None => Authentication::Anonymous,
        Some(token) => match token.strip_prefix("user:").and_then(|id| id.parse().ok()) {
            Some(id) => Authentication::Principal(principal(id)),
            None => Authentication::Refused(Refusal::Unauthorized),
        },
    };
    Caller {
        authentication,
        ip: client_ip(req, trusted),
    }
}

fn policy(anonymous: u32, user: u32) -> RateLimitPolicy {
    RateLimitPolicy::new(
        Arc::new(InProcessRateLimiter::new()),
        per_minute(anonymous),
        per_minute(user),
    )
}

fn peer(ip: &str) -> std::net::SocketAddr {
    format!("{ip}:4000").parse().unwrap()
}

fn header_u64(response: &ServiceResponse<impl MessageBody>, name: &HeaderName) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

macro_rules! app {
    ($policy:expr, $calls:expr, $trusted:expr) => {{
        let policy = $policy;
        let trusted: Vec<IpNet> = $trusted;
        test::init_service(
            App::new()
                .app_data($calls.clone())
                .wrap(from_fn(move |req: ServiceRequest, next: Next<_>| {
                    let policy = policy.clone();
                    async move { policy.handle(req, next, None).await }
                }))
                .wrap(from_fn(move |req: ServiceRequest, next: Next<_>| {
                    let caller = caller_of(req.request(), &trusted);
                    req.extensions_mut().insert(caller);
                    async move { Ok::<_, actix_web::Error>(next.call(req).await?.map_into_boxed_body()) }
                }))
                .wrap(from_fn(request_context))
                .route("/api/v1/things", web::get().to(handler))
                .route("/health", web::get().to(handler)),
        )
        .await
    }};
}

async fn handler(calls: web::Data<AtomicUsize>) -> HttpResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().finish()
}

#[actix_web::test]
async fn every_response_counts_down_and_the_request_over_the_limit_is_a_429_before_the_handler() {
    let calls = web::Data::new(AtomicUsize::new(0));
    let app = app!(policy(3, 100), calls, vec![]);
    let request = || {
        TestRequest::get()
            .uri("/api/v1/things")
            .peer_addr(peer("203.0.113.5"))
            .to_request()
    };
    for expected in [2, 1, 0] {
        let res = test::call_service(&app, request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header_u64(&res, &RATELIMIT_LIMIT), Some(3));
        assert_eq!(header_u64(&res, &RATELIMIT_REMAINING), Some(expected));
        assert!(header_u64(&res, &RATELIMIT_RESET).is_some_and(|s| s > 60 && s <= 120));
    }
    let res = test::call_service(&app, request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_u64(&res, &RATELIMIT_REMAINING), Some(0));
    let retry_after = header_u64(&res, &header::RETRY_AFTER).unwrap();
    assert!(retry_after >= 60, "a full window must end first: {retry_after}");
    assert!(header_u64(&res, &RATELIMIT_RESET).unwrap() >= retry_after);
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["code"], "RATE_LIMITED");
    assert_eq!(body["path"], "/api/v1/things");
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the refused request never reached the handler"
    );

    // Another address has its own count; so do routes that 404.
    let res = test::call_service(
        &app,
        TestRequest::get()
            .uri("/nowhere")
            .peer_addr(peer("203.0.113.6"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(header_u64(&res, &RATELIMIT_REMAINING), Some(2));
}

#[actix_web::test]
async fn a_verified_token_counts_per_user_whatever_the_address() {
    let calls = web::Data::new(AtomicUsize::new(0));
    let ann = token_for(Uuid::new_v4());
    let bob = token_for(Uuid::new_v4());
    let app = app!(policy(1, 2), calls, vec![]);
    let get = |token: Option<&str>, ip: &str| {
        let mut req = TestRequest::get().uri("/api/v1/things").peer_addr(peer(ip));
        if let Some(token) = token {
            req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        req.to_request()
    };
    let first = test::call_service(&app, get(Some(&ann), "198.51.100.1")).await;
    assert_eq!(header_u64(&first, &RATELIMIT_LIMIT), Some(2), "the user quota");
    assert_eq!(
        test::call_service(&app, get(Some(&ann), "198.51.100.2"))
            .await
            .status(),
        StatusCode::OK
    );
    let third = test::call_service(&app, get(Some(&ann), "198.51.100.3")).await;
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "three addresses, one user"
    );
    // Bob and the anonymous caller at Ann's first address are counted apart.
    assert_eq!(
        test::call_service(&app, get(Some(&bob), "198.51.100.1"))
            .await
            .status(),
        StatusCode::OK
    );
    let anonymous = test::call_service(&app, get(None, "198.51.100.1")).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert_eq!(
        header_u64(&anonymous, &RATELIMIT_LIMIT),
        Some(1),
        "the anonymous quota"
    );
    // A token that proves nobody (forged, expired, or its session revoked) is anonymous:
    // that address has used its one request.
    let forged = test::call_service(&app, get(Some("not.a.jwt"), "198.51.100.1")).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn probes_are_never_limited_and_carry_no_headers() {
    let calls = web::Data::new(AtomicUsize::new(0));
    let app = app!(policy(1, 1), calls, vec![]);
    for _ in 0..5 {
        let res = app
            .call(
                TestRequest::get()
                    .uri("/health")
                    .peer_addr(peer("203.0.113.5"))
                    .to_request(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get(RATELIMIT_LIMIT).is_none());
    }
}

#[test]
fn addresses_come_from_forwarded_for_only_behind_trusted_proxies_and_ipv6_counts_per_64() {
    let policy = policy(1, 1);
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let key = |peer_ip: &str, xff: Option<&str>| {
        let mut req = TestRequest::default().peer_addr(peer(peer_ip));
        if let Some(xff) = xff {
            req = req.insert_header(("x-forwarded-for", xff));
        }
        policy.classify(&caller_of(&req.to_http_request(), &trusted))
    };
    assert_eq!(
        key("203.0.113.9", Some("1.2.3.4")),
        (Policy::Anonymous, "ip:203.0.113.9".to_owned())
    );
    assert_eq!(key("10.0.0.2", Some("1.2.3.4")).1, "ip:1.2.3.4");
    assert_eq!(key("10.0.0.2", None).1, "ip:10.0.0.2");
    let v6 = |ip: &str| {
        let req = TestRequest::default()
            .peer_addr(format!("[{ip}]:4000").parse().unwrap())
            .to_http_request();
        policy.classify(&caller_of(&req, &[])).1
    };
    assert_eq!(v6("2001:db8:1:2:aaaa::1"), "ip:2001:db8:1:2::/64");
    assert_eq!(v6("2001:db8:1:2:bbbb::7"), "ip:2001:db8:1:2::/64");
    assert_eq!(v6("::ffff:192.0.2.1"), "ip:192.0.2.1");
}

#[test]
fn only_a_live_principal_counts_as_a_user() {
    let policy = policy(1, 1);
    let user = Uuid::now_v7();
    let ip = Some("203.0.113.9".parse().unwrap());
    let live = Caller {
        authentication: Authentication::Principal(principal(user)),
        ip,
    };
    assert_eq!(policy.classify(&live), (Policy::User, format!("user:{user}")));
    for refusal in [
        Refusal::Unauthorized,
        Refusal::TokenExpired,
        Refusal::AccountDisabled,
        Refusal::Unavailable,
    ] {
        let refused = Caller {
            authentication: Authentication::Refused(refusal),
            ip,
        };
        assert_eq!(
            policy.classify(&refused),
            (Policy::Anonymous, "ip:203.0.113.9".to_owned()),
            "{refusal:?} buys no user budget"
        );
    }
}
