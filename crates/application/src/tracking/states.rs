//! Workflow states of a project: list (members and viewers), create, change and delete
//! (project admins). A task's `status` is the key of one of its project's states; its
//! `statusCategory` and `completedAt` follow the state's category (the store keeps the
//! tasks of a changed state in step, in the change's transaction).

use futures::TryFutureExt;
use keel_domain::StoreError;
use keel_domain::events::EventType;
use keel_domain::identity::Principal;
use keel_domain::tracking::{Color, Permission, StateCategory, StateKey, StateName, WorkflowState};
use serde_json::json;
use uuid::Uuid;

use super::inputs::{CreateStateBody, UpdateStateBody};
use super::invalidation::Also;
use super::views::{StateList, StateView, event_data};
use super::{TrackingPorts, check, optional, validated};
use crate::AppError;
use crate::context::RequestMeta;

/// At most this many states in one project.
pub const MAX_STATES: usize = 50;

/// The highest `position` a state may have.
pub const MAX_POSITION: i64 = 10_000;

fn position(raw: i64) -> Result<i32, keel_domain::FieldError> {
    i32::try_from(raw)
        .ok()
        .filter(|p| (0..=MAX_POSITION).contains(&i64::from(*p)))
        .ok_or_else(|| {
            keel_domain::FieldError::new("position", format!("must be an integer from 0 to {MAX_POSITION}"))
        })
}

/// The project's states by position.
pub async fn list_states(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
) -> Result<StateList, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Read, "project", None)
        .await?;
    let states = ports.states.list(project_id).await?;
    let default = access.project.default_state.as_str();
    Ok(StateList {
        data: states.iter().map(|s| StateView::new(s, default)).collect(),
    })
}

/// Adds a state to the project (project admins); without a position, after the last.
pub async fn create_state(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    body: CreateStateBody,
    meta: &RequestMeta,
) -> Result<StateView, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Administer, "project", None)
        .await?;
    let mut errors = Vec::new();
    let key = check(&mut errors, StateKey::parse(&body.key, "key"));
    let name = check(&mut errors, StateName::parse(&body.name));
    let category = check(&mut errors, StateCategory::parse(&body.category, "category"));
    let color = check(&mut errors, Color::parse(&body.color));
    let position = optional(&mut errors, body.position, position);
    validated(errors)?;
    let (Some(key), Some(name), Some(category), Some(color)) = (key, name, category, color) else {
        return Err(AppError::internal("validated input missing"));
    };
    let states = ports.states.list(project_id).await?;
    if states.iter().any(|s| s.key == key) {
        return Err(AppError::Conflict(
            "the project has a state with this key already".into(),
        ));
    }
    if states.len() >= MAX_STATES {
        return Err(AppError::Conflict(format!(
            "a project has at most {MAX_STATES} states"
        )));
    }
    let position = position.unwrap_or_else(|| {
        states
            .iter()
            .map(|s| s.position.saturating_add(1))
            .max()
            .unwrap_or(0)
            .min(i32::try_from(MAX_POSITION).unwrap_or(i32::MAX))
    });
    let now = ports.clock.now();
    let state = WorkflowState {
        id: Uuid::now_v7(),
        project_id,
        key,
        name,
        category,
        color,
        position,
        created_at: now,
        updated_at: now,
    };
    let view = StateView::new(&state, access.project.default_state.as_str());
    let change = ports
        .change(meta, principal, EventType::StateCreated, project_id)
        .resource(state.id)
        .needs(Permission::Administer)
        .details(json!({ "key": state.key.as_str(), "category": state.category.as_str() }))
        .data(event_data(&view))
        .build();
    ports
        .commit(
            &change,
            ports.states.create(&state, &change).map_err(|e| match e {
                StoreError::Conflict(_) => {
                    AppError::Conflict("the project has a state with this key already".into())
                }
                StoreError::NotFound => AppError::NotFound("project"),
                other => other.into(),
            }),
        )
        .await?;
    Ok(view)
}

async fn find_state(
    ports: &TrackingPorts,
    project_id: Uuid,
    state_id: Uuid,
) -> Result<(Vec<WorkflowState>, WorkflowState), AppError> {
    let states = ports.states.list(project_id).await?;
    let state = states
        .iter()
        .find(|s| s.id == state_id)
        .cloned()
        .ok_or(AppError::NotFound("state"))?;
    Ok((states, state))
}

