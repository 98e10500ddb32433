//! The rate limits of docs/api/caching-and-limits.md over HTTP: the headers, the anonymous and per-user quotas, which
//! address counts, and limits shared by two instances through Redis (adr/0008).

use std::time::Duration;

use keel_tests::{TestApp, TestRedis, spawn_app, spawn_app_with, spawn_cluster};
use reqwest::StatusCode;

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn remaining(response: &reqwest::Response) -> u64 {
    header(response, "ratelimit-remaining").expect("a RateLimit-Remaining header")
}

async fn get_with(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.expect("request failed")
}

async fn rejections(app: &TestApp, policy: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let prefix = format!("rate_limit_rejections_total{{policy=\"{policy}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} sample in /metrics"))
}

#[tokio::test]
async fn api_responses_carry_the_rate_limit_headers_and_probes_do_not() {
    let app = spawn_app().await;
    let created = app
        .post_json(
            "/api/v1/auth/register",
            &serde_json::json!({"email": "ann@example.com", "password": keel_tests::PASSWORD, "name": "Ann"}),
            None,
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for response in [
        created,
        app.get("/api/v1/projects").await,
        app.get("/api/v1/no-such-route").await,
        app.get("/api/v1/openapi.json").await,
    ] {
        assert_eq!(
            header(&response, "ratelimit-limit"),
            Some(1_000_000),
            "{}",
            response.url()
        );
        assert!(header(&response, "ratelimit-remaining").is_some());
        assert!(header(&response, "ratelimit-reset").is_some_and(|s| (1..=1800).contains(&s)));
    }
    for probe in ["/health", "/ready", "/metrics"] {
        let response = app.get(probe).await;
        assert!(response.headers().get("ratelimit-limit").is_none(), "{probe}");
    }
}

#[tokio::test]
async fn the_anonymous_limit_answers_429_with_retry_after_and_the_error_shape() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "3/1m".into());
    })
    .await;
    let counts: Vec<u64> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            let response = app.get("/api/v1/auth/profile").await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "counted, then answered"
            );
            out.push(remaining(&response));
        }
        out
    };
    assert_eq!(counts, [2, 1, 0]);

    let refused = app.get("/api/v1/auth/profile").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "ratelimit-limit"), Some(3));
    assert_eq!(remaining(&refused), 0);
    let retry_after = header(&refused, "retry-after").expect("Retry-After");
    assert!((1..=80).contains(&retry_after), "{retry_after}");
    assert!(header(&refused, "ratelimit-reset").unwrap() >= retry_after);
    let request_id = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
    assert_eq!(body["path"], "/api/v1/auth/profile");
    assert_eq!(body["requestId"], request_id.as_str());
    assert!(body["error"].is_string() && body["timestamp"].is_string());

    // Every route counts against the same quota; the probes stay open.
    assert_eq!(
        app.get("/api/v1/openapi.json").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(rejections(&app, "anonymous").await, 2);
}

#[tokio::test]
async fn a_refused_request_still_has_cors_headers_and_a_request_id() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "1/1m".into());
        vars.insert("KEEL_CORS_ORIGINS".into(), "https://app.example.com".into());
    })
    .await;
    let from_the_app = || {
        app.client
            .get(app.url("/api/v1/projects"))
            .header("origin", "https://app.example.com")
            .send()
    };
    assert_eq!(from_the_app().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let refused = from_the_app().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["retry-after", "ratelimit-remaining", "x-request-id"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert!(headers.get("x-request-id").is_some());
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_user_is_counted_per_user_whatever_the_address() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_USER".into(), "3/1m".into());
        // Believe X-Forwarded-For from the test client, to come from several addresses.
        vars.insert("KEEL_TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;

    let mut seen = Vec::new();
    for address in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let response = get_with(&app, "/api/v1/auth/profile", Some(&ann.token), Some(address)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-limit"), Some(3));
        seen.push(remaining(&response));
    }
    assert_eq!(seen, [2, 1, 0]);
    let refused = get_with(
        &app,
        "/api/v1/auth/profile",
        Some(&ann.token),
        Some("198.51.100.4"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&refused, "retry-after").is_some());

    // Bob, and anonymous callers from Ann's addresses, have their own budgets.
    let response = get_with(
        &app,
        "/api/v1/auth/profile",
        Some(&bob.token),
        Some("198.51.100.1"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(remaining(&response), 2);
    let anonymous = get_with(&app, "/api/v1/projects", None, Some("198.51.100.1")).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&anonymous, "ratelimit-limit"), Some(1_000_000));
    assert_eq!(rejections(&app, "user").await, 1);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let direct = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "2/1m".into());
    })
    .await;
    // Claiming to be someone else changes nothing: all three come from 127.0.0.1.
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for spoofed in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            out.push(
                get_with(&direct, "/api/v1/projects", None, Some(spoofed))
                    .await
                    .status(),
            );
        }
        out
    };
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    let behind_proxy = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "2/1m".into());
        vars.insert("KEEL_TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await;
    for _ in 0..2 {
        let response = get_with(&behind_proxy, "/api/v1/projects", None, Some("192.0.2.1")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = get_with(&behind_proxy, "/api/v1/projects", None, Some("192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The right-most address the proxy added is the client: another client is not refused.
    let other = get_with(
        &behind_proxy,
        "/api/v1/projects",
        None,
        Some("192.0.2.1, 192.0.2.2"),
    )
    .await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(remaining(&other), 1);
}

#[tokio::test]
async fn a_refused_login_counts_as_a_login_rejection() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "1/15m".into());
    })
    .await;
    assert_eq!(
        app.login("ann@example.com", "Wrong-passw0rd").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refused = app.login("ann@example.com", "Wrong-passw0rd").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&refused, "retry-after").is_some());
    // The refusing limit's figures, not the general policy's (which has plenty left).
    assert_eq!(header(&refused, "ratelimit-limit"), Some(1));
    assert_eq!(header(&refused, "ratelimit-remaining"), Some(0));
    assert_eq!(rejections(&app, "login").await, 1);
    assert_eq!(rejections(&app, "anonymous").await, 0);
}

