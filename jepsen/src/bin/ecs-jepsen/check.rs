//! The verdict of a run: every checker over the history, per workload, and the run's own criteria.

use std::path::Path;
use std::time::Duration;

use ecs_jepsen::checkers::{
    availability, idempotency, median_window, read_journal, register_ops, scheduling, set, unique_ids, SetReport,
};
use ecs_jepsen::history::{Op, OpType};
use ecs_jepsen::linear::{check_partitioned, Register, Verdict};
use serde_json::{json, Value};

use crate::*;

/// Which workload a key's rows belong to.
pub(crate) fn workload_of(key: &str) -> &'static str {
    if key == SET_KEY {
        "set"
    } else if key == IDEM_KEY {
        "idempotency"
    } else if key.starts_with("jm") {
        "monotonic"
    } else if key == SCHED_KEY || key.starts_with("svc") {
        "scheduling"
    } else if is_register(key) {
        "register"
    } else {
        "other"
    }
}

/// The first process id of the final reads and of the setup rows: client processes are below.
pub(crate) const FIRST_NON_CLIENT_PROCESS: u64 = 900_000;

/// Each workload's successful client operations (not setup, not final reads), and of those the
/// reads.
pub(crate) fn client_successes(rows: &[Op]) -> std::collections::BTreeMap<&'static str, (usize, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.kind == OpType::Ok && r.process < FIRST_NON_CLIENT_PROCESS)
    {
        let Some(key) = r.key.as_deref() else { continue };
        let e: &mut (usize, usize) = out.entry(workload_of(key)).or_default();
        e.0 += 1;
        if r.f == "read" {
            e.1 += 1;
        }
    }
    out
}

/// Whether `key` is one of the registers (cluster tags `r<k>`, service desired counts
/// `svc<k>`).
pub(crate) fn is_register(key: &str) -> bool {
    let digits = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
    key.strip_prefix("svc").is_some_and(digits) || key.strip_prefix('r').is_some_and(digits)
}

