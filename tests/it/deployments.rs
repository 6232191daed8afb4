//! The service scheduler on a 3-node cluster with simulated and process agents: steady state,
//! rolling deployments within their limits, failover of the leader in the middle of one,
//! draining, DAEMON services, and the events ECS would show.

use std::time::Duration;

use ecs_agent::client::{run_with, AgentConfig, Connections, RuntimeKind};
use ecs_agent::sim::SimSettings;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::harness::{strings, wait_for, TestCluster};

const LONG: Duration = Duration::from_secs(60);

/// The restart back-off of `unplaceable_and_failing_tasks_wait_without_spinning` (ms), and how
/// many launches it fails in a row (waits of 1, 2 and 4 s: the back-off doubles each round).
const BACKOFF_MS: i64 = 1_000;
const FAILED_ROUNDS: usize = 3;

/// Starts `count` simulated instances named `i-<prefix>-<k>` in cluster `cluster`, spread over
/// three availability zones, each with 1024 CPU units and 1024 MiB.
fn start_sim_agents(
    cluster: &TestCluster,
    name: &str,
    prefix: &str,
    count: usize,
    settings: SimSettings,
    stop: &CancellationToken,
) {
    let connections = Connections::default();
    for k in 0..count {
        let mut endpoints: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
        endpoints.rotate_left(k % 3);
        let config = AgentConfig {
            endpoints,
            cluster: name.into(),
            cpu: 1024,
            memory: 1024,
            attributes: vec![(
                "ecs.availability-zone".into(),
                Some(format!("zone-{}", (b'a' + (k % 3) as u8) as char)),
            )],
            log_dir: std::env::temp_dir(),
            heartbeat: Duration::from_millis(500),
            ec2_instance_id: format!("i-{prefix}-{k}"),
            runtime: RuntimeKind::Sim(settings.clone()),
            agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
            state_dir: None,
        };
        tokio::spawn(run_with(config, connections.clone(), stop.clone()));
    }
}

async fn wait_instances(cluster: &TestCluster, name: &str, count: usize) {
    wait_for("instances registered", LONG, || async {
        let c = cluster
            .ok_retrying(2, "DescribeClusters", json!({"clusters": [name]}))
            .await;
        (c["clusters"][0]["registeredContainerInstancesCount"] == count).then_some(())
    })
    .await;
}

fn definition(family: &str, memory: u64) -> Value {
    json!({"family": family, "containerDefinitions": [{"name": "c", "image": "x", "memory": memory}]})
}

async fn describe(cluster: &TestCluster, node: u64, name: &str, service: &str) -> Value {
    let d = cluster
        .ok_retrying(
            node,
            "DescribeServices",
            json!({"cluster": name, "services": [service]}),
        )
        .await;
    d["services"][0].clone()
}

/// The service has one deployment, of `td`, and exactly its desired count RUNNING.
fn is_stable(s: &Value, td: &str) -> bool {
    let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
    deployments.len() == 1
        && deployments[0]["taskDefinition"]
            .as_str()
            .is_some_and(|t| t.ends_with(td))
        && s["runningCount"] == s["desiredCount"]
        && s["pendingCount"] == 0
}

async fn wait_stable(cluster: &TestCluster, name: &str, service: &str, td: &str) -> Value {
    wait_for(&format!("service {service} stable on {td}"), LONG, || async {
        let s = describe(cluster, 3, name, service).await;
        is_stable(&s, td).then_some(s)
    })
    .await
}

/// The service's tasks that are meant to run, described.
async fn service_tasks(cluster: &TestCluster, name: &str, service: &str) -> Vec<Value> {
    let list = cluster
        .ok_retrying(1, "ListTasks", json!({"cluster": name, "serviceName": service}))
        .await;
    let arns = strings(&list["taskArns"]);
    if arns.is_empty() {
        return Vec::new();
    }
    let d = cluster
        .ok_retrying(1, "DescribeTasks", json!({"cluster": name, "tasks": arns}))
        .await;
    d["tasks"].as_array().cloned().unwrap_or_default()
}

