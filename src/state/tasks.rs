//! Tasks: launch (with the re-check of every placement), stop, agent state changes, queries.
//!
//! Keys: `task/<cluster>\0<id>`. A task's reservation is taken from its instance when it is
//! launched and given back exactly once, when it reaches STOPPED. Status only moves forward:
//! a report that would move it back is acknowledged and ignored.

use serde::{Deserialize, Serialize};

use super::resources;
use super::{
    account_settings, container_instances, decode, encode, get_cluster, put_cluster,
    services::{self, StartResult},
    KvError, KvRead, Outcome, Rejection, Space, Txn,
};
use crate::model::{
    arn, Attribute, AwsVpc, ClusterStatus, NetworkBinding, Reservation, ServiceStatus, Tag, Task, TaskContainer,
    TaskDefinitionStatus, TaskEni, TaskStatus,
};

pub(super) fn key(cluster: &str, id: &str) -> Vec<u8> {
    format!("task/{cluster}\0{id}").into_bytes()
}

/// Why a task was stopped when the user asked.
pub const STOPPED_BY_USER: &str = "Task stopped by user";
/// Why a task stops when one of its essential containers stops.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";
/// Why the tasks of a forcibly deregistered instance were stopped.
pub const STOPPED_BY_DEREGISTRATION: &str = "Container instance deregistration forced by user";

/// A container of the task definition, with what the overrides changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub memory_reservation: Option<String>,
    /// Whether the container defines a health check (else its health is UNKNOWN).
    #[serde(default)]
    pub health_check: bool,
    /// Whether the task stops when this container stops (omitted in the definition: true).
    #[serde(default = "essential_default")]
    pub essential: bool,
}

fn essential_default() -> bool {
    true
}

/// One task to start on one instance, with the identifiers the proposer stamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub instance_id: String,
    /// A fresh UUID: the task ID is its 32 hex digits (long format) or its hyphenated form.
    pub uuid: String,
    /// One fresh UUID per container, for container ARNs.
    pub container_uuids: Vec<String>,
}

/// What RunTask and StartTask ask for, with the placements the proposer chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub cluster: String,
    pub task_definition_family: String,
    pub task_definition_revision: u32,
    pub task_definition_arn: String,
    pub reservation: Reservation,
    pub requires_attributes: Vec<Attribute>,
    pub group: String,
    pub distinct_instance: bool,
    /// `memberOf` expressions, re-parsed and re-checked when applied.
    pub member_of: Vec<String>,
    pub started_by: Option<String>,
    pub overrides: serde_json::Value,
    pub containers: Vec<ContainerSpec>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub tags: Vec<Tag>,
    /// Service name and deployment ID, for tasks a service starts.
    #[serde(default)]
    pub service: Option<(String, String)>,
    pub principal: String,
    pub root: String,
    /// Whether a principal nobody opted in or out gets long ARNs (entries without it: no).
    #[serde(default)]
    pub long_by_default: bool,
    /// `arn:aws:ecs:REGION:ACCOUNT:`.
    pub arn_prefix: String,
    pub tasks: Vec<NewTask>,
    /// Failures found while planning, reported with those found when applied.
    pub failures: Vec<(String, String)>,
    /// For a service's launch: the ID of the event that names the started tasks.
    #[serde(default)]
    pub event_id: Option<String>,
    /// How the tasks launch: EC2 or FARGATE, the capacity provider, the platform version and an
    /// awsvpc network (entries without it: EC2, bridge or host networking).
    #[serde(default)]
    pub kind: LaunchKind,
}

/// How a launch's tasks run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchKind {
    /// `FARGATE`, or `None` for EC2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// The capacity provider the tasks launch with (FARGATE or FARGATE_SPOT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider: Option<String>,
    /// Fargate's platform version, resolved (`1.4.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    /// The awsvpc network: each task gets an ENI attachment with its own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awsvpc: Option<AwsVpc>,
}

impl LaunchKind {
    pub fn is_fargate(&self) -> bool {
        self.launch_type.as_deref() == Some("FARGATE")
    }
}

/// A container's change, as the agent reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerChange {
    pub name: String,
    pub status: Option<TaskStatus>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub network_bindings: Option<Vec<NetworkBinding>>,
    pub runtime_id: Option<String>,
}

/// SubmitTaskStateChange or SubmitContainerStateChange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub cluster: String,
    pub task_id: String,
    pub status: Option<TaskStatus>,
    pub reason: Option<String>,
    pub containers: Vec<ContainerChange>,
    pub pull_started_at_ms: Option<u64>,
    pub pull_stopped_at_ms: Option<u64>,
    pub execution_stopped_at_ms: Option<u64>,
}

