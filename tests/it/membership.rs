//! Online membership change: 3 → 5 → 3 voters while a client keeps writing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::Duration;

use serde_json::json;

use crate::harness::{ecs_call, wait_for, TestCluster};

async fn admin(http: &reqwest::Client, url: &str, path: &str, body: serde_json::Value) {
    let response = http
        .post(format!("{url}/cluster/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path} {body}: {status} {text}");
}

fn voters(status: &serde_json::Value) -> Vec<u64> {
    status["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["voter"] == true)
                .filter_map(|m| m["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

async fn status(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(format!("{url}/cluster/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_five_and_shrinks_back_under_writes() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let entry = cluster.other_than(leader);
    let entry_url = cluster.url(entry);

    tracing::info!("--- a client writes continuously through node {entry}");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let http = cluster.http.clone();
        let url = entry_url.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{i:05}");
                let (status, body) = ecs_call(&http, &url, "CreateCluster", json!({"clusterName": name}), &[]).await;
                assert_eq!(status, 200, "write during membership change failed: {body}");
                acked.push(name);
                i += 1;
            }
            acked
        })
    };

    tracing::info!("--- add nodes 4 and 5 (learner, then voter)");
    for id in [4, 5] {
        cluster.start_joiner(id, |_| {}).await;
        let c = &cluster.configs[&id];
        let body = json!({"id": id, "api_addr": c.api_addr.to_string(), "raft_addr": c.raft_addr.to_string()});
        admin(&cluster.http, &entry_url, "add-node", body).await;
    }
    // The entry node reports the membership it has applied; wait for it to see the change.
    wait_for("five voters", Duration::from_secs(30), || async {
        (voters(&status(&cluster.http, &entry_url).await) == vec![1, 2, 3, 4, 5]).then_some(())
    })
    .await;

    tracing::info!("--- remove nodes 4 and 5 again");
    for id in [4, 5] {
        admin(&cluster.http, &entry_url, "remove-node", json!({"id": id})).await;
    }
    wait_for("three members", Duration::from_secs(30), || async {
        let shrunk = status(&cluster.http, &entry_url).await;
        let ids: Vec<u64> = shrunk["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .collect();
        (ids == vec![1, 2, 3]).then_some(())
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());

    tracing::info!("--- every acknowledged write is on every remaining voter");
    cluster.stop(4).await;
    cluster.stop(5).await;
    for id in [1, 2, 3] {
        let present: std::collections::BTreeSet<String> = cluster.list_cluster_names(id).await.into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
        assert!(lost.is_empty(), "node {id} lost acknowledged writes: {lost:?}");
    }
    cluster.shutdown().await;
}
