//! Today's ECS on a 3-node cluster: its defaults (long ARNs, account settings as sent,
//! 36-character client tokens), the operations modern clients call (UpdateCluster, capacity
//! providers, DeleteTaskDefinitions, task protection, ListServicesByNamespace), Fargate task
//! definitions and launches on agents that offer Fargate capacity, and the deployment circuit
//! breaker rolling a failing revision back.

use std::time::Duration;

use ecs_agent::client::{run_with, AgentConfig, Connections, RuntimeKind, CAPACITY_ATTRIBUTE};
use ecs_agent::sim::SimSettings;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::harness::{wait_for, TestCluster};

const LONG: Duration = Duration::from_secs(90);

/// An agent in `cluster` named `i-<name>`: simulated, or real local processes.
fn agent(cluster: &TestCluster, name: &str, ecs_cluster: &str, fargate: bool, runtime: RuntimeKind) -> AgentConfig {
    let mut attributes = vec![("ecs.availability-zone".into(), Some("zone-a".to_string()))];
    if fargate {
        attributes.push((CAPACITY_ATTRIBUTE.into(), Some("fargate".into())));
    }
    AgentConfig {
        endpoints: (1..=3).map(|id| cluster.url(id)).collect(),
        cluster: ecs_cluster.into(),
        cpu: 4096,
        memory: 8192,
        attributes,
        log_dir: std::env::temp_dir().join("ecsd-modern-test-logs"),
        heartbeat: Duration::from_millis(500),
        ec2_instance_id: format!("i-{name}"),
        runtime,
        agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
        state_dir: None,
    }
}

fn sim() -> RuntimeKind {
    RuntimeKind::Sim(SimSettings {
        start: Duration::from_millis(50),
        ..Default::default()
    })
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

fn fargate_definition(family: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": cpu,
        "memory": memory,
        "containerDefinitions": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"],
                                  "portMappings": [{"containerPort": 80}]}],
    })
}

