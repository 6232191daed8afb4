//! Backup and disaster recovery: a backup saved from a running cluster (`GET /cluster/snapshot`)
//! verifies and summarises, a corrupt copy is refused, and after two of three nodes are lost
//! the backup restored into a new three-node cluster serves the old data under a new cluster
//! id, with its agent reconnecting as the same container instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ecs_agent::client::{AgentConfig, RuntimeKind};
use ecsd::raft::backup;
use ecsd::raft::NodeInfo;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::harness::{wait_for, TestCluster};

/// A simulated agent of cluster `dr` on `cluster`'s nodes, keeping its identity in `state_dir`.
fn start_agent(cluster: &TestCluster, state_dir: &std::path::Path) -> CancellationToken {
    let config = AgentConfig {
        endpoints: cluster.configs.keys().map(|id| cluster.url(*id)).collect(),
        cluster: "dr".into(),
        cpu: 1024,
        memory: 1024,
        attributes: vec![],
        log_dir: state_dir.to_path_buf(),
        heartbeat: Duration::from_millis(200),
        ec2_instance_id: "i-dr".into(),
        runtime: RuntimeKind::Sim(ecs_agent::sim::SimSettings::default()),
        agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
        state_dir: Some(state_dir.to_path_buf()),
    };
    crate::harness::spawn_agent(config)
}

