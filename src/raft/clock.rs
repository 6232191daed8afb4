//! The cluster clock: this node's wall clock, held within [`MAX_CLOCK_SKEW_MS`] of the median
//! of the voters' clocks.
//!
//! Applied time (what `apply` stamps and what dedupe expiry, stopped-task garbage collection
//! and service throttles measure against) comes from proposals' `ts_ms`. One node whose clock
//! runs two days ahead would otherwise move applied time two days ahead for good: every dedupe
//! record would expire at the next write and every STOPPED task would be forgotten at once.
//! So every node samples its peers' wall clocks (the `NodeStatus` call, once a second), and
//! the leader clamps every proposal's `ts_ms` to the cluster clock ± the skew before it enters
//! the log. A leader's own bad clock is held by its followers' samples; a follower's by the
//! leader's. Without fresh readings of a majority, the cluster time last measured runs on by
//! the monotonic clock; a leader that has never measured it (just started, or just got its
//! peers) samples them before it stamps a batch, instead of stamping with its own clock alone.
//! Apply stays deterministic: it reads only the clamped stamps of the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::NodeId;

/// How far a proposal's time, or this node's clock, may be from the voters' median.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;
/// How often a node samples its peers' clocks.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Readings taken more than this many sampling rounds ago are not used (about 30 s).
const FRESH_ROUNDS: u64 = 30;

/// Peers' clocks as last sampled: what each read, when by this node's monotonic clock, and in
/// which sampling round. A peer's clock now is its reading plus the time elapsed since:
/// estimates that do not move when this node's own wall clock jumps. Freshness is counted in
/// rounds, and the time elapsed is bounded by the rounds since (two sampling periods each):
/// when this node's monotonic clock jumps too (libfaketime steps it with the wall clock; a
/// frozen machine resumes), a reading is neither carried days ahead nor dropped, until the
/// next round (at once: the sampler's timer fires) measures afresh.
#[derive(Default)]
pub struct ClockSamples {
    readings: Mutex<BTreeMap<NodeId, (u64, Instant, u64)>>,
    /// The sampling round (the sampler counts one per pass over the peers).
    round: std::sync::atomic::AtomicU64,
    /// When a clamp was last logged (one warning per 10 s at most).
    warned: Mutex<Option<Instant>>,
    /// The cluster time last measured with a majority's readings, and when by the monotonic
    /// clock: while too few readings are fresh, the cluster clock runs on from it.
    last_measured: Mutex<Option<(u64, Instant)>>,
    /// When running on from it was last logged (one warning per 10 s at most).
    warned_unmeasured: Mutex<Option<Instant>>,
}

/// How long the cluster time last measured may stand in for a measurement.
const RUN_ON_FOR: Duration = Duration::from_secs(600);

impl ClockSamples {
    /// Records that `peer`'s clock read `remote_ms` at `at` (halfway through the call), in the
    /// current round.
    pub fn record(&self, peer: NodeId, remote_ms: u64, at: Instant) {
        let round = self.round.load(std::sync::atomic::Ordering::SeqCst);
        self.lock().insert(peer, (remote_ms, at, round));
    }

    /// Whether the cluster time was ever measured with a majority's readings.
    pub fn measured(&self) -> bool {
        self.last_measured.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Starts the next sampling round.
    pub fn next_round(&self) {
        self.round.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, (u64, Instant, u64)>> {
        self.readings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The median of the voters' clocks now (this node's is `own_ms`), when a majority of them
    /// (this node counted) have a fresh reading; `None` otherwise (a single voter always has).
    pub fn median_ms(&self, own_ms: u64, me: NodeId, voters: &BTreeSet<NodeId>) -> Option<u64> {
        let readings = self.lock();
        let round = self.round.load(std::sync::atomic::Ordering::SeqCst);
        let mut known: Vec<u64> = voters
            .iter()
            .filter_map(|v| {
                if *v == me {
                    return Some(own_ms);
                }
                let (remote, at, taken) = readings.get(v)?;
                let rounds = round.saturating_sub(*taken);
                let bound = SAMPLE_EVERY * 2 * (rounds as u32 + 1);
                let age = at.elapsed().min(bound);
                (rounds <= FRESH_ROUNDS).then(|| remote.saturating_add(age.as_millis() as u64))
            })
            .collect();
        if known.len() * 2 <= voters.len() {
            return None;
        }
        known.sort_unstable();
        // The lower median: with one of three voters off, the two others decide.
        Some(known[(known.len() - 1) / 2])
    }

    /// The cluster's time by this node: its wall clock `own_ms`, held within the skew of the
    /// voters' median (its own clock alone when no majority was sampled).
    ///
    /// Without a majority's fresh readings (peers unreachable a while, or just joined), the
    /// cluster time last measured runs on by the monotonic clock, and this node's wall clock is
    /// held to it: a wall clock stepped meanwhile moves no proposal's time.
    pub fn cluster_now_ms(&self, own_ms: u64, me: NodeId, voters: &BTreeSet<NodeId>) -> u64 {
        let mut last = self.last_measured.lock().unwrap_or_else(|e| e.into_inner());
        match self.median_ms(own_ms, me, voters) {
            Some(median) => {
                // The median itself runs on: from this node's own (held) time, a run-on would
                // allow twice the skew.
                *last = Some((median, Instant::now()));
                hold(own_ms, median)
            }
            None => match *last {
                Some((then, at)) if at.elapsed() < RUN_ON_FOR => {
                    let ran_on = then.saturating_add(at.elapsed().as_millis() as u64);
                    let held = hold(own_ms, ran_on);
                    if held != own_ms {
                        drop(last);
                        self.note_unmeasured(own_ms, held);
                    }
                    held
                }
                _ => own_ms,
            },
        }
    }

    /// Logs, once per 10 s at most, that this node's clock is held to the last measured time.
    fn note_unmeasured(&self, own_ms: u64, held_ms: u64) {
        let mut warned = self.warned_unmeasured.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            tracing::warn!(
                own_ms,
                held_ms,
                "no fresh reading of a majority of the voters' clocks, and this node's clock moved off the \
                 cluster time last measured: held to it (is this node's clock wrong, or its peers unreachable?)"
            );
        }
    }

    /// Logs a clamp, once per 10 s at most, and counts every one.
    pub fn note_clamped(&self, proposed_ms: u64, clamped_ms: u64) {
        metrics::counter!("ecsd_clock_clamped_total").increment(1);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            tracing::warn!(
                proposed_ms,
                clamped_ms,
                off_by_ms = proposed_ms as i64 - clamped_ms as i64,
                "a proposal's time is off the cluster clock by more than {MAX_CLOCK_SKEW_MS} ms; clamped (is a node's clock wrong?)"
            );
        }
    }
}

