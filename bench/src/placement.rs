//! The `placement` workload: RunTask of 10 on simulated instances run in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use ecs_agent::client::{run_with, AgentConfig, Connections, RuntimeKind, AGENT_VERSION};
use ecs_agent::sim::SimSettings;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::ecs::Ecs;
use crate::load::{drive, Report};
use crate::settings::LoadArgs;
use crate::util::wait_until;
use crate::workloads::plan_of;

/// Runs `count` simulated container instances of `cluster` in this process (over shared
/// connections, spread over the nodes and three zones), each offering 1024 CPU and `memory`
/// MiB, and waits until they are registered. Cancel the token to stop them.
pub async fn sim_instances(
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
/// `--workload placement`: RunTask of 10 tasks at a time on `--instances` simulated instances;
/// a request counts when all 10 tasks were placed. Reports placements acknowledged per second
/// (and tasks: ten times that), then the time until every placed task is RUNNING.
pub async fn placement(ecs: Ecs, load: &LoadArgs) -> anyhow::Result<Report> {
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
