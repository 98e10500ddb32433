//! Offset and cursor (keyset) pagination, validated once here for every list route.
//!
//! Query values arrive as raw strings so that every bad value is reported by field name in
//! the 400's `details`, rather than as one opaque deserialization failure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_domain::FieldError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppError;

pub const MAX_LIMIT: u32 = 100;
/// The highest page number: the largest 32-bit signed integer, as the document states.
pub const MAX_PAGE: u32 = i32::MAX as u32;
pub const DEFAULT_PAGE_LIMIT: u32 = 20;
pub const DEFAULT_CURSOR_LIMIT: u32 = 50;
/// A cursor longer than this is refused before decoding (keys are a few dozen bytes).
const MAX_CURSOR_LEN: usize = 512;

/// A validated offset-pagination request: `page` ≥ 1, `limit` 1–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    limit: u32,
}

impl PageRequest {
    /// Parses `page` (default 1) and `limit` (default 20), reporting every bad field.
    pub fn parse(page: Option<&str>, limit: Option<&str>) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let page = parse_bounded(&mut errors, "page", page, 1, MAX_PAGE, 1);
        let limit = parse_bounded(&mut errors, "limit", limit, 1, MAX_LIMIT, DEFAULT_PAGE_LIMIT);
        if errors.is_empty() {
            Ok(Self { page, limit })
        } else {
            Err(AppError::Validation(errors))
        }
    }

    pub fn page(&self) -> u32 {
        self.page
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Rows to skip: `(page - 1) * limit`, computed without overflow.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.limit)
    }
}

/// One page of an offset-paginated list: `{"data": [...], "pagination": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub data: Vec<T>,
    pub pagination: PageInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageInfo {
    pub page: u32,
    pub limit: u32,
    pub total: u64,
    pub total_pages: u64,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>, request: PageRequest, total: u64) -> Self {
        Self {
            data,
            pagination: PageInfo {
                page: request.page,
                limit: request.limit,
                total,
                total_pages: total.div_ceil(u64::from(request.limit)),
            },
        }
    }
}

/// A validated cursor-pagination request: `limit` 1–100 (default 50) and the decoded
/// keyset position `after`, whose type each list defines (for example
/// `(created_at, id)`). The position always ends with a unique tiebreaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorRequest<K> {
    limit: u32,
    after: Option<K>,
}

impl<K: DeserializeOwned> CursorRequest<K> {
    /// Parses `limit` and the opaque `cursor`, reporting every bad field.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let limit = parse_bounded(&mut errors, "limit", limit, 1, MAX_LIMIT, DEFAULT_CURSOR_LIMIT);
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => match decode_cursor(raw) {
                Ok(key) => Some(key),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Self { limit, after })
        } else {
            Err(AppError::Validation(errors))
        }
    }
}

impl<K> CursorRequest<K> {
    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn after(&self) -> Option<&K> {
        self.after.as_ref()
    }

    /// How many rows a keyset query should fetch: one more than the page, so that the
    /// presence of a next page is known without a count.
    pub fn fetch_limit(&self) -> u64 {
        u64::from(self.limit) + 1
    }
}

/// One page of a cursor-paginated list: `{"data": [...], "pagination": {"limit", "nextCursor"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CursorPage<T> {
    pub data: Vec<T>,
    pub pagination: CursorInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CursorInfo {
    pub limit: u32,
    /// Opaque; pass it back as `cursor`. `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> CursorPage<T> {
    /// Builds a page from the rows of a keyset query that fetched
    /// [`CursorRequest::fetch_limit`] rows in the list's order; `key_of` gives a row's
    /// keyset position.
    pub fn from_rows<K: Serialize, Q>(
        mut rows: Vec<T>,
        request: &CursorRequest<Q>,
        key_of: impl Fn(&T) -> K,
    ) -> Result<Self, AppError> {
        let limit = request.limit;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if has_more => Some(encode_cursor(&key_of(last))?),
            _ => None,
        };
        Ok(Self {
            data: rows,
            pagination: CursorInfo { limit, next_cursor },
        })
    }
}