/// Renames, recolours, moves or recategorises a state (project admins). A new category
/// reaches every task in the state: `statusCategory`, `completedAt` (set on entering
/// `completed`, cleared on leaving it) and a new version. Sending what the state is already
/// changes nothing.
pub async fn update_state(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    state_id: Uuid,
    body: UpdateStateBody,
    meta: &RequestMeta,
) -> Result<StateView, AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Administer, "project", None)
        .await?;
    let mut errors = Vec::new();
    let name = optional(&mut errors, body.name.as_deref(), StateName::parse);
    let color = optional(&mut errors, body.color.as_deref(), Color::parse);
    let position = optional(&mut errors, body.position, position);
    let category = optional(&mut errors, body.category.as_deref(), |c| {
        StateCategory::parse(c, "category")
    });
    validated(errors)?;
    let (_, mut state) = find_state(ports, project_id, state_id).await?;
    let default = access.project.default_state.as_str();
    let before = event_data(&StateView::new(&state, default));
    let mut changed = Vec::new();
    if let Some(name) = name.filter(|n| *n != state.name) {
        state.name = name;
        changed.push("name");
    }
    if let Some(color) = color.filter(|c| *c != state.color) {
        state.color = color;
        changed.push("color");
    }
    if let Some(position) = position.filter(|p| *p != state.position) {
        state.position = position;
        changed.push("position");
    }
    if let Some(category) = category.filter(|c| *c != state.category) {
        state.category = category;
        changed.push("category");
    }
    if changed.is_empty() {
        return Ok(StateView::new(&state, default));
    }
    state.updated_at = ports.clock.now();
    let view = StateView::new(&state, default);
    let change = ports
        .change(meta, principal, EventType::StateUpdated, project_id)
        .resource(state_id)
        .needs(Permission::Administer)
        .details(json!({ "changed": changed, "key": state.key.as_str() }))
        .before(before)
        .data(event_data(&view))
        .build();
    // A new category changes the state's tasks (and the tasks they block): the store
    // answers which.
    ports
        .commit(
            &change,
            ports
                .states
                .update(&state, &change)
                .map_ok(|tasks| Also { written: (), tasks })
                .map_err(|e| match e {
                    StoreError::NotFound => AppError::NotFound("state"),
                    other => other.into(),
                }),
        )
        .await?;
    Ok(view)
}

/// Deletes a state (project admins): its tasks move to the state `move_to` (the project's
/// default state when absent) in the same transaction. The project's last state and its
/// default state cannot be deleted (409); `move_to` must be another state of the project
/// (400).
pub async fn delete_state(
    ports: &TrackingPorts,
    principal: &Principal,
    project_id: Uuid,
    state_id: Uuid,
    move_to: Option<&str>,
    meta: &RequestMeta,
) -> Result<(), AppError> {
    let (access, _) = ports
        .authorize_access(principal, project_id, Permission::Administer, "project", None)
        .await?;
    let move_to = move_to
        .map(|k| StateKey::parse(k, "moveTo"))
        .transpose()
        .map_err(|e| AppError::Validation(vec![e]))?;
    let (states, state) = find_state(ports, project_id, state_id).await?;
    let default = &access.project.default_state;
    if states.len() == 1 {
        return Err(AppError::Conflict("a project keeps at least one state".into()));
    }
    if state.key == *default {
        return Err(AppError::Conflict(
            "the default state cannot be deleted: make another state the project's defaultState first".into(),
        ));
    }
    let move_to = move_to.unwrap_or_else(|| default.clone());
    if move_to == state.key {
        return Err(AppError::invalid(
            "moveTo",
            "must be another state than the one deleted",
        ));
    }
    if !states.iter().any(|s| s.key == move_to) {
        return Err(AppError::invalid("moveTo", "is not a state of this project"));
    }
    let change = ports
        .change(meta, principal, EventType::StateDeleted, project_id)
        .resource(state_id)
        .needs(Permission::Administer)
        .details(json!({ "key": state.key.as_str(), "moveTo": move_to.as_str() }))
        .data(json!({ "id": state_id, "key": state.key.as_str(), "moveTo": move_to.as_str() }))
        .build();
    ports
        .commit(
            &change,
            ports
                .states
                .delete(project_id, state_id, &move_to, ports.clock.now(), &change)
                .map_ok(|tasks| Also { written: (), tasks })
                .map_err(|e| match e {
                    StoreError::NotFound => AppError::NotFound("state"),
                    StoreError::Conflict(reason) => AppError::Conflict(reason),
                    other => other.into(),
                }),
        )
        .await?;
    Ok(())
}

