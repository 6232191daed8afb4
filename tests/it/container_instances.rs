//! Container instance actions over raw HTTP: register, describe, list, drain, deregister.

use serde_json::{json, Value};

use crate::harness::{strings, TestCluster};

fn registration(instance_id: &str) -> Value {
    json!({
        "cluster": "ci",
        "instanceIdentityDocument": format!("{{\"instanceId\": \"{instance_id}\", \"region\": \"us-east-1\"}}"),
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 3768},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ],
        "versionInfo": {"agentVersion": "1.24.0", "agentHash": "abc", "dockerVersion": "18.06"},
        "attributes": [{"name": "ecs.availability-zone", "value": "us-east-1a"}, {"name": "custom"}],
        "tags": [{"key": "rack", "value": "r1"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_instances_register_drain_and_deregister() {
    // The 2018 API's short ARNs (`long_arns_by_default = false`): the IDs are UUIDs.
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;

    tracing::info!("--- registering needs the cluster");
    let (status, body) = cluster
        .ecs(1, "RegisterContainerInstance", registration("i-0001"))
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ClusterNotFoundException"))
    );
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({"clusterName": "ci"})).await;
    assert_eq!(status, 200);

    tracing::info!("--- short ARNs by default; long ARNs once the account setting is on");
    let (status, body) = cluster
        .ecs(2, "RegisterContainerInstance", registration("i-0001"))
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["containerInstance"].clone();
    let first_arn = first["containerInstanceArn"].as_str().unwrap().to_string();
    assert_eq!(first["ec2InstanceId"], "i-0001");
    assert_eq!(first["status"], "ACTIVE");
    assert_eq!(first["agentConnected"], true);
    assert_eq!(first["registeredResources"][0]["integerValue"], 2048);
    assert_eq!(first["remainingResources"][2]["stringSetValue"][0], "22");
    let short_id = first_arn.rsplit('/').next().unwrap().to_string();
    assert_eq!(short_id.len(), 36, "{first_arn}");
    assert!(!first_arn.contains("/ci/"));
    let (status, _) = cluster
        .ecs(
            3,
            "PutAccountSetting",
            json!({"name": "containerInstanceLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = cluster
        .ecs(1, "RegisterContainerInstance", registration("i-0002"))
        .await;
    let second_arn = body["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(second_arn.contains("container-instance/ci/"), "{second_arn}");
    assert_eq!(second_arn.rsplit('/').next().unwrap().len(), 32);
    let (_, body) = cluster.ecs(2, "DescribeClusters", json!({"clusters": ["ci"]})).await;
    assert_eq!(body["clusters"][0]["registeredContainerInstancesCount"], 2);

    tracing::info!("--- re-registration keeps the ARN");
    let mut again = registration("i-0001");
    again["containerInstanceArn"] = json!(first_arn);
    let (status, body) = cluster.ecs(3, "RegisterContainerInstance", again).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["containerInstance"]["containerInstanceArn"], first_arn.as_str());
    assert_eq!(body["containerInstance"]["version"], 2);

    tracing::info!("--- describe by ID or ARN, MISSING for unknown, tags on request");
    let req = json!({"cluster": "ci", "containerInstances": [short_id, second_arn, "nope"], "include": ["TAGS"]});
    let (status, body) = cluster.ecs(1, "DescribeContainerInstances", req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["containerInstances"].as_array().unwrap().len(), 2);
    assert_eq!(body["containerInstances"][0]["tags"][0]["key"], "rack");
    assert_eq!(body["failures"], json!([{"arn": "nope", "reason": "MISSING"}]));

    tracing::info!("--- drain one; list by status; pages");
    let req = json!({"cluster": "ci", "containerInstances": [second_arn, "ghost"], "status": "DRAINING"});
    let (status, body) = cluster.ecs(2, "UpdateContainerInstancesState", req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["containerInstances"][0]["status"], "DRAINING");
    assert_eq!(body["failures"][0]["reason"], "MISSING");
    let (_, body) = cluster
        .ecs(
            3,
            "ListContainerInstances",
            json!({"cluster": "ci", "status": "DRAINING"}),
        )
        .await;
    assert_eq!(strings(&body["containerInstanceArns"]), vec![second_arn.clone()]);
    let (_, page) = cluster
        .ecs(1, "ListContainerInstances", json!({"cluster": "ci", "maxResults": 1}))
        .await;
    let token = page["nextToken"].as_str().unwrap().to_string();
    let (_, rest) = cluster
        .ecs(
            2,
            "ListContainerInstances",
            json!({"cluster": "ci", "nextToken": token}),
        )
        .await;
    let mut all = strings(&page["containerInstanceArns"]);
    all.extend(strings(&rest["containerInstanceArns"]));
    all.sort();
    let mut expected = vec![first_arn.clone(), second_arn.clone()];
    expected.sort();
    assert_eq!(all, expected);

    tracing::info!("--- filter with the cluster query language");
    let filter = |f: &str| json!({"cluster": "ci", "filter": f});
    let (status, body) = cluster
        .ecs(
            3,
            "ListContainerInstances",
            filter("attribute:ecs.availability-zone == us-east-1a and ec2InstanceId == i-0002"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["containerInstanceArns"]), vec![second_arn.clone()]);
    let (_, body) = cluster
        .ecs(
            1,
            "ListContainerInstances",
            filter("attribute:custom exists and agentVersion >= 1.20"),
        )
        .await;
    assert_eq!(strings(&body["containerInstanceArns"]).len(), 2);
    let (status, body) = cluster
        .ecs(2, "ListContainerInstances", filter("attribute:zone =="))
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("filter: expected a value at position"),
        "{body}"
    );

    tracing::info!("--- a cluster with instances cannot be deleted; deregister makes them INACTIVE");
    let (status, body) = cluster.ecs(3, "DeleteCluster", json!({"cluster": "ci"})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ClusterContainsContainerInstancesException"))
    );
    for arn in [&first_arn, &second_arn] {
        let (status, body) = cluster
            .ecs(
                1,
                "DeregisterContainerInstance",
                json!({"cluster": "ci", "containerInstance": arn}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["containerInstance"]["status"], "INACTIVE");
    }
    let (_, body) = cluster.ecs(2, "ListContainerInstances", json!({"cluster": "ci"})).await;
    assert_eq!(strings(&body["containerInstanceArns"]), Vec::<String>::new());
    let (status, body) = cluster
        .ecs(
            3,
            "DeregisterContainerInstance",
            json!({"cluster": "ci", "containerInstance": first_arn}),
        )
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let (status, _) = cluster.ecs(1, "DeleteCluster", json!({"cluster": "ci"})).await;
    assert_eq!(status, 200);

    tracing::info!("--- validation and DiscoverPollEndpoint");
    let mut bad = registration("i-9");
    bad["cluster"] = json!("default");
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({})).await;
    assert_eq!(status, 200);
    bad["totalResources"][0]["type"] = json!("FLOAT");
    let (status, body) = cluster.ecs(2, "RegisterContainerInstance", bad).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("totalResources[0].type"));
    let (status, body) = cluster
        .ecs(
            3,
            "UpdateContainerInstancesState",
            json!({"containerInstances": ["x"], "status": "INACTIVE"}),
        )
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let (status, body) = cluster.ecs(2, "DiscoverPollEndpoint", json!({})).await;
    assert_eq!(status, 200);
    // Agents connect to the node's gRPC port; telemetry goes to its API.
    let raft_addr = cluster.nodes[&2].raft_addr;
    assert_eq!(body["endpoint"], format!("http://{raft_addr}"));
    assert_eq!(body["telemetryEndpoint"], cluster.url(2));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_agent_follows_the_reference_errors() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.leader().await;
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({})).await;
    assert_eq!(status, 200);
    let register = |version: Option<&str>| {
        let mut req = json!({});
        if let Some(v) = version {
            req["versionInfo"] = json!({"agentVersion": v});
        }
        req
    };
    let mut arns = Vec::new();
    // An agent of Amazon's (1.x) is older than the latest (`2.` and this build's version).
    for version in [Some("1.24.0"), None, Some("9.0.0")] {
        let (_, body) = cluster.ecs(1, "RegisterContainerInstance", register(version)).await;
        arns.push(
            body["containerInstance"]["containerInstanceArn"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let update = |arn: &str| json!({"containerInstance": arn});
    let (status, body) = cluster.ecs(1, "UpdateContainerAgent", update(&arns[0])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["containerInstance"]["agentUpdateStatus"], "PENDING");
    let cases = [
        (&arns[0], "UpdateInProgressException"),
        (&arns[1], "MissingVersionException"),
        (&arns[2], "NoUpdateAvailableException"),
    ];
    for (arn, kind) in cases {
        let (status, body) = cluster.ecs(1, "UpdateContainerAgent", update(arn)).await;
        assert_eq!((status, body["__type"].as_str()), (400, Some(kind)), "{body}");
    }
    let (status, body) = cluster.ecs(1, "UpdateContainerAgent", json!({})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    cluster.shutdown().await;
}
