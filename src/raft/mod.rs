//! The openraft adapter: every openraft call of the project goes through this module.
//!
//! It owns the type configuration, the RocksDB-backed log and state machine, the tonic network,
//! and [`RaftNode`], the handle the rest of the code uses: batched writes that reach the leader
//! from any node, linearizable read barriers, membership changes and status reports.

pub mod log_store;
pub mod network;
mod read_index;
pub mod service;
mod snapshot_file;
pub mod state_machine;
mod writer;

#[cfg(test)]
mod format_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::state::{Batch, BatchOutcome, Command, Outcome, Proposal};
use log_store::{CommittedIndex, LogStore};
use network::{Method, Network, PeerPool};
use state_machine::{ChangeFeed, StateMachineStore, StateView};

/// Raft node ids.
pub type NodeId = u64;

/// What the cluster membership records about a node: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// gRPC address of its Raft service.
    pub rpc_addr: String,
    /// Address of its ECS HTTP API.
    pub api_addr: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rpc={} api={}", self.rpc_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The Raft types of ecsd: a log entry carries a batch of ECS proposals.
    pub TypeConfig:
        D = Batch,
        R = BatchOutcome,
        Node = NodeInfo,
        SnapshotData = tokio::fs::File,
);

/// Why a write, read barrier or admin call could not be served.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Serialize, Deserialize)]
pub enum NodeError {
    /// No leader could be reached in time; nothing is known to have been applied. Retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The request was refused (for example an invalid membership change).
    #[error("{0}")]
    Rejected(String),
    /// An internal failure.
    #[error("{0}")]
    Internal(String),
}

/// A reply from an RPC that only the leader can serve.
#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    Ok(T),
    NotLeader { leader: Option<NodeId> },
    Failed(NodeError),
}

/// A membership change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    /// Add a node as a learner, wait for it to catch up, then promote it to voter.
    AddNode { id: NodeId, info: NodeInfo },
    /// Remove a voter or learner.
    RemoveNode { id: NodeId },
}

/// One node's own view of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub leader_loops_running: bool,
}

/// One member as `ecsd cluster status` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    pub id: NodeId,
    pub api_addr: String,
    pub raft_addr: String,
    /// leader, follower, candidate, learner, or unreachable.
    pub role: String,
    pub voter: bool,
    pub term: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The last index its newest snapshot covers.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Its log holds nothing up to this index (covered by the snapshot).
    #[serde(default)]
    pub purged_index: Option<u64>,
}

/// The cluster as seen from one node, with each member's own report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
}

/// Builds openraft's config from the node config.
pub fn raft_config(config: &NodeConfig) -> Result<Config, NodeError> {
    let t = &config.raft;
    let raft_config = Config {
        cluster_name: "ecsd".to_string(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        install_snapshot_timeout: t.install_snapshot_timeout_ms,
        snapshot_policy: if t.snapshot_every == 0 {
            SnapshotPolicy::Never
        } else {
            SnapshotPolicy::LogsSinceLast(t.snapshot_every)
        },
        max_in_snapshot_log_to_keep: t.logs_to_keep,
        purge_batch_size: 256,
        snapshot_max_chunk_size: 1024 * 1024,
        // Entries carry whole batches (hundreds of KB under load): 64 of them keep one
        // AppendEntries, and the memory of a catch-up, to tens of MB.
        max_payload_entries: 64,
        ..Default::default()
    };
    raft_config
        .validate()
        .map_err(|e| NodeError::Internal(format!("raft config: {e}")))
}

/// Initialises a new cluster from the config, unless this node already is part of one.
///
/// Every founding member may carry `bootstrap = true` and the same member list; initialising
/// twice with the same members is safe. Each `initialize` starts an election, though, so members
/// take turns: the k-th member in id order waits k × 2 election timeouts and initialises only if
/// it has not heard from a leader by then. The first one initialises at once.
async fn bootstrap(raft: &Raft<TypeConfig>, config: &NodeConfig) -> Result<(), NodeError> {
    let fatal = |e: openraft::error::Fatal<NodeId>| NodeError::Internal(e.to_string());
    if raft.is_initialized().await.map_err(fatal)? {
        return Ok(());
    }
    let me = NodeInfo {
        rpc_addr: config.advertised_raft_addr(),
        api_addr: config.advertised_api_addr(),
    };
    let members: BTreeMap<NodeId, NodeInfo> = if config.initial_members.is_empty() {
        BTreeMap::from([(config.node_id, me)])
    } else {
        config
            .initial_members
            .iter()
            .map(|m| {
                (
                    m.id,
                    NodeInfo {
                        rpc_addr: m.raft_addr.clone(),
                        api_addr: m.api_addr.clone(),
                    },
                )
            })
            .collect()
    };
    let turn = members.keys().position(|id| *id == config.node_id).unwrap_or(0) as u32;
    let raft = raft.clone();
    let delay = Duration::from_millis(2 * config.raft.election_timeout_max_ms) * turn;
    let node_id = config.node_id;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if !matches!(raft.is_initialized().await, Ok(false)) {
            return;
        }
        tracing::info!(node_id, members = ?members.keys().collect::<Vec<_>>(), "initialising cluster");
        if let Err(e) = raft.initialize(members).await {
            // Another member initialised first with the same members; that is fine.
            tracing::info!(error = %e, "cluster already initialised");
        }
    });
    Ok(())
}