/// Two instances on one database and one private Redis, with a user quota of `quota`.
async fn two_instances(redis: &TestRedis, quota: &str) -> (TestApp, TestApp) {
    let url = redis.url();
    let quota = quota.to_owned();
    let mut apps = spawn_cluster(2, move |vars| {
        vars.insert("REDIS_URL".into(), url);
        vars.insert("KEEL_RATE_LIMIT_USER".into(), quota);
    })
    .await;
    let b = apps.pop().unwrap();
    let a = apps.pop().unwrap();
    (a, b)
}

#[tokio::test]
async fn a_limit_is_shared_across_two_instances() {
    let Some(redis) = TestRedis::start_private("a_limit_is_shared_across_two_instances").await else {
        return;
    };
    let (a, b) = two_instances(&redis, "6/1m").await;
    let ann = a.account("ann@example.com").await;

    let mut seen = Vec::new();
    for i in 0..6 {
        let instance = if i % 2 == 0 { &a } else { &b };
        let response = instance.get_as("/api/v1/auth/profile", &ann.token).await;
        assert_eq!(response.status(), StatusCode::OK, "request {}", i + 1);
        seen.push(remaining(&response));
    }
    assert_eq!(seen, [5, 4, 3, 2, 1, 0], "one count for both instances");
    let refused = a.get_as("/api/v1/auth/profile", &ann.token).await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the 7th, on either instance"
    );
    assert_eq!(
        b.get_as("/api/v1/auth/profile", &ann.token).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn concurrent_requests_on_two_instances_never_get_more_than_the_limit_through_leases() {
    let test = "concurrent_requests_on_two_instances_never_get_more_than_the_limit_through_leases";
    let Some(redis) = TestRedis::start_private(test).await else {
        return;
    };
    // Large enough for instances to lease more than one request at a time (adr/0014); a day,
    // so no window boundary falls inside the test (but at midnight UTC).
    let (a, b) = two_instances(&redis, "40/24h").await;
    let ann = a.account("ann@example.com").await;
    let burst = (0..120).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.get_as("/api/v1/auth/profile", &ann.token)
    });
    let responses = futures::future::join_all(burst).await;
    let mut admitted = 0;
    for response in &responses {
        match response.status() {
            StatusCode::OK => {
                admitted += 1;
                assert!(remaining(response) < 40);
            }
            StatusCode::TOO_MANY_REQUESTS => assert!(header(response, "retry-after").is_some()),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        admitted <= 40,
        "{admitted} admitted by two instances against a limit of 40"
    );

    // Once unspent leases are given back (a quarter of a second, then a sweep), what is left
    // of the limit is admitted on either instance: 40 in all, exactly. Each round waits out
    // the refusals the instances repeat locally (250 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admitted < 40 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for app in [&a, &b] {
            loop {
                let response = app.get_as("/api/v1/auth/profile", &ann.token).await;
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    break;
                }
                assert_eq!(response.status(), StatusCode::OK);
                admitted += 1;
                assert!(admitted <= 40, "more than the limit on two instances");
            }
        }
    }
    assert_eq!(admitted, 40, "the budget leased during the burst came back");
}

