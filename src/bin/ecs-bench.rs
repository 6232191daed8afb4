//! ecs-bench: measures an ecsd cluster through its ECS API, with simulated container instances
//! run in this process (the `sim` agent runtime over shared connections).
//!
//! Scenarios:
//! - `service-scale`: scale one service from 0 to `--tasks` tasks on `--instances` simulated
//!   instances; the time until the service reaches steady state (all RUNNING, one deployment),
//!   and each task's time from launch to RUNNING (createdAt → startedAt), over `--runs` runs.
//!
//! Point it at a running cluster, e.g. `ecsd dev --no-agents` (nodes on 127.0.0.1:8101-8103).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use ecsd::agent::client::{run_with, AgentConfig, Connections, RuntimeKind, AGENT_VERSION};
use ecsd::agent::sim::SimSettings;
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

/// An ECS client over plain HTTP, round-robin over the nodes, retrying server errors.
struct Ecs {
    http: reqwest::Client,
    endpoints: Vec<String>,
    turn: std::sync::atomic::AtomicUsize,
}

impl Ecs {
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
    let ecs = Ecs {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        endpoints: args.endpoints.split(',').map(|e| e.trim().to_string()).collect(),
        turn: Default::default(),
    };
    match args.scenario {
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
    let stop = CancellationToken::new();
    let connections = Connections::default();
    for k in 0..instances {
        let mut endpoints = ecs.endpoints.clone();
        let n = endpoints.len();
        endpoints.rotate_left(k % n);
        let config = AgentConfig {
            endpoints,
            cluster: cluster.clone(),
            cpu: 1024,
            memory: 128 * per_instance.max(1),
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
        Ok(c["clusters"][0]["registeredContainerInstancesCount"] == instances)
    })
    .await?;
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
