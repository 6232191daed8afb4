//! The nemesis: faults on a seeded schedule, each a start/stop pair recorded in the history,
//! combinable like Jepsen's nemesis packages (`--nemesis partition,kill,pause,member,loss,clock`).
//!
//! Every 5 to 10 seconds it takes the next package (the packages take turns, in a seeded
//! order) and a fault in it, starts it, holds it for 5 to 10 seconds, then heals everything
//! (network, processes, clocks, membership) and records the stop. Half of the single-node
//! faults aim at the current leader. Required faults (`--require-faults kill-leader,partition`)
//! come first, 2 to 4 seconds apart, each aimed at the leader when it names `-leader`, and are
//! tried again until one takes.
//!
//! A fault aimed at the leader is aimed at a node that said it led, in the newest term it
//! knew, just before the fault; while such a fault holds, the nemesis watches the other nodes
//! until one of them leads in a newer term, and records that in the stop row (`new_leader`).
//! Every fault that could not be started, and every error of the nemesis, is recorded as a
//! `nemesis-error` row: the checker fails the run on it (see `checkers::faults`).
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

/// A fault the run must see: a package, aimed at the leader or not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    pub package: String,
    pub leader: bool,
}

impl Requirement {
    /// Whether a fault (its name in the history) meets this requirement: one of its package,
    /// and, for a `-leader` requirement, aimed at the confirmed leader while which another node
    /// came to lead in a newer term.
    pub fn met_by(&self, fault: &str, aimed_at_leader: bool, new_leader_seen: bool) -> bool {
        package_of(fault) == self.package && (!self.leader || (aimed_at_leader && new_leader_seen))
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.package, if self.leader { "-leader" } else { "" })
    }
}

/// The packages a leader-aimed requirement can name: the faults of one node.
const LEADER_PACKAGES: [&str; 4] = ["partition", "kill", "pause", "loss"];
/// The clock fault's large offset, in seconds: a node two days off.
const TWO_DAYS_S: i64 = 2 * 24 * 60 * 60;

/// Parses `--require-faults`: `package` or `package-leader`, comma-separated; every package
/// must be one of `packages` (the run's `--nemesis`).
pub fn parse_requirements(list: &str, packages: &[String]) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
        let (package, leader) = match item.strip_suffix("-leader") {
            Some(p) => (p, true),
            None => (item, false),
        };
        if !packages.iter().any(|p| p == package) {
            return Err(format!(
                "--require-faults {item}: {package} is not among --nemesis {}",
                packages.join(",")
            ));
        }
        if leader && !LEADER_PACKAGES.contains(&package) {
            return Err(format!(
                "--require-faults {item}: only {} can aim at the leader",
                LEADER_PACKAGES.join(", ")
            ));
        }
        out.push(Requirement {
            package: package.to_string(),
            leader,
        });
    }
    Ok(out)
}

/// The package a fault (a `start-<fault>` row's name) belongs to.
pub fn package_of(fault: &str) -> &'static str {
    match fault {
        "partition" | "split" | "ring" => "partition",
        "kill" | "kill-all" => "kill",
        "pause" => "pause",
        "member" => "member",
        "loss" => "loss",
        "clock" => "clock",
        _ => "unknown",
    }
}

/// A started fault, as the nemesis keeps it while it holds.
struct Started {
    name: String,
    /// The node it aimed at, if it was aimed at the leader it confirmed, and the term then.
    leader: Option<(usize, u64)>,
    /// The nodes it cut off, killed or stopped.
    affected: Vec<usize>,
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
    /// The nodes a partition cuts off from the majority right now (the minority self-test
    /// reads from them only).
    pub cut_off: Arc<Mutex<Vec<usize>>>,
    /// The faults the run must see, not yet seen.
    required: Vec<Requirement>,
    /// The packages in the order they take turns, and whose turn is next.
    order: Vec<String>,
    turn: usize,
    rng: StdRng,
    /// Nodes removed from the cluster and not yet added back.
    removed: BTreeSet<usize>,
    /// How many partitions have begun: the kinds take turns, so a run sees each of them.
    partitions: usize,
}