/// The category of the project's state `key`: a 400 naming `field` when the project has no
/// such state. One statement.
pub(crate) async fn category_of(
    ports: &TrackingPorts,
    project_id: Uuid,
    key: &StateKey,
    field: &str,
) -> Result<StateCategory, AppError> {
    let states = ports.states.list(project_id).await?;
    states
        .iter()
        .find(|s| s.key == *key)
        .map(|s| s.category)
        .ok_or_else(|| AppError::invalid(field, "is not a state of this project"))
}

#[cfg(test)]
mod tests {
    use keel_domain::tracking::ports::MockStateRepository;

    use super::super::fixtures::*;
    use super::*;

    fn body(key: &str, category: &str) -> CreateStateBody {
        CreateStateBody {
            key: key.into(),
            name: " QA ".into(),
            category: category.into(),
            color: "#0ea5e9".into(),
            position: None,
        }
    }

    fn state_id(key: &str) -> Uuid {
        the_default_states()
            .into_iter()
            .find(|s| s.key.as_str() == key)
            .unwrap()
            .id
    }

    /// A state store over the six default states that expects no write.
    fn states_listing(states: Vec<WorkflowState>) -> MockStateRepository {
        let mut store = MockStateRepository::new();
        store.expect_list().returning(move |_| Ok(states.clone()));
        store
    }

