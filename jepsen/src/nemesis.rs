//! The nemesis: faults on a seeded schedule, each a start/stop pair recorded in the history,
//! combinable like Jepsen's nemesis packages (`--nemesis partition,kill,pause,member,loss,clock`).
//!
//! Every 5 to 10 seconds it picks a package and a fault in it, starts it, holds it for 5 to 10
//! seconds, then heals everything (network, processes, clocks, membership) and records the
//! stop. Half of the single-node faults aim at the current leader.
//!
//! - `partition`: isolate one node (`partition`), split into a minority and a majority
//!   (`split`), or, with 5 nodes or more, the majorities ring (`ring`), taking turns;
//! - `kill`: `kill -9` one node (`kill`) or every node (`kill-all`), restarted at the stop;
//! - `pause`: SIGSTOP one node (`pause`), SIGCONT at the stop;
//! - `member`: remove a node from the cluster through the admin API (`member`) and add it back;
//! - `loss`: drop 20 to 50 % of what one node receives (`loss`);
//! - `clock`: step one node's wall clock by up to ±2 minutes (`clock`; libfaketime).
//!
//! A start row's value names the fault's node (`node`, 0 when it is not one node), whether it
//! was the leader, and `affected`: the API URLs of the nodes it cut off, killed or stopped, so
//! the availability checker measures the window on the others.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::client::Client;
use crate::db::Db;
use crate::history::{OpType, Recorder, Row};
use crate::topology::{ring_cuts, Topology};

/// The process id the nemesis records under.
pub const NEMESIS: u64 = u64::MAX;

/// The packages `--nemesis` accepts.
pub const PACKAGES: [&str; 6] = ["partition", "kill", "pause", "member", "loss", "clock"];

/// Parses `--nemesis`: a comma-separated list of packages, or `none`.
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
        if !PACKAGES.contains(&p) {
            return Err(format!(
                "--nemesis {p}: expected some of {} or none",
                PACKAGES.join(",")
            ));
        }
        out.push(p.to_string());
    }
    Ok(out)
}

/// The nemesis of one run.
pub struct Nemesis {
    pub packages: Vec<String>,
    pub net: Arc<dyn Topology>,
    pub db: Arc<Mutex<Db>>,
    pub recorder: Recorder,
    pub client: Client,
    /// What is going on now, for the progress line.
    pub status: Arc<Mutex<String>>,
    rng: StdRng,
    /// Nodes removed from the cluster and not yet added back.
    removed: BTreeSet<usize>,
    /// How many partitions have begun: the kinds take turns, so a run sees each of them.
    partitions: usize,
}

impl Nemesis {
    pub fn new(
        packages: Vec<String>,
        seed: u64,
        net: Arc<dyn Topology>,
        db: Arc<Mutex<Db>>,
        recorder: Recorder,
        client: Client,
    ) -> Nemesis {
        Nemesis {
            packages,
            net,
            db,
            recorder,
            client,
            status: Arc::new(Mutex::new("no fault".into())),
            rng: StdRng::seed_from_u64(seed.rotate_left(17)),
            removed: BTreeSet::new(),
            partitions: rng_start(seed),
        }
    }

    fn urls(&self) -> Vec<String> {
        (1..=self.net.nodes()).map(|i| self.net.api_url(i)).collect()
    }

    fn note(&self, what: &str, value: Value) {
        self.recorder.record(
            OpType::Info,
            Row {
                process: NEMESIS,
                f: what.into(),
                key: None,
                value,
                error: None,
                node: None,
            },
        );
    }

    fn set_status(&self, text: String) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs faults until `deadline`, then heals everything.
    pub async fn run(mut self, deadline: Instant) {
        if self.packages.is_empty() {
            return;
        }
        loop {
            let wait = Duration::from_secs_f64(self.rng.gen_range(5.0..10.0));
            if Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            let package = self.packages[self.rng.gen_range(0..self.packages.len())].clone();
            let Some(fault) = self.start(&package).await else {
                continue;
            };
            let hold = Duration::from_secs_f64(self.rng.gen_range(5.0..10.0))
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(hold).await;
            self.heal().await;
            self.note(&format!("stop-{fault}"), json!({}));
            self.set_status("no fault".into());
        }
        self.heal().await;
    }

    /// The leader as some node reports it, and the node a single-node fault aims at (the
    /// leader half the time).
    async fn target(&mut self) -> (Option<usize>, usize) {
        let n = self.net.nodes();
        let urls = self.urls();
        let mut leader = None;
        for k in 0..n {
            let url = &urls[(self.rng.gen_range(0..n) + k) % n];
            if let Some(l) = self.client.leader(url).await {
                leader = Some(l as usize);
                break;
            }
        }
        let target = match leader {
            Some(l) if self.rng.gen_bool(0.5) => l,
            _ => self.rng.gen_range(1..=n),
        };
        (leader, target)
    }