/// One task of `cluster`, in any status.
pub fn get(kv: &dyn KvRead, cluster: &str, id: &str) -> Result<Option<Task>, KvError> {
    kv.get(Space::Data, &key(cluster, id))?.map(|b| decode(&b)).transpose()
}

/// The key range of every task row of `cluster`.
fn cluster_range(cluster: &str) -> (Vec<u8>, Vec<u8>) {
    (key(cluster, ""), format!("task/{cluster}\u{1}").into_bytes())
}

/// Every task of `cluster`, in ID order, STOPPED ones included.
pub fn all(kv: &dyn KvRead, cluster: &str) -> Result<Vec<Task>, KvError> {
    let (from, to) = cluster_range(cluster);
    super::scan_values(kv, &from, &to)
}

/// Which tasks of a cluster a listing walks.
#[derive(Debug, Clone, Copy)]
pub enum Within<'a> {
    /// Every task.
    Cluster,
    /// The tasks on this instance that are not STOPPED (its index).
    Instance(&'a str),
    /// The tasks of this service that are not STOPPED (its index).
    Service(&'a str),
}

/// Up to `want` tasks of `cluster` (`within` it) with an ID after `after`, in ID order, that
/// `keep` accepts. It reads only as far as it must (a page of an unfiltered list costs a page;
/// one of an instance's or a service's tasks walks only their index), never the whole cluster
/// at once.
pub fn first_matching(
    kv: &dyn KvRead,
    cluster: &str,
    within: Within<'_>,
    after: Option<&str>,
    want: usize,
    mut keep: impl FnMut(&Task) -> bool,
) -> Result<Vec<Task>, KvError> {
    let mut out = Vec::new();
    if want == 0 {
        return Ok(out);
    }
    // The rows walked: the tasks themselves, or an index whose keys end in task IDs.
    let (start, to, indexed) = match within {
        Within::Cluster => {
            let (from, to) = cluster_range(cluster);
            (from, to, false)
        }
        Within::Instance(i) => {
            let (from, to) = index_range("itask", cluster, i);
            (from, to, true)
        }
        Within::Service(s) => {
            let (from, to) = index_range("stask", cluster, s);
            (from, to, true)
        }
    };
    let mut from = start.clone();
    if let Some(after) = after {
        from.extend_from_slice(after.as_bytes());
        from.push(0);
    }
    super::scan_rows(kv, &from, &to, |row_key, value| {
        let task = if indexed {
            match get(kv, cluster, &String::from_utf8_lossy(&row_key[start.len()..]))? {
                Some(task) => task,
                None => return Ok(true),
            }
        } else {
            super::decode::<Task>(&value)?
        };
        if keep(&task) {
            out.push(task);
        }
        Ok(out.len() < want)
    })?;
    Ok(out)
}

/// Index of the tasks on an instance that are not STOPPED: `itask/<cluster>\0<instance>\0<task>`.
fn instance_index_key(cluster: &str, instance: &str, id: &str) -> Vec<u8> {
    format!("itask/{cluster}\0{instance}\0{id}").into_bytes()
}

/// The change counter of an instance's tasks: `iw/<cluster>\0<instance>`. Agents' assignment
/// streams wake when it is written.
pub fn work_key(cluster: &str, instance: &str) -> Vec<u8> {
    format!("iw/{cluster}\0{instance}").into_bytes()
}

/// The key prefix of [`work_key`]s.
pub const WORK_PREFIX: &[u8] = b"iw/";

/// Index of a service's tasks that are not STOPPED: `stask/<cluster>\0<service>\0<task>`.
fn service_index_key(cluster: &str, service: &str, id: &str) -> Vec<u8> {
    format!("stask/{cluster}\0{service}\0{id}").into_bytes()
}

/// Index of STOPPED tasks by the time they stopped: `tstop/<cluster>\0<ms, 20 digits>\0<task>`.
fn stopped_index_key(cluster: &str, stopped_at_ms: u64, id: &str) -> Vec<u8> {
    format!("tstop/{cluster}\0{stopped_at_ms:020}\0{id}").into_bytes()
}

/// Adds `task`'s entry in the stop-time index if it is STOPPED.
fn index_if_stopped(txn: &mut Txn<'_>, task: &Task) {
    if let (TaskStatus::Stopped, Some(at)) = (task.last_status, task.stopped_at_ms) {
        txn.put(Space::Data, stopped_index_key(&task.cluster, at, &task.id), Vec::new());
    }
}

/// How far the indexing of tasks stopped before the index existed has got in a cluster: the
/// last task key looked at, or [`SWEPT`] once every task has been.
fn stopped_sweep_key(cluster: &str) -> Vec<u8> {
    format!("tstop-sweep/{cluster}").into_bytes()
}

const SWEPT: &[u8] = b"\xff";
/// Task rows looked at per forget by the indexing of earlier stopped tasks.
const SWEEP_PER_FORGET: usize = 1000;

/// Stores `task`, keeps the instance, service and stop-time indexes, and bumps its instance's
/// change counter. (The counter moves on every task write, as it always has: what apply writes
/// for a command must not depend on the version of the node, or nodes of two versions would
/// disagree on it during an upgrade. The assignment stream decides what is worth sending.)
fn put(txn: &mut Txn<'_>, task: &Task) -> Result<(), KvError> {
    txn.put(Space::Data, key(&task.cluster, &task.id), encode(task));
    index_if_stopped(txn, task);
    // The instance index holds the task's version, so an assignment stream reads again only
    // the tasks whose version moved.
    let mut indexes = vec![(
        instance_index_key(&task.cluster, &task.container_instance_id, &task.id),
        encode(&task.version),
    )];
    if let Some(service) = &task.service {
        indexes.push((service_index_key(&task.cluster, service, &task.id), Vec::new()));
    }
    for (index, value) in indexes {
        if task.last_status == TaskStatus::Stopped {
            txn.delete(Space::Data, index);
        } else {
            txn.put(Space::Data, index, value);
        }
    }
    touch_work(txn, &task.cluster, &task.container_instance_id)
}

/// Bumps an instance's change counter, so its agent's assignment stream is sent again.
pub(super) fn touch_work(txn: &mut Txn<'_>, cluster: &str, instance: &str) -> Result<(), KvError> {
    let work = work_key(cluster, instance);
    let count = match txn.get(Space::Data, &work)? {
        Some(bytes) => decode::<u64>(&bytes)?,
        None => 0,
    };
    txn.put(Space::Data, work, encode(&(count + 1)));
    Ok(())
}

/// The tasks on instance `id` that are not STOPPED, in task ID order.
pub fn on_instance(kv: &dyn KvRead, cluster: &str, instance: &str) -> Result<Vec<Task>, KvError> {
    indexed(kv, cluster, "itask", instance)
}

/// The IDs of the tasks on `instance` that are not STOPPED, in ID order, each with its version
/// as the instance index holds it (`None`: an entry written before it held versions).
pub fn versions_on_instance(
    kv: &dyn KvRead,
    cluster: &str,
    instance: &str,
) -> Result<Vec<(String, Option<u64>)>, KvError> {
    let (from, to) = index_range("itask", cluster, instance);
    Ok(kv
        .scan(Space::Data, &from, &to, usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            let id = String::from_utf8_lossy(&k[from.len()..]).into_owned();
            (id, decode::<u64>(&v).ok())
        })
        .collect())
}

