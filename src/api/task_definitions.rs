//! RegisterTaskDefinition, DeregisterTaskDefinition, DescribeTaskDefinition,
//! ListTaskDefinitions and ListTaskDefinitionFamilies.
//!
//! A registration is validated, normalised (defaults the reference gives: `essential`, port
//! protocol, network mode, empty arrays) and stored as ECS JSON, so every field, including ones
//! newer than this code, is returned as it was given.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::wire::{self, TagWire};
use super::{invalid, ApiError, Ctx};
use crate::model::{valid_ecs_name, TaskDefinition};
use crate::state::{task_definitions as tds, Command, Outcome};

const MAX_CONTAINERS: usize = 10;
const MAX_DEFINITION_BYTES: usize = 32 * 1024;
const LIST_MAX: usize = 100;
const NOT_FOUND: &str = "Unable to describe task definition.";

fn client(message: impl Into<String>) -> ApiError {
    ApiError::Client(message.into())
}

fn type_error(field: &str, expected: &str) -> ApiError {
    ApiError::Serialization(format!("{field}: expected {expected}"))
}

fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str, field: &str) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(type_error(field, "a string")),
    }
}

fn opt_int(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| type_error(field, "an integer")),
    }
}

/// The largest value of an ECS `Integer` (a signed 32-bit number in today's model).
pub(super) const MAX_INTEGER: i64 = i32::MAX as i64;

/// An optional integer that must lie in `range`.
fn bounded_int(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    let value = opt_int(obj, key, field)?;
    match value {
        Some(v) if !range.contains(&v) => Err(invalid(format!(
            "{field}: must be between {} and {}",
            range.start(),
            range.end()
        ))),
        _ => Ok(value),
    }
}

/// A container's `healthCheck`: a command, and ECS's ranges for its timings.
fn check_health_check(container: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    let field = format!("{field}.healthCheck");
    let check = match container.get("healthCheck") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(check)) => check,
        Some(_) => return Err(type_error(&field, "an object")),
    };
    match check.get("command") {
        Some(Value::Array(words)) if !words.is_empty() && words.iter().all(Value::is_string) => {}
        Some(Value::Array(words)) if !words.is_empty() => {
            return Err(type_error(&format!("{field}.command"), "a list of strings"))
        }
        _ => return Err(invalid(format!("{field}.command: is required"))),
    }
    for (key, range) in [
        ("interval", 5..=300),
        ("timeout", 2..=60),
        ("retries", 1..=10),
        ("startPeriod", 0..=300),
    ] {
        bounded_int(check, key, &format!("{field}.{key}"), range)?;
    }
    Ok(())
}

const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// A container's `ulimits`: each names a known limit and gives both limits as ECS integers.
fn check_ulimits(container: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    let items = match container.get("ulimits") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(type_error(&format!("{field}.ulimits"), "a list")),
    };
    if items.len() > ULIMIT_NAMES.len() {
        return Err(invalid(format!(
            "{field}.ulimits: at most {} ulimits are allowed",
            ULIMIT_NAMES.len()
        )));
    }
    for (i, item) in items.iter().enumerate() {
        let field = format!("{field}.ulimits[{i}]");
        let Value::Object(limit) = item else {
            return Err(type_error(&field, "an object"));
        };
        let Some(name) = opt_str(limit, "name", &format!("{field}.name"))? else {
            return Err(invalid(format!("{field}.name: is required")));
        };
        one_of(Some(name), ULIMIT_NAMES, &format!("{field}.name"))?;
        for key in ["softLimit", "hardLimit"] {
            let value = bounded_int(limit, key, &format!("{field}.{key}"), 0..=MAX_INTEGER)?;
            if value.is_none() {
                return Err(invalid(format!("{field}.{key}: is required")));
            }
        }
    }
    Ok(())
}

