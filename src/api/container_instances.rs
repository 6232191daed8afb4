//! RegisterContainerInstance, DescribeContainerInstances, ListContainerInstances,
//! DeregisterContainerInstance, UpdateContainerInstancesState and DiscoverPollEndpoint.

use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{self, Failure, TagWire};
use super::{cluster_name, invalid, ApiError, Ctx};
use crate::model::{Attribute, ContainerInstance, InstanceStatus, Resource};
use crate::state::container_instances::{self as cis, Registration};
use crate::state::{Command, Outcome};

const MAX_DESCRIBE: usize = 100;
const LIST_MAX: usize = 100;
const MAX_STATE_UPDATE: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    double_value: Option<f64>,
    #[serde(default)]
    long_value: Option<i64>,
    #[serde(default)]
    integer_value: Option<i64>,
    #[serde(default)]
    string_set_value: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

impl AttributeWire {
    pub fn new(name: Option<String>, value: Option<String>) -> Self {
        AttributeWire { name, value }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    instance_identity_document: Option<String>,
    #[serde(default)]
    total_resources: Option<Vec<ResourceWire>>,
    #[serde(default)]
    version_info: Option<Value>,
    #[serde(default)]
    container_instance_arn: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<AttributeWire>>,
    #[serde(default)]
    tags: Option<Vec<TagWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancesRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    container_instance: Option<String>,
    #[serde(default)]
    container_instances: Option<Vec<String>>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

fn resource_to_wire(r: &Resource) -> Value {
    // The amount shows in the field of the resource's type; the others read 0, as ECS answers.
    let field = |kind: &str, value: Value| if r.kind == kind { value } else { json!(0) };
    let mut v = json!({
        "name": r.name,
        "type": r.kind,
        "doubleValue": if r.kind == "DOUBLE" { json!(r.double_value) } else { json!(0.0) },
        "longValue": field("LONG", json!(r.long_value)),
        "integerValue": field("INTEGER", json!(r.integer_value)),
    });
    if r.kind == "STRINGSET" {
        v["stringSetValue"] = json!(r.string_set_value);
    }
    v
}

fn instance_to_wire(i: &ContainerInstance, with_tags: bool) -> Value {
    let mut v = json!({
        "containerInstanceArn": i.arn,
        "ec2InstanceId": i.ec2_instance_id,
        "version": i.version,
        "versionInfo": i.version_info,
        "remainingResources": i.remaining_resources.iter().map(resource_to_wire).collect::<Vec<_>>(),
        "registeredResources": i.registered_resources.iter().map(resource_to_wire).collect::<Vec<_>>(),
        "status": i.status.as_str(),
        "agentConnected": i.agent_connected,
        "runningTasksCount": i.running_tasks,
        "pendingTasksCount": i.pending_tasks,
        "attributes": i.attributes.iter().map(|a| match &a.value {
            Some(value) => json!({"name": a.name, "value": value}),
            None => json!({"name": a.name}),
        }).collect::<Vec<_>>(),
        "registeredAt": wire::epoch_seconds(i.registered_at_ms),
        "attachments": [],
    });
    if let Some(status) = &i.agent_update_status {
        v["agentUpdateStatus"] = json!(status);
    }
    if with_tags {
        v["tags"] = json!(wire::tags_to_wire(&i.tags));
    }
    v
}

fn resources_from_wire(resources: Vec<ResourceWire>) -> Result<Vec<Resource>, ApiError> {
    let mut out: Vec<Resource> = Vec::new();
    for (i, r) in resources.into_iter().enumerate() {
        let field = format!("totalResources[{i}]");
        let name = r
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(format!("{field}.name: is required")))?;
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(format!("{field}.name: duplicate resource {name}")));
        }
        let kind = r.kind.unwrap_or_else(|| {
            if r.string_set_value.is_some() {
                "STRINGSET"
            } else {
                "INTEGER"
            }
            .into()
        });
        if !["INTEGER", "LONG", "DOUBLE", "STRINGSET"].contains(&kind.as_str()) {
            return Err(invalid(format!(
                "{field}.type: {kind} is not one of INTEGER, LONG, DOUBLE, STRINGSET"
            )));
        }
        let integer_value = r.integer_value.unwrap_or(0);
        if integer_value < 0 || r.long_value.unwrap_or(0) < 0 || r.double_value.unwrap_or(0.0) < 0.0 {
            return Err(invalid(format!("{field}: values must not be negative")));
        }
        let string_set_value = r.string_set_value.unwrap_or_default();
        if name == "PORTS" || name == "PORTS_UDP" {
            if let Some(bad) = string_set_value
                .iter()
                .find(|p| p.parse::<u16>().map_or(true, |p| p == 0))
            {
                return Err(invalid(format!("{field}.stringSetValue: {bad} is not a port number")));
            }
        }
        // One amount per numeric resource, kept in all three fields alike, so placement reads and
        // adjusts a single value whatever type the client named: the field of its type, or the
        // largest one given.
        let amount = match kind.as_str() {
            "INTEGER" => r.integer_value,
            "LONG" => r.long_value,
            "DOUBLE" => r.double_value.map(|d| d as i64),
            _ => None,
        }
        .unwrap_or_else(|| {
            integer_value
                .max(r.long_value.unwrap_or(0))
                .max(r.double_value.unwrap_or(0.0) as i64)
        });
        let numeric = kind != "STRINGSET";
        out.push(Resource {
            name,
            kind,
            integer_value: if numeric { amount } else { 0 },
            long_value: if numeric { amount } else { 0 },
            double_value: if numeric { amount as f64 } else { 0.0 },
            string_set_value,
        });
    }
    Ok(out)
}

