//! Unit tests of the bulk route's use case: body-level refusals, and every item failing or
//! succeeding on its own, through the single routes' use cases.

use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::tracking::ports::{MockLabelRepository, MockTaskRepository};
use keel_domain::tracking::{Color, Label, Project, ProjectKey, Task, TaskTitle};

use super::super::fixtures::*;
use super::super::inputs::{BulkTaskPatch, BulkTasksBody};
use super::*;

const OTHER: Uuid = Uuid::from_u128(0xB0B0);
const THIRD: Uuid = Uuid::from_u128(0xC0C0);

fn project_of(id: Uuid, key: &str) -> Project {
    Project {
        id,
        key: ProjectKey::parse(key).unwrap(),
        ..project()
    }
}

fn task_in(n: u128, project: &Project) -> Task {
    Task {
        id: Uuid::from_u128(n),
        project_id: project.id,
        project_key: project.key.clone(),
        number: i64::try_from(n % 1000).unwrap(),
        ..task()
    }
}

fn label_in(project_id: Uuid, name: &str, n: u128) -> Label {
    Label {
        id: Uuid::from_u128(n),
        project_id,
        name: LabelName::parse(name).unwrap(),
        color: Color::parse("#000000").unwrap(),
        created_at: now(),
    }
}

fn body(ids: &[String], action: &str, patch: Option<BulkTaskPatch>) -> BulkTasksBody {
    BulkTasksBody {
        ids: ids.to_vec(),
        action: action.into(),
        patch,
    }
}

fn add_ui() -> BulkTaskPatch {
    BulkTaskPatch {
        add_labels: Some(vec!["ui".into()]),
        ..Default::default()
    }
}

