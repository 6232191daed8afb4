//! Online membership change: 3 → 5 → 3 voters while a client keeps writing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    crate::harness::status_at(http, url).await
}

/// The cluster names node `url` holds, following ListClusters pages; `None` on any error (a
/// 5xx under load, a node not ready). `stale` reads the node's own replica as it is.
async fn names_at(http: &reqwest::Client, url: &str, stale: bool) -> Option<BTreeSet<String>> {
    let headers: &[(&str, &str)] = if stale { &[("x-ecsd-consistency", "stale")] } else { &[] };
    let mut names = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"maxResults": 100});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let (status, page) = ecs_call(http, url, "ListClusters", req, headers).await;
        if status != 200 {
            return None;
        }
        for arn in page["clusterArns"].as_array()? {
            names.insert(arn.as_str()?.rsplit('/').next()?.to_string());
        }
        match page.get("nextToken").and_then(|t| t.as_str()) {
            Some(t) => token = Some(t.to_string()),
            None => return Some(names),
        }
    }
}

/// Every write in `acked` is readable on node `id`: in its own replica once it has applied
/// it (waited for: replication takes time), and at once through a linearizable read (which
/// must see every write acknowledged before it started; retried only on errors).
async fn assert_readable(cluster: &TestCluster, id: u64, acked: &[String]) {
    let url = cluster.url(id);
    let missing = |present: &BTreeSet<String>| -> Vec<String> {
        acked.iter().filter(|n| !present.contains(*n)).cloned().collect()
    };
    wait_for(
        &format!("node {id}'s replica to hold all {} acknowledged writes", acked.len()),
        Duration::from_secs(60),
        || async {
            let present = names_at(&cluster.http, &url, true).await?;
            missing(&present).is_empty().then_some(())
        },
    )
    .await;
    let present = wait_for(
        &format!("a linearizable ListClusters on node {id}"),
        Duration::from_secs(60),
        || names_at(&cluster.http, &url, false),
    )
    .await;
    let lost = missing(&present);
    assert!(lost.is_empty(), "node {id} lost acknowledged writes: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_five_and_shrinks_back_under_writes() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let entry = cluster.other_than(leader);
    let entry_url = cluster.url(entry);

    tracing::info!("--- a client writes continuously through node {entry}");
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let stop = stop.clone();
        let acked = acked.clone();
        let http = cluster.http.clone();
        let url = entry_url.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{i:05}");
                let (status, body) = ecs_call(&http, &url, "CreateCluster", json!({"clusterName": name}), &[]).await;
                assert_eq!(status, 200, "write during membership change failed: {body}");
                acked.lock().unwrap().push(name);
                i += 1;
            }
        })
    };
    let acked_now = || acked.lock().unwrap().clone();
    // Some writes precede the new nodes: they must get them from the log (or a snapshot).
    wait_for("writes before the join", Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 20).then_some(())
    })
    .await;

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

    tracing::info!("--- every write acknowledged so far is readable on the new nodes 4 and 5");
    let so_far = acked_now();
    assert!(so_far.len() >= 20, "{} writes", so_far.len());
    for id in [4, 5] {
        assert_readable(&cluster, id, &so_far).await;
    }

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
    writer.await.unwrap();
    let acked = acked_now();
    assert!(
        acked.len() > so_far.len(),
        "writes went on while the members changed: {} then {}",
        so_far.len(),
        acked.len()
    );

    tracing::info!("--- every acknowledged write is on every remaining voter");
    cluster.stop(4).await;
    cluster.stop(5).await;
    for id in [1, 2, 3] {
        assert_readable(&cluster, id, &acked).await;
    }
    cluster.shutdown().await;
}
