//! The HTTP listeners: the API's (its middleware stack, routes, docs and graceful
//! shutdown) and the optional one of `/metrics` alone.

use std::net::SocketAddr;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::config::Settings;
use crate::extract::{json_config, path_config, payload_config, query_config};
use crate::listener::{self, ListenerControl};
use crate::middleware::{
    IN_FLIGHT_WAIT, InFlight, X_REQUEST_ID_HEADER, caller, close_while_draining, rate_limit, request_context,
    security_headers,
};
use crate::routes;
use crate::routes::ops::MetricsAccess;
use crate::state::AppState;

use super::*;

/// The listener of `/metrics` alone, with its port.
type MetricsListener = Option<(Server, u16)>;

/// The API's server on `settings.bind`: its middleware stack around the route table, the
/// docs, and the graceful shutdown; answers it with the address it bound.
pub(super) fn api_server(
    settings: &Settings,
    state: web::Data<AppState>,
    metrics_here: web::Data<MetricsAccess>,
    closing: watch::Sender<bool>,
    in_flight: InFlight,
) -> Result<(Server, SocketAddr), StartupError> {
    let cors_origins = settings.cors_origins.clone();
    let rate_limits_on = settings.rate_limits.enabled;
    if !rate_limits_on {
        tracing::warn!("KEEL_RATE_LIMIT_ENABLED=false: no anonymous or per-user rate limits");
    }
    let (listener, listener_control) = listener::bind(settings.bind, LISTEN_BACKLOG)?;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics_here.clone())
            .app_data(json_config())
            .app_data(payload_config())
            .app_data(query_config())
            .app_data(path_config())
            // Inside CORS and the request context: 429s get CORS headers, the request id
            // and the contract's error shape. (`Idempotency-Key` is a route middleware,
            // inside all of these: see `routes::RouteFlags`.)
            .wrap(Condition::new(rate_limits_on, from_fn(rate_limit)))
            // Who the request comes from, decided once for the limiter, idempotency, the
            // extractors and the event stream.
            .wrap(from_fn(caller))
            .wrap(cors(&cors_origins))
            .wrap(from_fn(request_context))
            .wrap(from_fn(security_headers))
            .wrap(from_fn(close_while_draining))
            .configure(routes::configure)
            .service(web::resource("/docs").route(web::get().to(docs_redirect)))
            .service(SwaggerUi::new("/docs/{_:.*}").config(SwaggerConfig::new(["/api/v1/openapi.json"])))
            .default_service(web::to(routes::not_found))
    })
    .keep_alive(settings.keep_alive)
    .client_request_timeout(settings.client_request_timeout)
    .shutdown_signal(shutdown_signal(
        closing,
        settings.shutdown_drain,
        in_flight,
        listener_control,
    ))
    .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    let server = server.listen(listener)?;
    let local = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
    Ok((server.run(), local))
}

/// Who may read `/metrics` on the API's listener, and the listener of `/metrics` alone when
/// `KEEL_METRICS_BIND` gives it one (with its port).
pub(super) fn metrics_access(
    settings: &Settings,
    state: &web::Data<AppState>,
) -> Result<(web::Data<MetricsAccess>, MetricsListener), StartupError> {
    let metrics_token = settings
        .metrics
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    let metrics_here = web::Data::new(MetricsAccess::new(
        settings.metrics.bind.is_none(),
        metrics_token.as_deref(),
    ));
    let metrics_server = match settings.metrics.bind {
        Some(address) => Some(metrics_server(
            address,
            state.clone(),
            MetricsAccess::new(true, metrics_token.as_deref()),
        )?),
        None => None,
    };
    Ok((metrics_here, metrics_server))
}

/// A server of `/metrics` alone on `address` (`KEEL_METRICS_BIND`): one worker, no signal
/// handling of its own (it stops after the API's server), errors in the contract's shape.
fn metrics_server(
    address: std::net::SocketAddr,
    state: web::Data<AppState>,
    access: MetricsAccess,
) -> Result<(Server, u16), StartupError> {
    let access = web::Data::new(access);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(access.clone())
            .wrap(from_fn(request_context))
            .wrap(from_fn(security_headers))
            .service(web::resource("/metrics").route(web::get().to(routes::ops::metrics)))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(address)?;
    let port = server
        .addrs()
        .first()
        .map(std::net::SocketAddr::port)
        .ok_or_else(|| std::io::Error::other("the metrics listener bound no address"))?;
    tracing::info!(address = %address, port, "metrics on their own listener");
    Ok((server.run(), port))
}

/// Resolves at SIGTERM or SIGINT (both shut down gracefully), after telling event streams
/// to close, draining for `drain` (a second signal cuts the drain short), refusing new
/// connections while accepting those already queued (see [`listener`]), and waiting for a
/// moment when no request is in flight (see [`InFlight`]; at most [`IN_FLIGHT_WAIT`]).
async fn shutdown_signal(
    closing: watch::Sender<bool>,
    drain: Duration,
    in_flight: InFlight,
    listener: ListenerControl,
) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    closing.send_replace(true);
    if !drain.is_zero() {
        tracing::info!(
            drain_secs = drain.as_secs(),
            "shutdown signal received: draining (not ready, connections close after each response)"
        );
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("second signal: drain cut short"),
        }
    }
    match listener.refuse_new_connections() {
        Ok(()) => tokio::time::sleep(ACCEPT_SETTLE).await,
        Err(e) => tracing::warn!(error = %e, "cannot stop new connections before closing the listener"),
    }
    if !in_flight.settled(IN_FLIGHT_WAIT).await {
        tracing::warn!(
            in_flight = in_flight.count(),
            "requests still in flight after the wait; stopping anyway"
        );
    }
    tracing::info!("stopping: no new connections, finishing in-flight requests");
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The response headers a browser client may read (lower case): every header the API
/// document declares on a response (a test checks), and the request id.
pub const EXPOSED_HEADERS: [&str; 8] = [
    "etag",
    "location",
    "retry-after",
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "idempotency-replayed",
];

/// CORS: the configured origins (none by default), plus same-origin requests (the docs
/// viewer calling its own API).
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_origin_fn(|origin, head| {
            let host = head.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_owned()));
            matches!((host, origin_host), (Some(h), Some(o)) if h == o)
        })
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            X_REQUEST_ID_HEADER,
        ])
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