#[tokio::test]
async fn with_redis_down_limits_fall_back_in_process_and_are_shared_again_after_it_returns() {
    let test = "with_redis_down_limits_fall_back_in_process_and_are_shared_again_after_it_returns";
    let Some(mut redis) = TestRedis::start_private(test).await else {
        return;
    };
    let (a, b) = two_instances(&redis, "100/1m").await;
    let ann = a.account("ann@example.com").await;
    let profile = |app: &TestApp| {
        let app_url = app.url("/api/v1/auth/profile");
        let client = app.client.clone();
        let token = ann.token.clone();
        async move { client.get(app_url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(remaining(&profile(&a).await), 99);
    assert_eq!(remaining(&profile(&b).await), 98);

    redis.stop().await;
    for app in [&a, &b, &a, &b] {
        let response = profile(app).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "Redis down must not refuse requests"
        );
        assert_eq!(header(&response, "ratelimit-limit"), Some(100));
        assert!(header(&response, "ratelimit-reset").is_some());
        // Each instance counts on its own meanwhile.
        assert!(remaining(&response) >= 97);
    }

    redis.start().await;
    // Within a back-off (1 s) each instance tries Redis again. Shared again when three
    // requests on alternating instances count down one by one.
    let mut shared = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let first = remaining(&profile(&a).await);
        let second = remaining(&profile(&b).await);
        let third = remaining(&profile(&a).await);
        if second + 1 == first && third + 1 == second {
            shared = true;
            break;
        }
    }
    assert!(
        shared,
        "the instances never shared their count again after Redis returned"
    );
}

#[tokio::test]
async fn with_the_general_limits_disabled_nothing_is_counted_but_logins_still_are() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ENABLED".into(), "false".into());
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "1/1m".into());
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "1/1m".into());
    })
    .await;
    for _ in 0..3 {
        let response = app.get("/api/v1/projects").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "not 429: nothing is counted"
        );
        assert!(response.headers().get("ratelimit-limit").is_none());
    }
    let body = serde_json::json!({"email": "nobody@example.com", "password": "Wrong-passw0rd"});
    let first = app.post_json("/api/v1/auth/login", &body, None).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.post_json("/api/v1/auth/login", &body, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the login limit is the use case's and stays"
    );
}

#[tokio::test]
async fn a_token_whose_session_is_over_buys_no_user_budget() {
    // Two anonymous requests per address; users have plenty.
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_ANON".into(), "2/1m".into());
        vars.insert("KEEL_RATE_LIMIT_USER".into(), "100/1m".into());
    })
    .await;
    // The registration uses one of the address's two requests; the logout is the user's.
    let ann = app.account("ann@example.com").await;
    let logout = app
        .post_json("/api/v1/auth/logout", &serde_json::json!({}), Some(&ann.token))
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    // The second anonymous request spends the address's budget.
    assert_eq!(
        get_with(&app, "/api/v1/projects", None, None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The logged-out token still verifies as a JWT, but it is nobody's: the request counts
    // for the address, which has nothing left — for every route, login and register too.
    let revoked = get_with(&app, "/api/v1/projects", Some(&ann.token), None).await;
    assert_eq!(revoked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&revoked, "ratelimit-limit"),
        Some(2),
        "the anonymous quota"
    );
    let register = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .bearer_auth(&ann.token)
        .json(
            &serde_json::json!({"email": "eve@example.com", "password": keel_tests::PASSWORD, "name": "Eve"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        register.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a stale token buys no fresh budget for more registrations"
    );
}

#[tokio::test]
async fn a_429_carries_the_figures_of_the_limit_that_refused_it() {
    let app = spawn_app_with(|vars| {
        vars.insert("KEEL_RATE_LIMIT_LOGIN".into(), "2/1m".into());
    })
    .await;
    let body = serde_json::json!({"email": "nobody@example.com", "password": "Wrong-passw0rd"});
    for _ in 0..2 {
        let refused = app.post_json("/api/v1/auth/login", &body, None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = app.post_json("/api/v1/auth/login", &body, None).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // The login limit's quota and what is left of it — not the general quota, which still
    // has plenty left.
    assert_eq!(header(&limited, "ratelimit-limit"), Some(2));
    assert_eq!(header(&limited, "ratelimit-remaining"), Some(0));
    let retry_after = header(&limited, "retry-after").expect("Retry-After");
    assert!(header(&limited, "ratelimit-reset").is_some_and(|reset| reset >= retry_after));
}
