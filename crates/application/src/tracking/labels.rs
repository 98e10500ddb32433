//! Labels of a project: list (members), create, rename or recolour, and delete (project
//! admins).

use futures::TryFutureExt;
use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::{Color, Label, LabelName, Permission};
use serde_json::json;
use uuid::Uuid;

use super::inputs::{CreateLabelBody, UpdateLabelBody};
use super::views::{LabelView, event_data};
use super::{TrackingPorts, check, not_found_as, optional, validated};
use crate::AppError;
use crate::context::RequestMeta;
use crate::pagination::{Page, PageRequest};

pub async fn list_labels(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    page: PageRequest,
) -> Result<Page<LabelView>, AppError> {
    ports
        .authorize(principal, project_id, Permission::Read, "project")
        .await?;
    let (labels, total) = ports
        .labels
        .list(project_id, page.offset(), u64::from(page.limit()))
        .await?;
    Ok(Page::new(
        labels.iter().map(LabelView::from).collect(),
        page,
        total,
    ))
}

pub async fn create_label(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: CreateLabelBody,
    meta: &RequestMeta,
) -> Result<LabelView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let mut errors = Vec::new();
    let name = check(&mut errors, LabelName::parse(&body.name));
    let color = check(&mut errors, Color::parse(&body.color));
    validated(errors)?;
    let (Some(name), Some(color)) = (name, color) else {
        return Err(AppError::internal("validated input missing"));
    };
    let label = Label {
        id: Uuid::now_v7(),
        project_id,
        name,
        color,
        created_at: ports.clock.now(),
    };
    let change = ports
        .change(meta, principal, EventType::LabelCreated, project_id)
        .resource(label.id)
        .needs(Permission::Administer)
        .details(json!({ "name": label.name.as_str(), "color": label.color.as_str() }))
        .data(event_data(&LabelView::from(&label)))
        .build();
    ports
        .commit(
            &change,
            ports.labels.create(&label, &change).map_err(|e| match e {
                StoreError::Conflict(_) => {
                    AppError::Conflict("the project has a label with this name already".into())
                }
                other => other.into(),
            }),
        )
        .await?;
    Ok(LabelView::from(&label))
}

/// Renames or recolours a label (project admins). A rename shows on every task carrying the
/// label: each gets a new version. Sending what the label is already changes nothing.
pub async fn update_label(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    label_id: Uuid,
    body: UpdateLabelBody,
    meta: &RequestMeta,
) -> Result<LabelView, AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let mut errors = Vec::new();
    let name = optional(&mut errors, body.name.as_deref(), LabelName::parse);
    let color = optional(&mut errors, body.color.as_deref(), Color::parse);
    validated(errors)?;
    let mut label = ports
        .labels
        .find(project_id, label_id)
        .await?
        .ok_or(AppError::NotFound("label"))?;
    let mut changed = Vec::new();
    let before = label.name.clone();
    let before_view = event_data(&LabelView::from(&label));
    if let Some(name) = name.filter(|n| *n != label.name) {
        label.name = name;
        changed.push("name");
    }
    if let Some(color) = color.filter(|c| *c != label.color) {
        label.color = color;
        changed.push("color");
    }
    if changed.is_empty() {
        return Ok(LabelView::from(&label));
    }
    let renamed = label.name != before;
    let mut details = json!({
        "changed": changed,
        "name": label.name.as_str(),
        "color": label.color.as_str(),
    });
    if renamed {
        details["previousName"] = json!(before.as_str());
    }
    let change = ports
        .change(meta, principal, EventType::LabelUpdated, project_id)
        .resource(label_id)
        .needs(Permission::Administer)
        .details(details)
        .before(before_view)
        .data(event_data(&LabelView::from(&label)))
        .build();
    // A rename changes the tasks carrying the label: the store answers which.
    ports
        .commit(
            &change,
            ports
                .labels
                .update(&label, renamed, &change)
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        AppError::Conflict("the project has a label with this name already".into())
                    }
                    StoreError::NotFound => AppError::NotFound("label"),
                    other => other.into(),
                }),
        )
        .await?;
    Ok(LabelView::from(&label))
}

