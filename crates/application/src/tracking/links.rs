//! Links on tasks: list (anyone who may read the task), add or retitle and delete (members
//! and up, who may write the task's other fields too). A task holds one link per URL:
//! posting a URL it has already sets that link's title.

use chrono::{DateTime, Utc};
use futures::TryFutureExt;
use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::{Link, LinkTitle, LinkUrl, Permission, Task};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::tasks::reach_task;
use super::views::event_data;
use super::{TrackingPorts, check, not_found_as, optional, validated};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateLinkBody {
    /// An absolute `http` or `https` URL with a host and no user name or password, at most
    /// 2048 characters as given and once normalised (`HTTPS://Example.com` is stored as
    /// `https://example.com/`). A URL the task has already sets that link's title.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "https://example.com/design",
            max_length = 2048,
            pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
        )
    )]
    pub url: String,
    /// 1–200 characters after trimming; absent or `null`: the link has no title.
    #[cfg_attr(feature = "openapi", schema(example = "Design notes"))]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkView {
    pub id: Uuid,
    pub task_id: Uuid,
    /// Normalised: `HTTPS://Example.com` reads `https://example.com/`.
    #[cfg_attr(feature = "openapi", schema(example = "https://example.com/design"))]
    pub url: String,
    pub title: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Link> for LinkView {
    fn from(l: &Link) -> Self {
        Self {
            id: l.id,
            task_id: l.task_id,
            url: l.url.as_str().to_owned(),
            title: l.title.as_ref().map(|t| t.as_str().to_owned()),
            created_by: l.created_by,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

/// The keyset position of a link: oldest first.
pub type LinkCursor = (DateTime<Utc>, Uuid);

/// What a `POST` of a link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkWrite {
    /// A new link (201).
    Created(LinkView),
    /// The task had a link with this URL: its title is now the posted one (200; unchanged
    /// when it was that already, and then nothing is recorded).
    Updated(LinkView),
}

pub async fn list_links(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    cursor: CursorRequest<LinkCursor>,
) -> Result<CursorPage<LinkView>, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::Read).await?;
    let links = ports
        .links
        .list(task.id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    let views: Vec<LinkView> = links.iter().map(LinkView::from).collect();
    CursorPage::from_rows(views, &cursor, |l| (l.created_at, l.id))
}

/// Adds a link to a task, or sets the title of the task's link with the same URL (URLs are
/// compared normalised: `HTTPS://Example.com` is `https://example.com/`). The posted body
/// is the link as it will be: no `title` (or `null`) leaves it without one.
pub async fn create_link(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    body: CreateLinkBody,
    meta: &RequestMeta,
) -> Result<LinkWrite, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::WriteTasks).await?;
    let mut errors = Vec::new();
    let url = check(&mut errors, LinkUrl::parse(&body.url));
    let title = optional(&mut errors, body.title.as_deref(), LinkTitle::parse);
    validated(errors)?;
    let Some(url) = url else {
        return Err(AppError::internal("validated input missing"));
    };
    // A create that loses a race to a create of the same URL finds that link the second time.
    for _ in 0..2 {
        if let Some(existing) = ports.links.find_by_url(task.id, url.as_str()).await? {
            return retitle(ports, principal, &task, existing, title, meta).await;
        }
        let now = ports.clock.now();
        let link = Link {
            id: Uuid::now_v7(),
            task_id: task.id,
            project_id: task.project_id,
            url: url.clone(),
            title: title.clone(),
            created_by: principal.user_id,
            created_at: now,
            updated_at: now,
        };
        let view = LinkView::from(&link);
        let change = ports
            .change(meta, principal, EventType::LinkCreated, task.project_id)
            .resource(link.id)
            .needs(Permission::WriteTasks)
            .details(details(&task, &link))
            .data(event_data(&view))
            .build();
        // `false`: a concurrent create of the same URL won (nothing written, nothing stale).
        let created = ports
            .commit(
                &change,
                ports
                    .links
                    .create(&link, &change)
                    .map_ok(|()| true)
                    .or_else(|e| async move {
                        match e {
                            StoreError::Conflict(_) => Ok(false),
                            other => Err(not_found_as("task")(other)),
                        }
                    }),
            )
            .await?;
        if created {
            return Ok(LinkWrite::Created(view));
        }
    }
    Err(AppError::Conflict(
        "the link is being changed concurrently; try again".into(),
    ))
}

