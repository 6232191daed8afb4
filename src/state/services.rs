//! Services: create (with idempotency), update (deployments), delete, task counts, queries.
//!
//! Keys: `svc/<cluster>\0<name>`. A service's counts (and each deployment's) are updated in the
//! same apply step that changes one of its tasks, so they always agree with the tasks.
//! Deployment IDs are `ecs-svc/` and Long.MAX_VALUE minus the creation time in milliseconds,
//! as in every example of the reference; creation times of one service's deployments are
//! strictly increasing, so IDs never repeat.

use serde::{Deserialize, Serialize};

use super::{
    account_settings, container_instances, decode, encode, get_cluster, put_cluster, tasks, KvError, KvRead, Outcome,
    Rejection, Space, Txn,
};
use crate::model::{
    CircuitBreaker, ClusterStatus, Deployment, InstanceStatus, Service, ServiceEvent, ServiceSpec, ServiceStatus,
    StrategyItem, Tag, TaskDefinitionStatus, TaskStatus, MAX_SERVICE_EVENTS,
};

fn key(cluster: &str, name: &str) -> Vec<u8> {
    format!("svc/{cluster}\0{name}").into_bytes()
}

/// The deployment ID for a deployment created at `created_at_ms`.
pub fn deployment_id(created_at_ms: u64) -> String {
    format!("ecs-svc/{}", i64::MAX as u64 - created_at_ms)
}

/// What CreateService asks for, validated and stamped by the proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creation {
    pub cluster: String,
    pub name: String,
    pub task_definition_family: String,
    pub task_definition_revision: u32,
    pub task_definition_arn: String,
    pub desired_count: i64,
    pub daemon: bool,
    pub maximum_percent: i64,
    pub minimum_healthy_percent: i64,
    pub spec: ServiceSpec,
    pub network_configuration: Option<serde_json::Value>,
    pub platform_version: Option<String>,
    pub client_token: Option<String>,
    pub request_digest: String,
    pub tags: Vec<Tag>,
    pub principal: String,
    pub root: String,
    /// Whether a principal nobody opted in or out gets long ARNs (entries without it: no).
    #[serde(default)]
    pub long_by_default: bool,
    pub arn_prefix: String,
    /// EC2 or FARGATE; empty with a capacity provider strategy (entries without it: EC2).
    #[serde(default)]
    pub launch_type: Option<String>,
    #[serde(default)]
    pub capacity_provider_strategy: Vec<StrategyItem>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Deployments get rollout states (entries without it: none, as before).
    #[serde(default)]
    pub rollout_states: bool,
}

/// What UpdateService asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub cluster: String,
    pub name: String,
    pub desired_count: Option<i64>,
    /// (family, revision, ARN) of the new task definition.
    pub task_definition: Option<(String, u32, String)>,
    pub deployment_configuration: Option<(Option<i64>, Option<i64>)>,
    pub network_configuration: Option<serde_json::Value>,
    pub platform_version: Option<String>,
    pub force_new_deployment: bool,
    pub health_check_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default)]
    pub capacity_provider_strategy: Option<Vec<StrategyItem>>,
    /// Other request fields to echo from now on (by their ECS name).
    #[serde(default)]
    pub echoed: serde_json::Map<String, serde_json::Value>,
    /// New placement strategies and constraints (`[]` removes them).
    #[serde(default)]
    pub placement_strategy: Option<Vec<crate::model::PlacementStrategy>>,
    #[serde(default)]
    pub placement_constraints: Option<Vec<crate::model::PlacementConstraint>>,
    /// A new deployment gets a rollout state (entries without it: none, as before).
    #[serde(default)]
    pub rollout_states: bool,
}

/// One service of `cluster`, in any status.
pub fn get(kv: &dyn KvRead, cluster: &str, name: &str) -> Result<Option<Service>, KvError> {
    kv.get(Space::Data, &key(cluster, name))?
        .map(|b| decode(&b))
        .transpose()
}

/// Every service of `cluster` in name order, INACTIVE ones included.
pub fn all(kv: &dyn KvRead, cluster: &str) -> Result<Vec<Service>, KvError> {
    let from = format!("svc/{cluster}\0").into_bytes();
    let to = format!("svc/{cluster}\u{1}").into_bytes();
    super::scan_values(kv, &from, &to)
}

