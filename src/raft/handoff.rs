//! Leadership handed off before a leader stops (SIGTERM), so that a rolling restart costs a
//! round trip of writes instead of an election timeout. openraft 0.9 has no transfer-leader
//! call; this does what etcd's does with the calls it has:
//!
//! 1. The leader stops taking writes into its log: new proposals wait (within the write hold)
//!    for the next leader, then go to it; forwarded ones are answered "not the leader".
//! 2. It waits (at most [`CATCH_UP`]) for a voter that holds its whole log.
//! 3. Past its own first lease (a leader refuses a vote for that long after it took office),
//!    it asks that voter to campaign (`AdminOp::Campaign`). With an up-to-date log, the voter
//!    wins the old leader's vote at once (followers' leases would delay it only in clusters of
//!    five or more), and the old leader steps down.
//! 4. It waits (at most [`ELECTED`]) to see the new leader, then stops.
//!
//! Any step that fails leaves the ordinary path: the node stops, and the others elect a leader
//! after the election timeout. No write is lost either way: nothing acknowledged is undone by
//! an election, and writes held meanwhile are retried at the new leader, deduplicated by id.

use std::time::{Duration, Instant};

use super::network::Method;
use super::{AdminOp, LeaderReply, NodeId, RaftHandle};

/// How long the leader waits for a voter to hold its whole log.
const CATCH_UP: Duration = Duration::from_secs(1);
/// How long it waits to see the new leader after asking it to campaign.
const ELECTED: Duration = Duration::from_secs(2);

impl RaftHandle {
    /// Hands leadership to an up-to-date voter, if this node leads; returns the new leader.
    /// When no handoff happens, the node goes on leading (and taking writes) until it stops.
    pub async fn hand_off_leadership(&self) -> Option<NodeId> {
        {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let others = m.membership_config.membership().voter_ids().any(|v| v != self.id);
            // A leader no quorum has acknowledged lately (the others are gone) has no one to
            // hand to; nor has a lone voter, or a Raft that has stopped.
            let heard = m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= self.raft.config().election_timeout_max);
            if m.current_leader != Some(self.id) || !others || !heard || m.running_state.is_err() {
                return None;
            }
        }
        self.stepping_down.store(true, std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        let leader = self.hand_off().await;
        match leader {
            Some(leader) => tracing::info!(
                node_id = self.id,
                new_leader = leader,
                took_ms = started.elapsed().as_millis() as u64,
                "leadership handed off"
            ),
            // Writes held meanwhile go into this leader's log again.
            None => self.stepping_down.store(false, std::sync::atomic::Ordering::SeqCst),
        }
        leader
    }

    async fn hand_off(&self) -> Option<NodeId> {
        if self.caught_up_voter().await.is_none() {
            tracing::info!(
                node_id = self.id,
                "no voter holds the whole log: stopping without a handoff"
            );
            return None;
        }
        // openraft's leader refuses votes for a lease (the maximum election timeout) after it
        // took office.
        let lease = Duration::from_millis(self.raft.config().election_timeout_max + 50);
        if let Some(since) = self.leader_since() {
            tokio::time::sleep(lease.saturating_sub(since.elapsed())).await;
        }
        // Chosen now, not before the wait: writes that were past the door meanwhile may have
        // grown the log.
        let target = self.caught_up_voter().await?;
        let term = self.raft.metrics().borrow().current_term;
        let addr = self.leader_addr(target)?;
        let op = AdminOp::Campaign { from: self.id, term };
        let asked = self
            .pool
            .call::<AdminOp, LeaderReply<()>>(&addr, target, Method::Admin, &op, Duration::from_secs(1))
            .await;
        if !matches!(asked, Ok(LeaderReply::Ok(()))) {
            tracing::info!(
                node_id = self.id,
                target,
                ?asked,
                "the handoff was refused: stopping without it"
            );
            return None;
        }
        let mut metrics = self.raft.metrics();
        let elected = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != self.id));
        let leader = match tokio::time::timeout(ELECTED, elected).await {
            Ok(Ok(m)) => m.current_leader,
            _ => None,
        };
        leader
    }

    /// A voter whose log matches this leader's last entry, once one does (within [`CATCH_UP`]).
    async fn caught_up_voter(&self) -> Option<NodeId> {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let found = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
                let last = m.last_log_index;
                let replication = m.replication.as_ref()?;
                voters
                    .into_iter()
                    .filter(|v| *v != self.id)
                    .find(|v| replication.get(v).copied().flatten().map(|l| l.index) == last)
            };
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            let _ = self.raft.trigger().heartbeat().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether this node is handing its leadership off: it takes no new writes into its log.
    pub(super) fn stepping_down(&self) -> bool {
        self.stepping_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Served on the voter the leader `from` (in `term`) chose: campaign now.
    pub(super) async fn serve_campaign(&self, from: NodeId, term: u64) -> LeaderReply<()> {
        let (leader, current) = {
            let m = self.raft.metrics().borrow().clone();
            (m.current_leader, m.current_term)
        };
        if leader != Some(from) || current != term || from == self.id {
            return LeaderReply::Failed(super::NodeError::Rejected(format!(
                "node {from} asked node {} to campaign in term {term}, but it knows leader {leader:?} in term {current}",
                self.id
            )));
        }
        match self.raft.trigger().elect().await {
            Ok(()) => LeaderReply::Ok(()),
            Err(e) => LeaderReply::Failed(super::NodeError::Unavailable(e.to_string())),
        }
    }
}
