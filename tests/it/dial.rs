//! The `[dial]` table: a node reaches its peers (Raft RPCs, and API requests forwarded to the
//! leader over the same node-to-node port) through the addresses the table maps them to, while
//! the membership keeps the real addresses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{proxy, wait_for, TestCluster};
use serde_json::json;

/// Connections counted per (dialling node, target node, "raft" or "api").
type Counters = BTreeMap<(u64, u64, &'static str), Arc<AtomicUsize>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_dialled_through_the_dial_table() {
    let counters: Mutex<Counters> = Mutex::default();
    let cluster = TestCluster::start(3, |config| {
        let mut counters = counters.lock().unwrap();
        for member in config.initial_members.clone() {
            if member.id == config.node_id {
                continue;
            }
            for (kind, target) in [("raft", &member.raft_addr), ("api", &member.api_addr)] {
                let (via, link) = proxy(target.clone());
                config.dial.insert(target.clone(), via);
                counters.insert((config.node_id, member.id, kind), link.connections);
            }
        }
    })
    .await;
    let counters = counters.into_inner().unwrap();
    let count = |from: u64, to: u64, kind: &'static str| counters[&(from, to, kind)].load(Ordering::SeqCst);
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);

    // A write through a follower reaches the leader (over Raft) and is replicated to everyone.
    cluster
        .ok(follower, "CreateCluster", json!({"clusterName": "dialled"}))
        .await;
    for id in 1..=3 {
        cluster
            .ok(id, "DescribeClusters", json!({"clusters": ["dialled"]}))
            .await;
    }
    // Placement is forwarded to the leader over the node-to-node port: through the follower's
    // proxy to the leader's Raft address (the only way there), never to its API.
    let api_before = count(follower, leader, "api");
    let (status, body) = cluster
        .ecs(
            follower,
            "RunTask",
            json!({"cluster": "no-such-cluster", "taskDefinition": "nothing:1"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        count(follower, leader, "raft") > 0,
        "the follower reached the leader around its proxy"
    );
    assert_eq!(
        count(follower, leader, "api"),
        api_before,
        "a node called another's API"
    );
    // The leader replicates to each follower through its own proxies.
    wait_for(
        "raft traffic through every proxy of the leader",
        Duration::from_secs(10),
        || async {
            cluster
                .nodes
                .keys()
                .filter(|id| **id != leader)
                .all(|id| count(leader, *id, "raft") > 0)
                .then_some(())
        },
    )
    .await;
    // The membership keeps the real addresses.
    let status = cluster.nodes[&leader].raft.handle().cluster_status().await;
    for member in &status.members {
        assert_eq!(member.raft_addr, cluster.configs[&member.id].raft_addr.to_string());
        assert_eq!(member.api_addr, cluster.configs[&member.id].api_addr.to_string());
        assert_ne!(member.role, "unreachable", "{member:?}");
    }
}
