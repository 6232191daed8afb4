//! CreateService, UpdateService, DeleteService, DescribeServices and ListServices.
//!
//! These actions store and return services and their deployments; the leader's reconciler
//! starts and stops their tasks.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::clusters::{strategy_from_wire, strategy_to_wire, StrategyItemWire};
use super::task_definitions::MAX_INTEGER;
use super::tasks::{
    awsvpc_from_wire, check_launch_type, launch_kind, parse_constraints, parse_strategies, resolve_task_definition,
    LaunchAsk, PlacementConstraintWire, PlacementStrategyWire,
};
use super::wire::{self, TagWire};
use super::{cluster_name, invalid, ApiError, Ctx};
use crate::model::{valid_ecs_name, CircuitBreaker, Service, ServiceSpec, ServiceStatus};
use crate::state::services::{self as svcs, Creation, Update};
use crate::state::{self, Command, Outcome};
use crate::taskdef;

const MAX_DESCRIBE: usize = 10;
const LIST_MAX: usize = 100;
const LIST_DEFAULT: usize = 10;
const MAX_GRACE_SECONDS: i64 = 7200;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfigurationWire {
    #[serde(default)]
    maximum_percent: Option<i64>,
    #[serde(default)]
    minimum_healthy_percent: Option<i64>,
    #[serde(default)]
    deployment_circuit_breaker: Option<CircuitBreakerWire>,
}

/// `deploymentCircuitBreaker`: both members are required in ECS's model; Terraform removes the
/// breaker by sending `{}`, read here as both false.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerWire {
    #[serde(default)]
    enable: Option<bool>,
    #[serde(default)]
    rollback: Option<bool>,
}

impl CircuitBreakerWire {
    fn typed(&self) -> CircuitBreaker {
        CircuitBreaker {
            enable: self.enable.unwrap_or(false),
            rollback: self.rollback.unwrap_or(false),
        }
    }
}

/// `deploymentController`: only the rolling update (`ECS`) runs here.
fn check_controller(controller: Option<&Map<String, Value>>) -> Result<(), ApiError> {
    match controller.and_then(|c| c.get("type")).and_then(Value::as_str) {
        None | Some("ECS") => Ok(()),
        Some(other @ ("CODE_DEPLOY" | "EXTERNAL")) => Err(invalid(format!(
            "deploymentController.type: {other} is not supported here; use ECS (rolling update)"
        ))),
        Some(other) => Err(invalid(format!(
            "deploymentController.type: {other} is not one of ECS, CODE_DEPLOY, EXTERNAL"
        ))),
    }
}