fn messages(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls the service until its deployment of `td` completes, asserting at every observation
/// that RUNNING never drops below the minimum and RUNNING + PENDING never exceeds the maximum.
async fn watch_rollout(cluster: &TestCluster, name: &str, service: &str, td: &str, min: i64, max: i64) -> usize {
    let mut observations = 0;
    wait_for("the rollout to complete within its limits", LONG, || {
        observations += 1;
        async move {
            let s = describe(cluster, 1, name, service).await;
            let running = s["runningCount"].as_i64().unwrap();
            let pending = s["pendingCount"].as_i64().unwrap();
            assert!(running >= min, "RUNNING {running} below the minimum {min}: {s}");
            assert!(
                running + pending <= max,
                "RUNNING+PENDING {} above the maximum {max}: {s}",
                running + pending
            );
            is_stable(&s, td).then_some(())
        }
    })
    .await;
    observations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reaches_steady_state_and_rolls_out_within_its_limits() {
    let cluster = TestCluster::start(3, |c| c.agent.heartbeat_timeout_ms = 120_000).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "dp"})).await;
    let stop = CancellationToken::new();
    let slow = SimSettings {
        start: Duration::from_millis(150),
        ..SimSettings::default()
    };
    start_sim_agents(&cluster, "dp", "roll", 6, slow, &stop);
    wait_instances(&cluster, "dp", 6).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("web", 128)).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("web", 96)).await;

    tracing::info!("--- create: 10 tasks, spread over three zones");
    let created = cluster
        .ok(
            3,
            "CreateService",
            json!({"cluster": "dp", "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 10}),
        )
        .await;
    assert_eq!(created["service"]["events"], json!([]));
    let s = wait_stable(&cluster, "dp", "web", "web:1").await;
    let first = s["deployments"][0]["id"].as_str().unwrap().to_string();
    let tasks = service_tasks(&cluster, "dp", "web").await;
    assert_eq!(tasks.len(), 10);
    for t in &tasks {
        assert_eq!(t["startedBy"], first.as_str(), "{t}");
        assert_eq!(t["group"], "service:web", "{t}");
        assert_eq!(t["lastStatus"], "RUNNING", "{t}");
    }
    let instances = cluster.ok(1, "ListContainerInstances", json!({"cluster": "dp"})).await;
    let described = cluster
        .ok(
            1,
            "DescribeContainerInstances",
            json!({"cluster": "dp", "containerInstances": instances["containerInstanceArns"]}),
        )
        .await;
    // Balanced by zone (4/3/3) and by instance within a zone (2/2, 2/1, 2/1).
    let mut per_zone = std::collections::BTreeMap::new();
    for ci in described["containerInstances"].as_array().unwrap() {
        let zone = ci["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "ecs.availability-zone")
            .map(|a| a["value"].as_str().unwrap().to_string())
            .unwrap();
        let n = tasks
            .iter()
            .filter(|t| t["containerInstanceArn"] == ci["containerInstanceArn"])
            .count();
        assert!((1..=2).contains(&n), "instance imbalance: {n} tasks");
        *per_zone.entry(zone).or_insert(0) += n;
    }
    let mut counts: Vec<usize> = per_zone.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![3, 3, 4], "zones: {per_zone:?}");
    let s = wait_for("the steady-state event", LONG, || async {
        let s = describe(&cluster, 2, "dp", "web").await;
        messages(&s)
            .first()
            .is_some_and(|m| m == "(service web) has reached a steady state.")
            .then_some(s)
    })
    .await;
    let events = messages(&s);
    let started: usize = events
        .iter()
        .filter_map(|m| m.strip_prefix("(service web) has started "))
        .map(|m| m.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(started, 10, "{events:?}");

    tracing::info!("--- a desiredCount-only change keeps the deployment");
    let u = cluster
        .ok(
            1,
            "UpdateService",
            json!({"cluster": "dp", "service": "web", "desiredCount": 8}),
        )
        .await;
    assert_eq!(u["service"]["deployments"][0]["id"], first.as_str());
    wait_for("scale-in to 8", LONG, || async {
        let s = describe(&cluster, 2, "dp", "web").await;
        (s["runningCount"] == 8 && service_tasks(&cluster, "dp", "web").await.len() == 8).then_some(())
    })
    .await;

    tracing::info!("--- rolling update at 50/150: min 5, max 15 of 10");
    cluster
        .ok(
            2,
            "UpdateService",
            json!({"cluster": "dp", "service": "web", "desiredCount": 10, "taskDefinition": "web:2",
                   "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150}}),
        )
        .await;
    let observed = watch_rollout(&cluster, "dp", "web", "web:2", 5, 15).await;
    assert!(observed > 1, "the rollout was watched");
    let tasks = service_tasks(&cluster, "dp", "web").await;
    assert_eq!(tasks.len(), 10);
    assert!(tasks
        .iter()
        .all(|t| t["taskDefinitionArn"].as_str().unwrap().ends_with("web:2")));
    let s = describe(&cluster, 2, "dp", "web").await;
    assert!(
        messages(&s).iter().any(|m| m.starts_with("(service web) has stopped ")),
        "{s}"
    );

    tracing::info!("--- 100/100 cannot move, and says so");
    cluster
        .ok(
            2,
            "UpdateService",
            json!({"cluster": "dp", "service": "web", "taskDefinition": "web:1",
                   "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 100}}),
        )
        .await;
    wait_for("the deployment-configuration event", LONG, || async {
        let s = describe(&cluster, 3, "dp", "web").await;
        messages(&s)
            .iter()
            .any(|m| m.contains("was unable to stop or start tasks during a deployment because of the service deployment configuration"))
            .then_some(())
    })
    .await;
    let s = describe(&cluster, 3, "dp", "web").await;
    assert_eq!(s["deployments"].as_array().unwrap().len(), 2, "{s}");
    assert_eq!(s["runningCount"], 10);

    tracing::info!("--- delete: DRAINING, then INACTIVE once its tasks stopped");
    let d = cluster
        .ok(
            1,
            "DeleteService",
            json!({"cluster": "dp", "service": "web", "force": true}),
        )
        .await;
    assert_eq!(d["service"]["status"], "DRAINING");
    wait_for("the service INACTIVE", LONG, || async {
        (describe(&cluster, 2, "dp", "web").await["status"] == "INACTIVE").then_some(())
    })
    .await;
    assert!(service_tasks(&cluster, "dp", "web").await.is_empty());
    stop.cancel();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_completes_under_a_new_leader() {
    let mut cluster = TestCluster::start(3, |c| c.agent.heartbeat_timeout_ms = 120_000).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "dp"})).await;
    let stop = CancellationToken::new();
    let slow = SimSettings {
        start: Duration::from_millis(400),
        ..SimSettings::default()
    };
    start_sim_agents(&cluster, "dp", "fail", 6, slow, &stop);
    wait_instances(&cluster, "dp", 6).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("api", 128)).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("api", 64)).await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "dp", "serviceName": "api", "taskDefinition": "api:1", "desiredCount": 12,
                   "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 100}}),
        )
        .await;
    wait_stable(&cluster, "dp", "api", "api:1").await;
    let leader = cluster.leader().await;
    let other = cluster.other_than(leader);
    cluster
        .ok(
            other,
            "UpdateService",
            json!({"cluster": "dp", "service": "api", "taskDefinition": "api:2"}),
        )
        .await;
    // Kill the leader once the deployment is under way: some new tasks exist, old ones remain.
    wait_for("the deployment under way", LONG, || async {
        let s = describe(&cluster, other, "dp", "api").await;
        let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
        (deployments.len() == 2
            && deployments[0]["pendingCount"].as_i64().unwrap_or(0)
                + deployments[0]["runningCount"].as_i64().unwrap_or(0)
                > 0)
        .then_some(())
    })
    .await;
    tracing::info!("--- killing the leader mid-deployment");
    let leader = cluster.stop_leader().await;
    let survivor = cluster.other_than(leader);
    let s = wait_for("the deployment to complete under the new leader", LONG, || async {
        let s = describe(&cluster, survivor, "dp", "api").await;
        let running = s["runningCount"].as_i64().unwrap();
        let pending = s["pendingCount"].as_i64().unwrap();
        assert!(running + pending <= 12, "above the maximum: {s}");
        is_stable(&s, "api:2").then_some(s)
    })
    .await;
    assert_eq!(s["desiredCount"], 12);
    // Exactly the desired count, all of the new revision, all RUNNING: none extra, none missing.
    let list = cluster
        .ok_retrying(survivor, "ListTasks", json!({"cluster": "dp", "serviceName": "api"}))
        .await;
    let arns = strings(&list["taskArns"]);
    assert_eq!(arns.len(), 12, "{list}");
    let d = cluster
        .ok_retrying(survivor, "DescribeTasks", json!({"cluster": "dp", "tasks": arns}))
        .await;
    for t in d["tasks"].as_array().unwrap() {
        assert_eq!(t["lastStatus"], "RUNNING", "{t}");
        assert!(t["taskDefinitionArn"].as_str().unwrap().ends_with("api:2"), "{t}");
    }
    stop.cancel();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_moves_service_tasks_and_daemons_follow_instances() {
    let cluster = TestCluster::start(3, |c| c.agent.heartbeat_timeout_ms = 120_000).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "dr"})).await;
    let stop = CancellationToken::new();
    start_sim_agents(&cluster, "dr", "dr", 3, SimSettings::default(), &stop);
    wait_instances(&cluster, "dr", 3).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("w", 64)).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("d", 32)).await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "dr", "serviceName": "w", "taskDefinition": "w", "desiredCount": 6}),
        )
        .await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "dr", "serviceName": "d", "taskDefinition": "d", "schedulingStrategy": "DAEMON"}),
        )
        .await;
    wait_stable(&cluster, "dr", "w", "w:1").await;
    let daemon = wait_stable(&cluster, "dr", "d", "d:1").await;
    assert_eq!(daemon["desiredCount"], 3);
    let daemon_tasks = service_tasks(&cluster, "dr", "d").await;
    let mut hosts: Vec<String> = daemon_tasks
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "one daemon task per instance");

    tracing::info!("--- drain one instance");
    let drained = service_tasks(&cluster, "dr", "w").await[0]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    cluster
        .ok(
            2,
            "UpdateContainerInstancesState",
            json!({"cluster": "dr", "containerInstances": [drained], "status": "DRAINING"}),
        )
        .await;
    wait_for("the drained instance's tasks moved", LONG, || async {
        let w = describe(&cluster, 3, "dr", "w").await;
        let d = describe(&cluster, 3, "dr", "d").await;
        let on_drained = |tasks: &[Value]| tasks.iter().any(|t| t["containerInstanceArn"] == drained.as_str());
        let w_tasks = service_tasks(&cluster, "dr", "w").await;
        let d_tasks = service_tasks(&cluster, "dr", "d").await;
        (is_stable(&w, "w:1")
            && w_tasks.len() == 6
            && !on_drained(&w_tasks)
            && is_stable(&d, "d:1")
            && d["desiredCount"] == 2
            && d_tasks.len() == 2
            && !on_drained(&d_tasks))
        .then_some(())
    })
    .await;

    tracing::info!("--- a fourth instance joins: it gets a daemon task");
    start_sim_agents(&cluster, "dr", "late", 1, SimSettings::default(), &stop);
    wait_instances(&cluster, "dr", 4).await;
    wait_for("a daemon task on the new instance", LONG, || async {
        let d = describe(&cluster, 1, "dr", "d").await;
        (is_stable(&d, "d:1") && d["desiredCount"] == 3 && service_tasks(&cluster, "dr", "d").await.len() == 3)
            .then_some(())
    })
    .await;
    stop.cancel();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplaceable_and_failing_tasks_wait_without_spinning() {
    let cluster = TestCluster::start(3, |c| {
        c.agent.heartbeat_timeout_ms = 120_000;
        c.services.restart_backoff_ms = BACKOFF_MS as u64;
    })
    .await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "un"})).await;
    let stop = CancellationToken::new();
    start_sim_agents(&cluster, "un", "un", 1, SimSettings::default(), &stop);
    wait_instances(&cluster, "un", 1).await;

    tracing::info!("--- a static host port: the second task cannot be placed");
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "port", "containerDefinitions": [{"name": "c", "image": "x", "memory": 32,
                   "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]}),
        )
        .await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "un", "serviceName": "p", "taskDefinition": "port", "desiredCount": 2}),
        )
        .await;
    // The first task starts (the agent takes a moment), the second has no port left.
    wait_for("the placement-failure event, one task RUNNING", LONG, || async {
        let s = describe(&cluster, 2, "un", "p").await;
        (s["runningCount"] == 1
            && messages(&s)
                .iter()
                .any(|m| m.contains("is already using a port required by your task")))
        .then_some(())
    })
    .await;
    let before = cluster
        .ok_retrying(3, "DescribeServices", json!({"cluster": "un", "services": ["p"]}))
        .await;
    // Nothing changes while nothing changes: no new events, no new tasks (checked across
    // several scheduler passes, each at most 2 s apart).
    let applied = |status: &Value| status["members"][0]["applied_index"].as_u64().unwrap_or(0);
    let status = |c: &TestCluster| {
        let url = format!("{}/cluster/status", c.url(1));
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    let first = applied(&status(&cluster).await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = cluster
        .ok_retrying(3, "DescribeServices", json!({"cluster": "un", "services": ["p"]}))
        .await;
    assert_eq!(before["services"][0]["events"], after["services"][0]["events"]);
    assert_eq!(after["services"][0]["runningCount"], 1);
    let second = applied(&status(&cluster).await);
    assert!(
        second - first < 10,
        "the log grew by {} entries while idle",
        second - first
    );
    // The positive control of that wait: the scheduler was alive and only waiting for the
    // instances to change. A second instance joins, and the second task is placed on it.
    start_sim_agents(&cluster, "un", "un-more", 1, SimSettings::default(), &stop);
    wait_instances(&cluster, "un", 2).await;
    wait_for("the second task placed once an instance joined", LONG, || async {
        (describe(&cluster, 2, "un", "p").await["runningCount"] == 2).then_some(())
    })
    .await;

    tracing::info!("--- tasks that fail to start are replaced, each time after a longer back-off");
    cluster
        .ok(
            1,
            "DeleteService",
            json!({"cluster": "un", "service": "p", "force": true}),
        )
        .await;
    // An instance whose tasks take an hour to start: a launch stays PENDING until reported.
    cluster.ok(1, "CreateCluster", json!({"clusterName": "bf"})).await;
    let slow = SimSettings {
        start: Duration::from_secs(3600),
        ..SimSettings::default()
    };
    start_sim_agents(&cluster, "bf", "bf", 1, slow, &stop);
    wait_instances(&cluster, "bf", 1).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("bad", 32)).await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "bf", "serviceName": "bad", "taskDefinition": "bad", "desiredCount": 1}),
        )
        .await;
    // Fail each launch by reporting it STOPPED before it ever ran. The service must replace
    // it (the positive control: a scheduler that gave up would time out here), and only once
    // the back-off has passed since the failure: 1 s, then 2 s, then 4 s (doubling per round).
    let created_ms = |t: &Value| (t["createdAt"].as_f64().unwrap() * 1000.0).round() as i64;
    let mut failed: Vec<String> = Vec::new();
    let mut last_stop_ms: Option<i64> = None;
    for round in 0..=FAILED_ROUNDS {
        let task = wait_for(
            &format!("launch {} of the failing service", round + 1),
            LONG,
            || async {
                let tasks = service_tasks(&cluster, "bf", "bad").await;
                tasks
                    .into_iter()
                    .find(|t| !failed.iter().any(|f| t["taskArn"] == f.as_str()))
            },
        )
        .await;
        let arn = task["taskArn"].as_str().unwrap().to_string();
        assert_eq!(task["lastStatus"], "PENDING", "{task}");
        if let Some(stopped) = last_stop_ms {
            let backoff = BACKOFF_MS << (round - 1);
            let gap = created_ms(&task) - stopped;
            tracing::info!(round, gap, backoff, "replacement launched");
            assert!(
                gap >= backoff,
                "launch {} came {gap} ms after the last failure, before its back-off of {backoff} ms",
                round + 1
            );
        }
        if round == FAILED_ROUNDS {
            break;
        }
        cluster
            .ok(
                2,
                "SubmitTaskStateChange",
                json!({"cluster": "bf", "task": arn, "status": "STOPPED", "reason": "CannotPullContainerError: no image"}),
            )
            .await;
        let t = cluster
            .ok_retrying(1, "DescribeTasks", json!({"cluster": "bf", "tasks": [arn]}))
            .await;
        assert_eq!(t["tasks"][0]["stopCode"], "TaskFailedToStart", "{t}");
        last_stop_ms = Some((t["tasks"][0]["stoppedAt"].as_f64().unwrap() * 1000.0).round() as i64);
        failed.push(arn);
    }
    let s = describe(&cluster, 3, "bf", "bad").await;
    assert_eq!(s["pendingCount"], 1, "one replacement at a time: {s}");
    stop.cancel();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_real_processes_replaces_one_that_is_killed() {
    let cluster = TestCluster::start(3, |c| c.agent.heartbeat_timeout_ms = 120_000).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "pr"})).await;
    let logs = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    for k in 0..3usize {
        let config = AgentConfig {
            endpoints: (1..=3).map(|id| cluster.url(id)).collect(),
            cluster: "pr".into(),
            cpu: 1024,
            memory: 1024,
            attributes: vec![("ecs.availability-zone".into(), Some(format!("zone-{k}")))],
            log_dir: logs.path().join(format!("agent-{k}")),
            heartbeat: Duration::from_millis(500),
            ec2_instance_id: format!("i-proc-{k}"),
            runtime: RuntimeKind::Process,
            agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
            state_dir: None,
        };
        tokio::spawn(run_with(config, Connections::default(), stop.clone()));
    }
    wait_instances(&cluster, "pr", 3).await;
    // A duration no other process on the machine has: it marks this test's processes.
    let marker = format!("600.{:018}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000_000);
    let argv = ["sleep", marker.as_str()];
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "sleeper", "containerDefinitions": [
                {"name": "main", "image": "busybox", "memory": 16, "command": argv}]}),
        )
        .await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "pr", "serviceName": "s", "taskDefinition": "sleeper", "desiredCount": 3}),
        )
        .await;
    wait_stable(&cluster, "pr", "s", "sleeper:1").await;
    let tasks = service_tasks(&cluster, "pr", "s").await;
    assert_eq!(tasks.len(), 3);
    // The positive control of the check after the delete: the scan of /proc finds exactly the
    // processes the agents report for the service's tasks.
    let pids = task_pids(&tasks);
    assert_eq!(
        processes_with_argv(&argv),
        pids,
        "the service's processes, by pid and by argv"
    );
    let victim = tasks[0]["taskArn"].as_str().unwrap().to_string();
    let pid = task_pids(&tasks[..1]).into_iter().next().unwrap().to_string();

    tracing::info!(pid, "--- kill -9 one task's process: the service replaces the task");
    let status = std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(status.success());
    let stopped = wait_for("the killed task STOPPED", LONG, || async {
        let d = cluster
            .ok_retrying(2, "DescribeTasks", json!({"cluster": "pr", "tasks": [victim]}))
            .await;
        (d["tasks"][0]["lastStatus"] == "STOPPED").then(|| d["tasks"][0].clone())
    })
    .await;
    assert_eq!(
        stopped["stoppedReason"], "Essential container in task exited",
        "{stopped}"
    );
    let tasks = wait_for("a replacement RUNNING", LONG, || async {
        let s = describe(&cluster, 3, "pr", "s").await;
        let tasks = service_tasks(&cluster, "pr", "s").await;
        (is_stable(&s, "sleeper:1") && tasks.len() == 3 && tasks.iter().all(|t| t["taskArn"] != victim.as_str()))
            .then_some(tasks)
    })
    .await;
    let pids = task_pids(&tasks);
    wait_for("the processes of the current tasks, and no other", LONG, || async {
        (processes_with_argv(&argv) == pids).then_some(())
    })
    .await;

    tracing::info!("--- deleting the service stops its processes");
    cluster
        .ok(
            1,
            "DeleteService",
            json!({"cluster": "pr", "service": "s", "force": true}),
        )
        .await;
    wait_for("the service INACTIVE", LONG, || async {
        (describe(&cluster, 2, "pr", "s").await["status"] == "INACTIVE").then_some(())
    })
    .await;
    // The agents' processes are really gone, not only reported STOPPED.
    wait_for("the service's processes to exit", LONG, || async {
        let left = processes_with_argv(&argv);
        tracing::debug!(?left, "processes left");
        left.is_empty().then_some(())
    })
    .await;
    stop.cancel();
    cluster.shutdown().await;
}

