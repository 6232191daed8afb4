//! What every workload is told: the `--workload` and load options, and `--smoke`'s criteria.

use std::path::PathBuf;

use anyhow::bail;

use crate::load::Report;

#[derive(clap::Args, Clone)]
pub struct LoadArgs {
    /// `write`, `read`, `mixed`, `placement` (RunTask count 10 on `--instances` simulated
    /// instances), or (with `cluster`) `failover`, `rolling-restart` (each node stopped with
    /// SIGTERM and started again under writes) and `scale` (`--tasks` tasks and `--services`
    /// services in state: memory, snapshot size, a new node's catch-up, a restart).
    #[arg(long, default_value = "write")]
    pub workload: String,
    /// With `placement`: simulated container instances (run in this process).
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// With `failover`: how many times the leader is killed; with `rolling-restart`, how many
    /// rolling restarts of every node.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// With `scale`: tasks to load (RunTask of 10 at a time).
    #[arg(long, default_value_t = 1_000_000)]
    pub tasks: u64,
    /// With `scale`: services to create.
    #[arg(long, default_value_t = 100)]
    pub services: usize,
    /// Writes: `taskdef` (RegisterTaskDefinition), `tag` (TagResource), `scale` (UpdateService
    /// desiredCount) or `mix`. Reads: `clusters` (DescribeClusters), `services`
    /// (DescribeServices) or `tasks` (DescribeTasks of 100 ARNs). Default: `mix` for writes,
    /// `clusters` for reads.
    #[arg(long)]
    pub op: Option<String>,
    /// With `mixed`: the fraction of reads.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Reads served from the local replica (`x-ecsd-consistency: stale`) instead of
    /// linearizable ones.
    #[arg(long)]
    pub stale: bool,
    /// Clients (closed loop), or the most requests in flight (open loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per second: an open loop. Without it, a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Writes the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A smoke run with exit criteria: it fails (exit 1) unless operations succeeded, errors
    /// stayed at or under `--max-error-ratio`, every failover round measured its window with a
    /// new leader, placed tasks all reached RUNNING, and the peer (if any) was measured too.
    #[arg(long)]
    pub smoke: bool,
    /// With `--smoke`: the largest share of requests that may fail (write, read, mixed,
    /// placement).
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
}

/// `--smoke`'s criteria for a load report: some operations succeeded and few failed.
pub fn smoke_check(system: &str, report: &Report, load: &LoadArgs) -> anyhow::Result<()> {
    if !load.smoke {
        return Ok(());
    }
    let total = report.ok + report.errors;
    if report.ok == 0 {
        bail!(
            "smoke: {system}: no operation succeeded ({} errors; first: {})",
            report.errors,
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    let ratio = report.errors as f64 / total as f64;
    if ratio > load.max_error_ratio {
        bail!(
            "smoke: {system}: {} of {total} requests failed ({:.1} %, more than {:.1} %); first: {}",
            report.errors,
            ratio * 100.0,
            load.max_error_ratio * 100.0,
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    println!("smoke: {system}: {} ok, {} errors: passed", report.ok, report.errors);
    Ok(())
}
