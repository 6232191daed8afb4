//! `/livez`, `/readyz` and `/metrics` on a real cluster: readiness follows a node's isolation
//! and its healing, and every node exposes its Raft state to Prometheus.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::{proxy, wait_for, Link, TestCluster};
use serde_json::{json, Value};

/// Every node-to-node link of a cluster, by (dialling node, dialled node).
pub(crate) type Links = BTreeMap<(u64, u64), Link>;

/// A cluster of `n` whose nodes reach each other only through cuttable proxies.
pub(crate) async fn cluster_with_links(n: u64) -> (TestCluster, Links) {
    let links: Mutex<Links> = Mutex::default();
    let cluster = TestCluster::start(n, |config| {
        // Free space is not under test here: a nearly full disk must not fail these checks.
        config.health.min_free_disk_mib = 0;
        let mut links = links.lock().unwrap();
        for member in config.initial_members.clone() {
            if member.id == config.node_id {
                continue;
            }
            let (via, link) = proxy(member.raft_addr.clone());
            config.dial.insert(member.raft_addr.clone(), via);
            links.insert((config.node_id, member.id), link);
        }
    })
    .await;
    (cluster, links.into_inner().unwrap())
}

/// Cuts (or heals) every link to and from `node`.
pub(crate) fn isolate(links: &Links, node: u64, cut: bool) {
    for ((from, to), link) in links {
        if *from == node || *to == node {
            link.cut.send_replace(cut);
        }
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

async fn ready(cluster: &TestCluster, id: u64) -> (u16, Value) {
    let (status, body) = get(&cluster.http, &format!("{}/readyz", cluster.url(id))).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Waits until `/readyz` on `id` answers `status`, and returns its body.
async fn wait_ready(cluster: &TestCluster, id: u64, status: u16, within: Duration) -> Value {
    let what = format!("/readyz on node {id} to answer {status}");
    wait_for(&what, within, || async {
        let (got, body) = ready(cluster, id).await;
        (got == status).then_some(body)
    })
    .await
}

/// The failing checks of a `/readyz` body.
fn failing(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_node_s_isolation_and_its_healing() {
    let (cluster, links) = cluster_with_links(3).await;
    let leader = cluster.leader().await;
    for id in 1..=3 {
        assert_eq!(get(&cluster.http, &format!("{}/livez", cluster.url(id))).await.0, 200);
        let body = wait_ready(&cluster, id, 200, Duration::from_secs(10)).await;
        assert_eq!(body["ready"], true, "{body}");
    }

    // A follower cut off from the others loses its leader and says so.
    let follower = cluster.other_than(leader);
    isolate(&links, follower, true);
    let body = wait_ready(&cluster, follower, 503, Duration::from_secs(10)).await;
    assert_eq!(failing(&body), ["leader"], "{body}");
    // Still alive: a supervisor must not restart it.
    assert_eq!(
        get(&cluster.http, &format!("{}/livez", cluster.url(follower))).await.0,
        200
    );
    isolate(&links, follower, false);
    wait_ready(&cluster, follower, 200, Duration::from_secs(15)).await;

    // A leader cut off from the others still thinks it leads, but no quorum acknowledges it.
    let leader = cluster.leader().await;
    isolate(&links, leader, true);
    let body = wait_ready(&cluster, leader, 503, Duration::from_secs(10)).await;
    assert_eq!(failing(&body), ["leader"], "{body}");
    // The others elect a new leader meanwhile, and are ready under it.
    for id in (1..=3).filter(|id| *id != leader) {
        let what = format!("node {id} ready under a leader other than {leader}");
        wait_for(&what, Duration::from_secs(15), || async {
            let moved_on = matches!(cluster.nodes[&id].raft.handle().current_leader(), Some(l) if l != leader);
            (moved_on && ready(&cluster, id).await.0 == 200).then_some(())
        })
        .await;
    }
    isolate(&links, leader, false);
    wait_ready(&cluster, leader, 200, Duration::from_secs(15)).await;
    cluster.shutdown().await;
}

/// The value of the sample `name` (with its labels as written) in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_exposes_its_raft_state_and_the_api_s_counters_to_prometheus() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let scrape = |id: u64| {
        let url = format!("{}/metrics", cluster.url(id));
        let http = cluster.http.clone();
        async move { get(&http, &url).await }
    };
    let placed_before = sample(&scrape(leader).await.1, "ecsd_placements_total").unwrap_or(0.0);
    cluster
        .ok(leader, "CreateCluster", json!({"clusterName": "scraped"}))
        .await;
    let instance = json!({"cluster": "scraped", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]});
    cluster.ok(leader, "RegisterContainerInstance", instance).await;
    let td = json!({"family": "scraped", "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 64}]});
    cluster.ok(leader, "RegisterTaskDefinition", td).await;
    cluster
        .ok(
            leader,
            "RunTask",
            json!({"cluster": "scraped", "taskDefinition": "scraped"}),
        )
        .await;
    let placed_after = sample(&scrape(leader).await.1, "ecsd_placements_total").unwrap_or(0.0);
    assert!(placed_after > placed_before, "{placed_before} -> {placed_after}");
    for id in 1..=3 {
        cluster.nodes[&id]
            .raft
            .handle()
            .trigger_snapshot()
            .await
            .expect("a snapshot");
    }
    for id in 1..=3 {
        let what = format!("node {id}'s snapshot on its page");
        let page = wait_for(&what, Duration::from_secs(30), || async {
            let (status, page) = scrape(id).await;
            assert_eq!(status, 200, "{page}");
            page.contains("# TYPE ecsd_raft_snapshot_bytes gauge").then_some(page)
        })
        .await;
        for family in [
            "ecsd_raft_elections_total",
            "ecsd_raft_leader_changes_total",
            "ecsd_raft_log_append_seconds",
            "ecsd_raft_log_fsync_seconds",
            "ecsd_raft_snapshot_bytes",
            "ecsd_raft_snapshot_age_seconds",
            "ecsd_write_batch_size",
            "ecsd_write_queue_depth",
            "ecsd_writes_forwarded_total",
            "ecsd_placements_total",
            "ecsd_placement_shortfall_tasks_total",
            "ecsd_reconciler_passes_total",
            "ecsd_reconciler_tasks_started_total",
            "ecsd_reconciler_tasks_stopped_total",
            "ecsd_deployments_in_progress",
            "ecsd_agents_connected",
            "ecsd_agent_heartbeats_missed_total",
            "ecsd_rocksdb_live_data_bytes",
            "ecsd_rocksdb_pending_compaction_bytes",
            "ecsd_raft_term",
            "ecsd_raft_leader_id",
            "ecsd_raft_is_leader",
            "ecsd_raft_committed_index",
            "ecsd_raft_applied_index",
            "ecsd_raft_apply_lag_entries",
            "ecsd_ready",
            "ecsd_disk_free_bytes",
            "ecsd_api_requests_total",
            "ecsd_api_request_seconds",
        ] {
            assert!(
                page.contains(&format!("# TYPE {family} ")),
                "node {id}: no {family} in:\n{page}"
            );
        }
        assert_eq!(sample(&page, "ecsd_raft_leader_id"), Some(leader as f64), "node {id}");
        let leads = sample(&page, "ecsd_raft_is_leader") == Some(1.0);
        assert_eq!(leads, id == leader, "node {id}");
        assert_eq!(
            page.contains("# TYPE ecsd_raft_follower_lag_entries gauge"),
            id == leader,
            "node {id}: follower lag is the leader's"
        );
        assert!(
            sample(&page, "ecsd_raft_applied_index").unwrap_or(-1.0) >= 0.0,
            "node {id}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_node_s_metrics_need_a_signed_request_of_a_role_but_agent() {
    let cluster = crate::auth::secured(1).await;
    let url = format!("{}/metrics", cluster.url(1));
    // Readiness and liveness stay open, as a load balancer needs them.
    assert_eq!(get(&cluster.http, &format!("{}/livez", cluster.url(1))).await.0, 200);
    wait_ready(&cluster, 1, 200, Duration::from_secs(10)).await;
    let (status, body) = get(&cluster.http, &url).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MissingAuthenticationTokenException"), "{body}");
    let signed = |signer: ecsd_protocol::sigv4::Signer| {
        let http = cluster.http.clone();
        let url = url.clone();
        async move {
            let response = ecsd_protocol::ecs::execute(http.get(&url), Some(&signer))
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let reader = crate::auth::create_key(&cluster, 1, "scraper", "read-only").await;
    let (status, page) = signed(reader).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("# TYPE ecsd_raft_term gauge"), "{page}");
    let agent = crate::auth::create_key(&cluster, 1, "an-agent", "agent").await;
    let (status, body) = signed(agent).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AccessDeniedException"), "{body}");
    cluster.shutdown().await;
}
