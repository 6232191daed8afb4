//! Container instances: registration (and re-registration), draining, deregistration, queries.
//!
//! Keys: `ci/<cluster>\0<id>`. An instance's ARN format follows the registering principal's
//! `containerInstanceLongArnFormat` setting at the time it is applied; it never changes later.

use serde::{Deserialize, Serialize};

use super::{
    account_settings, decode, encode, get_cluster, put_cluster, KvError, KvRead, Outcome, Rejection, Space, Txn,
};
use crate::model::{arn, version_less, Attribute, ClusterStatus, ContainerInstance, InstanceStatus, Resource, Tag};

fn key(cluster: &str, id: &str) -> Vec<u8> {
    format!("ci/{cluster}\0{id}").into_bytes()
}

/// What RegisterContainerInstance asks for, stamped by the proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub cluster: String,
    /// A fresh UUID: the ID is its 32 hex digits (long format) or its hyphenated form.
    pub uuid: String,
    /// Re-registration of an existing instance, by ID.
    pub existing_id: Option<String>,
    pub ec2_instance_id: String,
    pub total_resources: Vec<Resource>,
    pub attributes: Vec<Attribute>,
    pub version_info: serde_json::Value,
    pub tags: Vec<Tag>,
    pub principal: String,
    pub root: String,
    /// Whether a principal nobody opted in or out gets long ARNs (entries without it: no).
    #[serde(default)]
    pub long_by_default: bool,
    /// `arn:aws:ecs:REGION:ACCOUNT:` — the ARN is completed when applied.
    pub arn_prefix: String,
    /// The agent registering it, when an `agent` key calls: the instance is bound to it.
    #[serde(default)]
    pub agent: Option<String>,
}

pub(super) fn register(txn: &mut Txn<'_>, now_ms: u64, r: &Registration) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, &r.cluster)?.filter(|c| c.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    if let Some(id) = &r.existing_id {
        let Some(mut instance) = get(txn, &r.cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
            return Ok(Outcome::Rejected(Rejection::InstanceNotRegistered));
        };
        match (&instance.agent, &r.agent) {
            (Some(bound), Some(agent)) if bound != agent => {
                return Ok(Outcome::Rejected(Rejection::InstanceOfAnotherAgent));
            }
            (None, Some(agent)) => instance.agent = Some(agent.clone()),
            _ => {}
        }
        // What the instance offers may change; what its live tasks hold stays taken.
        instance.remaining_resources = r.total_resources.clone();
        instance.registered_resources = r.total_resources.clone();
        instance.task_groups.clear();
        for task in super::tasks::on_instance(txn, &r.cluster, id)? {
            super::resources::reserve(&mut instance, &task.reservation, &task.group);
        }
        instance.attributes = r.attributes.clone();
        instance.version_info = r.version_info.clone();
        instance.version += 1;
        txn.put(Space::Data, key(&r.cluster, id), encode(&instance));
        return Ok(Outcome::ContainerInstance(Box::new(instance)));
    }
    let long = account_settings::long_arns(
        txn,
        &r.principal,
        &r.root,
        "containerInstanceLongArnFormat",
        r.long_by_default,
    )?;
    let id = if long { r.uuid.replace('-', "") } else { r.uuid.clone() };
    let arn = arn::container_instance(&r.arn_prefix, &r.cluster, &id, long);
    let instance = ContainerInstance {
        cluster: r.cluster.clone(),
        id: id.clone(),
        arn,
        ec2_instance_id: r.ec2_instance_id.clone(),
        status: InstanceStatus::Active,
        // The registering agent connects right after; liveness tracking clears this when it goes.
        agent_connected: true,
        registered_resources: r.total_resources.clone(),
        remaining_resources: r.total_resources.clone(),
        attributes: r.attributes.clone(),
        version_info: r.version_info.clone(),
        tags: r.tags.clone(),
        registered_at_ms: now_ms,
        version: 1,
        running_tasks: 0,
        pending_tasks: 0,
        agent_update_status: None,
        task_groups: Default::default(),
        agent_heartbeats: false,
        agent: r.agent.clone(),
    };
    cluster.registered_container_instances += 1;
    put_cluster(txn, &cluster);
    txn.put(Space::Data, key(&r.cluster, &id), encode(&instance));
    Ok(Outcome::ContainerInstance(Box::new(instance)))
}

