//! Pagination tokens of every List action: a genuine token continues its own list, on any node;
//! a token that decodes fine but was not issued for that list and those parameters (forged, of
//! another list, of other parameters, or altered) is an InvalidParameterException naming
//! `nextToken`, never a 5xx and never a page.

use serde_json::{json, Value};

use crate::harness::TestCluster;

const USER: &str = "arn:aws:iam::000000000000:user/alice";

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(token: &str) -> String {
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).expect("a hex token"))
        .collect();
    String::from_utf8(bytes).expect("a text token")
}

fn registration(cluster: &str, instance_id: &str) -> Value {
    json!({
        "cluster": cluster,
        "instanceIdentityDocument": format!("{{\"instanceId\": \"{instance_id}\", \"region\": \"us-east-1\"}}"),
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}
        ],
        "versionInfo": {"agentVersion": "1.24.0"},
        "attributes": [{"name": "ecs.os-type", "value": "linux"}, {"name": "stack", "value": "prod"}]
    })
}

/// One List action, the parameters of its first page, and other parameters its token must not
/// serve.
struct List {
    action: &'static str,
    params: Value,
    field: &'static str,
    others: Vec<Value>,
}

fn with(params: &Value, extra: Value) -> Value {
    let mut merged = params.clone();
    for (k, v) in extra.as_object().unwrap() {
        merged[k] = v.clone();
    }
    merged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_serve_only_the_list_and_parameters_they_were_issued_for() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;

    tracing::info!("--- two or more items in every list");
    for name in ["pa", "pb", "pc"] {
        cluster.ok(1, "CreateCluster", json!({"clusterName": name})).await;
    }
    for family in ["fa", "fa", "fb"] {
        let containers = json!([{"name": "web", "image": "nginx", "memory": 64}]);
        cluster
            .ok(
                2,
                "RegisterTaskDefinition",
                json!({"family": family, "containerDefinitions": containers}),
            )
            .await;
    }
    for (name, instance) in [("pa", "i-1"), ("pa", "i-2"), ("pb", "i-3"), ("pb", "i-4")] {
        cluster
            .ok(3, "RegisterContainerInstance", registration(name, instance))
            .await;
    }
    for name in ["pa", "pb"] {
        for service in ["s1", "s2"] {
            let body = json!({"cluster": name, "serviceName": service, "taskDefinition": "fa", "desiredCount": 0});
            cluster.ok(1, "CreateService", body).await;
        }
        let run = cluster
            .ok(
                2,
                "RunTask",
                json!({"cluster": name, "taskDefinition": "fb", "count": 2}),
            )
            .await;
        assert_eq!(run["tasks"].as_array().unwrap().len(), 2, "{run}");
    }

    let attributes = json!({"cluster": "pa", "targetType": "container-instance"});
    let lists = vec![
        List {
            action: "ListClusters",
            params: json!({}),
            field: "clusterArns",
            others: vec![],
        },
        List {
            action: "ListTasks",
            params: json!({"cluster": "pa"}),
            field: "taskArns",
            others: vec![
                json!({"cluster": "pb"}),
                json!({"cluster": "pa", "family": "fb"}),
                json!({"cluster": "pa", "desiredStatus": "STOPPED"}),
                json!({"cluster": "pa", "startedBy": "someone"}),
                json!({"cluster": "pa", "launchType": "EC2"}),
            ],
        },
        List {
            action: "ListServices",
            params: json!({"cluster": "pa"}),
            field: "serviceArns",
            others: vec![
                json!({"cluster": "pb"}),
                json!({"cluster": "pa", "schedulingStrategy": "REPLICA"}),
                json!({"cluster": "pa", "launchType": "EC2"}),
            ],
        },
        List {
            action: "ListContainerInstances",
            params: json!({"cluster": "pa"}),
            field: "containerInstanceArns",
            others: vec![
                json!({"cluster": "pb"}),
                json!({"cluster": "pa", "status": "ACTIVE"}),
                json!({"cluster": "pa", "filter": "attribute:ecs.os-type == linux"}),
            ],
        },
        List {
            action: "ListTaskDefinitions",
            params: json!({}),
            field: "taskDefinitionArns",
            others: vec![
                json!({"sort": "DESC"}),
                json!({"familyPrefix": "fa"}),
                json!({"status": "INACTIVE"}),
            ],
        },
        List {
            action: "ListTaskDefinitionFamilies",
            params: json!({}),
            field: "families",
            others: vec![json!({"familyPrefix": "f"}), json!({"status": "ACTIVE"})],
        },
        List {
            action: "ListAttributes",
            params: attributes.clone(),
            field: "attributes",
            others: vec![
                with(&attributes, json!({"cluster": "pb"})),
                with(&attributes, json!({"attributeName": "stack"})),
                with(&attributes, json!({"attributeName": "stack", "attributeValue": "prod"})),
            ],
        },
        List {
            action: "ListAccountSettings",
            params: json!({"effectiveSettings": true}),
            field: "settings",
            others: vec![
                json!({"effectiveSettings": true, "principalArn": USER}),
                json!({"effectiveSettings": true, "name": "taskLongArnFormat"}),
            ],
        },
    ];

    tracing::info!("--- a genuine token continues its list on another node, with another page size");
    let mut tokens = Vec::new();
    for list in &lists {
        let first = cluster
            .ok(1, list.action, with(&list.params, json!({"maxResults": 1})))
            .await;
        let token = first["nextToken"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no nextToken after one of several items: {first}", list.action))
            .to_string();
        let rest = cluster
            .ok(2, list.action, with(&list.params, json!({"nextToken": token})))
            .await;
        let (first, rest) = (
            first[list.field].as_array().unwrap(),
            rest[list.field].as_array().unwrap(),
        );
        assert_eq!(first.len(), 1, "{}", list.action);
        assert!(!rest.is_empty(), "{}: the second page is empty", list.action);
        assert!(
            !rest.contains(&first[0]),
            "{}: the second page repeats the first",
            list.action
        );
        tokens.push(token);
    }

    let refused = |list: &List, body: Value, why: String| {
        let cluster = &cluster;
        let action = list.action;
        async move {
            let (status, reply) = cluster.ecs(3, action, body.clone()).await;
            assert_eq!(
                (status, reply["__type"].as_str()),
                (400, Some("InvalidParameterException")),
                "{action} with {why}: {body} -> {reply}"
            );
            let message = reply["message"].as_str().unwrap_or_default();
            assert!(message.contains("nextToken"), "{action} with {why}: {message:?}");
        }
    };
    for (i, list) in lists.iter().enumerate() {
        let token = &tokens[i];
        let text = unhex(token);
        // kind.check.position (the position may hold dots itself).
        let mut parts = text.splitn(3, '.');
        let (kind, position) = (parts.next().unwrap(), parts.nth(1).unwrap_or_default());

        tracing::info!(action = list.action, "--- forged and altered tokens");
        let forged = [
            // What the server issued before tokens were bound to their list: hex of kind.position.
            (hex(&format!("{kind}.{position}")), "a token of the earlier format"),
            (hex("hello.world"), "a hex string that was never a token"),
            (hex(&format!("{text}x")), "a token with its position changed"),
            (hex(&text.replacen('.', ".0", 1)), "a token with its check changed"),
            (token[..token.len() - 2].to_string(), "a token cut short"),
        ];
        for (forged, why) in forged {
            let body = with(&list.params, json!({"nextToken": forged}));
            refused(list, body, why.to_string()).await;
        }

        tracing::info!(action = list.action, "--- tokens of the other lists");
        for (j, other) in lists.iter().enumerate() {
            if i != j {
                let body = with(&list.params, json!({"nextToken": tokens[j]}));
                refused(list, body, format!("a token of {}", other.action)).await;
            }
        }

        tracing::info!(action = list.action, "--- the token with other parameters");
        for params in &list.others {
            let body = with(params, json!({"nextToken": token}));
            refused(list, body, format!("other parameters {params}")).await;
        }
    }
    cluster.shutdown().await;
}