/// Cloneable core of a node's Raft handle.
#[derive(Clone)]
pub struct RaftHandle {
    pub id: NodeId,
    raft: Raft<TypeConfig>,
    pool: PeerPool,
    view: StateView,
    committed: Arc<CommittedIndex>,
    hold: Duration,
    /// Deadline of one forward or read-index RPC. A paused leader accepts connections but never
    /// answers; after this the request is retried, by then most likely at a new leader.
    attempt_timeout: Duration,
    leader_loops_running: Arc<AtomicBool>,
    feed: ChangeFeed,
    /// Takes the messages other nodes pass to this one as leader ([`RaftHandle::tell_leader`]).
    leader_inbox: Arc<std::sync::OnceLock<LeaderInbox>>,
    /// Leadership checks of this node as leader, shared by concurrent reads (its own and
    /// followers' `ReadIndex` calls).
    local_reads: Arc<read_index::Coalescer<ReadIndex>>,
    /// `ReadIndex` calls to the leader, shared by concurrent reads on this follower.
    remote_reads: Arc<read_index::Coalescer<ReadIndex>>,
    /// This node's writer: as leader, it batches forwarded proposals with its own.
    writer: writer::WeakWriter,
}

/// The result of one leadership check for reads.
#[derive(Debug, Clone)]
enum ReadIndex {
    /// Confirmed: a read is linearizable once the state machine has applied this index.
    Index(Option<u64>),
    /// Not confirmed; retry, after a leader other than this one is known if one is named.
    Retry { failed_leader: Option<NodeId> },
    /// Raft has stopped on this node.
    Stopped(String),
}

/// Where a leader takes the messages that nodes pass to it with [`RaftHandle::tell_leader`]
/// (agents' heartbeats, for the liveness loop). The Raft layer carries them and does not read
/// them; `Err` refuses one.
pub type LeaderInbox = Arc<dyn Fn(serde_json::Value) -> Result<(), String> + Send + Sync>;

/// A running Raft node and its write batcher.
#[derive(Clone)]
pub struct RaftNode {
    handle: RaftHandle,
    writer: writer::Writer,
}

