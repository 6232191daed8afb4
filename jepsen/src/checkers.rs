//! Checkers over a recorded history, besides linearizability: the set (Jepsen's set-full),
//! unique, monotonic ids, idempotent requests, scheduling safety (over the agents' journal of
//! what really ran where), and availability.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::history::{pairs, Op, OpType, Pair};

/// The set checker's verdict. `add` operations carry one element; `read` operations return
/// every element (a JSON array).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SetReport {
    pub valid: bool,
    /// Acknowledged adds.
    pub acknowledged: usize,
    /// Acknowledged elements missing from a final read (lost writes).
    pub lost: Vec<String>,
    /// Elements listed twice in one read.
    pub duplicated: Vec<String>,
    /// Elements read that were never added, or whose add definitely failed.
    pub unexpected: Vec<String>,
    /// Acknowledged elements missing from a read that began after the add returned (a stale
    /// read; linearizable reads never have one).
    pub stale: Vec<String>,
    /// Reads checked, and how many of them were final (after every add ended).
    pub reads: usize,
    pub final_reads: usize,
}

fn element(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks adds against reads: nothing acknowledged is lost or stale, nothing is duplicated,
/// nothing appears that was not added.
pub fn set(rows: &[Op]) -> SetReport {
    let all = pairs(rows);
    let adds: Vec<&Pair> = all.iter().filter(|p| p.invoke.f == "add").collect();
    let reads: Vec<&Pair> = all
        .iter()
        .filter(|p| p.invoke.f == "read" && p.outcome() == Some(OpType::Ok))
        .collect();
    let attempted: BTreeSet<String> = adds
        .iter()
        .filter(|p| p.outcome() != Some(OpType::Fail))
        .map(|p| element(&p.invoke.value))
        .collect();
    // Acknowledged elements with the time their add returned.
    let acked: BTreeMap<String, u64> = adds
        .iter()
        .filter(|p| p.outcome() == Some(OpType::Ok))
        .filter_map(|p| Some((element(&p.invoke.value), p.ended()?)))
        .collect();
    let last_add_end = adds
        .iter()
        .map(|p| p.done.as_ref().map_or(u64::MAX, |d| d.time_ns))
        .max()
        .unwrap_or(0);
    let mut report = SetReport {
        acknowledged: acked.len(),
        reads: reads.len(),
        ..SetReport::default()
    };
    let (mut lost, mut duplicated, mut unexpected, mut stale) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for read in &reads {
        let Some(done) = &read.done else { continue };
        let listed: Vec<String> = done.value.as_array().into_iter().flatten().map(element).collect();
        let mut seen = BTreeSet::new();
        for e in &listed {
            if !seen.insert(e.clone()) {
                duplicated.insert(e.clone());
            }
            if !attempted.contains(e) {
                unexpected.insert(e.clone());
            }
        }
        let is_final = read.invoke.time_ns > last_add_end;
        if is_final {
            report.final_reads += 1;
        }
        for (e, ended) in &acked {
            if *ended < read.invoke.time_ns && !seen.contains(e) {
                if is_final {
                    lost.insert(e.clone());
                } else {
                    stale.insert(e.clone());
                }
            }
        }
    }
    report.lost = lost.into_iter().collect();
    report.duplicated = duplicated.into_iter().collect();
    report.unexpected = unexpected.into_iter().collect();
    report.stale = stale.into_iter().collect();
    report.valid = report.final_reads > 0
        && report.lost.is_empty()
        && report.duplicated.is_empty()
        && report.unexpected.is_empty()
        && report.stale.is_empty();
    report
}

/// The unique-ids checker's verdict: `register` operations return a new id per key (a task
/// definition revision per family); `read` operations return the latest id of a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IdsReport {
    pub valid: bool,
    pub acknowledged: usize,
    /// (key, id) handed out by more than one acknowledged register.
    pub duplicated: Vec<(String, i64)>,
    /// A read or register that began after another returned id N of the same key saw less
    /// than N: ids went backwards in real time.
    pub backwards: Vec<String>,
    /// Acknowledged ids above the final read's latest.
    pub lost: Vec<(String, i64)>,
}