/// The tasks of `service` that are not STOPPED, in task ID order.
pub fn of_service(kv: &dyn KvRead, cluster: &str, service: &str) -> Result<Vec<Task>, KvError> {
    indexed(kv, cluster, "stask", service)
}

/// The key range of `<index>/<cluster>\0<owner>\0…`.
fn index_range(index: &str, cluster: &str, owner: &str) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{index}/{cluster}\0{owner}\0").into_bytes(),
        format!("{index}/{cluster}\0{owner}\u{1}").into_bytes(),
    )
}

/// The tasks listed under `<index>/<cluster>\0<owner>\0`.
fn indexed(kv: &dyn KvRead, cluster: &str, index: &str, owner: &str) -> Result<Vec<Task>, KvError> {
    let (from, to) = index_range(index, cluster, owner);
    let mut out = Vec::new();
    for (k, _) in kv.scan(Space::Data, &from, &to, usize::MAX)? {
        let id = String::from_utf8_lossy(&k[from.len()..]).into_owned();
        if let Some(task) = get(kv, cluster, &id)? {
            out.push(task);
        }
    }
    Ok(out)
}

/// The key of the next task address block (`model::task_address`), shared by every cluster:
/// tasks of two clusters may run on one host.
const NEXT_ADDRESS_KEY: &[u8] = b"netnext";