impl RaftNode {
    /// Opens storage under the config's data dir and starts Raft. Initialises a new cluster when
    /// configured to bootstrap and not yet initialised.
    pub async fn start(config: &NodeConfig, store: crate::storage::Store) -> Result<RaftNode, NodeError> {
        let raft_config = Arc::new(raft_config(config)?);
        let state_machine = StateMachineStore::open(store.clone(), &config.data_dir.join("snapshots"))
            .map_err(|e| NodeError::Internal(format!("open snapshots: {e}")))?;
        let log_store = LogStore::new(store.clone()).with_purge_gate(state_machine.applied());
        let feed = state_machine.feed();
        let view = state_machine.view();
        let committed = log_store.committed_index();
        let pool = PeerPool::new(config.dialer());
        let network = Network {
            pool: pool.clone(),
            unreachable_backoff: Duration::from_millis(2 * config.raft.heartbeat_ms),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| NodeError::Internal(format!("start raft: {e}")))?;

        if config.bootstrap {
            bootstrap(&raft, config).await?;
        }

        let handle = RaftHandle {
            id: config.node_id,
            raft,
            pool,
            view,
            committed,
            hold: Duration::from_millis(config.api.hold_ms),
            attempt_timeout: Duration::from_millis((2 * config.raft.election_timeout_max_ms).max(1000)),
            leader_loops_running: Arc::new(AtomicBool::new(false)),
            feed,
            leader_inbox: Arc::default(),
            local_reads: Arc::default(),
            remote_reads: Arc::default(),
            writer: writer::WeakWriter::default(),
        };
        let limits = writer::Limits {
            count: config.api.max_batch,
            bytes: config.api.max_batch_bytes,
        };
        let writer = writer::Writer::spawn(handle.clone(), limits);
        handle.writer.set(&writer);
        Ok(RaftNode { handle, writer })
    }

    pub fn handle(&self) -> &RaftHandle {
        &self.handle
    }

    /// Proposes one command (batched with concurrent ones) and returns its outcome once applied.
    pub async fn write(&self, proposal: Proposal) -> Result<Outcome, NodeError> {
        self.writer.write(proposal).await
    }

    /// Proposes a decision of a leader-only loop running for `term`. `apply` rejects it with
    /// `Rejection::StaleLeader` unless it lands in a log entry of that term, so a deposed leader
    /// that still runs its loops can never change the state.
    pub async fn write_as_leader(&self, term: u64, mut proposal: Proposal) -> Result<Outcome, NodeError> {
        proposal.command = Command::AsLeader {
            term,
            command: Box::new(proposal.command),
        };
        self.writer.write(proposal).await
    }
}

impl RaftHandle {
    /// Read access to this node's replica of the state.
    pub fn view(&self) -> &StateView {
        &self.view
    }

    /// Signals of applied writes to watched keys (agents' assignment streams).
    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    /// Sets where this node, as leader, takes the messages passed with [`RaftHandle::tell_leader`]
    /// (set once, before the node serves).
    pub fn set_leader_inbox(&self, inbox: LeaderInbox) {
        let _ = self.leader_inbox.set(inbox);
    }

    fn deliver(&self, message: serde_json::Value) -> Result<(), NodeError> {
        let inbox = self
            .leader_inbox
            .get()
            .ok_or_else(|| NodeError::Unavailable("this node takes no leader messages yet".into()))?;
        inbox(message).map_err(NodeError::Rejected)
    }

    /// Passes `message` to the leader's inbox: here if this node leads, else over gRPC in one
    /// attempt. Fails when no leader is known or it cannot be reached.
    pub async fn tell_leader(&self, message: serde_json::Value) -> Result<(), NodeError> {
        let leader = self.current_leader();
        if leader == Some(self.id) {
            return self.deliver(message);
        }
        let leader = leader.ok_or_else(|| NodeError::Unavailable("no leader is known".into()))?;
        let addr = self
            .leader_addr(leader)
            .ok_or_else(|| NodeError::Unavailable("the leader's address is unknown".into()))?;
        let reply: LeaderReply<()> = self
            .pool
            .call(&addr, leader, Method::Heartbeat, &message, self.attempt_timeout)
            .await
            .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        match reply {
            LeaderReply::Ok(()) => Ok(()),
            LeaderReply::NotLeader { .. } => Err(NodeError::Unavailable("leadership is changing".into())),
            LeaderReply::Failed(e) => Err(e),
        }
    }

