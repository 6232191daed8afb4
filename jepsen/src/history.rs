//! The history: every operation's invocation and completion, in one total order, as Jepsen
//! records it. Rows are written as JSON lines:
//! `{index, time_ns, process, type, f, key, value, error, node}`.
//!
//! `type` is `invoke`, `ok` (it took effect), `fail` (it certainly did not) or `info` (it may
//! have: a timeout or a lost connection on a mutation). After an `info` a process never
//! invokes again; the client continues as a new process.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One row of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    pub time_ns: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node the operation was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The one recorder of a run: indexes and times rows as they arrive, from any task.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    rows: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            rows: Arc::default(),
        }
    }
}

/// What a row says, before the recorder stamps it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub error: Option<String>,
    pub node: Option<String>,
}

impl Recorder {
    /// Appends a row of type `kind`; returns it with its index and time.
    pub fn record(&self, kind: OpType, row: Row) -> Op {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let op = Op {
            index: rows.len() as u64,
            time_ns: self.start.elapsed().as_nanos() as u64,
            process: row.process,
            kind,
            f: row.f,
            key: row.key,
            value: row.value,
            error: row.error,
            node: row.node,
        };
        rows.push(op.clone());
        op
    }

    /// How many completions so far were ok, fail and info (for the progress line).
    pub fn tally(&self) -> (usize, usize, usize) {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let count = |k: OpType| rows.iter().filter(|r| r.kind == k && r.process != u64::MAX).count();
        (count(OpType::Ok), count(OpType::Fail), count(OpType::Info))
    }

    /// Seconds since the recorder began.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The rows so far, in order.
    pub fn rows(&self) -> Vec<Op> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub fn write_jsonl(path: &Path, rows: &[Op]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub fn read_jsonl(path: &Path) -> Result<Vec<Op>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?);
    }
    Ok(rows)
}

/// An invocation with its completion (`None`: it never completed).
#[derive(Debug, Clone)]
pub struct Pair {
    pub invoke: Op,
    pub done: Option<Op>,
}

impl Pair {
    /// The completion's type, if it completed.
    pub fn outcome(&self) -> Option<OpType> {
        self.done.as_ref().map(|d| d.kind)
    }

    /// When it completed, `None` when it never did or the outcome is indeterminate.
    pub fn ended(&self) -> Option<u64> {
        self.done.as_ref().filter(|d| d.kind != OpType::Info).map(|d| d.time_ns)
    }
}

/// Pairs each invocation with the next completion of the same process, in history order.
pub fn pairs(rows: &[Op]) -> Vec<Pair> {
    let mut open: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut out: Vec<Pair> = Vec::new();
    for row in rows {
        match row.kind {
            OpType::Invoke => {
                open.insert(row.process, out.len());
                out.push(Pair {
                    invoke: row.clone(),
                    done: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&row.process) {
                    out[i].done = Some(row.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_jsonl_and_pair_up() {
        let r = Recorder::default();
        let row = |process: u64, f: &str, value: Value| Row {
            process,
            f: f.into(),
            value,
            ..Row::default()
        };
        r.record(OpType::Invoke, row(0, "add", Value::from(1)));
        r.record(OpType::Invoke, row(1, "add", Value::from(2)));
        r.record(OpType::Info, row(1, "add", Value::from(2)));
        r.record(OpType::Ok, row(0, "add", Value::from(1)));
        let rows = r.rows();
        assert_eq!(rows.iter().map(|o| o.index).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        let dir = std::env::temp_dir().join(format!("ej-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        write_jsonl(&path, &rows).unwrap();
        let back = read_jsonl(&path).unwrap();
        assert_eq!(back, rows);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("\"type\":\"invoke\""), "{text}");
        let p = pairs(&back);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].outcome(), Some(OpType::Ok));
        assert_eq!((p[1].outcome(), p[1].ended()), (Some(OpType::Info), None));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