    #[tokio::test]
    async fn admins_create_states_after_the_last_with_checked_keys_and_categories() {
        let mut states = states_listing(the_default_states());
        states
            .expect_create()
            .withf(|s, c| {
                s.key.as_str() == "qa"
                    && s.name.as_str() == "QA"
                    && s.category == StateCategory::Started
                    && s.color.as_str() == "#0EA5E9"
                    && s.position == 6
                    && c.audit.action == "state.created"
                    && c.event.event.event_type == EventType::StateCreated
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let ports = Fixture {
            states,
            ..Fixture::default()
        }
        .ports();
        let view = create_state(&ports, &owner(), PROJECT_ID, body("qa", "started"), &meta())
            .await
            .unwrap();
        assert_eq!(
            (view.key.as_str(), view.position, view.is_default),
            ("qa", 6, false)
        );
        // A key the project has is a 409 before any write; bad fields are one 400.
        assert!(matches!(
            create_state(&ports, &owner(), PROJECT_ID, body("todo", "started"), &meta()).await,
            Err(AppError::Conflict(_))
        ));
        let e = create_state(&ports, &owner(), PROJECT_ID, body("In Review", "doing"), &meta())
            .await
            .unwrap_err();
        assert_eq!(fields(e), ["key", "category"]);
        for who in [member(), viewer()] {
            assert!(matches!(
                create_state(&ports, &who, PROJECT_ID, body("qb", "started"), &meta()).await,
                Err(AppError::Forbidden)
            ));
        }
        assert!(matches!(
            create_state(&ports, &stranger(), PROJECT_ID, body("qb", "started"), &meta()).await,
            Err(AppError::NotFound("project"))
        ));
    }

    #[tokio::test]
    async fn a_task_status_must_be_a_state_of_its_project_and_defaults_to_the_default_state() {
        use super::super::inputs::CreateTaskBody;
        use super::super::tasks::create_task;
        use keel_domain::tracking::ports::MockTaskRepository;
        let mut tasks = MockTaskRepository::new();
        tasks
            .expect_create()
            .withf(|n, _, _| {
                n.task.status.as_str() == "backlog" && n.task.status_category == StateCategory::Backlog
            })
            .times(1)
            .returning(|n, _, _| Ok(n.task.clone()));
        let mut project = project();
        project.default_state = StateKey::parse("backlog", "key").unwrap();
        let ports = Fixture {
            tasks,
            projects: projects_with(&project, &cast()),
            ..Fixture::default()
        }
        .ports();
        let body = |status: Option<&str>| CreateTaskBody {
            title: "T".into(),
            status: status.map(str::to_owned),
            ..Default::default()
        };
        let e = create_task(&ports, &member(), PROJECT_ID, body(Some("shipped")), &meta())
            .await
            .unwrap_err();
        assert_eq!(fields(e), ["status"]);
        let view = create_task(&ports, &member(), PROJECT_ID, body(None), &meta())
            .await
            .unwrap();
        assert_eq!(
            (view.status.as_str(), view.status_category),
            ("backlog", "backlog")
        );
    }

    #[tokio::test]
    async fn viewers_read_the_states_with_the_default_marked() {
        let ports = Fixture::default().ports();
        let list = list_states(&ports, &viewer(), PROJECT_ID).await.unwrap();
        let defaults: Vec<_> = list
            .data
            .iter()
            .filter(|s| s.is_default)
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(defaults, ["todo"]);
        assert_eq!(list.data.len(), 6);
    }

    #[tokio::test]
    async fn a_category_change_invalidates_the_tasks_the_store_names() {
        let moved = Uuid::from_u128(0x77);
        let mut states = states_listing(the_default_states());
        states
            .expect_update()
            .withf(|s, c| {
                s.key.as_str() == "in_review"
                    && s.category == StateCategory::Completed
                    && c.audit.details.as_ref().unwrap()["changed"] == json!(["category"])
            })
            .times(1)
            .returning(move |_, _| Ok(vec![(PROJECT_ID, moved)]));
        let fixture = Fixture {
            states,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        let body = UpdateStateBody {
            category: Some("completed".into()),
            name: Some("In Review".into()),
            ..Default::default()
        };
        let view = update_state(&ports, &owner(), PROJECT_ID, state_id("in_review"), body, &meta())
            .await
            .unwrap();
        assert_eq!(view.category, "completed");
        let invalidated = cache.invalidated();
        assert!(invalidated.contains(&format!("task:{moved}")), "{invalidated:?}");
        assert!(
            invalidated.contains(&format!("tasks-of:{PROJECT_ID}")),
            "{invalidated:?}"
        );
        // Unknown state: 404; nothing to change: no write.
        assert!(matches!(
            update_state(
                &ports,
                &owner(),
                PROJECT_ID,
                Uuid::nil(),
                UpdateStateBody::default(),
                &meta()
            )
            .await,
            Err(AppError::NotFound("state"))
        ));
        let same = UpdateStateBody {
            name: Some("Todo".into()),
            ..Default::default()
        };
        update_state(&ports, &owner(), PROJECT_ID, state_id("todo"), same, &meta())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_refuses_the_default_and_the_last_state_and_checks_move_to() {
        let ports = Fixture::default().ports();
        let delete = |id: Uuid, to: Option<&'static str>| {
            let ports = ports.clone();
            async move { delete_state(&ports, &owner(), PROJECT_ID, id, to, &meta()).await }
        };
        assert!(matches!(
            delete(state_id("todo"), None).await,
            Err(AppError::Conflict(_))
        ));
        for to in ["done", "nowhere", "Not a key"] {
            assert_eq!(
                fields(delete(state_id("done"), Some(to)).await.unwrap_err()),
                ["moveTo"],
                "{to}"
            );
        }
        assert!(matches!(
            delete(Uuid::nil(), None).await,
            Err(AppError::NotFound("state"))
        ));

        let only = the_default_states()
            .into_iter()
            .filter(|s| s.key.as_str() == "todo")
            .collect();
        let ports = Fixture {
            states: states_listing(only),
            ..Fixture::default()
        }
        .ports();
        assert!(matches!(
            delete_state(&ports, &owner(), PROJECT_ID, state_id("todo"), None, &meta()).await,
            Err(AppError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn deleting_moves_to_the_default_when_no_move_to_is_given() {
        let mut states = states_listing(the_default_states());
        states
            .expect_delete()
            .withf(|p, id, to, _, c| {
                *p == PROJECT_ID
                    && *id == state_id("in_review")
                    && to.as_str() == "todo"
                    && c.audit.action == "state.deleted"
            })
            .times(1)
            .returning(|_, _, _, _, _| Ok(vec![]));
        let fixture = Fixture {
            states,
            ..Fixture::default()
        };
        let cache = fixture.cache.clone();
        let ports = fixture.ports();
        delete_state(&ports, &owner(), PROJECT_ID, state_id("in_review"), None, &meta())
            .await
            .unwrap();
        assert!(cache.invalidated().contains(&format!("project:{PROJECT_ID}")));
        assert!(matches!(
            delete_state(
                &ports,
                &member(),
                PROJECT_ID,
                state_id("in_review"),
                None,
                &meta()
            )
            .await,
            Err(AppError::Forbidden)
        ));
    }
}