/// A service's events are kept apart (`sev/<cluster>\0<name>`), so that the many updates of its
/// counts do not rewrite them: [`get`] and [`all`] leave `events` empty, [`with_events`] fills it.
fn events_key(cluster: &str, name: &str) -> Vec<u8> {
    format!("sev/{cluster}\0{name}").into_bytes()
}

/// The events of a service, newest first.
pub fn events(kv: &dyn KvRead, cluster: &str, name: &str) -> Result<Vec<ServiceEvent>, KvError> {
    kv.get(Space::Data, &events_key(cluster, name))?
        .map(|b| decode(&b))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// `service` with its events, as the API shows it.
pub fn with_events(kv: &dyn KvRead, mut service: Service) -> Result<Service, KvError> {
    service.events = events(kv, &service.cluster, &service.name)?;
    Ok(service)
}

/// Stores `service` without its events (those are written by [`push_event`] alone).
fn put(txn: &mut Txn<'_>, service: &Service) {
    let bytes = if service.events.is_empty() {
        encode(service)
    } else {
        let mut bare = service.clone();
        bare.events.clear();
        encode(&bare)
    };
    txn.put(Space::Data, key(&service.cluster, &service.name), bytes);
}

fn active_instances(kv: &dyn KvRead, cluster: &str) -> Result<i64, KvError> {
    Ok(container_instances::all(kv, cluster)?
        .iter()
        .filter(|i| i.status == InstanceStatus::Active)
        .count() as i64)
}

pub(super) fn create(txn: &mut Txn<'_>, now_ms: u64, c: &Creation) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, &c.cluster)?.filter(|x| x.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    if let Some(existing) = get(txn, &c.cluster, &c.name)?.filter(|s| s.status != ServiceStatus::Inactive) {
        // The same token and the same request: the earlier creation, unchanged.
        let same = c.client_token.is_some() && existing.client_token == c.client_token;
        if same && existing.request_digest == c.request_digest {
            return Ok(Outcome::Service(Box::new(with_events(txn, existing)?)));
        }
        return Ok(Outcome::Rejected(Rejection::ServiceNotIdempotent));
    }
    let definition = super::task_definitions::get(txn, &c.task_definition_family, c.task_definition_revision)?;
    if definition.is_none_or(|d| d.status != TaskDefinitionStatus::Active) {
        return Ok(Outcome::Rejected(Rejection::TaskDefinitionInactive));
    }
    let long = account_settings::long_arns(txn, &c.principal, &c.root, "serviceLongArnFormat", c.long_by_default)?;
    let arn = crate::model::arn::service(&c.arn_prefix, &c.cluster, &c.name, long);
    let desired = if c.daemon {
        active_instances(txn, &c.cluster)?
    } else {
        c.desired_count
    };
    let service = Service {
        cluster: c.cluster.clone(),
        name: c.name.clone(),
        arn,
        status: ServiceStatus::Active,
        task_definition_arn: c.task_definition_arn.clone(),
        desired_count: desired,
        running_count: 0,
        pending_count: 0,
        launch_type: match &c.launch_type {
            Some(l) => l.clone(),
            None if c.capacity_provider_strategy.is_empty() => "EC2".into(),
            None => String::new(),
        },
        scheduling_strategy: if c.daemon { "DAEMON" } else { "REPLICA" }.into(),
        maximum_percent: c.maximum_percent,
        minimum_healthy_percent: c.minimum_healthy_percent,
        deployments: vec![Deployment {
            network_configuration: c.network_configuration.clone(),
            platform_version: c.platform_version.clone(),
            ..Deployment::new(
                deployment_id(now_ms),
                c.task_definition_arn.clone(),
                desired,
                now_ms,
                c.rollout_states,
            )
        }],
        events: Vec::new(),
        spec: c.spec.clone(),
        created_at_ms: now_ms,
        created_by: c.principal.clone(),
        client_token: c.client_token.clone(),
        request_digest: c.request_digest.clone(),
        tags: c.tags.clone(),
        failed_starts: 0,
        last_failed_start_ms: 0,
        capacity_provider_strategy: c.capacity_provider_strategy.clone(),
        circuit_breaker: c.circuit_breaker,
        last_completed: None,
    };
    cluster.active_services += 1;
    put_cluster(txn, &cluster);
    put(txn, &service);
    // A name used before starts over: the INACTIVE service's events are not this one's.
    txn.delete(Space::Data, events_key(&c.cluster, &c.name));
    Ok(Outcome::Service(Box::new(service)))
}

