//! `ecs-bench service-scale`: one service from 0 to N tasks, timed to steady state.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::ecs::Ecs;
use crate::placement::sim_instances;
use crate::util::{ms, quantile, wait_until};

pub async fn service_scale(
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
