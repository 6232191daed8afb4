//! Where the CPU went during a measured window: the bench's own share beside each node's (and
//! the peer's), in cores. On a machine whose cores the nodes and the load generator share, a
//! client that takes a large share caps what the nodes can do; the figures say so.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::cpu_seconds;

/// Measures the CPU the processes `watch` (name, pid) and this one use over the window that
/// starts after `warmup` and lasts `duration`: cores (CPU seconds per second) by name.
pub fn meter(watch: Vec<(String, u32)>, warmup: Duration, duration: Duration) -> JoinHandle<BTreeMap<String, f64>> {
    let mut watch = watch;
    watch.push(("ecs-bench".into(), std::process::id()));
    tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let read = |w: &[(String, u32)]| w.iter().map(|(_, pid)| cpu_seconds(*pid)).collect::<Vec<_>>();
        let (before, start) = (read(&watch), Instant::now());
        tokio::time::sleep(duration).await;
        let (after, seconds) = (read(&watch), start.elapsed().as_secs_f64().max(1e-3));
        watch
            .into_iter()
            .zip(before.into_iter().zip(after))
            .filter_map(|((name, _), (b, a))| Some((name, (a? - b?) / seconds)))
            .collect()
    })
}

/// One line of the shares: `ecs-bench 0.41, node1 0.52, …, nodes 1.50 of 2 cores`.
pub fn describe(cores: &BTreeMap<String, f64>) -> String {
    let mut parts: Vec<String> = cores.iter().map(|(n, c)| format!("{n} {c:.2}")).collect();
    let nodes: f64 = cores
        .iter()
        .filter(|(n, _)| n.starts_with("node"))
        .map(|(_, c)| c)
        .sum();
    if cores.keys().any(|n| n.starts_with("node")) {
        parts.push(format!("nodes {nodes:.2}"));
    }
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{} (cores, of {machine})", parts.join(", "))
}