/// `availabilityZoneRebalancing`: ENABLED or DISABLED, echoed (tasks are spread over zones
/// when placed; nothing moves them later).
fn check_rebalancing(value: Option<&str>) -> Result<(), ApiError> {
    match value {
        None | Some("ENABLED") | Some("DISABLED") => Ok(()),
        Some(other) => Err(invalid(format!(
            "availabilityZoneRebalancing: {other} is not one of ENABLED, DISABLED"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    services: Option<Vec<String>>,
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    load_balancers: Option<Vec<Value>>,
    #[serde(default)]
    service_registries: Option<Vec<Value>>,
    #[serde(default)]
    desired_count: Option<i64>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    launch_type: Option<String>,
    #[serde(default)]
    platform_version: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    deployment_configuration: Option<DeploymentConfigurationWire>,
    #[serde(default)]
    placement_constraints: Option<Vec<PlacementConstraintWire>>,
    #[serde(default)]
    placement_strategy: Option<Vec<PlacementStrategyWire>>,
    #[serde(default)]
    network_configuration: Option<Map<String, Value>>,
    #[serde(default)]
    health_check_grace_period_seconds: Option<i64>,
    #[serde(default)]
    scheduling_strategy: Option<String>,
    #[serde(default)]
    tags: Option<Vec<TagWire>>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    #[serde(default)]
    propagate_tags: Option<String>,
    #[serde(default)]
    force_new_deployment: Option<bool>,
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    capacity_provider_strategy: Option<Vec<StrategyItemWire>>,
    #[serde(default)]
    availability_zone_rebalancing: Option<String>,
    #[serde(default)]
    deployment_controller: Option<Map<String, Value>>,
    #[serde(default)]
    enable_execute_command: Option<bool>,
    #[serde(default)]
    namespace: Option<String>,
}

/// `healthCheckGracePeriodSeconds`: 0 to [`MAX_GRACE_SECONDS`]. Today's ECS takes it with or
/// without a load balancer: the scheduler ignores container health checks for that long after a
/// task started (the 2018 API allowed it only with a load balancer).
fn check_grace(value: Option<i64>) -> Result<(), ApiError> {
    match value {
        Some(g) if !(0..=MAX_GRACE_SECONDS).contains(&g) => Err(invalid(format!(
            "healthCheckGracePeriodSeconds: must be between 0 and {MAX_GRACE_SECONDS}"
        ))),
        _ => Ok(()),
    }
}

/// An UpdateService's `networkConfiguration` holds a valid `awsvpcConfiguration`.
fn check_network(network: Option<&Map<String, Value>>) -> Result<(), ApiError> {
    let Some(network) = network else {
        return Ok(());
    };
    match network.get("awsvpcConfiguration").filter(|v| !v.is_null()) {
        Some(vpc) => awsvpc_from_wire(vpc, true).map(|_| ()),
        None => Err(invalid("networkConfiguration.awsvpcConfiguration: is required")),
    }
}

pub fn service_to_wire(s: &Service, with_tags: bool) -> Value {
    let cluster_arn = s
        .arn
        .split_once(":service/")
        .map(|(prefix, _)| format!("{prefix}:cluster/{}", s.cluster))
        .unwrap_or_default();
    let deployments: Vec<Value> = s
        .deployments
        .iter()
        .map(|d| {
            let mut v = json!({
                "id": d.id,
                "status": d.status,
                "taskDefinition": d.task_definition_arn,
                "desiredCount": d.desired_count,
                "pendingCount": d.pending_count,
                "runningCount": d.running_count,
                "createdAt": wire::epoch_seconds(d.created_at_ms),
                "updatedAt": wire::epoch_seconds(d.updated_at_ms),
                "failedTasks": d.failed_tasks,
            });
            if s.launch_type.is_empty() {
                v["capacityProviderStrategy"] = strategy_to_wire(&s.capacity_provider_strategy);
            } else {
                v["launchType"] = json!(s.launch_type);
            }
            if let Some(n) = &d.network_configuration {
                v["networkConfiguration"] = n.clone();
            }
            if s.launch_type == "FARGATE" || !s.capacity_provider_strategy.is_empty() {
                // The version a deployment runs is resolved (LATEST is 1.4.0 here).
                v["platformVersion"] = json!(crate::launch::FARGATE_PLATFORM_VERSION);
                v["platformFamily"] = json!("Linux");
            } else if let Some(p) = &d.platform_version {
                v["platformVersion"] = json!(p);
            }
            if let Some(state) = &d.rollout_state {
                v["rolloutState"] = json!(state);
            }
            if let Some(reason) = &d.rollout_state_reason {
                v["rolloutStateReason"] = json!(reason);
            }
            v
        })
        .collect();
    let mut v = json!({
        "serviceArn": s.arn,
        "serviceName": s.name,
        "clusterArn": cluster_arn,
        "status": s.status.as_str(),
        "desiredCount": s.desired_count,
        "runningCount": s.running_count,
        "pendingCount": s.pending_count,
        "taskDefinition": s.task_definition_arn,
        "deploymentConfiguration": {
            "maximumPercent": s.maximum_percent,
            "minimumHealthyPercent": s.minimum_healthy_percent,
            "deploymentCircuitBreaker": {
                "enable": s.circuit_breaker.is_some_and(|b| b.enable),
                "rollback": s.circuit_breaker.is_some_and(|b| b.rollback),
            },
        },
        "deploymentController": { "type": "ECS" },
        "availabilityZoneRebalancing": "DISABLED",
        "enableECSManagedTags": false,
        "enableExecuteCommand": false,
        "propagateTags": "NONE",
        "deployments": deployments,
        "events": s.events.iter().map(|e| json!({
            "id": e.id,
            "createdAt": wire::epoch_seconds(e.created_at_ms),
            "message": e.message,
        })).collect::<Vec<_>>(),
        "createdAt": wire::epoch_seconds(s.created_at_ms),
        "createdBy": s.created_by,
        "schedulingStrategy": s.scheduling_strategy,
        "loadBalancers": [],
        "serviceRegistries": [],
        "placementConstraints": [],
        "placementStrategy": [],
    });
    if s.launch_type.is_empty() {
        v["capacityProviderStrategy"] = strategy_to_wire(&s.capacity_provider_strategy);
    } else {
        v["launchType"] = json!(s.launch_type);
    }
    for (key, value) in s.spec.to_json() {
        v[key.as_str()] = value;
    }
    if let Some(n) = s.deployments.first().and_then(|d| d.network_configuration.as_ref()) {
        v["networkConfiguration"] = n.clone();
    }
    if with_tags {
        v["tags"] = json!(wire::tags_to_wire(&s.tags));
    }
    v
}

fn service_outcome(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Service(s) => Ok(json!({ "service": service_to_wire(&s, false) })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for a service command".into())),
    }
}

pub async fn create_service(ctx: &Ctx<'_>, mut req: ServiceRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let name = req
        .service_name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("serviceName: is required"))?;
    if !valid_ecs_name(&name) {
        return Err(invalid(
            "serviceName: must be 1 to 255 letters (uppercase and lowercase), numbers, hyphens and underscores",
        ));
    }
    let td = req
        .task_definition
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("taskDefinition: is required"))?;
    check_launch_type(req.launch_type.as_deref())?;
    let daemon = match req.scheduling_strategy.as_deref() {
        None | Some("REPLICA") => false,
        Some("DAEMON") => true,
        Some(other) => {
            return Err(invalid(format!(
                "schedulingStrategy: {other} is not one of REPLICA, DAEMON"
            )))
        }
    };
    if let Some(token) = &req.client_token {
        if token.is_empty() || token.len() > 36 || !token.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(invalid(
                "clientToken: must be 1 to 36 printable ASCII characters (codes 33 to 126)",
            ));
        }
    }
    let desired = match (daemon, req.desired_count) {
        (true, Some(_)) => {
            return Err(invalid(
                "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
            ))
        }
        (_, Some(n)) if n < 0 => return Err(invalid("desiredCount: must not be negative")),
        (_, Some(n)) if n > MAX_INTEGER => return Err(invalid(format!("desiredCount: must be at most {MAX_INTEGER}"))),
        (_, n) => n.unwrap_or(0),
    };
    let strategies_given = req.placement_strategy.unwrap_or_default();
    if daemon && !strategies_given.is_empty() {
        return Err(invalid(
            "The daemon scheduling strategy does not support placement strategies. Remove the placement strategy and try again",
        ));
    }
    let placement_strategy = parse_strategies("placementStrategy", &strategies_given)?;
    let config = req.deployment_configuration.unwrap_or_default();
    let (default_max, default_min) = if daemon { (100, 0) } else { (200, 100) };
    let maximum_percent = config.maximum_percent.unwrap_or(default_max);
    let minimum_healthy_percent = config.minimum_healthy_percent.unwrap_or(default_min);
    check_deployment_configuration(daemon, maximum_percent, minimum_healthy_percent)?;
    let load_balancers = req.load_balancers.unwrap_or_default();
    if load_balancers.len() > 1 {
        return Err(invalid("loadBalancers: a service can have at most one load balancer"));
    }
    check_grace(req.health_check_grace_period_seconds)?;
    check_controller(req.deployment_controller.as_ref())?;
    check_rebalancing(req.availability_zone_rebalancing.as_deref())?;
    let circuit_breaker = config
        .deployment_circuit_breaker
        .as_ref()
        .map(CircuitBreakerWire::typed);
    let strategy = strategy_from_wire(
        "capacityProviderStrategy",
        req.capacity_provider_strategy.take().unwrap_or_default(),
    )?;
    match req.propagate_tags.as_deref() {
        None | Some("TASK_DEFINITION") | Some("SERVICE") | Some("NONE") => {}
        Some(other) => {
            return Err(invalid(format!(
                "propagateTags: {other} is not one of TASK_DEFINITION, SERVICE, NONE"
            )))
        }
    }
    let tags = wire::tags_from_wire("tags", req.tags)?;
    let constraints_given = req.placement_constraints.unwrap_or_default();
    let view = ctx.read_view().await?;
    let Some(cluster_record) =
        state::get_cluster(view, &cluster)?.filter(|c| c.status == crate::model::ClusterStatus::Active)
    else {
        return Err(ApiError::cluster_not_found());
    };
    let definition = resolve_task_definition(ctx, view, &td)?;
    let (kind, strategy) = launch_kind(
        &cluster_record,
        &definition,
        LaunchAsk {
            launch_type: req.launch_type.as_deref(),
            strategy,
            platform_version: req.platform_version.as_deref(),
            network: req.network_configuration.as_ref(),
        },
    )?;
    let kind = super::tasks::gate_kind(ctx, kind)?;
    if circuit_breaker.is_some_and(|b| b.enable) || !strategy.is_empty() {
        ctx.require_modern("The deployment circuit breaker and capacity provider strategies")?;
    }
    if kind.is_fargate() && (!placement_strategy.is_empty() || !constraints_given.is_empty()) {
        return Err(invalid(
            "Placement strategies and constraints are not supported with the FARGATE launch type.",
        ));
    }
    if daemon && kind.is_fargate() {
        return Err(invalid(
            "schedulingStrategy: the DAEMON scheduling strategy is not supported for the FARGATE launch type",
        ));
    }
    let placement_constraints = parse_constraints(
        "placementConstraints",
        &constraints_given,
        taskdef::definition_constraints(&definition).len(),
    )?;
    let mut spec = Map::new();
    spec.insert("loadBalancers".into(), json!(load_balancers));
    spec.insert(
        "serviceRegistries".into(),
        json!(req.service_registries.unwrap_or_default()),
    );
    if let Some(role) = req.role {
        spec.insert("roleArn".into(), json!(role));
    }
    if let Some(grace) = req.health_check_grace_period_seconds {
        spec.insert("healthCheckGracePeriodSeconds".into(), json!(grace));
    }
    if let Some(enable) = req.enable_ecs_managed_tags {
        spec.insert("enableECSManagedTags".into(), json!(enable));
    }
    if let Some(propagate) = req.propagate_tags {
        spec.insert("propagateTags".into(), json!(propagate));
    }
    if let Some(rebalancing) = req.availability_zone_rebalancing {
        spec.insert("availabilityZoneRebalancing".into(), json!(rebalancing));
    }
    if let Some(controller) = req.deployment_controller {
        spec.insert("deploymentController".into(), Value::Object(controller));
    }
    if let Some(exec) = req.enable_execute_command {
        spec.insert("enableExecuteCommand".into(), json!(exec));
    }
    if kind.is_fargate() {
        let version = req.platform_version.clone().unwrap_or_else(|| "LATEST".into());
        spec.insert("platformVersion".into(), json!(version));
        spec.insert("platformFamily".into(), json!("Linux"));
    }
    let scope = &ctx.state.scope;
    let creation = Creation {
        cluster,
        name,
        task_definition_family: definition.family.clone(),
        task_definition_revision: definition.revision,
        task_definition_arn: definition.arn.clone(),
        desired_count: desired,
        daemon,
        maximum_percent,
        minimum_healthy_percent,
        spec: ServiceSpec {
            placement_strategy,
            placement_constraints,
            echoed: spec,
        },
        network_configuration: req.network_configuration.map(Value::Object),
        platform_version: req.platform_version,
        client_token: req.client_token.clone(),
        request_digest: format!("{:016x}", ctx.body_digest),
        tags,
        principal: ctx.caller.principal_arn.clone(),
        root: scope.root_principal(),
        long_by_default: scope.long_arns_by_default && ctx.modern(),
        arn_prefix: scope.arn_prefix(),
        launch_type: if strategy.is_empty() {
            Some(kind.launch_type.clone().unwrap_or_else(|| "EC2".into()))
        } else {
            None
        },
        capacity_provider_strategy: strategy,
        circuit_breaker,
        rollout_states: ctx.modern(),
    };
    let command = Command::CreateService(Box::new(creation));
    let outcome = match req.client_token.as_deref() {
        Some(token) => ctx.propose_idempotent("CreateService", token, command).await?,
        None => ctx.propose(command).await?,
    };
    service_outcome(outcome)
}

/// The bounds of `deploymentConfiguration`: REPLICA needs 0 ≤ minimum ≤ 100 ≤ maximum; DAEMON
/// needs maximum 100.
fn check_deployment_configuration(daemon: bool, maximum: i64, minimum: i64) -> Result<(), ApiError> {
    if !(0..=100).contains(&minimum) {
        return Err(invalid(
            "deploymentConfiguration.minimumHealthyPercent: must be between 0 and 100",
        ));
    }
    if daemon && maximum != 100 {
        return Err(invalid(
            "deploymentConfiguration.maximumPercent: must be 100 for the DAEMON scheduling strategy",
        ));
    }
    if !(100..=2000).contains(&maximum) {
        return Err(invalid(
            "deploymentConfiguration.maximumPercent: must be between 100 and 2000",
        ));
    }
    Ok(())
}

/// A task definition an UpdateService rolls out must suit the service as CreateService checks
/// it: Fargate-compatible for a Fargate service, and awsvpc exactly when the service (or the
/// update) has a network configuration.
fn check_new_definition(
    current: &Service,
    definition: &crate::model::TaskDefinition,
    strategy: Option<&[crate::model::StrategyItem]>,
    network: Option<&Map<String, Value>>,
) -> Result<(), ApiError> {
    let strategy = strategy.unwrap_or(&current.capacity_provider_strategy);
    let fargate = current.launch_type == "FARGATE" || !strategy.is_empty();
    if fargate && !crate::launch::fargate_compatible(definition) {
        return Err(invalid("Task definition does not support launch_type FARGATE."));
    }
    let awsvpc = definition.body.get("networkMode").and_then(Value::as_str) == Some("awsvpc");
    let has_network = network.is_some()
        || current
            .deployments
            .first()
            .is_some_and(|d| d.network_configuration.is_some());
    match (awsvpc, has_network) {
        (true, false) => Err(invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (false, true) if network.is_some() => Err(invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        _ => Ok(()),
    }
}

/// The cluster and service name a request names (`service` is required).
fn one_service(ctx: &Ctx<'_>, req: &ServiceRequest) -> Result<(String, String), ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let given = req
        .service
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("service: is required"))?;
    let name = ctx
        .state
        .scope
        .service_name(&cluster, given)
        .filter(|n| valid_ecs_name(n))
        .ok_or_else(|| ApiError::ServiceNotFound("Service not found.".into()))?
        .to_string();
    Ok((cluster, name))
}

pub async fn update_service(ctx: &Ctx<'_>, mut req: ServiceRequest) -> Result<Value, ApiError> {
    let (cluster, name) = one_service(ctx, &req)?;
    check_rebalancing(req.availability_zone_rebalancing.as_deref())?;
    let strategy = req
        .capacity_provider_strategy
        .take()
        .map(|s| strategy_from_wire("capacityProviderStrategy", s))
        .transpose()?;
    let placement_strategy = req
        .placement_strategy
        .take()
        .map(|given| parse_strategies("placementStrategy", &given))
        .transpose()?;
    let mut echoed = Map::new();
    if let Some(rebalancing) = req.availability_zone_rebalancing.take() {
        echoed.insert("availabilityZoneRebalancing".into(), json!(rebalancing));
    }
    if let Some(exec) = req.enable_execute_command {
        echoed.insert("enableExecuteCommand".into(), json!(exec));
    }
    if let Some(managed) = req.enable_ecs_managed_tags {
        echoed.insert("enableECSManagedTags".into(), json!(managed));
    }
    match req.propagate_tags.take() {
        None => {}
        Some(p) if ["TASK_DEFINITION", "SERVICE", "NONE"].contains(&p.as_str()) => {
            echoed.insert("propagateTags".into(), json!(p));
        }
        Some(other) => {
            return Err(invalid(format!(
                "propagateTags: {other} is not one of TASK_DEFINITION, SERVICE, NONE"
            )))
        }
    }
    if req.desired_count.is_some_and(|n| n < 0) {
        return Err(invalid("desiredCount: must not be negative"));
    }
    if req.desired_count.is_some_and(|n| n > MAX_INTEGER) {
        return Err(invalid(format!("desiredCount: must be at most {MAX_INTEGER}")));
    }
    check_network(req.network_configuration.as_ref())?;
    check_grace(req.health_check_grace_period_seconds)?;
    let view = ctx.read_view().await?;
    if state::get_cluster(view, &cluster)?
        .filter(|c| c.status == crate::model::ClusterStatus::Active)
        .is_none()
    {
        return Err(ApiError::cluster_not_found());
    }
    let current =
        svcs::get(view, &cluster, &name)?.ok_or_else(|| ApiError::ServiceNotFound("Service not found.".into()))?;
    if current.status != ServiceStatus::Active {
        return Err(ApiError::ServiceNotActive("Service was not ACTIVE.".into()));
    }
    let daemon = current.scheduling_strategy == "DAEMON";
    if daemon && req.desired_count.is_some() {
        return Err(invalid(
            "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
        ));
    }
    let mut circuit_breaker = None;
    let deployment_configuration = match req.deployment_configuration {
        Some(c) => {
            let max = c.maximum_percent.unwrap_or(current.maximum_percent);
            let min = c.minimum_healthy_percent.unwrap_or(current.minimum_healthy_percent);
            check_deployment_configuration(daemon, max, min)?;
            circuit_breaker = c.deployment_circuit_breaker.as_ref().map(CircuitBreakerWire::typed);
            Some((c.maximum_percent, c.minimum_healthy_percent))
        }
        None => None,
    };
    if let Some(strategy) = &strategy {
        // Between a launch type and a strategy, or to another provider, tasks are replaced.
        if current.launch_type.is_empty() != strategy.is_empty() && !req.force_new_deployment.unwrap_or(false) {
            return Err(invalid(
                "capacityProviderStrategy: changing between a launch type and a capacity provider strategy needs forceNewDeployment",
            ));
        }
        let cluster_record = state::get_cluster(view, &cluster)?.ok_or_else(ApiError::cluster_not_found)?;
        if strategy
            .iter()
            .any(|i| !cluster_record.options.capacity_providers.contains(&i.capacity_provider))
        {
            return Err(crate::state::Rejection::CapacityProviderNotAssociated.into());
        }
    }
    let placement_constraints = match req.placement_constraints.take() {
        Some(given) => Some(parse_constraints("placementConstraints", &given, 0)?),
        None => None,
    };
    let newer = circuit_breaker.is_some()
        || strategy.is_some()
        || !echoed.is_empty()
        || placement_strategy.is_some()
        || placement_constraints.is_some();
    if newer {
        ctx.require_modern(
            "Updating a service's circuit breaker, capacity provider strategy, placement or tag settings",
        )?;
    }
    let task_definition = match req.task_definition.as_deref().filter(|t| !t.is_empty()) {
        Some(td) => {
            let d = resolve_task_definition(ctx, view, td)?;
            check_new_definition(&current, &d, strategy.as_deref(), req.network_configuration.as_ref())?;
            Some((d.family, d.revision, d.arn))
        }
        None => None,
    };
    let update = Update {
        cluster,
        name,
        desired_count: req.desired_count,
        task_definition,
        deployment_configuration,
        network_configuration: req.network_configuration.map(Value::Object),
        platform_version: req.platform_version,
        force_new_deployment: req.force_new_deployment.unwrap_or(false),
        health_check_grace_period_seconds: req.health_check_grace_period_seconds,
        circuit_breaker,
        capacity_provider_strategy: strategy,
        echoed,
        placement_strategy,
        placement_constraints,
        rollout_states: ctx.modern(),
    };
    service_outcome(ctx.propose(Command::UpdateService(Box::new(update))).await?)
}

pub async fn delete_service(ctx: &Ctx<'_>, req: ServiceRequest) -> Result<Value, ApiError> {
    let (cluster, name) = one_service(ctx, &req)?;
    let command = Command::DeleteService {
        cluster,
        name,
        force: req.force.unwrap_or(false),
    };
    service_outcome(ctx.propose(command).await?)
}

pub async fn describe_services(ctx: &Ctx<'_>, req: ServiceRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let given = wire::describe_ids("services", req.services, MAX_DESCRIBE)?;
    let with_tags = wire::include_tags(req.include, &[])?;
    let view = ctx.cluster_view(&cluster).await?;
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for g in given {
        let found = match ctx.state.scope.service_name(&cluster, &g) {
            Some(name) => svcs::get(view, &cluster, name)?,
            None => None,
        };
        match found {
            Some(s) => services.push(service_to_wire(&svcs::with_events(view, s)?, with_tags)),
            None => {
                let arn = if g.starts_with("arn:") {
                    g
                } else {
                    crate::model::arn::service(&ctx.state.scope.arn_prefix(), &cluster, &g, false)
                };
                failures.push(wire::missing(arn))
            }
        }
    }
    Ok(json!({ "services": services, "failures": failures }))
}

pub async fn list_services(ctx: &Ctx<'_>, req: ServiceRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_DEFAULT)?;
    match req.launch_type.as_deref() {
        None | Some("EC2") | Some("FARGATE") | Some("EXTERNAL") => {}
        Some(other) => {
            return Err(invalid(format!(
                "launchType: {other} is not one of EC2, FARGATE, EXTERNAL"
            )))
        }
    }
    match req.scheduling_strategy.as_deref() {
        None | Some("REPLICA") | Some("DAEMON") => {}
        Some(other) => {
            return Err(invalid(format!(
                "schedulingStrategy: {other} is not one of REPLICA, DAEMON"
            )))
        }
    }
    let params = format!("{:?}", (&cluster, &req.launch_type, &req.scheduling_strategy));
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("services", &params, token)?),
        None => None,
    };
    let view = ctx.cluster_view(&cluster).await?;
    let matching: Vec<Service> = svcs::all(view, &cluster)?
        .into_iter()
        .filter(|s| s.status == ServiceStatus::Active)
        .filter(|s| req.launch_type.as_ref().is_none_or(|l| s.launch_type == *l))
        .filter(|s| {
            req.scheduling_strategy
                .as_ref()
                .is_none_or(|l| s.scheduling_strategy == *l)
        })
        .filter(|s| after.as_ref().is_none_or(|a| s.name > *a))
        .collect();
    Ok(wire::page(
        &matching,
        limit,
        "serviceArns",
        ("services", &params),
        |s| &s.arn,
        |s| &s.name,
    ))
}

/// ListServicesByNamespace: services of a Service Connect or Cloud Map namespace. There is no
/// service discovery here, so no service is in any namespace.
pub async fn list_services_by_namespace(_ctx: &Ctx<'_>, req: ServiceRequest) -> Result<Value, ApiError> {
    if req.namespace.as_deref().is_none_or(str::is_empty) {
        return Err(invalid("namespace: is required"));
    }
    wire::max_results(req.max_results, LIST_MAX, LIST_DEFAULT)?;
    Ok(json!({ "serviceArns": [] }))
}
