//! One launch path. RunTask, StartTask and the service scheduler build a task definition's
//! launch here ([`template`]) and plan where its tasks go ([`Placement`], [`plan`], [`plan_on`]);
//! `apply` then re-checks every placement (`state::resources::check`). The API validates and
//! translates; the policy defaults live here: a task's group is `family:<family>` unless one is
//! given, and a REPLICA service without strategies spreads over zones, then instances.
//!
//! It runs on the proposer (the leader, for placement): it stamps fresh task ids and draws the
//! placement seed ([`stamp`]); `apply` never calls it.

use std::borrow::Borrow;

use serde_json::{Map, Value};

use crate::cql;
use crate::model::{ArnScope, ConstraintKind, ContainerInstance, PlacementConstraint, Tag, TaskDefinition};
use crate::placement::{self, SpreadField, Strategy};
use crate::stamp;
use crate::state::resources::has_attributes;
use crate::state::tasks::{Launch, LaunchKind};
use crate::taskdef::{self, OverrideError};

/// Who launches, and what the launch carries beyond its task definition.
pub struct Origin {
    pub cluster: String,
    /// The task group; `None`: `family:<family>`, as ECS.
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub tags: Vec<Tag>,
    /// Service name and PRIMARY deployment ID, for a service's tasks.
    pub service: Option<(String, String)>,
    /// The principal whose account settings choose the ARN format.
    pub principal: String,
}

/// The launch of `definition` with `overrides` applied: containers, reservation, sizes and
/// where its ARNs come from. No task is in it yet.
pub fn template(
    scope: &ArnScope,
    definition: &TaskDefinition,
    overrides: Option<Map<String, Value>>,
    origin: Origin,
) -> Result<Launch, OverrideError> {
    let (containers, reservation, overrides) = taskdef::containers_and_reservation(definition, overrides)?;
    let (cpu, memory) = taskdef::task_size(definition);
    Ok(Launch {
        cluster: origin.cluster,
        task_definition_family: definition.family.clone(),
        task_definition_revision: definition.revision,
        task_definition_arn: definition.arn.clone(),
        reservation,
        requires_attributes: taskdef::required_attributes(definition),
        group: origin.group.unwrap_or_else(|| format!("family:{}", definition.family)),
        distinct_instance: false,
        member_of: Vec::new(),
        started_by: origin.started_by,
        overrides,
        containers,
        cpu,
        memory,
        tags: origin.tags,
        service: origin.service,
        principal: origin.principal,
        root: scope.root_principal(),
        long_by_default: scope.long_arns_by_default,
        arn_prefix: scope.arn_prefix(),
        tasks: Vec::new(),
        failures: Vec::new(),
        event_id: None,
        kind: Default::default(),
    })
}

/// The attribute an agent that offers Fargate capacity registers its instances with
/// (`ecs-agent --capacity fargate`): FARGATE tasks go only there, EC2 tasks never.
pub const CAPACITY_ATTRIBUTE: &str = "ecsd.capacity";

/// Where a launch of `kind` may go: instances of Fargate capacity, or the others.
fn capacity_expression(kind: &LaunchKind) -> &'static str {
    if kind.is_fargate() {
        "attribute:ecsd.capacity == fargate"
    } else {
        "attribute:ecsd.capacity !exists"
    }
}

/// The capacity provider a launch by `strategy` goes to: the one with a base, else the
/// heaviest (one provider per launch; tasks are not split by weight).
pub fn strategy_provider(strategy: &[crate::model::StrategyItem]) -> Option<String> {
    strategy
        .iter()
        .find(|i| i.base > 0)
        .or_else(|| strategy.iter().max_by_key(|i| i.weight))
        .map(|i| i.capacity_provider.clone())
}

/// Whether `definition` can run on Fargate (its computed `compatibilities` say so).
pub fn fargate_compatible(definition: &TaskDefinition) -> bool {
    definition
        .body
        .get("compatibilities")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|v| v == "FARGATE"))
}

/// The tags a launch's tasks carry: the request's, then the `propagated` ones (the task
/// definition's or the service's) whose keys it lacks, then with `enableECSManagedTags` ECS's
/// `aws:ecs:clusterName` (and `aws:ecs:serviceName` for a service's task).
pub fn task_tags(mut tags: Vec<Tag>, propagated: &[Tag], managed: Option<(&str, Option<&str>)>) -> Vec<Tag> {
    for t in propagated {
        if !tags.iter().any(|x| x.key == t.key) {
            tags.push(t.clone());
        }
    }
    if let Some((cluster, service)) = managed {
        tags.push(Tag {
            key: "aws:ecs:clusterName".into(),
            value: cluster.into(),
        });
        if let Some(service) = service {
            tags.push(Tag {
                key: "aws:ecs:serviceName".into(),
                value: service.into(),
            });
        }
    }
    tags
}

/// How a service's tasks launch: its launch type or capacity provider strategy, and the awsvpc
/// network of its PRIMARY deployment (validated when it was set, read leniently here).
pub fn service_kind(service: &crate::model::Service, definition: &TaskDefinition) -> LaunchKind {
    let strategy = &service.capacity_provider_strategy;
    let provider = strategy_provider(strategy);
    let fargate = service.launch_type == "FARGATE" || provider.is_some();
    let awsvpc = definition.body.get("networkMode").and_then(Value::as_str) == Some("awsvpc");
    let network = service
        .deployments
        .first()
        .and_then(|d| d.network_configuration.as_ref())
        .and_then(|n| n.get("awsvpcConfiguration"));
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    LaunchKind {
        launch_type: fargate.then(|| "FARGATE".to_string()),
        capacity_provider: fargate.then(|| provider.unwrap_or_else(|| "FARGATE".into())),
        platform_version: fargate.then(|| FARGATE_PLATFORM_VERSION.to_string()),
        awsvpc: network.filter(|_| awsvpc).map(|n| crate::model::AwsVpc {
            subnets: strings(n.get("subnets")),
            security_groups: strings(n.get("securityGroups")),
            assign_public_ip: n.get("assignPublicIp").and_then(Value::as_str) == Some("ENABLED"),
        }),
    }
}

