//! PutAccountSetting, DeleteAccountSetting and ListAccountSettings, with effective settings.

use serde_json::json;

use crate::harness::TestCluster;

const ROOT: &str = "arn:aws:iam::000000000000:root";
const USER: &str = "arn:aws:iam::000000000000:user/alice";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_settings_inherit_from_the_root_user() {
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;

    tracing::info!(
        "--- with the 2018 default (long_arns_by_default = false): nothing set, every effective one is disabled"
    );
    let (status, body) = cluster.ecs(1, "ListAccountSettings", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"], json!([]));
    // Eleven settings: a page of ten, then the last.
    let (_, first) = cluster
        .ecs(2, "ListAccountSettings", json!({"effectiveSettings": true}))
        .await;
    let token = first["nextToken"].as_str().expect("a second page").to_string();
    let (_, second) = cluster
        .ecs(
            3,
            "ListAccountSettings",
            json!({"effectiveSettings": true, "nextToken": token}),
        )
        .await;
    let pages = [
        first["settings"].as_array().unwrap(),
        second["settings"].as_array().unwrap(),
    ];
    assert_eq!((pages[0].len(), pages[1].len()), (10, 1));
    let values: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.iter())
        .filter(|s| s["name"].as_str().unwrap().ends_with("LongArnFormat"))
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["disabled"; 3]);

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
        json!({"name": "taskLongArnFormat", "value": "ENABLED", "principalArn": ROOT, "type": "user"})
    );
    let effective = json!({"effectiveSettings": true, "name": "taskLongArnFormat", "principalArn": USER});
    let (_, body) = cluster.ecs(1, "ListAccountSettings", effective.clone()).await;
    assert_eq!(body["settings"][0]["value"], "ENABLED");
    let put = json!({"name": "taskLongArnFormat", "value": "DISABLED", "principalArn": USER, "type": "user"});
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
    // Explicit settings only: the root user set two.
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

const BOB: &str = "arn:aws:iam::000000000000:role/bob";

