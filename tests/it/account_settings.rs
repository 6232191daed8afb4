//! PutAccountSetting, DeleteAccountSetting and ListAccountSettings, with effective settings.

use serde_json::json;

use crate::harness::TestCluster;

const ROOT: &str = "arn:aws:iam::000000000000:root";
const USER: &str = "arn:aws:iam::000000000000:user/alice";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_settings_inherit_from_the_root_user() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;

    tracing::info!("--- nothing set: no explicit settings, every effective one is DISABLED");
    let (status, body) = cluster.ecs(1, "ListAccountSettings", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"], json!([]));
    let (_, body) = cluster
        .ecs(2, "ListAccountSettings", json!({"effectiveSettings": true}))
        .await;
    let values: Vec<&str> = body["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["DISABLED"; 3]);

    tracing::info!("--- the root user's value is every principal's default; a principal's own value wins");
    let (status, body) = cluster
        .ecs(
            3,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["setting"],
        json!({"name": "taskLongArnFormat", "value": "ENABLED", "principalArn": ROOT})
    );
    let effective = json!({"effectiveSettings": true, "name": "taskLongArnFormat", "principalArn": USER});
    let (_, body) = cluster.ecs(1, "ListAccountSettings", effective.clone()).await;
    assert_eq!(body["settings"][0]["value"], "ENABLED");
    let put = json!({"name": "taskLongArnFormat", "value": "DISABLED", "principalArn": USER});
    let (status, _) = cluster.ecs(2, "PutAccountSetting", put).await;
    assert_eq!(status, 200);
    let (_, body) = cluster.ecs(3, "ListAccountSettings", effective.clone()).await;
    assert_eq!(body["settings"][0]["value"], "DISABLED");

    tracing::info!("--- deleting the principal's value falls back to the root user's");
    let (status, body) = cluster
        .ecs(
            1,
            "DeleteAccountSetting",
            json!({"name": "taskLongArnFormat", "principalArn": USER}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["setting"]["value"], "ENABLED");
    let (_, body) = cluster
        .ecs(2, "ListAccountSettings", json!({"principalArn": USER}))
        .await;
    assert_eq!(body["settings"], json!([]));

    tracing::info!("--- filters and pages");
    let (status, _) = cluster
        .ecs(
            3,
            "PutAccountSetting",
            json!({"name": "serviceLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = cluster.ecs(1, "ListAccountSettings", json!({"maxResults": 1})).await;
    assert_eq!(body["settings"][0]["name"], "serviceLongArnFormat");
    let token = body["nextToken"].as_str().unwrap().to_string();
    let (_, body) = cluster
        .ecs(2, "ListAccountSettings", json!({"maxResults": 1, "nextToken": token}))
        .await;
    assert_eq!(body["settings"][0]["name"], "taskLongArnFormat");
    assert!(body.get("nextToken").is_none());
    let (_, body) = cluster
        .ecs(
            3,
            "ListAccountSettings",
            json!({"name": "serviceLongArnFormat", "value": "DISABLED"}),
        )
        .await;
    assert_eq!(body["settings"], json!([]));

    tracing::info!("--- invalid input is refused with the field named");
    let cases = [
        (
            "PutAccountSetting",
            json!({"name": "fooLongArnFormat", "value": "ENABLED"}),
            "name",
        ),
        (
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "yes"}),
            "value",
        ),
        ("PutAccountSetting", json!({"name": "taskLongArnFormat"}), "value"),
        (
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "ENABLED", "principalArn": "bob"}),
            "principalArn",
        ),
        ("DeleteAccountSetting", json!({}), "name"),
        ("ListAccountSettings", json!({"value": "ENABLED"}), "value"),
        ("ListAccountSettings", json!({"maxResults": 11}), "maxResults"),
    ];
    for (action, req, field) in cases {
        let (status, body) = cluster.ecs(1, action, req.clone()).await;
        assert_eq!(status, 400, "{action} {req}");
        assert_eq!(body["__type"], "InvalidParameterException", "{action} {req}");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{action} {req} -> {body}"
        );
    }
    cluster.shutdown().await;
}