fn network() -> Value {
    json!({"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_defaults_and_the_operations_modern_clients_call() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;

    tracing::info!("--- account settings: long ARNs by default, values echoed as sent");
    let body = cluster
        .ok(
            1,
            "ListAccountSettings",
            json!({"effectiveSettings": true, "name": "serviceLongArnFormat"}),
        )
        .await;
    assert_eq!(body["settings"][0]["value"], "enabled", "{body}");
    let body = cluster
        .ok(
            2,
            "PutAccountSettingDefault",
            json!({"name": "containerInsights", "value": "enhanced"}),
        )
        .await;
    assert_eq!(
        body["setting"],
        json!({"name": "containerInsights", "value": "enhanced", "principalArn": "arn:aws:iam::000000000000:root", "type": "user"})
    );
    cluster
        .err(
            3,
            "PutAccountSetting",
            json!({"name": "containerInsights", "value": "on"}),
            "InvalidParameterException",
            "value: on",
        )
        .await;
    cluster
        .err(
            1,
            "PutAccountSetting",
            json!({"name": "guardDutyActivate", "value": "on"}),
            "InvalidParameterException",
            "guardDutyActivate",
        )
        .await;

    tracing::info!("--- a cluster with settings, configuration and capacity providers; UpdateCluster");
    let created = cluster
        .ok(
            1,
            "CreateCluster",
            json!({"clusterName": "m", "settings": [{"name": "containerInsights", "value": "enabled"}],
                   "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}},
                   "capacityProviders": ["FARGATE"],
                   "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}],
                   "tags": [{"key": "team", "value": "a"}]}),
        )
        .await;
    assert_eq!(
        created["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    cluster
        .ok(
            2,
            "UpdateClusterSettings",
            json!({"cluster": "m", "settings": [{"name": "containerInsights", "value": "disabled"}]}),
        )
        .await;
    cluster
        .ok(
            3,
            "UpdateCluster",
            json!({"cluster": "m", "configuration": {"executeCommandConfiguration": {"logging": "NONE"}}}),
        )
        .await;
    let described = cluster
        .ok(
            1,
            "DescribeClusters",
            json!({"clusters": ["m"], "include": ["SETTINGS", "CONFIGURATIONS", "TAGS"]}),
        )
        .await;
    let c = &described["clusters"][0];
    assert_eq!(
        c["settings"],
        json!([{"name": "containerInsights", "value": "disabled"}]),
        "{c}"
    );
    assert_eq!(
        c["configuration"]["executeCommandConfiguration"]["logging"], "NONE",
        "{c}"
    );
    assert_eq!(c["capacityProviders"], json!(["FARGATE"]));
    assert_eq!(
        c["defaultCapacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE", "weight": 1, "base": 0}])
    );
    cluster
        .err(
            2,
            "PutClusterCapacityProviders",
            json!({"cluster": "m", "capacityProviders": ["MY_ASG"], "defaultCapacityProviderStrategy": []}),
            "InvalidParameterException",
            "MY_ASG",
        )
        .await;
    cluster
        .err(
            3,
            "CreateCapacityProvider",
            json!({"name": "asg", "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:aws:autoscaling:x"}}),
            "InvalidParameterException",
            "Auto Scaling",
        )
        .await;

    tracing::info!("--- clientToken: up to 36 characters, as Terraform sends");
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "w", "containerDefinitions": [{"name": "c", "image": "x", "memory": 16}]}),
        )
        .await;
    let token = "terraform-20261207015630426600000001";
    assert_eq!(token.len(), 36);
    let create = json!({"cluster": "m", "serviceName": "s", "taskDefinition": "w", "desiredCount": 0,
                        "launchType": "EC2", "clientToken": token});
    let first = cluster.ok(2, "CreateService", create.clone()).await;
    let again = cluster.ok(3, "CreateService", create).await;
    assert_eq!(first["service"]["serviceArn"], again["service"]["serviceArn"]);
    assert_eq!(
        first["service"]["serviceArn"], "arn:aws:ecs:us-east-1:000000000000:service/m/s",
        "long ARNs by default"
    );
    assert_eq!(first["service"]["deployments"][0]["rolloutState"], "IN_PROGRESS");
    let long_token = format!("{token}x");
    cluster
        .err(
            1,
            "CreateService",
            json!({"cluster": "m", "serviceName": "s2", "taskDefinition": "w", "clientToken": long_token}),
            "InvalidParameterException",
            "clientToken",
        )
        .await;

    tracing::info!("--- DeleteTaskDefinitions: only INACTIVE revisions, then DELETE_IN_PROGRESS");
    let body = cluster
        .ok(2, "DeleteTaskDefinitions", json!({"taskDefinitions": ["w:1"]}))
        .await;
    assert!(
        body["failures"][0]["reason"].as_str().unwrap().contains("ACTIVE"),
        "{body}"
    );
    cluster
        .ok(3, "DeregisterTaskDefinition", json!({"taskDefinition": "w:1"}))
        .await;
    let body = cluster
        .ok(1, "DeleteTaskDefinitions", json!({"taskDefinitions": ["w:1"]}))
        .await;
    assert_eq!(body["taskDefinitions"][0]["status"], "DELETE_IN_PROGRESS", "{body}");
    cluster
        .err(
            2,
            "RunTask",
            json!({"cluster": "m", "taskDefinition": "w:1"}),
            "ClientException",
            "inactive",
        )
        .await;

    tracing::info!("--- ListServicesByNamespace: no service discovery, no services");
    let body = cluster
        .ok(3, "ListServicesByNamespace", json!({"namespace": "ns"}))
        .await;
    assert_eq!(body["serviceArns"], json!([]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fargate_task_definitions_run_only_on_fargate_capacity_with_their_own_address() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "f"})).await;

    tracing::info!("--- Fargate's rules for a task definition, in ECS's words");
    let mut bridge = fargate_definition("bad", "256", "512");
    bridge["networkMode"] = json!("bridge");
    cluster
        .err(1, "RegisterTaskDefinition", bridge, "ClientException", "awsvpc")
        .await;
    cluster
        .err(
            2,
            "RegisterTaskDefinition",
            fargate_definition("bad", "512", "512"),
            "ClientException",
            "No Fargate configuration exists for given values: 512 CPU, 512 memory",
        )
        .await;
    let mut no_cpu = fargate_definition("bad", "256", "512");
    no_cpu.as_object_mut().unwrap().remove("cpu");
    cluster
        .err(3, "RegisterTaskDefinition", no_cpu, "ClientException", "'cpu'")
        .await;
    let mut ports = fargate_definition("bad", "256", "512");
    ports["containerDefinitions"][0]["portMappings"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    cluster
        .err(
            1,
            "RegisterTaskDefinition",
            ports,
            "ClientException",
            "hostPort must equal containerPort",
        )
        .await;
    let mut mount = fargate_definition("bad", "256", "512");
    mount["containerDefinitions"][0]["mountPoints"] = json!([{"sourceVolume": "nope", "containerPath": "/x"}]);
    cluster
        .err(2, "RegisterTaskDefinition", mount, "ClientException", "nope")
        .await;
    let registered = cluster
        .ok(
            3,
            "RegisterTaskDefinition",
            fargate_definition("fg", "0.25 vCPU", "0.5GB"),
        )
        .await;
    let td = &registered["taskDefinition"];
    assert_eq!((td["cpu"].as_str(), td["memory"].as_str()), (Some("256"), Some("512")));
    assert_eq!(td["compatibilities"], json!(["EC2", "FARGATE"]));
    assert_eq!(td["containerDefinitions"][0]["portMappings"][0]["hostPort"], 80);
    cluster
        .ok(
            1,
            "RegisterTaskDefinition",
            json!({"family": "ec2", "containerDefinitions": [{"name": "c", "image": "x", "memory": 16}]}),
        )
        .await;

    tracing::info!("--- no Fargate capacity yet: ECS's placement failure; awsvpc needs a network");
    cluster
        .err(
            2,
            "RunTask",
            json!({"cluster": "f", "taskDefinition": "fg", "launchType": "FARGATE"}),
            "InvalidParameterException",
            "Network Configuration must be provided",
        )
        .await;
    cluster
        .err(
            3,
            "RunTask",
            json!({"cluster": "f", "taskDefinition": "ec2", "launchType": "FARGATE"}),
            "InvalidParameterException",
            "does not support launch_type FARGATE",
        )
        .await;
    cluster
        .err(
            1,
            "RunTask",
            json!({"cluster": "f", "taskDefinition": "fg", "launchType": "FARGATE", "networkConfiguration": network(),
                    "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}),
            "InvalidParameterException",
            "Specifying both a launch type and capacity provider strategy",
        )
        .await;
    let stop = CancellationToken::new();
    tokio::spawn(run_with(
        agent(&cluster, "ec2", "f", false, sim()),
        Connections::default(),
        stop.clone(),
    ));
    wait_instances(&cluster, "f", 1).await;
    let run =
        json!({"cluster": "f", "taskDefinition": "fg", "launchType": "FARGATE", "networkConfiguration": network()});
    let body = cluster.ok(2, "RunTask", run.clone()).await;
    assert_eq!(body["tasks"], json!([]), "{body}");
    assert_eq!(body["failures"][0]["reason"], "RESOURCE:FARGATE", "{body}");
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "f", "serviceName": "early", "taskDefinition": "fg", "desiredCount": 1,
                   "launchType": "FARGATE", "networkConfiguration": network()}),
        )
        .await;
    wait_for("the service says Fargate has no capacity", LONG, || async {
        let d = cluster
            .ok_retrying(2, "DescribeServices", json!({"cluster": "f", "services": ["early"]}))
            .await;
        let events = d["services"][0]["events"].as_array().cloned().unwrap_or_default();
        events
            .iter()
            .any(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Capacity is unavailable at this time")
            })
            .then_some(())
    })
    .await;

    tracing::info!("--- with an agent that offers Fargate capacity, Fargate tasks go there and EC2 tasks never do");
    tokio::spawn(run_with(
        agent(&cluster, "fargate", "f", true, sim()),
        Connections::default(),
        stop.clone(),
    ));
    wait_instances(&cluster, "f", 2).await;
    wait_for("the waiting service runs once there is capacity", LONG, || async {
        let d = cluster
            .ok_retrying(3, "DescribeServices", json!({"cluster": "f", "services": ["early"]}))
            .await;
        (d["services"][0]["runningCount"] == 1).then_some(())
    })
    .await;
    let body = cluster.ok(3, "RunTask", run).await;
    let task = body["tasks"][0].clone();
    assert_eq!(task["launchType"], "FARGATE", "{body}");
    assert_eq!(task["capacityProviderName"], "FARGATE");
    assert_eq!(task["platformVersion"], "1.4.0");
    assert!(task.get("containerInstanceArn").is_none(), "{task}");
    let eni = &task["attachments"][0];
    assert_eq!(eni["type"], "ElasticNetworkInterface");
    let details: std::collections::BTreeMap<String, String> = eni["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(details["subnetId"], "subnet-1");
    let ip = details["privateIPv4Address"].clone();
    assert!(ip.starts_with("100."), "{ip}");
    assert_eq!(
        task["containers"][0]["networkInterfaces"],
        json!([{"attachmentId": eni["id"], "privateIpv4Address": ip}])
    );
    let arn = task["taskArn"].as_str().unwrap().to_string();
    wait_for("the Fargate task runs", LONG, || async {
        let d = cluster
            .ok_retrying(1, "DescribeTasks", json!({"cluster": "f", "tasks": [arn]}))
            .await;
        (d["tasks"][0]["lastStatus"] == "RUNNING" && d["tasks"][0]["attachments"][0]["status"] == "ATTACHED")
            .then_some(())
    })
    .await;
    let ec2 = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "f", "taskDefinition": "ec2", "count": 5}),
        )
        .await;
    let instances: std::collections::BTreeSet<&str> = ec2["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 1, "EC2 tasks all on the one EC2 instance: {ec2}");
    let second = cluster
        .ok(
            3,
            "RunTask",
            json!({"cluster": "f", "taskDefinition": "fg", "launchType": "FARGATE", "networkConfiguration": network()}),
        )
        .await;
    let second_ip = second["tasks"][0]["attachments"][0]["details"][4]["value"].clone();
    assert_ne!(second_ip, json!(ip), "each task its own address");

    tracing::info!("--- capacity provider strategies: only providers of the cluster; one in use stays");
    let spot = json!({"cluster": "f", "taskDefinition": "fg", "networkConfiguration": network(),
                      "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]});
    cluster
        .err(
            1,
            "RunTask",
            spot.clone(),
            "InvalidParameterException",
            "not associated with the cluster",
        )
        .await;
    cluster
        .ok(2, "PutClusterCapacityProviders",
            json!({"cluster": "f", "capacityProviders": ["FARGATE", "FARGATE_SPOT"], "defaultCapacityProviderStrategy": []}))
        .await;
    let body = cluster.ok(3, "RunTask", spot).await;
    assert_eq!(body["tasks"][0]["capacityProviderName"], "FARGATE_SPOT", "{body}");
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "f", "serviceName": "spotty", "taskDefinition": "fg", "desiredCount": 1,
                   "networkConfiguration": network(),
                   "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 2, "base": 1}]}),
        )
        .await;
    cluster
        .err(
            2,
            "PutClusterCapacityProviders",
            json!({"cluster": "f", "capacityProviders": ["FARGATE"], "defaultCapacityProviderStrategy": []}),
            "ResourceInUseException",
            "FARGATE_SPOT",
        )
        .await;
    let service = cluster
        .ok(3, "DescribeServices", json!({"cluster": "f", "services": ["spotty"]}))
        .await;
    let s = &service["services"][0];
    assert!(s.get("launchType").is_none(), "{s}");
    assert_eq!(
        s["capacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE_SPOT", "weight": 2, "base": 1}])
    );
    assert_eq!(s["platformVersion"], "LATEST");
    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "f", "service": "spotty", "taskDefinition": "ec2"}),
            "InvalidParameterException",
            "does not support launch_type FARGATE",
        )
        .await;
    cluster
        .err(
            2,
            "PutAttributes",
            json!({"cluster": "f", "attributes": [{"name": "ecsd.capacity", "value": "fargate",
                                                   "targetType": "container-instance", "targetId": "abc"}]}),
            "InvalidParameterException",
            "ecsd.capacity",
        )
        .await;
    stop.cancel();
    cluster.shutdown().await;
}

