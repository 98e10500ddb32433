//! `GET /search` (docs/api/search.md): tasks and comments of the projects the caller can
//! see, ranked, with their matched words highlighted.

use keel_domain::FieldError;
use keel_domain::identity::Principal;
use keel_domain::text::SearchTerm;
use keel_domain::tracking::search::{
    SearchHit, SearchKinds, SearchPosition, SearchQuery, SearchTerms, escape_html, highlight,
};
use keel_domain::tracking::{Permission, Scope};
use serde::Serialize;
use uuid::Uuid;

use super::views::{CommentView, TaskView};
use super::{TrackingPorts, check, validated};
use crate::AppError;
use crate::pagination::{CursorPage, CursorRequest};

/// The longest `q`, in characters as sent.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most characters of a description or a comment a highlight shows.
pub const FRAGMENT_CHARS: usize = 160;

/// Raw parameters of `GET /search`.
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    pub q: Option<String>,
    pub project_id: Option<String>,
    pub types: Option<String>,
}

/// The part of a result that matched, as an HTML fragment: matched words between `<mark>`
/// and `</mark>`, everything else HTML-escaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HighlightView {
    /// `title`, `description`, `body` (a comment's) or `identifier` (the task was found by
    /// its identifier or number).
    #[cfg_attr(feature = "openapi", schema(example = "title"))]
    pub field: &'static str,
    /// The field's text (at most 160 characters of a description or a comment, around the
    /// first match, `…` marking a cut), HTML-escaped, each matched word in `<mark>…</mark>`.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "Plan the <mark>migration</mark> of &lt;db&gt;")
    )]
    pub fragment: String,
}

/// One search result: a task, or a comment with its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResultView {
    /// `task` or `comment`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "task"))]
    pub kind: &'static str,
    /// Higher first: 100 the task named by identifier or number, 3 every word in the title,
    /// 2 in the title and description, 1 in a comment.
    pub score: i32,
    pub highlight: HighlightView,
    /// The task (for a comment, the task it is on).
    pub task: TaskView,
    /// The comment, for a result of type `comment`; `null` otherwise.
    pub comment: Option<CommentView>,
}

/// What matched in a hit, highlighted.
fn highlight_of(hit: &SearchHit, terms: &SearchTerms) -> HighlightView {
    let words = terms.folded_words();
    let task = &hit.task;
    if let Some(comment) = &hit.comment {
        return HighlightView {
            field: "body",
            fragment: highlight(comment.body.as_str(), &words, FRAGMENT_CHARS)
                .unwrap_or_else(|| escaped_start(comment.body.as_str())),
        };
    }
    if hit.score >= keel_domain::tracking::search::IDENTIFIER_SCORE {
        return HighlightView {
            field: "identifier",
            fragment: format!("<mark>{}</mark>", task.identifier()),
        };
    }
    if let Some(fragment) = highlight(task.title.as_str(), &words, usize::MAX) {
        return HighlightView {
            field: "title",
            fragment,
        };
    }
    let description = task.description.as_deref().unwrap_or_default();
    HighlightView {
        field: "description",
        fragment: highlight(description, &words, FRAGMENT_CHARS)
            .unwrap_or_else(|| escaped_start(description)),
    }
}

/// The start of `text`, escaped, for a hit whose match the highlighter cannot place (the
/// database folds a few characters differently: `ß` as `ss`).
fn escaped_start(text: &str) -> String {
    let start: String = text.chars().take(FRAGMENT_CHARS).collect();
    escape_html(&start)
}

impl SearchResultView {
    fn new(hit: &SearchHit, terms: &SearchTerms) -> Self {
        Self {
            kind: if hit.comment.is_some() { "comment" } else { "task" },
            score: hit.score,
            highlight: highlight_of(hit, terms),
            task: TaskView::from(&hit.task),
            comment: hit.comment.as_ref().map(CommentView::from),
        }
    }
}