    /// Starts one fault of `package`; returns its name, or `None` if it could not start.
    async fn start(&mut self, package: &str) -> Option<String> {
        let n = self.net.nodes();
        let (leader, target) = self.target().await;
        let is_leader = leader == Some(target);
        let urls = self.urls();
        let one = |fault: &str, extra: Value| {
            let mut v = json!({"node": target, "leader": is_leader, "affected": [urls[target - 1]]});
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            (fault.to_string(), v)
        };
        let (fault, value) = match package {
            "partition" => {
                let mut order: Vec<usize> = (1..=n).collect();
                order.shuffle(&mut self.rng);
                // Kinds that need more nodes are left out of smaller clusters: a split needs
                // 3 (a minority and a majority), the ring 5.
                let kinds = match n {
                    0..=2 => 1,
                    3 | 4 => 2,
                    _ => 3,
                };
                let choice = self.partitions % kinds;
                self.partitions += 1;
                if choice == 2 {
                    let cuts = ring_cuts(&order);
                    for (a, b) in &cuts {
                        self.fail_soft(self.net.cut(*a, *b));
                    }
                    ("ring".to_string(), json!({"node": 0, "ring": order, "affected": []}))
                } else if choice == 1 {
                    // A minority with the target in it, the rest a majority.
                    let minority_size = (n - 1) / 2;
                    let mut minority = vec![target];
                    minority.extend(
                        order
                            .iter()
                            .copied()
                            .filter(|i| *i != target)
                            .take(minority_size.saturating_sub(1)),
                    );
                    let majority: Vec<usize> = (1..=n).filter(|i| !minority.contains(i)).collect();
                    self.fail_soft(self.net.partition(&[minority.clone(), majority.clone()]));
                    let affected: Vec<&String> = minority.iter().map(|i| &urls[i - 1]).collect();
                    (
                        "split".to_string(),
                        json!({"node": target, "leader": is_leader, "minority": minority,
                               "majority": majority, "affected": affected}),
                    )
                } else {
                    let others: Vec<usize> = (1..=n).filter(|i| *i != target).collect();
                    self.fail_soft(self.net.partition(&[vec![target], others]));
                    one("partition", json!({}))
                }
            }
            "kill" if self.rng.gen_bool(0.2) => {
                let mut db = self.db();
                for i in 1..=n {
                    db.kill(i);
                }
                drop(db);
                ("kill-all".to_string(), json!({"node": 0, "affected": urls}))
            }
            "kill" => {
                self.db().kill(target);
                one("kill", json!({}))
            }
            "pause" => {
                self.db().pause(target);
                one("pause", json!({}))
            }
            "member" => {
                if n - self.removed.len() <= 2 {
                    return None;
                }
                if let Err(e) = self.remove(target).await {
                    self.note("member-refused", json!({"node": target, "error": e}));
                    return None;
                }
                self.removed.insert(target);
                one("member", json!({}))
            }
            "loss" => {
                let p = self.rng.gen_range(0.2..0.5);
                self.fail_soft(self.net.loss(target, p));
                one("loss", json!({"probability": p}))
            }
            "clock" => {
                let magnitude = self.rng.gen_range(1..=120i64);
                let seconds = if self.rng.gen_bool(0.5) { magnitude } else { -magnitude };
                match self.db().skew_clock(target, seconds) {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => {
                        eprintln!("nemesis: {e}");
                        return None;
                    }
                }
                one("clock", json!({"seconds": seconds, "affected": []}))
            }
            other => {
                eprintln!("nemesis: no fault {other}");
                return None;
            }
        };
        self.set_status(format!("{fault} {}", describe(&value)));
        self.note(&format!("start-{fault}"), value);
        Some(fault)
    }

    fn fail_soft(&self, result: Result<(), String>) {
        if let Err(e) = result {
            eprintln!("nemesis: {e}");
        }
    }

    /// Heals the network, resumes and restarts every node, puts clocks right, and adds back
    /// every removed node.
    pub async fn heal(&mut self) {
        self.fail_soft(self.net.heal());
        let recovered = self.db().recover(self.net.as_ref());
        self.fail_soft(recovered);
        for node in std::mem::take(&mut self.removed) {
            if let Err(e) = self.add(node).await {
                eprintln!("nemesis: node {node} could not be added back: {e}");
                self.note("member-add-failed", json!({"node": node, "error": e}));
            }
        }
    }

    /// Posts an admin request to each node in turn until one succeeds (for up to `within`).
    async fn admin(&self, path: &str, body: Value, within: Duration) -> Result<(), String> {
        let urls = self.urls();
        let until = Instant::now() + within;
        let mut last = String::new();
        let mut k = 0usize;
        while Instant::now() < until {
            let url = &urls[k % urls.len()];
            k += 1;
            match self.client.admin(url, path, body.clone()).await {
                Ok(()) => return Ok(()),
                Err((Some(400), e)) => return Err(e),
                Err((_, e)) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("no node carried out {path} in {within:?}: {last}"))
    }

    async fn remove(&self, node: usize) -> Result<(), String> {
        self.admin("/cluster/remove-node", json!({"id": node}), Duration::from_secs(10))
            .await
    }

    /// Adds `node` back (it catches up as a learner, then votes).
    async fn add(&self, node: usize) -> Result<(), String> {
        let body = json!({"id": node, "api_addr": self.net.api_addr(node), "raft_addr": self.net.raft_addr(node)});
        self.admin("/cluster/add-node", body, Duration::from_secs(60)).await
    }
}

/// Where the turns of partition kinds begin, from the seed.
fn rng_start(seed: u64) -> usize {
    (seed % 6) as usize
}

/// A short description of a fault for the progress line.
fn describe(value: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(node) = value["node"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("n{node}"));
    }
    if value["leader"].as_bool() == Some(true) {
        parts.push("(leader)".into());
    }
    for field in ["minority", "ring", "seconds", "probability"] {
        if !value[field].is_null() {
            parts.push(format!("{field} {}", value[field]));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_parse_and_unknown_ones_are_refused() {
        assert_eq!(parse("partition, kill").unwrap_or_default(), ["partition", "kill"]);
        assert!(parse("none").is_ok_and(|p| p.is_empty()));
        assert!(parse("partition,bogus").is_err_and(|e| e.contains("bogus")));
    }
}
