//! The replicated ECS state machine: commands, their deterministic application, and queries.
//!
//! Hard rule: nothing here reads the clock, uses randomness, iterates a `HashMap`, or does I/O
//! other than through the [`KvRead`] view it is handed. Every replica applies the same log to the
//! same state and gets the same state and the same outcomes. A domain rejection is an
//! [`Outcome::Rejected`], never an `Err`; `Err` means the storage failed, which is fatal.

pub mod account_settings;
mod clusters;
mod command;
pub mod container_instances;
pub mod identity;
pub mod keys;
mod local;
pub mod resources;
pub mod services;
mod tags;
pub mod task_definitions;
pub mod tasks;
#[cfg(test)]
pub(crate) mod testing;
mod txn;

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, ClusterStatus};
pub use clusters::{get_cluster, list_active_clusters};
pub use command::{Batch, BatchOutcome, Command, Outcome, Proposal, Rejection};
pub use local::{Mirror, Mirrors, Signals, SERVICE_WAKE};
pub use tags::{resource_tags, TagTarget, MAX_TAGS};
use tags::{retag, update_tags};
pub use txn::{KvError, KvRead, Row, Space, Txn};

/// How long a request id is remembered for deduplication.
pub const DEDUPE_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How long the id of a request without a client token is remembered, from cluster version 3
/// on. Such an id is fresh per HTTP request: only a node re-proposing the same request (a
/// forward retried after a leader change, bounded by `api.request_timeout_ms`, at most
/// [`crate::config::MAX_REQUEST_TIMEOUT_MS`]) can send it again. Kept a day, every write left a
/// row in every snapshot for a day (116 MB after 25 s of TagResource at 5,000/s).
pub const BRIEF_DEDUPE_TTL_MS: u64 = 15 * 60 * 1000;
/// Most expired dedupe records dropped per applied batch, so apply stays cheap.
const DEDUPE_PURGE_PER_BATCH: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupeRecord {
    ts_ms: u64,
    /// The digest of the request that used the id (absent in records of earlier versions, and
    /// for proposals that come from no client request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<u64>,
    /// The outcome in full; absent when `launched` stands for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    /// A task launch's outcome by reference: the tasks are read back from the state when a
    /// retry asks, so the table holds their IDs instead of a second copy of every task (it was
    /// half of a large state). A retry thus sees the tasks as they are now, not as they were
    /// at launch; a task forgotten since is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    launched: Option<Launched>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Launched {
    cluster: String,
    ids: Vec<String>,
    failures: Vec<(String, String)>,
}

impl DedupeRecord {
    fn new(ts_ms: u64, outcome: &Outcome) -> DedupeRecord {
        match outcome {
            Outcome::Tasks { tasks, failures } if !tasks.is_empty() => DedupeRecord {
                ts_ms,
                digest: None,
                outcome: None,
                launched: Some(Launched {
                    cluster: tasks[0].cluster.clone(),
                    ids: tasks.iter().map(|t| t.id.clone()).collect(),
                    failures: failures.clone(),
                }),
            },
            _ => DedupeRecord {
                ts_ms,
                digest: None,
                outcome: Some(outcome.clone()),
                launched: None,
            },
        }
    }

    /// The outcome to answer a retry with, as the state now is.
    fn recall(self, kv: &dyn KvRead) -> Result<Outcome, KvError> {
        match (self.outcome, self.launched) {
            (Some(outcome), _) => Ok(outcome),
            (None, Some(launched)) => {
                let mut tasks = Vec::with_capacity(launched.ids.len());
                for id in &launched.ids {
                    tasks.extend(tasks::get(kv, &launched.cluster, id)?);
                }
                Ok(Outcome::Tasks {
                    tasks,
                    failures: launched.failures,
                })
            }
            (None, None) => Err(KvError("dedupe record without an outcome".into())),
        }
    }
}

const META_APPLIED_TS: &[u8] = b"applied_ts";

