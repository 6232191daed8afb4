//! The openraft adapter: every openraft call of the project goes through this module.
//!
//! It owns the type configuration, the RocksDB-backed log and state machine, the tonic network,
//! and [`RaftNode`], the handle the rest of the code uses (`mod.rs`): batched writes that reach
//! the leader from any node (`writer.rs`, `forward.rs`), linearizable read barriers
//! (`barrier.rs`, sharing checks through `read_index.rs`), membership changes and status reports
//! (`admin.rs`), and the leader inbox, which carries messages for the leader without reading them.

mod admin;
pub mod backup;
mod barrier;
pub mod clock;
mod disk;
mod election;
mod forward;
mod handoff;
pub mod identity;
mod log_cache;
pub mod log_store;
pub mod network;
mod read_index;
pub mod requests;
pub mod service;
mod snapshot_file;
pub mod state_machine;
mod writer;

#[cfg(test)]
mod format_tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::state::{Batch, BatchOutcome, Command, Outcome, Proposal};
use barrier::ReadIndex;
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
    /// Sent by leader `from` (in `term`) that is stopping, to the voter it hands off to:
    /// campaign now (`handoff.rs`).
    Campaign { from: NodeId, term: u64 },
    /// Sent by a voter that has lost the leader, before it calls an election (`election.rs`).
    PreVote(election::PreVote),
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
    /// The node's wall clock when it answered, epoch ms (absent from earlier versions' reports):
    /// peers sample it for the cluster clock (`clock.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<u64>,
    /// The cluster id, once its first leader made one (`identity.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The incarnation each member recorded in the replicated state, as this node has applied:
    /// a node starting on an empty data directory asks for its own (`identity::guard`).
    #[serde(default)]
    pub recorded_incarnations: BTreeMap<NodeId, String>,
    /// Whether it lets peers' Raft messages in (its start-up guard has passed); earlier
    /// versions' reports lack it, and they answered only once admitted.
    #[serde(default = "admitted_by_default")]
    pub admitted: bool,
    /// The feature level its binary supports (`state::identity::FEATURE_LEVEL`); earlier
    /// versions' reports lack it (0: level 1).
    #[serde(default)]
    pub feature_level: u32,
    /// The cluster version as this node has applied it (earlier versions: absent, 0).
    #[serde(default)]
    pub cluster_version: u32,
}

fn admitted_by_default() -> bool {
    true
}

/// A node's Raft state at one moment ([`RaftHandle::vitals`]): what `/readyz` judges and
/// `/metrics` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Vitals {
    pub id: NodeId,
    /// This node leads (in the current term).
    pub leading: bool,
    /// openraft's server state, lower-case: leader, follower, candidate, learner, shutdown.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// Voters in the membership.
    pub voters: usize,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// As leader: how long since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// As leader: each other member and the last index it is known to hold.
    pub followers: Vec<(NodeId, Option<u64>)>,
    /// Why Raft stopped on this node (a storage error, say), if it did.
    pub fatal: Option<String>,
}

