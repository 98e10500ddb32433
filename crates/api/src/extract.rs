//! Extractor configuration: body limits, content types and how malformed input becomes a
//! 400/413/415 in the contract's shape.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::{mime, web};
use keel_domain::FieldError;

use crate::error::ApiError;

/// A JSON body that must be an object, deserialized into `T`.
///
/// serde accepts a struct written as a JSON array (`[null, null]`), which no client of this
/// API means; every route takes its body through this extractor so that anything but an
/// object is a 400. Limits and content type come from [`json_config`].
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        // actix's own check also takes `text/json` and `*+json`, whatever the configured
        // predicate says: the media type is checked here first.
        let media_type_ok = actix_web::HttpMessage::mime_type(req)
            .ok()
            .flatten()
            .is_some_and(|mime| is_json(&mime));
        if !media_type_ok {
            return Box::pin(std::future::ready(Err(ApiError::UnsupportedMediaType.into())));
        }
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            if !value.is_object() {
                return Err(
                    ApiError::validation(vec![FieldError::new("body", "must be a JSON object")]).into(),
                );
            }
            serde_json::from_value(value)
                .map(JsonObject)
                .map_err(|e| ApiError::validation(vec![serde_field_error(&e.to_string())]).into())
        })
    }
}

/// Bodies over 1 MiB are refused with 413 (docs/api/conventions.md).
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .content_type_required(true)
        .content_type(|mime| is_json(&mime))
        .error_handler(|err, _req| json_error(err).into())
}

/// `application/json`, with at most a `charset` parameter that says UTF-8 (the only
/// encoding of JSON). Not `text/json`, not `application/*+json` and not
/// `application/json-seq`: the contract names one media type, and a body another type
/// describes may be read differently by something between the client and Keel.
fn is_json(mime: &mime::Mime) -> bool {
    mime.type_() == mime::APPLICATION
        && mime.subtype() == mime::JSON
        && mime.suffix().is_none()
        && mime
            .params()
            .all(|(name, value)| name == mime::CHARSET && value == mime::UTF_8)
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

/// The body rules through the real extractor configuration and the error-rendering
/// middleware, on a route that takes a JSON body.
#[cfg(test)]
mod http_tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};
    use serde::Deserialize;

    use super::*;
    use crate::middleware::request_context;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Signup {
        email: String,
        name: String,
    }

    async fn echo(body: JsonObject<Signup>) -> HttpResponse {
        HttpResponse::Created().json(serde_json::json!({"email": body.email}))
    }

    async fn call(content_type: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
        let app = test::init_service(
            App::new()
                .app_data(json_config())
                .wrap(from_fn(request_context))
                .route("/signup", web::post().to(echo)),
        )
        .await;
        let mut req = test::TestRequest::post().uri("/signup").set_payload(body);
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        let res = test::call_service(&app, req.to_request()).await;
        let status = res.status().as_u16();
        let body = test::read_body(res).await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[actix_web::test]
    async fn a_valid_body_is_accepted() {
        let (status, body) = call(
            Some("application/json"),
            br#"{"email":"a@b.c","name":"Al"}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(body["email"], "a@b.c");
    }

    #[actix_web::test]
    async fn malformed_json_is_a_400_with_details() {
        let (status, body) = call(Some("application/json"), br#"{"email": "#.to_vec()).await;
        assert_eq!(status, 400);
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert_eq!(body["details"][0]["field"], "body");
        assert_eq!(body["path"], "/signup");
        assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    }

    #[actix_web::test]
    async fn a_missing_or_unknown_field_is_named() {
        let (status, body) = call(Some("application/json"), br#"{"email":"a@b.c"}"#.to_vec()).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["details"][0],
            serde_json::json!({"field": "name", "message": "is required"})
        );
        let (status, body) = call(
            Some("application/json"),
            br#"{"email":"a@b.c","name":"Al","role":"admin"}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["details"][0]["field"], "role");
    }

    #[actix_web::test]
    async fn a_body_that_is_not_an_object_is_a_400() {
        for body in [
            &b"[null, null]"[..],
            b"[\"a@b.c\", \"Al\"]",
            b"\"text\"",
            b"42",
            b"null",
        ] {
            let (status, error) = call(Some("application/json"), body.to_vec()).await;
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(error["details"][0]["field"], "body");
        }
    }

    #[actix_web::test]
    async fn a_body_over_one_mebibyte_is_a_413() {
        let big = format!(r#"{{"email":"{}","name":"Al"}}"#, "a".repeat(BODY_LIMIT));
        let (status, body) = call(Some("application/json"), big.into_bytes()).await;
        assert_eq!(status, 413);
        assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    }

    #[actix_web::test]
    async fn a_body_that_is_not_json_is_a_415() {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let (status, body) = call(content_type, b"email=a@b.c".to_vec()).await;
            assert_eq!(status, 415, "{content_type:?}");
            assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
        }
    }

    #[actix_web::test]
    async fn application_json_is_accepted_with_a_utf_8_charset_and_in_any_case() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "Application/JSON",
        ] {
            let (status, _) = call(Some(ct), br#"{"email":"a@b.c","name":"Al"}"#.to_vec()).await;
            assert_eq!(status, 201, "{ct}");
        }
    }

    #[actix_web::test]
    async fn other_json_media_types_are_a_415() {
        for ct in [
            "text/json",
            "application/merge-patch+json",
            "application/vnd.api+json",
            "application/json-seq",
            "application/json; charset=latin1",
            "application/json; profile=x",
            "application/jsonx",
        ] {
            let (status, body) = call(Some(ct), br#"{"email":"a@b.c","name":"Al"}"#.to_vec()).await;
            assert_eq!(status, 415, "{ct}");
            assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
        }
    }
}
