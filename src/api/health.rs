//! Health and metrics, for load balancers, supervisors and Prometheus.
//!
//! - `/livez`: the process serves HTTP. Nothing else is checked: a supervisor restarts a node
//!   that fails it.
//! - `/readyz`: this node can serve requests now. Raft runs, a leader is known (and, as
//!   leader, a quorum acknowledged it within `health.max_quorum_silence_ms`), the state
//!   machine trails the commit index by at most `health.max_apply_lag` entries, and the data
//!   directory's file system has `health.min_free_disk_mib` free. 200 or 503, with every check
//!   and its finding as JSON.
//! - `/metrics`: Prometheus' text format. The counters and histograms the code records
//!   (`metrics::counter!` and the like) come from the process's recorder; this node's Raft
//!   state is read at scrape time, so it is never stale and never another node's.
//!
//! `/livez` and `/readyz` are open on a secured node, as Kubernetes' are, for load balancers and
//! supervisors: `/readyz` tells whether the node serves and why not (its term, the leader's id,
//! its apply position and free space), no state of the clusters it keeps. `/metrics` needs what
//! `/cluster/status` needs: a signed request of any role but agent.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::admin::{Request, ANY_BUT_AGENT};
use super::ApiState;
use crate::config::HealthTuning;
use crate::raft::Vitals;

/// What `/readyz` needs beyond the Raft state.
#[derive(Debug, Clone)]
pub struct Health {
    pub data_dir: std::path::PathBuf,
    pub tuning: HealthTuning,
}

pub async fn livez() -> &'static str {
    "ok\n"
}

/// One readiness check and what it found.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Entries up to and including `index` (none when `None`).
fn count(index: Option<u64>) -> u64 {
    index.map_or(0, |i| i + 1)
}

/// Every readiness check of a node with `vitals`, bounded by `tuning`, whose data directory's
/// file system has `free` bytes free.
fn checks(vitals: &Vitals, tuning: &HealthTuning, free: &Result<u64, String>) -> Vec<Check> {
    let raft = match &vitals.fatal {
        None => Check {
            name: "raft",
            ok: true,
            detail: format!("running, {} in term {}", vitals.state, vitals.term),
        },
        Some(why) => Check {
            name: "raft",
            ok: false,
            detail: format!("stopped: {why}"),
        },
    };
    let leader = match (vitals.leader, vitals.leading, vitals.millis_since_quorum_ack) {
        (None, ..) => Check {
            name: "leader",
            ok: false,
            detail: format!("no leader known ({} in term {})", vitals.state, vitals.term),
        },
        // A lone voter needs no acknowledgement.
        (Some(_), true, _) if vitals.voters <= 1 => Check {
            name: "leader",
            ok: true,
            detail: "this node leads, alone".into(),
        },
        (Some(_), true, Some(ms)) if ms <= tuning.max_quorum_silence_ms => Check {
            name: "leader",
            ok: true,
            detail: format!("this node leads; a quorum acknowledged it {ms} ms ago"),
        },
        (Some(_), true, silence) => Check {
            name: "leader",
            ok: false,
            detail: match silence {
                Some(ms) => format!(
                    "this node leads, but no quorum has acknowledged it for {ms} ms (at most {} allowed)",
                    tuning.max_quorum_silence_ms
                ),
                None => "this node leads, but no quorum has acknowledged it yet".into(),
            },
        },
        (Some(id), false, _) => Check {
            name: "leader",
            ok: true,
            detail: format!("node {id} leads"),
        },
    };
    let lag = apply_lag(vitals);
    let applied = Check {
        name: "applied",
        ok: lag <= tuning.max_apply_lag,
        detail: format!(
            "applied {} of {} committed entries: {lag} behind (at most {} allowed)",
            count(vitals.applied_index),
            count(vitals.committed_index),
            tuning.max_apply_lag
        ),
    };
    let disk = match free {
        Ok(free) => Check {
            name: "disk",
            ok: *free >= tuning.min_free_disk_mib.saturating_mul(1 << 20),
            detail: format!(
                "{} MiB free on the data directory's file system (at least {} required)",
                free >> 20,
                tuning.min_free_disk_mib
            ),
        },
        Err(e) => Check {
            name: "disk",
            ok: false,
            detail: format!("the free space cannot be read: {e}"),
        },
    };
    vec![raft, leader, applied, disk]
}

/// Committed entries the state machine has yet to apply.
fn apply_lag(vitals: &Vitals) -> u64 {
    count(vitals.committed_index).saturating_sub(count(vitals.applied_index))
}

