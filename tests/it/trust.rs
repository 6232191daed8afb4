//! The node-to-node port and the API over TLS: only members' certificates reach Raft, only
//! agents' the agent service, a member cannot speak for another, the API serves HTTPS; and a
//! node that lost its data does not return as the same voter.

use std::path::Path;
use std::time::Duration;

use ecsd::rpc::pb::raft_service_client::RaftServiceClient;
use ecsd::rpc::pb::RaftRequest;
use ecsd::tls::{make_ca, make_cert, Identity, Pem};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::harness::{wait_for, TestCluster};

/// Writes the CA and every node's certificate under `dir`; returns the CA.
fn certificates(dir: &Path, nodes: u64) -> Pem {
    let ca = make_ca(30).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert).unwrap();
    for id in 1..=nodes {
        let pem = make_cert(&ca, &Identity::Node(id), &[], 30).unwrap();
        std::fs::write(dir.join(format!("node-{id}.pem")), &pem.cert).unwrap();
        std::fs::write(dir.join(format!("node-{id}-key.pem")), &pem.key).unwrap();
    }
    ca
}

/// A cluster with TLS and authentication on; its CA.
async fn secured_tls(n: u64, tls: &Path) -> (TestCluster, Pem) {
    let ca = certificates(tls, n);
    let cluster = TestCluster::start(n, |config| {
        let id = config.node_id;
        config.tls.ca_file = Some(tls.join("ca.pem"));
        config.tls.cert_file = Some(tls.join(format!("node-{id}.pem")));
        config.tls.key_file = Some(tls.join(format!("node-{id}-key.pem")));
        config.auth.enabled = true;
        config.auth.root_access_key_id = Some(crate::auth::ROOT_ID.into());
        config.auth.root_secret_access_key = Some(crate::auth::ROOT_SECRET.into());
    })
    .await;
    (cluster, ca)
}

