//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, SubmitTaskStateChange and
//! SubmitContainerStateChange.
//!
//! RunTask and StartTask plan placements from a linearizable read of the cluster; `apply`
//! re-checks each one, so concurrent launches can never over-commit an instance.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::clusters::StrategyItemWire;
use super::wire::{self, Failure, TagWire};
use super::{cluster_name, clusters, invalid, ApiError, Ctx};
use crate::cql;
use crate::launch;
use crate::model::{
    AwsVpc, Cluster, InstanceStatus, NetworkBinding, PlacementConstraint, PlacementStrategy, StrategyItem, Task,
    TaskDefinition, TaskStatus,
};
use crate::placement::MAX_STRATEGIES;
use crate::state::tasks::{ContainerChange, Launch, LaunchKind, StateChange};
use crate::state::{self, container_instances as cis, task_definitions as tds, tasks, Command, Outcome};
use crate::taskdef::{self, OverrideError};

const MAX_COUNT: i64 = 10;
const MAX_START_INSTANCES: usize = 10;
const MAX_DESCRIBE: usize = 100;
const LIST_MAX: usize = 100;
const MAX_CONSTRAINTS: usize = 10;
const MAX_OVERRIDES_CHARS: usize = 8192;
const NOT_FOUND_TD: &str = "Unable to describe task definition.";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraintWire {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStrategyWire {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    overrides: Option<Map<String, Value>>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    started_by: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    placement_constraints: Option<Vec<PlacementConstraintWire>>,
    #[serde(default)]
    placement_strategy: Option<Vec<PlacementStrategyWire>>,
    #[serde(default)]
    launch_type: Option<String>,
    #[serde(default)]
    container_instances: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<TagWire>>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    network_configuration: Option<Map<String, Value>>,
    #[serde(default)]
    capacity_provider_strategy: Option<Vec<StrategyItemWire>>,
    #[serde(default)]
    platform_version: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    #[serde(default)]
    propagate_tags: Option<String>,
}

/// Validates a request's launch type: EC2 and FARGATE run here (FARGATE on agents that offer
/// Fargate capacity); EXTERNAL does not.
pub(super) fn check_launch_type(launch_type: Option<&str>) -> Result<(), ApiError> {
    match launch_type {
        None | Some("EC2") | Some("FARGATE") => Ok(()),
        Some("EXTERNAL") => Err(invalid(
            "launchType: EXTERNAL is not supported here (there is no ECS Anywhere); use EC2 or FARGATE",
        )),
        Some(other) => Err(invalid(format!(
            "launchType: {other} is not one of EC2, FARGATE, EXTERNAL"
        ))),
    }
}

/// What a launch asks for: its launch type or capacity provider strategy, platform version
/// and network configuration, as RunTask, StartTask and CreateService take them.
pub(super) struct LaunchAsk<'a> {
    pub launch_type: Option<&'a str>,
    pub strategy: Vec<StrategyItem>,
    pub platform_version: Option<&'a str>,
    pub network: Option<&'a Map<String, Value>>,
}

