//! No request, however malformed, gets a 5xx: random JSON shapes sent to every action.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::harness::TestCluster;

/// Field names the actions use, so random bodies hit real fields with wrong shapes.
const FIELDS: &[&str] = &[
    "cluster",
    "clusterName",
    "clusters",
    "include",
    "tags",
    "tagKeys",
    "resourceArn",
    "family",
    "familyPrefix",
    "containerDefinitions",
    "cpu",
    "memory",
    "networkMode",
    "taskDefinition",
    "status",
    "sort",
    "maxResults",
    "nextToken",
    "name",
    "value",
    "principalArn",
    "effectiveSettings",
    "containerInstance",
    "containerInstances",
    "totalResources",
    "attributes",
    "targetType",
    "attributeName",
    "attributeValue",
    "versionInfo",
    "force",
    "containerInstanceArn",
    "instanceIdentityDocument",
    "requiresCompatibilities",
    "placementConstraints",
    "portMappings",
    "key",
    "count",
    "group",
    "startedBy",
    "overrides",
    "placementStrategy",
    "serviceName",
    "service",
    "services",
    "desiredCount",
    "deploymentConfiguration",
    "clientToken",
    "task",
    "tasks",
    "reason",
    "containers",
    "containerName",
    "exitCode",
    "networkBindings",
    "desiredStatus",
    "schedulingStrategy",
    "launchType",
    "loadBalancers",
    "networkConfiguration",
    "healthCheckGracePeriodSeconds",
    "forceNewDeployment",
];

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen_range(-5i64..100_000)),
        3 => json!(rng.gen::<f64>() * 1e6),
        4 => json!(
            [
                "",
                "default",
                "arn:aws:ecs:us-east-1:000000000000:cluster/x",
                "ENABLED",
                "web:1",
                "aws:x",
                "\u{0}"
            ][rng.gen_range(0..7)]
        ),
        5 => json!("x".repeat(rng.gen_range(0..300))),
        6 => Value::Array((0..rng.gen_range(0..4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => random_object(rng, depth + 1),
    }
}

fn random_object(rng: &mut StdRng, depth: u32) -> Value {
    let mut map = Map::new();
    for _ in 0..rng.gen_range(0..5) {
        let key = FIELDS[rng.gen_range(0..FIELDS.len())];
        map.insert(key.to_string(), random_value(rng, depth));
    }
    Value::Object(map)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_never_get_a_server_error() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.leader().await;
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({})).await;
    assert_eq!(status, 200);
    let mut rng = StdRng::seed_from_u64(0xEC5D);
    for action in ecsd::api::ACTIONS {
        for _ in 0..40 {
            let body = random_object(&mut rng, 0);
            let (status, response) = cluster.ecs(1, action, body.clone()).await;
            assert!(status < 500, "{action} {body} -> {status} {response}");
            if status != 200 {
                assert!(
                    response["__type"].is_string() && response["message"].is_string(),
                    "{action} {body} -> {response}"
                );
            }
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_objects_and_wrong_methods_get_aws_errors() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.leader().await;
    for body in [json!(["positional"]), json!("text"), json!(7), Value::Null] {
        let (status, response) = cluster.ecs(1, "CreateCluster", body.clone()).await;
        assert_eq!(
            (status, response["__type"].as_str()),
            (400, Some("SerializationException")),
            "{body} -> {response}"
        );
    }
    // Nothing was created from an array read as positional fields.
    let (_, list) = cluster.ecs(1, "ListClusters", json!({})).await;
    assert_eq!(list["clusterArns"], json!([]));
    let http = reqwest::Client::new();
    let get = http.get(cluster.url(1)).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let body: Value = get.json().await.unwrap();
    assert_eq!(body["__type"], "InvalidAction");
    let lost = http.post(format!("{}/nowhere", cluster.url(1))).send().await.unwrap();
    assert_eq!(lost.status().as_u16(), 404);
    let body: Value = lost.json().await.unwrap();
    assert!(body["message"].is_string());
    cluster.shutdown().await;
}
