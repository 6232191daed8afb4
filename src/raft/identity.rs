//! Who this node and its cluster are, and the guard that keeps a node that lost its data from
//! returning as the same member.
//!
//! - The **cluster id** is made by the cluster's first leader and replicated
//!   (`state::identity`); every peer message carries the sender's, and a node refuses one from
//!   another cluster (as etcd refuses a "cluster ID mismatch").
//! - A node's **incarnation** is made the first time it starts on an empty data directory
//!   and kept in `raft_meta`; once the node is a member, it records it in the replicated state.
//! - **No amnesia.** Raft's safety rests on a voter remembering its vote and its log. A node
//!   that starts on an empty data directory, without `join`, asks its configured peers whether
//!   the cluster already recorded an incarnation of its id: if so, the node lost its data, and
//!   it refuses to start, naming the fix (remove it, then add it back under a new id with
//!   `join`, as etcd's `member add` and `--initial-cluster-state existing`). Without
//!   `bootstrap` or `join` an empty node refuses too. When no peer answers, it starts (etcd
//!   does the same): the guard needs one reachable member that knows.

use std::time::Duration;

use super::network::Method;
use super::{NodeError, NodeReport, RaftHandle};
use crate::config::NodeConfig;
use crate::state::Command;
use crate::storage::{Batch, Cf, Store};

const INCARNATION: &[u8] = b"incarnation";
/// In `raft_meta`: the data directory was made by `ecsd snapshot restore` (`backup.rs`).
pub(super) const RESTORED: &[u8] = b"restored";

/// This node's incarnation, and whether its data directory holds no Raft state at all.
pub struct Incarnation {
    pub id: String,
    /// No vote, no log and nothing applied: a new node, or one that lost its data.
    pub empty: bool,
    /// Made by a restore: its vote and log are the backup's, not what it did as a member, so
    /// it must not return as a member of a cluster that already recorded it (a second restore
    /// of the same member).
    pub restored: bool,
}

/// Reads (or makes and syncs) the incarnation of the data directory in `store`.
pub fn open(store: &Store) -> Result<Incarnation, NodeError> {
    let storage = |e: crate::storage::StorageError| NodeError::Internal(format!("read the data directory: {e}"));
    let empty = store
        .get(Cf::RaftMeta, super::log_store::VOTE)
        .map_err(storage)?
        .is_none()
        && store.last(Cf::RaftLog).map_err(storage)?.is_none()
        && store
            .get(Cf::SmMeta, super::state_machine::LAST_APPLIED)
            .map_err(storage)?
            .is_none();
    let restored = store.get(Cf::RaftMeta, RESTORED).map_err(storage)?.is_some();
    if let Some(id) = store.get(Cf::RaftMeta, INCARNATION).map_err(storage)? {
        return Ok(Incarnation {
            id: String::from_utf8_lossy(&id).into_owned(),
            empty,
            restored,
        });
    }
    let id = crate::stamp::fresh_id();
    let mut batch = Batch::default();
    batch.put(Cf::RaftMeta, INCARNATION, id.as_bytes());
    store.write(batch, true).map_err(storage)?;
    Ok(Incarnation { id, empty, restored })
}