/// The service `web`'s running count and the container instance's ARN and connection, as
/// node `id` sees them, once the service runs `want` tasks on a connected instance.
async fn wait_steady(cluster: &TestCluster, id: u64, want: u64) -> (String, Value) {
    wait_for(
        &format!("service web at {want} running tasks on a connected instance"),
        Duration::from_secs(30),
        || async {
            let (_, services) = cluster
                .ecs(id, "DescribeServices", json!({"cluster": "dr", "services": ["web"]}))
                .await;
            if services["services"][0]["runningCount"] != want {
                return None;
            }
            let (_, list) = cluster
                .ecs(id, "ListContainerInstances", json!({"cluster": "dr"}))
                .await;
            let arn = list["containerInstanceArns"][0].as_str()?.to_string();
            let (_, described) = cluster
                .ecs(
                    id,
                    "DescribeContainerInstances",
                    json!({"cluster": "dr", "containerInstances": [arn]}),
                )
                .await;
            let instance = described["containerInstances"][0].clone();
            (instance["agentConnected"] == true).then_some((arn, instance))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_a_new_cluster_after_losing_two_of_three_serves_the_old_data() {
    let agent_dir = tempfile::tempdir().unwrap();
    let mut old = TestCluster::start(3, |_| {}).await;
    let leader = old.leader().await;

    tracing::info!("--- a cluster, a service of two tasks on one agent, and more resources");
    old.ok(leader, "CreateCluster", json!({"clusterName": "dr"})).await;
    for family in ["web", "batch"] {
        let td = json!({"family": family,
            "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 64}]});
        old.ok(leader, "RegisterTaskDefinition", td).await;
    }
    let agent = start_agent(&old, agent_dir.path());
    let create = json!({"cluster": "dr", "serviceName": "web", "taskDefinition": "web", "desiredCount": 2});
    old.ok(leader, "CreateService", create).await;
    let (instance_arn, _) = wait_steady(&old, leader, 2).await;

    // The first leader names the cluster within a second or so of its election.
    wait_for("the cluster's id", Duration::from_secs(30), || async {
        old.nodes[&leader].raft.handle().local_report().cluster_id
    })
    .await;
    tracing::info!("--- a backup from a follower holds every acknowledged write");
    let follower = old.other_than(leader);
    old.ok(leader, "CreateCluster", json!({"clusterName": "last-before-backup"}))
        .await;
    let response = old
        .http
        .get(format!("{}/cluster/snapshot", old.url(follower)))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let sent_sha = response.headers()[ecsd::api::BACKUP_SHA256_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    let sent_index: u64 = response.headers()[ecsd::api::BACKUP_INDEX_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let saved = old.dir.path().join("backup.snap");
    std::fs::write(&saved, &bytes).unwrap();
    let summary = backup::inspect(&saved).expect("the backup verifies");
    assert_eq!(summary.sha256, sent_sha);
    assert_eq!(summary.index, Some(sent_index));
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.voters.len(), 3, "{summary:?}");
    assert_eq!(summary.counts.get("clusters"), Some(&2), "{summary:?}");
    assert_eq!(summary.counts.get("services"), Some(&1), "{summary:?}");
    assert_eq!(summary.counts.get("tasks"), Some(&2), "{summary:?}");
    assert_eq!(summary.counts.get("container_instances"), Some(&1), "{summary:?}");
    assert_eq!(summary.counts.get("task_definitions"), Some(&2), "{summary:?}");
    let old_cluster_id = summary
        .cluster_id
        .clone()
        .unwrap_or_else(|| panic!("the old cluster has an id: {summary:?}"));

    tracing::info!("--- a copy with one byte changed, or cut short, is refused");
    let mut corrupt = bytes.to_vec();
    corrupt[bytes.len() / 2] ^= 0x01;
    let corrupt_path = old.dir.path().join("corrupt.snap");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    let e = backup::inspect(&corrupt_path).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    std::fs::write(&corrupt_path, &bytes[..bytes.len() - 10]).unwrap();
    let e = backup::inspect(&corrupt_path).unwrap_err().to_string();
    assert!(e.contains("no checksum footer"), "{e}");

    tracing::info!("--- two of three nodes are lost, and the agent with them");
    agent.cancel();
    let survivor = leader;
    for id in [1, 2, 3].into_iter().filter(|id| *id != survivor) {
        old.stop(id).await;
    }

    tracing::info!("--- a new three-node cluster on new addresses, each member restored from the backup");
    let mut new = TestCluster::prepare(3, |_| {}, Arc::new(|_| Vec::new()));
    let members: BTreeMap<u64, NodeInfo> = new
        .configs
        .values()
        .map(|c| {
            let info = NodeInfo {
                rpc_addr: c.raft_addr.to_string(),
                api_addr: c.api_addr.to_string(),
            };
            (c.node_id, info)
        })
        .collect();
    let mut restored_ids = Vec::new();
    for config in new.configs.values() {
        let restored = backup::restore(&saved, &config.data_dir, config.node_id, &members)
            .await
            .expect("restore");
        assert_eq!(restored.index, Some(sent_index));
        restored_ids.push(restored.cluster_id.expect("a new cluster id"));
    }
    assert!(
        restored_ids
            .iter()
            .all(|id| *id == restored_ids[0] && *id != old_cluster_id),
        "every member gets the same new id: {restored_ids:?}, old {old_cluster_id}"
    );
    let again = backup::restore(&saved, &new.configs[&1].data_dir, 1, &members)
        .await
        .unwrap_err();
    assert!(again.contains("already holds a node's data"), "{again}");
    new.boot().await;
    let leader = new.leader().await;

    tracing::info!("--- the old data is there, on every node");
    for id in 1..=3 {
        let names = new.list_cluster_names(id).await;
        assert!(
            names.contains(&"dr".to_string()) && names.contains(&"last-before-backup".to_string()),
            "node {id}: {names:?}"
        );
    }
    let (_, tds) = new.ecs(leader, "ListTaskDefinitions", json!({})).await;
    assert_eq!(tds["taskDefinitionArns"].as_array().map(Vec::len), Some(2), "{tds}");

    tracing::info!("--- the agent, pointed at the new cluster, reconnects as the same instance");
    let agent = start_agent(&new, agent_dir.path());
    let (arn, instance) = wait_steady(&new, leader, 2).await;
    assert_eq!(arn, instance_arn, "the same container instance: {instance}");
    let (_, list) = new
        .ecs(leader, "ListContainerInstances", json!({"cluster": "dr"}))
        .await;
    assert_eq!(
        list["containerInstanceArns"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );

    tracing::info!("--- the new cluster takes writes, and the old survivor is not one of it");
    new.ok(leader, "CreateCluster", json!({"clusterName": "after-restore"}))
        .await;
    let status = new.status(leader).await;
    let addresses: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["api_addr"].as_str())
        .collect();
    assert!(!addresses.contains(&old.api_addr(survivor).as_str()), "{status}");
    agent.cancel();

    tracing::info!("--- a member restored a second time from the same backup does not rejoin");
    let again = if leader == 3 { 2 } else { 3 };
    wait_for(
        "every member's incarnation recorded",
        Duration::from_secs(30),
        || async {
            let recorded = new.nodes[&leader].raft.handle().local_report().recorded_incarnations;
            (recorded.len() == 3).then_some(())
        },
    )
    .await;
    new.stop(again).await;
    std::fs::remove_dir_all(&new.configs[&again].data_dir).unwrap();
    backup::restore(&saved, &new.configs[&again].data_dir, again, &members)
        .await
        .expect("the second restore itself succeeds");
    let refused = new
        .try_restart(again)
        .await
        .expect_err("a second restore must not rejoin");
    assert!(
        refused
            .to_string()
            .contains("was restored from a backup, but the cluster already has node"),
        "{refused}"
    );
    new.shutdown().await;
    old.shutdown().await;
}
