//! When a node calls an election: its own failure detector with a pre-vote, in place of
//! openraft 0.9's election timer (which has no pre-vote, and waits a whole leader lease on top
//! of the election timeout).
//!
//! - Each node notes when it last heard from a leader it accepts ([`Contact`]): an
//!   AppendEntries or a snapshot chunk that openraft did not refuse for a higher vote. A leader
//!   counts as hearing from itself.
//! - A voter that has not heard from one for a random timeout in
//!   `[election_timeout_min_ms, election_timeout_max_ms)` asks the other voters first
//!   ([`PreVote`], as in Raft thesis §9.6 and etcd's `PreVote`). A voter grants it only if it
//!   has not heard from a leader for `election_timeout_min_ms` itself, does not lead, and
//!   holds no more log than the candidate.
//! - Only with a majority's grants (its own included) does the node call a real election.
//!
//! So a loaded or cut-off follower that misses heartbeats never raises the term and deposes a
//! healthy leader; only the loss of the leader by a majority does. openraft's leader lease
//! (how long a voter refuses a real vote after it heard from a leader) is set to
//! `election_timeout_min_ms` (`raft_config`), so a voter that granted a pre-vote also grants the
//! vote that follows.
//!
//! Peers of an earlier version do not know the pre-vote: their refusal to decode it counts as a
//! grant, and their own openraft timer decides for them, as before.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::network::{Method, RpcFailure};
use super::{AdminOp, LeaderReply, NodeId, RaftHandle};

/// When this node last heard from a leader it accepts.
#[derive(Debug)]
pub struct Contact {
    base: Instant,
    /// Milliseconds since `base`.
    last_ms: std::sync::atomic::AtomicU64,
    /// Pre-votes this node asked for: granted by a majority, and not.
    granted: std::sync::atomic::AtomicU64,
    denied: std::sync::atomic::AtomicU64,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            base: Instant::now(),
            last_ms: Default::default(),
            granted: Default::default(),
            denied: Default::default(),
        }
    }
}

impl Contact {
    /// Heard from the leader now.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since this node last heard from a leader.
    pub fn since(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.base.elapsed().saturating_sub(Duration::from_millis(last))
    }
}

/// A voter's question before it calls an election: would you vote for me?
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreVote {
    pub from: NodeId,
    /// The term it would campaign in.
    pub term: u64,
    /// Its last log entry's index.
    pub last_log_index: Option<u64>,
}

/// What a voter answers: whether it would, and why not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreVoteReply {
    pub granted: bool,
    pub reason: String,
}

/// The election timings, from the node config.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min: Duration,
    pub max: Duration,
}

impl Timing {
    fn random_timeout(&self) -> Duration {
        let (min, max) = (self.min.as_millis() as u64, self.max.as_millis() as u64);
        Duration::from_millis(rand::thread_rng().gen_range(min..max.max(min + 1)))
    }
}

/// Whether a voter grants a pre-vote, from what it knows: it leads, how long since it heard
/// from a leader, and its last log index against the candidate's.
pub fn decide(
    leading: bool,
    since_contact: Duration,
    timing: Timing,
    mine: Option<u64>,
    theirs: Option<u64>,
) -> PreVoteReply {
    let reason = if leading {
        "it leads".to_string()
    } else if since_contact < timing.min {
        format!("it heard from the leader {} ms ago", since_contact.as_millis())
    } else if theirs < mine {
        format!("its log reaches index {mine:?}, the candidate's only {theirs:?}")
    } else {
        String::new()
    };
    PreVoteReply {
        granted: reason.is_empty(),
        reason,
    }
}

/// How often the detector looks.
const POLL: Duration = Duration::from_millis(10);