/// Refuses to start a node whose data directory is empty when that would make it a voter
/// that forgot its vote and log (see the module doc).
pub async fn guard(
    config: &NodeConfig,
    pool: &super::network::PeerPool,
    incarnation: &Incarnation,
) -> Result<(), NodeError> {
    if (!incarnation.empty && !incarnation.restored) || config.join {
        return Ok(());
    }
    let dir = config.data_dir.display();
    let id = config.node_id;
    if incarnation.empty && !config.bootstrap {
        return Err(NodeError::Rejected(format!(
            "node {id}: the data directory {dir} is empty, and this node neither founds a cluster \
             (bootstrap = true) nor joins one: start it with --join (join = true), then add it \
             with `ecsd cluster add-node --id {id} ...`"
        )));
    }
    let peers: Vec<_> = config.initial_members.iter().filter(|m| m.id != id).collect();
    if peers.is_empty() {
        return Ok(());
    }
    // The peers serve their status while they start (their own guards run then too): a peer
    // that is up answers within moments.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut answered = std::collections::BTreeSet::new();
    while tokio::time::Instant::now() < deadline && answered.len() < peers.len() {
        for peer in &peers {
            if answered.contains(&peer.id) {
                continue;
            }
            let report = pool
                .call::<(), NodeReport>(
                    &peer.raft_addr,
                    peer.id,
                    Method::NodeStatus,
                    &(),
                    Duration::from_millis(500),
                )
                .await;
            let Ok(report) = report else { continue };
            answered.insert(peer.id);
            // A member's own incarnation (a restored node that restarts) is no objection.
            if report
                .recorded_incarnations
                .get(&id)
                .is_some_and(|recorded| *recorded != incarnation.id)
            {
                let what = if incarnation.empty {
                    "is empty"
                } else {
                    "was restored from a backup"
                };
                return Err(NodeError::Rejected(format!(
                    "node {id}: the data directory {dir} {what}, but the cluster already has node {id} \
                     (node {} knows it, in term {}): this node lost its data, and a member that forgot its \
                     vote and log must not return as the same voter. Remove it (`ecsd cluster remove-node \
                     --id {id}`), then start it with a new node_id and --join, and add it (`ecsd cluster \
                     add-node`)",
                    peer.id, report.term
                )));
            }
        }
        if answered.len() < peers.len() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if answered.len() < peers.len() {
        tracing::warn!(
            node_id = id,
            answered = answered.len(),
            peers = peers.len(),
            "empty or restored data directory, and not every configured peer answered: starting as a new member"
        );
    }
    Ok(())
}

/// Keeps the replicated identity: as leader, names the cluster if it has no id yet; as a
/// member, records this node's incarnation; and keeps the cluster id for peer messages.
pub async fn keeper(handle: RaftHandle, incarnation: String) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = handle.stopped.cancelled() => return,
            _ = every.tick() => {}
        }
        let view = handle.view();
        let known = crate::state::identity::cluster_id(view).ok().flatten();
        if let Some(id) = &known {
            handle.pool.set_cluster_id(id);
        }
        let Some(leader) = handle.current_leader() else {
            continue;
        };
        let Some(writer) = handle.writer.get() else { continue };
        if known.is_none() && leader == handle.id {
            let command = Command::SetClusterId {
                id: crate::stamp::fresh_uuid().to_string(),
            };
            if let Err(e) = writer.write(crate::stamp::proposal(command)).await {
                tracing::debug!(error = %e, "naming the cluster failed; retrying");
            }
            continue;
        }
        // Every member supports a newer feature level than the cluster's: raise it (once
        // applied, no earlier binary can apply the log, so a downgrade is no longer possible).
        // The highest level every member supports (a member one level behind still lets the
        // cluster reach that level).
        let version = crate::state::identity::cluster_version(view).unwrap_or(1);
        let level = crate::state::identity::FEATURE_LEVEL.min(handle.members_feature_level());
        if leader == handle.id && version < level {
            tracing::info!(
                from = version,
                to = level,
                "every member supports the new feature level; raising the cluster version"
            );
            let command = Command::SetClusterVersion { version: level };
            if let Err(e) = writer.write(crate::stamp::proposal(command)).await {
                tracing::debug!(error = %e, "raising the cluster version failed; retrying");
            }
        }
        let member = handle
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&handle.id)
            .is_some();
        let recorded = crate::state::identity::incarnation(view, handle.id).ok().flatten();
        if member && recorded.as_deref() != Some(incarnation.as_str()) {
            let command = Command::SetIncarnation {
                node: handle.id,
                incarnation: incarnation.clone(),
            };
            if let Err(e) = writer.write(crate::stamp::proposal(command)).await {
                tracing::debug!(error = %e, "recording the incarnation failed; retrying");
            }
        }
    }
}