/// Checks that acknowledged ids are unique per key, never seen going backwards in real time,
/// and all covered by the final reads.
pub fn unique_ids(rows: &[Op]) -> IdsReport {
    let all = pairs(rows);
    let mut report = IdsReport::default();
    // Per key: (invoked, returned, id) of every operation that returned an id.
    let mut observed: BTreeMap<String, Vec<(u64, u64, i64)>> = BTreeMap::new();
    let mut handed: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut last_end = 0;
    for p in &all {
        let Some(done) = p.done.as_ref().filter(|d| d.kind == OpType::Ok) else {
            if p.invoke.f == "register" {
                last_end = last_end.max(p.done.as_ref().map_or(u64::MAX, |d| d.time_ns));
            }
            continue;
        };
        let (Some(key), Some(id)) = (p.invoke.key.clone(), done.value.as_i64()) else {
            continue;
        };
        if p.invoke.f == "register" {
            report.acknowledged += 1;
            *handed.entry((key.clone(), id)).or_default() += 1;
            last_end = last_end.max(done.time_ns);
        }
        observed
            .entry(key)
            .or_default()
            .push((p.invoke.time_ns, done.time_ns, id));
    }
    report.duplicated = handed.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k).collect();
    for (key, ops) in &observed {
        // The highest id returned before each invocation, by a sweep in time order.
        let mut by_end = ops.clone();
        by_end.sort_by_key(|o| o.1);
        let mut by_start = ops.clone();
        by_start.sort_by_key(|o| o.0);
        let (mut j, mut max_before) = (0, i64::MIN);
        for (start, _, id) in by_start {
            while j < by_end.len() && by_end[j].1 < start {
                max_before = max_before.max(by_end[j].2);
                j += 1;
            }
            if id < max_before {
                report
                    .backwards
                    .push(format!("{key}: saw {id} after {max_before} had been returned"));
            }
        }
        // Final reads: those invoked after every register of any key ended.
        let finals: Vec<i64> = ops.iter().filter(|o| o.0 > last_end).map(|o| o.2).collect();
        if let Some(latest) = finals.iter().min() {
            let registered = all
                .iter()
                .filter(|p| p.invoke.f == "register" && p.invoke.key.as_deref() == Some(key));
            for p in registered {
                if let Some(id) = p
                    .done
                    .as_ref()
                    .filter(|d| d.kind == OpType::Ok)
                    .and_then(|d| d.value.as_i64())
                {
                    if id > *latest {
                        report.lost.push((key.clone(), id));
                    }
                }
            }
        }
    }
    report.valid = report.duplicated.is_empty() && report.backwards.is_empty() && report.lost.is_empty();
    report
}

/// The register operations of a history (`read`, `write`, `cas` per key, values integers or
/// null), for the linearizability checker: `info` completions stay open forever, a failed cas
/// is a definite "did not hold the old value", and a failed read or write constrains nothing.
/// Open writes whose value no read returned are left out ([`crate::linear::drop_unobserved_writes`]).
pub fn register_ops(rows: &[Op]) -> crate::linear::Keyed<String, crate::linear::Register> {
    crate::linear::drop_unobserved_writes(register_rows(rows))
}

fn register_rows(rows: &[Op]) -> crate::linear::Keyed<String, crate::linear::Register> {
    use crate::linear::{Operation, RegisterOp, RegisterOut};
    let mut out = Vec::new();
    for p in pairs(rows) {
        let Some(key) = p.invoke.key.clone() else { continue };
        let input = match p.invoke.f.as_str() {
            "read" => RegisterOp::Read,
            "write" => match p.invoke.value.as_i64() {
                Some(v) => RegisterOp::Write(v),
                None => continue,
            },
            "cas" => match p
                .invoke
                .value
                .as_array()
                .map(|a| (a.first().and_then(Value::as_i64), a.get(1).and_then(Value::as_i64)))
            {
                Some((Some(old), Some(new))) => RegisterOp::Cas(old, new),
                _ => continue,
            },
            _ => continue,
        };
        let (ret, output) = match (p.done.as_ref().map(|d| (d.kind, d)), &input) {
            (Some((OpType::Ok, d)), RegisterOp::Read) => (Some(d.time_ns), Some(RegisterOut::Value(d.value.as_i64()))),
            (Some((OpType::Ok, d)), RegisterOp::Write(_)) => (Some(d.time_ns), Some(RegisterOut::Done)),
            (Some((OpType::Ok, d)), RegisterOp::Cas(..)) => (Some(d.time_ns), Some(RegisterOut::Swapped(true))),
            (Some((OpType::Fail, d)), RegisterOp::Cas(..)) => (Some(d.time_ns), Some(RegisterOut::Swapped(false))),
            (Some((OpType::Fail, _)), _) => continue,
            _ => (None, None),
        };
        out.push((
            key,
            Operation {
                call: p.invoke.time_ns,
                ret,
                input,
                output,
                id: p.invoke.index as usize,
            },
        ));
    }
    out
}