/// How a launch of `definition` in `cluster` runs, checked as ECS checks it: a launch type and
/// a strategy are exclusive; with neither, the cluster's default strategy applies, else EC2; a
/// strategy names only providers of the cluster; FARGATE needs a Fargate-compatible task
/// definition; awsvpc needs a network configuration, and only awsvpc takes one.
/// Returns the kind, and the strategy it came from (what a service keeps).
pub(super) fn launch_kind(
    cluster: &Cluster,
    definition: &TaskDefinition,
    ask: LaunchAsk<'_>,
) -> Result<(LaunchKind, Vec<StrategyItem>), ApiError> {
    if ask.launch_type.is_some() && !ask.strategy.is_empty() {
        return Err(invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    let strategy = match (ask.launch_type, ask.strategy.is_empty()) {
        (None, true) => cluster.options.default_capacity_provider_strategy.clone(),
        _ => ask.strategy,
    };
    if strategy
        .iter()
        .any(|i| !cluster.options.capacity_providers.contains(&i.capacity_provider))
    {
        return Err(crate::state::Rejection::CapacityProviderNotAssociated.into());
    }
    // The provider the tasks launch with: the one with a base, else the heaviest.
    let provider = launch::strategy_provider(&strategy);
    let fargate = ask.launch_type == Some("FARGATE") || provider.is_some();
    let mut kind = LaunchKind::default();
    if fargate {
        if !launch::fargate_compatible(definition) {
            return Err(invalid("Task definition does not support launch_type FARGATE."));
        }
        match ask.platform_version {
            None | Some("LATEST") | Some(launch::FARGATE_PLATFORM_VERSION) => {}
            Some(other) => {
                return Err(ApiError::PlatformUnknown(format!(
                    "platformVersion: {other} is not a platform version here; use LATEST or {}",
                    launch::FARGATE_PLATFORM_VERSION
                )))
            }
        }
        kind.launch_type = Some("FARGATE".into());
        kind.capacity_provider = Some(provider.unwrap_or_else(|| "FARGATE".into()));
        kind.platform_version = Some(launch::FARGATE_PLATFORM_VERSION.into());
    } else if ask.platform_version.is_some() {
        return Err(invalid(
            "platformVersion: a platform version is only valid for the FARGATE launch type",
        ));
    }
    let awsvpc = definition.body.get("networkMode").and_then(Value::as_str) == Some("awsvpc");
    let vpc = match ask
        .network
        .and_then(|n| n.get("awsvpcConfiguration"))
        .filter(|v| !v.is_null())
    {
        Some(vpc) => Some(vpc),
        None if ask.network.is_some_and(|n| !n.is_empty()) => {
            return Err(invalid("networkConfiguration.awsvpcConfiguration: is required"))
        }
        None => None,
    };
    match (awsvpc, vpc) {
        (true, None) => Err(invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (false, Some(_)) => Err(invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        (false, None) => Ok((kind, strategy)),
        (true, Some(vpc)) => {
            kind.awsvpc = Some(awsvpc_from_wire(vpc, fargate)?);
            Ok((kind, strategy))
        }
    }
}

/// A launch kind every member can apply: before cluster version 2, FARGATE is refused and an
/// awsvpc task gets no network of its own (as earlier builds launched it).
pub(super) fn gate_kind(ctx: &Ctx<'_>, kind: LaunchKind) -> Result<LaunchKind, ApiError> {
    if ctx.modern() {
        return Ok(kind);
    }
    if kind.is_fargate() {
        ctx.require_modern("The FARGATE launch type")?;
    }
    Ok(LaunchKind::default())
}

/// `awsvpcConfiguration`: 1 to 16 subnets, at most 5 security groups, and `assignPublicIp`
/// ENABLED (Fargate only) or DISABLED.
pub(super) fn awsvpc_from_wire(vpc: &Value, fargate: bool) -> Result<AwsVpc, ApiError> {
    let field = "networkConfiguration.awsvpcConfiguration";
    let strings = |key: &str| -> Result<Vec<String>, ApiError> {
        match vpc.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::Serialization(format!("{field}.{key}: expected a list of strings"))),
            Some(_) => Err(ApiError::Serialization(format!(
                "{field}.{key}: expected a list of strings"
            ))),
        }
    };
    let subnets = strings("subnets")?;
    if !(1..=16).contains(&subnets.len()) {
        return Err(invalid(format!("{field}.subnets: give 1 to 16 subnets")));
    }
    let security_groups = strings("securityGroups")?;
    if security_groups.len() > 5 {
        return Err(invalid(format!(
            "{field}.securityGroups: at most 5 security groups are allowed"
        )));
    }
    let assign_public_ip = match vpc.get("assignPublicIp").and_then(Value::as_str) {
        None | Some("DISABLED") => false,
        Some("ENABLED") if fargate => true,
        Some("ENABLED") => return Err(invalid("Assign public IP is not supported for this launch type.")),
        Some(other) => {
            return Err(invalid(format!(
                "{field}.assignPublicIp: {other} is not one of ENABLED, DISABLED"
            )))
        }
    };
    Ok(AwsVpc {
        subnets,
        security_groups,
        assign_public_ip,
    })
}

/// `startedBy`: up to 36 letters, digits, hyphens and underscores.
fn check_started_by(started_by: Option<&str>) -> Result<(), ApiError> {
    match started_by {
        Some(s) if s.len() > 36 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => Err(
            invalid("startedBy: must be up to 36 letters (uppercase and lowercase), numbers, hyphens and underscores"),
        ),
        _ => Ok(()),
    }
}

/// Resolves `family`, `family:revision` or an ARN; a bare family is its latest ACTIVE revision.
pub(super) fn resolve_task_definition(
    ctx: &Ctx<'_>,
    view: &dyn state::KvRead,
    id: &str,
) -> Result<TaskDefinition, ApiError> {
    let Some((family, revision)) = ctx.state.scope.task_definition_ref(id) else {
        return Err(ApiError::Client(NOT_FOUND_TD.into()));
    };
    let found = match revision {
        Some(r) => tds::get(view, family, r)?,
        None => tds::latest_active(view, family)?,
    };
    let definition = found.ok_or_else(|| ApiError::Client(NOT_FOUND_TD.into()))?;
    if definition.status != crate::model::TaskDefinitionStatus::Active {
        return Err(ApiError::Client("TaskDefinition is inactive".into()));
    }
    Ok(definition)
}

/// The request's placement constraints, parsed and validated; with the task definition's
/// (`from_definition` of them) there may be at most [`MAX_CONSTRAINTS`].
pub(super) fn parse_constraints(
    field: &str,
    given: &[PlacementConstraintWire],
    from_definition: usize,
) -> Result<Vec<PlacementConstraint>, ApiError> {
    if given.len() + from_definition > MAX_CONSTRAINTS {
        return Err(invalid(format!(
            "{field}: at most {MAX_CONSTRAINTS} placement constraints are allowed, counting the task definition's"
        )));
    }
    given
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let constraint = PlacementConstraint::parse(c.kind.as_deref(), c.expression.as_deref()).map_err(
                |(part, why)| match c.kind {
                    None => invalid(format!(
                        "{field}[{i}].type: none is not one of distinctInstance, memberOf"
                    )),
                    Some(_) => invalid(format!("{field}[{i}].{part}: {why}")),
                },
            )?;
            if let Some(e) = constraint.member_of() {
                check_expression(&format!("{field}[{i}].expression"), e)?;
            }
            Ok(constraint)
        })
        .collect()
}