/// An awsvpc task's network interface: its identifiers derive from the task's fresh UUID, its
/// address is the next block.
fn new_eni(txn: &mut Txn<'_>, task_uuid: &str, vpc: &AwsVpc) -> Result<TaskEni, KvError> {
    let next = txn
        .get(Space::Data, NEXT_ADDRESS_KEY)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes);
    txn.put(
        Space::Data,
        NEXT_ADDRESS_KEY.to_vec(),
        (next + 1).to_be_bytes().to_vec(),
    );
    let (ip, _) = crate::model::task_address(next);
    let h = |what: &str| crate::model::stable_hash(format!("{what}/{task_uuid}").as_bytes());
    let (eni, a, b) = (h("eni"), h("attachment-a"), h("attachment-b"));
    let mac = eni.to_be_bytes();
    Ok(TaskEni {
        attachment_id: format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        ),
        eni_id: format!("eni-{eni:017x}"),
        mac_address: format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            mac[3], mac[4], mac[5], mac[6], mac[7]
        ),
        subnet_id: vpc.subnets.first().cloned().unwrap_or_default(),
        private_ipv4: ip.to_string(),
    })
}

pub(super) fn launch(txn: &mut Txn<'_>, now_ms: u64, l: &Launch) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, &l.cluster)?.filter(|c| c.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    let definition = super::task_definitions::get(txn, &l.task_definition_family, l.task_definition_revision)?;
    if definition.is_none_or(|d| d.status != TaskDefinitionStatus::Active) && l.service.is_none() {
        return Ok(Outcome::Rejected(Rejection::TaskDefinitionInactive));
    }
    // Every expression re-parsed; one that does not parse refuses the launch (never dropped).
    let Ok(member_of) = l
        .member_of
        .iter()
        .map(|e| crate::cql::parse(e))
        .collect::<Result<Vec<_>, _>>()
    else {
        return Ok(Outcome::Rejected(Rejection::InvalidPlacementConstraint));
    };
    // A service's launch: only for its PRIMARY deployment while it is ACTIVE, and never above
    // the service's maximum of PENDING and RUNNING tasks, whatever the proposer saw.
    let mut room = usize::MAX;
    if let Some((name, deployment)) = &l.service {
        let Some(service) = services::get(txn, &l.cluster, name)?.filter(|s| s.status == ServiceStatus::Active) else {
            return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
        };
        let primary = service.deployments.first();
        // Only the PRIMARY deployment launches, and not once the circuit breaker failed it.
        if primary.is_none_or(|d| d.id != *deployment || d.is_failed()) {
            return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
        }
        // A DAEMON service's limit is per instance (one task each: the launch asks for
        // distinctInstance); a REPLICA service's is its maximum of PENDING and RUNNING tasks.
        if !service.is_daemon() {
            let live = (service.pending_count + service.running_count).max(0) as usize;
            room = service.max_total().saturating_sub(live);
        }
    }
    let long = account_settings::long_arns(txn, &l.principal, &l.root, "taskLongArnFormat", l.long_by_default)?;
    let mut tasks = Vec::new();
    let mut failures = l.failures.clone();
    for new in &l.tasks {
        if tasks.len() == room {
            break;
        }
        let Some(mut instance) = container_instances::get(txn, &l.cluster, &new.instance_id)? else {
            failures.push((
                arn::container_instance(&l.arn_prefix, &l.cluster, &new.instance_id, false),
                "MISSING".into(),
            ));
            continue;
        };
        if let Some(why) = resources::check(
            &instance,
            &l.reservation,
            &l.requires_attributes,
            &l.group,
            l.distinct_instance,
            &member_of,
        ) {
            failures.push((instance.arn.clone(), why.to_string()));
            continue;
        }
        resources::reserve(&mut instance, &l.reservation, &l.group);
        instance.pending_tasks += 1;
        container_instances::put(txn, &instance);
        cluster.pending_tasks += 1;
        let id = if long {
            new.uuid.replace('-', "")
        } else {
            new.uuid.clone()
        };
        let arn = arn::task(&l.arn_prefix, &l.cluster, &id, long);
        let containers = l
            .containers
            .iter()
            .zip(&new.container_uuids)
            .map(|(c, uuid)| TaskContainer {
                name: c.name.clone(),
                arn: arn::container(&l.arn_prefix, uuid),
                last_status: TaskStatus::Pending,
                exit_code: None,
                reason: None,
                network_bindings: Vec::new(),
                runtime_id: None,
                // Health comes with the agent's reports; until then it is unknown.
                health_status: Some("UNKNOWN".to_string()),
                cpu: c.cpu.clone(),
                memory: c.memory.clone(),
                memory_reservation: c.memory_reservation.clone(),
                essential: c.essential,
            })
            .collect();
        let task = Task {
            cluster: l.cluster.clone(),
            id,
            arn,
            task_definition_arn: l.task_definition_arn.clone(),
            family: l.task_definition_family.clone(),
            container_instance_id: instance.id.clone(),
            container_instance_arn: instance.arn.clone(),
            last_status: TaskStatus::Pending,
            desired_status: TaskStatus::Running,
            group: l.group.clone(),
            started_by: l.started_by.clone(),
            overrides: l.overrides.clone(),
            containers,
            cpu: l.cpu.clone(),
            memory: l.memory.clone(),
            reservation: l.reservation.clone(),
            service: l.service.as_ref().map(|(s, _)| s.clone()),
            deployment_id: l.service.as_ref().map(|(_, d)| d.clone()),
            created_at_ms: now_ms,
            started_at_ms: None,
            stopping_at_ms: None,
            stopped_at_ms: None,
            execution_stopped_at_ms: None,
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            stopped_reason: None,
            stop_code: None,
            version: 1,
            tags: l.tags.clone(),
            launch_type: l.kind.launch_type.clone().unwrap_or_else(|| "EC2".to_string()),
            capacity_provider_name: l.kind.capacity_provider.clone(),
            platform_version: l.kind.platform_version.clone(),
            eni: match &l.kind.awsvpc {
                Some(vpc) => Some(new_eni(txn, &new.uuid, vpc)?),
                None => None,
            },
            protected_until_ms: None,
        };
        if let Some((service, deployment)) = &l.service {
            services::count_task(
                txn,
                now_ms,
                &l.cluster,
                service,
                deployment,
                None,
                Some(TaskStatus::Pending),
                StartResult::Neither,
                false,
            )?;
        }
        put(txn, &task)?;
        tasks.push(task);
    }
    if let (Some((service, _)), Some(event_id)) = (&l.service, &l.event_id) {
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        services::note_tasks(txn, now_ms, &l.cluster, service, event_id, "started", &ids)?;
    }
    put_cluster(txn, &cluster);
    dedupe_failures(&mut failures);
    Ok(Outcome::Tasks { tasks, failures })
}