/// The validated parameters: terms, kinds, and the project asked for.
fn parse(params: &SearchParams) -> Result<(SearchTerms, SearchKinds, Option<Uuid>), AppError> {
    let mut errors = Vec::new();
    let terms = match params.q.as_deref() {
        None => {
            errors.push(FieldError::new("q", "is required"));
            None
        }
        Some(q) => match check(&mut errors, SearchTerm::parse(q, "q", MAX_QUERY_CHARS)) {
            Some(None) => {
                errors.push(FieldError::new("q", "must not be empty"));
                None
            }
            Some(Some(term)) => Some(SearchTerms::parse(term.as_str())),
            None => None,
        },
    };
    let kinds = params
        .types
        .as_deref()
        .map(|t| check(&mut errors, SearchKinds::parse(t, "types")))
        .unwrap_or(Some(SearchKinds::default()));
    let project = params
        .project_id
        .as_deref()
        .map(|p| {
            // The hyphenated form only, as the document's format says.
            let parsed = Uuid::parse_str(p).ok().filter(|_| p.len() == 36);
            check(
                &mut errors,
                parsed.ok_or_else(|| FieldError::new("projectId", "must be a project id (UUID)")),
            )
        })
        .unwrap_or(None);
    validated(errors)?;
    match (terms, kinds) {
        (Some(terms), Some(kinds)) => Ok((terms, kinds, project)),
        _ => Err(AppError::invalid("q", "is invalid")),
    }
}

