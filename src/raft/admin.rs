//! Membership changes (on the leader, forwarded from any member) and status reports.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::time::Instant;

use super::network::{Method, RpcFailure};
use super::*;

/// How long a node being added has to answer a status call at its address.
const ADD_NODE_PROBE: Duration = Duration::from_secs(10);

impl RaftHandle {
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
        if let AdminOp::Campaign { from, term } = op {
            return self.serve_campaign(from, term).await;
        }
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
                // A wrong address is the usual mistake: ask the node itself first, so that it
                // costs a quick refusal and no change of membership.
                if let Err(e) = self.probe(id, &info.rpc_addr).await {
                    return LeaderReply::Failed(NodeError::Rejected(format!(
                        "node {id} does not answer at {} within {} s ({e}); it was not added",
                        info.rpc_addr,
                        ADD_NODE_PROBE.as_secs()
                    )));
                }
                let was_member = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .is_some();
                let catch_up = Duration::from_millis(self.raft.config().install_snapshot_timeout) * 2;
                tracing::info!(node_id = id, %info, "adding learner");
                let added = async {
                    self.raft.add_learner(id, info.clone(), true).await?;
                    // openraft may answer before the learner holds the log; a voter must.
                    self.learner_caught_up(id).await;
                    Ok(())
                };
                match tokio::time::timeout(catch_up, added).await {
                    Err(_) => {
                        // Not caught up in time: a learner that stays would be replicated to for
                        // ever. Take it back out (unless it was a member before this call).
                        if !was_member {
                            self.remove_stray_learner(id).await;
                        }
                        return LeaderReply::Failed(NodeError::Rejected(format!(
                            "node {id} at {} did not catch up within {} s; it was not added",
                            info.rpc_addr,
                            catch_up.as_secs()
                        )));
                    }
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(_)) => {
                        tracing::info!(node_id = id, "promoting learner to voter");
                        self.raft
                            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                            .await
                    }
                }
            }
            // Served above, on any node; a pre-vote by the node-to-node service.
            AdminOp::Campaign { .. } | AdminOp::PreVote(_) => {
                return LeaderReply::Failed(NodeError::Rejected("not a membership change".into()))
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

    /// Asks node `id` at `addr` for its status until it answers, for at most
    /// [`ADD_NODE_PROBE`] (a node started just before it is added may not listen yet).
    async fn probe(&self, id: NodeId, addr: &str) -> Result<(), RpcFailure> {
        let deadline = Instant::now() + ADD_NODE_PROBE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .pool
                .call::<(), NodeReport>(addr, id, Method::NodeStatus, &(), remaining)
                .await;
            match reply {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() + Duration::from_millis(200) >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits until learner `id` has replicated everything this leader had when it was asked.
    async fn learner_caught_up(&self, id: NodeId) {
        let mut metrics = self.raft.metrics();
        let target = metrics.borrow().last_log_index.unwrap_or(0);
        loop {
            let matched = metrics
                .borrow()
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            if matched.is_some_and(|m| m >= target) {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Removes learner `id` that an add-node left behind, retrying while the change that added
    /// it is still being committed (for at most 10 s).
    async fn remove_stray_learner(&self, id: NodeId) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let removal = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false);
            match tokio::time::timeout_at(deadline, removal).await {
                Ok(Ok(_)) => return tracing::info!(node_id = id, "removed a learner that did not catch up"),
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::debug!(node_id = id, error = %e, "removing a stray learner; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return tracing::warn!(node_id = id, "a learner that did not catch up could not be removed"),
            }
        }
    }

    /// This node's Raft state at one moment, as `/readyz` and `/metrics` read it.
    pub fn vitals(&self) -> Vitals {
        self.vitals_in(&self.raft.metrics().borrow().clone())
    }

    fn vitals_in(&self, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> Vitals {
        let followers = match &metrics.replication {
            Some(replication) => replication
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, matched)| (*id, matched.map(|l| l.index)))
                .collect(),
            None => Vec::new(),
        };
        Vitals {
            id: self.id,
            leading: self.is_leader_in(metrics),
            state: format!("{:?}", metrics.state).to_lowercase(),
            term: metrics.current_term,
            leader: self.heard_leader(metrics.current_leader),
            voters: metrics.membership_config.membership().voter_ids().count(),
            last_log_index: metrics.last_log_index,
            committed_index: self.committed.get(),
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
            followers,
            fatal: metrics.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// This node's write queue, newest snapshot file and RocksDB figures (for `/metrics`).
    pub fn storage_vitals(&self) -> StorageVitals {
        let newest = std::fs::read_dir(&*self.backup_dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            // Named by their 20-digit index first: the greatest name is the newest.
            .max_by_key(|e| e.file_name());
        let snapshot_file = newest.and_then(|e| e.metadata().ok()).map(|m| {
            let age = m.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
            (m.len(), age.as_secs_f64())
        });
        StorageVitals {
            write_queue: self.writer.queued(),
            snapshot_file,
            store: self.view().store().figures(),
        }
    }

    /// This node's own report: its [`Vitals`], and what peers ask of it besides.
    pub fn local_report(&self) -> NodeReport {
        let metrics = self.raft.metrics().borrow().clone();
        let vitals = self.vitals_in(&metrics);
        NodeReport {
            id: vitals.id,
            state: vitals.state,
            term: vitals.term,
            leader: vitals.leader,
            last_log_index: vitals.last_log_index,
            committed_index: vitals.committed_index,
            applied_index: vitals.applied_index,
            snapshot_index: vitals.snapshot_index,
            purged_index: vitals.purged_index,
            leader_loops_running: self.leader_loops_running(),
            now_ms: Some(crate::stamp::now_ms()),
            cluster_id: crate::state::identity::cluster_id(self.view()).ok().flatten(),
            recorded_incarnations: metrics
                .membership_config
                .membership()
                .nodes()
                .filter_map(|(id, _)| Some((*id, crate::state::identity::incarnation(self.view(), *id).ok()??)))
                .collect(),
            admitted: self.admitted.load(std::sync::atomic::Ordering::SeqCst),
            feature_level: crate::state::identity::FEATURE_LEVEL,
            cluster_version: crate::state::identity::cluster_version(self.view()).unwrap_or(1),
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
                let asked = crate::stamp::now_ms();
                let report = if id == self.id {
                    Some(self.local_report())
                } else {
                    self.pool
                        .call::<(), NodeReport>(&info.rpc_addr, id, Method::NodeStatus, &(), Duration::from_secs(1))
                        .await
                        .ok()
                };
                let midpoint = asked / 2 + crate::stamp::now_ms() / 2;
                let offset = report
                    .as_ref()
                    .and_then(|r| r.now_ms)
                    .map(|ms| ms as i64 - midpoint as i64);
                (id, info, report, offset)
            }
        });
        let mut members = Vec::new();
        let mut leader = metrics.current_leader;
        let mut term = metrics.current_term;
        for (id, info, report, clock_offset_ms) in futures::future::join_all(calls).await {
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
                clock_offset_ms,
            });
        }
        ClusterStatus { leader, term, members }
    }

    /// Access for the gRPC service.
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// A backup of the state ([`backup::save`]) that holds every write acknowledged before
    /// the call: made from this node's replica after a read barrier. The caller streams the
    /// file and removes it.
    pub async fn backup(&self) -> Result<super::backup::Saved, NodeError> {
        // One at a time, and not on a disk below the watermark: each is a copy of the state.
        let Ok(_one) = self.backing_up.try_lock() else {
            return Err(NodeError::Rejected(
                "a backup is already being made on this node; try again when it is done".into(),
            ));
        };
        self.disk.check()?;
        self.read_barrier().await?;
        let store = self.view().store().clone();
        let dir = self.backup_dir.clone();
        tokio::task::spawn_blocking(move || super::backup::save(&store, &dir))
            .await
            .map_err(|e| NodeError::Internal(format!("the backup task failed: {e}")))?
            .map_err(|e| NodeError::Internal(format!("write the backup: {e}")))
    }
}

impl RaftHandle {
    /// When this node took office, if it leads in the current term.
    pub(super) fn leader_since(&self) -> Option<std::time::Instant> {
        let term = self.raft.metrics().borrow().current_term;
        let led = self.led_since.lock().unwrap_or_else(|p| p.into_inner());
        led.filter(|(t, _)| *t == term).map(|(_, at)| at)
    }
}

/// Counts the elections this node sees (each new term is one, won or not) and its changes of
/// leader, until the node stops.
pub(super) async fn count_elections(handle: RaftHandle) {
    let mut watch = handle.raft.metrics();
    let (mut term, mut leader) = {
        let m = watch.borrow_and_update();
        (m.current_term, m.current_leader)
    };
    loop {
        tokio::select! {
            _ = handle.stopped.cancelled() => return,
            changed = watch.changed() => if changed.is_err() { return },
        }
        let m = watch.borrow_and_update();
        if m.current_term > term {
            metrics::counter!("ecsd_raft_elections_total").increment(m.current_term - term);
            term = m.current_term;
        }
        if m.current_leader.is_some() && m.current_leader != leader {
            metrics::counter!("ecsd_raft_leader_changes_total").increment(1);
            leader = m.current_leader;
        }
        if m.current_leader == Some(handle.id) {
            let mut led = handle.led_since.lock().unwrap_or_else(|p| p.into_inner());
            if led.is_none_or(|(t, _)| t != m.current_term) {
                *led = Some((m.current_term, std::time::Instant::now()));
            }
        }
    }
}
