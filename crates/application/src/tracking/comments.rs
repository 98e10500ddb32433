//! Comments on tasks: list (members), write (members and up), edit (the author), delete
//! (the author or a project admin).

use chrono::{DateTime, Utc};
use futures::TryFutureExt;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::{Comment, CommentBody, Permission};
use serde_json::json;
use uuid::Uuid;

use super::inputs::CommentBodyInput;
use super::tasks::reach_task;
use super::views::{CommentView, event_data};
use super::{Expect, TrackingPorts, not_found_as, versioned_update};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{CursorPage, CursorRequest};

/// The keyset position of a comment: oldest first.
pub type CommentCursor = (DateTime<Utc>, Uuid);

async fn load(ports: &TrackingPorts, id: Uuid) -> Result<Comment, AppError> {
    ports
        .comments
        .find(id)
        .await?
        .ok_or(AppError::NotFound("comment"))
}

fn body_of(input: &CommentBodyInput) -> Result<CommentBody, AppError> {
    CommentBody::parse(&input.body).map_err(|e| AppError::Validation(vec![e]))
}

pub async fn list_comments(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    cursor: CursorRequest<CommentCursor>,
) -> Result<CursorPage<CommentView>, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::Read).await?;
    let task_id = task.id;
    let comments = ports
        .comments
        .list(task_id, cursor.after().copied(), cursor.fetch_limit())
        .await?;
    let views: Vec<CommentView> = comments.iter().map(CommentView::from).collect();
    CursorPage::from_rows(views, &cursor, |c| (c.created_at, c.id))
}

