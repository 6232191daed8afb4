//! Racing RunTasks from many clients through every node while the leader goes away: no instance
//! is ever over-committed, no task is placed twice, and no acknowledged task is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{strings, wait_for, TestCluster};

async fn call(http: &reqwest::Client, url: &str, action: &str, body: Value) -> Option<(u16, Value)> {
    let response = http
        .post(format!("{url}/"))
        .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{action}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_run_tasks_through_a_leader_change_never_over_commit() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "race"})).await;
    for i in 0..3 {
        cluster
            .ok(
                (i % 3) + 1,
                "RegisterContainerInstance",
                json!({"cluster": "race", "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1000},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": []}
                ]}),
            )
            .await;
    }
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "mem", "containerDefinitions": [{"name": "c", "image": "x", "memory": 90, "cpu": 64}]}),
        )
        .await;
    cluster
        .ok(
            3,
            "RegisterTaskDefinition",
            json!({"family": "port", "containerDefinitions": [{"name": "c", "image": "x", "memory": 10,
                "portMappings": [{"containerPort": 80, "hostPort": 9000}]}]}),
        )
        .await;

    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..6usize {
        let urls = urls.clone();
        let stop = stop.clone();
        let placed = placed.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap();
            let mut acked: Vec<String> = Vec::new();
            let mut n = c;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let family = if n % 4 == 0 { "port" } else { "mem" };
                let body = json!({"cluster": "race", "taskDefinition": family, "count": 1 + n % 3});
                if let Some((200, reply)) = call(&http, &urls[n % urls.len()], "RunTask", body).await {
                    for t in reply["tasks"].as_array().unwrap() {
                        acked.push(t["taskArn"].as_str().unwrap().to_string());
                    }
                    // Answered, placed or not (the cluster fills up: then failures come back).
                    placed.fetch_add(1, Ordering::SeqCst);
                }
            }
            acked
        }));
    }

    tracing::info!("--- load runs; the leader goes away and comes back");
    let placed_at_least = |n: usize| {
        let placed = placed.clone();
        move || {
            let placed = placed.clone();
            async move { (placed.load(Ordering::SeqCst) >= n).then_some(()) }
        }
    };
    wait_for(
        "RunTasks answered before the leader change",
        Duration::from_secs(30),
        placed_at_least(20),
    )
    .await;
    let leader = cluster.leader().await;
    cluster.stop(leader).await;
    let before = placed.load(Ordering::SeqCst);
    wait_for(
        "RunTasks answered without the old leader",
        Duration::from_secs(30),
        placed_at_least(before + 10),
    )
    .await;
    cluster.restart(leader).await;
    let before = placed.load(Ordering::SeqCst);
    wait_for(
        "RunTasks answered after it came back",
        Duration::from_secs(30),
        placed_at_least(before + 10),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.unwrap());
    }
    let unique: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a task was acknowledged twice");

    tracing::info!("--- every acknowledged task exists, and no instance holds more than it has");
    let listed = cluster
        .ok(1, "ListContainerInstances", json!({"cluster": "race"}))
        .await;
    let instances = cluster
        .ok(
            2,
            "DescribeContainerInstances",
            json!({"cluster": "race", "containerInstances": listed["containerInstanceArns"]}),
        )
        .await;
    let mut held: BTreeMap<String, (i64, i64, usize)> = BTreeMap::new();
    for chunk in acked.chunks(100) {
        let d = cluster
            .ok(3, "DescribeTasks", json!({"cluster": "race", "tasks": chunk}))
            .await;
        assert_eq!(d["failures"], json!([]), "an acknowledged task is missing");
        for t in d["tasks"].as_array().unwrap() {
            let entry = held
                .entry(t["containerInstanceArn"].as_str().unwrap().to_string())
                .or_default();
            let port = t["taskDefinitionArn"].as_str().unwrap().contains("/port:");
            entry.0 += if port { 0 } else { 64 };
            entry.1 += if port { 10 } else { 90 };
            entry.2 += usize::from(port);
        }
    }
    // Tasks nobody acknowledged (a timed-out reply) may exist too: count them from the cluster.
    let all = cluster.ok(1, "ListTasks", json!({"cluster": "race"})).await;
    let total = strings(&all["taskArns"]).len();
    assert!(total >= acked.len());
    for i in instances["containerInstances"].as_array().unwrap() {
        let arn = i["containerInstanceArn"].as_str().unwrap();
        let value = |name: &str| {
            i["remainingResources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .map(|r| r["integerValue"].as_i64().unwrap())
                .unwrap()
        };
        assert!(value("CPU") >= 0 && value("MEMORY") >= 0, "{arn} over-committed: {i}");
        let (cpu, memory, ports) = held.get(arn).copied().unwrap_or_default();
        assert!(
            cpu <= 1024 - value("CPU"),
            "{arn}: acknowledged tasks hold more CPU than was taken"
        );
        assert!(
            memory <= 1000 - value("MEMORY"),
            "{arn}: acknowledged tasks hold more memory than was taken"
        );
        assert!(ports <= 1, "{arn}: two tasks hold host port 9000");
    }
    cluster.shutdown().await;
}