/// A `memberOf` expression: at most 2,000 characters, and one the cluster query language
/// parses (no deeper than `cql::MAX_DEPTH`).
pub(super) fn check_expression(field: &str, expression: &str) -> Result<(), ApiError> {
    if expression.len() > cql::MAX_LENGTH {
        return Err(invalid(format!("{field}: at most {} characters", cql::MAX_LENGTH)));
    }
    cql::parse(expression).map_err(|err| invalid(format!("{field}: {err}")))?;
    Ok(())
}

pub(super) fn parse_strategies(
    field: &str,
    given: &[PlacementStrategyWire],
) -> Result<Vec<PlacementStrategy>, ApiError> {
    if given.len() > MAX_STRATEGIES {
        return Err(invalid(format!(
            "{field}: at most {MAX_STRATEGIES} placement strategies are allowed"
        )));
    }
    given
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let kind = s.kind.as_deref().unwrap_or_default();
            PlacementStrategy::parse(kind, s.field.as_deref()).map_err(|e| invalid(format!("{field}[{i}]: {e}")))
        })
        .collect()
}

pub fn task_to_wire(t: &Task, with_tags: bool) -> Value {
    let containers: Vec<Value> = t
        .containers
        .iter()
        .map(|c| {
            let mut v = json!({
                "containerArn": c.arn,
                "taskArn": t.arn,
                "name": c.name,
                "lastStatus": c.last_status.as_str(),
                "networkBindings": c.network_bindings.iter().map(|b| json!({
                    "bindIP": b.bind_ip,
                    "containerPort": b.container_port,
                    "hostPort": b.host_port,
                    "protocol": b.protocol,
                })).collect::<Vec<_>>(),
                "networkInterfaces": t.eni.as_ref().map_or_else(Vec::new, |e| vec![json!({
                    "attachmentId": e.attachment_id,
                    "privateIpv4Address": e.private_ipv4,
                })]),
                "healthStatus": c.health_status.as_deref().unwrap_or("UNKNOWN"),
            });
            for (key, value) in [
                ("cpu", &c.cpu),
                ("memory", &c.memory),
                ("memoryReservation", &c.memory_reservation),
                ("reason", &c.reason),
                ("runtimeId", &c.runtime_id),
            ] {
                if let Some(value) = value {
                    v[key] = json!(value);
                }
            }
            if let Some(code) = c.exit_code {
                v["exitCode"] = json!(code);
            }
            v
        })
        .collect();
    let cluster_arn = crate::model::arn::cluster_of_task(&t.arn, &t.cluster).unwrap_or_default();
    let mut v = json!({
        "taskArn": t.arn,
        "clusterArn": cluster_arn,
        "taskDefinitionArn": t.task_definition_arn,
        "containerInstanceArn": t.container_instance_arn,
        "overrides": t.overrides,
        "lastStatus": t.last_status.as_str(),
        "desiredStatus": t.desired_status.as_str(),
        "containers": containers,
        "version": t.version,
        "createdAt": wire::epoch_seconds(t.created_at_ms),
        "group": t.group,
        "launchType": t.launch_type,
        "attachments": t.eni.as_ref().map_or_else(Vec::new, |e| vec![eni_to_wire(e, t.last_status)]),
        "healthStatus": "UNKNOWN",
    });
    if t.launch_type == "FARGATE" {
        // A Fargate task has no container instance, as far as ECS tells.
        if let Some(m) = v.as_object_mut() {
            m.remove("containerInstanceArn");
        }
        v["platformFamily"] = json!("Linux");
        v["ephemeralStorage"] = json!({ "sizeInGiB": 20 });
        v["fargateEphemeralStorage"] = json!({ "sizeInGiB": 20 });
    }
    for (key, value) in [
        ("capacityProviderName", &t.capacity_provider_name),
        ("platformVersion", &t.platform_version),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    for (key, value) in [
        ("cpu", &t.cpu),
        ("memory", &t.memory),
        ("startedBy", &t.started_by),
        ("stoppedReason", &t.stopped_reason),
        ("stopCode", &t.stop_code),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    if let Some(deployment) = &t.deployment_id {
        v["startedBy"] = json!(deployment);
    }
    for (key, value) in [
        ("startedAt", t.started_at_ms),
        ("stoppingAt", t.stopping_at_ms),
        ("stoppedAt", t.stopped_at_ms),
        ("executionStoppedAt", t.execution_stopped_at_ms),
        ("pullStartedAt", t.pull_started_at_ms),
        ("pullStoppedAt", t.pull_stopped_at_ms),
    ] {
        if let Some(ms) = value {
            v[key] = wire::epoch_seconds(ms);
        }
    }
    if with_tags {
        v["tags"] = json!(wire::tags_to_wire(&t.tags));
    }
    v
}

/// An awsvpc task's ENI attachment: PRECREATED until the task runs, then ATTACHED, DELETED once
/// it stopped.
fn eni_to_wire(e: &crate::model::TaskEni, status: TaskStatus) -> Value {
    let status = match status {
        TaskStatus::Pending => "PRECREATED",
        TaskStatus::Running => "ATTACHED",
        TaskStatus::Stopped => "DELETED",
    };
    let dns = format!("ip-{}.ec2.internal", e.private_ipv4.replace('.', "-"));
    json!({
        "id": e.attachment_id,
        "type": "ElasticNetworkInterface",
        "status": status,
        "details": [
            { "name": "subnetId", "value": e.subnet_id },
            { "name": "networkInterfaceId", "value": e.eni_id },
            { "name": "macAddress", "value": e.mac_address },
            { "name": "privateDnsName", "value": dns },
            { "name": "privateIPv4Address", "value": e.private_ipv4 },
        ],
    })
}

fn failures_to_wire(failures: Vec<(String, String)>) -> Vec<Failure> {
    failures
        .into_iter()
        .map(|(arn, reason)| Failure { arn, reason })
        .collect()
}

fn tasks_outcome(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Tasks { tasks, failures } => Ok(json!({
            "tasks": tasks.iter().map(|t| task_to_wire(t, false)).collect::<Vec<_>>(),
            "failures": failures_to_wire(failures),
        })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for a task launch".into())),
    }
}

/// What RunTask and StartTask share: validation of the common fields and the launch template.
struct Common {
    cluster: String,
    launch: Launch,
}

fn common(ctx: &Ctx<'_>, view: &dyn state::KvRead, req: &mut RunTaskRequest) -> Result<Common, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let id = req
        .task_definition
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("taskDefinition: is required"))?;
    check_launch_type(req.launch_type.as_deref())?;
    check_started_by(req.started_by.as_deref())?;
    if let Some(group) = &req.group {
        if group.is_empty() || group.len() > 255 {
            return Err(invalid("group: must be 1 to 255 characters"));
        }
    }
    let overrides_len = req
        .overrides
        .as_ref()
        .map_or(0, |o| serde_json::to_string(o).map_or(0, |s| s.len()));
    if overrides_len > MAX_OVERRIDES_CHARS {
        return Err(invalid(format!(
            "overrides: at most {MAX_OVERRIDES_CHARS} characters of JSON are allowed"
        )));
    }
    let tags = wire::tags_from_wire("tags", req.tags.take())?;
    let propagate = match req.propagate_tags.as_deref() {
        None | Some("NONE") => false,
        Some("TASK_DEFINITION") => true,
        Some("SERVICE") => {
            return Err(invalid(
                "propagateTags: SERVICE is only valid for a service's tasks; use TASK_DEFINITION or NONE",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "propagateTags: {other} is not one of TASK_DEFINITION, SERVICE, NONE"
            )))
        }
    };
    let strategy = clusters::strategy_from_wire(
        "capacityProviderStrategy",
        req.capacity_provider_strategy.take().unwrap_or_default(),
    )?;
    let Some(cluster_record) =
        state::get_cluster(view, &cluster)?.filter(|c| c.status == crate::model::ClusterStatus::Active)
    else {
        return Err(ApiError::cluster_not_found());
    };
    let definition = resolve_task_definition(ctx, view, &id)?;
    let (kind, _) = launch_kind(
        &cluster_record,
        &definition,
        LaunchAsk {
            launch_type: req.launch_type.as_deref(),
            strategy,
            platform_version: req.platform_version.as_deref(),
            network: req.network_configuration.as_ref(),
        },
    )?;
    let managed = req
        .enable_ecs_managed_tags
        .unwrap_or(false)
        .then_some((cluster.as_str(), None));
    let propagated = if propagate { definition.tags.clone() } else { Vec::new() };
    let tags = launch::task_tags(tags, &propagated, managed);
    let scope = &ctx.state.scope;
    let origin = launch::Origin {
        cluster: cluster.clone(),
        group: req.group.clone(),
        started_by: req.started_by.clone(),
        tags,
        service: None,
        principal: ctx.caller.principal_arn.clone(),
    };
    let mut launch = launch::template(scope, &definition, req.overrides.take(), origin).map_err(|e| match e {
        OverrideError::Shape(m) => ApiError::Serialization(m),
        OverrideError::Invalid(m) => invalid(m),
    })?;
    launch.long_by_default &= ctx.modern();
    launch.kind = gate_kind(ctx, kind)?;
    Ok(Common { cluster, launch })
}