fn one_of(value: Option<&str>, allowed: &[&str], field: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(invalid(format!("{field}: {v} is not one of {}", allowed.join(", ")))),
        _ => Ok(()),
    }
}

/// Parses a task-level size given as an integer (`1024`, `"1024"`) or as a number of a larger
/// unit (`"1 vCPU"`, `"0.5 GB"`: `unit` case-insensitively, worth 1024 base units), and checks
/// it lies in `range`.
fn parse_task_size(
    value: &Value,
    field: &str,
    unit: &str,
    range: std::ops::RangeInclusive<i64>,
    rule: &str,
) -> Result<u32, ApiError> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(type_error(field, "a string")),
    };
    let lower = text.to_ascii_lowercase();
    let amount = match lower.strip_suffix(unit) {
        Some(v) => v.trim().parse::<f64>().ok().map(|v| (v * 1024.0).round() as i64),
        None => lower.parse::<i64>().ok(),
    };
    match amount {
        Some(a) if range.contains(&a) => Ok(a as u32),
        _ => Err(invalid(format!("{field}: {text} {rule}"))),
    }
}

/// Task-level cpu: `"1024"`, `1024`, `"1 vCPU"` or `"0.5 vcpu"`, in CPU units 128..=10240.
fn parse_task_cpu(value: &Value) -> Result<u32, ApiError> {
    parse_task_size(
        value,
        "cpu",
        "vcpu",
        128..=16384,
        "is not between 128 and 16384 CPU units (or 0.125 to 16 vCPU)",
    )
}

/// Task-level memory: `"512"`, `512`, `"1GB"` or `"1 GB"`, in MiB.
fn parse_task_memory(value: &Value) -> Result<u32, ApiError> {
    parse_task_size(
        value,
        "memory",
        "gb",
        4..=i64::from(u32::MAX),
        "is not a memory size in MiB or GB (at least 4 MiB)",
    )
}