/// The idempotency checker's verdict: `run` operations start one task each, tagged
/// `startedBy` with their own name and retried with the same client token after a timeout;
/// a final `tasks` read lists the `startedBy` of every task.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IdempotencyReport {
    pub valid: bool,
    pub acknowledged: usize,
    /// Requests that started more than one task.
    pub duplicated: Vec<String>,
    /// Acknowledged requests with no task.
    pub lost: Vec<String>,
    /// Requests refused for certain that started a task anyway.
    pub refused_but_applied: Vec<String>,
}

pub fn idempotency(rows: &[Op]) -> IdempotencyReport {
    let all = pairs(rows);
    let Some(tasks) = all
        .iter()
        .rev()
        .find(|p| p.invoke.f == "tasks" && p.outcome() == Some(OpType::Ok))
        .and_then(|p| p.done.as_ref())
    else {
        return IdempotencyReport::default();
    };
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks.value.as_array().into_iter().flatten() {
        *count.entry(element(t)).or_default() += 1;
    }
    let mut report = IdempotencyReport::default();
    for p in all.iter().filter(|p| p.invoke.f == "run") {
        let name = element(&p.invoke.value);
        let n = count.get(&name).copied().unwrap_or(0);
        if n > 1 {
            report.duplicated.push(name.clone());
        }
        match p.outcome() {
            Some(OpType::Ok) => {
                report.acknowledged += 1;
                if n == 0 {
                    report.lost.push(name);
                }
            }
            Some(OpType::Fail) if n > 0 => report.refused_but_applied.push(name),
            _ => {}
        }
    }
    report.valid = report.duplicated.is_empty() && report.lost.is_empty() && report.refused_but_applied.is_empty();
    report
}

/// One fault and how long writes were unavailable after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// The fault's name in the history (`partition`, `split`, `ring`, `kill`, `kill-all`,
    /// `pause`, `member`, `loss`, `clock`).
    pub fault: String,
    pub node: u64,
    /// Whether the node was the leader when the fault began.
    pub leader: bool,
    /// Seconds since the start of the run.
    pub at_s: f64,
    /// From the fault to the first acknowledged write sent to another node that was invoked
    /// after it, on a node the fault did not affect (`None`: none for the rest of the run).
    pub window_ms: Option<f64>,
}

/// Throughput, latency, and the unavailability window after each fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AvailabilityReport {
    pub ok_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub windows: Vec<Window>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Measures a history: acknowledged operations per second, their latency, and, for each
