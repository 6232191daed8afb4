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
//! a new node's catch-up, a restart). Load is a closed loop (`--concurrency` clients) or, with `--rate`, an
//! open loop timed from each request's intended start. A warm-up is not measured. Latencies are
//! HDR histograms; `--json` writes the figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use ecsd::agent::client::{run_with, AgentConfig, Connections, RuntimeKind, AGENT_VERSION};
use ecsd::agent::sim::SimSettings;
use ecsd::bench::cluster::{fsync_latency, LocalCluster, Moto};
use ecsd::bench::load::{drive, Model, Plan, Report};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

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

#[derive(clap::Args, Clone)]
struct LoadArgs {
    /// `write`, `read`, `mixed`, `placement` (RunTask count 10 on `--instances` simulated
    /// instances), or (with `cluster`) `failover` and `scale` (`--tasks` tasks and `--services`
    /// services in state: memory, snapshot size, a new node's catch-up, a restart).
    #[arg(long, default_value = "write")]
    workload: String,
    /// With `placement`: simulated container instances (run in this process).
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// With `failover`: how many times the leader is killed.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// With `scale`: tasks to load (RunTask of 10 at a time).
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// With `scale`: services to create.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Writes: `taskdef` (RegisterTaskDefinition), `tag` (TagResource), `scale` (UpdateService
    /// desiredCount) or `mix`. Reads: `clusters` (DescribeClusters), `services`
    /// (DescribeServices) or `tasks` (DescribeTasks of 100 ARNs). Default: `mix` for writes,
    /// `clusters` for reads.
    #[arg(long)]
    op: Option<String>,
    /// With `mixed`: the fraction of reads.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// Reads served from the local replica (`x-ecsd-consistency: stale`) instead of
    /// linearizable ones.
    #[arg(long)]
    stale: bool,
    /// Clients (closed loop), or the most requests in flight (open loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second: an open loop. Without it, a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Writes the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A smoke run with exit criteria: it fails (exit 1) unless operations succeeded, errors
    /// stayed at or under `--max-error-ratio`, every failover round measured its window with a
    /// new leader, placed tasks all reached RUNNING, and the peer (if any) was measured too.
    #[arg(long)]
    smoke: bool,
    /// With `--smoke`: the largest share of requests that may fail (write, read, mixed,
    /// placement).
    #[arg(long, default_value_t = 0.01)]
    max_error_ratio: f64,
}