/// What an audit entry of a link says: its task and the link.
fn details(task: &Task, link: &Link) -> serde_json::Value {
    json!({
        "taskId": task.id,
        "identifier": task.identifier(),
        "url": link.url.as_str(),
        "title": link.title.as_ref().map(LinkTitle::as_str),
    })
}

async fn retitle(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &Task,
    mut link: Link,
    title: Option<LinkTitle>,
    meta: &RequestMeta,
) -> Result<LinkWrite, AppError> {
    if link.title == title {
        return Ok(LinkWrite::Updated(LinkView::from(&link)));
    }
    let before = event_data(&LinkView::from(&link));
    link.title = title;
    link.updated_at = ports.clock.now();
    let view = LinkView::from(&link);
    let change = ports
        .change(meta, principal, EventType::LinkUpdated, task.project_id)
        .resource(link.id)
        .needs(Permission::WriteTasks)
        .details(details(task, &link))
        .before(before)
        .data(event_data(&view))
        .build();
    ports
        .commit(
            &change,
            ports.links.update(&link, &change).map_err(not_found_as("link")),
        )
        .await?;
    Ok(LinkWrite::Updated(view))
}

/// Deletes a task's link (members and up).
pub async fn delete_link(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    link_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::WriteTasks).await?;
    let link = ports
        .links
        .find(task.id, link_id)
        .await?
        .ok_or(AppError::NotFound("link"))?;
    let change = ports
        .change(meta, principal, EventType::LinkDeleted, task.project_id)
        .resource(link_id)
        .needs(Permission::WriteTasks)
        .details(details(&task, &link))
        .data(json!({ "id": link_id, "taskId": task.id }))
        .build();
    ports
        .commit(
            &change,
            ports
                .links
                .delete(task.id, link_id, &change)
                .map_err(not_found_as("link")),
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::{MockLinkRepository, MockTaskRepository};

    use super::super::fixtures::*;
    use super::*;

    fn tasks() -> MockTaskRepository {
        let mut tasks = MockTaskRepository::new();
        reads_task(&mut tasks, task());
        tasks
    }

    fn stored(url: &str, title: Option<&str>) -> Link {
        Link {
            id: Uuid::from_u128(0x11),
            task_id: task().id,
            project_id: PROJECT_ID,
            url: LinkUrl::parse(url).unwrap(),
            title: title.map(|t| LinkTitle::parse(t).unwrap()),
            created_by: owner().user_id,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn body(url: &str, title: Option<&str>) -> CreateLinkBody {
        CreateLinkBody {
            url: url.into(),
            title: title.map(Into::into),
        }
    }

    #[tokio::test]
    async fn members_add_links_normalised_viewers_may_not_strangers_see_nothing() {
        let mut links = MockLinkRepository::new();
        links.expect_find_by_url().returning(|_, _| Ok(None));
        links
            .expect_create()
            .withf(|l, c| {
                l.url.as_str() == "https://example.com/a"
                    && l.title.as_ref().map(LinkTitle::as_str) == Some("Spec")
                    && l.created_by == member().user_id
                    && c.audit.action == "link.created"
                    && c.event.event.data["url"] == "https://example.com/a"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            links,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let id = "KEEL-1";
        let written = create_link(
            &ports,
            &member(),
            id,
            body("HTTPS://Example.COM/a", Some(" Spec ")),
            &meta(),
        )
        .await
        .unwrap();
        assert!(matches!(written, LinkWrite::Created(ref v) if v.url == "https://example.com/a"));
        assert!(matches!(
            create_link(
                &ports,
                &viewer(),
                id,
                body("https://example.com/a", None),
                &meta()
            )
            .await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            create_link(
                &ports,
                &stranger(),
                id,
                body("https://example.com/a", None),
                &meta()
            )
            .await,
            Err(AppError::NotFound("task"))
        ));
    }

    #[tokio::test]
    async fn bad_urls_and_titles_are_refused_by_field_and_nothing_is_written() {
        let ports = Fixture {
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for (url, title, want) in [
            ("ftp://example.com/a", None, vec!["url"]),
            ("javascript:alert(1)", None, vec!["url"]),
            ("https://user:pw@example.com/", None, vec!["url"]),
            ("not a url", None, vec!["url"]),
            ("https://exa\tmple.com/", None, vec!["url"]),
            (long.as_str(), None, vec!["url"]),
            ("https://example.com/", Some("  "), vec!["title"]),
            ("file:///etc/passwd", Some("a\u{202E}b"), vec!["url", "title"]),
        ] {
            let e = create_link(&ports, &member(), "KEEL-1", body(url, title), &meta())
                .await
                .unwrap_err();
            assert_eq!(fields(e), want, "{url:?} {title:?}");
        }
    }

    #[tokio::test]
    async fn posting_a_url_the_task_has_sets_its_title_and_an_unchanged_one_records_nothing() {
        let mut links = MockLinkRepository::new();
        links
            .expect_find_by_url()
            .withf(|t, u| *t == task().id && u == "https://example.com/a")
            .returning(|_, _| Ok(Some(stored("https://example.com/a", Some("Old")))));
        links
            .expect_update()
            .withf(|l, c| {
                l.title.as_ref().map(LinkTitle::as_str) == Some("New")
                    && l.id == Uuid::from_u128(0x11)
                    && c.audit.action == "link.updated"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        links.expect_create().never();
        let ports = Fixture {
            links,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let written = create_link(
            &ports,
            &member(),
            "KEEL-1",
            body("https://EXAMPLE.com/a", Some("New")),
            &meta(),
        )
        .await
        .unwrap();
        assert!(matches!(written, LinkWrite::Updated(ref v) if v.title.as_deref() == Some("New")));
        // The same title again: no write at all (`update` is expected once).
        let same = create_link(
            &ports,
            &member(),
            "KEEL-1",
            body("https://example.com/a", Some("Old")),
            &meta(),
        )
        .await
        .unwrap();
        assert!(matches!(same, LinkWrite::Updated(ref v) if v.title.as_deref() == Some("Old")));
    }

    #[tokio::test]
    async fn a_create_that_loses_the_race_for_its_url_updates_the_winner() {
        let mut links = MockLinkRepository::new();
        let mut seq = mockall::Sequence::new();
        links
            .expect_find_by_url()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(None));
        links
            .expect_create()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Err(StoreError::Conflict("ux_task_links_task_url".into())));
        links
            .expect_find_by_url()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(Some(stored("https://example.com/a", None))));
        links.expect_update().times(1).returning(|_, _| Ok(()));
        let ports = Fixture {
            links,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let written = create_link(
            &ports,
            &member(),
            "KEEL-1",
            body("https://example.com/a", Some("Mine")),
            &meta(),
        )
        .await
        .unwrap();
        assert!(matches!(written, LinkWrite::Updated(ref v) if v.title.as_deref() == Some("Mine")));
    }

    #[tokio::test]
    async fn members_delete_links_of_the_addressed_task_only_and_viewers_list() {
        let mut links = MockLinkRepository::new();
        links.expect_find().returning(|t, l| {
            Ok((t == task().id && l == Uuid::from_u128(0x11)).then(|| stored("https://example.com/a", None)))
        });
        links
            .expect_delete()
            .withf(|t, l, c| {
                *t == task().id && *l == Uuid::from_u128(0x11) && c.audit.action == "link.deleted"
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        links
            .expect_list()
            .withf(|t, after, limit| *t == task().id && after.is_none() && *limit == 2)
            .returning(|_, _, _| {
                Ok(vec![
                    stored("https://example.com/a", None),
                    stored("https://example.com/b", None),
                ])
            });
        let ports = Fixture {
            links,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let id = task().id.to_string();
        assert!(matches!(
            delete_link(&ports, &viewer(), &id, Uuid::from_u128(0x11), &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            delete_link(&ports, &member(), &id, Uuid::from_u128(0x12), &meta()).await,
            Err(AppError::NotFound("link"))
        ));
        delete_link(&ports, &member(), &id, Uuid::from_u128(0x11), &meta())
            .await
            .unwrap();
        let page = list_links(
            &ports,
            &viewer(),
            &id,
            CursorRequest::parse(Some("1"), None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(page.data.len(), 1);
        assert!(page.pagination.next_cursor.is_some());
        assert!(matches!(
            list_links(
                &ports,
                &stranger(),
                &id,
                CursorRequest::parse(None, None).unwrap()
            )
            .await,
            Err(AppError::NotFound("task"))
        ));
    }

    #[tokio::test]
    async fn link_writes_make_nothing_stale() {
        let mut links = MockLinkRepository::new();
        links.expect_find_by_url().returning(|_, _| Ok(None));
        links.expect_create().returning(|_, _| Ok(()));
        let fixture = Fixture {
            links,
            tasks: tasks(),
            ..Fixture::default()
        };
        let cache = std::sync::Arc::clone(&fixture.cache);
        let ports = fixture.ports();
        create_link(
            &ports,
            &member(),
            "KEEL-1",
            body("https://example.com/a", None),
            &meta(),
        )
        .await
        .unwrap();
        assert!(cache.invalidated().is_empty());
    }
}
