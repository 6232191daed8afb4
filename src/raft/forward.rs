//! Writes that reach the leader from any node: a follower forwards its batch over gRPC
//! `Forward`; with no leader known the batch is held, up to `api.hold_ms`.

use std::time::Duration;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use tokio::time::Instant;

use super::network::Method;
use super::*;
use crate::state::{Batch, BatchOutcome};

impl RaftHandle {
    /// Commits `batch` through the leader, forwarding from a follower, holding while no leader is
    /// known, until `self.hold` after `started` (when the oldest proposal was queued). Safe to
    /// retry: proposals are deduplicated by request id when applied.
    pub async fn submit_batch(&self, batch: Batch, started: Instant) -> Result<BatchOutcome, NodeError> {
        self.disk.check()?;
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
            // A leader handing off takes nothing more into its log: wait for the next one.
            if self.stepping_down() && self.current_leader() == Some(self.id) {
                self.pause_for_leader(Some(self.id), remaining).await;
                continue;
            }
            // A follower that knows the leader forwards at once instead of asking openraft first.
            let attempt = match self.current_leader().filter(|l| *l != self.id) {
                Some(leader) => Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                    ForwardToLeader {
                        leader_id: Some(leader),
                        leader_node: None,
                    },
                )))),
                None => {
                    self.measure_if_unmeasured().await;
                    tokio::time::timeout(remaining, self.raft.client_write(self.on_cluster_clock(batch.clone()))).await
                }
            };
            match attempt {
                Ok(Ok(response)) => return Ok(response.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    failed_leader = f.leader_id;
                    if let Some(leader) = f.leader_id.filter(|l| *l != self.id) {
                        if let Some(addr) = f.leader_node.map(|n| n.rpc_addr).or_else(|| self.leader_addr(leader)) {
                            metrics::counter!("ecsd_writes_forwarded_total").increment(batch.0.len() as u64);
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
    pub(super) async fn pause_for_leader(&self, failed: Option<NodeId>, max: Duration) {
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
        if self.stepping_down() {
            return LeaderReply::NotLeader { leader: None };
        }
        if let Err(e) = self.disk.check() {
            return LeaderReply::Failed(e);
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
}