/// `--smoke`'s criteria for a load report: some operations succeeded and few failed.
fn smoke_check(system: &str, report: &Report, load: &LoadArgs) -> anyhow::Result<()> {
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

/// An ECS client over plain HTTP, round-robin over the nodes, retrying server errors.
struct Ecs {
    http: reqwest::Client,
    endpoints: Vec<String>,
    turn: std::sync::atomic::AtomicUsize,
}

/// A SigV4-shaped Authorization header: moto's server picks the service from its credential
/// scope (it checks no signature); ecsd ignores it.
const AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0";

impl Ecs {
    fn new(endpoints: Vec<String>) -> anyhow::Result<Ecs> {
        Ok(Ecs {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()?,
            endpoints,
            turn: Default::default(),
        })
    }

    /// One request, no retry: the measured operation. `Err` for anything but a 2xx answer.
    async fn once(&self, action: &str, body: &Value, stale: bool) -> Result<Value, String> {
        let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = &self.endpoints[n % self.endpoints.len()];
        let mut request = self
            .http
            .post(format!("{url}/"))
            .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", AUTHORIZATION);
        if stale {
            request = request.header("x-ecsd-consistency", "stale");
        }
        let reply = request
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{action}: {e}"))?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(|e| format!("{action}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{action}: {status} {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{action}: {e}"))
    }

    async fn call(&self, action: &str, body: Value) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = &self.endpoints[n % self.endpoints.len()];
            let reply = self
                .http
                .post(format!("{url}/"))
                .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{action}"))
                .header("content-type", "application/x-amz-json-1.1")
                .header("authorization", AUTHORIZATION)
                .body(body.to_string())
                .send()
                .await;
            match reply {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r) if r.status().is_client_error() => {
                    bail!("{action}: {} {}", r.status(), r.text().await.unwrap_or_default())
                }
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(r) => bail!("{action}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => return Err(anyhow!("{action}: {e}")),
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value at quantile `q` of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index.min(values.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ecsd::telemetry::init();
    let args = Args::parse();
    let endpoints: Vec<String> = args.endpoints.split(',').map(|e| e.trim().to_string()).collect();
    let ecs = Ecs::new(endpoints.clone())?;
    match args.scenario {
        Scenario::Cluster {
            nodes,
            peer,
            ecsd,
            load,
        } => cluster(nodes, peer, ecsd, load).await,
        Scenario::Report { files, out } => report(&files, &out),
        Scenario::Run { target, load } => {
            let endpoints = aim(&endpoints, &target).await?;
            let report = workload(Ecs::new(endpoints)?, &load, "ecsd").await?;
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

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `count` simulated container instances of `cluster` in this process (over shared
/// connections, spread over the nodes and three zones), each offering 1024 CPU and `memory`
/// MiB, and waits until they are registered. Cancel the token to stop them.
async fn sim_instances(
    ecs: &Ecs,
    cluster: &str,
    count: usize,
    memory: i64,
    timeout: Duration,
) -> anyhow::Result<CancellationToken> {
    let stop = CancellationToken::new();
    let connections = Connections::default();
    for k in 0..count {
        let mut endpoints = ecs.endpoints.clone();
        let n = endpoints.len();
        endpoints.rotate_left(k % n);
        let config = AgentConfig {
            endpoints,
            cluster: cluster.to_string(),
            cpu: 1024,
            memory,
            attributes: vec![(
                "ecs.availability-zone".into(),
                Some(format!("zone-{}", (b'a' + (k % 3) as u8) as char)),
            )],
            log_dir: std::env::temp_dir(),
            heartbeat: Duration::from_secs(5),
            ec2_instance_id: format!("i-bench-{k}"),
            runtime: RuntimeKind::Sim(SimSettings::default()),
            agent_version: AGENT_VERSION.to_string(),
            state_dir: None,
        };
        tokio::spawn(run_with(config, connections.clone(), stop.clone()));
    }
    wait_until("instances to register", timeout, async || {
        let c = ecs.call("DescribeClusters", json!({"clusters": [cluster]})).await?;
        Ok(c["clusters"][0]["registeredContainerInstancesCount"] == count)
    })
    .await?;
    Ok(stop)
}

async fn service_scale(
    ecs: &Ecs,
    instances: usize,
    tasks: usize,
    runs: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let cluster = format!("bench-{}", std::process::id());
    ecs.call("CreateCluster", json!({"clusterName": cluster})).await?;
    // Each instance holds its share of the tasks twice over (64 MiB each).
    let per_instance = tasks.div_ceil(instances.max(1)) as i64;
    let stop = sim_instances(ecs, &cluster, instances, 128 * per_instance.max(1), timeout).await?;
    ecs.call(
        "RegisterTaskDefinition",
        json!({"family": "bench", "containerDefinitions": [{"name": "c", "image": "sim", "memory": 64}]}),
    )
    .await?;
    ecs.call(
        "CreateService",
        json!({"cluster": cluster, "serviceName": "scale", "taskDefinition": "bench", "desiredCount": 0}),
    )
    .await
    .context("CreateService")?;
    println!("service-scale: 0 -> {tasks} tasks on {instances} simulated instances, {runs} runs after a warm-up");
    let mut to_steady = Vec::new();
    let mut startups = Vec::new();
    for run in 0..=runs {
        let describe = async || -> anyhow::Result<Value> {
            let d = ecs
                .call("DescribeServices", json!({"cluster": cluster, "services": ["scale"]}))
                .await?;
            Ok(d["services"][0].clone())
        };
        let started = Instant::now();
        ecs.call(
            "UpdateService",
            json!({"cluster": cluster, "service": "scale", "desiredCount": tasks}),
        )
        .await?;
        wait_until("steady state", timeout, async || {
            let s = describe().await?;
            Ok(s["runningCount"] == tasks
                && s["pendingCount"] == 0
                && s["deployments"].as_array().map(Vec::len) == Some(1))
        })
        .await?;
        // From before the UpdateService call to the first read that saw steady state.
        let elapsed = started.elapsed();
        // Per task: launch (createdAt) to RUNNING (startedAt).
        let mut latencies = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut body = json!({"cluster": cluster, "serviceName": "scale", "maxResults": 100});
            if let Some(token) = &next {
                body["nextToken"] = json!(token);
            }
            let page = ecs.call("ListTasks", body).await?;
            let arns = page["taskArns"].clone();
            if arns.as_array().is_some_and(|a| !a.is_empty()) {
                let d = ecs
                    .call("DescribeTasks", json!({"cluster": cluster, "tasks": arns}))
                    .await?;
                for t in d["tasks"].as_array().into_iter().flatten() {
                    if let (Some(c), Some(s)) = (t["createdAt"].as_f64(), t["startedAt"].as_f64()) {
                        latencies.push((s - c) * 1000.0);
                    }
                }
            }
            next = page["nextToken"].as_str().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        latencies.sort_by(f64::total_cmp);
        let label = if run == 0 {
            "warm-up".to_string()
        } else {
            format!("run {run}")
        };
        println!(
            "  {label:>7}: steady state in {:>7.1} ms; task launch->RUNNING p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} tasks)",
            ms(elapsed),
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            latencies.len()
        );
        if run > 0 {
            to_steady.push(ms(elapsed));
            startups.extend(latencies);
        }
        ecs.call(
            "UpdateService",
            json!({"cluster": cluster, "service": "scale", "desiredCount": 0}),
        )
        .await?;
        wait_until("scale-in to 0", timeout, async || {
            let s = describe().await?;
            let left = ecs
                .call(
                    "ListTasks",
                    json!({"cluster": cluster, "serviceName": "scale", "maxResults": 1}),
                )
                .await?;
            Ok(s["runningCount"] == 0
                && s["pendingCount"] == 0
                && left["taskArns"].as_array().is_some_and(Vec::is_empty))
        })
        .await?;
    }
    to_steady.sort_by(f64::total_cmp);
    startups.sort_by(f64::total_cmp);
    println!(
        "service-scale: median {:.1} ms to steady state (min {:.1}, max {:.1}) over {} runs; \
         task launch->RUNNING p50 {:.1} ms, p99 {:.1} ms over {} tasks",
        quantile(&to_steady, 0.5),
        to_steady.first().copied().unwrap_or(f64::NAN),
        to_steady.last().copied().unwrap_or(f64::NAN),
        to_steady.len(),
        quantile(&startups, 0.5),
        quantile(&startups, 0.99),
        startups.len()
    );
    ecs.call(
        "DeleteService",
        json!({"cluster": cluster, "service": "scale", "force": true}),
    )
    .await?;
    stop.cancel();
    Ok(())
}

/// The facts of this machine that bound the figures: cores, and the disk's fsync latency.
fn machine() -> anyhow::Result<Value> {
    let fsync = fsync_latency(&std::env::temp_dir(), 50)?;
    Ok(json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "fsync_4k_median_ms": fsync.as_secs_f64() * 1000.0,
    }))
}

/// The endpoints to send to: all of them, the leader's, or the followers'.
async fn aim(endpoints: &[String], target: &str) -> anyhow::Result<Vec<String>> {
    if target == "all" {
        return Ok(endpoints.to_vec());
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    // The endpoint whose node says that it leads (its own member report), in the newest term.
    let mut leader_api = None;
    for url in endpoints {
        if let Ok(r) = http.get(format!("{url}/cluster/status")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                let leader = ecsd::bench::cluster::self_reported_leader(&v);
                if leader.is_some_and(|(_, _, api)| !api.is_empty() && url.ends_with(&api)) {
                    leader_api = Some(url.clone());
                }
            }
        }
    }
    let leader = leader_api.ok_or_else(|| anyhow!("no endpoint says it is the leader"))?;
    match target {
        "leader" => Ok(vec![leader]),
        "followers" => Ok(endpoints.iter().filter(|e| **e != leader).cloned().collect()),
        other => bail!("--target {other}: all, leader or followers"),
    }
}

/// `ecs-bench cluster`: a local cluster, and the peer, measured with the same workload.
async fn cluster(nodes: usize, peer: Option<String>, ecsd: Option<PathBuf>, load: LoadArgs) -> anyhow::Result<()> {
    // Checked before the cluster runs, not after.
    if let Some(other) = peer.as_deref().filter(|p| *p != "moto") {
        bail!("--peer {other}: only moto is known");
    }
    let binary = match ecsd {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("ecsd"),
    };
    let machine = machine()?;
    println!(
        "ecs-bench: {} cores, fsync of 4 KiB {:.2} ms (median of 50)",
        machine["cores"], machine["fsync_4k_median_ms"]
    );
    let mut out = json!({"machine": machine, "nodes": nodes});
    if load.workload == "failover" || load.workload == "scale" {
        let mut local = LocalCluster::start(&binary, nodes).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        out["ecsd"] = match load.workload.as_str() {
            "failover" => failover(&mut local, &load).await?,
            _ => scale(&mut local, &load).await?,
        };
        return write_json(&load, out);
    }
    let ours = {
        let local = LocalCluster::start(&binary, nodes).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        let report = workload(Ecs::new(local.endpoints.clone())?, &load, "ecsd").await?;
        print_report(&format!("ecsd ({nodes} nodes)"), &report);
        smoke_check("ecsd", &report, &load)?;
        out["ecsd"] = serde_json::to_value(&report)?;
        report
        // The cluster stops here, before the peer runs on the same cores.
    };
    match peer.as_deref() {
        None => {}
        // moto, the one peer known (checked above).
        Some(_) => {
            let moto = Moto::start().await?;
            println!("ecs-bench: moto_server at {}", moto.endpoint);
            let report = match workload(Ecs::new(vec![moto.endpoint.clone()])?, &load, "moto").await {
                Ok(report) => report,
                // Our figures stand; say why the peer has none.
                Err(e) => {
                    // The first line: moto answers some errors with a whole HTML page.
                    let e = format!("{e:#}");
                    let e = e.lines().next().unwrap_or_default();
                    println!("            moto: not measured: {e}");
                    out["moto_error"] = json!(e);
                    write_json(&load, out)?;
                    if load.smoke {
                        bail!("smoke: the peer (moto) was not measured: {e}");
                    }
                    return Ok(());
                }
            };
            print_report("moto", &report);
            smoke_check("moto", &report, &load)?;
            let ratio = ours.throughput_per_s / report.throughput_per_s.max(1e-9);
            let latency = ours.latency.p50_ms / report.latency.p50_ms.max(1e-9);
            println!("ecsd / moto: throughput {ratio:.1}x, p50 latency {latency:.2}x");
            out["moto"] = serde_json::to_value(&report)?;
            out["ratio"] = json!({"throughput": ratio, "p50_latency": latency});
        }
    }
    write_json(&load, out)
}

fn write_json(load: &LoadArgs, value: Value) -> anyhow::Result<()> {
    if let Some(path) = &load.json {
        std::fs::write(path, serde_json::to_string_pretty(&value)?).with_context(|| path.display().to_string())?;
        println!("ecs-bench: figures written to {}", path.display());
    }
    Ok(())
}

fn print_report(system: &str, r: &Report) {
    let l = &r.latency;
    println!(
        "{system:>16}: {:>9.0} ok/s, {} errors; latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        r.throughput_per_s, r.errors, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    if let Some(e) = &r.first_error {
        println!("{:>16}  first error: {}", "", e.chars().take(200).collect::<String>());
    }
}

/// Sets up what a workload needs on one system (the same calls for ecsd and the peer), then
/// drives it and returns the figures.
async fn workload(ecs: Ecs, load: &LoadArgs, system: &str) -> anyhow::Result<Report> {
    let created = ecs.call("CreateCluster", json!({"clusterName": "bench"})).await?;
    let cluster_arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let definition = json!({"family": "bench", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    ecs.call("RegisterTaskDefinition", definition).await?;
    ecs.call(
        "CreateService",
        json!({"cluster": "bench", "serviceName": "bench-svc", "taskDefinition": "bench", "desiredCount": 0}),
    )
    .await
    .context("CreateService")?;
    let kind = load.workload.as_str();
    if kind == "placement" {
        if system != "ecsd" {
            bail!("placement runs against ecsd only: its simulated instances speak ecsd's agent protocol");
        }
        return placement(ecs, load).await;
    }
    let write_op = load
        .op
        .clone()
        .filter(|_| kind != "read")
        .unwrap_or_else(|| "mix".into());
    let read_op = load
        .op
        .clone()
        .filter(|_| kind == "read")
        .unwrap_or_else(|| "clusters".into());
    if !["taskdef", "tag", "scale", "mix"].contains(&write_op.as_str())
        || !["clusters", "services", "tasks"].contains(&read_op.as_str())
    {
        bail!("--op: taskdef, tag, scale or mix for writes; clusters, services or tasks for reads");
    }
    // DescribeTasks reads 100 tasks, placed first on one container instance.
    let describe_tasks = if read_op == "tasks" {
        let arns = hundred_tasks(&ecs)
            .await
            .with_context(|| format!("{system}: placing the 100 tasks that DescribeTasks reads"))?;
        Arc::new(json!({"cluster": "bench", "tasks": arns}))
    } else {
        Arc::new(Value::Null)
    };
    let read_ratio = match kind {
        "write" => 0.0,
        "read" => 1.0,
        "mixed" => load.read_ratio.clamp(0.0, 1.0),
        other => bail!("--workload {other}: write, read, mixed, placement or failover"),
    };
    let (ecs, stale) = (Arc::new(ecs), load.stale);
    let plan = plan_of(load);
    let label = format!("{system} {kind}");
    let results = drive(plan, &label, move |i| {
        let (ecs, write_op, read_op, arn) = (ecs.clone(), write_op.clone(), read_op.clone(), cluster_arn.clone());
        let describe_tasks = describe_tasks.clone();
        async move {
            // A deterministic spread of reads among writes, by sequence number.
            let read = ((i * 7919) % 1000) as f64 / 1000.0 < read_ratio;
            let (action, body) = if read {
                match read_op.as_str() {
                    "services" => (
                        "DescribeServices",
                        json!({"cluster": "bench", "services": ["bench-svc"]}),
                    ),
                    "tasks" => ("DescribeTasks", (*describe_tasks).clone()),
                    _ => ("DescribeClusters", json!({"clusters": ["bench"]})),
                }
            } else {
                let op = match write_op.as_str() {
                    "mix" => ["taskdef", "tag", "scale"][(i % 3) as usize],
                    other => other,
                };
                match op {
                    "taskdef" => (
                        "RegisterTaskDefinition",
                        json!({"family": format!("bench-{}", i % 16),
                               "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]}),
                    ),
                    "tag" => (
                        "TagResource",
                        json!({"resourceArn": arn, "tags": [{"key": format!("k{}", i % 40), "value": i.to_string()}]}),
                    ),
                    _ => (
                        "UpdateService",
                        json!({"cluster": "bench", "service": "bench-svc", "desiredCount": i % 2}),
                    ),
                }
            };
            ecs.once(action, &body, read && stale).await.map(|_| ())
        }
    })
    .await;
    Ok(results.report())
}

/// Registers a container instance in `cluster` through the API (no agent runs for it, so its
/// tasks stay PENDING), offering a million CPU units and `memory` MiB, in availability zone `zone`.
async fn register_instance(ecs: &Ecs, cluster: &str, memory: u64, zone: Option<&str>) -> anyhow::Result<()> {
    let mut body = json!({"cluster": cluster, "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 1_000_000},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}]});
    if let Some(zone) = zone {
        body["attributes"] = json!([{"name": "ecs.availability-zone", "value": zone}]);
    }
    ecs.call("RegisterContainerInstance", body).await?;
    Ok(())
}

/// Registers one container instance in cluster `bench` (through the API, room for every task)
/// and places 100 tasks on it with RunTask; returns their ARNs.
async fn hundred_tasks(ecs: &Ecs) -> anyhow::Result<Vec<String>> {
    register_instance(ecs, "bench", 1_000_000, None).await?;
    let mut arns = Vec::new();
    for _ in 0..10 {
        let v = ecs
            .call(
                "RunTask",
                json!({"cluster": "bench", "taskDefinition": "bench", "count": 10}),
            )
            .await?;
        for t in v["tasks"].as_array().into_iter().flatten() {
            arns.extend(t["taskArn"].as_str().map(str::to_string));
        }
    }
    if arns.len() != 100 {
        bail!("RunTask placed {} of 100 tasks", arns.len());
    }
    Ok(arns)
}

/// `--workload failover`: under a steady write load (`--concurrency` clients over every node,
/// TagResource), `kill -9` the leader; the window runs from the kill to the first write
/// acknowledged that was sent after it. The node is restarted and the cluster given time to
/// settle before the next round; `--repeat` rounds.
async fn failover(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    let ecs = Arc::new(Ecs::new(local.endpoints.clone())?);
    let created = ecs.call("CreateCluster", json!({"clusterName": "bench"})).await?;
    let arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut windows = Vec::new();
    let mut errors_total = 0u64;
    // Every write answered from 1 s before each kill to 3 s after it, in 100 ms bins.
    let mut timeline = ecsd::bench::timeline::Timeline::new(-1000.0, 3000.0, 100.0);
    let mut unmeasured = Vec::new();
    for round in 1..=load.repeat {
        let (leader, term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
        // Each client records (sent, answered, ok) for every write.
        let stop = CancellationToken::new();
        let log: Arc<std::sync::Mutex<Vec<(Instant, Instant, bool)>>> = Arc::default();
        let mut clients = Vec::new();
        for c in 0..load.concurrency.clamp(1, 64) {
            let (ecs, stop, log, arn) = (ecs.clone(), stop.clone(), log.clone(), arn.clone());
            clients.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.is_cancelled() {
                    i += 1;
                    let body = json!({"resourceArn": arn, "tags": [{"key": format!("c{c}"), "value": i.to_string()}]});
                    let sent = Instant::now();
                    let ok = ecs.once("TagResource", &body, false).await.is_ok();
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((sent, Instant::now(), ok));
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        local.kill(leader);
        let until = killed + Duration::from_secs(30);
        let window = loop {
            let first = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(sent, _, ok)| *ok && *sent >= killed)
                .map(|(_, answered, _)| *answered)
                .min();
            if let Some(t) = first {
                break Some(t - killed);
            }
            if Instant::now() > until {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Keep the clients writing until the timeline's end, then stop them.
        tokio::time::sleep_until((killed + Duration::from_secs(3)).into()).await;
        stop.cancel();
        for c in clients {
            let _ = c.await;
        }
        let relative = |t: Instant| {
            t.saturating_duration_since(killed).as_secs_f64() * 1000.0
                - killed.saturating_duration_since(t).as_secs_f64() * 1000.0
        };
        for (sent, answered, ok) in log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            timeline.add(relative(*sent), relative(*answered), *ok);
        }
        // The errors of the window: sent after the kill, answered before writes were acknowledged
        // again (after it, the clients aimed at the killed node fail until it is back; the
        // timeline shows those).
        let window_end = window.map_or(until, |w| killed + w);
        let errors = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(sent, answered, ok)| !*ok && *sent >= killed && *answered <= window_end)
            .count() as u64;
        errors_total += errors;
        // The node killed led: another one leads now, in a newer term.
        let (successor, new_term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
        if successor == leader || new_term <= term {
            bail!("round {round}: after the kill of n{leader} (leader in term {term}), n{successor} leads in term {new_term}");
        }
        match window {
            Some(w) => {
                println!(
                    "  round {round:>2}: killed leader n{leader} (term {term}); n{successor} leads in term {new_term}; writes acknowledged again after {:.0} ms ({errors} errors)",
                    w.as_secs_f64() * 1000.0
                );
                windows.push(w.as_secs_f64() * 1000.0);
            }
            None => {
                println!("  round {round:>2}: killed leader n{leader}; no write acknowledged within 30 s");
                unmeasured.push(round);
            }
        }
        local.restart(leader)?;
        // The next kill waits until the restarted node has caught up with the leader.
        local.wait_caught_up(leader, Duration::from_secs(30)).await?;
    }
    let mut sorted = windows.clone();
    sorted.sort_by(f64::total_cmp);
    let median = quantile(&sorted, 0.5);
    println!(
        "failover: median unavailability {median:.0} ms (min {:.0}, max {:.0}) over {} kills of the leader",
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len()
    );
    let worst = timeline.max_latency_ms.iter().copied().fold(0.0f64, f64::max);
    println!(
        "failover: over the {} kills, from 1 s before to 3 s after each: {} writes acknowledged, {} failed; slowest answer {worst:.0} ms",
        load.repeat,
        timeline.ok.iter().sum::<u64>(),
        timeline.errors.iter().sum::<u64>()
    );
    if load.smoke {
        if !unmeasured.is_empty() || windows.is_empty() {
            bail!("smoke: failover: no write was acknowledged within 30 s after the kill in rounds {unmeasured:?}");
        }
        println!("smoke: failover: {} windows measured: passed", windows.len());
    }
    Ok(
        json!({"windows_ms": windows, "median_ms": median, "errors_after_kills": errors_total, "rounds": load.repeat,
              "timeline": timeline}),
    )
}

/// `--workload scale`: loads `--tasks` tasks (RunTask of 10 on `--instances` container instances
/// registered through the API, so the tasks stay PENDING and no agent is involved) and
/// `--services` services, then reports each node's resident memory and data size, the newest
/// snapshot's size, how long a new, empty node takes to be added and caught up (by snapshot,
/// the log being purged behind it), and how long a restarted node takes to serve again, caught up.
async fn scale(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    use ecsd::bench::cluster::{dir_bytes, newest_snapshot_bytes, peak_resident_bytes, resident_bytes};
    let ecs = Arc::new(Ecs::new(local.endpoints.clone())?);
    ecs.call("CreateCluster", json!({"clusterName": "bench-scale"})).await?;
    let definition = json!({"family": "bench", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    ecs.call("RegisterTaskDefinition", definition).await?;
    let instances = load.instances.max(1);
    // Room for every task, whatever the spread.
    let memory = (load.tasks * 8 / instances as u64 + 1024).min(i32::MAX as u64);
    for k in 0..instances {
        register_instance(&ecs, "bench-scale", memory, Some(&format!("zone-{}", k % 3))).await?;
    }
    for k in 0..load.services {
        ecs.call(
            "CreateService",
            json!({"cluster": "bench-scale", "serviceName": format!("svc-{k}"), "taskDefinition": "bench", "desiredCount": 0}),
        )
        .await?;
    }
    println!(
        "ecs-bench: {instances} container instances and {} services registered; loading {} tasks",
        load.services, load.tasks
    );
    let started = Instant::now();
    let placed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (ecs, placed, target) = (ecs.clone(), placed.clone(), load.tasks);
        loaders.push(tokio::spawn(async move {
            let body = json!({"cluster": "bench-scale", "taskDefinition": "bench", "count": 10, "startedBy": "bench"});
            while placed.load(std::sync::atomic::Ordering::Relaxed) < target {
                let v = ecs.call("RunTask", body.clone()).await?;
                let n = v["tasks"].as_array().map_or(0, Vec::len) as u64;
                if n == 0 {
                    bail!("RunTask placed nothing: {}", v["failures"]);
                }
                placed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let progress = {
        let placed = placed.clone();
        let target = load.tasks;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = placed.load(std::sync::atomic::Ordering::Relaxed);
                let s = started.elapsed().as_secs_f64();
                println!(
                    "ecs-bench: {n} of {target} tasks placed after {s:.0} s ({:.0}/s)",
                    n as f64 / s
                );
            }
        })
    };
    for l in loaders {
        l.await??;
    }
    progress.abort();
    let loaded = placed.load(std::sync::atomic::Ordering::Relaxed);
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "ecs-bench: {loaded} tasks placed in {load_s:.0} s ({:.0}/s)",
        loaded as f64 / load_s
    );
    let nodes = local.endpoints.len();
    for i in 1..=nodes {
        local.wait_caught_up(i, Duration::from_secs(600)).await?;
    }
    let mut per_node = Vec::new();
    for i in 1..=nodes {
        let rss = resident_bytes(local.pid(i)).unwrap_or(0);
        let peak = peak_resident_bytes(local.pid(i)).unwrap_or(0);
        let disk = dir_bytes(&local.data_dir(i));
        println!(
            "  node {i}: resident memory {:.0} MiB (peak so far {:.0} MiB), data {:.0} MiB",
            rss as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            disk as f64 / 1048576.0
        );
        per_node.push(json!({"node": i, "rss_bytes": rss, "peak_rss_bytes": peak, "data_bytes": disk}));
    }
    let leader = local.wait_for_leader(Duration::from_secs(30)).await?;
    let snapshot = newest_snapshot_bytes(&local.data_dir(leader));
    let me = local.member_status(leader).await?;
    println!(
        "  leader n{leader}: newest snapshot {:.0} MiB; log from index {} (purged before it), last index {}",
        snapshot.unwrap_or(0) as f64 / 1048576.0,
        me["purged_index"].as_u64().map_or(0, |p| p + 1),
        me["last_log_index"]
    );
    // A new node: empty, added through the admin API, caught up by the leader.
    let began = Instant::now();
    let added = local.add_node().await?;
    let added_s = began.elapsed().as_secs_f64();
    local.wait_caught_up(added, Duration::from_secs(900)).await?;
    let catch_up_s = began.elapsed().as_secs_f64();
    let added_snapshot = local.member_status(added).await?["snapshot_index"].clone();
    println!(
        "  new node n{added}: added as a voter after {added_s:.1} s, caught up after {catch_up_s:.1} s (its snapshot: index {added_snapshot})"
    );
    // Each node's highest resident memory since it started: the load, the snapshot builds, and
    // the new node's install and catch-up.
    let peaks: Vec<u64> = (1..=added)
        .map(|i| peak_resident_bytes(local.pid(i)).unwrap_or(0))
        .collect();
    let shown: Vec<String> = peaks
        .iter()
        .enumerate()
        .map(|(i, b)| format!("n{} {:.0} MiB", i + 1, *b as f64 / 1048576.0))
        .collect();
    println!("  peak resident memory so far: {}", shown.join(", "));
    // A restart of a follower: from the kill to serving linearizable reads, caught up.
    let follower = (1..=nodes).find(|i| *i != leader).unwrap_or(1);
    local.kill(follower);
    let began = Instant::now();
    local.restart(follower)?;
    let only = Ecs::new(vec![local.endpoints[follower - 1].clone()])?;
    wait_until(
        "the restarted node to serve a read",
        Duration::from_secs(600),
        async || {
            Ok(only
                .once("DescribeClusters", &json!({"clusters": ["bench-scale"]}), false)
                .await
                .is_ok())
        },
    )
    .await?;
    let serving_s = began.elapsed().as_secs_f64();
    local.wait_caught_up(follower, Duration::from_secs(600)).await?;
    let restart_s = began.elapsed().as_secs_f64();
    println!("  restarted node n{follower}: serving linearizable reads after {serving_s:.1} s, caught up after {restart_s:.1} s");
    Ok(json!({
        "tasks": loaded, "services": load.services, "instances": instances,
        "load_s": load_s, "nodes": per_node, "snapshot_bytes": snapshot,
        "new_node_added_s": added_s, "new_node_caught_up_s": catch_up_s,
        "new_node_snapshot_index": added_snapshot, "peak_rss_bytes": peaks,
        "restart_serving_s": serving_s, "restart_caught_up_s": restart_s,
    }))
}

/// The load plan `--rate`, `--concurrency`, `--warmup` and `--duration` ask for.
fn plan_of(load: &LoadArgs) -> Plan {
    let model = match load.rate {
        Some(rate) => Model::Open {
            rate,
            concurrency: load.concurrency,
        },
        None => Model::Closed {
            concurrency: load.concurrency,
        },
    };
    Plan {
        model,
        warmup: Duration::from_secs(load.warmup),
        duration: Duration::from_secs(load.duration),
    }
}

/// `--workload placement`: RunTask of 10 tasks at a time on `--instances` simulated instances;
/// a request counts when all 10 tasks were placed. Reports placements acknowledged per second
/// (and tasks: ten times that), then the time until every placed task is RUNNING.
async fn placement(ecs: Ecs, load: &LoadArgs) -> anyhow::Result<Report> {
    let timeout = Duration::from_secs(300);
    ecs.call("CreateCluster", json!({"clusterName": "bench-place"})).await?;
    let stop = sim_instances(&ecs, "bench-place", load.instances, 1_000_000, timeout).await?;
    println!("ecs-bench: {} simulated instances registered", load.instances);
    let ecs = Arc::new(ecs);
    let runner = ecs.clone();
    let results = drive(plan_of(load), "ecsd placement", move |_| {
        let ecs = runner.clone();
        async move {
            let body = json!({"cluster": "bench-place", "taskDefinition": "bench", "count": 10, "startedBy": "bench"});
            let v = ecs.once("RunTask", &body, false).await?;
            match v["tasks"].as_array().map_or(0, Vec::len) {
                10 => Ok(()),
                n => Err(format!("RunTask placed {n} of 10: {}", v["failures"])),
            }
        }
    })
    .await;
    let report = results.report();
    let placed_at = Instant::now();
    let running = wait_until("every placed task to be RUNNING", timeout, async || {
        let c = ecs
            .call("DescribeClusters", json!({"clusters": ["bench-place"]}))
            .await?;
        Ok(c["clusters"][0]["pendingTasksCount"] == 0)
    })
    .await;
    if load.smoke && running.is_ok() {
        // Every task the measured requests placed (ten each; the warm-up's come on top) runs.
        let c = ecs
            .call("DescribeClusters", json!({"clusters": ["bench-place"]}))
            .await?;
        let running_tasks = c["clusters"][0]["runningTasksCount"].as_u64().unwrap_or(0);
        if running_tasks < report.ok * 10 {
            stop.cancel();
            bail!(
                "smoke: placement: {running_tasks} tasks RUNNING, fewer than the {} placed",
                report.ok * 10
            );
        }
    }
    match running {
        Ok(_) => println!(
            "ecs-bench: {:.0} tasks placed/s ({:.0} RunTask/s of 10); every task RUNNING {:.2} s after the load ended",
            report.throughput_per_s * 10.0,
            report.throughput_per_s,
            placed_at.elapsed().as_secs_f64()
        ),
        Err(e) if load.smoke => {
            stop.cancel();
            bail!("smoke: placement did not converge: {e:#}");
        }
        Err(e) => println!("ecs-bench: {e}"),
    }
    stop.cancel();
    Ok(report)
}

/// `ecs-bench report`: the Markdown report and its chart.
fn report(files: &[PathBuf], out: &std::path::Path) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
        let value: Value = serde_json::from_str(&text).with_context(|| f.display().to_string())?;
        let name = f.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
        runs.push((name, value));
    }
    let stem = out
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    use ecsd::bench::report as r;
    let mut charts: Vec<(&str, String)> = Vec::new();
    // (alt text, file suffix, the chart, or None when no run has its data)
    let throughput = r::series(&runs);
    let latency = r::latency_series(&runs);
    let kills = r::failover_series(&runs);
    let around = r::failover_timeline_series(&runs);
    let drawn = [
        (
            "throughput per second",
            "throughput",
            (!throughput.is_empty()).then(|| r::throughput_svg(&throughput)),
        ),
        (
            "p99 latency per second",
            "latency",
            (!latency.is_empty())
                .then(|| r::line_svg("p99 latency (ms) per second", "second of the measured run", &latency)),
        ),
        (
            "unavailability per leader kill",
            "failover",
            (!kills.is_empty())
                .then(|| r::line_svg("unavailability after each kill -9 of the leader (ms)", "kill", &kills)),
        ),
        (
            "writes around the leader kills",
            "failover-timeline",
            (!around.is_empty()).then(|| {
                r::line_svg(
                    "writes answered per 100 ms around a kill -9 of the leader (sum over the kills)",
                    "100 ms bins, from 1 s before the kill (bin 10 starts at the kill) to 3 s after",
                    &around,
                )
            }),
        ),
    ];
    for (alt, suffix, svg) in drawn {
        if let Some(svg) = svg {
            let file = format!("{stem}-{suffix}.svg");
            std::fs::write(out.with_file_name(&file), svg)?;
            charts.push((alt, file));
        }
    }
    std::fs::write(out, r::markdown(&runs, &charts))?;
    let files: Vec<&str> = charts.iter().map(|(_, f)| f.as_str()).collect();
    println!("ecs-bench: {} written, with {}", out.display(), files.join(", "));
    Ok(())
}
