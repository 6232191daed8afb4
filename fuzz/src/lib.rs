//! ecsd's fuzz harness, on the stable toolchain: seeded, structure-aware generators and mutators
//! (no coverage guidance) driving
//!
//! - `api`: the request decoder and handler of every ECS operation of today's model, with
//!   mutations of valid requests generated from it, over real HTTP to an in-process node;
//! - `agent`: the agent service's messages over real gRPC to the same kind of node;
//! - `cql`: the cluster query language's parser and evaluator;
//! - `proto`: the agent and peer envelopes (protobuf) and the JSON bodies they carry;
//! - `config`: node config files and their environment overrides.
//!
//! A finding is a panic anywhere in the process, a 5xx (or a gRPC internal error) answering a
//! client's input, an error body that is not AWS-shaped, or an input that takes too long.
//! `FUZZING.md` has the commands and the totals.

pub mod model;
pub mod mutate;
pub mod node;
pub mod pure;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One thing found: what kind, the input (cut to 4 KB), and what happened.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: String,
    pub input: String,
    pub detail: String,
}

impl Finding {
    pub fn new(kind: &str, input: &[u8], detail: impl Into<String>) -> Finding {
        let text = String::from_utf8_lossy(&input[..input.len().min(4096)]).into_owned();
        Finding {
            kind: kind.to_string(),
            input: text,
            detail: detail.into(),
        }
    }
}

/// What one target's run did.
#[derive(Debug, Default)]
pub struct Report {
    pub target: String,
    pub inputs: u64,
    /// Answers by kind (an HTTP status and `__type`, a gRPC code, parse ok/error, …).
    pub outcomes: BTreeMap<String, u64>,
    pub findings: Vec<Finding>,
    pub elapsed: Duration,
    /// The longest any one input took.
    pub slowest: Duration,
}

impl Report {
    pub fn new(target: &str) -> Report {
        Report {
            target: target.to_string(),
            ..Report::default()
        }
    }

    pub fn count(&mut self, outcome: impl Into<String>) {
        *self.outcomes.entry(outcome.into()).or_default() += 1;
    }

    /// Keeps the first findings of each kind in full; the rest are counted.
    pub fn find(&mut self, finding: Finding) {
        self.count(format!("FINDING {}", finding.kind));
        if self.findings.iter().filter(|f| f.kind == finding.kind).count() < 20 {
            self.findings.push(finding);
        }
    }

    pub fn merge(&mut self, other: Report) {
        self.inputs += other.inputs;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for f in other.findings {
            self.find(f);
        }
        self.slowest = self.slowest.max(other.slowest);
    }

    pub fn finding_count(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| k.starts_with("FINDING "))
            .map(|(_, v)| v)
            .sum()
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Counts every panic in the process (the in-process node's tasks too, whose panics tokio would
/// otherwise only print) and keeps the first messages; each is printed as before.
pub fn count_panics() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        PANICS.fetch_add(1, Ordering::SeqCst);
        let mut messages = PANIC_MESSAGES.lock().unwrap_or_else(|e| e.into_inner());
        if messages.len() < 20 {
            let backtrace = std::backtrace::Backtrace::force_capture();
            messages.push(format!("{info}\n{backtrace}"));
        }
    }));
}

/// Panics counted so far, and their first messages.
pub fn panics() -> (u64, Vec<String>) {
    let messages = PANIC_MESSAGES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (PANICS.load(Ordering::SeqCst), messages)
}

/// The seed of worker `i` of a run seeded with `seed`.
pub fn worker_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9))
}