/// The pids of the tasks' first containers, from the process runtime's ids (`pid-<pid>`).
fn task_pids(tasks: &[Value]) -> std::collections::BTreeSet<u32> {
    tasks
        .iter()
        .map(|t| {
            t["containers"][0]["runtimeId"]
                .as_str()
                .and_then(|r| r.strip_prefix("pid-"))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("a process runtime id: {t}"))
        })
        .collect()
}

/// The live processes on this machine whose argv is exactly `argv` (from `/proc/<pid>/cmdline`;
/// an exited process, zombie or gone, has none).
fn processes_with_argv(argv: &[&str]) -> std::collections::BTreeSet<u32> {
    let mut wanted = argv.join("\0").into_bytes();
    wanted.push(0);
    let mut found = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == wanted) {
            found.insert(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_lost_instance_are_replaced() {
    // Wide margins over the agents' 500 ms heartbeats (12x), so the instance that stays is never
    // declared lost on a loaded machine; the one that goes is lost 8 s after its last heartbeat.
    let cluster = TestCluster::start(3, |c| {
        c.agent.heartbeat_timeout_ms = 6_000;
        c.agent.lost_instance_timeout_ms = 8_000;
    })
    .await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "lo"})).await;
    let stays = CancellationToken::new();
    let goes = CancellationToken::new();
    start_sim_agents(&cluster, "lo", "stays", 1, SimSettings::default(), &stays);
    wait_instances(&cluster, "lo", 1).await;
    start_sim_agents(&cluster, "lo", "goes", 1, SimSettings::default(), &goes);
    wait_instances(&cluster, "lo", 2).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("lo", 64)).await;
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "lo", "serviceName": "s", "taskDefinition": "lo", "desiredCount": 4}),
        )
        .await;
    wait_stable(&cluster, "lo", "s", "lo:1").await;
    let tasks = service_tasks(&cluster, "lo", "s").await;
    let hosts: std::collections::BTreeSet<&str> = tasks
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 2, "spread over both instances");

    tracing::info!("--- one agent goes away for good: its tasks are marked STOPPED and replaced");
    goes.cancel();
    let lost = wait_for("the lost instance's tasks STOPPED", LONG, || async {
        let arns: Vec<&str> = tasks.iter().map(|t| t["taskArn"].as_str().unwrap()).collect();
        let d = cluster
            .ok_retrying(2, "DescribeTasks", json!({"cluster": "lo", "tasks": arns}))
            .await;
        let stopped: Vec<Value> = d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["lastStatus"] == "STOPPED")
            .cloned()
            .collect();
        (stopped.len() == 2).then_some(stopped)
    })
    .await;
    for t in &lost {
        assert!(
            t["stoppedReason"]
                .as_str()
                .unwrap()
                .starts_with("Agent disconnected for longer than"),
            "{t}"
        );
    }
    let survivor = wait_for("four tasks again, all on the remaining instance", LONG, || async {
        let s = describe(&cluster, 3, "lo", "s").await;
        let now = service_tasks(&cluster, "lo", "s").await;
        let hosts: std::collections::BTreeSet<String> = now
            .iter()
            .map(|t| t["containerInstanceArn"].as_str().unwrap().to_string())
            .collect();
        (is_stable(&s, "lo:1") && now.len() == 4 && hosts.len() == 1).then_some(hosts)
    })
    .await;
    assert!(!survivor.contains(lost[0]["containerInstanceArn"].as_str().unwrap()));
    stays.cancel();
    cluster.shutdown().await;
}