pub(super) fn update(txn: &mut Txn<'_>, now_ms: u64, u: &Update) -> Result<Outcome, KvError> {
    if get_cluster(txn, &u.cluster)?
        .filter(|x| x.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let Some(mut service) = get(txn, &u.cluster, &u.name)? else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotFound));
    };
    if service.status != ServiceStatus::Active {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    }
    if let Some((family, revision, _)) = &u.task_definition {
        let definition = super::task_definitions::get(txn, family, *revision)?;
        if definition.is_none_or(|d| d.status != TaskDefinitionStatus::Active) {
            return Ok(Outcome::Rejected(Rejection::TaskDefinitionInactive));
        }
    }
    if let Some((max, min)) = u.deployment_configuration {
        service.maximum_percent = max.unwrap_or(service.maximum_percent);
        service.minimum_healthy_percent = min.unwrap_or(service.minimum_healthy_percent);
        if service.scheduling_strategy == "DAEMON" && service.maximum_percent != 100 {
            return Ok(Outcome::Rejected(Rejection::DaemonMaximumPercent));
        }
    }
    if let Some(grace) = u.health_check_grace_period_seconds {
        service
            .spec
            .echoed
            .insert("healthCheckGracePeriodSeconds".into(), serde_json::json!(grace));
    }
    if let Some(desired) = u.desired_count {
        service.desired_count = desired;
    }
    if let Some(breaker) = u.circuit_breaker {
        service.circuit_breaker = Some(breaker);
    }
    if let Some(strategy) = &u.capacity_provider_strategy {
        service.capacity_provider_strategy = strategy.clone();
        // A service launches by its strategy, or by its launch type: never both.
        if !strategy.is_empty() {
            service.launch_type = String::new();
        }
    }
    for (key, value) in &u.echoed {
        service.spec.echoed.insert(key.clone(), value.clone());
    }
    if let Some(strategy) = &u.placement_strategy {
        service.spec.placement_strategy = strategy.clone();
    }
    if let Some(constraints) = &u.placement_constraints {
        service.spec.placement_constraints = constraints.clone();
    }
    let primary_arn = service
        .deployments
        .first()
        .map(|d| d.task_definition_arn.clone())
        .unwrap_or_default();
    let new_definition = u.task_definition.as_ref().filter(|(_, _, arn)| *arn != primary_arn);
    let network_changed = u.network_configuration.as_ref().is_some_and(|n| {
        service
            .deployments
            .first()
            .and_then(|d| d.network_configuration.as_ref())
            != Some(n)
    });
    if new_definition.is_some() || u.force_new_deployment || network_changed {
        let arn = new_definition.map_or(primary_arn, |(_, _, arn)| arn.clone());
        let primary = start_deployment(&mut service, now_ms, arn, u.rollout_states);
        if let Some(network) = &u.network_configuration {
            primary.network_configuration = Some(network.clone());
        }
        if let Some(platform) = &u.platform_version {
            primary.platform_version = Some(platform.clone());
        }
    } else if let Some(primary) = service.deployments.first_mut() {
        primary.desired_count = service.desired_count;
        primary.updated_at_ms = now_ms;
        if let Some(network) = &u.network_configuration {
            primary.network_configuration = Some(network.clone());
        }
    }
    put(txn, &service);
    Ok(Outcome::Service(Box::new(with_events(txn, service)?)))
}

pub(super) fn delete(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster_name: &str,
    name: &str,
    force: bool,
) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, cluster_name)?.filter(|x| x.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    let Some(mut service) = get(txn, cluster_name, name)? else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotFound));
    };
    if service.status != ServiceStatus::Active {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    }
    if service.scheduling_strategy == "REPLICA" && service.desired_count > 0 && !force {
        return Ok(Outcome::Rejected(Rejection::ServiceScaledAboveZero));
    }
    service.desired_count = 0;
    let primary = service.deployments.first().map(|d| d.id.clone()).unwrap_or_default();
    for d in &mut service.deployments {
        d.desired_count = 0;
        d.updated_at_ms = now_ms;
    }
    tasks::stop_service_tasks(
        txn,
        now_ms,
        cluster_name,
        name,
        &format!("Scaling activity initiated by (deployment {primary})"),
    )?;
    // The service's tags are deleted with it.
    service.tags.clear();
    cluster.active_services = cluster.active_services.saturating_sub(1);
    // The response shows DRAINING; with no tasks left the service is INACTIVE at once.
    service.status = ServiceStatus::Draining;
    let answer = service.clone();
    if service.running_count + service.pending_count == 0 {
        service.status = ServiceStatus::Inactive;
        service.deployments.clear();
    } else {
        cluster.draining_services += 1;
    }
    put_cluster(txn, &cluster);
    put(txn, &service);
    Ok(Outcome::Service(Box::new(with_events(txn, answer)?)))
}

