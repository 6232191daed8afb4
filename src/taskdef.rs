//! What a task definition asks of a task: its containers (with a run's overrides applied), the
//! resources it reserves, its required attributes and its placement constraints.
//!
//! Pure functions over a stored [`TaskDefinition`], shared by RunTask and StartTask (the API)
//! and by the service reconciler's leader loop.

use serde_json::{json, Map, Value};

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

fn int_field(value: Option<&Value>) -> Option<i64> {
    value.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
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
    let defs: Vec<&Value> = body
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
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
        }
    }
    let network_mode = body.get("networkMode").and_then(Value::as_str).unwrap_or("bridge");
    let mut reservation = Reservation::default();
    let mut specs = Vec::new();
    let mut echoed = Vec::new();
    for d in defs {
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let o = given
            .iter()
            .find(|o| o.get("name").and_then(Value::as_str) == Some(&name));
        let pick = |key: &str| int_field(o.and_then(|o| o.get(key)).filter(|v| !v.is_null())).or(int_field(d.get(key)));
        let (cpu, memory, memory_reservation) = (pick("cpu"), pick("memory"), pick("memoryReservation"));
        reservation.cpu += cpu.unwrap_or(0);
        reservation.memory += memory_reservation.or(memory).unwrap_or(0);
        for m in d.get("portMappings").and_then(Value::as_array).into_iter().flatten() {
            let container_port = int_field(m.get("containerPort")).unwrap_or(0);
            let host_port = match network_mode {
                "host" => int_field(m.get("hostPort")).unwrap_or(container_port),
                _ => int_field(m.get("hostPort")).unwrap_or(0),
            };
            if let Ok(port) = u16::try_from(host_port) {
                if port != 0 {
                    let udp = m.get("protocol").and_then(Value::as_str) == Some("udp");
                    let set = if udp {
                        &mut reservation.ports_udp
                    } else {
                        &mut reservation.ports
                    };
                    if !set.contains(&port) {
                        set.push(port);
                    }
                }
            }
        }
        specs.push(ContainerSpec {
            name: name.clone(),
            cpu: cpu.map(|c| c.to_string()),
            memory: memory.map(|m| m.to_string()),
            memory_reservation: memory_reservation.map(|m| m.to_string()),
            health_check: d.get("healthCheck").is_some_and(|h| !h.is_null()),
            essential: d.get("essential").and_then(Value::as_bool).unwrap_or(true),
        });
        echoed.push(o.cloned().unwrap_or_else(|| json!({ "name": name })));
    }
    // Task-level sizes take precedence over the containers'.
    if let Some(cpu) = int_field(body.get("cpu")) {
        reservation.cpu = cpu;
    }
    if let Some(memory) = int_field(body.get("memory")) {
        reservation.memory = memory;
    }
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

pub fn definition_constraints(definition: &TaskDefinition) -> Vec<Value> {
    definition
        .body
        .get("placementConstraints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The task-level `cpu` and `memory` strings of the definition, when it sets them.
pub fn task_size(definition: &TaskDefinition) -> (Option<String>, Option<String>) {
    let text = |key: &str| definition.body.get(key).and_then(Value::as_str).map(str::to_string);
    (text("cpu"), text("memory"))
}