/// Validates and normalises one container definition.
fn normalise_container(
    i: usize,
    value: &Value,
    network_mode: &str,
    task_memory: bool,
    names: &mut BTreeSet<String>,
) -> Result<Value, ApiError> {
    let field = format!("containerDefinitions[{i}]");
    let Value::Object(obj) = value else {
        return Err(type_error(&field, "an object"));
    };
    let mut obj = obj.clone();
    let name = opt_str(&obj, "name", &format!("{field}.name"))?
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(client("Container.name should not be null or empty."));
    }
    if !valid_ecs_name(&name) {
        return Err(invalid(format!(
            "{field}.name: must be 1 to 255 letters, numbers, hyphens and underscores"
        )));
    }
    if !names.insert(name.clone()) {
        return Err(client(format!("Duplicate container name {name} in task definition.")));
    }
    let image = opt_str(&obj, "image", &format!("{field}.image"))?.unwrap_or_default();
    if image.is_empty() {
        return Err(client("Container.image should not be null or empty."));
    }
    if image.len() > 255 {
        return Err(invalid(format!("{field}.image: must be at most 255 characters")));
    }
    let memory = opt_int(&obj, "memory", &format!("{field}.memory"))?;
    let reservation = opt_int(&obj, "memoryReservation", &format!("{field}.memoryReservation"))?;
    let cpu = opt_int(&obj, "cpu", &format!("{field}.cpu"))?;
    if cpu.is_some_and(|c| c < 0) {
        return Err(invalid(format!("{field}.cpu: must not be negative")));
    }
    if cpu.is_some_and(|c| c > MAX_INTEGER) {
        return Err(invalid(format!("{field}.cpu: must be at most {MAX_INTEGER}")));
    }
    for (key, v) in [("memory", memory), ("memoryReservation", reservation)] {
        if v.is_some_and(|m| m < 4) {
            return Err(invalid(format!("{field}.{key}: must be at least 4 MiB")));
        }
        if v.is_some_and(|m| m > MAX_INTEGER) {
            return Err(invalid(format!("{field}.{key}: must be at most {MAX_INTEGER} MiB")));
        }
    }
    for key in ["stopTimeout", "startTimeout"] {
        bounded_int(&obj, key, &format!("{field}.{key}"), 0..=MAX_INTEGER)?;
    }
    check_health_check(&obj, &field)?;
    check_ulimits(&obj, &field)?;
    if !task_memory && memory.is_none() && reservation.is_none() {
        return Err(client(format!(
            "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
        )));
    }
    if let (Some(m), Some(r)) = (memory, reservation) {
        if m < r {
            return Err(client(format!(
                "Invalid setting for container '{name}'. 'memory' must be greater than or equal to 'memoryReservation'."
            )));
        }
    }
    match obj.get("essential") {
        None | Some(Value::Null) => {
            obj.insert("essential".into(), Value::Bool(true));
        }
        Some(Value::Bool(_)) => {}
        Some(_) => return Err(type_error(&format!("{field}.essential"), "a boolean")),
    }
    if obj
        .get("links")
        .is_some_and(|l| l.as_array().is_some_and(|a| !a.is_empty()))
        && network_mode != "bridge"
    {
        return Err(client(format!(
            "{field}.links: links are supported only with the bridge network mode"
        )));
    }
    if network_mode == "awsvpc" && obj.get("hostname").is_some_and(|h| !h.is_null()) {
        return Err(client(
            "hostname is not supported on container when networkMode=awsvpc.",
        ));
    }
    let mut mappings = Vec::new();
    if let Some(pm) = obj.get("portMappings").filter(|v| !v.is_null()) {
        let Value::Array(items) = pm else {
            return Err(type_error(&format!("{field}.portMappings"), "a list"));
        };
        if !items.is_empty() && network_mode == "none" {
            return Err(client("Port mappings are not allowed with the none network mode."));
        }
        for (j, item) in items.iter().enumerate() {
            let pfield = format!("{field}.portMappings[{j}]");
            let Value::Object(p) = item else {
                return Err(type_error(&pfield, "an object"));
            };
            let mut p = p.clone();
            let container_port = opt_int(&p, "containerPort", &format!("{pfield}.containerPort"))?;
            let host_port = opt_int(&p, "hostPort", &format!("{pfield}.hostPort"))?;
            let protocol = opt_str(&p, "protocol", &format!("{pfield}.protocol"))?
                .unwrap_or("tcp")
                .to_string();
            one_of(Some(&protocol), &["tcp", "udp"], &format!("{pfield}.protocol"))?;
            let Some(cp) = container_port else {
                return Err(invalid(format!("{pfield}.containerPort: is required")));
            };
            if !(1..=65535).contains(&cp) {
                return Err(invalid(format!("{pfield}.containerPort: must be between 1 and 65535")));
            }
            if host_port.is_some_and(|h| !(0..=65535).contains(&h)) {
                return Err(invalid(format!("{pfield}.hostPort: must be between 0 and 65535")));
            }
            if network_mode == "host" || network_mode == "awsvpc" {
                if host_port.is_some_and(|h| h != cp) {
                    return Err(client(format!(
                        "{pfield}: with the {network_mode} network mode hostPort must equal containerPort"
                    )));
                }
                p.insert("hostPort".into(), json!(cp));
            }
            p.insert("protocol".into(), json!(protocol));
            mappings.push(Value::Object(p));
        }
    }
    obj.insert("portMappings".into(), Value::Array(mappings));
    for key in ["environment", "mountPoints", "volumesFrom"] {
        if obj.get(key).is_none_or(Value::is_null) {
            obj.insert(key.into(), json!([]));
        }
    }
    Ok(Value::Object(obj))
}

