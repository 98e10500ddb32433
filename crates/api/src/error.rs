//! The HTTP side of the error model: every failure becomes the contract's error shape
//! (docs/api/conventions.md) here, in one place.
//!
//! # Policy
//! - Handlers return `Result<_, ApiError>`; `ApiError` wraps the application's
//!   [`AppError`] and adds the few failures that only HTTP knows (413, 415, 405, unknown
//!   route).
//! - [`error_mapping`] is the single table from error to status and machine code.
//! - The request-context middleware renders every response with status ≥ 400 into
//!   [`ErrorBody`], adding the path and the request id, so even errors raised by actix or a
//!   middleware reach the client in the contract's shape.
//! - 5xx bodies say only "internal error" / "service temporarily unavailable"; the cause
//!   chain is logged with the request id.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use keel_application::AppError;
use keel_domain::FieldError;
use keel_domain::rate_limit::RateDecision;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no route matches this path")]
    RouteNotFound,
}

impl ApiError {
    pub fn validation(details: Vec<FieldError>) -> Self {
        Self::App(AppError::Validation(details))
    }

    pub fn details(&self) -> &[FieldError] {
        match self {
            Self::App(AppError::Validation(details)) => details,
            _ => &[],
        }
    }
}

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` of one limit's decision.
pub fn insert_rate_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset_secs));
}

/// The single mapping from an error to its status and machine code.
pub fn error_mapping(e: &ApiError) -> (StatusCode, &'static str) {
    match e {
        ApiError::App(app) => match app {
            AppError::Validation(_) => (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            AppError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS"),
            AppError::TokenExpired => (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED"),
            AppError::TokenReused => (StatusCode::UNAUTHORIZED, "TOKEN_REUSED"),
            AppError::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AppError::AccountDisabled => (StatusCode::FORBIDDEN, "ACCOUNT_DISABLED"),
            AppError::InsufficientScope => (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE"),
            AppError::InvalidToken => (StatusCode::BAD_REQUEST, "INVALID_TOKEN"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            AppError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED"),
            AppError::Gone(_) => (StatusCode::GONE, "GONE"),
            AppError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        },
        ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
        ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
        ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
        ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

/// The code and message for an error response that did not come from an [`ApiError`]
/// (actix's own errors, a middleware's rejection): derived from the status alone.
pub fn status_mapping(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("VALIDATION_ERROR", "bad request"),
        401 => ("UNAUTHORIZED", "authentication required"),
        403 => ("FORBIDDEN", "you are not allowed to do this"),
        404 => ("NOT_FOUND", "not found"),
        405 => ("METHOD_NOT_ALLOWED", "method not allowed"),
        409 => ("CONFLICT", "conflict"),
        412 => (
            "PRECONDITION_FAILED",
            "the resource has changed since it was read",
        ),
        410 => ("GONE", "no longer kept"),
        413 => ("PAYLOAD_TOO_LARGE", "request body too large"),
        415 => ("UNSUPPORTED_MEDIA_TYPE", "request body must be application/json"),
        429 => ("RATE_LIMITED", "too many requests"),
        503 => ("UNAVAILABLE", "service temporarily unavailable"),
        _ if status.is_client_error() => ("BAD_REQUEST", "bad request"),
        _ => ("INTERNAL", "internal error"),
    }
}

/// The contract's error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "error": "request validation failed",
    "code": "VALIDATION_ERROR",
    "details": [{"field": "email", "message": "must be a valid e-mail address"}],
    "timestamp": "2026-11-22T10:00:00Z",
    "path": "/api/v1/auth/register",
    "requestId": "3f2b8c1e-8d4f-4c1a-9a57-2b1f0c9d7e6a"
}))]
pub struct ErrorBody {
    /// A human-readable message. Never contains internals.
    pub error: String,
    /// One of the machine codes of the API contract.
    #[schema(example = "VALIDATION_ERROR")]
    pub code: String,
    /// One entry per invalid field; empty for other errors.
    pub details: Vec<ErrorDetail>,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub path: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub field: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: String, code: &str, details: Vec<ErrorDetail>, path: &str, request_id: &str) -> Self {
        Self {
            error,
            code: code.to_owned(),
            details,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            path: path.to_owned(),
            request_id: request_id.to_owned(),
        }
    }

    /// The body for an [`ApiError`].
    pub fn from_error(e: &ApiError, path: &str, request_id: &str) -> Self {
        let (_, code) = error_mapping(e);
        let details = e
            .details()
            .iter()
            .map(|d| ErrorDetail {
                field: d.field.clone(),
                message: d.message.clone(),
            })
            .collect();
        Self::new(e.to_string(), code, details, path, request_id)
    }

    /// The body for an error response that carries no [`ApiError`].
    pub fn from_status(status: StatusCode, path: &str, request_id: &str) -> Self {
        let (code, message) = status_mapping(status);
        Self::new(message.to_owned(), code, Vec::new(), path, request_id)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        error_mapping(self).0
    }

    /// The response before the middleware adds the path and request id (tests that call a
    /// handler directly still see the contract's code and message).
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code()).json(ErrorBody::from_error(self, "", ""));
        if let ApiError::App(AppError::RateLimited(decision)) = self {
            // The refusing limit's own figures; the general limiter leaves them as they are.
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(decision.retry_after_secs));
            insert_rate_headers(headers, decision);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(wait: u64) -> RateDecision {
        RateDecision {
            allowed: false,
            limit: 10,
            remaining: 0,
            retry_after_secs: wait,
            reset_secs: wait,
        }
    }

    #[test]
    fn every_contract_code_has_its_status() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::validation(vec![]), 400, "VALIDATION_ERROR"),
            (AppError::Unauthorized.into(), 401, "UNAUTHORIZED"),
            (AppError::InvalidCredentials.into(), 401, "INVALID_CREDENTIALS"),
            (AppError::TokenExpired.into(), 401, "TOKEN_EXPIRED"),
            (AppError::TokenReused.into(), 401, "TOKEN_REUSED"),
            (AppError::Forbidden.into(), 403, "FORBIDDEN"),
            (AppError::AccountDisabled.into(), 403, "ACCOUNT_DISABLED"),
            (AppError::InsufficientScope.into(), 403, "INSUFFICIENT_SCOPE"),
            (AppError::NotFound("project").into(), 404, "NOT_FOUND"),
            (AppError::Conflict("taken".into()).into(), 409, "CONFLICT"),
            (AppError::PreconditionFailed.into(), 412, "PRECONDITION_FAILED"),
            (AppError::Gone("purged".into()).into(), 410, "GONE"),
            (ApiError::PayloadTooLarge { limit: 1 }, 413, "PAYLOAD_TOO_LARGE"),
            (ApiError::UnsupportedMediaType, 415, "UNSUPPORTED_MEDIA_TYPE"),
            (AppError::RateLimited(refusal(7)).into(), 429, "RATE_LIMITED"),
            (AppError::internal("boom").into(), 500, "INTERNAL"),
            (AppError::Unavailable("down".into()).into(), 503, "UNAVAILABLE"),
        ];
        for (error, status, code) in cases {
            assert_eq!(
                error_mapping(&error),
                (StatusCode::from_u16(status).unwrap(), code)
            );
        }
    }

    #[test]
    fn status_mapping_agrees_with_error_mapping_for_single_code_statuses() {
        let errors: Vec<ApiError> = vec![
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::MethodNotAllowed,
            ApiError::RouteNotFound,
            AppError::Forbidden.into(),
            AppError::PreconditionFailed.into(),
            AppError::Gone("purged".into()).into(),
            AppError::RateLimited(refusal(1)).into(),
            AppError::Unavailable("x".into()).into(),
            AppError::internal("x").into(),
        ];
        for e in errors {
            let (status, code) = error_mapping(&e);
            assert_eq!(status_mapping(status).0, code);
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let e: ApiError = AppError::internal("duplicate key value violates \"users_pkey\"").into();
        let body = ErrorBody::from_error(&e, "/api/v1/x", "rid");
        assert_eq!(body.error, "internal error");
        let json = serde_json::to_string(&body).unwrap();
        assert!(!json.contains("users_pkey"));
    }

    #[test]
    fn validation_details_are_listed_per_field() {
        let e = ApiError::validation(vec![
            FieldError::new("email", "must be a valid e-mail address"),
            FieldError::new("name", "must be 2–50 characters"),
        ]);
        let json = serde_json::to_value(ErrorBody::from_error(&e, "/p", "r")).unwrap();
        assert_eq!(json["details"][1]["field"], "name");
        assert_eq!(json["requestId"], "r");
        assert_eq!(json["code"], "VALIDATION_ERROR");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e: ApiError = AppError::RateLimited(refusal(42)).into();
        let res = e.error_response();
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "42");
        // The refusing limit's own figures, not another limit's.
        assert_eq!(res.headers().get(RATELIMIT_LIMIT).unwrap(), "10");
        assert_eq!(res.headers().get(RATELIMIT_REMAINING).unwrap(), "0");
        assert_eq!(res.headers().get(RATELIMIT_RESET).unwrap(), "42");
    }
}
