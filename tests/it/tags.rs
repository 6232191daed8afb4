//! TagResource, UntagResource and ListTagsForResource on clusters and task definitions.

use serde_json::{json, Value};

use crate::harness::TestCluster;

const CLUSTER: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/tagged";
const TASKDEF: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/tagged:1";

fn keys(body: &Value) -> Vec<String> {
    body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}={}", t["key"].as_str().unwrap(), t["value"].as_str().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_added_replaced_removed_and_listed() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    let (status, _) = cluster
        .ecs(
            1,
            "CreateCluster",
            json!({"clusterName": "tagged", "tags": [{"key": "a", "value": "1"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let td = json!({"family": "tagged", "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 32}]});
    let (status, _) = cluster.ecs(2, "RegisterTaskDefinition", td).await;
    assert_eq!(status, 200);

    for arn in [CLUSTER, TASKDEF] {
        tracing::info!(arn, "--- tag, replace a value, untag, list from every node");
        let (status, body) = cluster
            .ecs(
                3,
                "TagResource",
                json!({"resourceArn": arn, "tags": [{"key": "a", "value": "2"}, {"key": "b", "value": ""}]}),
            )
            .await;
        assert_eq!((status, body.clone()), (200, json!({})));
        let (_, body) = cluster.ecs(1, "ListTagsForResource", json!({"resourceArn": arn})).await;
        assert_eq!(keys(&body), vec!["a=2", "b="]);
        let (status, _) = cluster
            .ecs(
                2,
                "UntagResource",
                json!({"resourceArn": arn, "tagKeys": ["a", "missing"]}),
            )
            .await;
        assert_eq!(status, 200);
        let (_, body) = cluster.ecs(3, "ListTagsForResource", json!({"resourceArn": arn})).await;
        assert_eq!(keys(&body), vec!["b="]);
    }
    let (_, body) = cluster
        .ecs(
            1,
            "DescribeClusters",
            json!({"clusters": ["tagged"], "include": ["TAGS"]}),
        )
        .await;
    assert_eq!(keys(&body["clusters"][0]), vec!["b="]);

    tracing::info!("--- limits, reserved prefix, unknown and old-format ARNs");
    let fifty: Vec<Value> = (0..50).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    let (status, body) = cluster
        .ecs(1, "TagResource", json!({"resourceArn": CLUSTER, "tags": fifty}))
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException")),
        "{body}"
    );
    let (_, body) = cluster
        .ecs(2, "ListTagsForResource", json!({"resourceArn": CLUSTER}))
        .await;
    assert_eq!(keys(&body), vec!["b="], "a refused tagging changed nothing");
    let cases = [
        (
            "TagResource",
            json!({"resourceArn": CLUSTER, "tags": [{"key": "aws:x", "value": "v"}]}),
            "InvalidParameterException",
            "aws:",
        ),
        (
            "UntagResource",
            json!({"resourceArn": CLUSTER, "tagKeys": ["aws:x"]}),
            "InvalidParameterException",
            "aws:",
        ),
        (
            "TagResource",
            json!({"resourceArn": CLUSTER}),
            "InvalidParameterException",
            "tags",
        ),
        (
            "UntagResource",
            json!({"resourceArn": CLUSTER}),
            "InvalidParameterException",
            "tagKeys",
        ),
        (
            "ListTagsForResource",
            json!({}),
            "InvalidParameterException",
            "resourceArn",
        ),
        (
            "ListTagsForResource",
            json!({"resourceArn": "not-an-arn"}),
            "InvalidParameterException",
            "resourceArn",
        ),
        (
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/none"}),
            "ClusterNotFoundException",
            "Cluster not found",
        ),
        (
            "TagResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/none:1", "tags": []}),
            "ResourceNotFoundException",
            "could not be found",
        ),
        (
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/none:1"}),
            "InvalidParameterException",
            "could not be found",
        ),
        (
            "TagResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task/0b69d5c0-d655-4695-98cd-5d2d526d9d5a", "tags": []}),
            "InvalidParameterException",
            "Long arn format",
        ),
        (
            "TagResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/tagged", "tags": []}),
            "InvalidParameterException",
            "revision",
        ),
    ];
    for (action, req, kind, needle) in cases {
        let (status, body) = cluster.ecs(3, action, req.clone()).await;
        assert_eq!(status, 400, "{action} {req}");
        assert_eq!(body["__type"], kind, "{action} {req}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{action} {req} -> {body}"
        );
    }
    cluster.shutdown().await;
}