/// The task sizes Fargate offers: each CPU value with its memory range in MiB and the step.
const FARGATE_SIZES: [(u32, u32, u32, u32); 7] = [
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// Whether Fargate offers a task of `cpu` units and `memory` MiB.
pub(crate) fn fargate_size(cpu: u32, memory: u32) -> bool {
    FARGATE_SIZES.iter().any(|&(c, low, high, step)| {
        let in_range = c == cpu && (low..=high).contains(&memory);
        // 256 CPU units take 512, 1024 or 2048 MiB only.
        in_range
            && if c == 256 {
                matches!(memory, 512 | 1024 | 2048)
            } else {
                (memory - low) % step == 0
            }
    })
}

/// Whether a (normalised) task definition can run on Fargate, and if not, ECS's reason: the
/// awsvpc network mode, a task size Fargate offers, and none of what Fargate does not support.
fn fargate_fit(
    body: &Map<String, Value>,
    network_mode: &str,
    cpu: Option<u32>,
    memory: Option<u32>,
) -> Result<(), ApiError> {
    if network_mode != "awsvpc" {
        return Err(client("Fargate only supports network mode 'awsvpc'."));
    }
    let cpu = cpu.ok_or_else(|| client("Fargate requires that 'cpu' be defined at the task level."))?;
    let memory = memory.ok_or_else(|| client("Fargate requires that 'memory' be defined at the task level."))?;
    if !fargate_size(cpu, memory) {
        return Err(client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        )));
    }
    if body.get("ipcMode").is_some_and(|m| !m.is_null()) {
        return Err(client("Tasks using the Fargate launch type do not support ipcMode."));
    }
    if body.get("pidMode").and_then(Value::as_str) == Some("host") {
        return Err(client(
            "pidMode: Tasks using the Fargate launch type support only the task pid mode.",
        ));
    }
    if body
        .get("placementConstraints")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(client(
            "placementConstraints: Tasks using the Fargate launch type do not support placement constraints.",
        ));
    }
    for (i, volume) in items(body, "volumes").enumerate() {
        if volume.pointer("/host/sourcePath").is_some_and(|p| !p.is_null()) {
            return Err(client(format!(
                "volumes[{i}].host.sourcePath: Tasks using the Fargate launch type do not support host paths."
            )));
        }
        if volume.get("dockerVolumeConfiguration").is_some_and(|v| !v.is_null()) {
            return Err(client(format!(
                "volumes[{i}].dockerVolumeConfiguration: Tasks using the Fargate launch type do not support Docker volumes."
            )));
        }
    }
    for (i, c) in items(body, "containerDefinitions").enumerate() {
        let field = format!("containerDefinitions[{i}]");
        if c.get("privileged") == Some(&Value::Bool(true)) {
            return Err(client(format!(
                "{field}.privileged: Tasks using the Fargate launch type do not support privileged containers."
            )));
        }
        if c.pointer("/linuxParameters/devices")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
        {
            return Err(client(format!(
                "{field}.linuxParameters.devices: Tasks using the Fargate launch type do not support devices."
            )));
        }
        for key in ["startTimeout", "stopTimeout"] {
            if c.get(key)
                .and_then(Value::as_i64)
                .is_some_and(|t| !(2..=120).contains(&t))
            {
                return Err(client(format!(
                    "{field}.{key}: Tasks using the Fargate launch type take a timeout of 2 to 120 seconds."
                )));
            }
        }
    }
    Ok(())
}