/// Proposes `launch`, keyed by the client token when there is one so a retry applies once.
async fn propose_launch(ctx: &Ctx<'_>, launch: Launch, client_token: Option<&str>) -> Result<Value, ApiError> {
    let command = Command::LaunchTasks(Box::new(launch));
    let outcome = match client_token {
        Some(token) => ctx.propose_idempotent("RunTask", token, command).await?,
        None => ctx.propose(command).await?,
    };
    tasks_outcome(outcome)
}

pub async fn run_task(ctx: &Ctx<'_>, mut req: RunTaskRequest) -> Result<Value, ApiError> {
    // Placement runs on the leader, which sees every placement first.
    if let Some(answer) = ctx.forward_to_leader("RunTask").await {
        return answer;
    }
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(invalid(format!("count: must be between 1 and {MAX_COUNT}")));
    }
    if let Some(token) = &req.client_token {
        if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(invalid(
                "clientToken: must be 1 to 64 printable ASCII characters (codes 33 to 126)",
            ));
        }
    }
    let strategies = parse_strategies("placementStrategy", &req.placement_strategy.take().unwrap_or_default())?;
    let view = ctx.read_view().await?;
    let Common { cluster, mut launch } = common(ctx, view, &mut req)?;
    let definition = tds::get(view, &launch.task_definition_family, launch.task_definition_revision)?
        .ok_or_else(|| ApiError::Client(NOT_FOUND_TD.into()))?;
    let constraints = parse_constraints(
        "placementConstraints",
        &req.placement_constraints.take().unwrap_or_default(),
        taskdef::definition_constraints(&definition).len(),
    )?;
    let instances = cis::all_mirrored(view, &cluster, &view.mirrors().instances)?;
    let fargate = launch.kind.is_fargate();
    let offers = |i: &crate::model::ContainerInstance| {
        let capacity = i.attributes.iter().any(|a| a.name == launch::CAPACITY_ATTRIBUTE);
        i.status != InstanceStatus::Inactive && capacity == fargate
    };
    if !instances.iter().any(|i| offers(i)) {
        if !fargate {
            return Err(invalid("No Container Instances were found in your cluster."));
        }
        // As ECS reports a launch its capacity provider cannot serve.
        let provider = launch
            .kind
            .capacity_provider
            .clone()
            .unwrap_or_else(|| "FARGATE".into());
        let failures = (0..count)
            .map(|_| Failure {
                arn: ctx.state.scope.cluster_arn(&cluster),
                reason: format!("RESOURCE:{provider}"),
            })
            .collect::<Vec<_>>();
        return Ok(json!({ "tasks": [], "failures": failures }));
    }
    if launch.kind.is_fargate() && (!strategies.is_empty() || !constraints.is_empty()) {
        return Err(invalid(
            "Placement strategies and constraints are not supported with the FARGATE launch type.",
        ));
    }
    let strategies = strategies.into_iter().map(|s| s.strategy).collect();
    let placement = launch::Placement::new(strategies, &constraints, &definition, false, &launch.kind)
        .map_err(|e| invalid(format!("taskDefinition: {e}")))?;
    placement.constrain(&mut launch);
    let plan = launch::plan(&launch, &placement, &instances, count as usize);
    launch::add_tasks(&mut launch, &plan.placements);
    launch.failures = plan.failures;
    propose_launch(ctx, launch, req.client_token.as_deref()).await
}

