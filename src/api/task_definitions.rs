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
        128..=10240,
        "is not between 128 and 10240 CPU units (or 0.125 to 10 vCPU)",
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
    match req.get("requiresCompatibilities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some("EC2") => {}
                    Some("FARGATE") => {
                        return Err(invalid(format!(
                            "requiresCompatibilities[{i}]: the FARGATE launch type is not supported; use EC2"
                        )))
                    }
                    _ => return Err(invalid(format!("requiresCompatibilities[{i}]: must be EC2 or FARGATE"))),
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
    body.insert("compatibilities".into(), json!(["EC2"]));
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
    let status = parse_status(req.status.as_deref(), &["ACTIVE", "INACTIVE"], "ACTIVE")?;
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
