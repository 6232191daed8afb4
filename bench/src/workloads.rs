//! The load workloads (write, read, mixed) and their setup.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::ecs::Ecs;
use crate::load::{drive, Model, Plan, Report};
use crate::placement::placement;
use crate::settings::LoadArgs;

/// Sets up what a workload needs on one system (the same calls for ecsd and the peer), then
/// drives it and returns the figures.
pub async fn workload(ecs: Ecs, load: &LoadArgs, system: &str) -> anyhow::Result<Report> {
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
        other => bail!("--workload {other}: write, read, mixed, placement, failover, rolling-restart or scale"),
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
pub async fn register_instance(ecs: &Ecs, cluster: &str, memory: u64, zone: Option<&str>) -> anyhow::Result<()> {
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
pub async fn hundred_tasks(ecs: &Ecs) -> anyhow::Result<Vec<String>> {
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
/// The load plan `--rate`, `--concurrency`, `--warmup` and `--duration` ask for.
pub fn plan_of(load: &LoadArgs) -> Plan {
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