fn status_of(outcome: &Result<Option<TaskView>, AppError>) -> &'static str {
    match outcome {
        Ok(Some(_)) => "ok",
        Ok(None) => "done",
        Err(AppError::NotFound(_)) => "404",
        Err(AppError::Forbidden) => "403",
        Err(AppError::Validation(_)) => "400",
        Err(AppError::Conflict(_)) => "409",
        Err(AppError::Unavailable(_)) => "503",
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_request_is_one_400_naming_its_field_and_touches_no_task() {
    // No expectation on any store: a call would panic.
    let ports = Fixture::default().ports();
    let one = vec![task().id.to_string()];
    let many: Vec<String> = (0..101).map(|n| format!("KEEL-{n}")).collect();
    let cases = [
        (body(&[], "archive", None), "ids"),
        (body(&many, "archive", None), "ids"),
        (body(&one, "move", None), "action"),
        (body(&one, "update", None), "patch"),
        (body(&one, "archive", Some(add_ui())), "patch"),
        // The patch breaks a rule of its own: the same for every task it names.
        (
            body(
                &one,
                "update",
                Some(BulkTaskPatch {
                    title: Some(" ".into()),
                    ..Default::default()
                }),
            ),
            "patch.title",
        ),
        (
            body(
                &one,
                "update",
                Some(BulkTaskPatch {
                    status: Some("Doing".into()),
                    ..Default::default()
                }),
            ),
            "patch.status",
        ),
    ];
    for (request, field) in cases {
        let e = bulk_tasks(&ports, &member(), request, &meta()).await.unwrap_err();
        assert_eq!(fields(e), vec![field.to_owned()]);
    }
}

/// The caller's access to each test project: a viewer in OTHER, a member in THIRD, the
/// fixture's cast in the fixture's project.
fn access_in(project_id: Uuid, user: Uuid) -> ProjectAccess {
    match project_id {
        OTHER => ProjectAccess {
            project: project_of(OTHER, "OTH"),
            role: Some(ProjectRole::Viewer),
        },
        THIRD => ProjectAccess {
            project: project_of(THIRD, "THR"),
            role: Some(ProjectRole::Member),
        },
        _ => access_of(user),
    }
}

/// `find_many_with_access` answers the tasks of `known` it names (by id or identifier),
/// each with [`access_in`]; every call is counted in `reads`.
fn reads_many(tasks: &mut MockTaskRepository, known: Vec<Task>) {
    tasks
        .expect_find_many_with_access()
        .returning(move |ids, numbers, user| {
            Ok(known
                .iter()
                .filter(|t| {
                    ids.contains(&t.id) || numbers.iter().any(|(k, n)| *k == t.project_key && *n == t.number)
                })
                .map(|t| (t.clone(), access_in(t.project_id, user)))
                .collect())
        });
}

fn finds_ui_in_the_fixture_project(labels: &mut MockLabelRepository) {
    labels.expect_find_by_names().returning(|project_id, names| {
        Ok(if project_id == PROJECT_ID {
            names
                .iter()
                .filter(|n| n.as_str() == "ui")
                .map(|_| label_in(PROJECT_ID, "ui", 0xF2))
                .collect()
        } else {
            Vec::new()
        })
    });
}

fn retitle(title: &str) -> BulkTaskPatch {
    BulkTaskPatch {
        title: Some(title.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_item_fails_or_succeeds_on_its_own_in_the_order_given() {
    let other = project_of(OTHER, "OTH");
    let third = project_of(THIRD, "THR");
    let mut ok = task_in(0x1001, &project());
    ok.labels = vec![LabelName::parse("bug").unwrap()];
    ok.label_ids = vec![Uuid::from_u128(0xF1)];
    let forbidden = task_in(0x2002, &other);
    let invalid = task_in(0x3003, &third);
    let contended = task_in(0x1004, &project());
    // Already at the 20 labels a task may carry: `ui` is one too many for it alone.
    let full = Task {
        label_ids: (0..20).map(|n| Uuid::from_u128(0xE00 + n)).collect(),
        labels: (0..20)
            .map(|n| LabelName::parse(&format!("l{n:02}")).unwrap())
            .collect(),
        ..task_in(0x1005, &project())
    };
    let known = vec![
        ok.clone(),
        forbidden.clone(),
        invalid.clone(),
        contended.clone(),
        full.clone(),
    ];

    let mut tasks = MockTaskRepository::new();
    reads_many(&mut tasks, known);
    let (ok_id, contended_id) = (ok.id, contended.id);
    let mut seq = mockall::Sequence::new();
    // One store write for every task that changes: the first one written, the contended
    // one not (another writer got there first) ...
    tasks
        .expect_update_many()
        .withf(move |writes| {
            let ids: Vec<Uuid> = writes.iter().map(|w| w.task.id).collect();
            let first = &writes[0];
            ids == [ok_id, contended_id]
                && first.expected_version == 1
                && first.task.version == 2
                && first.label_ids.as_deref() == Some(&[Uuid::from_u128(0xF1), Uuid::from_u128(0xF2)][..])
                && first.change.event_type() == EventType::TaskUpdated
                && first.change.audit.details.as_ref().unwrap()["changed"] == serde_json::json!(["labels"])
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(vec![ok_id]));
    // ... which then loses every race, read again each time, as a `PATCH` does: 7 more.
    tasks
        .expect_update_many()
        .withf(move |writes| writes.len() == 1 && writes[0].task.id == contended_id)
        .times(7)
        .in_sequence(&mut seq)
        .returning(|_| Ok(Vec::new()));
    let mut labels = MockLabelRepository::new();
    finds_ui_in_the_fixture_project(&mut labels);
    let ports = Fixture {
        tasks,
        labels,
        ..Fixture::default()
    }
    .ports();

    let ids = vec![
        ok.id.to_string(),
        Uuid::from_u128(0xDEAD).to_string(),
        forbidden.id.to_string(),
        invalid.id.to_string(),
        contended.id.to_string(),
        "not a task".to_owned(),
        full.id.to_string(),
    ];
    let items = bulk_tasks(&ports, &member(), body(&ids, "update", Some(add_ui())), &meta())
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i.id.as_str(), status_of(&i.outcome)))
        .collect();
    let want: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(["ok", "404", "403", "400", "409", "404", "400"])
        .collect();
    assert_eq!(got, want);
    let Ok(Some(view)) = &items[0].outcome else {
        panic!("the first item succeeds");
    };
    assert_eq!(
        (view.labels.clone(), view.version),
        (vec!["bug".to_owned(), "ui".to_owned()], 2)
    );
    // Invalid in its project (no label `ui` there), and invalid for this task alone.
    let Err(e) = &items[3].outcome else { panic!() };
    assert!(
        matches!(e, AppError::Validation(d) if d[0].field == "addLabels" && d[0].message.contains("ui")),
        "{e:?}"
    );
    let Err(e) = &items[6].outcome else { panic!() };
    assert!(
        matches!(e, AppError::Validation(d) if d[0].field == "addLabels" && d[0].message.contains("at most")),
        "{e:?}"
    );
}

#[tokio::test]
async fn many_tasks_are_one_read_and_one_write_whatever_their_number() {
    let many: Vec<Task> = (0..40).map(|n| task_in(0x5000 + n, &project())).collect();
    let ids: Vec<String> = many.iter().map(|t| t.id.to_string()).collect();
    let mut tasks = MockTaskRepository::new();
    let known = many.clone();
    tasks
        .expect_find_many_with_access()
        .times(1)
        .returning(move |ids, _, user| {
            Ok(known
                .iter()
                .filter(|t| ids.contains(&t.id))
                .map(|t| (t.clone(), access_of(user)))
                .collect())
        });
    let want: Vec<Uuid> = many.iter().map(|t| t.id).collect();
    tasks
        .expect_update_many()
        .withf(move |writes| {
            writes.iter().map(|w| w.task.id).collect::<Vec<_>>() == want
                && writes.iter().all(|w| {
                    w.task.title.as_str() == "Renamed"
                        && w.change.audit.details.as_ref().unwrap()["changed"] == serde_json::json!(["title"])
                        && w.change.event.event.previous.as_ref().unwrap()["title"] == "First"
                })
        })
        .times(1)
        .returning(|writes| Ok(writes.iter().map(|w| w.task.id).collect()));
    tasks.expect_find_with_access().never();
    tasks.expect_update().never();
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&ids, "update", Some(retitle("Renamed"))),
        &meta(),
    )
    .await
    .unwrap();
    assert!(items.iter().all(|i| status_of(&i.outcome) == "ok"));
}

#[tokio::test]
async fn a_task_named_twice_is_acted_on_twice_the_second_time_on_what_the_first_left() {
    let mut tasks = MockTaskRepository::new();
    let mut seq = mockall::Sequence::new();
    // The first round reads it as it was ...
    tasks
        .expect_find_many_with_access()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, numbers, user| {
            assert_eq!(numbers.len(), 1, "the identifier is read in the same statement");
            Ok(vec![(task(), access_of(user))])
        });
    tasks
        .expect_update_many()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|writes| Ok(writes.iter().map(|w| w.task.id).collect()));
    // ... the second reads what the first left: renamed already, nothing more to write.
    tasks
        .expect_find_many_with_access()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, user| {
            let mut renamed = task();
            renamed.title = TaskTitle::parse("Renamed").unwrap();
            renamed.version = 2;
            Ok(vec![(renamed, access_of(user))])
        });
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let ids = [task().id.to_string(), "keel-1".to_owned()];
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&ids, "update", Some(retitle("Renamed"))),
        &meta(),
    )
    .await
    .unwrap();
    let versions: Vec<i64> = items
        .iter()
        .map(|i| match &i.outcome {
            Ok(Some(view)) => view.version,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(versions, [2, 2]);
}

#[tokio::test]
async fn labels_are_added_to_and_taken_off_what_the_task_has_when_written() {
    let mut tasks = MockTaskRepository::new();
    let mut seq = mockall::Sequence::new();
    tasks
        .expect_find_many_with_access()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, user| Ok(vec![(task(), access_of(user))]));
    // A stale version: not written.
    tasks
        .expect_update_many()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(Vec::new()));
    // Meanwhile another request put `x` and `old` on the task.
    tasks
        .expect_find_many_with_access()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, user| {
            let mut moved = task();
            moved.version = 2;
            moved.labels = vec![LabelName::parse("old").unwrap(), LabelName::parse("x").unwrap()];
            moved.label_ids = vec![Uuid::from_u128(0xA1), Uuid::from_u128(0xA2)];
            Ok(vec![(moved, access_of(user))])
        });
    tasks
        .expect_update_many()
        .withf(|writes| {
            let w = &writes[0];
            w.expected_version == 2
                && w.label_ids.as_deref() == Some(&[Uuid::from_u128(0xF2), Uuid::from_u128(0xA2)][..])
                && w.task.labels.iter().map(LabelName::as_str).collect::<Vec<_>>() == ["ui", "x"]
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|writes| Ok(vec![writes[0].task.id]));
    let mut labels = MockLabelRepository::new();
    labels.expect_find_by_names().returning(|_, names| {
        Ok(names
            .iter()
            .filter_map(|n| match n.as_str() {
                "ui" => Some(label_in(PROJECT_ID, "ui", 0xF2)),
                "old" => Some(label_in(PROJECT_ID, "old", 0xA1)),
                _ => None,
            })
            .collect())
    });
    let ports = Fixture {
        tasks,
        labels,
        ..Fixture::default()
    }
    .ports();
    let patch = BulkTaskPatch {
        add_labels: Some(vec!["ui".into()]),
        remove_labels: Some(vec!["old".into(), "gone".into()]),
        ..Default::default()
    };
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&[task().id.to_string()], "update", Some(patch)),
        &meta(),
    )
    .await
    .unwrap();
    let Ok(Some(view)) = &items[0].outcome else {
        panic!("{:?}", items[0].outcome);
    };
    assert_eq!(
        (view.labels.clone(), view.version),
        (vec!["ui".to_owned(), "x".to_owned()], 3)
    );
}