/// How a task's move ends for the service's start throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartResult {
    /// Neither a start nor a failure to start.
    Neither,
    /// The task reached RUNNING: the throttle resets.
    Started,
    /// The task stopped without ever running: one more failure in a row.
    Failed,
}

/// Moves one task of `service`'s deployment from status `from` to `to` in the counts (`None`
/// for "not counted": before launch, or after STOPPED). A DRAINING service whose last task
/// stopped becomes INACTIVE.
#[allow(clippy::too_many_arguments)]
pub(super) fn count_task(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    name: &str,
    deployment: &str,
    from: Option<TaskStatus>,
    to: Option<TaskStatus>,
    result: StartResult,
    failed: bool,
) -> Result<(), KvError> {
    let Some(mut service) = get(txn, cluster, name)? else {
        return Ok(());
    };
    match result {
        StartResult::Neither => {}
        StartResult::Started => service.failed_starts = 0,
        StartResult::Failed => {
            service.failed_starts = service.failed_starts.saturating_add(1);
            service.last_failed_start_ms = now_ms;
        }
    }
    let delta = |status: Option<TaskStatus>, sign: i64, pending: &mut i64, running: &mut i64| match status {
        Some(TaskStatus::Pending) => *pending += sign,
        Some(TaskStatus::Running) => *running += sign,
        _ => {}
    };
    delta(from, -1, &mut service.pending_count, &mut service.running_count);
    delta(to, 1, &mut service.pending_count, &mut service.running_count);
    if let Some(d) = service.deployments.iter_mut().find(|d| d.id == deployment) {
        delta(from, -1, &mut d.pending_count, &mut d.running_count);
        delta(to, 1, &mut d.pending_count, &mut d.running_count);
    }
    if failed && service.status == ServiceStatus::Active {
        trip_breaker(txn, now_ms, &mut service, deployment)?;
    }
    // An older deployment with no tasks left is INACTIVE, and dropped from the list.
    service
        .deployments
        .retain(|d| d.status == "PRIMARY" || d.pending_count + d.running_count > 0);
    if service.status == ServiceStatus::Draining && service.pending_count + service.running_count <= 0 {
        service.status = ServiceStatus::Inactive;
        service.deployments.clear();
        if let Some(mut c) = get_cluster(txn, cluster)? {
            c.draining_services = c.draining_services.saturating_sub(1);
            put_cluster(txn, &c);
        }
    }
    put(txn, &service);
    Ok(())
}

/// Starts a new PRIMARY deployment of `arn` with the previous primary's network and platform
/// version: the others become ACTIVE (one with no tasks left is INACTIVE, and dropped), the
/// service's task definition is `arn`, and the start throttle begins again. Creation times of
/// one service's deployments strictly increase, so deployment IDs are unique.
fn start_deployment(service: &mut Service, now_ms: u64, arn: String, rollout: bool) -> &mut Deployment {
    let created = service
        .deployments
        .iter()
        .map(|d| d.created_at_ms + 1)
        .max()
        .unwrap_or(0)
        .max(now_ms);
    let previous = service.deployments.first().cloned();
    for d in &mut service.deployments {
        d.status = "ACTIVE".into();
    }
    service.deployments.retain(|d| d.pending_count + d.running_count > 0);
    let deployment = Deployment {
        network_configuration: previous.as_ref().and_then(|p| p.network_configuration.clone()),
        platform_version: previous.as_ref().and_then(|p| p.platform_version.clone()),
        ..Deployment::new(
            deployment_id(created),
            arn.clone(),
            service.desired_count,
            created,
            rollout,
        )
    };
    service.deployments.insert(0, deployment);
    service.task_definition_arn = arn;
    // The throttle starts over with a new deployment.
    service.failed_starts = 0;
    &mut service.deployments[0]
}