pub async fn start_task(ctx: &Ctx<'_>, mut req: RunTaskRequest) -> Result<Value, ApiError> {
    if let Some(answer) = ctx.forward_to_leader("StartTask").await {
        return answer;
    }
    let given = req.container_instances.take().unwrap_or_default();
    if given.is_empty() || given.len() > MAX_START_INSTANCES {
        return Err(invalid(format!(
            "containerInstances: give 1 to {MAX_START_INSTANCES} container instances"
        )));
    }
    // StartTask places on the instances it names: EC2 only, whatever the cluster's default
    // capacity provider strategy.
    req.launch_type = Some("EC2".into());
    req.capacity_provider_strategy = None;
    let view = ctx.read_view().await?;
    let Common { cluster, mut launch } = common(ctx, view, &mut req)?;
    let definition = tds::get(view, &launch.task_definition_family, launch.task_definition_revision)?
        .ok_or_else(|| ApiError::Client(NOT_FOUND_TD.into()))?;
    parse_constraints(
        "placementConstraints",
        &[],
        taskdef::definition_constraints(&definition).len(),
    )?;
    launch::Placement::new(Vec::new(), &[], &definition, false, &launch.kind)
        .map_err(|e| invalid(format!("taskDefinition: {e}")))?
        .constrain(&mut launch);
    for g in given {
        let found = match ctx.state.scope.container_instance_id(&cluster, &g) {
            Some(id) => cis::get(view, &cluster, id)?,
            None => None,
        };
        match found {
            None => launch.failures.push((g, "MISSING".into())),
            Some(i) if i.status == InstanceStatus::Inactive => launch.failures.push((i.arn, "INACTIVE".into())),
            Some(i) => launch::add_tasks(&mut launch, [&i.id]),
        }
    }
    propose_launch(ctx, launch, None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TasksRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    tasks: Option<Vec<String>>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    container_instance: Option<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    started_by: Option<String>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    desired_status: Option<String>,
    #[serde(default)]
    launch_type: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

/// The cluster and task ID a request names (`task` is required).
fn one_task(ctx: &Ctx<'_>, cluster: Option<&str>, task: Option<&str>) -> Result<(String, String), ApiError> {
    let cluster = cluster_name(ctx, cluster)?;
    let given = task
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("task: is required"))?;
    let id = ctx
        .state
        .scope
        .task_id(&cluster, given)
        .ok_or_else(|| invalid("The referenced task was not found."))?
        .to_string();
    Ok((cluster, id))
}

pub async fn stop_task(ctx: &Ctx<'_>, req: TasksRequest) -> Result<Value, ApiError> {
    let (cluster, id) = one_task(ctx, req.cluster.as_deref(), req.task.as_deref())?;
    if req.reason.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err(invalid("reason: must be at most 255 characters"));
    }
    let outcome = ctx
        .propose(Command::StopTask {
            cluster,
            id,
            reason: req.reason.filter(|r| !r.is_empty()),
        })
        .await?;
    match outcome {
        Outcome::Task(t) => Ok(json!({ "task": task_to_wire(&t, false) })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for StopTask".into())),
    }
}

pub async fn describe_tasks(ctx: &Ctx<'_>, req: TasksRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let given = wire::describe_ids("tasks", req.tasks, MAX_DESCRIBE)?;
    let with_tags = wire::include_tags(req.include, &[])?;
    let view = ctx.cluster_view(&cluster).await?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for g in given {
        let found = match ctx.state.scope.task_id(&cluster, &g) {
            Some(id) => tasks::get(view, &cluster, id)?,
            None => None,
        };
        match found {
            Some(t) => out.push(task_to_wire(&t, with_tags)),
            None => failures.push(wire::missing(g)),
        }
    }
    Ok(json!({ "tasks": out, "failures": failures }))
}

pub async fn list_tasks(ctx: &Ctx<'_>, req: TasksRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let desired = match req.desired_status.as_deref() {
        None | Some("RUNNING") => TaskStatus::Running,
        Some("PENDING") => TaskStatus::Pending,
        Some("STOPPED") => TaskStatus::Stopped,
        Some(other) => {
            return Err(invalid(format!(
                "desiredStatus: {other} is not one of RUNNING, PENDING, STOPPED"
            )))
        }
    };
    match req.launch_type.as_deref() {
        None | Some("EC2") | Some("FARGATE") | Some("EXTERNAL") => {}
        Some(other) => {
            return Err(invalid(format!(
                "launchType: {other} is not one of EC2, FARGATE, EXTERNAL"
            )))
        }
    }
    let instance = match req.container_instance.as_deref().filter(|c| !c.is_empty()) {
        Some(given) => Some(
            ctx.state
                .scope
                .container_instance_id(&cluster, given)
                .map(str::to_string)
                .ok_or_else(|| invalid("containerInstance: is not an instance of this cluster"))?,
        ),
        None => None,
    };
    // What the list is of, for its pages' tokens: names and IDs as resolved, not as given.
    let service_given = req.service_name.as_deref().filter(|s| !s.is_empty());
    let params = format!(
        "{:?}",
        (
            &cluster,
            desired.as_str(),
            &req.family,
            &req.started_by,
            &instance,
            service_given.map(|s| ctx.state.scope.service_name(&cluster, s).unwrap_or(s)),
            &req.launch_type,
        )
    );
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("tasks", &params, token)?),
        None => None,
    };
    let view = ctx.cluster_view(&cluster).await?;
    let service = match req.service_name.as_deref().filter(|s| !s.is_empty()) {
        Some(given) => {
            let name = ctx.state.scope.service_name(&cluster, given);
            let found = match name {
                Some(n) => state::services::get(view, &cluster, n)?,
                None => None,
            };
            Some(
                found
                    .ok_or_else(|| ApiError::ServiceNotFound("Service not found.".into()))?
                    .name,
            )
        }
        None => None,
    };
    // ECS never sets desiredStatus PENDING: that filter is always empty.
    let matching: Vec<Task> = if desired == TaskStatus::Pending {
        Vec::new()
    } else {
        let (family, started_by, launch_type) = (req.family, req.started_by, req.launch_type);
        ctx.off_runtime(move |view| {
            // A task whose desired status is RUNNING is not STOPPED, so an instance's or a
            // service's index holds it: a page of those reads that index alone.
            let within = match (&instance, &service) {
                (Some(i), _) if desired == TaskStatus::Running => tasks::Within::Instance(i),
                (None, Some(s)) if desired == TaskStatus::Running => tasks::Within::Service(s),
                _ => tasks::Within::Cluster,
            };
            // One more than a page: whether there is a next page.
            let page = tasks::first_matching(view, &cluster, within, after.as_deref(), limit + 1, |t| {
                t.desired_status == desired
                    && family.as_ref().is_none_or(|f| t.family == *f)
                    && started_by.as_ref().is_none_or(|s| t.started_by.as_ref() == Some(s))
                    && instance.as_ref().is_none_or(|i| t.container_instance_id == *i)
                    && service.as_ref().is_none_or(|s| t.service.as_ref() == Some(s))
                    && launch_type.as_ref().is_none_or(|l| t.launch_type == *l)
            })?;
            Ok(page)
        })
        .await?
    };
    Ok(wire::page(
        &matching,
        limit,
        "taskArns",
        ("tasks", &params),
        |t| &t.arn,
        |t| &t.id,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBindingWire {
    #[serde(default, rename = "bindIP")]
    bind_ip: Option<String>,
    #[serde(default)]
    container_port: Option<i64>,
    #[serde(default)]
    host_port: Option<i64>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateChangeWire {
    #[serde(default)]
    container_name: Option<String>,
    #[serde(default)]
    runtime_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    network_bindings: Option<Vec<NetworkBindingWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    containers: Option<Vec<ContainerStateChangeWire>>,
    #[serde(default)]
    pull_started_at: Option<f64>,
    #[serde(default)]
    pull_stopped_at: Option<f64>,
    #[serde(default)]
    execution_stopped_at: Option<f64>,
    // SubmitContainerStateChange's own fields.
    #[serde(default)]
    container_name: Option<String>,
    #[serde(default)]
    runtime_id: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    network_bindings: Option<Vec<NetworkBindingWire>>,
}

/// Task and container statuses an agent may report. Statuses of later lifecycles are accepted
/// as the status they imply.
fn reported_status(field: &str, value: Option<&str>) -> Result<Option<TaskStatus>, ApiError> {
    match value {
        None => Ok(None),
        Some("PENDING" | "PROVISIONING" | "ACTIVATING") => Ok(Some(TaskStatus::Pending)),
        Some("RUNNING") => Ok(Some(TaskStatus::Running)),
        Some("STOPPED") => Ok(Some(TaskStatus::Stopped)),
        // Intermediate stop states: the containers are not gone yet, so nothing changes.
        Some("DEACTIVATING" | "STOPPING" | "DEPROVISIONING") => Ok(None),
        Some(other) => Err(invalid(format!(
            "{field}: {other} is not one of PENDING, RUNNING, STOPPED"
        ))),
    }
}

fn bindings_from_wire(field: &str, bindings: Vec<NetworkBindingWire>) -> Result<Vec<NetworkBinding>, ApiError> {
    bindings
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let port = |value: Option<i64>, name: &str| {
                u16::try_from(value.unwrap_or(0))
                    .map_err(|_| invalid(format!("{field}[{i}].{name}: must be a port number")))
            };
            let protocol = b.protocol.unwrap_or_else(|| "tcp".into());
            if protocol != "tcp" && protocol != "udp" {
                return Err(invalid(format!(
                    "{field}[{i}].protocol: {protocol} is not one of tcp, udp"
                )));
            }
            Ok(NetworkBinding {
                bind_ip: b.bind_ip.unwrap_or_else(|| "0.0.0.0".into()),
                container_port: port(b.container_port, "containerPort")?,
                host_port: port(b.host_port, "hostPort")?,
                protocol,
            })
        })
        .collect()
}

fn reason_ok(field: &str, reason: &Option<String>) -> Result<Option<String>, ApiError> {
    match reason {
        Some(r) if r.chars().count() > 255 => Err(invalid(format!("{field}: must be at most 255 characters"))),
        other => Ok(other.clone().filter(|r| !r.is_empty())),
    }
}

fn seconds_to_ms(value: Option<f64>) -> Option<u64> {
    value
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| (v * 1000.0) as u64)
}