#[tokio::test]
async fn labels_cannot_be_replaced_and_adjusted_at_once_nor_added_and_removed() {
    let mut tasks = MockTaskRepository::new();
    reads_many(&mut tasks, vec![task()]);
    tasks.expect_update_many().never();
    let mut labels = MockLabelRepository::new();
    labels
        .expect_find_by_names()
        .returning(|_, _| Ok(vec![label_in(PROJECT_ID, "ui", 0xF2)]));
    let ports = Fixture {
        tasks,
        labels,
        ..Fixture::default()
    }
    .ports();
    let id = [task().id.to_string()];
    let both = BulkTaskPatch {
        labels: Some(vec!["ui".into()]),
        add_labels: Some(vec!["ui".into()]),
        ..Default::default()
    };
    // A rule of the patch alone: one 400 for the request, before any task is read.
    let e = bulk_tasks(&ports, &member(), body(&id, "update", Some(both)), &meta())
        .await
        .unwrap_err();
    assert_eq!(fields(e), ["patch.labels"]);
    let contradictory = BulkTaskPatch {
        add_labels: Some(vec!["ui".into()]),
        remove_labels: Some(vec!["ui".into()]),
        ..Default::default()
    };
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&id, "update", Some(contradictory)),
        &meta(),
    )
    .await
    .unwrap();
    let Err(e) = items.into_iter().next().unwrap().outcome else {
        panic!()
    };
    assert_eq!(fields(e), ["removeLabels"]);
}

