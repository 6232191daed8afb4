//! The failover workload's timeline: the writes answered around each kill of the leader, in
//! bins of fixed width, summed over the kills.

use serde::{Deserialize, Serialize};

/// Writes answered per bin, from `from_ms` (relative to the kill; negative is before it), each
/// bin `bin_ms` wide: acknowledged, failed, and the slowest answer's latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub from_ms: f64,
    pub bin_ms: f64,
    pub ok: Vec<u64>,
    pub errors: Vec<u64>,
    pub max_latency_ms: Vec<f64>,
}

impl Timeline {
    pub fn new(from_ms: f64, to_ms: f64, bin_ms: f64) -> Timeline {
        let bins = ((to_ms - from_ms) / bin_ms).ceil().max(0.0) as usize;
        Timeline {
            from_ms,
            bin_ms,
            ok: vec![0; bins],
            errors: vec![0; bins],
            max_latency_ms: vec![0.0; bins],
        }
    }

    /// Adds one write, sent at `sent_ms` and answered at `answered_ms` (both relative to the
    /// kill), to the bin of its answer; answers outside the timeline are left out.
    pub fn add(&mut self, sent_ms: f64, answered_ms: f64, ok: bool) {
        let at = (answered_ms - self.from_ms) / self.bin_ms;
        if at < 0.0 || at >= self.ok.len() as f64 {
            return;
        }
        let bin = at as usize;
        if ok {
            self.ok[bin] += 1;
        } else {
            self.errors[bin] += 1;
        }
        self.max_latency_ms[bin] = self.max_latency_ms[bin].max(answered_ms - sent_ms);
    }

    /// The start of each bin, in ms from the kill.
    pub fn starts_ms(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.ok.len()).map(|i| self.from_ms + i as f64 * self.bin_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_to_the_bin_of_their_answer_and_outside_ones_are_left_out() {
        let mut t = Timeline::new(-1000.0, 2000.0, 500.0);
        assert_eq!(t.ok.len(), 6);
        t.add(-1200.0, -900.0, true); // first bin
        t.add(-100.0, 700.0, false); // answered after the kill: bin 3, 800 ms
        t.add(600.0, 650.0, true);
        t.add(1900.0, 2000.0, true); // at the end: left out
        t.add(-3000.0, -1001.0, true); // before the start: left out
        assert_eq!(t.ok, [1, 0, 0, 1, 0, 0]);
        assert_eq!(t.errors, [0, 0, 0, 1, 0, 0]);
        assert_eq!(t.max_latency_ms[3], 800.0);
        assert_eq!(
            t.starts_ms().collect::<Vec<_>>(),
            [-1000.0, -500.0, 0.0, 500.0, 1000.0, 1500.0]
        );
    }
}