/// The revision a service rolls out exits at once: the circuit breaker fails the deployment
/// after its threshold and rolls back to the last completed one, which ends steady.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_whose_containers_exit_at_once_is_rolled_back_by_the_circuit_breaker() {
    let cluster = TestCluster::start(3, |c| {
        c.services.restart_backoff_ms = 100;
        c.services.restart_backoff_max_ms = 400;
        c.services.deployment_settle_ms = 3_000;
    })
    .await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "cb"})).await;
    let stop = CancellationToken::new();
    for name in ["cb-1", "cb-2"] {
        tokio::spawn(run_with(
            agent(&cluster, name, "cb", false, RuntimeKind::Process),
            Connections::default(),
            stop.clone(),
        ));
    }
    wait_instances(&cluster, "cb", 2).await;
    let revision = |command: Value| json!({"family": "cb", "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 16, "command": command}]});
    cluster
        .ok(1, "RegisterTaskDefinition", revision(json!(["sleep", "3600"])))
        .await;
    cluster
        .ok(2, "RegisterTaskDefinition", revision(json!(["sh", "-c", "exit 1"])))
        .await;
    cluster
        .ok(
            3,
            "CreateService",
            json!({"cluster": "cb", "serviceName": "web", "taskDefinition": "cb:1", "desiredCount": 2,
                   "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
                                               "deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
        )
        .await;
    let describe = || async {
        cluster
            .ok_retrying(1, "DescribeServices", json!({"cluster": "cb", "services": ["web"]}))
            .await["services"][0]
            .clone()
    };
    let completed = wait_for("the first deployment completes", LONG, || async {
        let s = describe().await;
        let d = &s["deployments"];
        (d.as_array().unwrap().len() == 1 && d[0]["rolloutState"] == "COMPLETED" && s["runningCount"] == 2)
            .then(|| d[0]["id"].as_str().unwrap().to_string())
    })
    .await;

    tracing::info!("--- roll out the failing revision");
    let updated = cluster
        .ok(
            2,
            "UpdateService",
            json!({"cluster": "cb", "service": "web", "taskDefinition": "cb:2"}),
        )
        .await;
    let failing = updated["service"]["deployments"][0]["id"].as_str().unwrap().to_string();
    // Polled by hand: on a timeout the service's last state says where the rollback stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let s = loop {
        let s = describe().await;
        let d = &s["deployments"];
        let done = d.as_array().unwrap().len() == 1
            && d[0]["taskDefinition"].as_str().unwrap().ends_with("/cb:1")
            && d[0]["rolloutState"] == "COMPLETED"
            && s["runningCount"] == 2;
        if done {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollback did not end steady on the first revision within 180 s: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let messages: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let failed = format!("(service web) (deployment {failing}) deployment failed: tasks failed to start.");
    let rolling_back = format!("(service web) rolling back to deployment {completed}.");
    assert!(messages.contains(&failed.as_str()), "{messages:#?}");
    assert!(messages.contains(&rolling_back.as_str()), "{messages:#?}");
    let rollback = &s["deployments"][0];
    assert_ne!(rollback["id"], json!(completed), "a new deployment of the old revision");
    assert!(s["taskDefinition"].as_str().unwrap().ends_with("/cb:1"), "{s}");
    stop.cancel();
    cluster.shutdown().await;
}