    /// Serves a message another node passed to the leader.
    pub fn serve_leader_message(&self, message: serde_json::Value) -> LeaderReply<()> {
        if self.current_leader() == Some(self.id) {
            match self.deliver(message) {
                Ok(()) => LeaderReply::Ok(()),
                Err(e) => LeaderReply::Failed(e),
            }
        } else {
            LeaderReply::NotLeader {
                leader: self.current_leader(),
            }
        }
    }

    /// Marks whether this node's leader-only loops are running (reported by status).
    pub fn set_leader_loops_running(&self, running: bool) {
        self.leader_loops_running.store(running, Ordering::SeqCst);
    }

    /// Whether this node's leader-only loops are running.
    pub fn leader_loops_running(&self) -> bool {
        self.leader_loops_running.load(Ordering::SeqCst)
    }

    /// Subscribes to (leader, term, is-leader) changes of this node.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, NodeInfo>> {
        self.raft.metrics()
    }

    /// Whether `metrics` says this node leads.
    pub fn is_leader_in(&self, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> bool {
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.id)
    }

    /// How long one attempt to reach the leader may take before it is given up (a paused or
    /// cut-off leader accepts connections but never answers).
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The leader and the address to send its API requests to, when another node leads: its
    /// API address, rerouted by this node's `[dial]` table.
    pub fn leader_forward_addr(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader.filter(|l| *l != self.id)?;
        let node = metrics.membership_config.membership().get_node(&leader)?;
        Some((leader, self.pool.dial(&node.api_addr).to_string()))
    }

    /// The leader this node currently knows of.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops Raft on this node.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// Asks Raft for a snapshot now (tests and operators).
    pub async fn trigger_snapshot(&self) -> Result<(), NodeError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))
    }

    fn leader_addr(&self, leader: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.rpc_addr.clone())
    }

    /// Commits `batch` through the leader, forwarding from a follower, holding while no leader is
    /// known, until `self.hold` after `started` (when the oldest proposal was queued). Safe to
    /// retry: proposals are deduplicated by request id when applied.
    pub async fn submit_batch(&self, batch: Batch, started: Instant) -> Result<BatchOutcome, NodeError> {
        let deadline = started + self.hold;
        let mut backoff = Duration::from_millis(10);
        let mut failed_leader = None;
        // Whether an attempt may have reached a leader's log: then a failure is not definite.
        let mut maybe_delivered = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.hold_expired(maybe_delivered));
            }
            // A follower that knows the leader forwards at once instead of asking openraft first.
            let attempt = match self.current_leader().filter(|l| *l != self.id) {
                Some(leader) => Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                    ForwardToLeader {
                        leader_id: Some(leader),
                        leader_node: None,
                    },
                )))),
                None => tokio::time::timeout(remaining, self.raft.client_write(batch.clone())).await,
            };
            match attempt {
                Ok(Ok(response)) => return Ok(response.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    failed_leader = f.leader_id;
                    if let Some(leader) = f.leader_id.filter(|l| *l != self.id) {
                        if let Some(addr) = f.leader_node.map(|n| n.rpc_addr).or_else(|| self.leader_addr(leader)) {
                            let reply = self
                                .pool
                                .call::<Batch, LeaderReply<BatchOutcome>>(
                                    &addr,
                                    leader,
                                    Method::Forward,
                                    &batch,
                                    remaining.min(self.attempt_timeout),
                                )
                                .await;
                            match reply {
                                Ok(LeaderReply::Ok(outcome)) => return Ok(outcome),
                                Ok(LeaderReply::Failed(e)) => return Err(e),
                                Ok(LeaderReply::NotLeader { .. }) => {}
                                Err(e) => {
                                    maybe_delivered |= matches!(e, network::RpcFailure::Failed { .. });
                                    tracing::debug!(error = %e, "forward to leader failed; retrying")
                                }
                            }
                        }
                    }
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    return Err(NodeError::Internal(e.to_string()))
                }
                Ok(Err(RaftError::Fatal(e))) => return Err(NodeError::Unavailable(format!("raft stopped: {e}"))),
                // Timed out on this node as leader: the entry may be in the log.
                Err(_) => maybe_delivered = true,
            }
            self.pause_for_leader(
                failed_leader,
                backoff.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// The error for a write that no leader confirmed in time.
    fn hold_expired(&self, maybe_delivered: bool) -> NodeError {
        let hold = self.hold.as_millis();
        NodeError::Unavailable(if maybe_delivered {
            format!(
                "the write was not confirmed within {hold} ms and its outcome is unknown: it may still take \
                 effect. Read the state before retrying, or retry with the same clientToken where the action has one"
            )
        } else {
            format!(
                "no leader accepted the write within {hold} ms and it was not applied; the cluster may be \
                 electing a leader or lack a quorum"
            )
        })
    }

    /// Waits up to `max` for a leader other than `failed` to be known, so a retry after an
    /// election goes out as soon as the new leader is, not at the next backoff tick.
    async fn pause_for_leader(&self, failed: Option<NodeId>, max: Duration) {
        let mut metrics = self.raft.metrics();
        let new_leader = metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != failed);
        let _ = tokio::time::timeout(max, new_leader).await;
    }

    /// Serves a write forwarded by a follower. Its proposals join this leader's own batches, so
    /// that the writes of every node share log entries (and fsyncs) instead of each forwarded
    /// batch taking an entry of its own. A node that does not lead says so, and the follower
    /// tries the leader it names.
    pub async fn serve_forwarded(&self, batch: Batch) -> LeaderReply<BatchOutcome> {
        let leader = self.current_leader();
        if leader != Some(self.id) {
            return LeaderReply::NotLeader { leader };
        }
        let Some(writer) = self.writer.get() else {
            return LeaderReply::Failed(NodeError::Unavailable("node is shutting down".into()));
        };
        let outcomes = futures::future::join_all(batch.0.into_iter().map(|p| writer.write(p))).await;
        match outcomes.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(outcomes) => LeaderReply::Ok(BatchOutcome(outcomes)),
            // Proposals of one batch are queued together and almost always share an entry; if
            // some failed, the others' fate is reported as unknown by the follower's retry
            // (proposals are deduplicated by request id, so a retry applies nothing twice).
            Err(e) => LeaderReply::Failed(e),
        }
    }

    /// Whether this node still leads with a quorum's consent: one heartbeat round, bounded by
    /// `within`. A partitioned leader (which openraft 0.9 does not demote) answers false.
    pub async fn confirm_leadership(&self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.raft.ensure_linearizable()).await,
            Ok(Ok(_))
        )
    }

    /// Waits until this node's replica reflects every write acknowledged before the call
    /// (read-index: the leader confirms its leadership with a quorum; a follower asks the leader
    /// for that index). Concurrent calls share one confirmation that began after all of them
    /// arrived (`read_index.rs`), then each waits until the state machine has applied the index.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let deadline = Instant::now() + self.hold;
        let mut backoff = Duration::from_millis(10);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let round = match self.current_leader() {
                Some(leader) if leader != self.id => tokio::time::timeout(remaining, self.remote_read_index()).await,
                _ => tokio::time::timeout(remaining, self.local_read_index()).await,
            };
            let round = round.ok().flatten();
            let failed_leader = match round {
                Some(ReadIndex::Index(index)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let waited = self
                        .raft
                        .wait(Some(remaining))
                        .applied_index_at_least(index, "read index")
                        .await;
                    if waited.is_ok() {
                        return Ok(());
                    }
                    None
                }
                Some(ReadIndex::Retry { failed_leader }) => failed_leader,
                Some(ReadIndex::Stopped(e)) => return Err(NodeError::Unavailable(format!("raft stopped: {e}"))),
                None => None,
            };
            if Instant::now() >= deadline {
                return Err(NodeError::Unavailable(format!(
                    "could not confirm a leader within {} ms for a linearizable read; retry later",
                    self.hold.as_millis()
                )));
            }
            self.pause_for_leader(
                failed_leader,
                backoff.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Joins the next check of this node's own leadership (a heartbeat round to a quorum).
    async fn local_read_index(&self) -> Option<ReadIndex> {
        let (raft, id, within) = (self.raft.clone(), self.id, self.attempt_timeout);
        self.local_reads
            .join(move || {
                let raft = raft.clone();
                Box::pin(async move {
                    match tokio::time::timeout(within, raft.get_read_log_id()).await {
                        Ok(Ok((read_log_id, _))) => ReadIndex::Index(read_log_id.map(|l| l.index)),
                        Ok(Err(RaftError::Fatal(e))) => ReadIndex::Stopped(e.to_string()),
                        // Not the leader, or leading without a quorum: retry once another node
                        // is known to lead (at once if one already is) instead of spinning here.
                        Ok(Err(RaftError::APIError(_))) | Err(_) => ReadIndex::Retry {
                            failed_leader: Some(id),
                        },
                    }
                })
            })
            .await
    }

    /// Joins the next `ReadIndex` call to the leader this node knows of.
    async fn remote_read_index(&self) -> Option<ReadIndex> {
        let handle = self.clone();
        self.remote_reads
            .join(move || {
                let handle = handle.clone();
                Box::pin(async move {
                    let Some(leader) = handle.current_leader().filter(|l| *l != handle.id) else {
                        return ReadIndex::Retry { failed_leader: None };
                    };
                    let Some(addr) = handle.leader_addr(leader) else {
                        return ReadIndex::Retry { failed_leader: None };
                    };
                    let reply = handle
                        .pool
                        .call::<(), LeaderReply<Option<u64>>>(
                            &addr,
                            leader,
                            Method::ReadIndex,
                            &(),
                            handle.attempt_timeout,
                        )
                        .await;
                    match reply {
                        Ok(LeaderReply::Ok(index)) => ReadIndex::Index(index),
                        _ => ReadIndex::Retry {
                            failed_leader: Some(leader),
                        },
                    }
                })
            })
            .await
    }

    /// Serves a follower's read-index request: the index it must apply before reading, from a
    /// leadership check shared with this node's own reads.
    pub async fn serve_read_index(&self) -> LeaderReply<Option<u64>> {
        if self.current_leader() != Some(self.id) {
            return LeaderReply::NotLeader {
                leader: self.current_leader(),
            };
        }
        match self.local_read_index().await {
            Some(ReadIndex::Index(index)) => LeaderReply::Ok(index),
            Some(ReadIndex::Retry { .. }) => LeaderReply::NotLeader {
                leader: self.current_leader().filter(|l| *l != self.id),
            },
            Some(ReadIndex::Stopped(e)) => LeaderReply::Failed(NodeError::Unavailable(format!("raft stopped: {e}"))),
            None => LeaderReply::Failed(NodeError::Unavailable("node is shutting down".into())),
        }
    }

    /// Applies a membership change on the leader, forwarding from a follower.
    pub async fn admin(&self, op: AdminOp) -> Result<(), NodeError> {
        let deadline = Instant::now() + Duration::from_secs(60).max(self.hold);
        loop {
            match self.serve_admin(op.clone()).await {
                LeaderReply::Ok(()) => return Ok(()),
                LeaderReply::Failed(e) => return Err(e),
                LeaderReply::NotLeader { leader } => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if let Some(leader) = leader.filter(|l| *l != self.id) {
                        if let Some(addr) = self.leader_addr(leader) {
                            let reply = self
                                .pool
                                .call::<AdminOp, LeaderReply<()>>(&addr, leader, Method::Admin, &op, remaining)
                                .await;
                            match reply {
                                Ok(LeaderReply::Ok(())) => return Ok(()),
                                Ok(LeaderReply::Failed(e)) => return Err(e),
                                _ => {}
                            }
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Unavailable(
                    "no leader accepted the membership change in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a membership change if this node leads.
    pub async fn serve_admin(&self, op: AdminOp) -> LeaderReply<()> {
        // Only the leader may try: on a follower openraft may report a stale membership state
        // instead of a redirect.
        let leader = self.current_leader();
        if leader != Some(self.id) {
            return LeaderReply::NotLeader { leader };
        }
        // A new leader commits its first entry (and with it the current membership) before it
        // can change membership; wait for that.
        if let Err(e) = self.raft.ensure_linearizable().await {
            return LeaderReply::NotLeader {
                leader: e.forward_to_leader().and_then(|f| f.leader_id),
            };
        }
        let not_leader = |e: &RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>| {
            e.forward_to_leader()
                .map(|f| LeaderReply::NotLeader { leader: f.leader_id })
        };
        let result = match op {
            AdminOp::AddNode { id, info } => {
                if id == 0 {
                    return LeaderReply::Failed(NodeError::Rejected("node id must be at least 1".into()));
                }
                tracing::info!(node_id = id, %info, "adding learner");
                match self.raft.add_learner(id, info, true).await {
                    Err(e) => Err(e),
                    Ok(_) => {
                        tracing::info!(node_id = id, "promoting learner to voter");
                        self.raft
                            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                            .await
                    }
                }
            }
            AdminOp::RemoveNode { id } => {
                let is_voter = {
                    let metrics = self.raft.metrics();
                    let metrics = metrics.borrow();
                    let membership = metrics.membership_config.membership();
                    if membership.get_node(&id).is_none() {
                        return LeaderReply::Failed(NodeError::Rejected(format!("node {id} is not a member")));
                    }
                    membership.voter_ids().any(|v| v == id)
                };
                tracing::info!(node_id = id, is_voter, "removing node");
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                self.raft.change_membership(change, false).await
            }
        };
        match result {
            Ok(_) => LeaderReply::Ok(()),
            // Another change is still being committed: retry shortly, like a redirect to self.
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)))) => {
                LeaderReply::NotLeader { leader: Some(self.id) }
            }
            Err(e) => match not_leader(&e) {
                Some(reply) => reply,
                None => LeaderReply::Failed(NodeError::Rejected(e.to_string())),
            },
        }
    }

    /// This node's own report.
    pub fn local_report(&self) -> NodeReport {
        let metrics = self.raft.metrics().borrow().clone();
        NodeReport {
            id: self.id,
            state: format!("{:?}", metrics.state).to_lowercase(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            committed_index: self.committed.get(),
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            leader_loops_running: self.leader_loops_running(),
        }
    }

    /// Every member's report, gathered over gRPC; members that do not answer are "unreachable".
    pub async fn cluster_status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let calls = membership.nodes().map(|(id, info)| {
            let (id, info) = (*id, info.clone());
            async move {
                let report = if id == self.id {
                    Some(self.local_report())
                } else {
                    self.pool
                        .call::<(), NodeReport>(&info.rpc_addr, id, Method::NodeStatus, &(), Duration::from_secs(1))
                        .await
                        .ok()
                };
                (id, info, report)
            }
        });
        let mut members = Vec::new();
        let mut leader = metrics.current_leader;
        let mut term = metrics.current_term;
        for (id, info, report) in futures::future::join_all(calls).await {
            let voter = voters.contains(&id);
            let role = match &report {
                None => "unreachable".to_string(),
                Some(r) if r.state == "leader" => "leader".to_string(),
                Some(_) if !voter => "learner".to_string(),
                Some(r) => r.state.clone(),
            };
            if let Some(r) = &report {
                if r.term > term || (r.term == term && r.leader.is_some() && leader.is_none()) {
                    term = r.term;
                    leader = r.leader;
                }
            }
            members.push(MemberStatus {
                id,
                api_addr: info.api_addr,
                raft_addr: info.rpc_addr,
                role,
                voter,
                term: report.as_ref().map(|r| r.term),
                committed_index: report.as_ref().and_then(|r| r.committed_index),
                applied_index: report.as_ref().and_then(|r| r.applied_index),
                last_log_index: report.as_ref().and_then(|r| r.last_log_index),
                snapshot_index: report.as_ref().and_then(|r| r.snapshot_index),
                purged_index: report.as_ref().and_then(|r| r.purged_index),
            });
        }
        ClusterStatus { leader, term, members }
    }

    /// Access for the gRPC service.
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }
}