async fn submit(ctx: &Ctx<'_>, change: StateChange) -> Result<Value, ApiError> {
    match ctx.propose(Command::TaskStateChange(Box::new(change))).await? {
        Outcome::Done => Ok(json!({ "acknowledgment": "ACK" })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for a state change".into())),
    }
}

pub async fn submit_task_state_change(ctx: &Ctx<'_>, req: StateChangeRequest) -> Result<Value, ApiError> {
    let (cluster, task_id) = one_task(ctx, req.cluster.as_deref(), req.task.as_deref())?;
    super::auth::agent_owns_task(ctx, &cluster, &task_id).await?;
    let status = reported_status("status", req.status.as_deref())?;
    let mut containers = Vec::new();
    for (i, c) in req.containers.unwrap_or_default().into_iter().enumerate() {
        let field = format!("containers[{i}]");
        containers.push(ContainerChange {
            name: c
                .container_name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(format!("{field}.containerName: is required")))?,
            status: reported_status(&format!("{field}.status"), c.status.as_deref())?,
            exit_code: c.exit_code,
            reason: reason_ok(&format!("{field}.reason"), &c.reason)?,
            network_bindings: c
                .network_bindings
                .map(|b| bindings_from_wire(&format!("{field}.networkBindings"), b))
                .transpose()?,
            runtime_id: c.runtime_id,
        });
    }
    submit(
        ctx,
        StateChange {
            cluster,
            task_id,
            status,
            reason: reason_ok("reason", &req.reason)?,
            containers,
            pull_started_at_ms: seconds_to_ms(req.pull_started_at),
            pull_stopped_at_ms: seconds_to_ms(req.pull_stopped_at),
            execution_stopped_at_ms: seconds_to_ms(req.execution_stopped_at),
        },
    )
    .await
}