/// Fargate's platform version here: LATEST resolves to it.
pub const FARGATE_PLATFORM_VERSION: &str = "1.4.0";

/// ECS's default strategies for a REPLICA service: balance across availability zones, then
/// instances.
pub fn service_default_strategies() -> Vec<Strategy> {
    vec![
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        Strategy::Spread(SpreadField::Instance),
    ]
}

/// A `memberOf` expression that does not parse (its first 100 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the placement constraint expression {expression:?} does not parse: {error}")]
pub struct InvalidConstraint {
    pub expression: String,
    pub error: cql::CqlError,
}

/// Where a launch's tasks may go: its strategies in order, `distinctInstance`, and the
/// `memberOf` expressions (the request's and the task definition's), parsed once.
pub struct Placement {
    pub strategies: Vec<Strategy>,
    pub distinct_instance: bool,
    pub member_of: Vec<String>,
    parsed: Vec<cql::Expr>,
}

impl Placement {
    /// The placement of a launch of `definition` with `strategies` in order and `constraints`
    /// (the request's or the service's) with the task definition's own; `distinct_instance`
    /// asks for one task per instance whatever the constraints say (a DAEMON service's).
    ///
    /// Every expression is parsed here, and one that does not parse (a task definition stored
    /// by a version that did not check them) refuses the launch: a constraint is never dropped.
    pub fn new(
        strategies: Vec<Strategy>,
        constraints: &[PlacementConstraint],
        definition: &TaskDefinition,
        distinct_instance: bool,
        kind: &LaunchKind,
    ) -> Result<Placement, InvalidConstraint> {
        let distinct_instance =
            distinct_instance || constraints.iter().any(|c| c.kind == ConstraintKind::DistinctInstance);
        let member_of: Vec<String> = constraints
            .iter()
            .filter_map(|c| c.member_of().map(str::to_string))
            .chain(taskdef::definition_member_of(definition))
            .chain(std::iter::once(capacity_expression(kind).to_string()))
            .collect();
        let parsed = member_of
            .iter()
            .map(|e| {
                cql::parse(e).map_err(|error| InvalidConstraint {
                    expression: e.chars().take(100).collect(),
                    error,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Placement {
            strategies,
            distinct_instance,
            member_of,
            parsed,
        })
    }

    /// Whether `instance` meets the launch's required attributes and constraints (where a
    /// DAEMON service's task belongs).
    pub fn admits(&self, launch: &Launch, instance: &ContainerInstance) -> bool {
        let facts = placement::facts(instance);
        has_attributes(instance, &launch.requires_attributes) && self.parsed.iter().all(|e| cql::eval(e, &facts))
    }

    /// Records the constraints in `launch`, for `apply` to re-check.
    pub fn constrain(&self, launch: &mut Launch) {
        launch.distinct_instance = self.distinct_instance;
        launch.member_of = self.member_of.clone();
    }
}

/// Plans up to `count` tasks of `launch` over `instances` with the placement engine.
pub fn plan<I: Borrow<ContainerInstance>>(
    launch: &Launch,
    placement: &Placement,
    instances: &[I],
    count: usize,
) -> placement::Plan {
    let plan = placement::place(
        instances,
        &placement::Request {
            reservation: &launch.reservation,
            count,
            group: &launch.group,
            distinct_instance: launch.distinct_instance,
            member_of: &placement.parsed,
            requires_attributes: &launch.requires_attributes,
            strategies: &placement.strategies,
            seed: stamp::seed(),
        },
    );
    record(&plan, count);
    plan
}

/// Counts a plan's placements and, when it placed fewer tasks than `wanted`, the tasks left
/// over and why the instances were refused (one of a few fixed reasons each).
fn record(plan: &placement::Plan, wanted: usize) {
    metrics::counter!("ecsd_placements_total").increment(plan.placements.len() as u64);
    if plan.placements.len() >= wanted {
        return;
    }
    metrics::counter!("ecsd_placement_shortfall_tasks_total").increment((wanted - plan.placements.len()) as u64);
    let mut reasons: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, why) in &plan.failures {
        *reasons.entry(why.as_str()).or_default() += 1;
    }
    for (reason, instances) in reasons {
        metrics::counter!("ecsd_placement_failures_total", "reason" => reason.to_string()).increment(instances);
    }
}

/// One task on each instance of `on` (a DAEMON service's), each checked as `apply` will.
pub fn plan_on(
    launch: &Launch,
    placement: &Placement,
    instances: &[ContainerInstance],
    on: &[String],
) -> placement::Plan {
    let mut plan = placement::Plan::default();
    for id in on {
        let Some(instance) = instances.iter().find(|i| i.id == *id) else {
            continue;
        };
        match placement::check(
            instance,
            &launch.reservation,
            &launch.requires_attributes,
            &launch.group,
            true,
            &placement.parsed,
        ) {
            None => plan.placements.push(id.clone()),
            Some(why) => plan.failures.push((instance.arn.clone(), why.to_string())),
        }
    }
    record(&plan, on.len());
    plan
}

/// A task of `launch` on each instance ID of `on`, with fresh identifiers.
pub fn add_tasks<'a>(launch: &mut Launch, on: impl IntoIterator<Item = &'a String>) {
    let containers = launch.containers.len();
    launch
        .tasks
        .extend(on.into_iter().map(|id| stamp::new_task(id, containers)));
}
