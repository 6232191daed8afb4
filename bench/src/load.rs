//! Load drivers: a closed loop (a fixed number of clients, each sending its next request when
//! the last one is answered) and an open loop (requests meant to start at a fixed rate, each
//! timed from the moment it was meant to start, so a slow answer that delays the next request
//! shows up in that request's latency: no coordinated omission). A warm-up runs first and is
//! not measured.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::hist::{Latency, Summary};

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// `concurrency` clients, each waiting for its answer before the next request.
    Closed { concurrency: usize },
    /// `rate` requests per second, sent by up to `concurrency` clients at once.
    Open { rate: f64, concurrency: usize },
}

/// A measured run: warm up, then measure for `duration`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub model: Model,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a run measured.
#[derive(Clone, Default)]
pub struct Results {
    pub latency: Latency,
    pub ok: u64,
    pub errors: u64,
    /// Acknowledged operations completed in each second of the measured window.
    pub per_second: Vec<u64>,
    /// The latencies of the operations completed in each second of the measured window.
    pub per_second_latency: Vec<Latency>,
    pub measured: Duration,
    pub first_error: Option<String>,
}

/// The figures of a run, as printed and written with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: u64,
    pub errors: u64,
    pub throughput_per_s: f64,
    pub latency: Summary,
    pub per_second: Vec<u64>,
    /// Median latency of each second's acknowledged operations (0 for a second without any).
    pub per_second_p50_ms: Vec<f64>,
    /// 99th percentile latency of each second's acknowledged operations.
    pub per_second_p99_ms: Vec<f64>,
    pub first_error: Option<String>,
    /// The CPU each process used over the measured window, in cores: this bench
    /// (`ecs-bench`), each node (`node1`…) or the peer.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cpu_cores: std::collections::BTreeMap<String, f64>,
}

impl Results {
    /// Adds another worker's results (same window).
    pub fn merge(&mut self, other: &Results) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
        if self.per_second_latency.len() < other.per_second_latency.len() {
            self.per_second_latency
                .resize(other.per_second_latency.len(), Latency::default());
        }
        for (mine, theirs) in self.per_second_latency.iter_mut().zip(&other.per_second_latency) {
            mine.merge(theirs);
        }
        self.measured = self.measured.max(other.measured);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Acknowledged operations per second over the measured window.
    pub fn throughput(&self) -> f64 {
        let s = self.measured.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }

    pub fn report(&self) -> Report {
        Report {
            ok: self.ok,
            errors: self.errors,
            throughput_per_s: self.throughput(),
            latency: self.latency.summary(),
            per_second: self.per_second.clone(),
            per_second_p50_ms: self.per_second_latency.iter().map(|l| l.summary().p50_ms).collect(),
            per_second_p99_ms: self.per_second_latency.iter().map(|l| l.summary().p99_ms).collect(),
            first_error: self.first_error.clone(),
            cpu_cores: Default::default(),
        }
    }
}

/// When operation `i` of an open loop at `rate` per second is meant to start.
pub fn intended(start: Instant, i: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate.max(1e-9))
}