/// `{name: value}` of a ListAccountSettings reply, checking that every setting is `principal`'s.
fn settings_of(body: &serde_json::Value, principal: &str) -> std::collections::BTreeMap<String, String> {
    body["settings"]
        .as_array()
        .unwrap_or_else(|| panic!("no settings: {body}"))
        .iter()
        .filter(|s| s["name"].as_str().unwrap().ends_with("LongArnFormat"))
        .map(|s| {
            assert_eq!(s["principalArn"], principal, "{body}");
            (
                s["name"].as_str().unwrap().to_string(),
                // Values are echoed as sent; nobody's value is the default's lower case.
                s["value"].as_str().unwrap().to_ascii_uppercase(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principals_own_setting_is_its_alone_and_the_root_users_is_everyone_elses_default() {
    let cluster = TestCluster::start(3, |c| c.long_arns_by_default = false).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "acct"})).await;
    let containers = json!([{"name": "web", "image": "nginx", "memory": 64}]);
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": containers}),
        )
        .await;
    // Requests are the root user's: its effective serviceLongArnFormat decides a new service's ARN.
    let service_arn = |name: &'static str| {
        let cluster = &cluster;
        async move {
            let body = json!({"cluster": "acct", "serviceName": name, "taskDefinition": "web", "desiredCount": 0});
            let reply = cluster.ok(3, "CreateService", body).await;
            reply["service"]["serviceArn"].as_str().unwrap().to_string()
        }
    };
    let explicit = |principal: &'static str| {
        let cluster = &cluster;
        async move {
            let body = cluster
                .ok(1, "ListAccountSettings", json!({"principalArn": principal}))
                .await;
            settings_of(&body, principal)
        }
    };
    // The three long-ARN settings (of eleven: more than a page), one request each.
    let effective = |principal: &'static str| {
        let cluster = &cluster;
        async move {
            let mut all = std::collections::BTreeMap::new();
            for name in [
                "containerInstanceLongArnFormat",
                "serviceLongArnFormat",
                "taskLongArnFormat",
            ] {
                let body = cluster
                    .ok(
                        2,
                        "ListAccountSettings",
                        json!({"principalArn": principal, "effectiveSettings": true, "name": name}),
                    )
                    .await;
                all.extend(settings_of(&body, principal));
            }
            all
        }
    };
    let all = |service: &str, task: &str| {
        map(&[
            ("containerInstanceLongArnFormat", "DISABLED"),
            ("serviceLongArnFormat", service),
            ("taskLongArnFormat", task),
        ])
    };

    tracing::info!("--- a user's own setting is stored for that user");
    let reply = cluster
        .ok(
            2,
            "PutAccountSetting",
            json!({"name": "serviceLongArnFormat", "value": "ENABLED", "principalArn": USER, "type": "user"}),
        )
        .await;
    assert_eq!(
        reply["setting"],
        json!({"name": "serviceLongArnFormat", "value": "ENABLED", "principalArn": USER, "type": "user"})
    );
    assert_eq!(explicit(USER).await, map(&[("serviceLongArnFormat", "ENABLED")]));
    assert_eq!(effective(USER).await, all("ENABLED", "DISABLED"));

    tracing::info!("--- it is not the root user's, nor anyone else's");
    assert_eq!(explicit(ROOT).await, map(&[]));
    let (_, body) = cluster.ecs(3, "ListAccountSettings", json!({})).await;
    assert_eq!(settings_of(&body, ROOT), map(&[]));
    assert_eq!(effective(ROOT).await, all("DISABLED", "DISABLED"));
    assert_eq!(effective(BOB).await, all("DISABLED", "DISABLED"));
    // The caller is the root user: its services keep the short ARN format.
    let before = service_arn("before").await;
    assert!(before.ends_with(":service/before"), "{before}");

    tracing::info!("--- the root user's value is the default of every principal without its own");
    let reply = cluster
        .ok(
            3,
            "PutAccountSetting",
            json!({"name": "serviceLongArnFormat", "value": "ENABLED", "principalArn": ROOT, "type": "user"}),
        )
        .await;
    assert_eq!(reply["setting"]["principalArn"], ROOT);
    cluster
        .ok(
            1,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "ENABLED"}),
        )
        .await;
    assert_eq!(
        explicit(ROOT).await,
        map(&[("serviceLongArnFormat", "ENABLED"), ("taskLongArnFormat", "ENABLED")])
    );
    assert_eq!(effective(ROOT).await, all("ENABLED", "ENABLED"));
    assert_eq!(effective(BOB).await, all("ENABLED", "ENABLED"));
    assert_eq!(effective(USER).await, all("ENABLED", "ENABLED"));
    // The user still has only its own value explicitly.
    assert_eq!(explicit(USER).await, map(&[("serviceLongArnFormat", "ENABLED")]));
    let after = service_arn("after").await;
    assert!(after.ends_with(":service/acct/after"), "{after}");

    tracing::info!("--- a principal's own value wins over the default, for it alone");
    cluster
        .ok(
            2,
            "PutAccountSetting",
            json!({"name": "serviceLongArnFormat", "value": "DISABLED", "principalArn": USER, "type": "user"}),
        )
        .await;
    cluster
        .ok(
            3,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "DISABLED", "principalArn": BOB, "type": "user"}),
        )
        .await;
    assert_eq!(effective(USER).await, all("DISABLED", "ENABLED"));
    assert_eq!(effective(BOB).await, all("ENABLED", "DISABLED"));
    assert_eq!(effective(ROOT).await, all("ENABLED", "ENABLED"));
    let (_, body) = cluster
        .ecs(
            1,
            "ListAccountSettings",
            json!({"principalArn": USER, "effectiveSettings": true, "name": "serviceLongArnFormat", "value": "DISABLED"}),
        )
        .await;
    assert_eq!(settings_of(&body, USER), map(&[("serviceLongArnFormat", "DISABLED")]));
    let third = service_arn("third").await;
    assert!(third.ends_with(":service/acct/third"), "{third}");

    tracing::info!("--- deleting a principal's value returns it to the default, and only it");
    let reply = cluster
        .ok(
            1,
            "DeleteAccountSetting",
            json!({"name": "serviceLongArnFormat", "principalArn": USER}),
        )
        .await;
    assert_eq!(
        reply["setting"],
        json!({"name": "serviceLongArnFormat", "value": "ENABLED", "principalArn": USER, "type": "user"})
    );
    assert_eq!(explicit(USER).await, map(&[]));
    assert_eq!(effective(USER).await, all("ENABLED", "ENABLED"));
    assert_eq!(effective(BOB).await, all("ENABLED", "DISABLED"));
    assert_eq!(explicit(BOB).await, map(&[("taskLongArnFormat", "DISABLED")]));

    tracing::info!("--- a default changed later reaches the principals without their own value");
    let reply = cluster
        .ok(2, "DeleteAccountSetting", json!({"name": "serviceLongArnFormat"}))
        .await;
    assert_eq!(
        reply["setting"],
        json!({"name": "serviceLongArnFormat", "value": "disabled", "principalArn": ROOT, "type": "user"})
    );
    cluster
        .ok(
            3,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "DISABLED", "principalArn": ROOT, "type": "user"}),
        )
        .await;
    cluster
        .ok(
            1,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "ENABLED", "principalArn": BOB, "type": "user"}),
        )
        .await;
    assert_eq!(effective(USER).await, all("DISABLED", "DISABLED"));
    assert_eq!(effective(BOB).await, all("DISABLED", "ENABLED"));
    assert_eq!(effective(ROOT).await, all("DISABLED", "DISABLED"));
    let last = service_arn("last").await;
    assert!(last.ends_with(":service/last"), "{last}");
    cluster.shutdown().await;
}