/// What a row of the data space holds, for a snapshot's census (`ecsd snapshot inspect`):
/// `Some` for the rows that are one resource each, `None` for indexes and bookkeeping.
pub fn census_kind(key: &[u8]) -> Option<&'static str> {
    const KINDS: [(&[u8], &str); 6] = [
        (b"cluster/", "clusters"),
        (b"svc/", "services"),
        (b"task/", "tasks"),
        (b"ci/", "container_instances"),
        (b"taskdef/", "task_definitions"),
        (b"key/", "access_keys"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

fn cluster_key(name: &str) -> Vec<u8> {
    format!("cluster/{name}").into_bytes()
}

fn dedupe_key(request_id: &str) -> Vec<u8> {
    format!("r/{request_id}").into_bytes()
}

/// The expiry index of day-long dedupe records: `t/<ts>/<id>`.
const DAY_INDEX: &str = "t/";
/// The expiry index of brief records (cluster version 3 on): `b/<ts>/<id>`, kept apart from the
/// day-long ones so that each index stays in time order.
const BRIEF_INDEX: &str = "b/";

fn expiry_key(index: &str, ts_ms: u64, request_id: &str) -> Vec<u8> {
    format!("{index}{ts_ms:020}/{request_id}").into_bytes()
}

/// Whether `request_id` carries a client's token (`Action/token/digest`, see
/// `api::Ctx::propose_idempotent`): a client may retry it for a day. Every other id is a fresh
/// UUID per request.
fn is_client_token_id(request_id: &str) -> bool {
    request_id.contains('/')
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|e| KvError(format!("decode stored record: {e}")))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain records cannot fail: no maps with non-string keys, no custom impls.
    serde_json::to_vec(value).expect("state records serialise")
}

/// Applies a batch of proposals, carried by a log entry of term `entry_term`, to `txn` and
/// returns one outcome per proposal.
pub fn apply_batch(txn: &mut Txn<'_>, batch: &Batch, entry_term: u64) -> Result<BatchOutcome, KvError> {
    let mut applied_ts = match txn.get(Space::Meta, META_APPLIED_TS)? {
        Some(bytes) => decode::<u64>(&bytes)?,
        None => 0,
    };
    let brief = identity::cluster_version(&*txn)? >= 3;
    let mut outcomes = Vec::with_capacity(batch.0.len());
    for proposal in &batch.0 {
        // Clocks of different proposers may disagree; time never goes backwards in the state.
        applied_ts = applied_ts.max(proposal.ts_ms);
        let key = dedupe_key(&proposal.request_id);
        if let Some(bytes) = txn.get(Space::Dedupe, &key)? {
            let record = decode::<DedupeRecord>(&bytes)?;
            let reused = matches!((record.digest, proposal.request_digest), (Some(a), Some(b)) if a != b);
            outcomes.push(if reused {
                Outcome::Rejected(Rejection::RequestIdReused)
            } else {
                record.recall(&*txn)?
            });
            continue;
        }
        let outcome = match &proposal.command {
            Command::AsLeader { term, command } if *term == entry_term => apply_command(txn, applied_ts, command)?,
            Command::AsLeader { .. } => Outcome::Rejected(Rejection::StaleLeader),
            command => apply_command(txn, applied_ts, command)?,
        };
        let mut record = match (&outcome, brief) {
            // The tagging actions answer with nothing: a retry needs no copy of the tags.
            (Outcome::Tags(_), true) => DedupeRecord::new(applied_ts, &Outcome::Tags(Vec::new())),
            _ => DedupeRecord::new(applied_ts, &outcome),
        };
        record.digest = proposal.request_digest;
        txn.put(Space::Dedupe, key, encode(&record));
        let index = if brief && !is_client_token_id(&proposal.request_id) {
            BRIEF_INDEX
        } else {
            DAY_INDEX
        };
        txn.put(
            Space::Dedupe,
            expiry_key(index, applied_ts, &proposal.request_id),
            Vec::new(),
        );
        outcomes.push(outcome);
    }
    purge_expired_dedupe(txn, applied_ts, DAY_INDEX, DEDUPE_TTL_MS)?;
    if brief {
        purge_expired_dedupe(txn, applied_ts, BRIEF_INDEX, BRIEF_DEDUPE_TTL_MS)?;
    }
    txn.put(Space::Meta, META_APPLIED_TS.to_vec(), encode(&applied_ts));
    Ok(BatchOutcome(outcomes))
}

/// Drops the records of one expiry index (`t/` or `b/`) older than `ttl_ms`.
fn purge_expired_dedupe(txn: &mut Txn<'_>, now_ms: u64, index: &str, ttl_ms: u64) -> Result<(), KvError> {
    let cutoff = now_ms.saturating_sub(ttl_ms);
    let to = expiry_key(index, cutoff, "");
    let expired = txn.scan(Space::Dedupe, index.as_bytes(), &to, DEDUPE_PURGE_PER_BATCH)?;
    for (key, _) in expired {
        // Key layout: t/<20-digit ts>/<request id> (or b/…).
        if let Some(request_id) = key.get(23..) {
            txn.delete(Space::Dedupe, dedupe_key(&String::from_utf8_lossy(request_id)));
        }
        txn.delete(Space::Dedupe, key);
    }
    Ok(())
}

fn apply_command(txn: &mut Txn<'_>, now_ms: u64, command: &Command) -> Result<Outcome, KvError> {
    match command {
        Command::Noop => Ok(Outcome::Done),
        Command::CreateCluster {
            name,
            arn,
            tags,
            options,
        } => {
            if let Some(existing) = get_cluster(txn, name)? {
                if existing.status == ClusterStatus::Active {
                    return Ok(Outcome::Cluster(existing));
                }
            }
            let cluster = Cluster {
                name: name.clone(),
                arn: arn.clone(),
                status: ClusterStatus::Active,
                tags: tags.clone(),
                registered_container_instances: 0,
                running_tasks: 0,
                pending_tasks: 0,
                active_services: 0,
                draining_services: 0,
                created_at_ms: now_ms,
                options: options.clone(),
            };
            txn.put(Space::Data, cluster_key(name), encode(&cluster));
            Ok(Outcome::Cluster(cluster))
        }
        Command::UpdateCluster {
            name,
            settings,
            configuration,
            service_connect_defaults,
        } => clusters::update(txn, name, settings, configuration, service_connect_defaults),
        Command::PutClusterCapacityProviders {
            name,
            providers,
            strategy,
        } => clusters::put_capacity_providers(txn, name, providers, strategy),
        Command::DeleteCluster { name } => {
            let Some(mut cluster) = get_cluster(txn, name)?.filter(|c| c.status == ClusterStatus::Active) else {
                return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
            };
            if cluster.registered_container_instances > 0 {
                return Ok(Outcome::Rejected(Rejection::ClusterContainsContainerInstances));
            }
            if cluster.active_services + cluster.draining_services > 0 {
                return Ok(Outcome::Rejected(Rejection::ClusterContainsServices));
            }
            if cluster.running_tasks + cluster.pending_tasks > 0 {
                return Ok(Outcome::Rejected(Rejection::ClusterContainsTasks));
            }
            cluster.status = ClusterStatus::Inactive;
            txn.put(Space::Data, cluster_key(name), encode(&cluster));
            Ok(Outcome::Cluster(cluster))
        }
        Command::RegisterTaskDefinition {
            family,
            arn_base,
            body,
            tags,
        } => task_definitions::register(txn, now_ms, family, arn_base, body, tags),
        Command::DeregisterTaskDefinition { family, revision } => {
            task_definitions::deregister(txn, now_ms, family, *revision)
        }
        Command::DeleteTaskDefinition { family, revision } => task_definitions::delete(txn, family, *revision),
        Command::CompleteDeployment {
            cluster,
            name,
            deployment,
        } => services::complete_deployment(txn, now_ms, cluster, name, deployment),
        Command::UpdateTaskProtection { cluster, ids, minutes } => {
            let until_ms = minutes.map(|m| now_ms.saturating_add(m.saturating_mul(60_000)));
            tasks::update_protection(txn, cluster, ids, until_ms)
        }
        Command::PutAccountSetting { principal, name, value } => Ok(account_settings::put(txn, principal, name, value)),
        Command::DeleteAccountSetting {
            principal,
            root,
            name,
            fallback,
        } => account_settings::delete(txn, principal, root, name, fallback.as_deref().unwrap_or("DISABLED")),
        Command::TagResource { target, tags } => update_tags(txn, target, |current| {
            for tag in tags {
                match current.iter_mut().find(|t| t.key == tag.key) {
                    Some(existing) => existing.value = tag.value.clone(),
                    None => current.push(tag.clone()),
                }
            }
        }),
        Command::UntagResource { target, keys } => {
            update_tags(txn, target, |current| current.retain(|t| !keys.contains(&t.key)))
        }
        Command::RegisterContainerInstance(registration) => container_instances::register(txn, now_ms, registration),
        Command::DeregisterContainerInstance { cluster, id, force } => {
            container_instances::deregister(txn, now_ms, cluster, id, *force)
        }
        Command::UpdateContainerInstancesState { cluster, ids, status } => {
            container_instances::set_state(txn, cluster, ids, *status)
        }
        Command::PutAttributes { cluster, items } => container_instances::put_attributes(txn, cluster, items),
        Command::DeleteAttributes { cluster, items } => container_instances::delete_attributes(txn, cluster, items),
        Command::UpdateContainerAgent { cluster, id, latest } => {
            container_instances::update_agent(txn, cluster, id, latest)
        }
        Command::LaunchTasks(launch) => tasks::launch(txn, now_ms, launch),
        Command::StopTask { cluster, id, reason } => {
            tasks::stop(txn, now_ms, cluster, id, reason.as_deref(), Some("UserInitiated"))
        }
        Command::TaskStateChange(change) => tasks::state_change(txn, now_ms, change),
        Command::CreateService(creation) => services::create(txn, now_ms, creation),
        Command::UpdateService(update) => services::update(txn, now_ms, update),
        Command::DeleteService { cluster, name, force } => services::delete(txn, now_ms, cluster, name, *force),
        Command::StopInstanceTasks { cluster, id, reason } => {
            // Only while the agent is still gone: it may have come back since the decision.
            let gone = container_instances::get(txn, cluster, id)?.is_some_and(|i| !i.agent_connected);
            if gone {
                tasks::stop_all_on_instance(txn, now_ms, cluster, id, reason)?;
            }
            Ok(Outcome::Done)
        }
        Command::ForgetStoppedTasks {
            cluster,
            before_ms,
            limit,
        } => tasks::forget_stopped(txn, cluster, *before_ms, *limit),
        Command::ForgetStoppedTasksByTime {
            cluster,
            before_ms,
            limit,
        } => tasks::forget_stopped_by_time(txn, cluster, *before_ms, *limit),
        Command::SetAgentUpdateStatus {
            cluster,
            id,
            status,
            version_info,
        } => container_instances::set_agent_update_status(txn, cluster, id, status, version_info.as_ref()),
        Command::SetAgentConnected { cluster, id, connected } => {
            container_instances::set_agent_connected(txn, cluster, id, *connected)
        }
        Command::StopServiceTasks {
            cluster,
            name,
            ids,
            reason,
            event_id,
            planned,
        } => tasks::stop_for_service(txn, now_ms, cluster, name, ids, reason, event_id, planned.as_ref()),
        Command::ServiceEvent {
            cluster,
            name,
            id,
            message,
        } => services::record_event(txn, now_ms, cluster, name, id, message),
        Command::SetServiceDesiredCount { cluster, name, desired } => {
            services::set_desired_count(txn, now_ms, cluster, name, *desired)
        }
        // Nested leader decisions are not made; `apply_batch` unwraps the outer one.
        Command::AsLeader { .. } => Ok(Outcome::Rejected(Rejection::StaleLeader)),
        Command::CreateAccessKey(key) => keys::create(txn, key),
        Command::RevokeAccessKey { name } => keys::revoke(txn, name),
        Command::SetClusterId { id } => identity::set_cluster_id(txn, id),
        Command::SetClusterVersion { version } => identity::set_cluster_version(txn, *version),
        Command::SetIncarnation { node, incarnation } => Ok(identity::set_incarnation(txn, *node, incarnation)),
    }
}

/// Every record whose key lies in `[from, to)` of the data space, decoded, in key order.
pub(crate) fn scan_values<T: for<'de> Deserialize<'de>>(
    kv: &dyn KvRead,
    from: &[u8],
    to: &[u8],
) -> Result<Vec<T>, KvError> {
    let mut out = Vec::new();
    scan_rows(kv, from, to, |_, value| {
        out.push(decode(&value)?);
        Ok(true)
    })?;
    Ok(out)
}

/// Calls `each` with every row of `[from, to)` of the data space, in key order, reading in
/// chunks so that a large range is never held at once, until `each` answers `false`.
pub(crate) fn scan_rows(
    kv: &dyn KvRead,
    from: &[u8],
    to: &[u8],
    each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<bool, KvError>,
) -> Result<(), KvError> {
    scan_rows_ordered(kv, from, to, false, each)
}

/// [`scan_rows`], from the greatest key down when `reverse`.
pub(crate) fn scan_rows_ordered(
    kv: &dyn KvRead,
    from: &[u8],
    to: &[u8],
    reverse: bool,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<bool, KvError>,
) -> Result<(), KvError> {
    const CHUNK: usize = 512;
    // The part of the range still to read: [low, high).
    let (mut low, mut high) = (from.to_vec(), to.to_vec());
    loop {
        let chunk = if reverse {
            kv.scan_rev(Space::Data, &low, &high, CHUNK)?
        } else {
            kv.scan(Space::Data, &low, &high, CHUNK)?
        };
        let done = chunk.len() < CHUNK;
        for (key, value) in chunk {
            if reverse {
                high.clone_from(&key);
            } else {
                low.clone_from(&key);
                low.push(0);
            }
            if !each(key, value)? {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}

fn put_cluster(txn: &mut Txn<'_>, cluster: &Cluster) {
    txn.put(Space::Data, cluster_key(&cluster.name), encode(cluster));
}

#[cfg(test)]
mod tests;
