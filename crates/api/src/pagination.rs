//! Query parameters of list routes, documented for OpenAPI and validated by the
//! application's pagination rules (so every bad value is reported by name).

use keel_application::identity::views::{AuditEntryView, UserMetricsView, UserView};
use keel_application::pagination::{CursorRequest, PageRequest};
use keel_application::tracking::search::SearchResultView;
use keel_application::tracking::views::{
    ActivityView, CommentView, HistoryView, LabelView, MemberView, ProjectView, RelationView, TaskView,
};
use keel_application::webhooks::{DeliveryView, WebhookView};
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

/// Names a list page for the document: `TaskPage` is `CursorPage<TaskView>` with
/// `data: TaskView[]` as a `$ref`, where the generic type would inline the item (and a
/// generated client would get a second, unrelated task type). Handlers still return the
/// generic page; a conversion checked at compile time proves the two have the same fields.
macro_rules! list_page {
    ($(#[$doc:meta])* $name:ident = Page<$item:ty>) => {
        list_page!(@define $(#[$doc])* $name, Page, $item, ::keel_application::pagination::PageInfo);
    };
    ($(#[$doc:meta])* $name:ident = CursorPage<$item:ty>) => {
        list_page!(@define $(#[$doc])* $name, CursorPage, $item, ::keel_application::pagination::CursorInfo);
    };
    (@define $(#[$doc:meta])* $name:ident, $page:ident, $item:ty, $info:ty) => {
        $(#[$doc])*
        #[derive(Debug, ::utoipa::ToSchema)]
        pub struct $name {
            pub data: Vec<$item>,
            pub pagination: $info,
        }

        impl From<::keel_application::pagination::$page<$item>> for $name {
            fn from(page: ::keel_application::pagination::$page<$item>) -> Self {
                // Exhaustive: a field added to the generic page must be added here too.
                let ::keel_application::pagination::$page { data, pagination } = page;
                Self { data, pagination }
            }
        }
    };
}

/// A resource's routes file names its own page: `crate::pagination::list_page!(MilestonePage =
/// CursorPage<MilestoneView>);` (its schema reaches the document through the annotations
/// that name it).
pub(crate) use list_page;

list_page!(
    /// One page of projects.
    ProjectPage = Page<ProjectView>
);
list_page!(
    /// One page of a project's members.
    MemberPage = Page<MemberView>
);
list_page!(
    /// One page of a project's pending invitations.
    InvitationPage = Page<keel_application::tracking::invitations::InvitationView>
);
list_page!(
    /// One page of a project's labels.
    LabelPage = Page<LabelView>
);
list_page!(
    /// One page of tasks.
    TaskPage = CursorPage<TaskView>
);
list_page!(
    /// One page of the caller's notifications.
    NotificationPage = CursorPage<keel_application::notifications::Notification>
);
list_page!(
    /// One page of a task's comments.
    CommentPage = CursorPage<CommentView>
);
list_page!(
    /// One page of a task's relations.
    RelationPage = CursorPage<RelationView>
);
list_page!(
    /// One page of a task's history, newest first.
    HistoryPage = CursorPage<HistoryView>
);
list_page!(
    /// One page of a project's activity feed.
    ActivityPage = CursorPage<ActivityView>
);
list_page!(
    /// One page of a project's webhooks.
    WebhookPage = Page<WebhookView>
);
list_page!(
    /// One page of a webhook's delivery log.
    DeliveryPage = CursorPage<DeliveryView>
);
list_page!(
    /// One page of users.
    UserPage = Page<UserView>
);
list_page!(
    /// One page of users' activity figures.
    UserMetricsPage = Page<UserMetricsView>
);
list_page!(
    /// One page of the audit log.
    AuditEntryPage = Page<AuditEntryView>
);

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
list_page!(
    /// One page of search results, best first.
    SearchResultPage = CursorPage<SearchResultView>
);