/// Attribute names: 1 to 128 letters, digits, hyphens, underscores and periods.
/// Values: up to 128 letters, digits, hyphens, underscores, periods, at signs, slashes, colons
/// and spaces.
pub fn attributes_from_wire(field: &str, attributes: Vec<AttributeWire>) -> Result<Vec<Attribute>, ApiError> {
    let mut out: Vec<Attribute> = Vec::new();
    for (i, a) in attributes.into_iter().enumerate() {
        let name = a.name.unwrap_or_default();
        let name_ok =
            (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(invalid(format!(
                "{field}[{i}].name: must be 1 to 128 letters, numbers, hyphens, underscores and periods"
            )));
        }
        if let Some(value) = &a.value {
            let ok = (1..=128).contains(&value.len())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@/: ".contains(c));
            if !ok {
                return Err(invalid(format!(
                    "{field}[{i}].value: must be 1 to 128 letters, numbers, hyphens, underscores, periods, at signs, slashes, colons and spaces"
                )));
            }
        }
        match out.iter_mut().find(|o| o.name == name) {
            Some(existing) => existing.value = a.value,
            None => out.push(Attribute { name, value: a.value }),
        }
    }
    Ok(out)
}

fn instance_outcome(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::ContainerInstance(i) => Ok(json!({ "containerInstance": instance_to_wire(&i, true) })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server(
            "unexpected outcome for a container instance command".into(),
        )),
    }
}

pub async fn register_container_instance(ctx: &Ctx<'_>, req: RegisterRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let existing_id = match req.container_instance_arn.as_deref().filter(|a| !a.is_empty()) {
        Some(arn) => Some(
            ctx.state
                .scope
                .container_instance_id(&cluster, arn)
                .ok_or_else(|| {
                    invalid(format!(
                        "containerInstanceArn: {arn} is not an instance of cluster {cluster}"
                    ))
                })?
                .to_string(),
        ),
        None => None,
    };
    let total_resources = resources_from_wire(req.total_resources.unwrap_or_default())?;
    let attributes = attributes_from_wire("attributes", req.attributes.unwrap_or_default())?;
    let tags = wire::tags_from_wire("tags", req.tags)?;
    let uuid = crate::stamp::fresh_uuid();
    let ec2_instance_id = req
        .instance_identity_document
        .as_deref()
        .and_then(|doc| serde_json::from_str::<Value>(doc).ok())
        .and_then(|doc| doc.get("instanceId").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| format!("i-{}", &uuid.simple().to_string()[..17]));
    let registration = Registration {
        cluster,
        uuid: uuid.hyphenated().to_string(),
        existing_id,
        ec2_instance_id,
        total_resources,
        attributes,
        version_info: req.version_info.unwrap_or_else(|| json!({})),
        tags,
        principal: ctx.caller.principal_arn.clone(),
        agent: (ctx.caller.role == crate::model::Role::Agent).then(|| ctx.caller.name.clone()),
        root: ctx.state.scope.root_principal(),
        long_by_default: ctx.state.scope.long_arns_by_default && ctx.modern(),
        arn_prefix: ctx.state.scope.arn_prefix(),
    };
    instance_outcome(
        ctx.propose(Command::RegisterContainerInstance(Box::new(registration)))
            .await?,
    )
}

/// The cluster and instance ID named by `cluster` and `containerInstance` (required).
fn one_instance(ctx: &Ctx<'_>, req: &InstancesRequest) -> Result<(String, String), ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let given = req
        .container_instance
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("containerInstance: is required"))?;
    let id = ctx
        .state
        .scope
        .container_instance_id(&cluster, given)
        .ok_or_else(|| invalid("The referenced container instance is not registered or is inactive."))?
        .to_string();
    Ok((cluster, id))
}

pub async fn deregister_container_instance(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    let (cluster, id) = one_instance(ctx, &req)?;
    super::auth::agent_owns_instance(ctx, &cluster, &id).await?;
    let command = Command::DeregisterContainerInstance {
        cluster,
        id,
        force: req.force.unwrap_or(false),
    };
    instance_outcome(ctx.propose(command).await?)
}

