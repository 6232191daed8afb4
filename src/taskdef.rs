//! What a task definition asks of a task: its containers (with a run's overrides applied), the
//! resources it reserves, its required attributes and its placement constraints.
//!
//! Pure functions over a stored [`TaskDefinition`], shared by RunTask and StartTask (the API)
//! and by the service reconciler's leader loop.

use serde_json::{json, Map, Value};

use ecsd_protocol::taskdef as reading;

use crate::model::{Attribute, Reservation, TaskDefinition};
use crate::state::tasks::ContainerSpec;

/// Why a run's overrides cannot apply to the task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideError {
    /// The overrides do not have the shape of the API (a SerializationException).
    Shape(String),
    /// A value is out of range or names no container (an InvalidParameterException).
    Invalid(String),
}

/// The containers of `definition` with the overrides applied, what the task reserves, and the
/// overrides to echo (one entry per container, as ECS answers).
pub fn containers_and_reservation(
    definition: &TaskDefinition,
    overrides: Option<Map<String, Value>>,
) -> Result<(Vec<ContainerSpec>, Reservation, Value), OverrideError> {
    let mut overrides = overrides.unwrap_or_default();
    let given: Vec<Value> = match overrides.remove("containerOverrides") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(OverrideError::Shape(
                "overrides.containerOverrides: expected a list".into(),
            ))
        }
    };
    let body = &definition.body;
    let defs = reading::definitions(body);
    for (i, o) in given.iter().enumerate() {
        let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
        if !defs.iter().any(|d| d.get("name").and_then(Value::as_str) == Some(name)) {
            return Err(OverrideError::Invalid(format!(
                "overrides.containerOverrides[{i}].name: {name} is not a container of the task definition"
            )));
        }
        for key in ["cpu", "memory", "memoryReservation"] {
            if o.get(key)
                .is_some_and(|v| !v.is_null() && v.as_i64().is_none_or(|n| n < 0))
            {
                return Err(OverrideError::Invalid(format!(
                    "overrides.containerOverrides[{i}].{key}: must be a non-negative integer"
                )));
            }
            if o.get(key)
                .and_then(Value::as_i64)
                .is_some_and(|n| n > i64::from(i32::MAX))
            {
                return Err(OverrideError::Invalid(format!(
                    "overrides.containerOverrides[{i}].{key}: must be at most {}",
                    i32::MAX
                )));
            }
        }
    }
    let applied = json!({ "containerOverrides": given });
    let containers = reading::containers(body, &applied);
    let r = reading::reservation(body, &containers);
    let reservation = Reservation {
        cpu: r.cpu,
        memory: r.memory,
        ports: r.ports,
        ports_udp: r.ports_udp,
    };
    let text = |n: Option<i64>| n.map(|n| n.to_string());
    let specs = containers
        .iter()
        .map(|c| ContainerSpec {
            name: c.name.clone(),
            cpu: text(c.cpu),
            memory: text(c.memory),
            memory_reservation: text(c.memory_reservation),
            health_check: c.health_check,
            essential: c.essential,
        })
        .collect();
    let echoed = containers
        .iter()
        .map(|c| {
            given
                .iter()
                .find(|o| o.get("name").and_then(Value::as_str) == Some(&c.name))
                .cloned()
                .unwrap_or_else(|| json!({ "name": c.name }))
        })
        .collect();
    overrides.insert("containerOverrides".into(), Value::Array(echoed));
    overrides
        .entry("inferenceAcceleratorOverrides")
        .or_insert_with(|| json!([]));
    Ok((specs, reservation, Value::Object(overrides)))
}

/// The task definition's `requiresAttributes`.
pub fn required_attributes(definition: &TaskDefinition) -> Vec<Attribute> {
    definition
        .body
        .get("requiresAttributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(Attribute {
                name: a.get("name")?.as_str()?.to_string(),
                value: a.get("value").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

/// The task definition's `placementConstraints`, as registered (only `memberOf` is allowed there).
pub fn definition_constraints(definition: &TaskDefinition) -> Vec<Value> {
    definition
        .body
        .get("placementConstraints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The expressions of the task definition's `memberOf` constraints.
pub fn definition_member_of(definition: &TaskDefinition) -> Vec<String> {
    definition_constraints(definition)
        .iter()
        .filter_map(|c| c.get("expression").and_then(Value::as_str).filter(|e| !e.is_empty()))
        .map(str::to_string)
        .collect()
}

/// The task-level `cpu` and `memory` strings of the definition, when it sets them.
pub fn task_size(definition: &TaskDefinition) -> (Option<String>, Option<String>) {
    let text = |key: &str| definition.body.get(key).and_then(Value::as_str).map(str::to_string);
    (text("cpu"), text("memory"))
}