/// nemesis `start-<fault>` row (value `{node, leader}`), the time to the first write
/// acknowledged by another node that was invoked after the fault began.
pub fn availability(rows: &[Op]) -> AvailabilityReport {
    let all = pairs(rows);
    let mut latencies: Vec<f64> = all
        .iter()
        .filter_map(|p| {
            let done = p.done.as_ref().filter(|d| d.kind == OpType::Ok)?;
            Some((done.time_ns - p.invoke.time_ns) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let span = rows.last().map_or(0, |r| r.time_ns) as f64 / 1e9;
    let mut report = AvailabilityReport {
        ok_per_s: if span > 0.0 { latencies.len() as f64 / span } else { 0.0 },
        latency_p50_ms: quantile(&latencies, 0.5),
        latency_p99_ms: quantile(&latencies, 0.99),
        windows: Vec::new(),
    };
    let writes: Vec<&Pair> = all
        .iter()
        .filter(|p| matches!(p.invoke.f.as_str(), "write" | "add") && p.outcome() == Some(OpType::Ok))
        .collect();
    for row in rows
        .iter()
        .filter(|r| r.kind == OpType::Info && r.f.starts_with("start-"))
    {
        let node = row.value["node"]
            .as_u64()
            .or(row.value["isolated"].as_u64())
            .unwrap_or(0);
        // The nodes the fault cut off, killed or stopped: writes count on the others only.
        let affected: Vec<String> = match row.value["affected"].as_array() {
            Some(urls) => urls.iter().filter_map(|u| u.as_str().map(str::to_string)).collect(),
            None => vec![format!("//{}:", crate::netns::node_ip(node as usize))],
        };
        let first = writes
            .iter()
            .filter(|p| p.invoke.time_ns > row.time_ns)
            .filter(|p| {
                !p.invoke
                    .node
                    .as_deref()
                    .is_some_and(|n| affected.iter().any(|a| n.contains(a.as_str())))
            })
            .filter_map(|p| p.ended())
            .min();
        report.windows.push(Window {
            fault: row.f.trim_start_matches("start-").to_string(),
            node,
            leader: row.value["leader"].as_bool().unwrap_or(false),
            at_s: row.time_ns as f64 / 1e9,
            window_ms: first.map(|t| (t - row.time_ns) as f64 / 1e6),
        });
    }
    report
}

/// One line of the sim agents' journal (`ecs-agent --sim-journal`), and its reader (a torn last
/// line, from an agent killed mid-write, is ignored): the agents' own types.
pub use ecsd_protocol::journal::{read as read_journal, JournalLine};

/// The scheduling-safety checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulingReport {
    pub valid: bool,
    /// Task starts in the journal.
    pub starts: usize,
    /// The most any instance held at once (cpu, memory), against what each offers.
    pub peak: (i64, i64),
    pub capacity: (i64, i64),
    /// Moments an instance held more than it offers: `instance at t_ms: cpu/memory`.
    pub overcommitted: Vec<String>,
    /// Tasks that ran on two instances.
    pub on_two_instances: Vec<String>,
    /// Services that did not reach their desired count after the faults were healed.
    pub not_converged: Vec<String>,
    /// Tasks the cluster says run that no agent runs, or the other way round, once all was
    /// quiet.
    pub disagreements: Vec<String>,
}

/// Checks what the agents ran (the journal, in the order it happened) against what every
/// instance offers (`capacity`: cpu, memory): no instance is ever over-committed and no task
/// runs on two instances. In the history, `converge` rows (key `sched`) say whether each
/// service reached its desired count after healing (a `fail` is a service that did not), and
/// the last `agree` row compares the tasks the cluster says are RUNNING with those the agents
/// run (`{"cluster": [ids], "agents": [ids]}`).
pub fn scheduling(rows: &[Op], journal: &[JournalLine], capacity: (i64, i64)) -> SchedulingReport {
    let mut report = SchedulingReport {
        capacity,
        ..SchedulingReport::default()
    };
    let mut held: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut home: BTreeMap<&str, &str> = BTreeMap::new();
    for line in journal {
        let used = held.entry(line.instance.as_str()).or_default();
        match line.event.as_str() {
            "start" => {
                report.starts += 1;
                used.0 += line.cpu;
                used.1 += line.memory;
                report.peak = (report.peak.0.max(used.0), report.peak.1.max(used.1));
                if used.0 > capacity.0 || used.1 > capacity.1 {
                    report.overcommitted.push(format!(
                        "{} at {} ms: cpu {}/{}, memory {}/{}",
                        line.instance, line.t_ms, used.0, capacity.0, used.1, capacity.1
                    ));
                }
                match home.get(line.task.as_str()) {
                    Some(first) if *first != line.instance => report
                        .on_two_instances
                        .push(format!("{} on {} and {}", line.task, first, line.instance)),
                    Some(_) => {}
                    None => {
                        home.insert(&line.task, &line.instance);
                    }
                }
            }
            _ => {
                used.0 -= line.cpu;
                used.1 -= line.memory;
            }
        }
    }
    let all = pairs(rows);
    for p in all.iter().filter(|p| p.invoke.f == "converge") {
        if p.outcome() != Some(OpType::Ok) {
            let why = p.done.as_ref().and_then(|d| d.error.clone()).unwrap_or_default();
            report
                .not_converged
                .push(format!("{}: {why}", element(&p.invoke.value)));
        }
    }
    if let Some(agree) = all
        .iter()
        .rev()
        .find(|p| p.invoke.f == "agree")
        .and_then(|p| p.done.as_ref())
    {
        let ids = |side: &str| -> BTreeSet<String> {
            agree.value[side]
                .as_array()
                .into_iter()
                .flatten()
                .map(element)
                .collect()
        };
        let (cluster, agents) = (ids("cluster"), ids("agents"));
        for t in cluster.difference(&agents) {
            report
                .disagreements
                .push(format!("{t}: RUNNING in the cluster, run by no agent"));
        }
        for t in agents.difference(&cluster) {
            report
                .disagreements
                .push(format!("{t}: run by an agent, not RUNNING in the cluster"));
        }
        if agree.kind != OpType::Ok {
            report
                .disagreements
                .push(format!("never agreed: {}", agree.error.clone().unwrap_or_default()));
        }
    }
    report.valid = report.overcommitted.is_empty()
        && report.on_two_instances.is_empty()
        && report.not_converged.is_empty()
        && report.disagreements.is_empty();
    report
}

/// The tasks running on some instance at the end of a journal.
pub fn running_at_end(journal: &[JournalLine]) -> BTreeSet<String> {
    let mut running = BTreeSet::new();
    for line in journal {
        if line.event == "start" {
            running.insert(line.task.clone());
        } else {
            running.remove(&line.task);
        }
    }
    running
}

/// One fault the nemesis started, with its stop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Its name (`partition`, `split`, `ring`, `kill`, `kill-all`, `pause`, `member`, `loss`,
    /// `clock`).
    pub fault: String,
    pub node: u64,
    /// Whether it was aimed at a node that confirmed it led just before.
    pub leader: bool,
    pub at_s: f64,
    /// How long it held (`None`: never stopped).
    pub held_s: Option<f64>,
    /// For a fault on the leader: the node that led, in a newer term, while it held.
    pub new_leader: Option<u64>,
}

/// What the nemesis did, against what the run asked of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultReport {
    pub valid: bool,
    pub faults: Vec<Fault>,
    /// `nemesis-error` rows: faults that could not be started or healed.
    pub errors: Vec<String>,
    /// Packages of `--nemesis` of which no fault started.
    pub never_started: Vec<String>,
    /// Requirements (`--require-faults`) that no fault met. A `-leader` requirement needs a
    /// fault of its package aimed at a confirmed leader, while which another node came to lead
    /// in a newer term: the proof that the fault reached the leader.
    pub unmet: Vec<String>,
}