/// Checks `rows`, writes `summary.json` and `timeline.svg` into `dir`, prints a summary; true
/// if all is valid.
pub(crate) fn check(rows: &[Op], spec: &RunSpec, dir: &Path) -> Result<bool, String> {
    let workload = spec.workloads.join(",");
    let workload = workload.as_str();
    let mut summary = serde_json::Map::new();
    let mut valid = true;
    let faults = ecs_jepsen::checkers::faults(rows, &spec.nemesis, &spec.require_faults);
    println!("  nemesis: {} faults", faults.faults.len());
    for f in &faults.faults {
        let mut line = format!("    {} at {:.1} s", f.fault, f.at_s);
        if f.node > 0 {
            line += &format!(" on n{}{}", f.node, if f.leader { " (leader)" } else { "" });
        }
        match f.held_s {
            Some(s) => line += &format!(", held {s:.1} s"),
            None => line += ", never stopped",
        }
        if let Some(l) = f.new_leader {
            line += &format!(", n{l} led in a newer term while it held");
        }
        println!("{line}");
    }
    for e in &faults.errors {
        println!("    ERROR: {e}");
    }
    if !faults.never_started.is_empty() {
        println!("    requested but never started: {}", faults.never_started.join(", "));
    }
    if !faults.unmet.is_empty() {
        println!("    required but not seen: {}", faults.unmet.join(", "));
    }
    println!("  nemesis: {}", if faults.valid { "valid" } else { "INVALID" });
    valid &= faults.valid;
    summary.insert(
        "nemesis".into(),
        serde_json::to_value(&faults).map_err(|e| e.to_string())?,
    );
    let successes = client_successes(rows);
    let mut short = Vec::new();
    for w in &spec.workloads {
        let (ok, reads) = successes.get(w.as_str()).copied().unwrap_or_default();
        let mut line = format!("    {w}: {ok} ok ({reads} reads)");
        if ok < spec.min_ok || (w == "register" && reads == 0) {
            line += &format!(
                ": fewer than the minimum ({} ok{})",
                spec.min_ok,
                if w == "register" { ", 1 read" } else { "" }
            );
            short.push(w.clone());
        }
        println!("{line}");
    }
    valid &= short.is_empty();
    summary.insert(
        "successes".into(),
        json!({"min_ok": spec.min_ok, "too_few": short, "by_workload": successes}),
    );
    let oks = rows.iter().filter(|r| r.kind == OpType::Ok).count();
    let infos = rows.iter().filter(|r| r.kind == OpType::Info).count();
    summary.insert(
        "operations".into(),
        json!({"rows": rows.len(), "ok": oks, "info": infos}),
    );
    if workload.contains("register") || workload.contains("scheduling") {
        let ops: Vec<_> = register_ops(rows).into_iter().filter(|(k, _)| is_register(k)).collect();
        let count = ops.len();
        let keys = ops
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let verdict = check_partitioned(&Register, ops, Duration::from_secs(120));
        let (ok, text) = match &verdict {
            Verdict::Linearizable => (Some(true), "linearizable".to_string()),
            Verdict::Unknown => (None, "unknown (time budget)".to_string()),
            Verdict::NotLinearizable { witness } => (Some(false), format!("NOT linearizable: {witness}")),
        };
        valid &= ok == Some(true);
        println!("  register: {count} operations on {keys} keys, {text}");
        summary.insert(
            "register".into(),
            json!({"valid": ok, "operations": count, "keys": keys, "verdict": text}),
        );
    }
    if workload.contains("set") {
        let r: SetReport = set(&rows_of(rows, |k| k == SET_KEY));
        let line = format!(
            "{} acknowledged, {} lost, {} duplicated, {} unexpected, {} stale, {} final reads",
            r.acknowledged,
            r.lost.len(),
            r.duplicated.len(),
            r.unexpected.len(),
            r.stale.len(),
            r.final_reads
        );
        valid &= keep(&mut summary, "set", r.valid, &line, &r)?;
    }
    if workload.contains("idempotency") {
        let r = idempotency(&rows_of(rows, |k| k == IDEM_KEY));
        let line = format!(
            "{} acknowledged, {} duplicated, {} lost, {} refused but applied",
            r.acknowledged,
            r.duplicated.len(),
            r.lost.len(),
            r.refused_but_applied.len()
        );
        valid &= keep(&mut summary, "idempotency", r.valid, &line, &r)?;
    }
    if workload.contains("monotonic") {
        let r = unique_ids(&rows_of(rows, |k| k.starts_with("jm")));
        let line = format!(
            "{} revisions acknowledged, {} handed out twice, {} seen going backwards, {} lost",
            r.acknowledged,
            r.duplicated.len(),
            r.backwards.len(),
            r.lost.len()
        );
        valid &= keep(&mut summary, "monotonic", r.valid, &line, &r)?;
    }
    if workload.contains("scheduling") {
        let journal = read_journal(&dir.join("agents.jsonl"))?;
        let r = scheduling(&rows_of(rows, |k| k == SCHED_KEY), &journal, SIM_CAPACITY);
        let line = format!(
            "{} task starts on {SIM_INSTANCES} instances, peak cpu {}/{} memory {}/{}, {} over-committed, \
             {} on two instances, {} services not converged, {} disagreements",
            r.starts,
            r.peak.0,
            r.capacity.0,
            r.peak.1,
            r.capacity.1,
            r.overcommitted.len(),
            r.on_two_instances.len(),
            r.not_converged.len(),
            r.disagreements.len()
        );
        valid &= keep(&mut summary, "scheduling", r.valid, &line, &r)?;
    }
    let report = availability(rows);
    print!(
        "  availability: {:.1} ok/s, latency p50 {:.1} ms, p99 {:.1} ms",
        report.ok_per_s, report.latency_p50_ms, report.latency_p99_ms
    );
    let mut kinds: Vec<&str> = report.windows.iter().map(|w| w.fault.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for fault in kinds {
        for (leader, who) in [(true, "leader"), (false, "other")] {
            if let Some(ms) = median_window(&report, fault, leader) {
                print!("; {fault} ({who}): median window {ms:.0} ms");
            }
        }
    }
    println!();
    summary.insert(
        "availability".into(),
        serde_json::to_value(&report).map_err(|e| e.to_string())?,
    );
    summary.insert("valid".into(), json!(valid));
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&Value::Object(summary)).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("timeline.svg"), ecs_jepsen::timeline::render(rows)).map_err(|e| e.to_string())?;
    println!(
        "ecs-jepsen: {} (summary.json, timeline.svg in {})",
        if valid { "valid" } else { "INVALID" },
        dir.display()
    );
    Ok(valid)
}

/// The rows of one workload: those whose key `belongs`.
pub(crate) fn rows_of(rows: &[Op], belongs: impl Fn(&str) -> bool) -> Vec<Op> {
    rows.iter()
        .filter(|r| r.key.as_deref().is_some_and(&belongs))
        .cloned()
        .collect()
}

/// Prints one checker's line and keeps its report in the summary; returns its validity.
pub(crate) fn keep<T: serde::Serialize>(
    summary: &mut serde_json::Map<String, Value>,
    name: &str,
    valid: bool,
    line: &str,
    report: &T,
) -> Result<bool, String> {
    println!("  {name}: {line}: {}", if valid { "valid" } else { "INVALID" });
    summary.insert(name.into(), serde_json::to_value(report).map_err(|e| e.to_string())?);
    Ok(valid)
}
