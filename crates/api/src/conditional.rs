//! Conditional requests (SPEC §3): `ETag` on single resources, `If-None-Match` → 304, and
//! `If-Match` on writes → 412 when the resource changed since the client read it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use keel_application::AppError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A strong entity tag, quoted as it goes on the wire: `"v7-…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// The tag of a versioned resource: changes exactly when the resource's version does.
    pub fn from_version(id: impl std::fmt::Display, version: i64) -> Self {
        let digest = Sha256::digest(format!("{id}:{version}"));
        Self(format!("\"{}\"", hex(&digest[..12])))
    }

    /// The tag of a representation: a digest of its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(format!("\"{}\"", hex(&Sha256::digest(bytes)[..12])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn opaque(&self) -> &str {
        self.0.trim_start_matches("W/")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tags listed in a conditional header; `None` when the header is absent or unreadable.
fn listed_tags(req: &HttpRequest, name: header::HeaderName) -> Option<Vec<String>> {
    let raw = req.headers().get(name)?.to_str().ok()?;
    Some(
        raw.split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

/// Whether `If-None-Match` matches `current` (weak comparison, RFC 9110 §13.1.2).
pub fn if_none_match_hits(req: &HttpRequest, current: &ETag) -> bool {
    listed_tags(req, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.iter()
            .any(|t| t == "*" || t.trim_start_matches("W/") == current.opaque())
    })
}

/// Checks `If-Match` before a write (strong comparison, RFC 9110 §13.1.1). No header means
/// an unconditional write; a stale tag is a 412.
pub fn check_if_match(req: &HttpRequest, current: &ETag) -> Result<(), ApiError> {
    match listed_tags(req, header::IF_MATCH) {
        None => Ok(()),
        Some(tags)
            if tags
                .iter()
                .any(|t| t == "*" || (!t.starts_with("W/") && t == current.as_str())) =>
        {
            Ok(())
        }
        Some(_) => Err(AppError::PreconditionFailed.into()),
    }
}

/// A 200 with the resource and its `ETag`, or a bodiless 304 when the client's copy is
/// current.
pub fn respond_with_etag<T: Serialize>(req: &HttpRequest, etag: &ETag, body: &T) -> HttpResponse {
    let not_modified = if_none_match_hits(req, etag);
    let mut response = HttpResponse::build(if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    if let Ok(tag) = HeaderValue::from_str(etag.as_str()) {
        response.insert_header((header::ETAG, tag));
    }
    if not_modified {
        response.finish()
    } else {
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn version_tags_change_with_the_version() {
        let a = ETag::from_version("task-1", 1);
        assert_eq!(a, ETag::from_version("task-1", 1));
        assert_ne!(a, ETag::from_version("task-1", 2));
        assert_ne!(a, ETag::from_version("task-2", 1));
        assert!(a.as_str().starts_with('"') && a.as_str().ends_with('"'));
    }

    #[test]
    fn if_none_match_matches_listed_weak_and_star() {
        let tag = ETag::from_bytes(b"{}");
        let listed = format!("\"nope\", W/{}", tag.as_str());
        for (header, hit) in [(listed.as_str(), true), ("*", true), ("\"nope\"", false)] {
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, header))
                .to_http_request();
            assert_eq!(if_none_match_hits(&req, &tag), hit, "{header}");
        }
        assert!(!if_none_match_hits(
            &TestRequest::default().to_http_request(),
            &tag
        ));
    }

    #[test]
    fn if_match_refuses_a_stale_or_weak_tag() {
        let current = ETag::from_version("p", 3);
        let stale = ETag::from_version("p", 2);
        let ok = |value: &str| {
            let req = TestRequest::default()
                .insert_header((header::IF_MATCH, value))
                .to_http_request();
            check_if_match(&req, &current).is_ok()
        };
        assert!(ok(current.as_str()));
        assert!(ok("*"));
        assert!(!ok(stale.as_str()));
        assert!(!ok(&format!("W/{}", current.as_str())));
        assert!(check_if_match(&TestRequest::default().to_http_request(), &current).is_ok());
    }

    #[test]
    fn respond_with_etag_answers_304_without_a_body_when_current() {
        let tag = ETag::from_version("x", 1);
        let fresh = TestRequest::default().to_http_request();
        let res = respond_with_etag(&fresh, &tag, &serde_json::json!({"a": 1}));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get(header::ETAG).unwrap(), tag.as_str());

        let cached = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, tag.as_str()))
            .to_http_request();
        let res = respond_with_etag(&cached, &tag, &serde_json::json!({"a": 1}));
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(res.headers().get(header::ETAG).unwrap(), tag.as_str());
    }
}