pub async fn submit_container_state_change(ctx: &Ctx<'_>, req: StateChangeRequest) -> Result<Value, ApiError> {
    let (cluster, task_id) = one_task(ctx, req.cluster.as_deref(), req.task.as_deref())?;
    super::auth::agent_owns_task(ctx, &cluster, &task_id).await?;
    let name = req
        .container_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("containerName: is required"))?;
    // This replica's view is enough: a task's containers never change after its launch, and a
    // task not applied here yet is acknowledged as any unknown task is.
    if let Some(task) = tasks::get(ctx.state.node.handle().view(), &cluster, &task_id)? {
        if !task.containers.iter().any(|c| c.name == name) {
            return Err(invalid(format!(
                "containerName: task {} has no container named {}",
                task.arn,
                crate::model::clip(&name)
            )));
        }
    }
    let change = ContainerChange {
        name,
        status: reported_status("status", req.status.as_deref())?,
        exit_code: req.exit_code,
        reason: reason_ok("reason", &req.reason)?,
        network_bindings: req
            .network_bindings
            .map(|b| bindings_from_wire("networkBindings", b))
            .transpose()?,
        runtime_id: req.runtime_id,
    };
    submit(
        ctx,
        StateChange {
            cluster,
            task_id,
            containers: vec![change],
            ..Default::default()
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskProtectionRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    tasks: Option<Vec<String>>,
    #[serde(default)]
    protection_enabled: Option<bool>,
    #[serde(default)]
    expires_in_minutes: Option<i64>,
}

fn protection_to_wire(t: &Task, now_ms: u64) -> Value {
    let until = t.protected_until_ms.filter(|u| *u > now_ms);
    let mut v = json!({ "taskArn": t.arn, "protectionEnabled": until.is_some() });
    if let Some(until) = until {
        v["expirationDate"] = wire::epoch_seconds(until);
    }
    v
}

/// The task IDs a protection request names, and the failures of those that name none.
fn protection_ids(ctx: &Ctx<'_>, cluster: &str, given: Vec<String>) -> (Vec<String>, Vec<Failure>) {
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for g in given {
        match ctx.state.scope.task_id(cluster, &g) {
            Some(id) => ids.push(id.to_string()),
            None => failures.push(wire::missing(g)),
        }
    }
    (ids, failures)
}

/// UpdateTaskProtection: protects up to 10 of a service's tasks from scale-in (for
/// `expiresInMinutes`, 1 to 2880, default 120), or removes their protection.
pub async fn update_task_protection(ctx: &Ctx<'_>, req: TaskProtectionRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(
        ctx,
        Some(req.cluster.as_deref().ok_or_else(|| invalid("cluster: is required"))?),
    )?;
    let given = wire::describe_ids("tasks", req.tasks, 10)?;
    let enabled = req
        .protection_enabled
        .ok_or_else(|| invalid("protectionEnabled: is required"))?;
    let minutes = req.expires_in_minutes.unwrap_or(120);
    if !(1..=2880).contains(&minutes) {
        return Err(invalid("expiresInMinutes: must be between 1 and 2880"));
    }
    ctx.require_modern("UpdateTaskProtection")?;
    let (ids, mut failures) = protection_ids(ctx, &cluster, given);
    let outcome = ctx
        .propose(Command::UpdateTaskProtection {
            cluster,
            ids,
            minutes: enabled.then_some(minutes as u64),
        })
        .await?;
    let now = ctx.state.node.handle().cluster_now_ms();
    match outcome {
        Outcome::Tasks { tasks, failures: found } => {
            failures.extend(failures_to_wire(found));
            Ok(json!({
                "protectedTasks": tasks.iter().map(|t| protection_to_wire(t, now)).collect::<Vec<_>>(),
                "failures": failures,
            }))
        }
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for UpdateTaskProtection".into())),
    }
}

/// GetTaskProtection: the protection of up to 100 tasks (every task of the cluster's services
/// is too many: the tasks must be named).
pub async fn get_task_protection(ctx: &Ctx<'_>, req: TaskProtectionRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(
        ctx,
        Some(req.cluster.as_deref().ok_or_else(|| invalid("cluster: is required"))?),
    )?;
    let given = wire::describe_ids("tasks", req.tasks, 100)?;
    let (ids, mut failures) = protection_ids(ctx, &cluster, given);
    let view = ctx.cluster_view(&cluster).await?;
    let now = ctx.state.node.handle().cluster_now_ms();
    let mut protected = Vec::new();
    for id in ids {
        match tasks::get(view, &cluster, &id)? {
            Some(t) if t.service.is_some() => protected.push(protection_to_wire(&t, now)),
            Some(t) => failures.push(Failure {
                arn: t.arn,
                reason: "TASK_NOT_VALID".into(),
            }),
            None => failures.push(wire::missing(id)),
        }
    }
    Ok(json!({ "protectedTasks": protected, "failures": failures }))
}
