//! The cluster actions over raw HTTP: behaviour, validation and error shapes.

use serde_json::json;

use crate::harness::{ecs_call, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_actions_behave_as_the_reference_says() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);

    tracing::info!("--- the default cluster is not implicit; CreateCluster with no name creates it");
    {
        let (status, body) = cluster.ecs(follower, "DescribeClusters", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(body["clusters"], json!([]));
        assert_eq!(body["failures"][0]["reason"], "MISSING");
        assert_eq!(
            body["failures"][0]["arn"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );

        let (status, body) = cluster.ecs(follower, "CreateCluster", json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cluster"]["clusterName"], "default");
        assert_eq!(body["cluster"]["status"], "ACTIVE");
        assert_eq!(
            body["cluster"]["clusterArn"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
    }

    tracing::info!("--- CreateCluster is idempotent and returns tags; Describe shows tags only when asked");
    {
        let req = json!({"clusterName": "web", "tags": [{"key": "team", "value": "blue"}]});
        let (_, first) = cluster.ecs(follower, "CreateCluster", req.clone()).await;
        let (status, again) = cluster.ecs(leader, "CreateCluster", req).await;
        assert_eq!(status, 200);
        assert_eq!(first, again);
        assert_eq!(first["cluster"]["tags"], json!([{"key": "team", "value": "blue"}]));

        let arn = "arn:aws:ecs:us-east-1:000000000000:cluster/web";
        let (_, plain) = cluster
            .ecs(leader, "DescribeClusters", json!({"clusters": [arn]}))
            .await;
        assert_eq!(plain["clusters"][0]["tags"], json!([]));
        assert_eq!(plain["clusters"][0]["statistics"], json!([]));
        let (_, full) = cluster
            .ecs(
                leader,
                "DescribeClusters",
                json!({"clusters": ["web"], "include": ["TAGS", "STATISTICS"]}),
            )
            .await;
        assert_eq!(full["clusters"][0]["tags"][0]["key"], "team");
        assert_eq!(full["clusters"][0]["statistics"].as_array().unwrap().len(), 8);
        // An ARN of another account names nothing here.
        let (_, other) = cluster
            .ecs(
                leader,
                "DescribeClusters",
                json!({"clusters": ["arn:aws:ecs:us-east-1:111111111111:cluster/web"]}),
            )
            .await;
        assert_eq!(
            other["failures"][0]["arn"],
            "arn:aws:ecs:us-east-1:111111111111:cluster/web"
        );
    }

    tracing::info!("--- ListClusters pages with maxResults and an opaque nextToken");
    {
        for name in ["a1", "a2", "a3"] {
            let (status, _) = cluster
                .ecs(follower, "CreateCluster", json!({"clusterName": name}))
                .await;
            assert_eq!(status, 200);
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"maxResults": 2});
            if let Some(t) = &token {
                req["nextToken"] = json!(t);
            }
            let (status, page) = cluster.ecs(follower, "ListClusters", req).await;
            assert_eq!(status, 200, "{page}");
            let arns = page["clusterArns"].as_array().unwrap();
            assert!(arns.len() <= 2);
            seen.extend(
                arns.iter()
                    .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string()),
            );
            match page.get("nextToken").and_then(|t| t.as_str()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, vec!["a1", "a2", "a3", "default", "web"]);
        let (status, body) = cluster
            .ecs(follower, "ListClusters", json!({"nextToken": "garbage"}))
            .await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
        let (status, body) = cluster.ecs(follower, "ListClusters", json!({"maxResults": 101})).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
        assert!(body["message"].as_str().unwrap().contains("maxResults"));
    }

    tracing::info!("--- DeleteCluster marks INACTIVE: gone from List, still Described, not found again");
    {
        let (status, body) = cluster.ecs(follower, "DeleteCluster", json!({"cluster": "a2"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cluster"]["status"], "INACTIVE");
        let (_, list) = cluster.ecs(leader, "ListClusters", json!({})).await;
        assert!(!list["clusterArns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with("/a2")));
        let (_, described) = cluster
            .ecs(leader, "DescribeClusters", json!({"clusters": ["a2"]}))
            .await;
        assert_eq!(described["clusters"][0]["status"], "INACTIVE");
        let (status, body) = cluster.ecs(follower, "DeleteCluster", json!({"cluster": "a2"})).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("ClusterNotFoundException"))
        );
        assert_eq!(body["message"], "Cluster not found.");
        let (status, body) = cluster.ecs(follower, "DeleteCluster", json!({})).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
    }

    tracing::info!("--- validation names the field");
    {
        let cases = [
            (
                json!({"clusterName": "bad name"}),
                "InvalidParameterException",
                "clusterName",
            ),
            (
                json!({"clusterName": "x".repeat(256)}),
                "InvalidParameterException",
                "clusterName",
            ),
            (json!({"clusterName": 5}), "SerializationException", "clusterName"),
            (
                json!({"tags": [{"key": "", "value": "v"}]}),
                "InvalidParameterException",
                "tags[0].key",
            ),
        ];
        for (req, kind, field) in cases {
            let (status, body) = cluster.ecs(follower, "CreateCluster", req.clone()).await;
            assert_eq!(status, 400, "{req}");
            assert_eq!(body["__type"], kind, "{req}");
            assert!(body["message"].as_str().unwrap().contains(field), "{req} -> {body}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let (status, body) = cluster
            .ecs(follower, "DescribeClusters", json!({"clusters": many}))
            .await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
        let (status, body) = cluster
            .ecs(follower, "DescribeClusters", json!({"include": ["NOPE"]}))
            .await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
        // Unknown fields from newer SDKs are ignored.
        let (status, _) = cluster
            .ecs(
                follower,
                "CreateCluster",
                json!({"clusterName": "modern", "settings": [{"name": "containerInsights", "value": "enabled"}]}),
            )
            .await;
        assert_eq!(status, 200);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_have_aws_shapes() {
    let cluster = TestCluster::start(1, |c| c.api.max_body_bytes = 2048).await;
    cluster.leader().await;
    let url = cluster.url(1);
    let http = &cluster.http;

    tracing::info!("--- every response carries a request id and the JSON 1.1 content type");
    let response = ecsd_protocol::ecs::request(http, &format!("{url}/"), "ListClusters")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-amzn-requestid").is_some());
    assert_eq!(response.headers()["content-type"], "application/x-amz-json-1.1");

    tracing::info!("--- unknown action, missing target, malformed JSON, non-object body, oversized body");
    let (status, body) = ecs_call(http, &url, "LaunchRocket", json!({}), &[]).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidAction")));
    let response = http.post(format!("{url}/")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["__type"],
        "MissingAction"
    );
    for bad in ["{\"clusterName\": ", "[1,2]", "{} trailing"] {
        let response = ecsd_protocol::ecs::request(http, &format!("{url}/"), "CreateCluster")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["__type"],
            "SerializationException",
            "{bad}"
        );
    }
    let huge = json!({"clusterName": "x", "pad": "y".repeat(4096)});
    let (status, body) = ecs_call(http, &url, "CreateCluster", huge, &[]).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (413, Some("RequestEntityTooLargeException"))
    );
    // Not applied: the oversized request was refused whole.
    let (_, list) = ecs_call(http, &url, "ListClusters", json!({}), &[]).await;
    assert_eq!(list["clusterArns"], json!([]));

    tracing::info!("--- every action has a handler: an empty request is a client error or a success, never a 500");
    for action in ecsd::api::ACTIONS {
        let (status, body) = ecs_call(http, &url, action, json!({}), &[]).await;
        assert!(status == 200 || status == 400, "{action} -> {status} {body}");
        assert_ne!(body["__type"], "UnsupportedFeatureException", "{action}");
    }
    cluster.shutdown().await;
}
