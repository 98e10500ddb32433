//! Extractor configuration: body limits, content types and how malformed input becomes a
//! 400/413/415 in the contract's shape.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::{mime, web};
use keel_domain::FieldError;

use crate::error::ApiError;

/// Bodies over 1 MiB are refused with 413 (SPEC §3).
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .content_type_required(true)
        .content_type(|mime| mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
        .error_handler(|err, _req| json_error(err).into())
}

pub fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(BODY_LIMIT)
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| query_error(&err).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| path_error(&err).into())
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => {
            ApiError::PayloadTooLarge { limit: BODY_LIMIT }
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => ApiError::validation(vec![serde_field_error(&e.to_string())]),
        other => ApiError::validation(vec![FieldError::new(
            "body",
            format!("could not read the body: {other}"),
        )]),
    }
}

fn query_error(err: &QueryPayloadError) -> ApiError {
    let message = match err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let mut detail = serde_field_error(&message);
    if detail.field == "body" {
        detail.field = "query".to_owned();
    }
    ApiError::validation(vec![detail])
}

fn path_error(err: &PathError) -> ApiError {
    let PathError::Deserialize(e) = err else {
        return ApiError::validation(vec![FieldError::new("path", err.to_string())]);
    };
    ApiError::validation(vec![FieldError::new("path", e.to_string())])
}

/// Names the field serde complained about when its message says which
/// (`missing field `email` at line 1 column 2`); otherwise the whole body.
fn serde_field_error(message: &str) -> FieldError {
    let field = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("body");
    let message = if message.starts_with("missing field") {
        "is required".to_owned()
    } else {
        message.to_owned()
    };
    FieldError::new(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        let e = serde_field_error("missing field `email` at line 1 column 2");
        assert_eq!((e.field.as_str(), e.message.as_str()), ("email", "is required"));
        let e = serde_field_error("unknown field `role`, expected one of `email`, `name`");
        assert_eq!(e.field, "role");
        let e = serde_field_error("expected value at line 1 column 1");
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("body", "expected value at line 1 column 1")
        );
    }

    #[test]
    fn body_errors_map_to_their_statuses() {
        let too_big = json_error(JsonPayloadError::OverflowKnownLength {
            length: 2 << 20,
            limit: BODY_LIMIT,
        });
        assert!(matches!(too_big, ApiError::PayloadTooLarge { .. }));
        assert!(matches!(
            json_error(JsonPayloadError::ContentType),
            ApiError::UnsupportedMediaType
        ));
    }
}
