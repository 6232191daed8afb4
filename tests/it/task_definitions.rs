//! Task definition actions over raw HTTP against a 3-node cluster, each call to a different node.

use serde_json::{json, Value};

use crate::harness::TestCluster;

fn web(family: &str) -> Value {
    json!({
        "family": family,
        "containerDefinitions": [{
            "name": "app",
            "image": "nginx:1.25",
            "memoryReservation": 128,
            "memory": 256,
            "cpu": 256,
            "portMappings": [{"containerPort": 80, "hostPort": 0}],
            "environment": [{"name": "MODE", "value": "prod"}],
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
            "healthCheck": {"command": ["CMD", "true"], "interval": 30}
        }],
        "tags": [{"key": "team", "value": "web"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definitions_register_describe_list_deregister() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    let mut node = (1..=3).cycle();
    let mut next = move || node.next().unwrap();

    tracing::info!("--- register three revisions; fields round-trip with the reference's defaults");
    for expected in 1..=3 {
        let (status, body) = cluster.ecs(next(), "RegisterTaskDefinition", web("web")).await;
        assert_eq!(status, 200, "{body}");
        let td = &body["taskDefinition"];
        assert_eq!(td["revision"], expected);
        assert_eq!(
            td["taskDefinitionArn"],
            format!("arn:aws:ecs:us-east-1:000000000000:task-definition/web:{expected}")
        );
        assert_eq!(td["status"], "ACTIVE");
        assert_eq!(td["networkMode"], "bridge");
        assert_eq!(td["compatibilities"], json!(["EC2"]));
        let c = &td["containerDefinitions"][0];
        assert_eq!(c["essential"], true);
        assert_eq!(c["portMappings"][0]["protocol"], "tcp");
        assert_eq!(c["mountPoints"], json!([]));
        assert_eq!(c["logConfiguration"]["options"]["max-size"], "10m");
        assert_eq!(c["healthCheck"]["interval"], 30);
        assert!(td["registeredAt"].as_f64().unwrap() > 1.5e9);
        assert_eq!(body["tags"][0]["key"], "team");
    }
    let (status, _) = cluster.ecs(next(), "RegisterTaskDefinition", web("api")).await;
    assert_eq!(status, 200);

    tracing::info!("--- deregister :3; a new registration is :4, never a reused number");
    let (status, body) = cluster
        .ecs(next(), "DeregisterTaskDefinition", json!({"taskDefinition": "web:3"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["taskDefinition"]["status"], "INACTIVE");
    assert!(body["taskDefinition"]["deregisteredAt"].is_number());
    let (_, body) = cluster.ecs(next(), "RegisterTaskDefinition", web("web")).await;
    assert_eq!(body["taskDefinition"]["revision"], 4);

    tracing::info!("--- describe: family is the latest ACTIVE; an INACTIVE revision stays describable");
    let (_, body) = cluster
        .ecs(next(), "DescribeTaskDefinition", json!({"taskDefinition": "web"}))
        .await;
    assert_eq!(body["taskDefinition"]["revision"], 4);
    assert!(body.get("tags").is_none());
    let arn3 = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3";
    let (_, body) = cluster
        .ecs(
            next(),
            "DescribeTaskDefinition",
            json!({"taskDefinition": arn3, "include": ["TAGS"]}),
        )
        .await;
    assert_eq!(body["taskDefinition"]["status"], "INACTIVE");
    assert_eq!(body["tags"][0]["value"], "web");

    tracing::info!("--- list revisions and families, with status, sort and pages");
    let (_, body) = cluster
        .ecs(next(), "ListTaskDefinitions", json!({"familyPrefix": "web"}))
        .await;
    let arns: Vec<&str> = body["taskDefinitionArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 3);
    assert!(arns[0].ends_with("web:1") && arns[2].ends_with("web:4"));
    let (_, body) = cluster
        .ecs(
            next(),
            "ListTaskDefinitions",
            json!({"familyPrefix": "web", "status": "INACTIVE"}),
        )
        .await;
    assert_eq!(body["taskDefinitionArns"], json!([arn3]));
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"sort": "DESC", "maxResults": 2});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let (status, page) = cluster.ecs(next(), "ListTaskDefinitions", req).await;
        assert_eq!(status, 200, "{page}");
        for a in page["taskDefinitionArns"].as_array().unwrap() {
            seen.push(a.as_str().unwrap().rsplit('/').next().unwrap().to_string());
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["web:4", "web:2", "web:1", "api:1"]);
    let (_, body) = cluster.ecs(next(), "ListTaskDefinitionFamilies", json!({})).await;
    assert_eq!(body["families"], json!(["api", "web"]));
    let (_, body) = cluster
        .ecs(next(), "ListTaskDefinitionFamilies", json!({"familyPrefix": "w"}))
        .await;
    assert_eq!(body["families"], json!(["web"]));
    let (_, _) = cluster
        .ecs(next(), "DeregisterTaskDefinition", json!({"taskDefinition": "api:1"}))
        .await;
    let (_, body) = cluster
        .ecs(next(), "ListTaskDefinitionFamilies", json!({"status": "INACTIVE"}))
        .await;
    assert_eq!(body["families"], json!(["api"]));
    let (_, body) = cluster
        .ecs(next(), "ListTaskDefinitionFamilies", json!({"status": "ACTIVE"}))
        .await;
    assert_eq!(body["families"], json!(["web"]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definition_errors_name_the_problem() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.leader().await;
    let with = |patch: Value| {
        let mut req = web("bad");
        for (k, v) in patch.as_object().unwrap() {
            req[k] = v.clone();
        }
        req
    };
    let container = |patch: Value| {
        let mut c = web("bad")["containerDefinitions"][0].clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        with(json!({"containerDefinitions": [c]}))
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(json!({"family": "has space"})),
            "InvalidParameterException",
            "family",
        ),
        (with(json!({"family": null})), "InvalidParameterException", "family"),
        (
            with(json!({"containerDefinitions": []})),
            "InvalidParameterException",
            "containerDefinitions",
        ),
        (
            with(json!({"containerDefinitions": "x"})),
            "SerializationException",
            "containerDefinitions",
        ),
        (
            with(json!({"networkMode": "overlay"})),
            "InvalidParameterException",
            "networkMode",
        ),
        (with(json!({"cpu": "64"})), "InvalidParameterException", "cpu"),
        (
            with(json!({"requiresCompatibilities": ["FARGATE"]})),
            "ClientException",
            "Fargate only supports network mode 'awsvpc'",
        ),
        (
            with(json!({"placementConstraints": [{"type": "distinctInstance"}]})),
            "InvalidParameterException",
            "placementConstraints[0].type",
        ),
        (container(json!({"image": null})), "ClientException", "Container.image"),
        (container(json!({"name": ""})), "ClientException", "Container.name"),
        (
            container(json!({"memory": null, "memoryReservation": null})),
            "ClientException",
            "'memory' or 'memoryReservation'",
        ),
        (
            container(json!({"memory": 64, "memoryReservation": 128})),
            "ClientException",
            "memoryReservation",
        ),
        (container(json!({"essential": false})), "ClientException", "essential"),
        (
            container(json!({"portMappings": [{"hostPort": 80}]})),
            "InvalidParameterException",
            "containerPort",
        ),
        (
            container(json!({"portMappings": [{"containerPort": 80, "protocol": "sctp"}]})),
            "InvalidParameterException",
            "protocol",
        ),
        (container(json!({"memory": "lots"})), "SerializationException", "memory"),
    ];
    for (req, kind, needle) in cases {
        let (status, body) = cluster.ecs(1, "RegisterTaskDefinition", req.clone()).await;
        assert_eq!(status, 400, "{req} -> {body}");
        assert_eq!(body["__type"], kind, "{req} -> {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{req} -> {body}");
    }
    // Nothing was registered by any of the refused requests.
    let (_, body) = cluster.ecs(1, "ListTaskDefinitionFamilies", json!({})).await;
    assert_eq!(body["families"], json!([]));

    let (status, body) = cluster
        .ecs(1, "DescribeTaskDefinition", json!({"taskDefinition": "nope"}))
        .await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("ClientException")));
    let (status, body) = cluster
        .ecs(1, "DeregisterTaskDefinition", json!({"taskDefinition": "nope"}))
        .await;
    assert_eq!((status, body["message"].as_str()), (400, Some("Revision is missing.")));
    let (status, body) = cluster
        .ecs(1, "DeregisterTaskDefinition", json!({"taskDefinition": "nope:1"}))
        .await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("ClientException")));
    let (status, body) = cluster.ecs(1, "ListTaskDefinitions", json!({"sort": "UP"})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let (status, body) = cluster
        .ecs(1, "ListTaskDefinitions", json!({"nextToken": "forged"}))
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );

    tracing::info!("--- host networking copies containerPort into hostPort; a different hostPort is refused");
    let (status, body) = cluster
        .ecs(1, "RegisterTaskDefinition", with(json!({"networkMode": "host"})))
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ClientException")),
        "{body}"
    );
    let mut host = container(json!({"portMappings": [{"containerPort": 80}]}));
    host["networkMode"] = json!("host");
    let (status, body) = cluster.ecs(1, "RegisterTaskDefinition", host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["hostPort"],
        80
    );
    let (status, body) = cluster
        .ecs(
            1,
            "RegisterTaskDefinition",
            with(json!({"cpu": "1 vCPU", "memory": "1 GB"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["taskDefinition"]["cpu"], "1024");
    assert_eq!(body["taskDefinition"]["memory"], "1024");
    cluster.shutdown().await;
}
