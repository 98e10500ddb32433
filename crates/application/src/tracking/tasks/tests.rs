//! Unit tests of the task use cases.

use keel_domain::events::EventType;
use keel_domain::tracking::ports::NewTask;
use keel_domain::tracking::ports::{MockLabelRepository, MockRelationRepository, MockTaskRepository};
use keel_domain::tracking::{
    ArchivedFilter, AssigneeFilter, Color, Label, Priority, Scope, SortValue, StateCategory, StateKey,
    TaskPosition, TaskSort, TaskSortKey,
};
use serde_json::json;

use super::super::fixtures::*;
use super::super::inputs::{CreateTaskBody, TaskListQuery, UpdateTaskBody};
use super::super::{Expect, TrackingPorts};
use super::list::label_filter;
use super::*;
use crate::pagination::{CursorRequest, encode_cursor};

/// `update_task` of the fixture's task by `who`.
async fn update_as(
    ports: &TrackingPorts,
    who: &Principal,
    body: UpdateTaskBody,
    expect: Expect,
) -> Result<TaskView, AppError> {
    update_task(ports, who, &task().id.to_string(), body, expect, &meta()).await
}

fn label(name: &str) -> Label {
    Label {
        id: Uuid::now_v7(),
        project_id: PROJECT_ID,
        name: LabelName::parse(name).unwrap(),
        color: Color::parse("#000000").unwrap(),
        created_at: now(),
    }
}

fn labels_known(names: &'static [&'static str]) -> MockLabelRepository {
    let mut labels = MockLabelRepository::new();
    labels.expect_find_by_names().returning(move |_, wanted| {
        Ok(wanted
            .iter()
            .filter(|w| names.contains(&w.as_str()))
            .map(|w| label(w.as_str()))
            .collect())
    });
    labels
}

fn stored(mut new: NewTask, number: i64) -> Task {
    new.task.number = number;
    new.task
}

#[tokio::test]
async fn create_validates_references_and_stores_with_labels() {
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_create()
        .withf(|n, a, data| {
            // The event shows the number the store hands out, as the API shows it.
            let shown = data(&stored(n.clone(), 7));
            n.task.title.as_str() == "Ship it"
                && n.label_ids.len() == 1
                && n.task.status.as_str() == "done"
                && n.task.status_category == StateCategory::Completed
                && n.task.completed_at == Some(now())
                && a.audit.action == "task.created"
                && a.event.event.event_type == EventType::TaskCreated
                && a.event.event.id == a.audit.id
                && shown["identifier"] == "KEEL-7"
                && shown["labels"] == json!(["bug"])
        })
        .times(1)
        .returning(|n, _, _| Ok(stored(n.clone(), 7)));
    let ports = Fixture {
        tasks,
        labels: labels_known(&["bug"]),
        ..Fixture::default()
    }
    .ports();
    let body = CreateTaskBody {
        title: "Ship it".into(),
        status: Some("done".into()),
        priority: Some(1),
        labels: Some(vec!["bug".into(), "bug".into()]),
        assignee_id: Some(viewer().user_id),
        ..Default::default()
    };
    let view = create_task(&ports, &member(), PROJECT_ID, body, &meta())
        .await
        .unwrap();
    assert_eq!(
        (view.identifier.as_str(), view.priority, view.labels.clone()),
        ("KEEL-7", 1, vec!["bug".to_owned()])
    );
}