/// An event ID made in apply, from what is unique about the event (apply draws no fresh ids).
fn derived_event_id(what: &str) -> String {
    let (a, b) = (
        crate::model::stable_hash(format!("a/{what}").as_bytes()),
        crate::model::stable_hash(format!("b/{what}").as_bytes()),
    );
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// One more failed task of `deployment` (it stopped without being asked to). While the PRIMARY
/// deployment is IN_PROGRESS this counts toward the circuit breaker: at the threshold the
/// deployment is FAILED (and launches no more tasks) and, with rollback, a new deployment of
/// the last completed task definition takes over. ECS counts only tasks that never reached
/// RUNNING or failed health checks; an essential container that exits at once is counted here
/// too, so a revision whose containers crash on start is caught.
fn trip_breaker(txn: &mut Txn<'_>, now_ms: u64, service: &mut Service, deployment: &str) -> Result<(), KvError> {
    let Some(primary) = service.deployments.first_mut().filter(|d| d.id == deployment) else {
        return Ok(());
    };
    if primary.rollout_state.as_deref() != Some("IN_PROGRESS") {
        return Ok(());
    }
    primary.failed_tasks += 1;
    let Some(breaker) = service.circuit_breaker.filter(|b| b.enable) else {
        return Ok(());
    };
    // A rollback that fails too is not rolled back again: it stays FAILED.
    let is_rollback = primary.rollback;
    if primary.failed_tasks < CircuitBreaker::threshold(primary.desired_count) {
        return Ok(());
    }
    primary.rollout_state = Some("FAILED".into());
    primary.rollout_state_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
    primary.updated_at_ms = now_ms;
    let failed_id = primary.id.clone();
    let (cluster, name) = (service.cluster.clone(), service.name.clone());
    let message = format!("(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start.");
    push_event(
        txn,
        &cluster,
        &name,
        &derived_event_id(&format!("{failed_id}/failed")),
        now_ms,
        message,
        false,
    )?;
    let Some((completed_id, arn)) = service
        .last_completed
        .clone()
        .filter(|_| breaker.rollback && !is_rollback)
    else {
        return Ok(());
    };
    // The task definition to return to, unless it is being deleted.
    let family = arn
        .rsplit_once(':')
        .map(|(f, _)| f.rsplit('/').next().unwrap_or_default().to_string());
    let usable = match (family, crate::model::arn::task_definition_revision(&arn)) {
        (Some(family), Some(revision)) => super::task_definitions::get(txn, &family, revision)?
            .is_some_and(|d| d.status != TaskDefinitionStatus::DeleteInProgress),
        _ => false,
    };
    if !usable {
        return Ok(());
    }
    let rollback = start_deployment(service, now_ms, arn, true);
    rollback.rollout_state_reason = Some(format!(
        "ECS deployment circuit breaker: rolling back to deploymentId {completed_id}."
    ));
    rollback.rollback = true;
    let message = format!("(service {name}) rolling back to deployment {completed_id}.");
    push_event(
        txn,
        &cluster,
        &name,
        &derived_event_id(&format!("{failed_id}/rollback")),
        now_ms,
        message,
        false,
    )
}

/// The scheduler found the service steady on its PRIMARY `deployment`: COMPLETED, and the
/// deployment a rollback returns to.
pub(super) fn complete_deployment(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    name: &str,
    deployment: &str,
) -> Result<Outcome, KvError> {
    let Some(mut service) = get(txn, cluster, name)?.filter(|s| s.status == ServiceStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    };
    let Some(primary) = service.deployments.first_mut().filter(|d| d.id == deployment) else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    };
    // Still steady at this point of the log: the only deployment, all of its tasks RUNNING.
    let steady = primary.running_count == primary.desired_count && primary.pending_count == 0;
    if primary.rollout_state.as_deref() != Some("IN_PROGRESS") || service.deployments.len() != 1 || !steady {
        return Ok(Outcome::Done);
    }
    let primary = &mut service.deployments[0];
    primary.rollout_state = Some("COMPLETED".into());
    primary.rollout_state_reason = Some(format!("ECS deployment {deployment} completed."));
    primary.updated_at_ms = now_ms;
    service.last_completed = Some((deployment.to_string(), primary.task_definition_arn.clone()));
    let message = format!("(service {name}) (deployment {deployment}) deployment completed.");
    push_event(
        txn,
        cluster,
        name,
        &derived_event_id(&format!("{deployment}/completed")),
        now_ms,
        message,
        false,
    )?;
    put(txn, &service);
    Ok(Outcome::Done)
}

