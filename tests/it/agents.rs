//! Agents with the `process` runtime on a 3-node cluster: tasks really run, report their exit
//! codes and release their resources; StopTask stops them; a silent agent is marked
//! disconnected and gets no new tasks.

use std::time::Duration;

use ecs_agent::client::{run, AgentConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::harness::{wait_for, TestCluster};

/// An agent of cluster `ag` on every node of `cluster`, with 1024 CPU units and 1024 MiB.
fn agent_config(cluster: &TestCluster, name: &str, runtime: ecs_agent::client::RuntimeKind) -> AgentConfig {
    AgentConfig {
        endpoints: (1..=3).map(|id| cluster.url(id)).collect(),
        cluster: "ag".into(),
        cpu: 1024,
        memory: 1024,
        attributes: vec![],
        log_dir: std::env::temp_dir(),
        heartbeat: Duration::from_millis(200),
        ec2_instance_id: name.into(),
        runtime,
        agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
        state_dir: None,
    }
}

fn start_agent(cluster: &TestCluster, name: &str, az: &str, log_dir: &std::path::Path) -> CancellationToken {
    let mut config = agent_config(cluster, name, ecs_agent::client::RuntimeKind::Process);
    config.attributes = vec![("ecs.availability-zone".into(), Some(az.into()))];
    config.log_dir = log_dir.to_path_buf();
    crate::harness::spawn_agent(config)
}

async fn describe_task(cluster: &TestCluster, arn: &str) -> Value {
    let d = cluster
        .ok(2, "DescribeTasks", json!({"cluster": "ag", "tasks": [arn]}))
        .await;
    d["tasks"][0].clone()
}

async fn wait_status(cluster: &TestCluster, arn: &str, status: &str) -> Value {
    wait_for(
        &format!("task {arn} to be {status}"),
        Duration::from_secs(30),
        || async {
            let t = describe_task(cluster, arn).await;
            (t["lastStatus"] == status).then_some(t)
        },
    )
    .await
}

async fn instances(cluster: &TestCluster) -> Vec<Value> {
    instances_at(cluster, 1).await
}

/// The cluster `ag`'s instances, described through node `node` (and node 3 or 2).
async fn instances_at(cluster: &TestCluster, node: u64) -> Vec<Value> {
    let list = cluster
        .ok(node, "ListContainerInstances", json!({"cluster": "ag"}))
        .await;
    let arns = list["containerInstanceArns"].clone();
    if arns.as_array().is_none_or(Vec::is_empty) {
        return Vec::new();
    }
    let d = cluster
        .ok(
            if node == 3 { 2 } else { 3 },
            "DescribeContainerInstances",
            json!({"cluster": "ag", "containerInstances": arns}),
        )
        .await;
    d["containerInstances"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_agents_run_tasks_and_liveness_follows_heartbeats() {
    // 20x the agents' 200 ms heartbeats: a live agent is never taken for a silent one on a
    // loaded machine. The silent one is marked disconnected after 4 s, lost after 6 s.
    let cluster = TestCluster::start(3, |c| {
        c.agent.heartbeat_timeout_ms = 4_000;
        c.agent.lost_instance_timeout_ms = 6_000;
    })
    .await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "ag"})).await;
    let logs = tempfile::tempdir().unwrap();
    let _a = start_agent(&cluster, "i-agent-a", "zone-a", logs.path());
    let b = start_agent(&cluster, "i-agent-b", "zone-b", logs.path());
    let _c = start_agent(&cluster, "i-agent-c", "zone-c", logs.path());
    wait_for("three agents registered", Duration::from_secs(30), || async {
        (instances(&cluster).await.len() == 3).then_some(())
    })
    .await;

    tracing::info!("--- a task runs, prints, and stops with its exit code");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "hello", "containerDefinitions": [{
                "name": "main", "image": "busybox", "memory": 64,
                "command": ["sh", "-c", "echo hello; sleep 1; exit 3"]
            }]}),
        )
        .await;
    let run = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "ag", "taskDefinition": "hello", "placementConstraints": [
                {"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-a"}
            ]}),
        )
        .await;
    assert_eq!(run["failures"], json!([]), "{run}");
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let running = wait_status(&cluster, &arn, "RUNNING").await;
    assert!(running["startedAt"].is_number());
    let stopped = wait_status(&cluster, &arn, "STOPPED").await;
    assert_eq!(stopped["containers"][0]["exitCode"], 3, "{stopped}");
    assert_eq!(stopped["stopCode"], "EssentialContainerExited");
    let id = arn.rsplit('/').next().unwrap();
    let log = std::fs::read_to_string(logs.path().join(id).join("main.log")).unwrap();
    assert!(log.contains("hello"), "{log:?}");
    for i in instances(&cluster).await {
        assert_eq!(i["remainingResources"], i["registeredResources"], "released at STOPPED");
    }

    tracing::info!("--- StopTask stops a long-running task");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "sleeper", "containerDefinitions": [{
                "name": "main", "image": "busybox", "memory": 64, "command": ["sleep", "300"], "stopTimeout": 2
            }]}),
        )
        .await;
    let run = cluster
        .ok(3, "RunTask", json!({"cluster": "ag", "taskDefinition": "sleeper"}))
        .await;
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_status(&cluster, &arn, "RUNNING").await;
    cluster.ok(2, "StopTask", json!({"cluster": "ag", "task": arn})).await;
    let stopped = wait_status(&cluster, &arn, "STOPPED").await;
    assert_eq!(stopped["stopCode"], "UserInitiated");
    assert_eq!(stopped["stoppedReason"], "Task stopped by user");

    tracing::info!("--- a silent agent is marked disconnected and gets no new tasks");
    let b_instance = instances(&cluster)
        .await
        .into_iter()
        .find(|i| i["ec2InstanceId"] == "i-agent-b")
        .unwrap();
    let on_b = cluster
        .ok(
            2,
            "StartTask",
            json!({"cluster": "ag", "taskDefinition": "sleeper", "containerInstances": [b_instance["containerInstanceArn"]]}),
        )
        .await;
    let orphan = on_b["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_status(&cluster, &orphan, "RUNNING").await;
    b.cancel();
    let b_arn = wait_for("agent b disconnected", Duration::from_secs(30), || async {
        instances(&cluster)
            .await
            .into_iter()
            .find(|i| i["ec2InstanceId"] == "i-agent-b" && i["agentConnected"] == false)
            .map(|i| i["containerInstanceArn"].as_str().unwrap().to_string())
    })
    .await;
    let start = cluster
        .ok(
            1,
            "StartTask",
            json!({"cluster": "ag", "taskDefinition": "hello", "containerInstances": [b_arn]}),
        )
        .await;
    assert_eq!(start["failures"], json!([{"arn": b_arn, "reason": "AGENT"}]));
    let a_connected = instances(&cluster)
        .await
        .into_iter()
        .any(|i| i["ec2InstanceId"] == "i-agent-a" && i["agentConnected"] == true);
    assert!(a_connected, "the live agent stays connected");

    tracing::info!("--- the lost-instance policy stops the silent instance's tasks and frees them");
    let lost = wait_status(&cluster, &orphan, "STOPPED").await;
    assert_eq!(lost["stoppedReason"], "Agent disconnected for longer than 6 s");
    let b_now = instances(&cluster)
        .await
        .into_iter()
        .find(|i| i["ec2InstanceId"] == "i-agent-b")
        .unwrap();
    assert_eq!(b_now["remainingResources"], b_now["registeredResources"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simulated_instances_register_and_run_tasks() {
    const INSTANCES: usize = 1000;
    // A thousand agents in this process load the 2 cores: a write may wait longer than the
    // default 5 s hold (seen when other tests ran beside it), which is not what this test is
    // about, so writes are held for up to 30 s.
    let cluster = TestCluster::start(3, |c| {
        c.agent.heartbeat_timeout_ms = 120_000;
        c.api.hold_ms = 30_000;
    })
    .await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "sim"})).await;
    let connections = ecs_agent::client::Connections::default();
    let stop = CancellationToken::new();
    let endpoints: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    for k in 0..INSTANCES {
        let mut endpoints = endpoints.clone();
        endpoints.rotate_left(k % 3);
        let config = AgentConfig {
            endpoints,
            cluster: "sim".into(),
            cpu: 1024,
            memory: 1024,
            attributes: vec![("ecs.availability-zone".into(), Some(format!("zone-{}", k % 3)))],
            log_dir: std::env::temp_dir(),
            heartbeat: Duration::from_secs(10),
            ec2_instance_id: format!("i-sim-{k}"),
            runtime: ecs_agent::client::RuntimeKind::Sim(ecs_agent::sim::SimSettings::default()),
            agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
            state_dir: None,
        };
        tokio::spawn(ecs_agent::client::run_with(config, connections.clone(), stop.clone()));
    }
    wait_for("1000 instances registered", Duration::from_secs(120), || async {
        let c = cluster
            .ok_retrying(2, "DescribeClusters", json!({"clusters": ["sim"]}))
            .await;
        (c["clusters"][0]["registeredContainerInstancesCount"] == INSTANCES).then_some(())
    })
    .await;
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "simt", "containerDefinitions": [{"name": "c", "image": "x", "memory": 128}]}),
        )
        .await;
    let mut arns = Vec::new();
    for i in 0..20u64 {
        let run = cluster
            .ok(
                (i % 3) + 1,
                "RunTask",
                json!({"cluster": "sim", "taskDefinition": "simt", "count": 10,
                       "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}]}),
            )
            .await;
        assert_eq!(run["failures"], json!([]), "{run}");
        for t in run["tasks"].as_array().unwrap() {
            arns.push(t["taskArn"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(arns.len(), 200);
    wait_for(
        "200 tasks RUNNING on simulated instances",
        Duration::from_secs(120),
        || async {
            let mut running = 0;
            for chunk in arns.chunks(100) {
                let d = cluster
                    .ok_retrying(3, "DescribeTasks", json!({"cluster": "sim", "tasks": chunk}))
                    .await;
                running += d["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["lastStatus"] == "RUNNING")
                    .count();
            }
            (running == arns.len()).then_some(())
        },
    )
    .await;
    let c = cluster.ok(2, "DescribeClusters", json!({"clusters": ["sim"]})).await;
    assert_eq!(c["clusters"][0]["runningTasksCount"], 200);
    stop.cancel();
    cluster.shutdown().await;
}

/// The docker runtime with a locally built image (`scripts/busybox-image.sh`): a real container
/// exits 3, and a dynamic host port is reachable where `networkBindings` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_agent_runs_real_containers() {
    let docker = match ecs_agent::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            let reason = format!("no Docker Engine reachable ({e})");
            crate::harness::skip("docker_agent_runs_real_containers", "ECSD_REQUIRE_DOCKER", &reason);
            return;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/busybox-image.sh");
    let built = tokio::process::Command::new("bash").arg(script).status().await.unwrap();
    assert!(built.success(), "building the busybox image failed");

    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "ag"})).await;
    let stop = CancellationToken::new();
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config(
        &cluster,
        "i-docker",
        ecs_agent::client::RuntimeKind::Docker(docker.clone()),
    );
    config.state_dir = Some(state.path().to_path_buf());
    let token = stop.clone();
    let first = config.clone();
    tokio::spawn(async move { run(first, token).await });
    wait_for("the docker agent registered", Duration::from_secs(30), || async {
        (instances(&cluster).await.len() == 1).then_some(())
    })
    .await;

    tracing::info!("--- a real container exits 3");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "exit3", "containerDefinitions": [{
                "name": "main", "image": "ecsd-busybox:latest", "memory": 64,
                "command": ["sh", "-c", "echo hello; sleep 1; exit 3"]
            }]}),
        )
        .await;
    let run_task = cluster
        .ok(2, "RunTask", json!({"cluster": "ag", "taskDefinition": "exit3"}))
        .await;
    let exit_arn = run_task["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let stopped = wait_status(&cluster, &exit_arn, "STOPPED").await;
    assert_eq!(stopped["containers"][0]["exitCode"], 3, "{stopped}");

    tracing::info!("--- an awsvpc task: a Docker network of its own, and its ENI's address answers");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "vpc", "networkMode": "awsvpc", "containerDefinitions": [{
                "name": "web", "image": "ecsd-busybox:latest", "memory": 64, "stopTimeout": 2,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "portMappings": [{"containerPort": 8080}]
            }]}),
        )
        .await;
    let run_task = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "ag", "taskDefinition": "vpc",
                   "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}}),
        )
        .await;
    let vpc_arn = run_task["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let running = wait_status(&cluster, &vpc_arn, "RUNNING").await;
    let ip = running["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap()
        .to_string();
    let vpc_id = vpc_arn.rsplit('/').next().unwrap().to_string();
    let network = docker
        .inspect_network(
            &format!("ecsd-task-{vpc_id}"),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("the task's own network");
    let subnet = network
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.first().and_then(|c| c.subnet.clone()));
    assert!(subnet.is_some_and(|s| s.ends_with("/30")), "{ip}");
    let body = wait_for("the task's address to answer", Duration::from_secs(30), || async {
        let r = reqwest::get(format!("http://{ip}:8080/index.html")).await.ok()?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("hello from ecsd-busybox"), "{body}");
    cluster
        .ok(3, "StopTask", json!({"cluster": "ag", "task": vpc_arn}))
        .await;
    wait_status(&cluster, &vpc_arn, "STOPPED").await;

    tracing::info!("--- a dynamic host port is reachable where networkBindings says");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{
                "name": "web", "image": "ecsd-busybox:latest", "memory": 64, "stopTimeout": 2,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "portMappings": [{"containerPort": 8080}]
            }]}),
        )
        .await;
    let run_task = cluster
        .ok(3, "RunTask", json!({"cluster": "ag", "taskDefinition": "web"}))
        .await;
    let arn = run_task["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let running = wait_status(&cluster, &arn, "RUNNING").await;
    let binding = running["containers"][0]["networkBindings"][0].clone();
    assert_eq!(binding["containerPort"], 8080, "{running}");
    let host_port = binding["hostPort"].as_u64().unwrap();
    assert!(host_port > 0);
    let body = wait_for("the container's port to answer", Duration::from_secs(30), || async {
        let r = reqwest::get(format!("http://127.0.0.1:{host_port}/index.html"))
            .await
            .ok()?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("hello from ecsd-busybox"), "{body}");

    tracing::info!("--- the agent restarts: same instance, and it adopts the running container");
    let instance_arn = instances(&cluster).await[0]["containerInstanceArn"].clone();
    stop.cancel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let second = config.clone();
    tokio::spawn(async move { run(second, token).await });
    wait_for(
        "the agent back on the same instance",
        Duration::from_secs(30),
        || async {
            let all = instances(&cluster).await;
            (all.len() == 1 && all[0]["containerInstanceArn"] == instance_arn && all[0]["version"].as_u64() > Some(1))
                .then_some(())
        },
    )
    .await;
    let again = describe_task(&cluster, &arn).await;
    assert_eq!(again["lastStatus"], "RUNNING", "{again}");
    assert_eq!(
        again["containers"][0]["runtimeId"],
        running["containers"][0]["runtimeId"]
    );
    let r = reqwest::get(format!("http://127.0.0.1:{host_port}/index.html"))
        .await
        .unwrap();
    assert!(r.status().is_success(), "the adopted container still serves");

    tracing::info!("--- stopped while the agent is away: the restarted agent stops the container");
    stop.cancel();
    cluster.ok(2, "StopTask", json!({"cluster": "ag", "task": arn})).await;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { run(config, token).await });
    wait_status(&cluster, &arn, "STOPPED").await;
    let container = format!("ecs-{}-web", arn.rsplit('/').next().unwrap());
    wait_for("the container stopped", Duration::from_secs(30), || async {
        let c = docker
            .inspect_container(&container, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .ok()?;
        (c.state?.running == Some(false)).then_some(())
    })
    .await;
    stop.cancel();
    cluster.shutdown().await;
    // The agent keeps stopped containers for a while (for `docker logs`); this test's go now.
    for (task, container) in [(&exit_arn, "main"), (&arn, "web"), (&vpc_arn, "web")] {
        let id = task.rsplit('/').next().unwrap();
        let _ = docker
            .remove_container(
                &format!("ecs-{id}-{container}"),
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    let _ = docker.remove_network(&format!("ecsd-task-{vpc_id}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_agent_drives_the_agent_through_an_update() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "ag"})).await;
    let stop = CancellationToken::new();
    let mut config = agent_config(
        &cluster,
        "i-old",
        ecs_agent::client::RuntimeKind::Sim(ecs_agent::sim::SimSettings::default()),
    );
    config.agent_version = "0.0.1".into();
    tokio::spawn(run(config, stop.clone()));
    let arn = wait_for("the old agent registered", Duration::from_secs(30), || async {
        let i = instances(&cluster).await;
        i.first()
            .map(|i| i["containerInstanceArn"].as_str().unwrap().to_string())
    })
    .await;
    let asked = cluster
        .ok(
            2,
            "UpdateContainerAgent",
            json!({"cluster": "ag", "containerInstance": arn}),
        )
        .await;
    assert_eq!(asked["containerInstance"]["agentUpdateStatus"], "PENDING");
    let updated = wait_for("the agent to finish its update", Duration::from_secs(30), || async {
        instances(&cluster)
            .await
            .into_iter()
            .find(|i| i["agentUpdateStatus"] == "UPDATED")
    })
    .await;
    assert_eq!(updated["versionInfo"]["agentVersion"], ecs_agent::client::AGENT_VERSION);
    cluster
        .err(
            3,
            "UpdateContainerAgent",
            json!({"cluster": "ag", "containerInstance": arn}),
            "NoUpdateAvailableException",
            "",
        )
        .await;
    stop.cancel();
    cluster.shutdown().await;
}

/// When the node an agent's session is on goes away, the agent moves to another node, keeps
/// its instance connected, and keeps receiving tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_another_node_when_its_node_dies() {
    let mut cluster = TestCluster::start(3, |c| c.agent.heartbeat_timeout_ms = 5_000).await;
    cluster.leader().await;
    cluster.ok(2, "CreateCluster", json!({"clusterName": "ag"})).await;
    let stop = CancellationToken::new();
    // The session starts on node 1, the first endpoint.
    let config = agent_config(
        &cluster,
        "i-mover",
        ecs_agent::client::RuntimeKind::Sim(ecs_agent::sim::SimSettings::default()),
    );
    tokio::spawn(run(config, stop.clone()));
    wait_for("the agent registered", Duration::from_secs(30), || async {
        (instances_at(&cluster, 2).await.len() == 1).then_some(())
    })
    .await;
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "t", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]}),
        )
        .await;
    cluster.stop(1).await;
    let run_task = cluster
        .ok(2, "RunTask", json!({"cluster": "ag", "taskDefinition": "t"}))
        .await;
    assert_eq!(run_task["failures"], json!([]), "{run_task}");
    let arn = run_task["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_for(
        "the task to run through another node",
        Duration::from_secs(30),
        || async {
            let d = cluster
                .ok(3, "DescribeTasks", json!({"cluster": "ag", "tasks": [arn]}))
                .await;
            (d["tasks"][0]["lastStatus"] == "RUNNING").then_some(())
        },
    )
    .await;
    let instance = instances_at(&cluster, 3).await.remove(0);
    assert_eq!(instance["agentConnected"], true, "{instance}");
    stop.cancel();
    cluster.shutdown().await;
}