/// The items of the list `key` of a task definition (none when it has no such list).
fn items<'a>(body: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    body.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Volumes have unique names, and every container's `mountPoints` name one of them.
fn check_volumes(body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut names = BTreeSet::new();
    for (i, volume) in items(body, "volumes").enumerate() {
        let Some(name) = volume.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Err(invalid(format!("volumes[{i}].name: is required")));
        };
        if !names.insert(name) {
            return Err(client(format!("Duplicate volume name {name} in task definition.")));
        }
    }
    for (i, c) in items(body, "containerDefinitions").enumerate() {
        let mounts = match c.get("mountPoints") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(m)) => m,
            Some(_) => return Err(type_error(&format!("containerDefinitions[{i}].mountPoints"), "a list")),
        };
        for (j, mount) in mounts.iter().enumerate() {
            let field = format!("containerDefinitions[{i}].mountPoints[{j}].sourceVolume");
            let source = match mount.get("sourceVolume") {
                Some(Value::String(s)) if !s.is_empty() => s,
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    return Err(invalid(format!("{field}: is required")))
                }
                Some(_) => return Err(type_error(&field, "a string")),
            };
            if !names.contains(source.as_str()) {
                return Err(client(format!(
                    "Invalid 'containerDefinitions[{i}].mountPoints[{j}].sourceVolume' setting for container '{}'. The volume '{source}' is not defined in the task definition's volumes.",
                    c.get("name").and_then(Value::as_str).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// No container asks for more memory than its task has.
fn check_container_memory(body: &Map<String, Value>, task_memory: Option<u32>) -> Result<(), ApiError> {
    let Some(task_memory) = task_memory else {
        return Ok(());
    };
    for c in items(body, "containerDefinitions") {
        let asked = ["memory", "memoryReservation"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_i64))
            .max();
        if asked.is_some_and(|m| m > i64::from(task_memory)) {
            return Err(client(format!(
                "The 'memory' setting for container '{}' is greater than for the task.",
                c.get("name").and_then(Value::as_str).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

fn task_definition_to_wire(d: &TaskDefinition) -> Value {
    let mut body = match &d.body {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    body.insert("taskDefinitionArn".into(), json!(d.arn));
    body.insert("family".into(), json!(d.family));
    body.insert("revision".into(), json!(d.revision));
    body.insert("status".into(), json!(d.status.as_str()));
    body.insert("registeredAt".into(), wire::epoch_seconds(d.registered_at_ms));
    if let Some(at) = d.deregistered_at_ms {
        body.insert("deregisteredAt".into(), wire::epoch_seconds(at));
    }
    Value::Object(body)
}

fn definition_outcome(outcome: Outcome, with_tags: bool) -> Result<Value, ApiError> {
    match outcome {
        Outcome::TaskDefinition(d) => {
            let mut out = json!({ "taskDefinition": task_definition_to_wire(&d) });
            if with_tags {
                out["tags"] = serde_json::to_value(wire::tags_to_wire(&d.tags)).unwrap_or_default();
            }
            Ok(out)
        }
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server(
            "unexpected outcome for a task definition command".into(),
        )),
    }
}

pub async fn register_task_definition(ctx: &Ctx<'_>, req: Map<String, Value>) -> Result<Value, ApiError> {
    let family = opt_str(&req, "family", "family")?.unwrap_or_default().to_string();
    if family.is_empty() {
        return Err(invalid("family: is required"));
    }
    if !valid_ecs_name(&family) {
        return Err(invalid(
            "family: must be 1 to 255 letters, numbers, hyphens and underscores",
        ));
    }
    let network_mode = opt_str(&req, "networkMode", "networkMode")?
        .unwrap_or("bridge")
        .to_string();
    one_of(
        Some(&network_mode),
        &["bridge", "host", "awsvpc", "none"],
        "networkMode",
    )?;
    one_of(opt_str(&req, "pidMode", "pidMode")?, &["host", "task"], "pidMode")?;
    one_of(
        opt_str(&req, "ipcMode", "ipcMode")?,
        &["host", "task", "none"],
        "ipcMode",
    )?;
    for key in ["taskRoleArn", "executionRoleArn"] {
        opt_str(&req, key, key)?;
    }
    let mut body = req.clone();
    let tags: Option<Vec<TagWire>> = match body.remove("tags") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value(v).map_err(|e| ApiError::Serialization(format!("tags: {e}")))?),
    };
    let tags = wire::tags_from_wire("tags", tags)?;
    if let Some(cpu) = req.get("cpu").filter(|v| !v.is_null()) {
        body.insert("cpu".into(), json!(parse_task_cpu(cpu)?.to_string()));
    }
    let task_memory = match req.get("memory").filter(|v| !v.is_null()) {
        Some(memory) => {
            body.insert("memory".into(), json!(parse_task_memory(memory)?.to_string()));
            true
        }
        None => false,
    };
    let mut requires = Vec::new();
    match req.get("requiresCompatibilities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(c @ ("EC2" | "FARGATE" | "EXTERNAL")) => requires.push(c),
                    _ => {
                        return Err(invalid(format!(
                            "requiresCompatibilities[{i}]: must be one of EC2, FARGATE, EXTERNAL"
                        )))
                    }
                }
            }
        }
        Some(_) => return Err(type_error("requiresCompatibilities", "a list")),
    }
    if let Some(constraints) = req.get("placementConstraints").filter(|v| !v.is_null()) {
        let Value::Array(items) = constraints else {
            return Err(type_error("placementConstraints", "a list"));
        };
        if items.len() > 10 {
            return Err(invalid("placementConstraints: at most 10 constraints are allowed"));
        }
        for (i, item) in items.iter().enumerate() {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind != "memberOf" {
                return Err(invalid(format!(
                    "placementConstraints[{i}].type: only memberOf is allowed in a task definition"
                )));
            }
            // Checked here, once, so a stored expression always parses when a task is placed.
            let field = format!("placementConstraints[{i}].expression");
            let expression = match item.get("expression") {
                Some(Value::String(e)) if !e.is_empty() => e,
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    return Err(invalid(format!("{field}: memberOf needs an expression")))
                }
                Some(_) => return Err(type_error(&field, "a string")),
            };
            super::tasks::check_expression(&field, expression)?;
        }
    }
    let containers = match req.get("containerDefinitions") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(invalid(
                "containerDefinitions: at least one container definition is required",
            ))
        }
        Some(_) => return Err(type_error("containerDefinitions", "a list")),
    };
    if containers.len() > MAX_CONTAINERS {
        return Err(invalid(format!(
            "containerDefinitions: at most {MAX_CONTAINERS} containers are allowed"
        )));
    }
    let mut names = BTreeSet::new();
    let normalised = containers
        .iter()
        .enumerate()
        .map(|(i, c)| normalise_container(i, c, &network_mode, task_memory, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    if !normalised
        .iter()
        .any(|c| c.get("essential") == Some(&Value::Bool(true)))
    {
        return Err(client("Task definition must have at least one essential container."));
    }
    body.insert("containerDefinitions".into(), Value::Array(normalised));
    body.insert("networkMode".into(), json!(network_mode));
    for key in ["volumes", "placementConstraints", "requiresAttributes"] {
        if body.get(key).is_none_or(Value::is_null) {
            body.insert(key.into(), json!([]));
        }
    }
    check_volumes(&body)?;
    let task_cpu = body
        .get("cpu")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<u32>().ok());
    let task_memory_mib = body
        .get("memory")
        .and_then(Value::as_str)
        .and_then(|m| m.parse::<u32>().ok());
    check_container_memory(&body, task_memory_mib)?;
    let fargate = fargate_fit(&body, &network_mode, task_cpu, task_memory_mib);
    if requires.contains(&"FARGATE") {
        fargate.clone()?;
    }
    let mut compatibilities = vec!["EC2"];
    if fargate.is_ok() {
        compatibilities.push("FARGATE");
    }
    if requires.contains(&"EXTERNAL") {
        compatibilities.push("EXTERNAL");
    }
    body.insert("compatibilities".into(), json!(compatibilities));
    // Server-assigned fields are never taken from the request.
    for key in [
        "taskDefinitionArn",
        "revision",
        "status",
        "registeredAt",
        "deregisteredAt",
        "registeredBy",
    ] {
        body.remove(key);
    }
    let body = Value::Object(body);
    if body.to_string().len() > MAX_DEFINITION_BYTES {
        return Err(client(format!(
            "Task definition exceeds the limit of {MAX_DEFINITION_BYTES} bytes."
        )));
    }
    let arn_base = ctx.state.scope.task_definition_arn_base(&family);
    let outcome = ctx
        .propose(Command::RegisterTaskDefinition {
            family,
            arn_base,
            body,
            tags,
        })
        .await?;
    definition_outcome(outcome, true)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionRequest {
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
}

pub async fn deregister_task_definition(ctx: &Ctx<'_>, req: TaskDefinitionRequest) -> Result<Value, ApiError> {
    let id = req
        .task_definition
        .ok_or_else(|| invalid("taskDefinition: is required"))?;
    let Some((family, revision)) = ctx.state.scope.task_definition_ref(&id) else {
        return Err(client(format!(
            "taskDefinition: {id} is not a family:revision or task definition ARN"
        )));
    };
    let revision = revision.ok_or_else(|| client("Revision is missing."))?;
    let outcome = ctx
        .propose(Command::DeregisterTaskDefinition {
            family: family.to_string(),
            revision,
        })
        .await?;
    definition_outcome(outcome, false)
}

pub async fn describe_task_definition(ctx: &Ctx<'_>, req: TaskDefinitionRequest) -> Result<Value, ApiError> {
    let id = req
        .task_definition
        .ok_or_else(|| invalid("taskDefinition: is required"))?;
    let mut with_tags = false;
    for (i, value) in req.include.unwrap_or_default().iter().enumerate() {
        match value.as_str() {
            "TAGS" => with_tags = true,
            other => return Err(invalid(format!("include[{i}]: {other} is not TAGS"))),
        }
    }
    let Some((family, revision)) = ctx.state.scope.task_definition_ref(&id) else {
        return Err(client(NOT_FOUND));
    };
    let view = ctx.read_view().await?;
    let found = match revision {
        Some(r) => tds::get(view, family, r)?,
        None => tds::latest_active(view, family)?,
    };
    let definition = found.ok_or_else(|| client(NOT_FOUND))?;
    let mut out = json!({ "taskDefinition": task_definition_to_wire(&definition) });
    if with_tags {
        out["tags"] = serde_json::to_value(wire::tags_to_wire(&definition.tags)).unwrap_or_default();
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsRequest {
    #[serde(default)]
    family_prefix: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

fn parse_status(value: Option<&str>, allowed: &[&str], default: &'static str) -> Result<String, ApiError> {
    let status = value.unwrap_or(default);
    one_of(Some(status), allowed, "status")?;
    Ok(status.to_string())
}

pub async fn list_task_definitions(ctx: &Ctx<'_>, req: ListTaskDefinitionsRequest) -> Result<Value, ApiError> {
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let status = parse_status(
        req.status.as_deref(),
        &["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"],
        "ACTIVE",
    )?;
    let descending = match req.sort.as_deref().unwrap_or("ASC") {
        "ASC" => false,
        "DESC" => true,
        other => return Err(invalid(format!("sort: {other} is not one of ASC, DESC"))),
    };
    let params = format!("{:?}", (&req.family_prefix, &status, descending));
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => {
            let position = wire::decode_token("taskdefs", &params, token)?;
            let (family, revision) = position.rsplit_once(':').ok_or_else(|| invalid("nextToken: invalid"))?;
            let revision: u32 = revision.parse().map_err(|_| invalid("nextToken: invalid"))?;
            Some((family.to_string(), revision))
        }
        None => None,
    };
    ctx.read_view().await?;
    let family = req.family_prefix;
    let mut items = ctx
        .off_runtime(move |view| {
            let position = after.as_ref().map(|(f, r)| (f.as_str(), *r));
            // One more than a page: whether there is a next page.
            let page = tds::page(view, family.as_deref(), descending, position, limit + 1, |d| {
                d.status.as_str() == status
            })?;
            Ok(page)
        })
        .await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let mut out = json!({ "taskDefinitionArns": items.iter().map(|d| d.arn.as_str()).collect::<Vec<_>>() });
    if more {
        if let Some(last) = items.last() {
            out["nextToken"] = json!(wire::encode_token(
                "taskdefs",
                &params,
                &format!("{}:{}", last.family, last.revision)
            ));
        }
    }
    Ok(out)
}

pub async fn list_task_definition_families(ctx: &Ctx<'_>, req: ListTaskDefinitionsRequest) -> Result<Value, ApiError> {
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let status = parse_status(req.status.as_deref(), &["ACTIVE", "INACTIVE", "ALL"], "ALL")?;
    let params = format!("{:?}", (&req.family_prefix, &status));
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("families", &params, token)?),
        None => None,
    };
    ctx.read_view().await?;
    let prefix = req.family_prefix.unwrap_or_default();
    let matching = ctx
        .off_runtime(move |view| {
            // One more than a page: whether there is a next page.
            let page = tds::families_page(view, &prefix, after.as_deref(), limit + 1, |_, active| {
                match status.as_str() {
                    "ACTIVE" => active,
                    "INACTIVE" => !active,
                    _ => true,
                }
            })?;
            Ok(page)
        })
        .await?;
    let page: Vec<&String> = matching.iter().take(limit).collect();
    let mut out = json!({ "families": page });
    if matching.len() > page.len() {
        if let Some(last) = page.last() {
            out["nextToken"] = json!(wire::encode_token("families", &params, last));
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsRequest {
    #[serde(default)]
    task_definitions: Option<Vec<String>>,
}

/// DeleteTaskDefinitions: up to 10 INACTIVE revisions become DELETE_IN_PROGRESS; the rest are
/// failures, each with ECS's reason.
pub async fn delete_task_definitions(ctx: &Ctx<'_>, req: DeleteTaskDefinitionsRequest) -> Result<Value, ApiError> {
    let given = wire::describe_ids("taskDefinitions", req.task_definitions, 10)?;
    ctx.require_modern("DeleteTaskDefinitions")?;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for id in given {
        let Some((family, Some(revision))) = ctx.state.scope.task_definition_ref(&id) else {
            failures.push(json!({ "arn": id, "reason": "The specified task definition identifier is invalid. Specify a valid name or ARN and try again." }));
            continue;
        };
        let command = Command::DeleteTaskDefinition {
            family: family.to_string(),
            revision,
        };
        match ctx.propose(command).await? {
            Outcome::TaskDefinition(d) => deleted.push(task_definition_to_wire(&d)),
            Outcome::Rejected(r) => {
                let reason = ApiError::from(r).to_string();
                failures.push(json!({ "arn": id, "reason": reason }));
            }
            _ => return Err(ApiError::Server("unexpected outcome for DeleteTaskDefinitions".into())),
        }
    }
    Ok(json!({ "taskDefinitions": deleted, "failures": failures }))
}

#[cfg(test)]
mod tests {
    use super::fargate_size;

    #[test]
    fn fargate_sizes_are_fargates_table() {
        for (cpu, memory) in [
            (256, 512),
            (256, 2048),
            (512, 4096),
            (1024, 3072),
            (4096, 30720),
            (8192, 20480),
            (16384, 122880),
        ] {
            assert!(fargate_size(cpu, memory), "{cpu} {memory}");
        }
        for (cpu, memory) in [
            (256, 1536),
            (256, 256),
            (512, 512),
            (1024, 9216),
            (8192, 18432),
            (16384, 36864),
            (128, 512),
            (2048, 2048),
        ] {
            assert!(!fargate_size(cpu, memory), "{cpu} {memory}");
        }
    }
}