/// Removes repeated `(arn, reason)` pairs, keeping the first of each.
fn dedupe_failures(failures: &mut Vec<(String, String)>) {
    let mut seen = std::collections::BTreeSet::new();
    failures.retain(|f| seen.insert(f.clone()));
}

/// Sets desiredStatus STOPPED (StopTask): lastStatus is the agent's to change.
pub(super) fn stop(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    id: &str,
    reason: Option<&str>,
    stop_code: Option<&str>,
) -> Result<Outcome, KvError> {
    if get_cluster(txn, cluster)?
        .filter(|c| c.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let Some(mut task) = get(txn, cluster, id)? else {
        return Ok(Outcome::Rejected(Rejection::TaskNotFound));
    };
    if task.desired_status != TaskStatus::Stopped {
        task.desired_status = TaskStatus::Stopped;
        task.stopping_at_ms = Some(now_ms);
        task.stopped_reason = Some(reason.unwrap_or(STOPPED_BY_USER).to_string());
        task.stop_code = stop_code.map(str::to_string);
        // "Any tags associated with the task will be deleted."
        task.tags.clear();
        task.version += 1;
        put(txn, &task)?;
    }
    Ok(Outcome::Task(Box::new(task)))
}

/// Applies an agent's report: status and container statuses only move forward; a report that
/// repeats or regresses is acknowledged and changes nothing.
pub(super) fn state_change(txn: &mut Txn<'_>, now_ms: u64, change: &StateChange) -> Result<Outcome, KvError> {
    if get_cluster(txn, &change.cluster)?
        .filter(|c| c.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let Some(mut task) = get(txn, &change.cluster, &change.task_id)? else {
        return Ok(Outcome::Rejected(Rejection::TaskNotFound));
    };
    if task.last_status == TaskStatus::Stopped {
        return Ok(Outcome::Done);
    }
    let mut changed = false;
    let mut essential_stopped = false;
    for c in &change.containers {
        let Some(container) = task.containers.iter_mut().find(|t| t.name == c.name) else {
            continue;
        };
        if let Some(status) = c.status.filter(|s| *s > container.last_status) {
            container.last_status = status;
            if status == TaskStatus::Stopped {
                container.exit_code = c.exit_code.or(container.exit_code);
                container.reason = c.reason.clone().or(container.reason.take());
                essential_stopped |= container.essential;
            }
            changed = true;
        }
        if let Some(bindings) = &c.network_bindings {
            if container.last_status != TaskStatus::Stopped && *bindings != container.network_bindings {
                container.network_bindings = bindings.clone();
                changed = true;
            }
        }
        if c.runtime_id.is_some() && container.runtime_id.is_none() {
            container.runtime_id = c.runtime_id.clone();
            changed = true;
        }
    }
    for (slot, value) in [
        (&mut task.pull_started_at_ms, change.pull_started_at_ms),
        (&mut task.pull_stopped_at_ms, change.pull_stopped_at_ms),
        (&mut task.execution_stopped_at_ms, change.execution_stopped_at_ms),
    ] {
        if slot.is_none() && value.is_some() {
            *slot = value;
            changed = true;
        }
    }
    // An essential container stopped: the whole task is to stop (the agent stops the rest).
    if essential_stopped && task.desired_status != TaskStatus::Stopped {
        task.desired_status = TaskStatus::Stopped;
        task.stopping_at_ms = Some(now_ms);
        let (reason, code) = match task.started_at_ms {
            Some(_) => (ESSENTIAL_EXITED.to_string(), "EssentialContainerExited"),
            None => (
                change
                    .containers
                    .iter()
                    .find_map(|c| c.reason.clone())
                    .unwrap_or_else(|| ESSENTIAL_EXITED.to_string()),
                "TaskFailedToStart",
            ),
        };
        task.stopped_reason.get_or_insert(reason);
        task.stop_code.get_or_insert(code.to_string());
    }
    if let Some(status) = change.status.filter(|s| *s > task.last_status) {
        transition(txn, now_ms, &mut task, status, change.reason.as_deref())?;
        changed = true;
    }
    if changed {
        task.version += 1;
        put(txn, &task)?;
    }
    Ok(Outcome::Done)
}

/// Moves `task` forward to `status`, keeping every count consistent and releasing its
/// reservation when it reaches STOPPED. The caller stores the task.
fn transition(
    txn: &mut Txn<'_>,
    now_ms: u64,
    task: &mut Task,
    status: TaskStatus,
    reason: Option<&str>,
) -> Result<(), KvError> {
    let from = task.last_status;
    debug_assert!(status > from);
    task.last_status = status;
    match status {
        TaskStatus::Pending => {}
        TaskStatus::Running => task.started_at_ms = Some(now_ms),
        TaskStatus::Stopped => {
            task.stopped_at_ms = Some(now_ms);
            // Stopped without being asked to (by a user, a service, or an essential container's
            // exit): it failed to start, or it exited.
            if task.desired_status != TaskStatus::Stopped {
                task.desired_status = TaskStatus::Stopped;
                task.stopping_at_ms.get_or_insert(now_ms);
                let (default_reason, code) = if task.started_at_ms.is_none() {
                    ("Task failed to start", "TaskFailedToStart")
                } else {
                    (ESSENTIAL_EXITED, "EssentialContainerExited")
                };
                task.stopped_reason
                    .get_or_insert_with(|| reason.unwrap_or(default_reason).to_string());
                task.stop_code.get_or_insert_with(|| code.to_string());
            }
            for c in &mut task.containers {
                c.last_status = TaskStatus::Stopped;
            }
        }
    }
    if let Some(mut instance) = container_instances::get(txn, &task.cluster, &task.container_instance_id)? {
        match from {
            TaskStatus::Pending => instance.pending_tasks = instance.pending_tasks.saturating_sub(1),
            TaskStatus::Running => instance.running_tasks = instance.running_tasks.saturating_sub(1),
            TaskStatus::Stopped => {}
        }
        match status {
            TaskStatus::Running => instance.running_tasks += 1,
            TaskStatus::Stopped => resources::release(&mut instance, &task.reservation, &task.group),
            TaskStatus::Pending => {}
        }
        instance.version += 1;
        container_instances::put(txn, &instance);
    }
    if let Some(mut cluster) = get_cluster(txn, &task.cluster)? {
        match from {
            TaskStatus::Pending => cluster.pending_tasks = cluster.pending_tasks.saturating_sub(1),
            TaskStatus::Running => cluster.running_tasks = cluster.running_tasks.saturating_sub(1),
            TaskStatus::Stopped => {}
        }
        if status == TaskStatus::Running {
            cluster.running_tasks += 1;
        }
        put_cluster(txn, &cluster);
    }
    if let (Some(service), Some(deployment)) = (&task.service, &task.deployment_id) {
        let result = match status {
            TaskStatus::Running => StartResult::Started,
            TaskStatus::Stopped if task.stop_code.as_deref() == Some("TaskFailedToStart") => StartResult::Failed,
            _ => StartResult::Neither,
        };
        // It stopped without being asked to, or failed its health checks: the circuit
        // breaker counts it.
        let failed = status == TaskStatus::Stopped
            && (matches!(
                task.stop_code.as_deref(),
                Some("TaskFailedToStart" | "EssentialContainerExited")
            ) || task.reported_unhealthy());
        services::count_task(
            txn,
            now_ms,
            &task.cluster,
            service,
            deployment,
            Some(from),
            Some(status),
            result,
            failed,
        )?;
    }
    Ok(())
}

/// Stops every task of instance `id` at once (forced deregistration: the tasks are orphaned).
/// Marks every task of instance `id` STOPPED at once, with `reason` (forced deregistration, or
/// the lost-instance policy): ECS no longer tracks them, and their resources are released.
pub(super) fn stop_all_on_instance(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    id: &str,
    reason: &str,
) -> Result<(), KvError> {
    for mut task in on_instance(txn, cluster, id)? {
        if task.desired_status != TaskStatus::Stopped {
            // Orphaned, not failed: the reason says so, and no stop code applies (2018 API).
            task.desired_status = TaskStatus::Stopped;
            task.stopping_at_ms = Some(now_ms);
            task.stopped_reason = Some(reason.to_string());
        }
        transition(txn, now_ms, &mut task, TaskStatus::Stopped, None)?;
        task.version += 1;
        put(txn, &task)?;
    }
    Ok(())
}

/// Asks every running task of a service to stop (DeleteService), with `reason`.
pub(super) fn stop_service_tasks(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    service: &str,
    reason: &str,
) -> Result<(), KvError> {
    for task in of_service(txn, cluster, service)? {
        ask_to_stop(txn, now_ms, task, service, reason)?;
    }
    Ok(())
}

/// Sets desiredStatus STOPPED on `task` of `service`, with `reason` and no stop code (the 2018
/// API has none for the service scheduler); false if it is not the service's or already stopping.
fn ask_to_stop(txn: &mut Txn<'_>, now_ms: u64, mut task: Task, service: &str, reason: &str) -> Result<bool, KvError> {
    if task.service.as_deref() != Some(service) || task.desired_status == TaskStatus::Stopped {
        return Ok(false);
    }
    task.desired_status = TaskStatus::Stopped;
    task.stopping_at_ms = Some(now_ms);
    task.stopped_reason = Some(reason.to_string());
    task.version += 1;
    put(txn, &task)?;
    Ok(true)
}

/// The service scheduler's stop, re-checked: nothing happens unless the service still has the
/// PRIMARY deployment and desired count it was planned for; each task must still be the
/// service's and desired RUNNING; and a healthy task stops only while more than the minimum
/// stay healthy. Those stopped are named in one service event.
#[allow(clippy::too_many_arguments)]
pub(super) fn stop_for_service(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    service: &str,
    ids: &[String],
    reason: &str,
    event_id: &str,
    planned: Option<&(String, i64)>,
) -> Result<Outcome, KvError> {
    let Some(current) = services::get(txn, cluster, service)? else {
        return Ok(Outcome::Rejected(Rejection::ServiceNotFound));
    };
    if let Some((deployment, desired)) = planned {
        let primary = current.deployments.first().map(|d| d.id.as_str());
        if primary != Some(deployment.as_str()) || current.desired_count != *desired {
            return Ok(Outcome::Rejected(Rejection::ServiceNotActive));
        }
    }
    let min_healthy = current.min_healthy();
    let mut healthy = of_service(txn, cluster, service)?
        .iter()
        .filter(|t| t.is_healthy())
        .count();
    let mut stopped = Vec::new();
    for id in ids {
        let Some(task) = get(txn, cluster, id)? else { continue };
        let was_healthy = task.is_healthy();
        if was_healthy && healthy <= min_healthy {
            continue;
        }
        if ask_to_stop(txn, now_ms, task, service, reason)? {
            stopped.push(id.clone());
            if was_healthy {
                healthy -= 1;
            }
        }
    }
    services::note_tasks(txn, now_ms, cluster, service, event_id, "stopped", &stopped)?;
    Ok(Outcome::Done)
}

/// Deletes up to `limit` tasks of `cluster` that reached STOPPED before `before_ms`, in key
/// order; returns how many as `Outcome::Forgotten`.
pub(super) fn forget_stopped(
    txn: &mut Txn<'_>,
    cluster: &str,
    before_ms: u64,
    limit: usize,
) -> Result<Outcome, KvError> {
    let mut forgotten = 0;
    for task in all(txn, cluster)? {
        if forgotten == limit {
            break;
        }
        if task.last_status == TaskStatus::Stopped && task.stopped_at_ms.is_some_and(|t| t < before_ms) {
            txn.delete(Space::Data, key(cluster, &task.id));
            if let Some(at) = task.stopped_at_ms {
                txn.delete(Space::Data, stopped_index_key(cluster, at, &task.id));
            }
            forgotten += 1;
        }
    }
    Ok(Outcome::Forgotten(forgotten))
}

/// Forgets up to `limit` tasks of `cluster` that stopped before `before_ms`, oldest first, read
/// through the stop-time index; first indexes up to [`SWEEP_PER_FORGET`] tasks stored before the
/// index existed.
pub(super) fn forget_stopped_by_time(
    txn: &mut Txn<'_>,
    cluster: &str,
    before_ms: u64,
    limit: usize,
) -> Result<Outcome, KvError> {
    index_earlier_stopped(txn, cluster)?;
    let from = format!("tstop/{cluster}\0").into_bytes();
    let to = stopped_index_key(cluster, before_ms, "");
    let mut forgotten = 0;
    for (index, _) in txn.scan(Space::Data, &from, &to, limit)? {
        txn.delete(Space::Data, index.clone());
        // Key layout: <from><20 digits>\0<task id>.
        let Some(id) = index.get(from.len() + 21..) else {
            continue;
        };
        let id = String::from_utf8_lossy(id).into_owned();
        if get(txn, cluster, &id)?.is_some_and(|t| t.last_status == TaskStatus::Stopped) {
            txn.delete(Space::Data, key(cluster, &id));
            forgotten += 1;
        }
    }
    Ok(Outcome::Forgotten(forgotten))
}

/// Adds the stop-time index entries of the next [`SWEEP_PER_FORGET`] task rows of `cluster`
/// (tasks stopped before the index existed have none), until the sweep has been through them
/// all. Tasks stored meanwhile are indexed as they are stored.
fn index_earlier_stopped(txn: &mut Txn<'_>, cluster: &str) -> Result<(), KvError> {
    let sweep = stopped_sweep_key(cluster);
    let start = match txn.get(Space::Data, &sweep)? {
        Some(done) if done == SWEPT => return Ok(()),
        Some(last) => [last.as_slice(), b"\0"].concat(),
        None => cluster_range(cluster).0,
    };
    let to = cluster_range(cluster).1;
    let rows = txn.scan(Space::Data, &start, &to, SWEEP_PER_FORGET)?;
    for (_, value) in &rows {
        index_if_stopped(txn, &decode(value)?);
    }
    let next = match rows.last() {
        Some((last, _)) if rows.len() == SWEEP_PER_FORGET => last.clone(),
        _ => SWEPT.to_vec(),
    };
    txn.put(Space::Data, sweep, next);
    Ok(())
}

/// Applies `change` to the tags of a task (not STOPPED ones: their tags were deleted).
pub(super) fn update_tags(
    txn: &mut Txn<'_>,
    cluster: &str,
    id: &str,
    change: impl FnOnce(&mut Vec<Tag>),
) -> Result<Outcome, KvError> {
    let Some(mut task) = get(txn, cluster, id)?.filter(|t| t.last_status != TaskStatus::Stopped) else {
        return Ok(Outcome::Rejected(Rejection::ResourceNotFound));
    };
    if !super::retag(&mut task.tags, change) {
        return Ok(Outcome::Rejected(Rejection::TooManyTags));
    }
    put(txn, &task)?;
    Ok(Outcome::Tags(task.tags))
}

/// UpdateTaskProtection: each task of `ids` that is a service's and not STOPPED is protected
/// until `until_ms` (or unprotected); the rest are failures (`MISSING`, `TASK_NOT_VALID`).
pub(super) fn update_protection(
    txn: &mut Txn<'_>,
    cluster: &str,
    ids: &[String],
    until_ms: Option<u64>,
) -> Result<Outcome, KvError> {
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for id in ids {
        match get(txn, cluster, id)? {
            None => failures.push((id.clone(), "MISSING".to_string())),
            Some(task) if task.service.is_none() || task.last_status == TaskStatus::Stopped => {
                failures.push((task.arn.clone(), "TASK_NOT_VALID".to_string()))
            }
            Some(mut task) => {
                task.protected_until_ms = until_ms;
                task.version += 1;
                put(txn, &task)?;
                tasks.push(task);
            }
        }
    }
    Ok(Outcome::Tasks { tasks, failures })
}