/// Encodes a keyset position as an opaque, URL-safe cursor.
pub fn encode_cursor<K: Serialize>(key: &K) -> Result<String, AppError> {
    let json = serde_json::to_vec(key).map_err(AppError::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor<K: DeserializeOwned>(raw: &str) -> Result<K, FieldError> {
    let invalid = || FieldError::new("cursor", "is not a valid cursor for this list");
    if raw.len() > MAX_CURSOR_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

fn parse_bounded(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
    min: u32,
    max: u32,
    default: u32,
) -> u32 {
    let Some(raw) = raw else { return default };
    match raw.trim().parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => v,
        _ => {
            let message = format!("must be an integer from {min} to {max}");
            errors.push(FieldError::new(field, message));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: AppError) -> Vec<String> {
        match e {
            AppError::Validation(details) => details.into_iter().map(|d| d.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn page_request_defaults_to_page_one_of_twenty() {
        let r = PageRequest::parse(None, None).unwrap();
        assert_eq!((r.page(), r.limit(), r.offset()), (1, 20, 0));
    }

    #[test]
    fn page_request_computes_the_offset() {
        let r = PageRequest::parse(Some("3"), Some("25")).unwrap();
        assert_eq!(r.offset(), 50);
    }

    #[test]
    fn page_request_offset_does_not_overflow_on_the_last_page() {
        let r = PageRequest::parse(Some(&MAX_PAGE.to_string()), Some("100")).unwrap();
        assert_eq!(r.offset(), (u64::from(MAX_PAGE) - 1) * 100);
        assert!(PageRequest::parse(Some(&(u64::from(MAX_PAGE) + 1).to_string()), None).is_err());
    }

    #[test]
    fn page_request_reports_every_bad_field() {
        for (page, limit, bad) in [
            ("0", "20", vec!["page"]),
            ("1", "0", vec!["limit"]),
            ("1", "101", vec!["limit"]),
            ("-1", "abc", vec!["page", "limit"]),
            ("1.5", "", vec!["page", "limit"]),
        ] {
            let e = PageRequest::parse(Some(page), Some(limit)).unwrap_err();
            assert_eq!(fields(e), bad, "page={page} limit={limit}");
        }
    }

    #[test]
    fn page_counts_total_pages_rounding_up() {
        let r = PageRequest::parse(Some("1"), Some("20")).unwrap();
        assert_eq!(Page::new(vec![1], r, 41).pagination.total_pages, 3);
        assert_eq!(Page::<i32>::new(vec![], r, 0).pagination.total_pages, 0);
        assert_eq!(Page::new(vec![1], r, 40).pagination.total_pages, 2);
    }

    #[test]
    fn page_serializes_in_the_contract_shape() {
        let r = PageRequest::parse(Some("2"), Some("1")).unwrap();
        let json = serde_json::to_value(Page::new(vec!["b"], r, 3)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"data": ["b"], "pagination": {"page": 2, "limit": 1, "total": 3, "totalPages": 3}})
        );
    }

    #[test]
    fn cursor_round_trips_through_its_opaque_form() {
        let key = ("2026-11-22T10:00:00Z".to_string(), 42_u64);
        let raw = encode_cursor(&key).unwrap();
        assert!(
            raw.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let r = CursorRequest::<(String, u64)>::parse(None, Some(&raw)).unwrap();
        assert_eq!(r.after(), Some(&key));
        assert_eq!(r.limit(), DEFAULT_CURSOR_LIMIT);
    }

    #[test]
    fn cursor_request_rejects_garbage_and_bad_limits_together() {
        let e = CursorRequest::<(String, u64)>::parse(Some("500"), Some("not*base64")).unwrap_err();
        assert_eq!(fields(e), vec!["limit", "cursor"]);
        let wrong_shape = encode_cursor(&"just a string").unwrap();
        let e = CursorRequest::<(String, u64)>::parse(None, Some(&wrong_shape)).unwrap_err();
        assert_eq!(fields(e), vec!["cursor"]);
        let huge = "A".repeat(MAX_CURSOR_LEN + 1);
        assert!(CursorRequest::<u64>::parse(None, Some(&huge)).is_err());
    }

    #[test]
    fn cursor_page_sets_next_cursor_only_when_more_rows_exist() {
        let req = CursorRequest::<u32>::parse(Some("2"), None).unwrap();
        assert_eq!(req.fetch_limit(), 3);

        let page = CursorPage::from_rows(vec![10, 11, 12], &req, |v| *v).unwrap();
        assert_eq!(page.data, vec![10, 11]);
        let next = page.pagination.next_cursor.expect("a next cursor");
        let follow = CursorRequest::<u32>::parse(Some("2"), Some(&next)).unwrap();
        assert_eq!(follow.after(), Some(&11));

        let last = CursorPage::from_rows(vec![12], &follow, |v| *v).unwrap();
        assert_eq!(last.data, vec![12]);
        assert_eq!(last.pagination.next_cursor, None);
    }
}