/// Deletes a label and takes it off every task.
pub async fn delete_label(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    label_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    ports
        .authorize(principal, project_id, Permission::Administer, "project")
        .await?;
    let label = ports
        .labels
        .find(project_id, label_id)
        .await?
        .ok_or(AppError::NotFound("label"))?;
    let change = ports
        .change(meta, principal, EventType::LabelDeleted, project_id)
        .resource(label_id)
        .needs(Permission::Administer)
        .details(json!({ "name": label.name.as_str() }))
        .data(json!({ "id": label_id, "name": label.name.as_str() }))
        .build();
    // It is taken off tasks: the store answers which.
    ports
        .commit(
            &change,
            ports
                .labels
                .delete(project_id, label_id, &change)
                .map_err(not_found_as("label")),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::MockLabelRepository;

    use super::super::fixtures::*;
    use super::*;

    #[tokio::test]
    async fn admins_create_labels_with_normalised_colors() {
        let mut labels = MockLabelRepository::new();
        labels
            .expect_create()
            .withf(|l, a| {
                l.name.as_str() == "bug" && l.color.as_str() == "#D73A4A" && a.audit.action == "label.created"
            })
            .times(1)
            .returning(|_, _| Ok(()));
        labels
            .expect_create()
            .returning(|_, _| Err(StoreError::Conflict("ux".into())));
        let ports = Fixture {
            labels,
            ..Fixture::default()
        }
        .ports();
        let body = || CreateLabelBody {
            name: " bug ".into(),
            color: "#d73a4a".into(),
        };
        let view = create_label(&ports, &owner(), PROJECT_ID, body(), &meta())
            .await
            .unwrap();
        assert_eq!((view.name.as_str(), view.color.as_str()), ("bug", "#D73A4A"));
        assert!(matches!(
            create_label(&ports, &owner(), PROJECT_ID, body(), &meta()).await,
            Err(AppError::Conflict(_))
        ));
        assert!(matches!(
            create_label(&ports, &member(), PROJECT_ID, body(), &meta()).await,
            Err(AppError::Forbidden)
        ));
        let bad = CreateLabelBody {
            name: String::new(),
            color: "red".into(),
        };
        assert_eq!(
            fields(
                create_label(&ports, &owner(), PROJECT_ID, bad, &meta())
                    .await
                    .unwrap_err()
            ),
            vec!["name", "color"]
        );
    }

    #[tokio::test]
    async fn deleting_an_unknown_label_is_404_and_strangers_learn_nothing() {
        let mut labels = MockLabelRepository::new();
        labels.expect_find().returning(|_, _| Ok(None));
        let ports = Fixture {
            labels,
            ..Fixture::default()
        }
        .ports();
        assert!(matches!(
            delete_label(&ports, &owner(), PROJECT_ID, Uuid::nil(), &meta()).await,
            Err(AppError::NotFound("label"))
        ));
        assert!(matches!(
            delete_label(&ports, &stranger(), PROJECT_ID, Uuid::nil(), &meta()).await,
            Err(AppError::NotFound("project"))
        ));
        let page = PageRequest::parse(None, None).unwrap();
        assert!(matches!(
            list_labels(&ports, &stranger(), PROJECT_ID, page).await,
            Err(AppError::NotFound("project"))
        ));
    }

    fn stored_label() -> Label {
        Label {
            id: Uuid::from_u128(0x1AB),
            project_id: PROJECT_ID,
            name: LabelName::parse("bug").unwrap(),
            color: Color::parse("#D73A4A").unwrap(),
            created_at: now(),
        }
    }

    fn patch(name: Option<&str>, color: Option<&str>) -> UpdateLabelBody {
        UpdateLabelBody {
            name: name.map(Into::into),
            color: color.map(Into::into),
        }
    }

    #[tokio::test]
    async fn admins_rename_labels_and_the_tasks_carrying_them_go_stale() {
        let carrying = Uuid::from_u128(0x7A5C);
        let mut labels = MockLabelRepository::new();
        labels.expect_find().returning(|_, _| Ok(Some(stored_label())));
        labels
            .expect_update()
            .withf(|l, renamed, c| {
                l.name.as_str() == "defect"
                    && l.color.as_str() == "#D73A4A"
                    && *renamed
                    && c.audit.action == "label.updated"
                    && c.audit.details.as_ref().unwrap()["previousName"] == "bug"
            })
            .times(1)
            .returning(move |_, _, _| Ok(vec![carrying]));
        let fixture = Fixture {
            labels,
            ..Fixture::default()
        };
        let cache = std::sync::Arc::clone(&fixture.cache);
        let ports = fixture.ports();
        let id = stored_label().id;
        let view = update_label(
            &ports,
            &owner(),
            PROJECT_ID,
            id,
            patch(Some(" defect "), None),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.name, "defect");
        let stale = cache.invalidated();
        assert!(stale.contains(&format!("task:{carrying}")), "{stale:?}");
        assert!(stale.contains(&format!("tasks-of:{PROJECT_ID}")), "{stale:?}");
        // The same name and colour again: nothing is written (`update` is expected once).
        let same = update_label(
            &ports,
            &owner(),
            PROJECT_ID,
            id,
            patch(Some("bug"), Some("#d73a4a")),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(same.name, "bug");
    }

    #[tokio::test]
    async fn a_new_colour_only_changes_no_task_and_makes_nothing_stale() {
        let mut labels = MockLabelRepository::new();
        labels.expect_find().returning(|_, _| Ok(Some(stored_label())));
        labels
            .expect_update()
            .withf(|l, renamed, _| l.color.as_str() == "#000000" && !*renamed)
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        let fixture = Fixture {
            labels,
            ..Fixture::default()
        };
        let cache = std::sync::Arc::clone(&fixture.cache);
        let ports = fixture.ports();
        update_label(
            &ports,
            &owner(),
            PROJECT_ID,
            stored_label().id,
            patch(None, Some("#000000")),
            &meta(),
        )
        .await
        .unwrap();
        assert!(cache.invalidated().is_empty(), "{:?}", cache.invalidated());
    }

    #[tokio::test]
    async fn renames_are_refused_to_members_strangers_bad_input_and_taken_names() {
        let mut labels = MockLabelRepository::new();
        labels
            .expect_find()
            .returning(|_, l| Ok((l == stored_label().id).then(stored_label)));
        labels
            .expect_update()
            .returning(|_, _, _| Err(StoreError::Conflict("ux_labels_project_name".into())));
        let ports = Fixture {
            labels,
            ..Fixture::default()
        }
        .ports();
        let id = stored_label().id;
        assert!(matches!(
            update_label(&ports, &owner(), PROJECT_ID, id, patch(Some("ui"), None), &meta()).await,
            Err(AppError::Conflict(_))
        ));
        assert!(matches!(
            update_label(
                &ports,
                &member(),
                PROJECT_ID,
                id,
                patch(Some("ui"), None),
                &meta()
            )
            .await,
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            update_label(
                &ports,
                &stranger(),
                PROJECT_ID,
                id,
                patch(Some("ui"), None),
                &meta()
            )
            .await,
            Err(AppError::NotFound("project"))
        ));
        assert!(matches!(
            update_label(
                &ports,
                &owner(),
                PROJECT_ID,
                Uuid::nil(),
                patch(Some("ui"), None),
                &meta()
            )
            .await,
            Err(AppError::NotFound("label"))
        ));
        assert_eq!(
            fields(
                update_label(
                    &ports,
                    &owner(),
                    PROJECT_ID,
                    id,
                    patch(Some(""), Some("red")),
                    &meta()
                )
                .await
                .unwrap_err()
            ),
            vec!["name", "color"]
        );
    }
}
