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