#[tokio::test]
async fn an_unavailable_write_is_503_for_its_tasks_and_the_later_rounds_untried() {
    let mut tasks = MockTaskRepository::new();
    reads_many(&mut tasks, vec![task()]);
    tasks
        .expect_update_many()
        .times(1)
        .returning(|_| Err(StoreError::Unavailable("pool timed out".into())));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    // The second naming would be a second round: not tried. The unknown one was decided
    // by the read already.
    let ids = [task().id.to_string(), "KEEL-404".to_owned(), "KEEL-1".to_owned()];
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&ids, "update", Some(retitle("R"))),
        &meta(),
    )
    .await
    .unwrap();
    let statuses: Vec<_> = items.iter().map(|i| status_of(&i.outcome)).collect();
    assert_eq!(statuses, ["503", "404", "503"]);
}

#[tokio::test]
async fn a_write_refused_as_a_whole_is_answered_item_by_item_by_the_single_route() {
    let mut tasks = MockTaskRepository::new();
    let (a, b) = (task_in(0x6001, &project()), task_in(0x6002, &project()));
    reads_many(&mut tasks, vec![a.clone(), b.clone()]);
    // The set-based write is refused (the caller's role went away, say) ...
    tasks
        .expect_update_many()
        .times(1)
        .returning(|_| Err(StoreError::AuthorityLost));
    // ... then each task goes through `PATCH`'s use case, which answers it exactly.
    let known = [a.clone(), b.clone()];
    tasks
        .expect_find_with_access()
        .times(2)
        .returning(move |id, user| {
            Ok(known
                .iter()
                .find(|t| t.id == id)
                .map(|t| (t.clone(), access_of(user))))
        });
    let b_id = b.id;
    tasks.expect_update().times(2).returning(move |t, _, _, _| {
        if t.id == b_id {
            Err(StoreError::AuthorityLost)
        } else {
            Ok(true)
        }
    });
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let ids = [a.id.to_string(), b.id.to_string()];
    let items = bulk_tasks(
        &ports,
        &member(),
        body(&ids, "update", Some(retitle("R"))),
        &meta(),
    )
    .await
    .unwrap();
    let statuses: Vec<_> = items.iter().map(|i| status_of(&i.outcome)).collect();
    assert_eq!(statuses, ["ok", "403"]);
}

#[tokio::test]
async fn delete_answers_no_task_and_trashes_each_as_its_route_does() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks
        .expect_update()
        .withf(|t, _, _, c| t.deleted_at == Some(now()) && c.event_type() == EventType::TaskDeleted)
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let ids = ["KEEL-1".to_owned(), "KEEL-99".to_owned()];
    let items = bulk_tasks(&ports, &member(), body(&ids, "delete", None), &meta())
        .await
        .unwrap();
    let statuses: Vec<_> = items.iter().map(|i| status_of(&i.outcome)).collect();
    assert_eq!(statuses, ["done", "404"]);
}

#[tokio::test]
async fn an_unavailable_database_stops_the_run_and_the_rest_answer_503_untried() {
    let mut tasks = MockTaskRepository::new();
    tasks
        .expect_find_with_access()
        .times(1)
        .returning(|_, _| Err(StoreError::Unavailable("pool timed out".into())));
    let ports = Fixture {
        tasks,
        ..Fixture::default()
    }
    .ports();
    let ids: Vec<String> = (1..=3).map(|n| Uuid::from_u128(n).to_string()).collect();
    let items = bulk_tasks(&ports, &member(), body(&ids, "archive", None), &meta())
        .await
        .unwrap();
    let statuses: Vec<_> = items.iter().map(|i| status_of(&i.outcome)).collect();
    assert_eq!(statuses, ["503", "503", "503"]);
}