pub(super) fn deregister(
    txn: &mut Txn<'_>,
    now_ms: u64,
    cluster: &str,
    id: &str,
    force: bool,
) -> Result<Outcome, KvError> {
    let Some(mut c) = get_cluster(txn, cluster)?.filter(|c| c.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    let Some(mut instance) = get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::InstanceNotRegistered));
    };
    if instance.running_tasks + instance.pending_tasks > 0 {
        if !force {
            return Ok(Outcome::Rejected(Rejection::InstanceHasRunningTasks));
        }
        // Orphaned: ECS no longer tracks them, and their resources go with the instance.
        super::tasks::stop_all_on_instance(txn, now_ms, cluster, id, super::tasks::STOPPED_BY_DEREGISTRATION)?;
        instance = get(txn, cluster, id)?.unwrap_or(instance);
        c = get_cluster(txn, cluster)?.unwrap_or(c);
    }
    instance.status = InstanceStatus::Inactive;
    instance.agent_connected = false;
    instance.version += 1;
    c.registered_container_instances = c.registered_container_instances.saturating_sub(1);
    put_cluster(txn, &c);
    txn.put(Space::Data, key(cluster, id), encode(&instance));
    Ok(Outcome::ContainerInstance(Box::new(instance)))
}

/// Sets ACTIVE or DRAINING on each instance; returns the changed ones and the IDs not found.
pub(super) fn set_state(
    txn: &mut Txn<'_>,
    cluster: &str,
    ids: &[String],
    status: InstanceStatus,
) -> Result<Outcome, KvError> {
    if get_cluster(txn, cluster)?
        .filter(|c| c.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let mut updated = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        match get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) {
            Some(mut instance) => {
                if instance.status != status {
                    instance.status = status;
                    instance.version += 1;
                    txn.put(Space::Data, key(cluster, id), encode(&instance));
                }
                updated.push(instance);
            }
            None => missing.push(id.clone()),
        }
    }
    Ok(Outcome::ContainerInstances { updated, missing })
}

/// Most custom (non-`ecs.`) attributes one instance may carry.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Sets attributes on instances, all or nothing: every target must exist and stay within the
/// custom-attribute limit.
pub(super) fn put_attributes(
    txn: &mut Txn<'_>,
    cluster: &str,
    items: &[(String, Attribute)],
) -> Result<Outcome, KvError> {
    change_attributes(txn, cluster, items, |instance, attribute| {
        match instance.attributes.iter_mut().find(|a| a.name == attribute.name) {
            Some(existing) => existing.value = attribute.value.clone(),
            None => instance.attributes.push(attribute.clone()),
        }
    })
}

/// Removes attributes (by name) from instances, all or nothing.
pub(super) fn delete_attributes(
    txn: &mut Txn<'_>,
    cluster: &str,
    items: &[(String, Attribute)],
) -> Result<Outcome, KvError> {
    change_attributes(txn, cluster, items, |instance, attribute| {
        instance.attributes.retain(|a| a.name != attribute.name)
    })
}

fn change_attributes(
    txn: &mut Txn<'_>,
    cluster: &str,
    items: &[(String, Attribute)],
    change: impl Fn(&mut ContainerInstance, &Attribute),
) -> Result<Outcome, KvError> {
    if get_cluster(txn, cluster)?
        .filter(|c| c.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let mut changed: std::collections::BTreeMap<String, ContainerInstance> = std::collections::BTreeMap::new();
    for (id, attribute) in items {
        let instance = match changed.remove(id) {
            Some(i) => Some(i),
            None => get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive),
        };
        let Some(mut instance) = instance else {
            return Ok(Outcome::Rejected(Rejection::TargetNotFound));
        };
        change(&mut instance, attribute);
        let custom = instance
            .attributes
            .iter()
            .filter(|a| !a.name.starts_with("ecs."))
            .count();
        if custom > MAX_CUSTOM_ATTRIBUTES {
            return Ok(Outcome::Rejected(Rejection::AttributeLimitExceeded));
        }
        changed.insert(id.clone(), instance);
    }
    for (id, mut instance) in changed {
        instance.version += 1;
        txn.put(Space::Data, key(cluster, &id), encode(&instance));
    }
    Ok(Outcome::Done)
}

pub(super) fn update_tags(
    txn: &mut Txn<'_>,
    cluster: &str,
    id: &str,
    change: impl FnOnce(&mut Vec<Tag>),
) -> Result<Outcome, KvError> {
    let Some(mut instance) = get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::ResourceNotFound));
    };
    if !super::retag(&mut instance.tags, change) {
        return Ok(Outcome::Rejected(Rejection::TooManyTags));
    }
    instance.version += 1;
    txn.put(Space::Data, key(cluster, id), encode(&instance));
    Ok(Outcome::Tags(instance.tags))
}

/// Asks for an agent update: PENDING until the agent reports progress.
pub(super) fn update_agent(txn: &mut Txn<'_>, cluster: &str, id: &str, latest: &str) -> Result<Outcome, KvError> {
    if get_cluster(txn, cluster)?
        .filter(|c| c.status == ClusterStatus::Active)
        .is_none()
    {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    }
    let Some(mut instance) = get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::InstanceNotRegistered));
    };
    let Some(current) = instance
        .version_info
        .get("agentVersion")
        .and_then(|v| v.as_str())
        .map(str::to_string)
    else {
        return Ok(Outcome::Rejected(Rejection::MissingVersion));
    };
    if matches!(
        instance.agent_update_status.as_deref(),
        Some("PENDING" | "STAGING" | "STAGED" | "UPDATING")
    ) {
        return Ok(Outcome::Rejected(Rejection::UpdateInProgress));
    }
    if !version_less(&current, latest) {
        return Ok(Outcome::Rejected(Rejection::NoUpdateAvailable));
    }
    instance.agent_update_status = Some("PENDING".to_string());
    instance.version += 1;
    txn.put(Space::Data, key(cluster, id), encode(&instance));
    // The agent learns of it on its assignment stream.
    super::tasks::touch_work(txn, cluster, id)?;
    Ok(Outcome::ContainerInstance(Box::new(instance)))
}