impl super::RaftHandle {
    /// Records the feature level peer `id` reported.
    fn record_level(&self, id: NodeId, level: u32) {
        self.peer_levels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, level);
    }

    /// The lowest feature level among the members (voters and learners) and this node, as
    /// last reported; a member not heard from yet counts as level 1.
    pub fn members_feature_level(&self) -> u32 {
        let members: Vec<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let levels = self.peer_levels.lock().unwrap_or_else(|e| e.into_inner());
        members
            .iter()
            .map(|id| match *id == self.id {
                true => crate::state::identity::FEATURE_LEVEL,
                false => levels.get(id).copied().unwrap_or(1),
            })
            .min()
            .unwrap_or(1)
    }

    /// The cluster clock at this node (epoch ms): what leader loops measure ages and throttles
    /// against, and what proposals' times are held to.
    pub fn cluster_now_ms(&self) -> u64 {
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        self.clock.cluster_now_ms(crate::stamp::now_ms(), self.id, &voters)
    }

    /// `batch` with every proposal's time held within the skew of the cluster clock; done by
    /// the node that appends it to the log.
    pub(super) fn on_cluster_clock(&self, mut batch: crate::state::Batch) -> crate::state::Batch {
        let now = self.cluster_now_ms();
        for proposal in &mut batch.0 {
            let held = hold(proposal.ts_ms, now);
            // A proposal may wait in queues (up to the write hold) before it gets here: only
            // times further off than the skew are worth a word.
            if held != proposal.ts_ms && proposal.ts_ms > now {
                self.clock.note_clamped(proposal.ts_ms, held);
            }
            proposal.ts_ms = held;
        }
        batch
    }
}

