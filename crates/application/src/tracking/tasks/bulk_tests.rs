//! Unit tests of the bulk route's use case: body-level refusals, and every item failing or
//! succeeding on its own, through the single routes' use cases.

use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::tracking::ports::{MockLabelRepository, MockTaskRepository};
use keel_domain::tracking::{Color, Label, Project, ProjectKey, Task};

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
    let known = [ok.clone(), forbidden.clone(), invalid.clone(), contended.clone()];

    let mut tasks = MockTaskRepository::new();
    let readable = known.clone();
    tasks.expect_find_with_access().returning(move |id, user| {
        Ok(readable.iter().find(|t| t.id == id).map(|t| {
            let access = match t.project_id {
                // The caller is a viewer there.
                OTHER => ProjectAccess {
                    project: project_of(OTHER, "OTH"),
                    role: Some(ProjectRole::Viewer),
                },
                THIRD => ProjectAccess {
                    project: project_of(THIRD, "THR"),
                    role: Some(ProjectRole::Member),
                },
                _ => access_of(user),
            };
            (t.clone(), access)
        }))
    });
    tasks
        .expect_find_by_number_with_access()
        .returning(|_, _, _| Ok(None));
    let again = contended.clone();
    tasks.expect_find().returning(move |_| Ok(Some(again.clone())));
    let (ok_id, contended_id) = (ok.id, contended.id);
    tasks
        .expect_update()
        .withf(move |t, labels, expected, change| {
            t.id == ok_id
                && *expected == 1
                && labels.is_some_and(|l| l == [Uuid::from_u128(0xF1), Uuid::from_u128(0xF2)])
                && change.event_type() == EventType::TaskUpdated
                && change.audit.details.as_ref().unwrap()["changed"] == serde_json::json!(["labels"])
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    // Another writer wins every race for this one.
    tasks
        .expect_update()
        .withf(move |t, _, _, _| t.id == contended_id)
        .returning(|_, _, _, _| Ok(false));
    let mut labels = MockLabelRepository::new();
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
        .zip(["ok", "404", "403", "400", "409", "404"])
        .collect();
    assert_eq!(got, want);
    let Ok(Some(view)) = &items[0].outcome else {
        panic!("the first item succeeds");
    };
    assert_eq!(
        (view.labels.clone(), view.version),
        (vec!["bug".to_owned(), "ui".to_owned()], 2)
    );
    let Err(e) = &items[3].outcome else { panic!() };
    assert!(
        matches!(e, AppError::Validation(d) if d[0].field == "addLabels" && d[0].message.contains("ui")),
        "{e:?}"
    );
}

#[tokio::test]
async fn labels_are_added_to_and_taken_off_what_the_task_has_when_written() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    let mut seq = mockall::Sequence::new();
    tasks
        .expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Ok(false));
    // Meanwhile another request put `x` and `old` on the task.
    tasks.expect_find().times(1).in_sequence(&mut seq).returning(|_| {
        let mut moved = task();
        moved.version = 2;
        moved.labels = vec![LabelName::parse("old").unwrap(), LabelName::parse("x").unwrap()];
        moved.label_ids = vec![Uuid::from_u128(0xA1), Uuid::from_u128(0xA2)];
        Ok(Some(moved))
    });
    tasks
        .expect_update()
        .withf(|t, labels, expected, _| {
            *expected == 2
                && labels.is_some_and(|l| l == [Uuid::from_u128(0xF2), Uuid::from_u128(0xA2)])
                && t.labels.iter().map(LabelName::as_str).collect::<Vec<_>>() == ["ui", "x"]
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Ok(true));
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
    assert_eq!(view.labels, ["ui", "x"]);
}

#[tokio::test]
async fn labels_cannot_be_replaced_and_adjusted_at_once_nor_added_and_removed() {
    let mut tasks = MockTaskRepository::new();
    reads_task(&mut tasks, task());
    tasks.expect_update().never();
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