/// Checks the nemesis's rows: each package of `packages` started, each of `required` met,
/// and no nemesis error.
pub fn faults(rows: &[Op], packages: &[String], required: &[crate::nemesis::Requirement]) -> FaultReport {
    let nemesis = |r: &&Op| r.process == crate::nemesis::NEMESIS && r.kind == OpType::Info;
    let mut report = FaultReport::default();
    let rows: Vec<&Op> = rows.iter().filter(nemesis).collect();
    for (i, row) in rows.iter().enumerate() {
        if row.f == "nemesis-error" {
            report
                .errors
                .push(row.value["error"].as_str().unwrap_or("an error").to_string());
            continue;
        }
        let Some(name) = row.f.strip_prefix("start-") else {
            continue;
        };
        let stop = rows[i + 1..].iter().find(|r| r.f == format!("stop-{name}"));
        report.faults.push(Fault {
            fault: name.to_string(),
            node: row.value["node"].as_u64().unwrap_or(0),
            leader: row.value["leader"].as_bool().unwrap_or(false),
            at_s: row.time_ns as f64 / 1e9,
            held_s: stop.map(|s| s.time_ns.saturating_sub(row.time_ns) as f64 / 1e9),
            new_leader: stop.and_then(|s| s.value["new_leader"].as_u64()),
        });
    }
    report.never_started = packages
        .iter()
        .filter(|p| {
            !report
                .faults
                .iter()
                .any(|f| crate::nemesis::package_of(&f.fault) == p.as_str())
        })
        .cloned()
        .collect();
    report.unmet = required
        .iter()
        .filter(|r| {
            !report
                .faults
                .iter()
                .any(|f| f.held_s.is_some() && r.met_by(&f.fault, f.leader, f.new_leader.is_some()))
        })
        .map(ToString::to_string)
        .collect();
    report.valid = report.errors.is_empty() && report.never_started.is_empty() && report.unmet.is_empty();
    report
}

