//! Linearizable reads: the read barrier (read-index on the leader, the leader's index over gRPC
//! `ReadIndex` on a follower), and the leader's confirmation of its leadership.

use std::time::Duration;

use openraft::error::RaftError;
use tokio::time::Instant;

use super::network::Method;
use super::*;

/// The result of one leadership check for reads.
#[derive(Debug, Clone)]
pub(super) enum ReadIndex {
    /// Confirmed: a read is linearizable once the state machine has applied this index.
    Index(Option<u64>),
    /// Not confirmed; retry, after a leader other than this one is known if one is named.
    Retry { failed_leader: Option<NodeId> },
    /// Raft has stopped on this node.
    Stopped(String),
}

impl RaftHandle {
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
}