/// Samples every peer's clock once per [`SAMPLE_EVERY`], until the node stops.
pub(super) async fn sampler(handle: super::RaftHandle) {
    loop {
        tokio::select! {
            _ = handle.stopped.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        sample_once(&handle).await;
    }
}

/// One sampling round: every peer's clock (and the feature level it supports).
async fn sample_once(handle: &super::RaftHandle) {
    let peers: Vec<(NodeId, String)> = {
        let metrics = handle.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership
            .nodes()
            .filter(|(id, _)| **id != handle.id)
            .map(|(id, info)| (*id, info.rpc_addr.clone()))
            .collect()
    };
    handle.clock.next_round();
    let calls = peers.into_iter().map(|(id, addr)| {
        let handle = handle.clone();
        async move {
            let sent = Instant::now();
            let report = handle
                .pool
                .call::<(), super::NodeReport>(&addr, id, super::network::Method::NodeStatus, &(), SAMPLE_EVERY)
                .await;
            if let Ok(report) = report {
                if let Some(remote) = report.now_ms {
                    handle.clock.record(id, remote, sent + sent.elapsed() / 2);
                }
                handle.record_level(id, report.feature_level.max(1));
            }
        }
    });
    futures::future::join_all(calls).await;
}

impl super::RaftHandle {
    /// Before this node stamps a batch as leader: when it has never measured the cluster clock
    /// (just started, or just got peers) it samples them first, rather than stamp with its own
    /// clock alone, which may be far off (one entry stamped days ahead moves applied time for
    /// good).
    pub(super) async fn measure_if_unmeasured(&self) {
        if self.clock.measured() {
            return;
        }
        // Measures it when a majority's readings are at hand; else one round samples them.
        self.cluster_now_ms();
        if !self.clock.measured() {
            sample_once(self).await;
        }
    }
}

/// `ms`, held within the skew of `reference_ms`.
pub fn hold(ms: u64, reference_ms: u64) -> u64 {
    ms.clamp(
        reference_ms.saturating_sub(MAX_CLOCK_SKEW_MS),
        reference_ms.saturating_add(MAX_CLOCK_SKEW_MS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 60 * 60 * 1000;
    const NOW: u64 = 1_800_000_000_000;

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn sampled(readings: &[(NodeId, u64)]) -> ClockSamples {
        let samples = ClockSamples::default();
        for (id, ms) in readings {
            samples.record(*id, *ms, Instant::now());
        }
        samples
    }

    #[test]
    fn a_leader_two_days_ahead_is_held_by_its_followers() {
        let samples = sampled(&[(2, NOW + 1), (3, NOW)]);
        let t = samples.cluster_now_ms(NOW + 2 * DAY, 1, &voters(&[1, 2, 3]));
        assert!(
            (NOW + MAX_CLOCK_SKEW_MS..NOW + MAX_CLOCK_SKEW_MS + 100).contains(&t),
            "{t}"
        );
    }

    #[test]
    fn one_follower_off_does_not_move_a_right_leader() {
        for off in [NOW + 2 * DAY, NOW - 2 * DAY] {
            let samples = sampled(&[(2, off), (3, NOW + 3)]);
            assert_eq!(samples.cluster_now_ms(NOW, 1, &voters(&[1, 2, 3])), NOW);
        }
    }

    #[test]
    fn a_leader_two_days_behind_is_pulled_forward() {
        let samples = sampled(&[(2, NOW), (3, NOW + 1)]);
        let t = samples.cluster_now_ms(NOW - 2 * DAY, 1, &voters(&[1, 2, 3]));
        assert!(t >= NOW - MAX_CLOCK_SKEW_MS, "{t}");
    }

    #[test]
    fn without_a_majority_of_readings_the_own_clock_stands() {
        let samples = sampled(&[(2, NOW + 2 * DAY)]);
        assert_eq!(samples.median_ms(NOW, 1, &voters(&[1, 2, 3, 4, 5])), None);
        assert_eq!(samples.cluster_now_ms(NOW, 1, &voters(&[1, 2, 3, 4, 5])), NOW);
        // A single voter is its own majority.
        assert_eq!(ClockSamples::default().median_ms(NOW, 1, &voters(&[1])), Some(NOW));
    }

    #[test]
    fn without_fresh_readings_a_stepped_clock_is_held_to_the_time_last_measured() {
        let samples = sampled(&[(2, NOW), (3, NOW)]);
        let three = voters(&[1, 2, 3]);
        assert_eq!(samples.cluster_now_ms(NOW, 1, &three), NOW);
        // The readings grow stale (the peers stop answering), then this node's clock jumps.
        for _ in 0..=FRESH_ROUNDS {
            samples.next_round();
        }
        assert_eq!(samples.median_ms(NOW + 2 * DAY, 1, &three), None);
        let t = samples.cluster_now_ms(NOW + 2 * DAY, 1, &three);
        assert!(
            (NOW + MAX_CLOCK_SKEW_MS..NOW + MAX_CLOCK_SKEW_MS + 1_000).contains(&t),
            "{t}"
        );
        // A clock that stays within the skew of the time run on stands.
        assert_eq!(samples.cluster_now_ms(NOW + 100, 1, &three), NOW + 100);
    }

    #[test]
    fn a_jump_of_the_monotonic_clock_carries_no_reading_ahead() {
        // Readings of this round, taken 45 s ago by a monotonic clock that has since jumped
        // (libfaketime steps it with the wall clock): counted as two sampling periods old.
        let samples = ClockSamples::default();
        let then = Instant::now()
            .checked_sub(Duration::from_secs(45))
            .unwrap_or_else(Instant::now);
        samples.record(2, NOW, then);
        samples.record(3, NOW, then);
        let median = samples.median_ms(NOW + 2 * DAY, 1, &voters(&[1, 2, 3])).unwrap();
        assert!((NOW..=NOW + 2_000).contains(&median), "{median}");
        let t = samples.cluster_now_ms(NOW + 2 * DAY, 1, &voters(&[1, 2, 3]));
        assert!(t <= NOW + 2_000 + MAX_CLOCK_SKEW_MS, "{t}");
    }

    #[test]
    fn hold_clamps_both_ways() {
        assert_eq!(hold(NOW + DAY, NOW), NOW + MAX_CLOCK_SKEW_MS);
        assert_eq!(hold(NOW - DAY, NOW), NOW - MAX_CLOCK_SKEW_MS);
        assert_eq!(hold(NOW + 10, NOW), NOW + 10);
        assert_eq!(hold(9_000, 0), MAX_CLOCK_SKEW_MS);
        assert_eq!(hold(0, 1_000), 0);
    }
}
