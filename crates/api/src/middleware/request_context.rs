//! One span, one log line, one metric sample and one request id per request; and the
//! place where every error response is rendered into the contract's shape.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::{Ready, ready};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use tracing::Instrument;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request id: the caller's `X-Request-Id` when it is sane, otherwise a new UUID.
/// Handlers take it as an extractor (for audit entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(Ok(
            id.unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string()))
        ))
    }
}

/// Put into a response's extensions by a handler whose error status carries a body of its
/// own contract (for example `/ready`'s 503), so it is not rendered as an error.
#[derive(Debug, Clone, Copy)]
pub struct ContractBody;

/// Accepts ids a log pipeline can carry safely: 1–128 of `A-Z a-z 0-9 - _ . :`.
fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let path = req.path().to_owned();
    // Only the request id lives on the span: every line logged while the request runs
    // carries it. The rest goes on the one line logged at the end (recording fields on a
    // span re-formats all of them).
    let span = tracing::info_span!("http_request", request_id = %request_id);

    let response = match next.call(req).instrument(span.clone()).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(error) => {
            // Handlers and extractors turn their errors into responses; an `Err` here comes
            // from a middleware. The request is gone with it (actix needs to own it
            // uniquely while routing, so it cannot be kept aside), so it is counted and
            // passed on for actix to answer.
            let status = error.as_response_error().status_code().as_u16();
            tracing::warn!(parent: &span, error = %error, status, method = %method, "request failed in a middleware");
            if let Some(state) = state {
                state
                    .metrics
                    .observe_http(method.as_str(), UNMATCHED, status, started.elapsed());
            }
            return Err(error);
        }
    };
    if let (Some(state), Some(reason)) = (&state, auth_failure_reason(&response)) {
        state.metrics.auth_failure(reason);
    }
    let mut response = if response.status().as_u16() >= 400
        && response.response().extensions().get::<ContractBody>().is_none()
    {
        render_error(response, &path, &request_id, &span)
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let route = route_of(response.request());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(parent: &span, method = %method, route = %route, status, latency_ms, "request failed");
    } else {
        tracing::info!(parent: &span, method = %method, route = %route, status, latency_ms, "request completed");
    }
    if let Some(state) = state {
        state
            .metrics
            .observe_http(method.as_str(), &route, status, elapsed);
    }
    Ok(response)
}

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// The pattern of the route that served `req` (`/api/v1/tasks/{id}`), never the raw path:
/// bounded label cardinality, no ids in logs. Routes of the table carry it as resource data
/// ([`RoutePattern`]); the few others (the document's viewer) are looked up in the router.
fn route_of(req: &HttpRequest) -> Cow<'static, str> {
    if let Some(pattern) = req.app_data::<RoutePattern>() {
        return Cow::Borrowed(pattern.0);
    }
    req.match_pattern().map_or(Cow::Borrowed(UNMATCHED), Cow::Owned)
}

/// The path pattern of a route of the table, attached to its resource where it is
/// registered (`crate::routes::configure`), so that naming a request's route costs no
/// second walk through the router.
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

/// `auth_failures_total{reason}`: the machine code of a refused authentication.
fn auth_failure_reason(response: &ServiceResponse<BoxBody>) -> Option<&'static str> {
    use keel_application::AppError;
    match response.response().error()?.as_error::<ApiError>()? {
        ApiError::App(AppError::Unauthorized) => Some("unauthorized"),
        ApiError::App(AppError::InvalidCredentials) => Some("invalid_credentials"),
        ApiError::App(AppError::TokenExpired) => Some("token_expired"),
        ApiError::App(AppError::TokenReused) => Some("token_reused"),
        ApiError::App(AppError::AccountDisabled) => Some("account_disabled"),
        _ => None,
    }
}

/// Replaces the body of an error response with the contract's error shape, keeping the
/// status and headers (`Allow`, `Retry-After`, ...). Server errors log their cause chain.
fn render_error(
    response: ServiceResponse<BoxBody>,
    path: &str,
    request_id: &str,
    span: &tracing::Span,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let error = response.response().error();
    let body = match error.and_then(|e| e.as_error::<ApiError>()) {
        Some(api_error) => {
            if status.is_server_error() {
                tracing::error!(parent: span, error = %error_chain(api_error), "server error");
            }
            ErrorBody::from_error(api_error, path, request_id)
        }
        None => {
            if status.is_server_error() {
                let cause = error.map_or_else(|| "no error attached".to_owned(), ToString::to_string);
                tracing::error!(parent: span, error = %cause, "server error");
            }
            ErrorBody::from_status(status, path, request_id)
        }
    };
    let json = serde_json::to_vec(&body)
        .unwrap_or_else(|_| br#"{"error":"internal error","code":"INTERNAL"}"#.to_vec());
    let (request, mut http_response) = response.into_parts();
    http_response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    ServiceResponse::new(request, http_response.set_body(BoxBody::new(json)))
}

/// `outer: cause: root cause`, for the logs.
pub(crate) fn error_chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_application::AppError;

    #[test]
    fn sane_request_ids_are_kept_and_others_refused() {
        assert!(is_sane_request_id("3f2b8c1e-8d4f-4c1a-9a57-2b1f0c9d7e6a"));
        assert!(is_sane_request_id("trace:abc_1.2"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("new\nline"));
        assert!(!is_sane_request_id(&"a".repeat(129)));
    }

    #[test]
    fn error_chain_walks_every_source() {
        let e = ApiError::from(AppError::internal("connection reset"));
        assert_eq!(error_chain(&e), "internal error: connection reset");
    }
}