pub async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let health = &state.health;
    let checks = checks(
        &state.node.handle().vitals(),
        &health.tuning,
        &crate::storage::free_bytes(&health.data_dir),
    );
    let ready = checks.iter().all(|c| c.ok);
    let body = json!({
        "ready": ready,
        "checks": checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail }))
            .collect::<Vec<Value>>(),
    });
    // Not ready is the 503 of a node that cannot serve now (`error.rs` maps it).
    let status = match ready {
        true => StatusCode::OK,
        false => super::error::ApiError::Unavailable(String::new()).status(),
    };
    (status, Json(body)).into_response()
}

/// Writes one metric family: its help, its type, and its samples (label set, value).
/// One unlabelled sample.
fn one(v: f64) -> Vec<(String, f64)> {
    vec![(String::new(), v)]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// This node's Raft and health state as metric families.
fn node_families(vitals: &Vitals, health: &Health, out: &mut String) {
    let index = |i: Option<u64>| i.map_or(-1.0, |i| i as f64);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    family(
        out,
        "ecsd_raft_term",
        "gauge",
        "The current Raft term.",
        &one(vitals.term as f64),
    );
    family(
        out,
        "ecsd_raft_leader_id",
        "gauge",
        "The node id of the leader this node knows, 0 when none.",
        &one(vitals.leader.unwrap_or(0) as f64),
    );
    family(
        out,
        "ecsd_raft_is_leader",
        "gauge",
        "1 when this node leads.",
        &one(flag(vitals.leading)),
    );
    family(
        out,
        "ecsd_raft_voters",
        "gauge",
        "Voters in the membership.",
        &one(vitals.voters as f64),
    );
    family(
        out,
        "ecsd_raft_last_log_index",
        "gauge",
        "The last index in this node's log (-1: empty).",
        &one(index(vitals.last_log_index)),
    );
    family(
        out,
        "ecsd_raft_committed_index",
        "gauge",
        "The last index this node knows committed (-1: none).",
        &one(index(vitals.committed_index)),
    );
    family(
        out,
        "ecsd_raft_applied_index",
        "gauge",
        "The last index this node's state machine applied (-1: none).",
        &one(index(vitals.applied_index)),
    );
    family(
        out,
        "ecsd_raft_apply_lag_entries",
        "gauge",
        "Committed entries not yet applied here.",
        &one(apply_lag(vitals) as f64),
    );
    family(
        out,
        "ecsd_raft_snapshot_index",
        "gauge",
        "The last index in this node's latest snapshot (-1: none).",
        &one(index(vitals.snapshot_index)),
    );
    family(
        out,
        "ecsd_raft_fatal",
        "gauge",
        "1 when Raft has stopped on this node.",
        &one(flag(vitals.fatal.is_some())),
    );
    if vitals.leading {
        if let Some(ms) = vitals.millis_since_quorum_ack {
            family(
                out,
                "ecsd_raft_quorum_ack_age_seconds",
                "gauge",
                "As leader: the time since a quorum last acknowledged this node.",
                &one(ms as f64 / 1000.0),
            );
        }
        let last = count(vitals.last_log_index);
        let lags: Vec<(String, f64)> = vitals
            .followers
            .iter()
            .map(|(id, matched)| {
                (
                    format!("{{follower=\"{id}\"}}"),
                    last.saturating_sub(count(*matched)) as f64,
                )
            })
            .collect();
        family(
            out,
            "ecsd_raft_follower_lag_entries",
            "gauge",
            "As leader: the entries of its log each other member is not known to hold.",
            &lags,
        );
    }
    // One reading of the free space for both families.
    let free = crate::storage::free_bytes(&health.data_dir);
    let checks = checks(vitals, &health.tuning, &free);
    family(
        out,
        "ecsd_ready",
        "gauge",
        "1 when /readyz answers 200.",
        &one(flag(checks.iter().all(|c| c.ok))),
    );
    if let Ok(free) = free {
        family(
            out,
            "ecsd_disk_free_bytes",
            "gauge",
            "Free bytes on the data directory's file system.",
            &one(free as f64),
        );
    }
}

/// The families of the write queue, the newest snapshot and RocksDB, appended to `out`.
fn storage_families(storage: &crate::raft::StorageVitals, out: &mut String) {
    family(
        out,
        "ecsd_write_queue_depth",
        "gauge",
        "Proposals waiting in this node's write queue for a batch.",
        &one(storage.write_queue as f64),
    );
    if let Some((bytes, age)) = storage.snapshot_file {
        family(
            out,
            "ecsd_raft_snapshot_bytes",
            "gauge",
            "The size of this node's newest snapshot file.",
            &one(bytes as f64),
        );
        family(
            out,
            "ecsd_raft_snapshot_age_seconds",
            "gauge",
            "Seconds since this node's newest snapshot was built or installed.",
            &one(age),
        );
    }
    let store = &storage.store;
    family(
        out,
        "ecsd_rocksdb_live_data_bytes",
        "gauge",
        "RocksDB's estimate of the live data in its files.",
        &one(store.live_data_bytes as f64),
    );
    family(
        out,
        "ecsd_rocksdb_sst_files_bytes",
        "gauge",
        "The size of RocksDB's files, live or awaiting deletion.",
        &one(store.sst_files_bytes as f64),
    );
    family(
        out,
        "ecsd_rocksdb_pending_compaction_bytes",
        "gauge",
        "RocksDB's estimate of the bytes compaction has yet to rewrite.",
        &one(store.pending_compaction_bytes as f64),
    );
}

pub async fn metrics(request: Request) -> Response {
    // A client certificate of the cluster's CA (Prometheus' `tls_config`), or a signed request.
    if !request.has_operator_certificate() {
        if let Err(reply) = request.admit::<Option<Value>>("Metrics", &ANY_BUT_AGENT).await {
            return reply.into_response();
        }
    }
    let state = request.state();
    let mut out = crate::telemetry::prometheus().render();
    node_families(&state.node.handle().vitals(), &state.health, &mut out);
    storage_families(&state.node.handle().storage_vitals(), &mut out);
    let mut response = out.into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vitals() -> Vitals {
        Vitals {
            id: 1,
            leading: false,
            state: "follower".into(),
            term: 3,
            leader: Some(2),
            voters: 3,
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            millis_since_quorum_ack: None,
            followers: Vec::new(),
            fatal: None,
        }
    }

    fn health(min_free_disk_mib: u64) -> Health {
        Health {
            data_dir: std::env::temp_dir(),
            tuning: HealthTuning {
                min_free_disk_mib,
                ..HealthTuning::default()
            },
        }
    }

    fn failing(vitals: &Vitals, health: &Health) -> Vec<&'static str> {
        checks(vitals, &health.tuning, &crate::storage::free_bytes(&health.data_dir))
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn readiness_names_each_failing_check() {
        let ok = health(0);
        assert!(failing(&vitals(), &ok).is_empty());
        assert_eq!(
            failing(
                &Vitals {
                    leader: None,
                    ..vitals()
                },
                &ok
            ),
            ["leader"]
        );
        let silent_leader = Vitals {
            leading: true,
            leader: Some(1),
            millis_since_quorum_ack: Some(60_000),
            ..vitals()
        };
        assert_eq!(failing(&silent_leader, &ok), ["leader"]);
        let acked = Vitals {
            millis_since_quorum_ack: Some(100),
            ..silent_leader.clone()
        };
        assert!(failing(&acked, &ok).is_empty());
        let alone = Vitals {
            voters: 1,
            millis_since_quorum_ack: None,
            ..silent_leader
        };
        assert!(failing(&alone, &ok).is_empty());
        let behind = Vitals {
            committed_index: Some(5_000),
            ..vitals()
        };
        assert_eq!(failing(&behind, &ok), ["applied"]);
        let stopped = Vitals {
            fatal: Some("storage error".into()),
            ..vitals()
        };
        assert_eq!(failing(&stopped, &ok), ["raft"]);
        assert_eq!(failing(&vitals(), &health(u64::MAX >> 20)), ["disk"]);
    }

    #[test]
    fn node_families_follow_prometheus_naming() {
        let leader = Vitals {
            leading: true,
            leader: Some(1),
            millis_since_quorum_ack: Some(250),
            followers: vec![(2, Some(10)), (3, None)],
            ..vitals()
        };
        let mut out = String::new();
        node_families(&leader, &health(0), &mut out);
        for line in [
            "# TYPE ecsd_raft_term gauge",
            "ecsd_raft_term 3",
            "ecsd_raft_is_leader 1",
            "ecsd_raft_quorum_ack_age_seconds 0.25",
            "ecsd_raft_follower_lag_entries{follower=\"2\"} 0",
            "ecsd_raft_follower_lag_entries{follower=\"3\"} 11",
            "ecsd_ready 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from:\n{out}");
        }
    }
}