pub async fn update_container_instances_state(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let status = match req.status.as_deref() {
        Some("ACTIVE") => InstanceStatus::Active,
        Some("DRAINING") => InstanceStatus::Draining,
        Some(other) => return Err(invalid(format!("status: {other} is not one of ACTIVE, DRAINING"))),
        None => return Err(invalid("status: is required")),
    };
    let given = req.container_instances.unwrap_or_default();
    if given.is_empty() || given.len() > MAX_STATE_UPDATE {
        return Err(invalid(format!(
            "containerInstances: give 1 to {MAX_STATE_UPDATE} container instances"
        )));
    }
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for g in &given {
        match ctx.state.scope.container_instance_id(&cluster, g) {
            Some(id) => ids.push(id.to_string()),
            None => failures.push(Failure {
                arn: g.clone(),
                reason: "MISSING".into(),
            }),
        }
    }
    let outcome = ctx
        .propose(Command::UpdateContainerInstancesState {
            cluster: cluster.clone(),
            ids,
            status,
        })
        .await?;
    match outcome {
        Outcome::ContainerInstances { updated, missing } => {
            for id in missing {
                let arn = given.iter().find(|g| g.ends_with(&id)).cloned().unwrap_or(id);
                failures.push(Failure {
                    arn,
                    reason: "MISSING".into(),
                });
            }
            let instances: Vec<Value> = updated.iter().map(|i| instance_to_wire(i, false)).collect();
            Ok(json!({ "containerInstances": instances, "failures": failures }))
        }
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server(
            "unexpected outcome for UpdateContainerInstancesState".into(),
        )),
    }
}

pub async fn describe_container_instances(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let given = wire::describe_ids("containerInstances", req.container_instances, MAX_DESCRIBE)?;
    let with_tags = wire::include_tags(req.include, &["CONTAINER_INSTANCE_HEALTH"])?;
    let view = ctx.cluster_view(&cluster).await?;
    let mut instances = Vec::new();
    let mut failures = Vec::new();
    for g in given {
        let found = match ctx.state.scope.container_instance_id(&cluster, &g) {
            Some(id) => cis::get(view, &cluster, id)?,
            None => None,
        };
        match found {
            Some(i) => instances.push(instance_to_wire(&i, with_tags)),
            None => failures.push(wire::missing(g)),
        }
    }
    Ok(json!({ "containerInstances": instances, "failures": failures }))
}

pub async fn list_container_instances(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let status = match req.status.as_deref() {
        None => None,
        Some("ACTIVE") => Some(InstanceStatus::Active),
        Some("DRAINING") => Some(InstanceStatus::Draining),
        Some(other) => return Err(invalid(format!("status: {other} is not one of ACTIVE, DRAINING"))),
    };
    let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(crate::cql::parse(text).map_err(|e| invalid(format!("filter: {e}")))?),
        None => None,
    };
    let params = format!(
        "{:?}",
        (
            &cluster,
            &req.status,
            req.filter.as_deref().map(str::trim).unwrap_or_default()
        )
    );
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("instances", &params, token)?),
        None => None,
    };
    ctx.cluster_view(&cluster).await?;
    let listed = cluster.clone();
    let matching: Vec<ContainerInstance> = ctx
        .off_runtime(move |view| {
            Ok(cis::all(view, &listed)?
                .into_iter()
                .filter(|i| match status {
                    Some(s) => i.status == s,
                    None => i.status != InstanceStatus::Inactive,
                })
                .filter(|i| after.as_ref().is_none_or(|a| i.id > *a))
                .filter(|i| {
                    filter
                        .as_ref()
                        .is_none_or(|f| crate::cql::eval(f, &crate::placement::facts(i)))
                })
                .collect())
        })
        .await?;
    Ok(wire::page(
        &matching,
        limit,
        "containerInstanceArns",
        ("instances", &params),
        |i| &i.arn,
        |i| &i.id,
    ))
}

/// The agent version this release ships; older agents can be updated to it.
pub use ecsd_protocol::AGENT_VERSION as LATEST_AGENT_VERSION;

pub async fn update_container_agent(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    let (cluster, id) = one_instance(ctx, &req)?;
    let command = Command::UpdateContainerAgent {
        cluster,
        id,
        latest: LATEST_AGENT_VERSION.to_string(),
    };
    instance_outcome(ctx.propose(command).await?)
}

pub async fn discover_poll_endpoint(ctx: &Ctx<'_>, req: InstancesRequest) -> Result<Value, ApiError> {
    // The node that answers is alive; agents poll it.
    if let Some(cluster) = req.cluster.as_deref() {
        cluster_name(ctx, Some(cluster))?;
    }
    let scheme = if ctx.state.tls { "https" } else { "http" };
    let endpoint = format!("{scheme}://{}", ctx.state.advertised_agent_addr);
    let telemetry = format!("{scheme}://{}", ctx.state.advertised_api_addr);
    Ok(json!({ "endpoint": endpoint, "telemetryEndpoint": telemetry }))
}