/// An agent's progress through an update: STAGING, STAGED, UPDATING, then UPDATED (with its
/// new `versionInfo`) or FAILED. Only forward steps of an update in progress are taken.
pub(super) fn set_agent_update_status(
    txn: &mut Txn<'_>,
    cluster: &str,
    id: &str,
    status: &str,
    version_info: Option<&serde_json::Value>,
) -> Result<Outcome, KvError> {
    const STEPS: [&str; 5] = ["PENDING", "STAGING", "STAGED", "UPDATING", "UPDATED"];
    let Some(mut instance) = get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::InstanceNotRegistered));
    };
    let current = instance
        .agent_update_status
        .as_deref()
        .and_then(|s| STEPS.iter().position(|x| *x == s));
    let next = STEPS.iter().position(|x| *x == status);
    let forward = match (current, next) {
        (Some(c), Some(n)) => n > c && c < 4,
        // FAILED ends an update in progress.
        (Some(c), None) => status == "FAILED" && c < 4,
        _ => false,
    };
    if forward {
        instance.agent_update_status = Some(status.to_string());
        if let Some(v) = version_info {
            instance.version_info = v.clone();
        }
        instance.version += 1;
        put(txn, &instance);
    }
    Ok(Outcome::ContainerInstance(Box::new(instance)))
}

/// Sets `agentConnected`; a no-op if it already has that value or the instance is INACTIVE.
pub(super) fn set_agent_connected(
    txn: &mut Txn<'_>,
    cluster: &str,
    id: &str,
    connected: bool,
) -> Result<Outcome, KvError> {
    let Some(mut instance) = get(txn, cluster, id)?.filter(|i| i.status != InstanceStatus::Inactive) else {
        return Ok(Outcome::Rejected(Rejection::InstanceNotRegistered));
    };
    if instance.agent_connected != connected || (connected && !instance.agent_heartbeats) {
        instance.agent_connected = connected;
        instance.agent_heartbeats |= connected;
        instance.version += 1;
        put(txn, &instance);
    }
    Ok(Outcome::ContainerInstance(Box::new(instance)))
}

pub(super) fn put(txn: &mut Txn<'_>, instance: &ContainerInstance) {
    txn.put(Space::Data, key(&instance.cluster, &instance.id), encode(instance));
}

/// Whether instance `id` is bound to `agent` (registered with that agent's key).
pub fn bound_to(kv: &dyn KvRead, cluster: &str, id: &str, agent: &str) -> Result<bool, KvError> {
    Ok(get(kv, cluster, id)?.and_then(|i| i.agent).is_some_and(|a| a == agent))
}

/// Whether task `task` runs on an instance bound to `agent`. A task the cluster does not have
/// is nobody's (a report of it changes nothing), so it passes.
pub fn task_bound_to(kv: &dyn KvRead, cluster: &str, task: &str, agent: &str) -> Result<bool, KvError> {
    match super::tasks::get(kv, cluster, task)? {
        Some(task) => bound_to(kv, cluster, &task.container_instance_id, agent),
        None => Ok(true),
    }
}

/// One instance of `cluster`, in any status.
pub fn get(kv: &dyn KvRead, cluster: &str, id: &str) -> Result<Option<ContainerInstance>, KvError> {
    kv.get(Space::Data, &key(cluster, id))?.map(|b| decode(&b)).transpose()
}

/// Every instance of `cluster` in ID order, INACTIVE ones included.
pub fn all(kv: &dyn KvRead, cluster: &str) -> Result<Vec<ContainerInstance>, KvError> {
    let (from, to) = cluster_range(cluster);
    super::scan_values(kv, &from, &to)
}

/// [`all`], from `mirror` (the state machine's [`PREFIX`] mirror over `kv`).
pub fn all_mirrored(
    kv: &dyn KvRead,
    cluster: &str,
    mirror: &super::Mirror<ContainerInstance>,
) -> Result<Vec<std::sync::Arc<ContainerInstance>>, KvError> {
    let (from, to) = cluster_range(cluster);
    mirror.scan(kv, &from, &to)
}

/// The key prefix of every instance row.
pub const PREFIX: &[u8] = b"ci/";

fn cluster_range(cluster: &str) -> (Vec<u8>, Vec<u8>) {
    (
        format!("ci/{cluster}\0").into_bytes(),
        format!("ci/{cluster}\u{1}").into_bytes(),
    )
}
