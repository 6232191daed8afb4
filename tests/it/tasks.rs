//! Task actions over raw HTTP against three nodes: RunTask, StartTask, StopTask, DescribeTasks,
//! ListTasks, SubmitTaskStateChange and SubmitContainerStateChange.

use serde_json::{json, Value};

use crate::harness::{strings, TestCluster};

fn registration(instance_id: &str, az: &str, memory: i64) -> Value {
    json!({
        "cluster": "tc",
        "instanceIdentityDocument": format!("{{\"instanceId\": \"{instance_id}\"}}"),
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ],
        "versionInfo": {"agentVersion": "1.24.0"},
        "attributes": [{"name": "ecs.availability-zone", "value": az}]
    })
}

fn web_definition() -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [{
            "name": "app",
            "image": "busybox",
            "memory": 300,
            "memoryReservation": 128,
            "cpu": 100,
            "portMappings": [{"containerPort": 80, "hostPort": 8080}]
        }, {
            "name": "sidecar",
            "image": "busybox",
            "memory": 64,
            "essential": false
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_placed_reported_and_stopped() {
    // The 2018 API's short ARNs (`long_arns_by_default = false`), which take no tags.
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;

    tracing::info!("--- preconditions: cluster, task definition, instances");
    let run = json!({"cluster": "tc", "taskDefinition": "web"});
    cluster
        .err(
            1,
            "RunTask",
            run.clone(),
            "ClusterNotFoundException",
            "Cluster not found.",
        )
        .await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "tc"})).await;
    cluster
        .err(
            2,
            "RunTask",
            run.clone(),
            "ClientException",
            "Unable to describe task definition.",
        )
        .await;
    cluster.ok(2, "RegisterTaskDefinition", web_definition()).await;
    cluster
        .err(
            3,
            "RunTask",
            run.clone(),
            "InvalidParameterException",
            "No Container Instances were found in your cluster.",
        )
        .await;

    tracing::info!("--- validation names the field");
    for (body, text) in [
        (json!({"cluster": "tc"}), "taskDefinition"),
        (json!({"cluster": "tc", "taskDefinition": "web", "count": 11}), "count"),
        (json!({"cluster": "tc", "taskDefinition": "web", "count": 0}), "count"),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "startedBy": "has space"}),
            "startedBy",
        ),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "launchType": "FARGATE"}),
            "launch_type FARGATE",
        ),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "placementStrategy": [{"type": "binpack", "field": "disk"}]}),
            "placementStrategy[0]",
        ),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "placementConstraints": [{"type": "memberOf", "expression": "attribute:x =="}]}),
            "placementConstraints[0].expression",
        ),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "placementConstraints": [{"type": "distinctInstance", "expression": "x"}]}),
            "placementConstraints[0].expression",
        ),
        (
            json!({"cluster": "tc", "taskDefinition": "web", "overrides": {"containerOverrides": [{"name": "nope"}]}}),
            "containerOverrides[0].name",
        ),
    ] {
        cluster.err(1, "RunTask", body, "InvalidParameterException", text).await;
    }
    let (status, reply) = cluster
        .ecs(
            1,
            "RunTask",
            json!({"cluster": "tc", "taskDefinition": "web", "count": "2"}),
        )
        .await;
    assert_eq!(
        (status, reply["__type"].as_str()),
        (400, Some("SerializationException")),
        "{reply}"
    );

    let a = cluster
        .ok(1, "RegisterContainerInstance", registration("i-a", "us-east-1a", 1000))
        .await;
    let a_arn = a["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();

    tracing::info!("--- RunTask places on the instance and reserves memoryReservation, cpu and the static port");
    let reply = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "tc", "taskDefinition": "web", "startedBy": "tester"}),
        )
        .await;
    assert_eq!(reply["failures"], json!([]));
    let task = &reply["tasks"][0];
    assert_eq!(task["lastStatus"], "PENDING");
    assert_eq!(task["desiredStatus"], "RUNNING");
    assert_eq!(task["group"], "family:web");
    assert_eq!(task["startedBy"], "tester");
    assert_eq!(task["version"], 1);
    assert_eq!(task["launchType"], "EC2");
    assert_eq!(task["containerInstanceArn"], a_arn.as_str());
    assert!(task["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .ends_with("task-definition/web:1"));
    assert_eq!(
        task["overrides"]["containerOverrides"],
        json!([{"name": "app"}, {"name": "sidecar"}])
    );
    assert_eq!(task["containers"].as_array().unwrap().len(), 2);
    assert_eq!(task["containers"][0]["lastStatus"], "PENDING");
    assert!(task["containers"][0]["containerArn"]
        .as_str()
        .unwrap()
        .contains(":container/"));
    let task_arn = task["taskArn"].as_str().unwrap().to_string();
    assert_eq!(
        task_arn.rsplit('/').next().unwrap().len(),
        36,
        "a short task ARN with the 2018 default: {task_arn}"
    );
    let described = cluster
        .ok(
            3,
            "DescribeContainerInstances",
            json!({"cluster": "tc", "containerInstances": [a_arn]}),
        )
        .await;
    let instance = &described["containerInstances"][0];
    assert_eq!(instance["pendingTasksCount"], 1);
    let remaining = instance["remainingResources"].as_array().unwrap();
    let by_name = |name: &str| remaining.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(by_name("CPU")["integerValue"], 2048 - 100);
    // memoryReservation 128 of the app plus memory 64 of the sidecar.
    assert_eq!(by_name("MEMORY")["integerValue"], 1000 - 128 - 64);
    assert_eq!(by_name("PORTS")["stringSetValue"], json!(["22", "8080"]));

    tracing::info!("--- a second copy conflicts on the static port");
    let reply = cluster.ok(1, "RunTask", run.clone()).await;
    assert_eq!(reply["tasks"], json!([]));
    assert_eq!(reply["failures"], json!([{"arn": a_arn, "reason": "RESOURCE:PORTS"}]));

    tracing::info!("--- the cluster counts the pending task, and may not be deleted");
    let c = cluster.ok(2, "DescribeClusters", json!({"clusters": ["tc"]})).await;
    assert_eq!(c["clusters"][0]["pendingTasksCount"], 1);
    cluster
        .err(
            2,
            "DeleteCluster",
            json!({"cluster": "tc"}),
            "ClusterContainsContainerInstancesException",
            "",
        )
        .await;

    tracing::info!("--- agent reports move status forward only");
    let report = |status: &str| json!({"cluster": "tc", "task": task_arn, "status": status});
    let ack = cluster.ok(3,
        "SubmitTaskStateChange",
        json!({
            "cluster": "tc", "task": task_arn, "status": "RUNNING", "pullStartedAt": 1_530_000_000.5,
            "containers": [{"containerName": "app", "status": "RUNNING", "runtimeId": "abc",
                "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]}]
        }),
    )
    .await;
    assert_eq!(ack["acknowledgment"], "ACK");
    // Replayed and regressing reports are acknowledged and change nothing.
    cluster.ok(1, "SubmitTaskStateChange", report("RUNNING")).await;
    cluster.ok(2, "SubmitTaskStateChange", report("PENDING")).await;
    let d = cluster
        .ok(1, "DescribeTasks", json!({"cluster": "tc", "tasks": [task_arn]}))
        .await;
    let t = &d["tasks"][0];
    assert_eq!(t["lastStatus"], "RUNNING");
    assert_eq!(t["version"], 2);
    assert!(t["startedAt"].is_number());
    assert_eq!(t["pullStartedAt"], 1_530_000_000.5);
    assert_eq!(t["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(t["containers"][0]["runtimeId"], "abc");
    assert_eq!(t["containers"][0]["networkBindings"][0]["hostPort"], 8080);
    assert_eq!(t["containers"][1]["lastStatus"], "PENDING");
    let c = cluster.ok(2, "DescribeClusters", json!({"clusters": ["tc"]})).await;
    assert_eq!(
        (
            c["clusters"][0]["runningTasksCount"].clone(),
            c["clusters"][0]["pendingTasksCount"].clone()
        ),
        (json!(1), json!(0))
    );

    cluster.ok(2, "SubmitContainerStateChange", json!({
        "cluster": "tc", "task": task_arn, "containerName": "sidecar", "status": "STOPPED", "exitCode": 0, "reason": "done"
    })).await;
    cluster
        .err(
            2,
            "SubmitContainerStateChange",
            json!({"cluster": "tc", "task": task_arn, "status": "RUNNING"}),
            "InvalidParameterException",
            "containerName",
        )
        .await;
    cluster
        .err(
            2,
            "SubmitTaskStateChange",
            json!({"cluster": "tc", "task": task_arn, "status": "EXPLODED"}),
            "InvalidParameterException",
            "status",
        )
        .await;
    cluster
        .err(
            2,
            "SubmitTaskStateChange",
            json!({"cluster": "tc", "task": "nope", "status": "RUNNING"}),
            "InvalidParameterException",
            "task was not found",
        )
        .await;

    tracing::info!("--- StopTask sets the desired status; lastStatus waits for the agent");
    let stopped = cluster
        .ok(3, "StopTask", json!({"cluster": "tc", "task": task_arn}))
        .await;
    assert_eq!(stopped["task"]["desiredStatus"], "STOPPED");
    assert_eq!(stopped["task"]["lastStatus"], "RUNNING");
    assert_eq!(stopped["task"]["stoppedReason"], "Task stopped by user");
    assert_eq!(stopped["task"]["stopCode"], "UserInitiated");
    assert!(stopped["task"]["stoppingAt"].is_number());
    cluster
        .err(
            3,
            "StopTask",
            json!({"cluster": "tc", "task": "missing-task"}),
            "InvalidParameterException",
            "The referenced task was not found.",
        )
        .await;
    cluster
        .err(
            3,
            "StopTask",
            json!({"cluster": "tc"}),
            "InvalidParameterException",
            "task",
        )
        .await;
    cluster
        .err(
            3,
            "StopTask",
            json!({"cluster": "tc", "task": task_arn, "reason": "x".repeat(256)}),
            "InvalidParameterException",
            "reason",
        )
        .await;

    tracing::info!("--- ListTasks: RUNNING by default; STOPPED lists desired-STOPPED tasks; PENDING is always empty");
    let listed = cluster.ok(1, "ListTasks", json!({"cluster": "tc"})).await;
    assert_eq!(listed["taskArns"], json!([]));
    let listed = cluster
        .ok(1, "ListTasks", json!({"cluster": "tc", "desiredStatus": "STOPPED"}))
        .await;
    assert_eq!(strings(&listed["taskArns"]), std::slice::from_ref(&task_arn));
    let listed = cluster
        .ok(1, "ListTasks", json!({"cluster": "tc", "desiredStatus": "PENDING"}))
        .await;
    assert_eq!(listed["taskArns"], json!([]));

    cluster
        .ok(
            1,
            "SubmitTaskStateChange",
            json!({"cluster": "tc", "task": task_arn, "status": "STOPPED", "executionStoppedAt": 1_530_000_100.0}),
        )
        .await;
    let d = cluster
        .ok(
            2,
            "DescribeTasks",
            json!({"cluster": "tc", "tasks": [task_arn, "missing"]}),
        )
        .await;
    let t = &d["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
    assert!(t["stoppedAt"].is_number());
    assert_eq!(t["containers"][0]["lastStatus"], "STOPPED");
    assert_eq!(t["containers"][1]["exitCode"], 0);
    assert_eq!(d["failures"], json!([{"arn": "missing", "reason": "MISSING"}]));
    let described = cluster
        .ok(
            3,
            "DescribeContainerInstances",
            json!({"cluster": "tc", "containerInstances": [a_arn]}),
        )
        .await;
    let instance = &described["containerInstances"][0];
    assert_eq!(
        (
            instance["runningTasksCount"].clone(),
            instance["pendingTasksCount"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(
        instance["remainingResources"], instance["registeredResources"],
        "resources are released at STOPPED"
    );
    // A late RUNNING report after STOPPED changes nothing and releases nothing twice.
    cluster.ok(3, "SubmitTaskStateChange", report("RUNNING")).await;
    let again = cluster
        .ok(
            3,
            "DescribeContainerInstances",
            json!({"cluster": "tc", "containerInstances": [a_arn]}),
        )
        .await;
    assert_eq!(
        again["containerInstances"][0]["remainingResources"],
        instance["registeredResources"]
    );

    tracing::info!("--- count 10 with room for 3 gives 3 tasks and RESOURCE:MEMORY");
    let big = json!({"family": "big", "containerDefinitions": [{"name": "b", "image": "busybox", "memory": 300}]});
    cluster.ok(1, "RegisterTaskDefinition", big).await;
    let reply = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "tc", "taskDefinition": "big:1", "count": 10, "group": "batch"}),
        )
        .await;
    assert_eq!(reply["tasks"].as_array().unwrap().len(), 3, "{reply}");
    assert_eq!(reply["failures"], json!([{"arn": a_arn, "reason": "RESOURCE:MEMORY"}]));
    let listed = cluster
        .ok(
            3,
            "ListTasks",
            json!({"cluster": "tc", "family": "big", "maxResults": 2}),
        )
        .await;
    assert_eq!(listed["taskArns"].as_array().unwrap().len(), 2);
    let token = listed["nextToken"].as_str().unwrap().to_string();
    let rest = cluster
        .ok(
            1,
            "ListTasks",
            json!({"cluster": "tc", "family": "big", "nextToken": token}),
        )
        .await;
    assert_eq!(rest["taskArns"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextToken").is_none());
    let by_instance = cluster
        .ok(2, "ListTasks", json!({"cluster": "tc", "containerInstance": a_arn}))
        .await;
    assert_eq!(by_instance["taskArns"].as_array().unwrap().len(), 3);
    let by_starter = cluster
        .ok(2, "ListTasks", json!({"cluster": "tc", "startedBy": "nobody"}))
        .await;
    assert_eq!(by_starter["taskArns"], json!([]));
    cluster
        .err(
            2,
            "ListTasks",
            json!({"cluster": "tc", "serviceName": "nope"}),
            "ServiceNotFoundException",
            "Service not found.",
        )
        .await;
    cluster
        .err(
            2,
            "ListTasks",
            json!({"cluster": "tc", "desiredStatus": "DONE"}),
            "InvalidParameterException",
            "desiredStatus",
        )
        .await;

    tracing::info!("--- an essential container's exit stops the task; a non-essential one's does not");
    let victim = reply["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    cluster
        .ok(
            1,
            "SubmitTaskStateChange",
            json!({"cluster": "tc", "task": victim, "status": "RUNNING"}),
        )
        .await;
    cluster
        .ok(
            2,
            "SubmitContainerStateChange",
            json!({"cluster": "tc", "task": victim, "containerName": "b", "status": "STOPPED", "exitCode": 1}),
        )
        .await;
    let d = cluster
        .ok(3, "DescribeTasks", json!({"cluster": "tc", "tasks": [victim]}))
        .await;
    let t = &d["tasks"][0];
    assert_eq!(t["desiredStatus"], "STOPPED");
    assert_eq!(t["lastStatus"], "RUNNING", "the agent reports the task itself");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
    assert_eq!(t["containers"][0]["exitCode"], 1);

    tracing::info!("--- StartTask: explicit instances, with MISSING for unknown ones");
    let b = cluster
        .ok(1, "RegisterContainerInstance", registration("i-b", "us-east-1b", 2000))
        .await;
    let b_arn = b["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = cluster
        .ok(
            3,
            "StartTask",
            json!({
                "cluster": "tc", "taskDefinition": "big", "containerInstances": [b_arn, "not-an-instance"]
            }),
        )
        .await;
    assert_eq!(reply["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(reply["tasks"][0]["containerInstanceArn"], b_arn.as_str());
    assert_eq!(
        reply["failures"],
        json!([{"arn": "not-an-instance", "reason": "MISSING"}])
    );
    cluster
        .err(
            3,
            "StartTask",
            json!({"cluster": "tc", "taskDefinition": "big"}),
            "InvalidParameterException",
            "containerInstances",
        )
        .await;
    cluster
        .ok(
            1,
            "UpdateContainerInstancesState",
            json!({"cluster": "tc", "containerInstances": [b_arn], "status": "DRAINING"}),
        )
        .await;
    let reply = cluster
        .ok(
            2,
            "StartTask",
            json!({"cluster": "tc", "taskDefinition": "big", "containerInstances": [b_arn]}),
        )
        .await;
    assert_eq!(reply["failures"], json!([{"arn": b_arn, "reason": "DRAINING"}]));

    tracing::info!("--- long task ARNs once taskLongArnFormat is on; tagging needs them");
    cluster
        .ok(
            1,
            "UpdateContainerInstancesState",
            json!({"cluster": "tc", "containerInstances": [b_arn], "status": "ACTIVE"}),
        )
        .await;
    cluster
        .ok(
            1,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    let reply = cluster
        .ok(
            2,
            "RunTask",
            json!({"cluster": "tc", "taskDefinition": "big", "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    let long_arn = reply["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert!(long_arn.contains(":task/tc/"), "{long_arn}");
    assert_eq!(long_arn.rsplit('/').next().unwrap().len(), 32);
    let tags = cluster
        .ok(3, "ListTagsForResource", json!({"resourceArn": long_arn}))
        .await;
    assert_eq!(tags["tags"], json!([{"key": "k", "value": "v"}]));
    let d = cluster
        .ok(
            3,
            "DescribeTasks",
            json!({"cluster": "tc", "tasks": [long_arn], "include": ["TAGS"]}),
        )
        .await;
    assert_eq!(d["tasks"][0]["tags"], json!([{"key": "k", "value": "v"}]));
    cluster
        .err(
            1,
            "TagResource",
            json!({"resourceArn": task_arn, "tags": [{"key": "a", "value": "b"}]}),
            "InvalidParameterException",
            "Long arn format",
        )
        .await;

    tracing::info!("--- RunTask with a clientToken applies once, whichever node the retry reaches");
    let body = json!({"cluster": "tc", "taskDefinition": "big", "clientToken": "token-1"});
    let first = cluster.ok(1, "RunTask", body.clone()).await;
    let retry = cluster.ok(3, "RunTask", body).await;
    assert_eq!(first["failures"], json!([]), "{first}");
    assert_eq!(first["tasks"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["tasks"][0]["taskArn"], retry["tasks"][0]["taskArn"]);

    tracing::info!("--- a forwarded RunTask keeps the id it got where it arrived: replays apply once");
    let leader = cluster.leader().await;
    let id = uuid::Uuid::new_v4().to_string();
    // A startedBy no other task has, so the tasks of this request alone can be listed.
    let body = json!({"cluster": "tc", "taskDefinition": "big", "count": 2, "startedBy": "replayed"});
    let via = cluster.other_than(leader);
    let (status, first) = cluster.forward_as(via, "RunTask", &id, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["failures"], json!([]), "{first}");
    let mut placed: Vec<String> = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    placed.sort();
    assert_eq!(placed.len(), 2, "{first}");
    let (status, again) = cluster.forward_as(via, "RunTask", &id, &body).await;
    assert_eq!(status, 200, "{again}");
    let mut replayed: Vec<String> = again["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    replayed.sort();
    assert_eq!(
        placed, replayed,
        "the replay returns the first call's tasks: {first} / {again}"
    );
    for node in [1, 2, 3] {
        let listed = cluster
            .ok(node, "ListTasks", json!({"cluster": "tc", "startedBy": "replayed"}))
            .await;
        let mut listed = strings(&listed["taskArns"]);
        listed.sort();
        assert_eq!(listed, placed, "node {node}: the replay started no other task");
    }

    tracing::info!("--- forced deregistration stops the instance's tasks and releases them");
    let on_b = cluster
        .ok(2, "ListTasks", json!({"cluster": "tc", "containerInstance": b_arn}))
        .await;
    assert!(!on_b["taskArns"].as_array().unwrap().is_empty());
    cluster
        .err(
            2,
            "DeregisterContainerInstance",
            json!({"cluster": "tc", "containerInstance": b_arn}),
            "InvalidParameterException",
            "Found running tasks on the instance.",
        )
        .await;
    cluster
        .ok(
            2,
            "DeregisterContainerInstance",
            json!({"cluster": "tc", "containerInstance": b_arn, "force": true}),
        )
        .await;
    let gone = strings(&on_b["taskArns"]);
    let d = cluster
        .ok(1, "DescribeTasks", json!({"cluster": "tc", "tasks": gone}))
        .await;
    for t in d["tasks"].as_array().unwrap() {
        assert_eq!(t["lastStatus"], "STOPPED");
        assert_eq!(t["stoppedReason"], "Container instance deregistration forced by user");
    }
    cluster.shutdown().await;
}

/// Resources registered as LONG or DOUBLE are taken and given back like INTEGER ones: one
/// amount, shown in the field of its type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_double_resources_are_accounted_like_integers() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "rt"})).await;
    let reg = cluster
        .ok(
            2,
            "RegisterContainerInstance",
            json!({"cluster": "rt", "instanceIdentityDocument": "{\"instanceId\": \"i-types\"}", "totalResources": [
                {"name": "CPU", "type": "DOUBLE", "doubleValue": 100.0},
                {"name": "MEMORY", "type": "LONG", "longValue": 100}
            ]}),
        )
        .await;
    let arn = reg["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    cluster
        .ok(
            3,
            "RegisterTaskDefinition",
            json!({"family": "t", "containerDefinitions": [{"name": "c", "image": "x", "memory": 60, "cpu": 60}]}),
        )
        .await;
    let first = cluster
        .ok(1, "RunTask", json!({"cluster": "rt", "taskDefinition": "t"}))
        .await;
    assert_eq!(first["failures"], json!([]), "{first}");
    let second = cluster
        .ok(2, "RunTask", json!({"cluster": "rt", "taskDefinition": "t"}))
        .await;
    assert_eq!(second["tasks"], json!([]), "{second}");
    assert_eq!(second["failures"][0]["reason"], "RESOURCE:CPU", "{second}");
    let d = cluster
        .ok(
            3,
            "DescribeContainerInstances",
            json!({"cluster": "rt", "containerInstances": [arn]}),
        )
        .await;
    let remaining = d["containerInstances"][0]["remainingResources"]
        .as_array()
        .unwrap()
        .clone();
    let find = |name: &str| remaining.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(
        (
            find("CPU")["doubleValue"].as_f64(),
            find("CPU")["integerValue"].as_i64()
        ),
        (Some(40.0), Some(0))
    );
    assert_eq!(
        (
            find("MEMORY")["longValue"].as_i64(),
            find("MEMORY")["integerValue"].as_i64()
        ),
        (Some(40), Some(0))
    );
    cluster.shutdown().await;
}
