//! Conditional requests (docs/api/conventions.md): `ETag` on single resources, `If-None-Match` → 304, and
//! `If-Match` on writes → 412 when the resource changed since the client read it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use keel_application::tracking::Expect;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A strong entity tag, quoted as it goes on the wire: `"7-…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// The tag of a versioned resource: `"<version>-<digest>"`. It changes when the version
    /// does, and when anything else in `seed` does (a caller's role shown in the body). The
    /// version in front lets `If-Match` become a version-guarded write ([`expected_versions`]).
    pub fn from_version(seed: impl std::fmt::Display, version: i64) -> Self {
        let digest = Sha256::digest(format!("{seed}:{version}"));
        Self(format!("\"{version}-{}\"", hex(&digest[..8])))
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

/// What `If-Match` asks of a versioned resource: no header or `*` is [`Expect::Any`]; else
/// the versions of the listed strong tags made by [`ETag::from_version`] (a weak or foreign
/// tag matches no version, so the write is refused with 412).
pub fn expected_versions(req: &HttpRequest) -> Expect {
    match listed_tags(req, header::IF_MATCH) {
        None => Expect::Any,
        Some(tags) if tags.iter().any(|t| t == "*") => Expect::Any,
        Some(tags) => Expect::OneOf(
            tags.iter()
                .filter_map(|t| t.strip_prefix('"')?.split_once('-')?.0.parse().ok())
                .collect(),
        ),
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
    fn if_match_tags_become_expected_versions() {
        let expect = |value: Option<&str>| {
            let mut req = TestRequest::default();
            if let Some(v) = value {
                req = req.insert_header((header::IF_MATCH, v));
            }
            expected_versions(&req.to_http_request())
        };
        let v3 = ETag::from_version("t", 3);
        let v4 = ETag::from_version("t", 4);
        assert!(v3.as_str().starts_with("\"3-"));
        assert_eq!(expect(None), Expect::Any);
        assert_eq!(expect(Some("*")), Expect::Any);
        assert_eq!(expect(Some(v3.as_str())), Expect::OneOf(vec![3]));
        assert_eq!(
            expect(Some(&format!("{}, {}", v3.as_str(), v4.as_str()))),
            Expect::OneOf(vec![3, 4])
        );
        assert_eq!(expect(Some(&format!("W/{}", v3.as_str()))), Expect::OneOf(vec![]));
        assert_eq!(expect(Some("\"abc\"")), Expect::OneOf(vec![]));
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