/// What `/metrics` shows of this node's storage beside [`Vitals`].
#[derive(Debug, Clone, Default)]
pub struct StorageVitals {
    /// Proposals waiting in this node's write queue.
    pub write_queue: usize,
    /// The newest snapshot file: its size in bytes and its age in seconds.
    pub snapshot_file: Option<(u64, f64)>,
    /// RocksDB's estimates.
    pub store: crate::storage::StoreFigures,
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
    /// Its wall clock minus this node's when it answered, in ms (absent for earlier versions):
    /// a node far off is held to the others' clocks (`clock.rs`), and should be fixed.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
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
        // Elections are called by `election.rs` after a pre-vote, not by openraft's timer.
        // openraft's leader lease (a voter refuses votes for `election_timeout_max` after it
        // heard from a leader) is the pre-vote's threshold, so that a voter that granted the
        // pre-vote grants the vote; its timer's lower bound is then unused.
        enable_elect: false,
        election_timeout_min: t.election_timeout_min_ms - 1,
        election_timeout_max: t.election_timeout_min_ms,
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
/// it has not heard from a leader by then. The first one initialises once the others let Raft's
/// messages in (or after [`PEERS_ADMITTED_WITHIN`]): an election while they still start would
/// only fail.
async fn bootstrap(raft: &Raft<TypeConfig>, pool: &PeerPool, config: &NodeConfig) -> Result<(), NodeError> {
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
    let pool = pool.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        peers_admitted(&pool, node_id, &members).await;
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

/// How long a founding member waits for the others to let Raft's messages in.
const PEERS_ADMITTED_WITHIN: Duration = Duration::from_secs(5);

/// Waits (at most [`PEERS_ADMITTED_WITHIN`]) until every other member of `members` reports that
/// it lets Raft's messages in.
async fn peers_admitted(pool: &PeerPool, me: NodeId, members: &BTreeMap<NodeId, NodeInfo>) {
    let deadline = tokio::time::Instant::now() + PEERS_ADMITTED_WITHIN;
    let mut waiting: Vec<(NodeId, String)> = members
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, info)| (*id, info.rpc_addr.clone()))
        .collect();
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
        let asks = waiting.iter().map(|(id, addr)| async move {
            let report = pool
                .call::<(), NodeReport>(addr, *id, Method::NodeStatus, &(), Duration::from_millis(500))
                .await;
            matches!(report, Ok(r) if r.admitted)
        });
        let admitted = futures::future::join_all(asks).await;
        let mut answers = admitted.into_iter();
        waiting.retain(|_| !answers.next().unwrap_or(false));
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
    /// Serves ECS API requests other nodes forward to this one (`requests.rs`).
    request_handler: Arc<std::sync::OnceLock<requests::RequestHandler>>,
    /// Peers' clock readings, for the cluster clock (`clock.rs`).
    clock: Arc<clock::ClockSamples>,
    /// The feature level each peer last reported supporting (sampled with the clock).
    peer_levels: Arc<std::sync::Mutex<BTreeMap<NodeId, u32>>>,
    /// Stops the node's own background tasks (the clock sampler) at shutdown.
    stopped: tokio_util::sync::CancellationToken,
    /// Whether peers' Raft messages are let in (after the start-up guard).
    admitted: Arc<AtomicBool>,
    /// This node's data directory's incarnation.
    incarnation: Arc<identity::Incarnation>,
    /// Where backups are written before they are streamed (the snapshot directory: a start
    /// removes what a crash left there).
    backup_dir: Arc<std::path::Path>,
    /// Refuses writes below the disk watermark.
    disk: Arc<disk::DiskGuard>,
    /// Held while a backup is made: one at a time.
    backing_up: Arc<tokio::sync::Mutex<()>>,
    /// Set while this leader hands off its leadership before it stops (`handoff.rs`).
    stepping_down: Arc<AtomicBool>,
    /// The term this node last took office in, and when (kept by `admin::count_elections`).
    led_since: Arc<std::sync::Mutex<Option<(u64, std::time::Instant)>>>,
    /// When this node last heard from a leader (`election.rs`).
    contact: Arc<election::Contact>,
    /// When it suspects the leader and calls an election.
    election: election::Timing,
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
    /// Opens storage under the config's data dir and starts Raft; peers' messages wait for
    /// [`RaftNode::admit`], which runs the start-up guard and initialises a new cluster when
    /// configured to bootstrap. With `tls`, peers are dialled over mutual TLS.
    pub async fn start(
        config: &NodeConfig,
        store: crate::storage::Store,
        tls: Option<&crate::tls::Material>,
    ) -> Result<RaftNode, NodeError> {
        log_store::check_format(&store).map_err(NodeError::Rejected)?;
        let raft_config = Arc::new(raft_config(config)?);
        let state_machine = StateMachineStore::open(store.clone(), &config.data_dir.join("snapshots"))
            .map_err(|e| NodeError::Internal(format!("open snapshots: {e}")))?;
        let log_store = LogStore::new(store.clone()).with_purge_gate(state_machine.applied());
        let feed = state_machine.feed();
        let view = state_machine.view();
        let committed = log_store.committed_index();
        let pool = PeerPool::new(config.dialer(), tls);
        let network = Network {
            pool: pool.clone(),
            unreachable_backoff: Duration::from_millis(2 * config.raft.heartbeat_ms),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| NodeError::Internal(format!("start raft: {e}")))?;

        let incarnation = identity::open(&store)?;
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
            request_handler: Arc::default(),
            clock: Arc::default(),
            peer_levels: Arc::default(),
            stopped: tokio_util::sync::CancellationToken::new(),
            admitted: Arc::new(AtomicBool::new(false)),
            incarnation: Arc::new(incarnation),
            backup_dir: config.data_dir.join("snapshots").into(),
            disk: Arc::new(disk::DiskGuard::new(
                config.data_dir.clone(),
                config.health.min_free_disk_mib,
            )),
            stepping_down: Arc::new(AtomicBool::new(false)),
            backing_up: Arc::default(),
            led_since: Arc::default(),
            contact: Arc::default(),
            election: election::Timing {
                min: Duration::from_millis(config.raft.election_timeout_min_ms),
                max: Duration::from_millis(config.raft.election_timeout_max_ms),
            },
        };
        tokio::spawn(election::detector(handle.clone()));
        tokio::spawn(clock::sampler(handle.clone()));
        tokio::spawn(admin::count_elections(handle.clone()));
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

    /// Lets peers' Raft messages in once the start-up guard has passed (a node that lost its
    /// data must not vote: `identity.rs`), founds the cluster when configured to, and starts
    /// keeping the replicated identity. Call it once the node-to-node port serves: the guards
    /// of peers starting at the same time ask this node's status.
    pub async fn admit(&self, config: &NodeConfig) -> Result<(), NodeError> {
        let handle = &self.handle;
        identity::guard(config, &handle.pool, &handle.incarnation).await?;
        handle.admitted.store(true, Ordering::SeqCst);
        if config.bootstrap {
            bootstrap(&handle.raft, &handle.pool, config).await?;
        }
        tokio::spawn(identity::keeper(handle.clone(), handle.incarnation.id.clone()));
        Ok(())
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

    /// The leader this node currently knows of.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops Raft on this node.
    pub async fn shutdown(&self) {
        self.stopped.cancel();
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
}