/// Searches the projects the caller can see (one of them with `projectId`): instance
/// admins every project, a personal access token only its projects.
pub async fn search(
    ports: &TrackingPorts,
    principal: &Principal,
    params: SearchParams,
    cursor: CursorRequest<SearchPosition>,
) -> Result<CursorPage<SearchResultView>, AppError> {
    let (terms, kinds, project) = parse(&params)?;
    let scope = match project {
        Some(project_id) => {
            ports
                .authorize(principal, project_id, Permission::Read, "project")
                .await?;
            Scope::Project(project_id)
        }
        None if principal.is_admin() => Scope::All,
        None => Scope::MemberOf(principal.user_id),
    };
    let hits = if terms.is_empty() {
        // Only separators (`"*:`): no word to look for.
        Vec::new()
    } else {
        let query = SearchQuery {
            scope,
            projects: principal.project_limit().map(<[Uuid]>::to_vec),
            terms: terms.clone(),
            kinds,
            after: cursor.after().copied(),
            limit: cursor.fetch_limit(),
        };
        ports.search.search(&query).await?
    };
    let page = CursorPage::from_rows(hits, &cursor, SearchHit::position)?;
    Ok(CursorPage {
        data: page
            .data
            .iter()
            .map(|hit| SearchResultView::new(hit, &terms))
            .collect(),
        pagination: page.pagination,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_domain::identity::tokens::Grant;
    use keel_domain::tracking::search::{COMMENT_SCORE, IDENTIFIER_SCORE, MockSearchIndex, TITLE_SCORE};
    use keel_domain::tracking::{Comment, CommentBody, TaskTitle};

    use super::*;
    use crate::tracking::fixtures::{Fixture, PROJECT_ID, admin, fields, member, now, stranger, task};

    fn params(q: &str) -> SearchParams {
        SearchParams {
            q: Some(q.to_owned()),
            ..SearchParams::default()
        }
    }

    fn first_page() -> CursorRequest<SearchPosition> {
        CursorRequest::parse(Some("2"), None).unwrap()
    }

    /// Ports whose index expects one query matching `expected` and answers `hits`.
    fn ports_expecting(
        expected: impl Fn(&SearchQuery) -> bool + Send + 'static,
        hits: Vec<SearchHit>,
    ) -> TrackingPorts {
        let mut index = MockSearchIndex::new();
        index
            .expect_search()
            .withf(move |q| expected(q))
            .times(1)
            .returning(move |_| Ok(hits.clone()));
        let mut ports = Fixture::default().ports();
        ports.search = Arc::new(index);
        ports
    }

    fn no_search() -> TrackingPorts {
        let mut index = MockSearchIndex::new();
        index.expect_search().never();
        let mut ports = Fixture::default().ports();
        ports.search = Arc::new(index);
        ports
    }

    #[tokio::test]
    async fn a_member_searches_the_projects_they_belong_to_and_an_admin_every_project() {
        let me = member().user_id;
        let ports = ports_expecting(
            move |q| q.scope == Scope::MemberOf(me) && q.projects.is_none(),
            vec![],
        );
        search(&ports, &member(), params("migr"), first_page())
            .await
            .unwrap();
        let ports = ports_expecting(|q| q.scope == Scope::All, vec![]);
        search(&ports, &admin(), params("migr"), first_page())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_tokens_project_limit_goes_into_the_query() {
        let mut limited = member();
        limited.grant = Some(Arc::new(Grant {
            token_id: uuid::Uuid::from_u128(77),
            scopes: keel_domain::identity::tokens::Scopes::parse(&["read"]).unwrap(),
            project_ids: Some(vec![PROJECT_ID]),
        }));
        let ports = ports_expecting(|q| q.projects.as_deref() == Some(&[PROJECT_ID][..]), vec![]);
        search(&ports, &limited, params("migr"), first_page())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_project_the_caller_cannot_see_is_a_404_before_any_search() {
        let mut asked = params("migr");
        asked.project_id = Some(PROJECT_ID.to_string());
        let e = search(&no_search(), &stranger(), asked.clone(), first_page())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::NotFound("project")), "{e:?}");
        let ports = ports_expecting(|q| q.scope == Scope::Project(PROJECT_ID), vec![]);
        search(&ports, &member(), asked, first_page()).await.unwrap();
    }

    #[tokio::test]
    async fn the_query_carries_the_words_the_identifier_the_kinds_and_the_page() {
        let ports = ports_expecting(
            |q| {
                q.terms.words == ["keel", "12"]
                    && q.terms.identifier.as_ref().map(|(k, n)| (k.as_str(), *n)) == Some(("KEEL", 12))
                    && q.kinds == SearchKinds::default()
                    && q.limit == 3
                    && q.after.is_none()
            },
            vec![],
        );
        search(&ports, &member(), params(" keel-12 "), first_page())
            .await
            .unwrap();
        let ports = ports_expecting(
            |q| {
                q.terms.number == Some(7)
                    && q.kinds
                        == SearchKinds {
                            tasks: false,
                            comments: true,
                        }
            },
            vec![],
        );
        let mut comments = params("7");
        comments.types = Some("comment".into());
        search(&ports, &member(), comments, first_page()).await.unwrap();
    }

    #[tokio::test]
    async fn bad_parameters_are_400s_by_field_and_search_nothing() {
        for (bad, field) in [
            (SearchParams::default(), "q"),
            (params("   "), "q"),
            (params(&"x".repeat(201)), "q"),
            (params("a\0b"), "q"),
            (
                SearchParams {
                    types: Some("tasks".into()),
                    ..params("x")
                },
                "types",
            ),
            (
                SearchParams {
                    project_id: Some("nope".into()),
                    ..params("x")
                },
                "projectId",
            ),
        ] {
            let e = search(&no_search(), &member(), bad.clone(), first_page())
                .await
                .unwrap_err();
            assert_eq!(fields(e), [field], "{bad:?}");
        }
    }

    #[tokio::test]
    async fn syntax_alone_is_an_empty_page_without_a_query() {
        let page = search(&no_search(), &member(), params(r#""*:()-'\"#), first_page())
            .await
            .unwrap();
        assert!(page.data.is_empty() && page.pagination.next_cursor.is_none());
    }

    #[tokio::test]
    async fn results_keep_the_stores_order_with_highlights_and_a_cursor_past_the_last() {
        let mut titled = task();
        titled.title = TaskTitle::parse("Plan the <db> migration").unwrap();
        let mut named = task();
        named.id = uuid::Uuid::from_u128(0xCCCC);
        named.number = 12;
        let comment = Comment {
            id: uuid::Uuid::from_u128(0xDDDD),
            task_id: titled.id,
            project_id: PROJECT_ID,
            author_id: member().user_id,
            body: CommentBody::parse("Migrating tomorrow").unwrap(),
            created_at: now(),
            updated_at: now(),
            version: 1,
        };
        let hits = vec![
            SearchHit {
                score: IDENTIFIER_SCORE,
                task: named,
                comment: None,
            },
            SearchHit {
                score: TITLE_SCORE,
                task: titled.clone(),
                comment: None,
            },
            SearchHit {
                score: COMMENT_SCORE,
                task: titled,
                comment: Some(comment),
            },
        ];
        let ports = ports_expecting(|_| true, hits.clone());
        let page = search(&ports, &member(), params("migr"), first_page())
            .await
            .unwrap();
        let shown: Vec<(&str, i32, &str, &str)> = page
            .data
            .iter()
            .map(|r| (r.kind, r.score, r.highlight.field, r.highlight.fragment.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("task", 100, "identifier", "<mark>KEEL-12</mark>"),
                ("task", 3, "title", "Plan the &lt;db&gt; <mark>migration</mark>"),
            ]
        );
        let next = page.pagination.next_cursor.unwrap();
        let again: CursorRequest<SearchPosition> = CursorRequest::parse(None, Some(&next)).unwrap();
        assert_eq!(again.after(), Some(&hits[1].position()));
        let comment = SearchResultView::new(&hits[2], &SearchTerms::parse("migr"));
        assert_eq!(
            (comment.kind, comment.highlight.fragment.as_str()),
            ("comment", "<mark>Migrating</mark> tomorrow")
        );
        assert!(comment.comment.is_some());
    }
}
