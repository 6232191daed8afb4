//! The trust boundary of the API: every request signed (SigV4) by a key the cluster knows,
//! with a role that allows the action; keys made, replicated and revoked through the admin
//! endpoints; real clients (the AWS SDK for Rust) signing as they do against AWS.

use std::time::{Duration, SystemTime};

use ecsd_protocol::sigv4::{Credentials, Signer};
use serde_json::{json, Value};

use crate::harness::{wait_for, TestCluster};

pub const ROOT_ID: &str = "AKIAROOTTESTKEY00001";
pub const ROOT_SECRET: &str = "rootsecretrootsecretrootsecretrootsecret";

/// A cluster with authentication on and the test root key.
pub async fn secured(n: u64) -> TestCluster {
    TestCluster::start(n, |config| {
        config.auth.enabled = true;
        config.auth.root_access_key_id = Some(ROOT_ID.into());
        config.auth.root_secret_access_key = Some(ROOT_SECRET.into());
    })
    .await
}

pub fn root() -> Signer {
    Signer::new(Credentials::new(ROOT_ID, ROOT_SECRET), "us-east-1")
}

/// One ECS call signed by `signer` (unsigned with `None`) as if at `time`.
pub async fn call_at(
    http: &reqwest::Client,
    url: &str,
    action: &str,
    body: &Value,
    signer: Option<&Signer>,
    time: SystemTime,
) -> (u16, Value) {
    let mut request = ecsd_protocol::ecs::request(http, &format!("{url}/"), action)
        .body(body.to_string())
        .build()
        .unwrap();
    if let Some(signer) = signer {
        signer.sign_at(time, &mut request).unwrap();
    }
    let response = http.execute(request).await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn call(
    http: &reqwest::Client,
    url: &str,
    action: &str,
    body: &Value,
    signer: Option<&Signer>,
) -> (u16, Value) {
    call_at(http, url, action, body, signer, SystemTime::now()).await
}

/// One admin request (`GET` without a body, else `POST`), signed by `signer`.
pub async fn admin(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    body: Option<Value>,
    signer: Option<&Signer>,
) -> (u16, Value) {
    let url = format!("{url}{path}");
    let builder = match &body {
        Some(body) => http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => http.get(&url),
    };
    let mut request = builder.build().unwrap();
    if let Some(signer) = signer {
        signer.sign(&mut request).unwrap();
    }
    let response = http.execute(request).await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a key through node `id` with the root key; its signer.
pub async fn create_key(cluster: &TestCluster, id: u64, name: &str, role: &str) -> Signer {
    create_key_at(&cluster.http, &cluster.url(id), name, role).await
}

/// Creates a key through the node at `url` with the root key; its signer.
pub async fn create_key_at(http: &reqwest::Client, url: &str, name: &str, role: &str) -> Signer {
    let body = json!({"name": name, "role": role});
    let (status, key) = admin(http, url, "/cluster/keys/create", Some(body), Some(&root())).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["role"], role);
    assert_eq!(key["principalArn"], format!("arn:aws:iam::000000000000:user/{name}"));
    let secret = key["secretAccessKey"].as_str().unwrap();
    assert_eq!(secret.len(), 40);
    Signer::new(
        Credentials::new(key["accessKeyId"].as_str().unwrap(), secret),
        "us-east-1",
    )
}

fn kind(reply: &(u16, Value)) -> (u16, &str) {
    (reply.0, reply.1["__type"].as_str().unwrap_or("-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_needs_a_valid_signature_and_a_role_that_allows_it() {
    let cluster = secured(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let http = &cluster.http;
    let (url, other) = (cluster.url(leader), cluster.url(follower));

    // Unsigned: nothing is served, not even a read.
    let list = json!({});
    let reply = call(http, &url, "ListClusters", &list, None).await;
    assert_eq!(
        kind(&reply),
        (400, "MissingAuthenticationTokenException"),
        "{}",
        reply.1
    );

    // Keys made on the leader work at once on a follower (an unknown key waits for the replica
    // to catch up before it is refused).
    let ops = create_key(&cluster, leader, "ops", "operator").await;
    let ro = create_key(&cluster, leader, "viewer", "read-only").await;
    let created = call(
        http,
        &other,
        "CreateCluster",
        &json!({"clusterName": "signed"}),
        Some(&ops),
    )
    .await;
    assert_eq!(created.0, 200, "{}", created.1);
    let listed = call(http, &other, "ListClusters", &list, Some(&ro)).await;
    assert_eq!(listed.0, 200, "{}", listed.1);
    assert_eq!(listed.1["clusterArns"].as_array().unwrap().len(), 1);

    // A read-only key cannot write, on any node; the message names the action and the role.
    for node in [&url, &other] {
        let reply = call(http, node, "CreateCluster", &json!({"clusterName": "nope"}), Some(&ro)).await;
        assert_eq!(kind(&reply), (400, "AccessDeniedException"), "{}", reply.1);
        let message = reply.1["message"].as_str().unwrap();
        assert!(
            message.contains("ecs:CreateCluster") && message.contains("read-only"),
            "{message}"
        );
    }
    // An agent key reaches only the agent's actions.
    let agent = create_key(&cluster, leader, "host-1", "agent").await;
    let reply = call(
        http,
        &url,
        "DescribeTaskDefinition",
        &json!({"taskDefinition": "x"}),
        Some(&agent),
    )
    .await;
    assert_eq!(kind(&reply), (400, "AccessDeniedException"));
    let reply = call(http, &url, "DiscoverPollEndpoint", &json!({}), Some(&agent)).await;
    assert_eq!(reply.0, 200, "{}", reply.1);

    // The wrong secret, an unknown key, a clock 20 minutes off (either way), a malformed header.
    let wrong = Signer::new(
        Credentials::new(ops.credentials().access_key_id.clone(), "x".repeat(40)),
        "us-east-1",
    );
    let reply = call(http, &url, "ListClusters", &list, Some(&wrong)).await;
    assert_eq!(kind(&reply), (400, "InvalidSignatureException"), "{}", reply.1);
    let unknown = Signer::new(Credentials::new("AKIAUNKNOWNKEY000000", "x".repeat(40)), "us-east-1");
    let reply = call(http, &url, "ListClusters", &list, Some(&unknown)).await;
    assert_eq!(kind(&reply), (400, "UnrecognizedClientException"), "{}", reply.1);
    for skew in [
        SystemTime::now() - Duration::from_secs(20 * 60),
        SystemTime::now() + Duration::from_secs(20 * 60),
    ] {
        let reply = call_at(http, &url, "ListClusters", &list, Some(&ops), skew).await;
        assert_eq!(kind(&reply), (400, "InvalidSignatureException"), "{}", reply.1);
        let message = reply.1["message"].as_str().unwrap();
        assert!(
            message.starts_with("Signature expired") || message.starts_with("Signature not yet current"),
            "{message}"
        );
    }
    let reply = ecsd_protocol::ecs::send(
        ecsd_protocol::ecs::request(http, &format!("{url}/"), "ListClusters")
            .header("authorization", "AWS4-HMAC-SHA256 Credential")
            .header("x-amz-date", "20261207T000000Z"),
        &list,
    )
    .await
    .unwrap();
    assert_eq!(
        (reply.status, reply.body["__type"].as_str().unwrap()),
        (400, "IncompleteSignatureException"),
        "{}",
        reply.body
    );

    // A request forwarded to the leader keeps its caller: a read-only key's RunTask is refused
    // where it arrives, an operator's is served by the leader.
    let run = json!({"taskDefinition": "missing:1", "cluster": "signed"});
    let reply = call(http, &other, "RunTask", &run, Some(&ro)).await;
    assert_eq!(kind(&reply), (400, "AccessDeniedException"));
    let reply = call(http, &other, "RunTask", &run, Some(&ops)).await;
    assert_eq!(kind(&reply), (400, "ClientException"), "{}", reply.1);

    // The caller is the principal of the account settings.
    let reply = call(
        http,
        &other,
        "PutAccountSetting",
        &json!({"name": "taskLongArnFormat", "value": "enabled"}),
        Some(&ops),
    )
    .await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1["setting"]["principalArn"], "arn:aws:iam::000000000000:user/ops");
    let other_principal = json!({"name": "taskLongArnFormat", "value": "enabled", "principalArn": "arn:aws:iam::000000000000:user/viewer"});
    let reply = call(http, &other, "PutAccountSetting", &other_principal, Some(&ops)).await;
    assert_eq!(kind(&reply), (400, "AccessDeniedException"), "{}", reply.1);

    // A revoked key is refused on every node.
    let (status, body) = admin(
        http,
        &url,
        "/cluster/keys/revoke",
        Some(json!({"name": "viewer"})),
        Some(&root()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for id in 1..=3 {
        let node = cluster.url(id);
        wait_for(
            &format!("node {id} to refuse the revoked key"),
            Duration::from_secs(10),
            || async {
                let reply = call(http, &node, "ListClusters", &list, Some(&ro)).await;
                (kind(&reply) == (400, "UnrecognizedClientException")).then_some(())
            },
        )
        .await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_key_changes_the_membership_or_the_keys() {
    let cluster = secured(3).await;
    let http = &cluster.http;
    let url = cluster.url(1);
    let ops = create_key(&cluster, 1, "ops", "operator").await;
    let reader = create_key(&cluster, 1, "reader", "read-only").await;
    let boss = create_key(&cluster, 1, "boss", "admin").await;

    // Neither unsigned nor an operator's request removes a node or makes a key.
    let remove = json!({"id": 3});
    let (status, body) = admin(http, &url, "/cluster/remove-node", Some(remove.clone()), None).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("MissingAuthenticationTokenException")),
        "{body}"
    );
    for (signer, who) in [(&ops, "ops"), (&reader, "reader")] {
        let (status, body) = admin(http, &url, "/cluster/remove-node", Some(remove.clone()), Some(signer)).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("AccessDeniedException")),
            "{who}: {body}"
        );
        let make = json!({"name": "mine", "role": "admin"});
        let (status, body) = admin(http, &url, "/cluster/keys/create", Some(make), Some(signer)).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("AccessDeniedException")),
            "{who}: {body}"
        );
    }
    let (status, status_body) = admin(http, &url, "/cluster/status", None, Some(&reader)).await;
    assert_eq!(status, 200, "{status_body}");
    assert_eq!(
        status_body["members"].as_array().map(Vec::len),
        Some(3),
        "{status_body}"
    );

    // The names are unique, the roles known; the listing shows no secret.
    let again = json!({"name": "ops", "role": "operator"});
    let (status, body) = admin(http, &url, "/cluster/keys/create", Some(again), Some(&boss)).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException")),
        "{body}"
    );
    let bad_role = json!({"name": "x", "role": "superuser"});
    let (status, body) = admin(http, &url, "/cluster/keys/create", Some(bad_role), Some(&boss)).await;
    assert!(
        status == 400 && body["message"].as_str().unwrap().starts_with("role:"),
        "{body}"
    );
    let (status, listed) = admin(http, &cluster.url(2), "/cluster/keys", None, Some(&boss)).await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{listed}");
    assert!(!listed.to_string().contains("secretAccessKey"), "{listed}");

    // An admin key removes a node.
    let (status, body) = admin(http, &url, "/cluster/remove-node", Some(remove), Some(&boss)).await;
    assert_eq!(status, 200, "{body}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdk_signs_requests_the_cluster_verifies() {
    use aws_sdk_ecs::config::{BehaviorVersion, Region};
    let cluster = secured(3).await;
    let leader = cluster.leader().await;
    let ops = create_key(&cluster, leader, "sdk", "operator").await;
    let client = |secret: &str| {
        let credentials = aws_sdk_ecs::config::Credentials::new(
            ops.credentials().access_key_id.clone(),
            secret.to_string(),
            None,
            None,
            "test",
        );
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(cluster.url(cluster.other_than(leader)))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    };
    let good = client(&ops.credentials().secret_access_key);
    let created = good
        .create_cluster()
        .cluster_name("sdk-signed")
        .send()
        .await
        .expect("a signed call");
    assert_eq!(created.cluster().and_then(|c| c.cluster_name()), Some("sdk-signed"));
    let listed = good.list_clusters().send().await.expect("a signed read");
    assert_eq!(listed.cluster_arns().len(), 1);

    let bad = client(&"y".repeat(40));
    let e = bad.list_clusters().send().await.expect_err("a bad signature");
    let code = aws_sdk_ecs::error::ProvideErrorMetadata::code(&e).map(str::to_string);
    assert_eq!(code.as_deref(), Some("InvalidSignatureException"), "{e:?}");
    cluster.shutdown().await;
}