/// A channel to `addr` over TLS trusting `ca`, presenting `identity` (none with `None`),
/// expecting the server to be node `node`.
async fn tls_channel(
    addr: &str,
    ca: &Pem,
    identity: Option<&Pem>,
    node: u64,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .domain_name(Identity::Node(node).dns_name());
    if let Some(pem) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

/// Every Raft-port method, called once with a harmless body: the codes they answer.
async fn every_peer_method(channel: Channel, target: u64, payload: &[u8]) -> Vec<(&'static str, tonic::Code)> {
    let mut client = RaftServiceClient::new(channel);
    let request = || {
        tonic::Request::new(RaftRequest {
            target,
            payload: payload.to_vec(),
            data: Vec::new(),
            cluster_id: String::new(),
        })
    };
    let code = |r: Result<tonic::Response<ecsd::rpc::pb::RaftReply>, tonic::Status>| {
        r.map_or_else(|s| s.code(), |_| tonic::Code::Ok)
    };
    vec![
        ("AppendEntries", code(client.append_entries(request()).await)),
        ("Vote", code(client.vote(request()).await)),
        ("InstallSnapshot", code(client.install_snapshot(request()).await)),
        ("Forward", code(client.forward(request()).await)),
        ("ReadIndex", code(client.read_index(request()).await)),
        ("Admin", code(client.admin(request()).await)),
        ("NodeStatus", code(client.node_status(request()).await)),
        ("Heartbeat", code(client.heartbeat(request()).await)),
        ("ForwardRequest", code(client.forward_request(request()).await)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_member_certificate_gets_a_peer_rpc_accepted() {
    let tls = tempfile::tempdir().unwrap();
    let (cluster, ca) = secured_tls(3, tls.path()).await;
    let (leader, term) = cluster.leader_and_term().await;
    let target = cluster.other_than(leader);
    let addr = cluster.raft_addr(target);
    let null = b"null";

    // In clear text, the port does not even speak.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(plain) = plain {
        for (method, code) in every_peer_method(plain, target, null).await {
            assert_ne!(code, tonic::Code::Ok, "{method} in clear text");
        }
    }
    // Over TLS without a certificate, or with one from another CA: the handshake fails.
    let stranger_ca = make_ca(30).unwrap();
    let forged = make_cert(&stranger_ca, &Identity::Node(1), &[], 30).unwrap();
    for identity in [None, Some(&forged)] {
        match tls_channel(&addr, &ca, identity, target).await {
            Err(_) => {}
            Ok(channel) => {
                for (method, code) in every_peer_method(channel, target, null).await {
                    assert_ne!(
                        code,
                        tonic::Code::Ok,
                        "{method} with {:?}",
                        identity.map(|_| "a forged certificate")
                    );
                }
            }
        }
    }
    // The cluster's own CA, but an agent's or a client's certificate: refused, every method.
    for who in [Identity::Agent("a1".into()), Identity::Client("ops".into())] {
        let pem = make_cert(&ca, &who, &[], 30).unwrap();
        let channel = tls_channel(&addr, &ca, Some(&pem), target)
            .await
            .expect("a TLS connection");
        for (method, code) in every_peer_method(channel, target, null).await {
            assert_eq!(code, tonic::Code::PermissionDenied, "{method} as {}", who.stem());
        }
    }
    // A member's certificate gets in, but cannot speak for another member: node 2's
    // certificate sending a vote request in node 3's name is refused.
    let member = make_cert(&ca, &Identity::Node(2), &[], 30).unwrap();
    let channel = tls_channel(&addr, &ca, Some(&member), target)
        .await
        .expect("a TLS connection");
    let mut client = RaftServiceClient::new(channel);
    let status = client
        .node_status(RaftRequest {
            target,
            payload: b"null".to_vec(),
            data: Vec::new(),
            cluster_id: String::new(),
        })
        .await;
    assert!(status.is_ok(), "{status:?}");
    let impostor =
        json!({"vote": {"leader_id": {"term": term + 5, "node_id": 3}, "committed": false}, "last_log_id": null});
    let refused = client
        .vote(RaftRequest {
            target,
            payload: impostor.to_string().into_bytes(),
            data: Vec::new(),
            cluster_id: String::new(),
        })
        .await
        .expect_err("a vote in another member's name");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // The agent service on the same port admits agents only.
    let node_cert = make_cert(&ca, &Identity::Node(1), &[], 30).unwrap();
    let channel = tls_channel(&addr, &ca, Some(&node_cert), target).await.unwrap();
    let mut agents = ecsd_protocol::pb::agent_service_client::AgentServiceClient::new(channel);
    let heartbeat = ecsd_protocol::pb::AgentRequest {
        payload: json!({"cluster": "default", "instance_id": "x"})
            .to_string()
            .into_bytes(),
    };
    let refused = agents.heartbeat(heartbeat).await.expect_err("a node is not an agent");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // Nothing of this moved the cluster; the API serves HTTPS to a client trusting the CA,
    // and nothing in clear text.
    assert_eq!(cluster.leader_and_term().await, (leader, term));
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}", cluster.api_addr(leader));
    let (status, body) = crate::auth::call(&https, &url, "ListClusters", &json!({}), Some(&crate::auth::root())).await;
    assert_eq!(status, 200, "{body}");
    let clear = cluster.http.post(cluster.url(leader)).body("{}").send().await;
    assert!(clear.is_err(), "the API answered in clear text: {clear:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_restarted_with_its_old_config_refuses_to_rejoin() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "before"})).await;
    // Every member has recorded its incarnation in the replicated state.
    let leader = cluster.leader().await;
    wait_for("every incarnation recorded", Duration::from_secs(20), || async {
        let report = cluster.nodes[&leader].raft.handle().local_report();
        (report.recorded_incarnations.len() == 3 && report.cluster_id.is_some()).then_some(())
    })
    .await;
    let follower = cluster.other_than(leader);
    cluster.stop(follower).await;
    std::fs::remove_dir_all(&cluster.configs[&follower].data_dir).unwrap();

    let refused = cluster
        .try_restart(follower)
        .await
        .expect_err("a wiped member must not return");
    let message = format!("{refused:#}");
    assert!(
        message.contains("lost its data") && message.contains("remove-node") && message.contains("--join"),
        "{message}"
    );
    // The others go on, with the same leader.
    assert_eq!(cluster.leader().await, leader);
    cluster
        .ok(leader, "CreateCluster", json!({"clusterName": "after"}))
        .await;

    // Without bootstrap or join, an empty node refuses too.
    cluster.configs.get_mut(&follower).unwrap().bootstrap = false;
    let refused = cluster
        .try_restart(follower)
        .await
        .expect_err("neither founding nor joining");
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("neither founds a cluster") && refused.contains("--join"),
        "{refused}"
    );
    cluster.shutdown().await;
}

/// A registration of `ec2` in cluster `trust`.
fn registration(ec2: &str) -> serde_json::Value {
    json!({
        "cluster": "trust",
        "instanceIdentityDocument": format!("{{\"instanceId\": \"{ec2}\"}}"),
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}
        ],
        "versionInfo": {"agentVersion": "1.0.0"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_act_for_another_agent_s_instance_or_tasks() {
    use ecsd_protocol::messages::{AssignmentsRequest, InstanceRef, Report, StateChange, TaskStatus};
    use ecsd_protocol::pb::agent_service_client::AgentServiceClient;
    use ecsd_protocol::pb::AgentRequest;

    let tls = tempfile::tempdir().unwrap();
    let (cluster, ca) = secured_tls(3, tls.path()).await;
    let leader = cluster.leader().await;
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}", cluster.api_addr(leader));
    let call = |action: &'static str, body: serde_json::Value, signer: ecsd_protocol::sigv4::Signer| {
        let (https, url) = (https.clone(), url.clone());
        async move { crate::auth::call(&https, &url, action, &body, Some(&signer)).await }
    };
    let root = crate::auth::root();
    let ops = crate::auth::create_key_at(&https, &url, "ops", "operator").await;
    let a = crate::auth::create_key_at(&https, &url, "host-a", "agent").await;
    let b = crate::auth::create_key_at(&https, &url, "host-b", "agent").await;
    assert_eq!(
        call("CreateCluster", json!({"clusterName": "trust"}), root).await.0,
        200
    );

    // Each agent registers its own instance with its own key: the instance is bound to it.
    let (status, reg_a) = call("RegisterContainerInstance", registration("i-a"), a.clone()).await;
    assert_eq!(status, 200, "{reg_a}");
    let arn_a = reg_a["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let id_a = arn_a.rsplit('/').next().unwrap().to_string();
    let (status, reg_b) = call("RegisterContainerInstance", registration("i-b"), b.clone()).await;
    assert_eq!(status, 200, "{reg_b}");

    // A task on a's instance.
    let definition = json!({"family": "t", "containerDefinitions": [{"name": "c", "image": "x", "memory": 64}]});
    assert_eq!(call("RegisterTaskDefinition", definition, ops.clone()).await.0, 200);
    let start = json!({"cluster": "trust", "taskDefinition": "t", "containerInstances": [arn_a]});
    let (status, started) = call("StartTask", start, ops.clone()).await;
    assert_eq!(status, 200, "{started}");
    let task_arn = started["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let task_id = task_arn.rsplit('/').next().unwrap().to_string();

    // Over HTTP: b cannot report a's task stopped, nor re-register or deregister a's instance.
    let stop = json!({"cluster": "trust", "task": task_arn, "status": "STOPPED", "reason": "forged"});
    let (status, body) = call("SubmitTaskStateChange", stop.clone(), b.clone()).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AccessDeniedException")),
        "{body}"
    );
    let mut again = registration("i-a");
    again["containerInstanceArn"] = json!(arn_a);
    let (status, body) = call("RegisterContainerInstance", again, b.clone()).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AccessDeniedException")),
        "{body}"
    );
    let deregister = json!({"cluster": "trust", "containerInstance": arn_a, "force": true});
    let (status, body) = call("DeregisterContainerInstance", deregister, b.clone()).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AccessDeniedException")),
        "{body}"
    );

    // Over the agent service, with b's certificate: no report, heartbeat or assignments for a.
    let cert_b = make_cert(&ca, &Identity::Agent("host-b".into()), &[], 30).unwrap();
    let channel = tls_channel(&cluster.raft_addr(leader), &ca, Some(&cert_b), leader)
        .await
        .unwrap();
    let mut agent_b = AgentServiceClient::new(channel);
    let body = |value: serde_json::Value| AgentRequest {
        payload: value.to_string().into_bytes(),
    };
    let forged = Report {
        changes: vec![StateChange {
            cluster: "trust".into(),
            task_id: task_id.clone(),
            status: Some(TaskStatus::Stopped),
            reason: Some("forged".into()),
            containers: Vec::new(),
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            execution_stopped_at_ms: None,
        }],
    };
    let refused = agent_b
        .report(body(json!(forged)))
        .await
        .expect_err("a report for a's task");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let instance_a = InstanceRef {
        cluster: "trust".into(),
        instance_id: id_a.clone(),
    };
    let refused = agent_b
        .heartbeat(body(json!(instance_a)))
        .await
        .expect_err("a heartbeat for a");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let ask = AssignmentsRequest {
        instance: instance_a.clone(),
        deltas: false,
    };
    let Err(refused) = agent_b.assignments(body(json!(ask))).await else {
        panic!("b got a's assignments");
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // a's own agent reports for its task; the task was never stopped by b.
    let cert_a = make_cert(&ca, &Identity::Agent("host-a".into()), &[], 30).unwrap();
    let channel = tls_channel(&cluster.raft_addr(leader), &ca, Some(&cert_a), leader)
        .await
        .unwrap();
    let mut agent_a = AgentServiceClient::new(channel);
    agent_a
        .heartbeat(body(json!(instance_a)))
        .await
        .expect("a's own heartbeat");
    let running = json!({"cluster": "trust", "task": task_arn, "status": "RUNNING"});
    let (status, body_a) = call("SubmitTaskStateChange", running, a.clone()).await;
    assert_eq!(status, 200, "{body_a}");
    let (_, described) = call("DescribeTasks", json!({"cluster": "trust", "tasks": [task_arn]}), ops).await;
    assert_eq!(described["tasks"][0]["lastStatus"], "RUNNING", "{described}");
    assert_eq!(described["tasks"][0]["desiredStatus"], "RUNNING", "{described}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_secured_node_with_a_client_certificate_and_an_agent_s_does_not() {
    let tls = tempfile::tempdir().unwrap();
    let (cluster, ca) = secured_tls(1, tls.path()).await;
    cluster.leader().await;
    let url = format!("https://{}/metrics", cluster.api_addr(1));
    let scrape = |identity: Option<Pem>| {
        let (url, ca) = (url.clone(), ca.cert.clone());
        async move {
            let mut http =
                reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
            if let Some(pem) = identity {
                let both = format!("{}{}", pem.key, pem.cert);
                http = http.identity(reqwest::Identity::from_pem(both.as_bytes()).unwrap());
            }
            let response = http.build().unwrap().get(&url).send().await.expect("an answer");
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let prometheus = make_cert(&ca, &Identity::Client("prometheus".into()), &[], 30).unwrap();
    let (status, page) = scrape(Some(prometheus)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("# TYPE ecsd_raft_term gauge"), "{page}");
    // An agent's certificate, or none, is no credential for the metrics: a signature is needed.
    let agent = make_cert(&ca, &Identity::Agent("a".into()), &[], 30).unwrap();
    for (who, identity) in [("an agent's certificate", Some(agent)), ("no certificate", None)] {
        let (status, body) = scrape(identity).await;
        assert_eq!(status, 400, "{who}: {body}");
        assert!(body.contains("MissingAuthenticationTokenException"), "{who}: {body}");
    }
    // A certificate of another CA fails the handshake.
    let stranger = make_ca(30).unwrap();
    let forged = make_cert(&stranger, &Identity::Client("prometheus".into()), &[], 30).unwrap();
    let both = format!("{}{}", forged.key, forged.cert);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(both.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(
        http.get(&url).send().await.is_err(),
        "a foreign CA's certificate was accepted"
    );
    cluster.shutdown().await;
}