pub async fn create_comment(
    ports: &TrackingPorts,
    principal: &Principal,
    task: &str,
    input: CommentBodyInput,
    meta: &RequestMeta,
) -> Result<CommentView, AppError> {
    let (task, _) = reach_task(ports, principal, task, Permission::WriteTasks).await?;
    let task_id = task.id;
    let body = body_of(&input)?;
    let now = ports.clock.now();
    let comment = Comment {
        id: Uuid::now_v7(),
        task_id,
        project_id: task.project_id,
        author_id: principal.user_id,
        body,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let change = ports
        .change(meta, principal, EventType::CommentCreated, task.project_id)
        .resource(comment.id)
        .needs(Permission::WriteTasks)
        .details(json!({ "taskId": task_id, "identifier": task.identifier() }))
        .data(event_data(&CommentView::from(&comment)))
        .build();
    ports
        .commit(
            &change,
            ports
                .comments
                .create(&comment, &change)
                .map_err(not_found_as("task")),
        )
        .await?;
    Ok(CommentView::from(&comment))
}

/// Edits a comment: its author only, while they may still write in the project.
pub async fn update_comment(
    ports: &TrackingPorts,
    principal: &Principal,
    id: Uuid,
    input: CommentBodyInput,
    expect: Expect,
    meta: &RequestMeta,
) -> Result<CommentView, AppError> {
    let comment = load(ports, id).await?;
    ports
        .authorize(principal, comment.project_id, Permission::WriteTasks, "comment")
        .await?;
    if comment.author_id != principal.user_id {
        return Err(AppError::Forbidden);
    }
    let body = body_of(&input)?;
    // The first attempt works on the comment just read; a retry re-reads it.
    let mut preloaded = Some(comment);
    let expect = &expect;
    versioned_update(expect, || {
        let body = body.clone();
        let preloaded = preloaded.take();
        async move {
            let mut comment = match preloaded {
                Some(comment) => comment,
                None => load(ports, id).await?,
            };
            if !expect.admits(comment.version) {
                return Err(AppError::PreconditionFailed);
            }
            if comment.body == body {
                return Ok(Some(CommentView::from(&comment)));
            }
            let expected = comment.version;
            let before = event_data(&CommentView::from(&comment));
            comment.body = body;
            comment.version += 1;
            comment.updated_at = ports.clock.now();
            let change = ports
                .change(meta, principal, EventType::CommentUpdated, comment.project_id)
                .resource(id)
                .needs(Permission::WriteTasks)
                .details(json!({ "taskId": comment.task_id }))
                .before(before)
                .data(event_data(&CommentView::from(&comment)))
                .build();
            let saved = ports
                .commit(
                    &change,
                    ports
                        .comments
                        .update(&comment, expected, &change)
                        .map_err(not_found_as("comment")),
                )
                .await?;
            Ok(saved.then(|| CommentView::from(&comment)))
        }
    })
    .await
}

/// Deletes a comment: its author (while a member who may write) or a project admin.
pub async fn delete_comment(
    ports: &TrackingPorts,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let comment = load(ports, id).await?;
    let role = ports
        .authorize(principal, comment.project_id, Permission::Read, "comment")
        .await?;
    // Its author needs to be a member who may write; anyone else, an admin.
    let needs = if comment.author_id == principal.user_id {
        Permission::WriteTasks
    } else {
        Permission::Administer
    };
    if !role.allows(needs) {
        return Err(AppError::Forbidden);
    }
    let change = ports
        .change(meta, principal, EventType::CommentDeleted, comment.project_id)
        .resource(id)
        .needs(needs)
        .details(json!({ "taskId": comment.task_id }))
        .data(json!({ "id": id, "taskId": comment.task_id }))
        .build();
    ports
        .commit(
            &change,
            ports
                .comments
                .delete(id, &change)
                .map_err(not_found_as("comment")),
        )
        .await
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::{MockCommentRepository, MockTaskRepository};

    use keel_domain::tracking::Task;

    use super::super::fixtures::*;
    use super::*;

    fn comment_by(author: Uuid) -> Comment {
        Comment {
            id: Uuid::from_u128(0xC0),
            task_id: task_fixture().id,
            project_id: PROJECT_ID,
            author_id: author,
            body: CommentBody::parse("hello").unwrap(),
            created_at: now(),
            updated_at: now(),
            version: 1,
        }
    }

    fn task_fixture() -> Task {
        super::super::fixtures::task()
    }

    fn tasks() -> MockTaskRepository {
        let mut tasks = MockTaskRepository::new();
        reads_task(&mut tasks, task_fixture());
        tasks
    }

    #[tokio::test]
    async fn members_comment_viewers_may_not_strangers_see_nothing() {
        let mut comments = MockCommentRepository::new();
        comments
            .expect_create()
            .withf(|c, a| {
                c.author_id == member().user_id
                    && c.body.as_str() == "Looks good"
                    && a.audit.action == "comment.created"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            comments,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let input = || CommentBodyInput {
            body: "Looks good".into(),
        };
        let id = &task_fixture().id.to_string();
        create_comment(&ports, &member(), id, input(), &meta())
            .await
            .unwrap();
        assert!(matches!(
            create_comment(&ports, &viewer(), id, input(), &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            create_comment(&ports, &stranger(), id, input(), &meta()).await,
            Err(AppError::NotFound("task"))
        ));
        let blank = CommentBodyInput { body: "  ".into() };
        assert_eq!(
            fields(
                create_comment(&ports, &member(), id, blank, &meta())
                    .await
                    .unwrap_err()
            ),
            vec!["body"]
        );
    }

    #[tokio::test]
    async fn only_the_author_edits_and_if_match_is_honoured() {
        let mut comments = MockCommentRepository::new();
        comments
            .expect_find()
            .returning(|_| Ok(Some(comment_by(member().user_id))));
        comments
            .expect_update()
            .withf(|c, expected, _| c.version == 2 && *expected == 1 && c.body.as_str() == "edited")
            .times(1)
            .returning(|_, _, _| Ok(true));
        let ports = Fixture {
            comments,
            ..Fixture::default()
        }
        .ports();
        let input = || CommentBodyInput {
            body: "edited".into(),
        };
        let id = Uuid::from_u128(0xC0);
        assert!(matches!(
            update_comment(&ports, &owner(), id, input(), Expect::Any, &meta()).await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            update_comment(&ports, &member(), id, input(), Expect::OneOf(vec![4]), &meta()).await,
            Err(AppError::PreconditionFailed)
        ));
        let view = update_comment(&ports, &member(), id, input(), Expect::OneOf(vec![1]), &meta())
            .await
            .unwrap();
        assert_eq!(view.body, "edited");
    }

    #[tokio::test]
    async fn authors_and_project_admins_delete() {
        let mut comments = MockCommentRepository::new();
        comments
            .expect_find()
            .returning(|_| Ok(Some(comment_by(member().user_id))));
        comments.expect_delete().times(2).returning(|_, _| Ok(()));
        let ports = Fixture {
            comments,
            ..Fixture::default()
        }
        .ports();
        let id = Uuid::from_u128(0xC0);
        assert!(matches!(
            delete_comment(&ports, &viewer(), id, &meta()).await,
            Err(AppError::Forbidden)
        ));
        delete_comment(&ports, &member(), id, &meta()).await.unwrap();
        delete_comment(&ports, &owner(), id, &meta()).await.unwrap();
        assert!(matches!(
            delete_comment(&ports, &stranger(), id, &meta()).await,
            Err(AppError::NotFound("comment"))
        ));
    }

    #[tokio::test]
    async fn list_walks_oldest_first() {
        let mut comments = MockCommentRepository::new();
        comments
            .expect_list()
            .withf(|t, after, limit| *t == task_fixture().id && after.is_none() && *limit == 2)
            .returning(|_, _, _| Ok(vec![comment_by(member().user_id), comment_by(owner().user_id)]));
        let ports = Fixture {
            comments,
            tasks: tasks(),
            ..Fixture::default()
        }
        .ports();
        let page = list_comments(
            &ports,
            &viewer(),
            &task_fixture().id.to_string(),
            CursorRequest::parse(Some("1"), None).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(page.data.len(), 1);
        assert!(page.pagination.next_cursor.is_some());
    }
}
