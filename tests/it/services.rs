//! Service actions over raw HTTP against three nodes: CreateService, UpdateService,
//! DeleteService, DescribeServices and ListServices.

use serde_json::{json, Value};

use std::time::Duration;

use crate::harness::{strings, wait_for, TestCluster};

fn definition(family: &str) -> Value {
    json!({"family": family, "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 64}]})
}

/// `ecs-svc/` and Long.MAX_VALUE minus the creation time in milliseconds.
fn expected_id(created_at: &Value) -> String {
    let ms = (created_at.as_f64().unwrap() * 1000.0).round() as i64;
    format!("ecs-svc/{}", i64::MAX - ms)
}

/// Registers an instance (as an agent would, but through the API) in cluster `sc`.
async fn register_instance(cluster: &TestCluster, ec2_id: &str) -> String {
    let r = cluster
        .ok(
            1,
            "RegisterContainerInstance",
            json!({
                "cluster": "sc",
                "instanceIdentityDocument": format!("{{\"instanceId\": \"{ec2_id}\"}}"),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}
                ]
            }),
        )
        .await;
    r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the DAEMON service `agentd` wants one task per instance of `on` and has exactly
/// one task meant to run on each of them, and none elsewhere.
async fn wait_daemon(cluster: &TestCluster, on: &[&str]) {
    let mut want: Vec<String> = on.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(
        &format!("the daemon's desired count and tasks to follow the instances {want:?}"),
        Duration::from_secs(60),
        || async {
            let d = cluster
                .ok_retrying(3, "DescribeServices", json!({"cluster": "sc", "services": ["agentd"]}))
                .await;
            if d["services"][0]["desiredCount"] != want.len() {
                return None;
            }
            let listed = cluster
                .ok_retrying(2, "ListTasks", json!({"cluster": "sc", "serviceName": "agentd"}))
                .await;
            let arns = strings(&listed["taskArns"]);
            if arns.len() != want.len() {
                return None;
            }
            if arns.is_empty() {
                return Some(());
            }
            let tasks = cluster
                .ok_retrying(1, "DescribeTasks", json!({"cluster": "sc", "tasks": arns}))
                .await;
            let mut hosts: Vec<String> = tasks["tasks"]
                .as_array()?
                .iter()
                .map(|t| t["containerInstanceArn"].as_str().unwrap_or_default().to_string())
                .collect();
            hosts.sort();
            (hosts == want).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_created_updated_and_deleted() {
    // The 2018 API's short ARNs (`long_arns_by_default = false`), as the reference shows them.
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "sc"})).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("web")).await;
    cluster.ok(2, "RegisterTaskDefinition", definition("web")).await;

    tracing::info!("--- validation");
    let base = json!({"cluster": "sc", "serviceName": "api", "taskDefinition": "web:1", "desiredCount": 2});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, text) in [
        (json!({"cluster": "sc", "taskDefinition": "web"}), "serviceName"),
        (with(json!({"serviceName": "bad name"})), "serviceName"),
        (json!({"cluster": "sc", "serviceName": "api"}), "taskDefinition"),
        (with(json!({"desiredCount": -1})), "desiredCount"),
        (
            with(json!({"schedulingStrategy": "DAEMON"})),
            "daemon scheduling strategy does not support a desired count",
        ),
        (
            json!({"cluster": "sc", "serviceName": "d", "taskDefinition": "web", "schedulingStrategy": "DAEMON",
                "placementStrategy": [{"type": "random"}]}),
            "does not support placement strategies",
        ),
        (
            with(json!({"deploymentConfiguration": {"minimumHealthyPercent": 150}})),
            "minimumHealthyPercent",
        ),
        (
            with(json!({"deploymentConfiguration": {"maximumPercent": 50}})),
            "maximumPercent",
        ),
        (
            with(json!({"healthCheckGracePeriodSeconds": 7201})),
            "healthCheckGracePeriodSeconds",
        ),
        (with(json!({"clientToken": "x".repeat(37)})), "clientToken"),
        (
            with(json!({"placementStrategy": [{"type": "spread"}]})),
            "placementStrategy[0]",
        ),
        (with(json!({"launchType": "FARGATE"})), "launch_type FARGATE"),
    ] {
        cluster
            .err(1, "CreateService", body, "InvalidParameterException", text)
            .await;
    }
    cluster
        .err(
            1,
            "CreateService",
            with(json!({"cluster": "nope"})),
            "ClusterNotFoundException",
            "Cluster not found.",
        )
        .await;
    cluster
        .err(
            1,
            "CreateService",
            with(json!({"taskDefinition": "absent"})),
            "ClientException",
            "Unable to describe task definition.",
        )
        .await;

    tracing::info!("--- creation: ACTIVE, one PRIMARY deployment, defaults 200/100");
    let created = cluster
        .ok(
            2,
            "CreateService",
            with(json!({"clientToken": "tok-1",
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        "tags": [{"key": "team", "value": "a"}]})),
        )
        .await;
    let s = &created["service"];
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["serviceName"], "api");
    assert_eq!(s["desiredCount"], 2);
    assert_eq!(
        (s["runningCount"].clone(), s["pendingCount"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        s["deploymentConfiguration"],
        json!({"maximumPercent": 200, "minimumHealthyPercent": 100,
               "deploymentCircuitBreaker": {"enable": false, "rollback": false}})
    );
    assert_eq!(s["schedulingStrategy"], "REPLICA");
    assert_eq!(s["launchType"], "EC2");
    assert_eq!(s["events"], json!([]));
    assert_eq!(
        s["placementStrategy"],
        json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}])
    );
    let arn = s["serviceArn"].as_str().unwrap().to_string();
    assert!(arn.ends_with(":service/api"), "short service ARN by default: {arn}");
    let deployments = s["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["status"], "PRIMARY");
    assert_eq!(deployments[0]["desiredCount"], 2);
    assert_eq!(deployments[0]["id"], expected_id(&deployments[0]["createdAt"]).as_str());
    let first_id = deployments[0]["id"].clone();

    tracing::info!("--- idempotency: the same token and request return the service; a new one is refused");
    let again = cluster
        .ok(
            3,
            "CreateService",
            with(json!({"clientToken": "tok-1",
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        "tags": [{"key": "team", "value": "a"}]})),
        )
        .await;
    assert_eq!(again["service"]["serviceArn"], arn.as_str());
    cluster
        .err(
            1,
            "CreateService",
            base.clone(),
            "InvalidParameterException",
            "Creation of service was not idempotent.",
        )
        .await;

    tracing::info!("--- DescribeServices and ListServices");
    let d = cluster
        .ok(
            3,
            "DescribeServices",
            json!({"cluster": "sc", "services": ["api", arn, "ghost"], "include": ["TAGS"]}),
        )
        .await;
    assert_eq!(d["services"].as_array().unwrap().len(), 2);
    assert_eq!(d["services"][0]["tags"], json!([{"key": "team", "value": "a"}]));
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert!(d["failures"][0]["arn"].as_str().unwrap().ends_with("service/ghost"));
    cluster
        .err(
            3,
            "DescribeServices",
            json!({"cluster": "sc", "services": (0..11).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
            "InvalidParameterException",
            "services",
        )
        .await;
    cluster
        .err(
            3,
            "DescribeServices",
            json!({"cluster": "nope", "services": ["api"]}),
            "ClusterNotFoundException",
            "",
        )
        .await;
    for name in ["b1", "b2", "b3"] {
        cluster
            .ok(
                1,
                "CreateService",
                json!({"cluster": "sc", "serviceName": name, "taskDefinition": "web", "desiredCount": 0}),
            )
            .await;
    }
    let page = cluster
        .ok(2, "ListServices", json!({"cluster": "sc", "maxResults": 3}))
        .await;
    assert_eq!(page["serviceArns"].as_array().unwrap().len(), 3);
    let rest = cluster
        .ok(
            2,
            "ListServices",
            json!({"cluster": "sc", "nextToken": page["nextToken"]}),
        )
        .await;
    assert_eq!(rest["serviceArns"].as_array().unwrap().len(), 1);
    let daemons = cluster
        .ok(
            2,
            "ListServices",
            json!({"cluster": "sc", "schedulingStrategy": "DAEMON"}),
        )
        .await;
    assert_eq!(daemons["serviceArns"], json!([]));
    let c = cluster.ok(1, "DescribeClusters", json!({"clusters": ["sc"]})).await;
    assert_eq!(c["clusters"][0]["activeServicesCount"], 4);

    tracing::info!("--- a desiredCount-only update keeps the deployment");
    let u = cluster
        .ok(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "desiredCount": 3}),
        )
        .await;
    let s = &u["service"];
    assert_eq!(s["desiredCount"], 3);
    assert_eq!(s["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(s["deployments"][0]["id"], first_id);
    assert_eq!(s["deployments"][0]["desiredCount"], 3);

    tracing::info!("--- a new task definition makes a new PRIMARY; the old one had no tasks and is dropped");
    let u = cluster
        .ok(
            2,
            "UpdateService",
            json!({"cluster": "sc", "service": arn, "taskDefinition": "web:2"}),
        )
        .await;
    let s = &u["service"];
    assert!(s["taskDefinition"].as_str().unwrap().ends_with("web:2"));
    let deployments = s["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0]["status"], "PRIMARY");
    assert_ne!(deployments[0]["id"], first_id);
    assert_eq!(deployments[0]["id"], expected_id(&deployments[0]["createdAt"]).as_str());
    let forced = cluster
        .ok(
            3,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "forceNewDeployment": true}),
        )
        .await;
    assert_ne!(forced["service"]["deployments"][0]["id"], deployments[0]["id"]);
    let same = cluster
        .ok(
            3,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "taskDefinition": "web:2"}),
        )
        .await;
    assert_eq!(
        same["service"]["deployments"][0]["id"],
        forced["service"]["deployments"][0]["id"]
    );

    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "ghost", "desiredCount": 1}),
            "ServiceNotFoundException",
            "Service not found.",
        )
        .await;
    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "desiredCount": -2}),
            "InvalidParameterException",
            "desiredCount",
        )
        .await;
    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "deploymentConfiguration": {"minimumHealthyPercent": 101}}),
            "InvalidParameterException",
            "minimumHealthyPercent",
        )
        .await;
    cluster
        .ok(3, "DeregisterTaskDefinition", json!({"taskDefinition": "web:1"}))
        .await;
    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "taskDefinition": "web:1"}),
            "ClientException",
            "TaskDefinition is inactive",
        )
        .await;

    tracing::info!("--- DeleteService: refused while scaled above 0, then DRAINING and gone from the list");
    cluster
        .err(
            2,
            "DeleteService",
            json!({"cluster": "sc", "service": "api"}),
            "InvalidParameterException",
            "The service cannot be stopped while it is scaled above 0.",
        )
        .await;
    let deleted = cluster
        .ok(
            2,
            "DeleteService",
            json!({"cluster": "sc", "service": "api", "force": true}),
        )
        .await;
    assert_eq!(deleted["service"]["status"], "DRAINING");
    assert_eq!(deleted["service"]["desiredCount"], 0);
    let listed = cluster.ok(3, "ListServices", json!({"cluster": "sc"})).await;
    assert!(!listed["serviceArns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == arn.as_str()));
    let d = cluster
        .ok(1, "DescribeServices", json!({"cluster": "sc", "services": ["api"]}))
        .await;
    assert_eq!(d["services"][0]["status"], "INACTIVE", "no tasks were left to drain");
    cluster
        .err(
            1,
            "UpdateService",
            json!({"cluster": "sc", "service": "api", "desiredCount": 1}),
            "ServiceNotActiveException",
            "",
        )
        .await;
    cluster
        .err(
            1,
            "DeleteService",
            json!({"cluster": "sc", "service": "api"}),
            "ServiceNotActiveException",
            "",
        )
        .await;
    // An INACTIVE name may be used again.
    cluster
        .ok(
            1,
            "CreateService",
            json!({"cluster": "sc", "serviceName": "api", "taskDefinition": "web:2", "desiredCount": 0}),
        )
        .await;

    tracing::info!("--- long service ARNs once serviceLongArnFormat is on, and tagging");
    cluster
        .ok(
            1,
            "PutAccountSetting",
            json!({"name": "serviceLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    let long = cluster
        .ok(
            2,
            "CreateService",
            json!({"cluster": "sc", "serviceName": "longsvc", "taskDefinition": "web", "desiredCount": 0}),
        )
        .await;
    let long_arn = long["service"]["serviceArn"].as_str().unwrap().to_string();
    assert!(long_arn.ends_with(":service/sc/longsvc"), "{long_arn}");
    cluster
        .ok(
            3,
            "TagResource",
            json!({"resourceArn": long_arn, "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    let tags = cluster
        .ok(1, "ListTagsForResource", json!({"resourceArn": long_arn}))
        .await;
    assert_eq!(tags["tags"], json!([{"key": "k", "value": "v"}]));
    cluster
        .err(
            3,
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"key": "k", "value": "v"}]}),
            "InvalidParameterException",
            "Long arn format",
        )
        .await;

    tracing::info!("--- DAEMON: desired count follows the ACTIVE instances; 0/100 defaults");
    let d = cluster
        .ok(
            2,
            "CreateService",
            json!({"cluster": "sc", "serviceName": "agentd", "taskDefinition": "web", "schedulingStrategy": "DAEMON"}),
        )
        .await;
    assert_eq!(d["service"]["schedulingStrategy"], "DAEMON");
    assert_eq!(
        d["service"]["deploymentConfiguration"],
        json!({"maximumPercent": 100, "minimumHealthyPercent": 0,
               "deploymentCircuitBreaker": {"enable": false, "rollback": false}})
    );
    assert_eq!(d["service"]["desiredCount"], 0, "no instances yet");
    cluster
        .err(
            2,
            "UpdateService",
            json!({"cluster": "sc", "service": "agentd", "desiredCount": 2}),
            "InvalidParameterException",
            "desired count",
        )
        .await;
    let d1 = register_instance(&cluster, "i-d1").await;
    let d2 = register_instance(&cluster, "i-d2").await;
    wait_daemon(&cluster, &[&d1, &d2]).await;
    tracing::info!("--- DAEMON: a DRAINING instance no longer counts, and its task stops");
    cluster
        .ok(
            1,
            "UpdateContainerInstancesState",
            json!({"cluster": "sc", "containerInstances": [d2], "status": "DRAINING"}),
        )
        .await;
    wait_daemon(&cluster, &[&d1]).await;
    tracing::info!("--- DAEMON: a new instance counts; a deregistered one does not");
    let d3 = register_instance(&cluster, "i-d3").await;
    wait_daemon(&cluster, &[&d1, &d3]).await;
    cluster
        .ok(
            3,
            "DeregisterContainerInstance",
            json!({"cluster": "sc", "containerInstance": d1, "force": true}),
        )
        .await;
    wait_daemon(&cluster, &[&d3]).await;
    // The last ACTIVE instance goes (and the DRAINING one): nothing is left to run on.
    for instance in [&d3, &d2] {
        cluster
            .ok(
                3,
                "DeregisterContainerInstance",
                json!({"cluster": "sc", "containerInstance": instance, "force": true}),
            )
            .await;
    }
    wait_daemon(&cluster, &[]).await;
    cluster
        .ok(2, "DeleteService", json!({"cluster": "sc", "service": "agentd"}))
        .await;

    tracing::info!("--- a cluster with services cannot be deleted");
    cluster
        .err(
            3,
            "DeleteCluster",
            json!({"cluster": "sc"}),
            "ClusterContainsServicesException",
            "",
        )
        .await;
    cluster.shutdown().await;
}