#[tokio::test]
async fn create_refuses_strangers_viewers_bad_fields_and_unknown_references() {
    let ports = Fixture {
        labels: labels_known(&["bug"]),
        ..Fixture::default()
    }
    .ports();
    let ok = || CreateTaskBody {
        title: "t".into(),
        ..Default::default()
    };
    assert!(matches!(
        create_task(&ports, &stranger(), PROJECT_ID, ok(), &meta()).await,
        Err(AppError::NotFound("project"))
    ));
    assert!(matches!(
        create_task(&ports, &viewer(), PROJECT_ID, ok(), &meta()).await,
        Err(AppError::Forbidden)
    ));
    let bad = CreateTaskBody {
        title: " ".into(),
        status: Some("open".into()),
        priority: Some(5),
        due_date: Some("2026-13-01".into()),
        ..Default::default()
    };
    assert_eq!(
        fields(
            create_task(&ports, &member(), PROJECT_ID, bad, &meta())
                .await
                .unwrap_err()
        ),
        vec!["title", "status", "priority", "dueDate"]
    );
    let refs = CreateTaskBody {
        title: "t".into(),
        assignee_id: Some(stranger().user_id),
        labels: Some(vec!["bug".into(), "nope".into()]),
        ..Default::default()
    };
    let e = create_task(&ports, &member(), PROJECT_ID, refs, &meta())
        .await
        .unwrap_err();
    let AppError::Validation(details) = e else {
        panic!()
    };
    assert_eq!(details[0].field, "assigneeId");
    assert_eq!(
        (details[1].field.as_str(), details[1].message.as_str()),
        ("labels", "unknown in this project: nope")
    );
}

#[tokio::test]
async fn get_accepts_an_id_or_an_identifier_and_hides_other_projects() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    assert_eq!(
        get_task(&ports, &viewer(), &task().id.to_string())
            .await
            .unwrap()
            .number,
        1
    );
    assert_eq!(get_task(&ports, &viewer(), "keel-1").await.unwrap().id, task().id);
    assert!(matches!(
        get_task(&ports, &viewer(), "nonsense").await,
        Err(AppError::NotFound("task"))
    ));
    assert!(matches!(
        get_task(&ports, &stranger(), "KEEL-1").await,
        Err(AppError::NotFound("task"))
    ));
}

