//! ecs-bench: measures an ecsd cluster through its ECS API, side by side with a peer.
//!
//! - `cluster`: starts a local 3- or 5-node cluster from the `ecsd` binary beside this one (in
//!   temporary directories, torn down afterwards), optionally moto's standalone server as the
//!   peer (`--peer moto`), and runs the same workload against both in one invocation.
//! - `run`: runs a workload against the nodes of a running cluster (`--endpoints`), spread
//!   round-robin, or aimed at the leader or at the followers only (`--target`).
//! - `report`: turns the JSON of runs into a Markdown report with SVG charts (throughput and p99 latency per second, failover kills).
//! - `service-scale`: scales one service from 0 to `--tasks` tasks on `--instances` simulated
//!   instances (the `sim` agent runtime in this process) and times it to steady state.
//!
//! Workloads: `write` (RegisterTaskDefinition, TagResource, UpdateService desiredCount, or a
//! mix), `read` (DescribeClusters, DescribeServices; linearizable, or `--stale`), `mixed` (a
//! read/write ratio), `placement` (RunTask of 10 on simulated instances), and with `cluster`
//! `failover` (`kill -9` of the leader under load) and `scale` (a large state: memory, snapshot,
//! a new node's catch-up, a restart). With `cluster`, `--security on` secures the cluster (SigV4
//! on every request, HTTPS, mutual TLS between nodes) and `--security both` measures the cost of
//! that: open and secured clusters in turn (`--rounds`), and the secured one's share
//! (`failover`, `scale` and `placement` refuse `--security`). Load is a closed loop (`--concurrency` clients) or, with `--rate`, an
//! open loop timed from each request's intended start. A warm-up is not measured. Latencies are
//! HDR histograms; `--json` writes the figures.

/// jemalloc, as the nodes have: glibc's malloc took a large share of the bench's own CPU,
/// which the nodes on the same cores then lack.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ecs_bench::ecs::Ecs;
use ecs_bench::runs::{aim, cluster, machine, print_report, report, write_json, Security};
use ecs_bench::service_scale::service_scale;
use ecs_bench::settings::{smoke_check, LoadArgs};
use ecs_bench::workloads::workload;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmarks an ecsd cluster through its ECS API")]
struct Args {
    /// ECS API endpoints of the cluster's nodes, comma-separated; requests go round-robin.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8101,http://127.0.0.1:8102,http://127.0.0.1:8103"
    )]
    endpoints: String,
    #[command(subcommand)]
    scenario: Scenario,
}
#[derive(Subcommand)]
enum Scenario {
    /// Starts a local cluster (and the peer), runs a workload against it, tears it down.
    Cluster {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// `moto`: also run the workload against moto's standalone server, started here.
        #[arg(long)]
        peer: Option<String>,
        /// The ecsd binary (default: `ecsd` beside this program).
        #[arg(long)]
        ecsd: Option<PathBuf>,
        /// `off`: the cluster open (plain HTTP, no signatures). `on`: secured, as production
        /// runs it (every request signed with SigV4, HTTPS, mutual TLS between the nodes).
        /// `both`: open and secured in turn, `--rounds` times each, and the cost of security.
        #[arg(long, default_value = "off", value_parser = ["off", "on", "both"])]
        security: String,
        /// With `--security both`: rounds of the two.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Runs a workload against the running cluster at `--endpoints`.
    Run {
        /// `all` (round-robin), `leader`, or `followers`.
        #[arg(long, default_value = "all")]
        target: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Turns the JSON of runs (`--json`) into a Markdown report with charts: throughput and p99
    /// latency per second, and each leader kill's unavailability for failover runs.
    Report {
        /// The JSON files, each named in the report by its file stem.
        files: Vec<PathBuf>,
        /// Where the report goes; the charts are written beside it as `<stem>-throughput.svg`,
        /// `<stem>-latency.svg` and `<stem>-failover.svg`.
        #[arg(long, default_value = "REPORT.md")]
        out: PathBuf,
    },
    /// Scale one service from 0 to N tasks and time it to steady state.
    ServiceScale {
        /// Simulated container instances (run in this process).
        #[arg(long, default_value_t = 100)]
        instances: usize,
        /// The desired count to scale to.
        #[arg(long, default_value_t = 1000)]
        tasks: usize,
        /// Measured runs (after one warm-up run); the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Give up on a run after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
}
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ecs_bench::init_logging();
    let args = Args::parse();
    let endpoints: Vec<String> = args.endpoints.split(',').map(|e| e.trim().to_string()).collect();
    let ecs = Ecs::new(endpoints.clone())?;
    match args.scenario {
        Scenario::Cluster {
            nodes,
            peer,
            ecsd,
            security,
            rounds,
            load,
        } => {
            let security = match security.as_str() {
                "on" => Security::On,
                "both" => Security::Both { rounds },
                _ => Security::Off,
            };
            cluster(nodes, peer, ecsd, load, security).await
        }
        Scenario::Report { files, out } => report(&files, &out),
        Scenario::Run { target, load } => {
            let endpoints = aim(&endpoints, &target).await?;
            let report = workload(Ecs::new(endpoints)?, &load, "ecsd", &[]).await?;
            print_report("ecsd", &report);
            smoke_check("ecsd", &report, &load)?;
            write_json(&load, json!({"machine": machine()?, "ecsd": report}))
        }
        Scenario::ServiceScale {
            instances,
            tasks,
            runs,
            timeout_s,
        } => service_scale(&ecs, instances, tasks, runs, Duration::from_secs(timeout_s)).await,
    }
}