/// The median window of the faults of kind `fault` on the leader (or not).
pub fn median_window(report: &AvailabilityReport, fault: &str, leader: bool) -> Option<f64> {
    let mut w: Vec<f64> = report
        .windows
        .iter()
        .filter(|w| w.fault == fault && w.leader == leader)
        .filter_map(|w| w.window_ms)
        .collect();
    w.sort_by(f64::total_cmp);
    (!w.is_empty()).then(|| quantile(&w, 0.5))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::{Recorder, Row};

    /// Builds a history from (process, type, f, key, value) rows, one time step each.
    fn history(rows: &[(u64, OpType, &str, Option<&str>, Value)]) -> Vec<Op> {
        let r = Recorder::default();
        let mut out = Vec::new();
        for (i, (process, kind, f, key, value)) in rows.iter().enumerate() {
            let mut op = r.record(
                *kind,
                Row {
                    process: *process,
                    f: f.to_string(),
                    key: key.map(str::to_string),
                    value: value.clone(),
                    ..Row::default()
                },
            );
            op.time_ns = i as u64;
            out.push(op);
        }
        out
    }

    use OpType::{Fail, Info, Invoke, Ok};

    fn nemesis_row(f: &str, value: Value) -> (u64, OpType, &str, Option<&str>, Value) {
        (crate::nemesis::NEMESIS, Info, f, None, value)
    }

    #[test]
    fn faults_prove_what_they_did_and_errors_fail_the_run() {
        let required = crate::nemesis::parse_requirements(
            "kill-leader,partition-leader",
            &["kill".to_string(), "partition".to_string()],
        )
        .unwrap_or_default();
        let packages = ["kill".to_string(), "partition".to_string()];
        // A kill of the confirmed leader while which n2 came to lead; a split with the leader
        // in the minority, but no new leader was seen: the fault did not reach the leader.
        let h = history(&[
            nemesis_row("start-kill", json!({"node": 1, "leader": true})),
            nemesis_row("stop-kill", json!({"new_leader": 2, "term": 3})),
            nemesis_row("start-split", json!({"node": 2, "leader": true})),
            nemesis_row("stop-split", json!({})),
        ]);
        let r = faults(&h, &packages, &required);
        assert!(!r.valid);
        assert_eq!(r.unmet, vec!["partition-leader"]);
        assert_eq!(r.faults.len(), 2);
        assert_eq!(r.faults[0].new_leader, Some(2));
        // A partition of a node that was not the leader does not count either.
        let h = history(&[
            nemesis_row("start-kill", json!({"node": 1, "leader": true})),
            nemesis_row("stop-kill", json!({"new_leader": 2, "term": 3})),
            nemesis_row("start-partition", json!({"node": 3, "leader": false})),
            nemesis_row("stop-partition", json!({"new_leader": 2, "term": 3})),
        ]);
        assert_eq!(faults(&h, &packages, &required).unmet, vec!["partition-leader"]);
        // Both met.
        let h = history(&[
            nemesis_row("start-kill", json!({"node": 1, "leader": true})),
            nemesis_row("stop-kill", json!({"new_leader": 2, "term": 3})),
            nemesis_row("start-partition", json!({"node": 2, "leader": true})),
            nemesis_row("stop-partition", json!({"new_leader": 3, "term": 4})),
        ]);
        let r = faults(&h, &packages, &required);
        assert!(r.valid, "{r:?}");
        // An error fails the run; a package that never started fails it.
        let mut h = h;
        h.extend(history(&[nemesis_row(
            "nemesis-error",
            json!({"error": "iptables: no"}),
        )]));
        let r = faults(&h, &packages, &required);
        assert_eq!((r.valid, r.errors.clone()), (false, vec!["iptables: no".to_string()]));
        let r = faults(&h[..2], &packages, &[]);
        assert_eq!(r.never_started, vec!["partition"]);
        // Nothing at all: every package is missing.
        assert_eq!(faults(&[], &packages, &[]).never_started, packages.to_vec());
        assert!(faults(&[], &[], &[]).valid);
    }

    #[test]
    fn a_clean_set_is_valid() {
        let h = history(&[
            (0, Invoke, "add", None, json!("a")),
            (0, Ok, "add", None, json!("a")),
            (1, Invoke, "add", None, json!("b")),
            (1, Info, "add", None, json!("b")),
            (2, Invoke, "add", None, json!("c")),
            (2, Fail, "add", None, json!("c")),
            (0, Invoke, "read", None, Value::Null),
            (0, Ok, "read", None, json!(["a"])),
        ]);
        let r = set(&h);
        assert!(r.valid, "{r:?}");
        assert_eq!((r.acknowledged, r.final_reads), (1, 1));
    }

    #[test]
    fn set_anomalies_are_named() {
        let h = history(&[
            (0, Invoke, "add", None, json!("a")),
            (0, Ok, "add", None, json!("a")),
            (1, Invoke, "add", None, json!("f")),
            (1, Fail, "add", None, json!("f")),
            // Concurrent with nothing, after a's add: must see a (stale otherwise).
            (0, Invoke, "read", None, Value::Null),
            (0, Ok, "read", None, json!(["f", "z", "z"])),
        ]);
        let r = set(&h);
        assert!(!r.valid);
        assert_eq!(r.lost, vec!["a"], "a final read without a");
        assert_eq!(r.unexpected, vec!["f", "z"]);
        assert_eq!(r.duplicated, vec!["z"]);
        // A non-final stale read.
        let h = history(&[
            (0, Invoke, "add", None, json!("a")),
            (0, Ok, "add", None, json!("a")),
            (1, Invoke, "add", None, json!("b")),
            (2, Invoke, "read", None, Value::Null),
            (2, Ok, "read", None, json!([])),
            (1, Ok, "add", None, json!("b")),
            (2, Invoke, "read", None, Value::Null),
            (2, Ok, "read", None, json!(["a", "b"])),
        ]);
        let r = set(&h);
        assert_eq!(
            (r.stale.clone(), r.lost.len(), r.valid),
            (vec!["a".to_string()], 0, false)
        );
    }

    #[test]
    fn ids_must_be_unique_forward_and_kept() {
        let good = history(&[
            (0, Invoke, "register", Some("web"), Value::Null),
            (0, Ok, "register", Some("web"), json!(1)),
            (1, Invoke, "register", Some("web"), Value::Null),
            (2, Invoke, "read", Some("web"), Value::Null),
            (2, Ok, "read", Some("web"), json!(1)),
            (1, Ok, "register", Some("web"), json!(2)),
            (2, Invoke, "read", Some("web"), Value::Null),
            (2, Ok, "read", Some("web"), json!(2)),
        ]);
        assert!(unique_ids(&good).valid, "{:?}", unique_ids(&good));
        let bad = history(&[
            (0, Invoke, "register", Some("web"), Value::Null),
            (0, Ok, "register", Some("web"), json!(2)),
            (1, Invoke, "register", Some("web"), Value::Null),
            (1, Ok, "register", Some("web"), json!(2)),
            (2, Invoke, "read", Some("web"), Value::Null),
            (2, Ok, "read", Some("web"), json!(1)),
        ]);
        let r = unique_ids(&bad);
        assert!(!r.valid);
        assert_eq!(r.duplicated, vec![("web".to_string(), 2)]);
        assert_eq!(r.backwards.len(), 1, "{r:?}");
        assert_eq!(r.lost, vec![("web".to_string(), 2), ("web".to_string(), 2)]);
    }

    #[test]
    fn register_histories_feed_the_linearizability_checker() {
        use crate::linear::{check_partitioned, Register, Verdict};
        let budget = std::time::Duration::from_secs(5);
        let h = history(&[
            (0, Invoke, "write", Some("k"), json!(3)),
            (0, Ok, "write", Some("k"), json!(3)),
            (1, Invoke, "cas", Some("k"), json!([3, 4])),
            (1, Info, "cas", Some("k"), json!([3, 4])),
            (2, Invoke, "read", Some("k"), Value::Null),
            (2, Ok, "read", Some("k"), json!(4)),
            (3, Invoke, "read", Some("j"), Value::Null),
            (3, Ok, "read", Some("j"), Value::Null),
        ]);
        assert_eq!(
            check_partitioned(&Register, register_ops(&h), budget),
            Verdict::Linearizable
        );
        // The same, reading the old value after the new one: stale.
        let mut h = h;
        h.push(history(&[(2, Invoke, "read", Some("k"), Value::Null)])[0].clone());
        h.last_mut().unwrap().time_ns = 100;
        h.push(history(&[(2, Ok, "read", Some("k"), json!(3))])[0].clone());
        h.last_mut().unwrap().time_ns = 101;
        assert!(matches!(
            check_partitioned(&Register, register_ops(&h), budget),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn availability_windows_run_from_the_fault_to_the_next_acknowledged_write() {
        let mut h = history(&[
            (0, Invoke, "write", Some("r0"), json!(1)),
            (0, Ok, "write", Some("r0"), json!(1)),
            (u64::MAX, Info, "start-kill", None, json!({"node": 1, "leader": true})),
            (0, Invoke, "write", Some("r0"), json!(2)),
            (0, Ok, "write", Some("r0"), json!(2)),
        ]);
        for (i, op) in h.iter_mut().enumerate() {
            op.time_ns = [0, 1_000_000, 10_000_000, 20_000_000, 760_000_000][i];
            if op.f == "write" {
                op.node = Some("http://10.77.0.12:8101".into());
            }
        }
        let r = availability(&h);
        assert_eq!(r.windows.len(), 1);
        assert_eq!((r.windows[0].fault.as_str(), r.windows[0].leader), ("kill", true));
        assert_eq!(r.windows[0].window_ms, Some(750.0));
        assert_eq!(median_window(&r, "kill", true), Some(750.0));
        assert_eq!(median_window(&r, "partition", true), None);
    }

    #[test]
    fn idempotent_requests_start_one_task_each() {
        let h = history(&[
            (0, Invoke, "run", Some("idem"), json!("i-0")),
            (0, Ok, "run", Some("idem"), json!("i-0")),
            (1, Invoke, "run", Some("idem"), json!("i-1")),
            (1, Info, "run", Some("idem"), json!("i-1")),
            (2, Invoke, "run", Some("idem"), json!("i-2")),
            (2, Fail, "run", Some("idem"), json!("i-2")),
            (9, Invoke, "tasks", Some("idem"), Value::Null),
            (9, Ok, "tasks", Some("idem"), json!(["i-0", "i-1"])),
        ]);
        let r = idempotency(&h);
        assert!(r.valid, "{r:?}");
        let mut bad = h.clone();
        bad[7].value = json!(["i-1", "i-1", "i-2"]);
        let r = idempotency(&bad);
        assert_eq!(
            (r.duplicated.clone(), r.lost.clone(), r.refused_but_applied.clone()),
            (
                vec!["i-1".to_string()],
                vec!["i-0".to_string()],
                vec!["i-2".to_string()]
            )
        );
    }

    fn line(instance: &str, task: &str, event: &str) -> JournalLine {
        JournalLine {
            t_ms: 0,
            instance: instance.into(),
            task: task.into(),
            event: event.into(),
            cpu: 256,
            memory: 256,
        }
    }

    #[test]
    fn scheduling_catches_overcommit_double_placement_and_disagreement() {
        let h = history(&[
            (0, Invoke, "converge", Some("sched"), json!("sv0")),
            (0, Ok, "converge", Some("sched"), json!("sv0")),
            (1, Invoke, "agree", Some("sched"), Value::Null),
            (
                1,
                Ok,
                "agree",
                Some("sched"),
                json!({"cluster": ["b", "c"], "agents": ["b", "c"]}),
            ),
        ]);
        // Two slots per instance: a stop frees one for the next start.
        let journal = vec![
            line("i-0", "a", "start"),
            line("i-0", "b", "start"),
            line("i-0", "a", "stop"),
            line("i-0", "c", "start"),
        ];
        let r = scheduling(&h, &journal, (512, 512));
        assert!(r.valid, "{r:?}");
        assert_eq!((r.starts, r.peak), (3, (512, 512)));
        assert_eq!(running_at_end(&journal), ["b", "c"].map(String::from).into());

        let mut over = journal.clone();
        over.insert(2, line("i-0", "d", "start"));
        let r = scheduling(&h, &over, (512, 512));
        // Three held at d's start, and again at c's.
        assert_eq!(r.overcommitted.len(), 2, "{r:?}");
        assert_eq!(r.peak, (768, 768));
        assert!(!r.valid);

        let mut twice = journal.clone();
        twice.push(line("i-1", "b", "start"));
        let r = scheduling(&h, &twice, (512, 512));
        assert_eq!(r.on_two_instances, vec!["b on i-0 and i-1".to_string()]);

        let mut apart = h.clone();
        apart[1].kind = Fail;
        apart[1].error = Some("desired 3, running 2".into());
        apart[3].value = json!({"cluster": ["b", "c", "e"], "agents": ["b", "c"]});
        let r = scheduling(&apart, &journal, (512, 512));
        assert_eq!(r.not_converged.len(), 1);
        assert_eq!(
            r.disagreements,
            vec!["e: RUNNING in the cluster, run by no agent".to_string()]
        );
        assert!(!r.valid);
    }
}