#[tokio::test]
async fn update_moves_status_bumps_version_and_keeps_unsent_fields() {
    let mut tasks = MockTaskRepository::new();
    tasks.expect_find().returning(|_| Ok(Some(task())));
    reads_task(&mut tasks, task());
    tasks
        .expect_update()
        .withf(|t, labels, expected, a| {
            t.version == 2
                && *expected == 1
                && t.status.as_str() == "done"
                && t.status_category == StateCategory::Completed
                && t.completed_at == Some(now())
                && t.title.as_str() == "First"
                && labels.is_none()
                && a.audit.details.as_ref().unwrap()["changed"] == json!(["status"])
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let body = UpdateTaskBody {
        status: Some("done".into()),
        ..Default::default()
    };
    let view = update_as(&ports, &member(), body, Expect::OneOf(vec![1]))
        .await
        .unwrap();
    assert_eq!(
        (view.version, view.status.as_str(), view.status_category),
        (2, "done", "completed")
    );
}

#[tokio::test]
async fn update_is_412_on_a_stale_version_and_403_for_viewers() {
    let mut tasks = MockTaskRepository::new();
    tasks.expect_find().returning(|_| Ok(Some(task())));
    reads_task(&mut tasks, task());
    tasks.expect_update().returning(|_, _, _, _| Ok(false));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let body = || UpdateTaskBody {
        title: Some("New".into()),
        ..Default::default()
    };
    assert!(matches!(
        update_as(&ports, &member(), body(), Expect::OneOf(vec![3])).await,
        Err(AppError::PreconditionFailed)
    ));
    assert!(
        matches!(
            update_as(&ports, &member(), body(), Expect::OneOf(vec![1])).await,
            Err(AppError::PreconditionFailed)
        ),
        "lost the race after the check"
    );
    assert!(matches!(
        update_as(&ports, &viewer(), body(), Expect::Any).await,
        Err(AppError::Forbidden)
    ));
}

#[tokio::test]
async fn update_can_clear_assignee_and_replace_labels() {
    let mut tasks = MockTaskRepository::new();
    let mut assigned = task();
    assigned.assignee_id = Some(member().user_id);
    reads_task(&mut tasks, assigned.clone());
    tasks.expect_find().returning(move |_| Ok(Some(assigned.clone())));
    tasks
        .expect_update()
        .withf(|t, labels, _, _| {
            t.assignee_id.is_none() && labels.is_some_and(|l| l.len() == 1) && t.labels.len() == 1
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let ports = Fixture {
        tasks,
        labels: labels_known(&["ui"]),
        ..Fixture::default()
    }
    .ports();
    let body = UpdateTaskBody {
        assignee_id: Some(None),
        labels: Some(vec!["ui".into()]),
        ..Default::default()
    };
    let view = update_as(&ports, &member(), body, Expect::Any).await.unwrap();
    assert_eq!(view.assignee_id, None);
}

#[tokio::test]
async fn lists_parse_every_filter_and_scope_by_membership() {
    let mut tasks = MockTaskRepository::new();
    let me = member().user_id;
    tasks
        .expect_list()
        .withf(move |q| {
            q.scope == Scope::MemberOf(me)
                && q.filter.statuses == vec![key("todo"), key("done")]
                && q.filter.priorities.iter().map(|p| p.value()).collect::<Vec<_>>() == vec![1, 0]
                && q.filter.assignee == Some(AssigneeFilter::User(me))
                && q.filter.labels.len() == 2
                && q.filter.q.as_deref() == Some("fix")
                && q.filter.updated_since.is_some()
                && q.filter.archived == ArchivedFilter::Include
                && q.filter.blocked == Some(false)
                && q.sort
                    == TaskSort {
                        key: TaskSortKey::Priority,
                        descending: false,
                    }
                && q.limit == 51
        })
        .times(1)
        .returning(|_| Ok(vec![task()]));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let query = TaskListQuery {
        category: None,
        status: Some("todo,done".into()),
        priority: Some("1,0".into()),
        assignee: Some("me".into()),
        label: Some("bug, ui".into()),
        q: Some(" fix ".into()),
        updated_since: Some("2026-11-01T00:00:00Z".into()),
        sort: Some("priority".into()),
        archived: Some("include".into()),
        blocked: Some("false".into()),
        parent: None,
    };
    let page = list_tasks(
        &ports,
        &member(),
        query,
        CursorRequest::parse(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.pagination.next_cursor, None);
}

#[tokio::test]
async fn lists_report_every_bad_filter() {
    let ports = Fixture::default().ports();
    let query = TaskListQuery {
        category: None,
        status: Some("todo,,".into()),
        priority: Some("+1".into()),
        assignee: Some("{00000000-0000-0000-0000-000000000000}".into()),
        label: Some(" ".into()),
        q: Some("x".repeat(201)),
        updated_since: Some("yesterday".into()),
        sort: Some("title".into()),
        archived: Some("Include".into()),
        blocked: Some("yes".into()),
        parent: None,
    };
    let e = list_tasks(
        &ports,
        &member(),
        query,
        CursorRequest::parse(None, None).unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        fields(e),
        vec![
            "status",
            "priority",
            "assignee",
            "q",
            "updatedSince",
            "sort",
            "archived",
            "blocked"
        ]
    );
}

#[tokio::test]
async fn a_cursor_of_another_sort_is_refused_and_a_matching_one_is_passed_on() {
    let mut tasks = MockTaskRepository::new();
    let position = TaskPosition {
        value: SortValue::Rank(2),
        id: Uuid::from_u128(5),
    };
    tasks
        .expect_page_with_access()
        .withf(move |p, _, q| {
            *p == PROJECT_ID && q.after == Some(position) && q.scope == Scope::Project(PROJECT_ID)
        })
        .times(1)
        .returning(|_, user, _| Ok(Some((access_of(user), vec![]))));
    // The page comes with the caller's access; a stranger's is read, then refused.
    tasks
        .expect_page_with_access()
        .withf(|_, _, q| q.after.is_none())
        .times(1)
        .returning(|_, user, _| Ok(Some((access_of(user), vec![task()]))));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let cursor = encode_cursor(&TaskCursor {
        s: "priority".into(),
        p: position,
    })
    .unwrap();
    let with_sort = |sort: &str| TaskListQuery {
        category: None,
        sort: Some(sort.into()),
        ..Default::default()
    };
    let e = list_project_tasks(
        &ports,
        &viewer(),
        PROJECT_ID,
        with_sort("-priority"),
        CursorRequest::parse(None, Some(&cursor)).unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(fields(e), vec!["cursor"]);
    list_project_tasks(
        &ports,
        &viewer(),
        PROJECT_ID,
        with_sort("priority"),
        CursorRequest::parse(None, Some(&cursor)).unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(
        list_project_tasks(
            &ports,
            &stranger(),
            PROJECT_ID,
            TaskListQuery::default(),
            CursorRequest::parse(None, None).unwrap()
        )
        .await,
        Err(AppError::NotFound("project"))
    ));
}

#[tokio::test]
async fn a_task_read_authorizes_with_the_access_read_in_the_same_statement_and_keeps_it() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    let fixture = Fixture {
        // No expectation: a separate access read would panic.
        projects: keel_domain::tracking::ports::MockProjectRepository::new(),
        tasks,
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    let ports = fixture.ports();
    let view = get_task(&ports, &viewer(), &task().id.to_string()).await.unwrap();
    assert_eq!(view.id, task().id);
    assert_eq!(cache.reads(), [format!("task:{}", task().id)]);
    assert_eq!(
        cache.filled(),
        [format!("project:{PROJECT_ID}#m:{}", viewer().user_id)],
        "the access came with the task: kept for the next authorization"
    );
    assert!(matches!(
        get_task(&ports, &stranger(), "KEEL-1").await,
        Err(AppError::NotFound("task"))
    ));
}

#[tokio::test]
async fn a_page_of_a_project_is_one_store_read_cached_per_query_and_free_text_is_not_cached() {
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_page_with_access()
        .times(2)
        .returning(|_, user, _| Ok(Some((access_of(user), vec![task()]))));
    let fixture = Fixture {
        projects: keel_domain::tracking::ports::MockProjectRepository::new(),
        tasks,
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    let ports = fixture.ports();
    let page = list_project_tasks(
        &ports,
        &viewer(),
        PROJECT_ID,
        TaskListQuery::default(),
        CursorRequest::parse(Some("25"), None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.data.len(), 1);
    let reads = cache.reads();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(
        reads[0].starts_with(&format!("tasks-of:{PROJECT_ID}#")),
        "{reads:?}"
    );
    let searched = TaskListQuery {
        category: None,
        q: Some("first".into()),
        ..Default::default()
    };
    list_project_tasks(
        &ports,
        &viewer(),
        PROJECT_ID,
        searched,
        CursorRequest::parse(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        cache.reads().len(),
        1,
        "a free-text search is not read through the cache"
    );
}

#[tokio::test]
async fn every_task_write_makes_the_project_pages_stale() {
    let mut tasks = MockTaskRepository::new();
    tasks.expect_find().returning(|_| Ok(Some(task())));
    reads_task(&mut tasks, task());
    tasks.expect_update().returning(|_, _, _, _| Ok(true));
    // The task blocks one in another project: its count drops while this one is in the
    // trash.
    let mut relations = MockRelationRepository::new();
    relations
        .expect_blocked_by()
        .withf(|id| *id == task().id)
        .times(1)
        .returning(|_| Ok(vec![(ELSEWHERE, BLOCKED)]));
    let fixture = Fixture {
        tasks,
        relations,
        ..Fixture::default()
    };
    let cache = fixture.cache.clone();
    let ports = fixture.ports();
    delete_task(&ports, &member(), "KEEL-1", &meta()).await.unwrap();
    assert_eq!(
        cache.invalidated(),
        [
            format!("tasks-of:{PROJECT_ID}"),
            format!("task:{}", task().id),
            format!("tasks-of:{ELSEWHERE}"),
            format!("task:{BLOCKED}"),
        ]
    );
}

const ELSEWHERE: Uuid = Uuid::from_u128(0xE15E);
const BLOCKED: Uuid = Uuid::from_u128(0xB10C);

#[tokio::test]
async fn a_status_change_makes_the_tasks_it_blocks_stale_and_a_title_change_asks_nothing() {
    for (body, blocks_read) in [
        (
            UpdateTaskBody {
                status: Some("done".into()),
                ..Default::default()
            },
            1,
        ),
        (
            UpdateTaskBody {
                title: Some("Renamed".into()),
                ..Default::default()
            },
            0,
        ),
    ] {
        let mut tasks = MockTaskRepository::new();
        tasks.expect_find().returning(|_| Ok(Some(task())));
        reads_task(&mut tasks, task());
        tasks.expect_update().returning(|_, _, _, _| Ok(true));
        let mut relations = MockRelationRepository::new();
        relations
            .expect_blocked_by()
            .times(blocks_read)
            .returning(|_| Ok(vec![(ELSEWHERE, BLOCKED)]));
        let fixture = Fixture {
            tasks,
            relations,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        update_as(&ports, &member(), body, Expect::Any).await.unwrap();
        let stale = cache.invalidated();
        assert_eq!(
            stale.contains(&format!("task:{BLOCKED}")),
            blocks_read == 1,
            "{stale:?}"
        );
        assert_eq!(stale.contains(&format!("tasks-of:{ELSEWHERE}")), blocks_read == 1);
    }
}

#[tokio::test]
async fn delete_moves_to_the_trash_needs_write_access_and_audits() {
    let mut tasks = MockTaskRepository::new();
    tasks.expect_find().returning(|_| Ok(Some(task())));
    reads_task(&mut tasks, task());
    // To the trash: an update of the task that sets `deleted_at`, evented as before.
    tasks
        .expect_update()
        .withf(|t, labels, expected, a| {
            t.id == task().id
                && t.deleted_at == Some(now())
                && labels.is_none()
                && *expected == 1
                && t.version == 2
                && a.audit.action == "task.deleted"
                && a.audit.details.as_ref().unwrap()["identifier"] == "KEEL-1"
                && a.event.event.data == json!({"id": task().id, "identifier": "KEEL-1"})
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    assert!(matches!(
        delete_task(&ports, &viewer(), &task().id.to_string(), &meta()).await,
        Err(AppError::Forbidden)
    ));
    delete_task(&ports, &member(), &task().id.to_string(), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_label_filter_no_label_can_match_answers_an_empty_page_without_a_query() {
    let ports = Fixture::default().ports();
    let query = TaskListQuery {
        category: None,
        label: Some(format!("{},\u{7}", "x".repeat(31))),
        ..Default::default()
    };
    let page = list_tasks(
        &ports,
        &member(),
        query,
        CursorRequest::parse(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert!(page.data.is_empty());
    assert_eq!(
        label_filter(Some(" , ")),
        Some(vec![]),
        "blank items filter nothing"
    );
    assert_eq!(label_filter(Some(" bug ,x")).unwrap().len(), 2);
}

#[tokio::test]
async fn a_lost_race_without_if_match_re_reads_and_re_applies() {
    let mut tasks = MockTaskRepository::new();
    let mut seq = mockall::Sequence::new();
    tasks
        .expect_find_with_access()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, user| Ok(Some((task(), access_of(user)))));
    tasks
        .expect_update()
        .withf(|_, _, expected, _| *expected == 1)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Ok(false));
    tasks.expect_find().times(1).in_sequence(&mut seq).returning(|_| {
        let mut moved = task();
        moved.version = 2;
        moved.priority = Priority::new(3, "priority").unwrap();
        Ok(Some(moved))
    });
    tasks
        .expect_update()
        .withf(|t, _, expected, _| {
            *expected == 2 && t.version == 3 && t.title.as_str() == "New" && t.priority.value() == 3
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Ok(true));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let body = UpdateTaskBody {
        title: Some("New".into()),
        ..Default::default()
    };
    let view = update_as(&ports, &member(), body, Expect::Any).await.unwrap();
    assert_eq!(
        (view.version, view.priority),
        (3, 3),
        "the other write's change is kept"
    );
}

#[tokio::test]
async fn task_bodies_take_labels_by_id_or_by_name_and_report_unknown_ids() {
    let bug = label("bug");
    let ui = label("ui");
    let (bug_id, ui_id) = (bug.id, ui.id);
    let mut labels = MockLabelRepository::new();
    let by_name = ui.clone();
    labels.expect_find_by_names().returning(move |_, wanted| {
        Ok(wanted
            .iter()
            .filter(|w| **w == by_name.name)
            .map(|_| by_name.clone())
            .collect())
    });
    let by_id = bug.clone();
    labels.expect_find_by_ids().returning(move |_, wanted| {
        Ok(wanted
            .iter()
            .filter(|w| **w == by_id.id)
            .map(|_| by_id.clone())
            .collect())
    });
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_create()
        .withf(move |n, _, _| {
            n.label_ids == vec![bug_id, ui_id]
                && n.task.label_ids == vec![bug_id, ui_id]
                && n.task.labels.iter().map(LabelName::as_str).collect::<Vec<_>>() == ["bug", "ui"]
        })
        .times(1)
        .returning(|n, _, _| Ok(stored(n.clone(), 1)));
    let ports = Fixture {
        labels,
        tasks,
        ..Fixture::default()
    }
    .ports();
    let body = |labels: Vec<String>| CreateTaskBody {
        title: "Labelled".into(),
        labels: Some(labels),
        ..CreateTaskBody::default()
    };
    // The same label by id and by name counts once; ids in any UUID spelling.
    let view = create_task(
        &ports,
        &member(),
        PROJECT_ID,
        body(vec![
            bug_id.to_string(),
            "ui".into(),
            format!(" {} ", bug_id.simple()),
            "ui".into(),
        ]),
        &meta(),
    )
    .await
    .unwrap();
    assert_eq!(view.labels, ["bug", "ui"]);
    assert_eq!(view.label_ids, [bug_id, ui_id]);
    let unknown = Uuid::from_u128(0xDEAD);
    let e = create_task(
        &ports,
        &member(),
        PROJECT_ID,
        body(vec![unknown.to_string(), "nope".into()]),
        &meta(),
    )
    .await
    .unwrap_err();
    match e {
        AppError::Validation(details) => {
            assert_eq!(details[0].field, "labels");
            assert_eq!(
                details[0].message,
                format!("unknown in this project: nope, {unknown}")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_label_filter_takes_ids_beside_names() {
    let id = Uuid::from_u128(0xBEEF);
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_list()
        .withf(move |q| {
            q.filter.label_ids == vec![id]
                && q.filter.labels.iter().map(LabelName::as_str).collect::<Vec<_>>() == ["bug"]
        })
        .times(1)
        .returning(|_| Ok(vec![]));
    // Only an id, beside a name no label could have: the id still filters.
    tasks
        .expect_list()
        .withf(move |q| q.filter.label_ids == vec![id] && q.filter.labels.is_empty())
        .times(1)
        .returning(|_| Ok(vec![]));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    for label in [format!("bug,{id}"), format!("{},{id}", "x".repeat(31))] {
        let query = TaskListQuery {
            category: None,
            label: Some(label),
            ..TaskListQuery::default()
        };
        list_tasks(
            &ports,
            &member(),
            query,
            CursorRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn replacing_labels_with_the_same_ones_by_id_changes_nothing() {
    let bug = label("bug");
    let mut current = task();
    current.labels = vec![bug.name.clone()];
    current.label_ids = vec![bug.id];
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, current);
    tasks.expect_update().never();
    let mut labels = MockLabelRepository::new();
    let known = bug.clone();
    labels
        .expect_find_by_ids()
        .returning(move |_, _| Ok(vec![known.clone()]));
    let ports = Fixture {
        tasks,
        labels,
        ..Fixture::default()
    }
    .ports();
    let body = UpdateTaskBody {
        labels: Some(vec![bug.id.to_string()]),
        ..UpdateTaskBody::default()
    };
    let view = update_as(&ports, &member(), body, Expect::Any).await.unwrap();
    assert_eq!(view.version, 1);
    assert_eq!(view.label_ids, [bug.id]);
}

fn key(k: &str) -> StateKey {
    StateKey::parse(k, "status").unwrap()
}
