//! PutAttributes, DeleteAttributes, ListAttributes, and tags on container instances.

use serde_json::{json, Value};

use crate::harness::TestCluster;

fn names(body: &Value) -> Vec<String> {
    body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}={}", a["name"].as_str().unwrap(), a["value"].as_str().unwrap_or("")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_set_listed_limited_and_deleted() {
    // The 2018 API's short ARNs (`long_arns_by_default = false`), which take no tags.
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = cluster
        .ecs(
            2,
            "RegisterContainerInstance",
            json!({"attributes": [{"name": "ecs.os-type", "value": "linux"}]}),
        )
        .await;
    let arn = body["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();

    tracing::info!("--- put by ARN and by ID with targetType; list with filters");
    let put = json!({"attributes": [
        {"name": "stack", "value": "prod", "targetId": arn},
        {"name": "gpu", "targetType": "container-instance", "targetId": id}
    ]});
    let (status, body) = cluster.ecs(3, "PutAttributes", put).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributes"].as_array().unwrap().len(), 2);
    let (status, body) = cluster
        .ecs(1, "ListAttributes", json!({"targetType": "container-instance"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), vec!["ecs.os-type=linux", "gpu=", "stack=prod"]);
    assert_eq!(body["attributes"][0]["targetId"], arn.as_str());
    let filter = json!({"targetType": "container-instance", "attributeName": "stack", "attributeValue": "prod"});
    let (_, body) = cluster.ecs(2, "ListAttributes", filter).await;
    assert_eq!(names(&body), vec!["stack=prod"]);
    let (_, page) = cluster
        .ecs(
            3,
            "ListAttributes",
            json!({"targetType": "container-instance", "maxResults": 2}),
        )
        .await;
    assert_eq!(names(&page).len(), 2);
    let token = page["nextToken"].as_str().unwrap();
    let (_, rest) = cluster
        .ecs(
            1,
            "ListAttributes",
            json!({"targetType": "container-instance", "nextToken": token}),
        )
        .await;
    assert_eq!(names(&rest), vec!["stack=prod"]);

    tracing::info!("--- at most 10 custom attributes per instance; a refused call changes nothing");
    let many: Vec<Value> = (0..9)
        .map(|i| json!({"name": format!("c{i}"), "value": "v", "targetId": arn}))
        .collect();
    let (status, body) = cluster.ecs(2, "PutAttributes", json!({"attributes": many})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AttributeLimitExceededException")),
        "{body}"
    );
    let (_, body) = cluster
        .ecs(3, "ListAttributes", json!({"targetType": "container-instance"}))
        .await;
    assert_eq!(names(&body).len(), 3);

    tracing::info!("--- delete; unknown targets and bad input");
    let (status, _) = cluster
        .ecs(
            1,
            "DeleteAttributes",
            json!({"attributes": [{"name": "gpu", "targetId": arn}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = cluster
        .ecs(2, "ListAttributes", json!({"targetType": "container-instance"}))
        .await;
    assert_eq!(names(&body), vec!["ecs.os-type=linux", "stack=prod"]);
    let cases = [
        (
            "PutAttributes",
            json!({"attributes": [{"name": "x", "targetId": "arn:aws:ecs:us-east-1:000000000000:container-instance/default/ffff"}]}),
            "TargetNotFoundException",
        ),
        (
            "PutAttributes",
            json!({"attributes": [{"name": "x", "targetId": id}]}),
            "InvalidParameterException",
        ),
        (
            "PutAttributes",
            json!({"attributes": [{"name": "bad name!", "targetId": arn}]}),
            "InvalidParameterException",
        ),
        ("PutAttributes", json!({"attributes": []}), "InvalidParameterException"),
        ("ListAttributes", json!({}), "InvalidParameterException"),
        (
            "ListAttributes",
            json!({"targetType": "container-instance", "attributeValue": "x"}),
            "InvalidParameterException",
        ),
        (
            "ListAttributes",
            json!({"cluster": "nope", "targetType": "container-instance"}),
            "ClusterNotFoundException",
        ),
    ];
    for (action, req, kind) in cases {
        let (status, body) = cluster.ecs(3, action, req.clone()).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some(kind)),
            "{action} {req} -> {body}"
        );
    }

    tracing::info!("--- tags on a container instance need its long ARN");
    let (status, body) = cluster
        .ecs(
            1,
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException")),
        "{body}"
    );
    let (status, _) = cluster
        .ecs(
            2,
            "PutAccountSetting",
            json!({"name": "containerInstanceLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = cluster.ecs(3, "RegisterContainerInstance", json!({})).await;
    let long_arn = body["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = cluster
        .ecs(
            1,
            "TagResource",
            json!({"resourceArn": long_arn, "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = cluster
        .ecs(2, "ListTagsForResource", json!({"resourceArn": long_arn}))
        .await;
    assert_eq!(body["tags"], json!([{"key": "k", "value": "v"}]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_names_follow_the_reference_charset() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.leader().await;
    let (status, _) = cluster.ecs(1, "CreateCluster", json!({})).await;
    assert_eq!(status, 200);
    for (name, ok) in [
        ("ecs.capability.x-y_z", true),
        ("a/b", false),
        ("", false),
        (&"n".repeat(129), false),
    ] {
        let (status, body) = cluster
            .ecs(1, "RegisterContainerInstance", json!({"attributes": [{"name": name}]}))
            .await;
        assert_eq!(status == 200, ok, "{name}: {body}");
    }
    cluster.shutdown().await;
}