impl Nemesis {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        packages: Vec<String>,
        required: Vec<Requirement>,
        seed: u64,
        net: Arc<dyn Topology>,
        db: Arc<Mutex<Db>>,
        recorder: Recorder,
        client: Client,
    ) -> Nemesis {
        let mut rng = StdRng::seed_from_u64(seed.rotate_left(17));
        let mut order = packages.clone();
        order.shuffle(&mut rng);
        Nemesis {
            packages,
            net,
            db,
            recorder,
            client,
            status: Arc::new(Mutex::new("no fault".into())),
            cut_off: Arc::new(Mutex::new(Vec::new())),
            required,
            order,
            turn: 0,
            rng,
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
            // Required faults come first, close together, so that a short run sees them all.
            let (package, aim_leader, wait) = match self.required.first() {
                Some(r) => (r.package.clone(), r.leader, self.rng.gen_range(2.0..4.0)),
                None => {
                    let package = self.order[self.turn % self.order.len()].clone();
                    self.turn += 1;
                    (package, false, self.rng.gen_range(5.0..10.0))
                }
            };
            let wait = Duration::from_secs_f64(wait);
            if Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            let Some(started) = self.start(&package, aim_leader).await else {
                continue;
            };
            let hold = Duration::from_secs_f64(self.rng.gen_range(5.0..10.0))
                .min(deadline.saturating_duration_since(Instant::now()));
            let new_leader = self.hold(&started, hold).await;
            let met = |r: &Requirement| r.met_by(&started.name, started.leader.is_some(), new_leader.is_some());
            if let Some(i) = self.required.iter().position(met) {
                self.required.remove(i);
            }
            self.cut_off.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.heal().await;
            let value = match new_leader {
                Some((node, term)) => json!({"new_leader": node, "term": term}),
                None => json!({}),
            };
            self.note(&format!("stop-{}", started.name), value);
            self.set_status("no fault".into());
        }
        self.heal().await;
    }

    /// Holds a fault for `hold`. A fault aimed at the leader is watched: the first node not
    /// affected that leads in a newer term is returned (`(node, term)`), as the proof that the
    /// fault reached the leader.
    async fn hold(&self, started: &Started, hold: Duration) -> Option<(usize, u64)> {
        let until = Instant::now() + hold;
        let Some((target, term)) = started.leader else {
            tokio::time::sleep(hold).await;
            return None;
        };
        let others: Vec<usize> = (1..=self.net.nodes())
            .filter(|i| !started.affected.contains(i))
            .collect();
        let mut seen = None;
        while Instant::now() < until {
            if seen.is_none() {
                for &i in &others {
                    let Some(status) = self.client.status(&self.net.api_url(i)).await else {
                        continue;
                    };
                    let leader = status["leader"].as_u64().map(|l| l as usize);
                    let now = status["term"].as_u64().unwrap_or(0);
                    if let Some(l) = leader.filter(|l| *l != target && now > term) {
                        seen = Some((l, now));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200).min(until.saturating_duration_since(Instant::now()))).await;
        }
        seen
    }

    /// The leader as some node reports it, confirmed by that node itself (it says it leads in
    /// the newest term it knows) with that term, and the node a single-node fault aims at (the
    /// leader if `aim_leader` or half the time, when there is one).
    async fn target(&mut self, aim_leader: bool) -> (Option<(usize, u64)>, usize) {
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
        let confirmed = match leader.filter(|l| (1..=n).contains(l)) {
            Some(l) => self.client.leads(&urls[l - 1], l as u64).await.map(|term| (l, term)),
            None => None,
        };
        let target = match confirmed {
            Some((l, _)) if aim_leader || self.rng.gen_bool(0.5) => l,
            _ => self.rng.gen_range(1..=n),
        };
        (confirmed.filter(|(l, _)| *l == target), target)
    }

    /// Starts one fault of `package` (aimed at the leader if `aim_leader` and one is known);
    /// returns what it started, or `None` if it could not start: recorded as an error, or, when
    /// no leader could be confirmed for a fault that must hit it, as a `no-leader` note (the
    /// fault is tried again at its next turn).
    async fn start(&mut self, package: &str, aim_leader: bool) -> Option<Started> {
        let n = self.net.nodes();
        let (mut leader, mut target) = self.target(aim_leader).await;
        // Right after a heal the cluster may be electing: a fault that must hit the leader
        // waits for one (a few seconds), or is tried again at its next turn.
        let until = Instant::now() + Duration::from_secs(5);
        while aim_leader && leader.is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            (leader, target) = self.target(aim_leader).await;
        }
        let is_leader = leader.is_some();
        if aim_leader && !is_leader {
            self.note("no-leader", json!({"package": package}));
            return None;
        }
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
                let mut choice = self.partitions % kinds;
                self.partitions += 1;
                if aim_leader && choice == 2 {
                    // The ring cuts no one node off: a fault aimed at the leader isolates it.
                    choice = 0;
                }
                if choice == 2 {
                    let cuts = ring_cuts(&order);
                    for (a, b) in &cuts {
                        self.fail_soft(self.net.cut(*a, *b))?;
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
                    self.fail_soft(self.net.partition(&[minority.clone(), majority.clone()]))?;
                    *self.cut_off.lock().unwrap_or_else(|p| p.into_inner()) = minority.clone();
                    let affected: Vec<&String> = minority.iter().map(|i| &urls[i - 1]).collect();
                    (
                        "split".to_string(),
                        json!({"node": target, "leader": is_leader, "minority": minority,
                               "majority": majority, "affected": affected}),
                    )
                } else {
                    let others: Vec<usize> = (1..=n).filter(|i| *i != target).collect();
                    self.fail_soft(self.net.partition(&[vec![target], others]))?;
                    *self.cut_off.lock().unwrap_or_else(|p| p.into_inner()) = vec![target];
                    one("partition", json!({}))
                }
            }
            "kill" if !aim_leader && self.rng.gen_bool(0.2) => {
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
                    self.error(format!("member: node {target} could not be removed: {e}"));
                    return None;
                }
                self.removed.insert(target);
                one("member", json!({}))
            }
            "loss" => {
                let p = self.rng.gen_range(0.2..0.5);
                self.fail_soft(self.net.loss(target, p))?;
                one("loss", json!({"probability": p}))
            }
            "clock" => {
                // Small steps (what NTP corrects) and two days (a wrong date): neither may expire
                // dedupe records or stopped tasks early, nor stall a service's restarts.
                let magnitude = if self.rng.gen_bool(0.5) {
                    TWO_DAYS_S
                } else {
                    self.rng.gen_range(1..=120i64)
                };
                let seconds = if self.rng.gen_bool(0.5) { magnitude } else { -magnitude };
                match self.db().skew_clock(target, seconds) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.error("clock: the nodes' clocks cannot be skewed in this run".into());
                        return None;
                    }
                    Err(e) => {
                        self.error(format!("clock: {e}"));
                        return None;
                    }
                }
                one("clock", json!({"seconds": seconds, "affected": []}))
            }
            other => {
                self.error(format!("no fault {other}"));
                return None;
            }
        };
        let affected: Vec<usize> = value["affected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| urls.iter().position(|x| Some(x.as_str()) == u.as_str()))
            .map(|i| i + 1)
            .collect();
        self.set_status(format!("{fault} {}", describe(&value)));
        self.note(&format!("start-{fault}"), value);
        Some(Started {
            name: fault,
            leader,
            affected,
        })
    }

    /// Records an error of the nemesis (a fault that could not be started or healed): the run
    /// fails on it.
    fn error(&self, message: String) {
        eprintln!("nemesis: {message}");
        self.note("nemesis-error", json!({"error": message}));
    }

    /// `Some(())` if `result` is fine; otherwise records the error and gives `None`.
    fn fail_soft(&self, result: Result<(), String>) -> Option<()> {
        match result {
            Ok(()) => Some(()),
            Err(e) => {
                self.error(e);
                // Whatever part of the fault took effect is undone at once.
                let _ = self.net.heal();
                self.cut_off.lock().unwrap_or_else(|p| p.into_inner()).clear();
                None
            }
        }
    }

    /// Heals the network, resumes and restarts every node, puts clocks right, and adds back
    /// every removed node.
    pub async fn heal(&mut self) {
        if let Err(e) = self.net.heal() {
            self.error(format!("heal: {e}"));
        }
        let recovered = self.db().recover(self.net.as_ref());
        if let Err(e) = recovered {
            self.error(format!("heal: {e}"));
        }
        for node in std::mem::take(&mut self.removed) {
            if let Err(e) = self.add(node).await {
                self.error(format!("member: node {node} could not be added back: {e}"));
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

    #[test]
    fn requirements_name_packages_of_the_run_and_only_single_node_faults_aim_at_the_leader() {
        let packages = parse("partition,kill,clock").unwrap_or_default();
        let r = parse_requirements("kill-leader, partition", &packages).unwrap_or_default();
        assert_eq!(
            r,
            [
                Requirement {
                    package: "kill".into(),
                    leader: true
                },
                Requirement {
                    package: "partition".into(),
                    leader: false
                }
            ]
        );
        assert_eq!(r[0].to_string(), "kill-leader");
        assert!(parse_requirements("none", &packages).is_ok_and(|r| r.is_empty()));
        assert!(parse_requirements("pause-leader", &packages).is_err_and(|e| e.contains("not among")));
        assert!(parse_requirements("clock-leader", &packages).is_err_and(|e| e.contains("aim at the leader")));
        assert_eq!(package_of("split"), "partition");
        assert_eq!(package_of("kill-all"), "kill");
    }
}