/// Applies `change` to the tags of a service that is not INACTIVE.
pub(super) fn update_tags(
    txn: &mut Txn<'_>,
    cluster: &str,
    name: &str,
    change: impl FnOnce(&mut Vec<Tag>),
) -> Result<Outcome, KvError> {
    let Some(mut service) = get(txn, cluster, name)?.filter(|s| s.status != ServiceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::ResourceNotFound));
    };
    if !super::retag(&mut service.tags, change) {
        return Ok(Outcome::Rejected(Rejection::TooManyTags));
    }
    put(txn, &service);
    Ok(Outcome::Tags(service.tags))
}

/// How long an identical event is not repeated ("until either the cause is resolved or six hours
/// passes"): a different newest event means the cause changed.
pub const EVENT_REPEAT_MS: u64 = 6 * 3600 * 1000;

/// Whether `message` would repeat the newest of `events` within [`EVENT_REPEAT_MS`].
pub fn repeats_newest(events: &[ServiceEvent], now_ms: u64, message: &str) -> bool {
    events
        .first()
        .is_some_and(|e| e.message == message && now_ms.saturating_sub(e.created_at_ms) < EVENT_REPEAT_MS)
}

/// Adds an event to the front of a service's list, keeping the newest [`MAX_SERVICE_EVENTS`];
/// unless `dedupe` and it repeats the newest one.
fn push_event(
    txn: &mut Txn<'_>,
    cluster: &str,
    name: &str,
    id: &str,
    now_ms: u64,
    message: String,
    dedupe: bool,
) -> Result<(), KvError> {
    let mut list = events(txn, cluster, name)?;
    if dedupe && repeats_newest(&list, now_ms, &message) {
        return Ok(());
    }
    list.insert(
        0,
        ServiceEvent {
            id: id.to_string(),
            created_at_ms: now_ms,
            message,
        },
    );
    list.truncate(MAX_SERVICE_EVENTS);
    txn.put(Space::Data, events_key(cluster, name), encode(&list));
    Ok(())
}

/// `(service NAME) has started N tasks: (task ID) ...` or the same with `stopped N running tasks`.
pub fn task_event(service: &str, verb: &str, ids: &[String]) -> String {
    let what = if verb == "started" { "tasks" } else { "running tasks" };
    let list: Vec<String> = ids.iter().map(|id| format!("(task {id})")).collect();
    format!(
        "(service {service}) has {verb} {} {what}: {}.",
        ids.len(),
        list.join(" ")
    )
}

/// Records an event on an ACTIVE or DRAINING service, unless it repeats the newest one.
pub(super) fn record_event(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    name: &str,
    id: &str,
    message: &str,
) -> Result<Outcome, KvError> {
    if get(txn, cluster, name)?
        .filter(|s| s.status != ServiceStatus::Inactive)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ServiceNotFound));
    }
    push_event(txn, cluster, name, id, now_ms, message.to_string(), true)?;
    Ok(Outcome::Done)
}

/// Sets the desired count of an ACTIVE DAEMON service (and of its PRIMARY deployment).
pub(super) fn set_desired_count(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    name: &str,
    desired: i64,
) -> Result<Outcome, KvError> {
    let Some(mut service) = get(txn, cluster, name)?.filter(|s| s.status == ServiceStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    };
    if !service.is_daemon() || desired < 0 {
        return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
    }
    if service.desired_count != desired {
        service.desired_count = desired;
        if let Some(primary) = service.deployments.first_mut() {
            primary.desired_count = desired;
            primary.updated_at_ms = now_ms;
        }
        put(txn, &service);
    }
    Ok(Outcome::Done)
}

/// Records, as one event, that the scheduler `verb`ed ("started" or "stopped") tasks `ids`.
pub(super) fn note_tasks(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    name: &str,
    event_id: &str,
    verb: &str,
    ids: &[String],
) -> Result<(), KvError> {
    if ids.is_empty() {
        return Ok(());
    }
    push_event(txn, cluster, name, event_id, now_ms, task_event(name, verb, ids), false)
}
