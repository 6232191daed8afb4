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
    ClusterStatus, Deployment, InstanceStatus, Service, ServiceEvent, ServiceSpec, ServiceStatus, Tag,
    TaskDefinitionStatus, TaskStatus, MAX_SERVICE_EVENTS,
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
    pub arn_prefix: String,
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
    let long = account_settings::long_arns(txn, &c.principal, &c.root, "serviceLongArnFormat")?;
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
        launch_type: "EC2".into(),
        scheduling_strategy: if c.daemon { "DAEMON" } else { "REPLICA" }.into(),
        maximum_percent: c.maximum_percent,
        minimum_healthy_percent: c.minimum_healthy_percent,
        deployments: vec![Deployment {
            id: deployment_id(now_ms),
            status: "PRIMARY".into(),
            task_definition_arn: c.task_definition_arn.clone(),
            desired_count: desired,
            pending_count: 0,
            running_count: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            network_configuration: c.network_configuration.clone(),
            platform_version: c.platform_version.clone(),
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
        // Creation times of one service's deployments strictly increase, so IDs are unique.
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
        // A deployment with no tasks left is INACTIVE, and dropped from the list.
        service.deployments.retain(|d| d.pending_count + d.running_count > 0);
        let arn = new_definition.map_or(primary_arn, |(_, _, arn)| arn.clone());
        service.deployments.insert(
            0,
            Deployment {
                id: deployment_id(created),
                status: "PRIMARY".into(),
                task_definition_arn: arn.clone(),
                desired_count: service.desired_count,
                pending_count: 0,
                running_count: 0,
                created_at_ms: created,
                updated_at_ms: created,
                network_configuration: u
                    .network_configuration
                    .clone()
                    .or_else(|| previous.as_ref().and_then(|p| p.network_configuration.clone())),
                platform_version: u
                    .platform_version
                    .clone()
                    .or_else(|| previous.as_ref().and_then(|p| p.platform_version.clone())),
            },
        );
        service.task_definition_arn = arn;
        // The throttle starts over with a new deployment.
        service.failed_starts = 0;
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