/// Runs `op` (given a sequence number, unique in the run) under `plan`; prints a progress line
/// labelled `label` while it runs.
pub async fn drive<F, Fut>(plan: Plan, label: &str, op: F) -> Results
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let seconds = plan.duration.as_secs_f64().ceil() as usize;
    let next = Arc::new(AtomicU64::new(0));
    let (live_ok, live_errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (workers, rate) = match plan.model {
        Model::Closed { concurrency } => (concurrency.max(1), None),
        Model::Open { rate, concurrency } => (concurrency.max(1), Some(rate)),
    };
    // One histogram per measured second, shared by the workers (one per worker and second
    // would cost hundreds of MB at 64 workers).
    let slots: Arc<std::sync::Mutex<Vec<Latency>>> = Arc::new(std::sync::Mutex::new(vec![Latency::default(); seconds]));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (op, next, live_ok, live_errors) = (op.clone(), next.clone(), live_ok.clone(), live_errors.clone());
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Results {
                per_second: vec![0; seconds],
                measured: plan.duration,
                ..Results::default()
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let begin = match rate {
                    Some(rate) => {
                        let t = intended(start, i, rate);
                        if t >= end {
                            break;
                        }
                        tokio::time::sleep_until(t).await;
                        t
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let outcome = op(i).await;
                let done = Instant::now();
                match &outcome {
                    Ok(()) => live_ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => live_errors.fetch_add(1, Ordering::Relaxed),
                };
                if begin < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        r.ok += 1;
                        r.latency.record(done - begin);
                        // An answer after the window's end counts in its last second.
                        let second = ((done - measure_from).as_secs() as usize).min(seconds.saturating_sub(1));
                        if let Some(bucket) = r.per_second.get_mut(second) {
                            *bucket += 1;
                        }
                        if let Some(slot) = slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(second) {
                            slot.record(done - begin);
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.first_error.get_or_insert(e);
                    }
                }
            }
            r
        }));
    }
    let progress = tokio::spawn(progress(
        label.to_string(),
        start,
        measure_from,
        end,
        live_ok,
        live_errors,
    ));
    let mut all = Results {
        per_second: vec![0; seconds],
        measured: plan.duration,
        ..Results::default()
    };
    for t in tasks {
        if let Ok(r) = t.await {
            all.merge(&r);
        }
    }
    progress.abort();
    all.per_second_latency = std::mem::take(&mut *slots.lock().unwrap_or_else(|p| p.into_inner()));
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
    all
}

/// Prints where a run is: warming up or measuring, time, acknowledged operations and errors.
async fn progress(
    label: String,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 5 }));
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let done = ok.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        let phase = if now < measure_from { "warm-up" } else { "measuring" };
        let width = 30usize;
        let filled = ((now - start).as_secs_f64() / (end - start).as_secs_f64().max(1e-3) * width as f64) as usize;
        let bar: String = (0..width).map(|k| if k < filled { '#' } else { '.' }).collect();
        let line = format!(
            "{label}: [{bar}] {phase} {:.0}/{:.0} s, {done} ok ({rate:.0}/s), {} errors",
            (now - start).as_secs_f64(),
            (end - start).as_secs_f64(),
            errors.load(Ordering::Relaxed)
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_spaces_its_requests_by_the_rate() {
        let start = Instant::now();
        assert_eq!(intended(start, 0, 100.0), start);
        assert_eq!(intended(start, 1, 100.0) - start, Duration::from_millis(10));
        assert_eq!(intended(start, 250, 100.0) - start, Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_sends_at_its_rate_and_times_from_the_intended_start() {
        // 100/s for 2 s after 0.5 s of warm-up; each answer takes 30 ms, and 4 clients keep up.
        let plan = Plan {
            model: Model::Open {
                rate: 100.0,
                concurrency: 4,
            },
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
        };
        let r = drive(plan, "test", |_| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(())
        })
        .await;
        assert_eq!(r.ok, 200, "only the measured window counts");
        assert!((r.throughput() - 100.0).abs() < 0.5);
        let s = r.latency.summary();
        assert!(s.p50_ms >= 29.9 && s.max_ms < 31.0, "{s:?}");

        // Too few clients: requests queue, and their latency counts the wait (no coordinated
        // omission): one client at 30 ms per answer serves 33/s of the 100/s asked.
        let plan = Plan {
            model: Model::Open {
                rate: 100.0,
                concurrency: 1,
            },
            ..plan
        };
        let r = drive(plan, "test", |_| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(())
        })
        .await;
        assert!(r.latency.summary().max_ms > 500.0, "{:?}", r.latency.summary());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_counts_ok_and_errors_and_merges_its_clients() {
        let plan = Plan {
            model: Model::Closed { concurrency: 3 },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
        };
        let r = drive(plan, "test", |i| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if i % 10 == 0 {
                Err(format!("op {i} refused"))
            } else {
                Ok(())
            }
        })
        .await;
        // 3 clients × 100 operations of 10 ms each, one in ten refused.
        assert_eq!(r.ok + r.errors, 300);
        assert_eq!(r.errors, 30);
        assert_eq!(r.per_second.iter().sum::<u64>(), r.ok);
        // Each second's latencies are those of the operations it counted.
        let counts: Vec<u64> = r.per_second_latency.iter().map(Latency::count).collect();
        assert_eq!(counts, r.per_second);
        assert_eq!(r.report().per_second_p99_ms.len(), r.per_second.len());
        assert!(r.first_error.is_some_and(|e| e.ends_with("refused")));
    }
}
