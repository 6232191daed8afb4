//! The load workloads (write, read, mixed) and their setup.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::ecs::Ecs;
use crate::lean::{Lean, Prepared};
use crate::load::{drive, Model, Plan, Report};
use crate::placement::placement;
use crate::settings::LoadArgs;

/// Sets up what a workload needs on one system (the same calls for ecsd and the peer), then
/// drives it and returns the figures.
/// `watch` names the processes (name, pid) whose CPU is measured beside this one's.
pub async fn workload(ecs: Ecs, load: &LoadArgs, system: &str, watch: &[(String, u32)]) -> anyhow::Result<Report> {
    let created = ecs.call("CreateCluster", json!({"clusterName": "bench"})).await?;
    let cluster_arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let definition = json!({"family": "bench", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    ecs.call("RegisterTaskDefinition", definition).await?;
    ecs.call(
        "CreateService",
        // The token makes a second run against the same cluster (`ecs-bench run`) find the
        // service of the first instead of failing.
        json!({"cluster": "bench", "serviceName": "bench-svc", "taskDefinition": "bench", "desiredCount": 0,
               "clientToken": "ecs-bench-setup-bench-svc"}),
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
        json!({"cluster": "bench", "tasks": arns})
    } else {
        Value::Null
    };
    let read_ratio = match kind {
        "write" => 0.0,
        "read" => 1.0,
        "mixed" => load.read_ratio.clamp(0.0, 1.0),
        other => bail!("--workload {other}: write, read, mixed, placement, failover, rolling-restart or scale"),
    };
    let (plan, stale) = (plan_of(load), load.stale);
    let label = format!("{system} {kind}");
    // Every request of the run, serialised once: the reads, then each write operation's
    // bodies, picked by sequence number.
    let reads = match read_op.as_str() {
        "services" => Prepared::new(
            "DescribeServices",
            &json!({"cluster": "bench", "services": ["bench-svc"]}),
        ),
        "tasks" => Prepared::new("DescribeTasks", &describe_tasks),
        _ => Prepared::new("DescribeClusters", &json!({"clusters": ["bench"]})),
    };
    let taskdefs: Vec<Prepared> = (0..16)
        .map(|k| {
            Prepared::new(
                "RegisterTaskDefinition",
                &json!({"family": format!("bench-{k}"),
                        "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]}),
            )
        })
        .collect();
    let tags: Vec<Prepared> = (0..400)
        .map(|k| {
            Prepared::new(
                "TagResource",
                &json!({"resourceArn": cluster_arn, "tags": [{"key": format!("k{}", k % 40), "value": k.to_string()}]}),
            )
        })
        .collect();
    let scales: Vec<Prepared> = (0..2)
        .map(|n| {
            Prepared::new(
                "UpdateService",
                &json!({"cluster": "bench", "service": "bench-svc", "desiredCount": n}),
            )
        })
        .collect();
    let requests = Arc::new(Requests {
        reads,
        taskdefs,
        tags,
        scales,
    });
    let pick = move |i: u64| -> (bool, &'static str) {
        // A deterministic spread of reads among writes, by sequence number.
        let read = ((i * 7919) % 1000) as f64 / 1000.0 < read_ratio;
        let op = match write_op.as_str() {
            "mix" => ["taskdef", "tag", "scale"][(i % 3) as usize],
            "taskdef" => "taskdef",
            "tag" => "tag",
            _ => "scale",
        };
        (read, op)
    };
    let meter = crate::cpu::meter(watch.to_vec(), plan.warmup, plan.duration);
    let results = if ecs.signs() {
        // A secured cluster: every request signed, over HTTPS, as an SDK sends it.
        let ecs = Arc::new(ecs);
        drive(plan, &label, move |i| {
            let (ecs, requests) = (ecs.clone(), requests.clone());
            let (read, op) = pick(i);
            async move {
                let request = requests.pick(read, op, i);
                ecs.once(request.action, &request.json, read && stale).await.map(|_| ())
            }
        })
        .await
    } else {
        let lean = Arc::new(Lean::new(&ecs.endpoints, stale)?);
        drive(plan, &label, move |i| {
            let (lean, requests) = (lean.clone(), requests.clone());
            let (read, op) = pick(i);
            async move { lean.send(requests.pick(read, op, i), read).await }
        })
        .await
    };
    let mut report = results.report();
    report.cpu_cores = meter.await.unwrap_or_default();
    Ok(report)
}

/// The prepared requests of a run.
struct Requests {
    reads: Prepared,
    taskdefs: Vec<Prepared>,
    tags: Vec<Prepared>,
    scales: Vec<Prepared>,
}

impl Requests {
    fn pick(&self, read: bool, op: &str, i: u64) -> &Prepared {
        let of = |v: &'_ [Prepared]| i as usize % v.len();
        match (read, op) {
            (true, _) => &self.reads,
            (_, "taskdef") => &self.taskdefs[of(&self.taskdefs)],
            (_, "tag") => &self.tags[of(&self.tags)],
            _ => &self.scales[of(&self.scales)],
        }
    }
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