/// Runs the failure detector of `handle` until the node stops.
pub(super) async fn detector(handle: RaftHandle) {
    let timing = handle.election;
    let mut timeout = timing.random_timeout();
    // Not before this instant: a fresh random wait after each try. The try itself must not
    // count as hearing from a leader: that would make this node refuse the others' pre-votes,
    // and two followers that lost the leader could refuse each other in turn for seconds.
    let mut next_try = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = handle.stopped.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if !handle.admitted.load(std::sync::atomic::Ordering::SeqCst) {
            handle.contact.touch();
            continue;
        }
        let (leading, voters, term, last_log_index) = {
            let metrics = handle.raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (handle.is_leader_in(&m), voters, m.current_term, m.last_log_index)
        };
        if leading || !voters.contains(&handle.id) || handle.stepping_down() {
            handle.contact.touch();
            continue;
        }
        if handle.contact.since() < timeout || tokio::time::Instant::now() < next_try {
            continue;
        }
        let ask = PreVote {
            from: handle.id,
            term: term + 1,
            last_log_index,
        };
        let granted = pre_vote(&handle, &voters, &ask, timing.min).await;
        if granted > voters.len() / 2 {
            tracing::info!(
                node_id = handle.id,
                term = term + 1,
                granted,
                voters = voters.len(),
                silent_ms = handle.contact.since().as_millis() as u64,
                "no leader heard from; a majority granted the pre-vote: calling an election"
            );
            metrics::counter!("ecsd_raft_pre_votes_total", "outcome" => "granted").increment(1);
            handle
                .contact
                .granted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if handle.raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!(node_id = handle.id, granted, "pre-vote not granted by a majority");
            metrics::counter!("ecsd_raft_pre_votes_total", "outcome" => "denied").increment(1);
            handle.contact.denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Wait a fresh random timeout before the next try (a split vote, or a leader that
        // answers again).
        timeout = timing.random_timeout();
        next_try = tokio::time::Instant::now() + timeout;
    }
}

/// Asks every other voter at once; returns the grants, this node's own included, as soon as
/// they make a majority (a cut-off voter's silence does not delay the election), or once every
/// voter has answered or timed out.
async fn pre_vote(handle: &RaftHandle, voters: &[NodeId], ask: &PreVote, deadline: Duration) -> usize {
    use futures::stream::{FuturesUnordered, StreamExt};
    let majority = voters.len() / 2 + 1;
    let mut asks: FuturesUnordered<_> = voters
        .iter()
        .filter(|v| **v != handle.id)
        .filter_map(|v| {
            let addr = handle.leader_addr(*v)?;
            let (pool, ask, v) = (handle.pool.clone(), ask.clone(), *v);
            Some(async move {
                let op = AdminOp::PreVote(ask);
                let reply = pool
                    .call::<AdminOp, LeaderReply<PreVoteReply>>(&addr, v, Method::Admin, &op, deadline)
                    .await;
                match reply {
                    Ok(LeaderReply::Ok(r)) => r.granted,
                    // A peer of an earlier version: its own timer decides for it.
                    Err(RpcFailure::Failed { message, .. }) => message.contains("unknown variant"),
                    _ => false,
                }
            })
        })
        .collect();
    let mut granted = 1;
    while granted < majority {
        match asks.next().await {
            Some(true) => granted += 1,
            Some(false) => {}
            None => break,
        }
    }
    granted
}

impl RaftHandle {
    /// The pre-votes this node has asked for since it started: (granted by a majority, not).
    pub fn pre_votes(&self) -> (u64, u64) {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (load(&self.contact.granted), load(&self.contact.denied))
    }

    /// The leader this node knows of, unless it has heard from none for longer than the largest
    /// election timeout: then none, as etcd's pre-candidate reports (openraft keeps naming the
    /// last leader while the pre-vote holds its follower back from an election).
    pub(super) fn heard_leader(&self, known: Option<NodeId>) -> Option<NodeId> {
        let leader = known?;
        (leader == self.id || self.contact.since() <= self.election.max).then_some(leader)
    }

    /// Heard from a leader that openraft accepted (`service.rs`).
    pub(super) fn heard_from_leader(&self) {
        self.contact.touch();
    }

    /// Served on a voter that another asks before it calls an election.
    pub(super) fn serve_pre_vote(&self, ask: &PreVote) -> PreVoteReply {
        let (leading, last_log_index) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (self.is_leader_in(&m), m.last_log_index)
        };
        let reply = decide(
            leading,
            self.contact.since(),
            self.election,
            last_log_index,
            ask.last_log_index,
        );
        tracing::debug!(node_id = self.id, from = ask.from, term = ask.term, ?reply, "pre-vote");
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        min: Duration::from_millis(200),
        max: Duration::from_millis(400),
    };

    #[test]
    fn a_voter_grants_only_when_it_lost_the_leader_and_holds_no_more_log() {
        let long = Duration::from_millis(250);
        assert!(decide(false, long, TIMING, Some(10), Some(10)).granted);
        assert!(decide(false, long, TIMING, Some(10), Some(12)).granted);
        assert!(decide(false, long, TIMING, None, None).granted);
        let leads = decide(true, long, TIMING, Some(10), Some(10));
        assert!(!leads.granted && leads.reason == "it leads");
        let heard = decide(false, Duration::from_millis(120), TIMING, Some(10), Some(10));
        assert!(!heard.granted && heard.reason.contains("120 ms ago"), "{heard:?}");
        let behind = decide(false, long, TIMING, Some(10), Some(9));
        assert!(!behind.granted && behind.reason.contains("only Some(9)"), "{behind:?}");
        assert!(!decide(false, long, TIMING, Some(1), None).granted);
    }

    #[test]
    fn timeouts_fall_within_the_configured_range() {
        for _ in 0..1000 {
            let t = TIMING.random_timeout();
            assert!(t >= TIMING.min && t < TIMING.max, "{t:?}");
        }
    }

    #[test]
    fn contact_measures_from_the_last_touch() {
        let c = Contact::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.since() >= Duration::from_millis(30));
        c.touch();
        assert!(c.since() < Duration::from_millis(30));
    }
}
