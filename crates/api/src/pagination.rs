//! Query parameters of list routes, documented for OpenAPI and validated by the
//! application's pagination rules (so every bad value is reported by name).

use keel_application::pagination::{CursorRequest, PageRequest};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::ApiError;

/// `page` ≥ 1 (default 1) and `limit` 1–100 (default 20).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    #[param(value_type = Option<i32>, minimum = 1, maximum = 2_147_483_647)]
    pub page: Option<String>,
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

impl PageParams {
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(self.page.as_deref(), self.limit.as_deref())?)
    }
}

/// `limit` 1–100 (default 50) and the opaque `cursor` of the previous page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CursorParams {
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `pagination.nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl CursorParams {
    pub fn validate<K: DeserializeOwned>(&self) -> Result<CursorRequest<K>, ApiError> {
        Ok(CursorRequest::parse(
            self.limit.as_deref(),
            self.cursor.as_deref(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::web::Query;

    use super::*;

    #[test]
    fn page_params_from_a_query_string() {
        let q = Query::<PageParams>::from_query("page=2&limit=5").unwrap();
        let r = q.validate().unwrap();
        assert_eq!((r.page(), r.limit()), (2, 5));
        let q = Query::<PageParams>::from_query("page=0&limit=1000").unwrap();
        let err = q.validate().unwrap_err();
        let fields: Vec<_> = err.details().iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["page", "limit"]);
    }

    #[test]
    fn cursor_params_reject_a_forged_cursor() {
        let q = Query::<CursorParams>::from_query("cursor=%21%21").unwrap();
        assert!(q.validate::<(String, u64)>().is_err());
        let q = Query::<CursorParams>::from_query("limit=7").unwrap();
        assert_eq!(q.validate::<u64>().unwrap().limit(), 7);
    }
}
