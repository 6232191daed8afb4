//! `ecs-bench`: measures an ecsd cluster through its ECS API, side by side with a peer
//! (`BENCHMARKS.md`). The program (`src/main.rs`) parses the command line; everything else is
//! here, in modules that can be tested without a cluster where they can:
//! - [`ecs`]: the ECS client (round robin, retries for setup), and [`lean`], the measured
//!   path's client; [`cpu`], the CPU each process used while measured;
//! - [`settings`]: the workload options and `--smoke`'s criteria;
//! - [`runs`]: a run against a local cluster and the peer, or a running cluster, and the report;
//! - the workloads: [`workloads`] (write, read, mixed), [`placement`] (simulated instances in
//!   this process), [`failover`], [`scale`], [`service_scale`];
//! - the machinery: [`hist`] HDR latency histograms, [`load`] closed- and open-loop drivers,
//!   [`cluster`] the local clusters and peers it starts, [`report`] the Markdown report and its
//!   charts, [`timeline`] the failover timeline, [`util`].
//!
//! It depends on `ecsd-protocol` and `ecs-agent` (for simulated instances), never on the server:
//! it drives the `ecsd` binary from outside.

pub mod cluster;
pub mod cpu;
pub mod ecs;
pub mod failover;
pub mod hist;
pub mod lean;
pub mod load;
pub mod placement;
pub mod report;
pub mod runs;
pub mod scale;
pub mod service_scale;
pub mod settings;
pub mod timeline;
pub mod util;
pub mod workloads;

/// Logging: `tracing` with an env filter (`RUST_LOG`), info for the bench by default; a second
/// call is a no-op.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ecs_bench=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
