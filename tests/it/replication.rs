//! Replication, failover, restart, snapshot catch-up and at-most-once application.

use std::time::Duration;

use ecsd::state::{Batch, Command, Outcome, Proposal};
use serde_json::json;

use crate::harness::{ecs_call, wait_for, TestCluster};

fn names(body: &serde_json::Value) -> Vec<String> {
    body["clusterArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_loss_and_restarts() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);

    tracing::info!("--- a write through a follower is readable on every node");
    {
        let (status, body) = cluster
            .ecs(follower, "CreateCluster", json!({"clusterName": "first"}))
            .await;
        assert_eq!(status, 200, "{body}");
        for id in 1..=3 {
            let (status, body) = cluster
                .ecs(id, "DescribeClusters", json!({"clusters": ["first"]}))
                .await;
            assert_eq!(status, 200);
            assert_eq!(body["clusters"][0]["status"], "ACTIVE", "node {id}: {body}");
        }
        // A stale read is served locally; once the node has caught up it sees the write too.
        cluster.wait_caught_up(follower, leader).await;
        let (_, body) = ecs_call(
            &cluster.http,
            &cluster.url(follower),
            "ListClusters",
            json!({}),
            &[("x-ecsd-consistency", "stale")],
        )
        .await;
        assert_eq!(names(&body), vec!["first"]);
    }

    tracing::info!("--- stop the leader; a new leader takes writes through every surviving node");
    let leader = cluster.stop_leader().await;
    {
        let survivors: Vec<u64> = cluster.nodes.keys().copied().collect();
        for (i, id) in survivors.iter().enumerate() {
            let (status, body) = cluster
                .ecs(*id, "CreateCluster", json!({"clusterName": format!("after-{i}")}))
                .await;
            assert_eq!(status, 200, "node {id}: {body}");
        }
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, leader);
    }

    tracing::info!("--- the stopped node restarts from its data directory, intact, and catches up");
    {
        cluster.restart(leader).await;
        let (status, body) = cluster.ecs(leader, "ListClusters", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(names(&body), vec!["after-0", "after-1", "first"]);
    }

    tracing::info!("--- every node restarts; all data is still there");
    {
        for id in [1, 2, 3] {
            cluster.stop(id).await;
        }
        for id in [1, 2, 3] {
            cluster.restart(id).await;
        }
        let (status, body) = cluster.ecs(2, "ListClusters", json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(names(&body), vec!["after-0", "after-1", "first"]);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_purged_log_catches_up_by_snapshot() {
    let mut cluster = TestCluster::start(3, |c| {
        c.raft.snapshot_every = 20;
        c.raft.logs_to_keep = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let lagging = cluster.other_than(leader);

    tracing::info!("--- stop a follower, then write enough to snapshot and purge the log");
    cluster.stop(lagging).await;
    let writer = cluster.other_than(lagging);
    for i in 0..60 {
        let (status, body) = cluster
            .ecs(writer, "CreateCluster", json!({"clusterName": format!("c{i:02}")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let leader = cluster.leader().await;
    cluster.nodes[&leader].raft.handle().trigger_snapshot().await.unwrap();
    // Purging waits until no replication stream is using the range; more writes give the
    // leader the occasions to retry it.
    let extra = std::sync::atomic::AtomicUsize::new(0);
    let purged = wait_for("the leader to purge its log", Duration::from_secs(30), || async {
        let n = extra.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (status, _) = cluster
            .ecs(writer, "CreateCluster", json!({"clusterName": format!("x{n:03}")}))
            .await;
        assert_eq!(status, 200);
        let report = cluster.nodes[&leader].raft.handle().local_report();
        report.purged_index.filter(|p| *p >= 40)
    })
    .await;

    tracing::info!("--- restart the follower: it must install a snapshot, the log it needs is gone");
    cluster.restart(lagging).await;
    cluster.wait_caught_up(lagging, leader).await;
    let report = cluster.nodes[&lagging].raft.handle().local_report();
    assert!(
        report.snapshot_index.is_some_and(|s| s >= purged),
        "no snapshot installed: {report:?}"
    );
    let (_, body) = ecs_call(
        &cluster.http,
        &cluster.url(lagging),
        "ListClusters",
        json!({}),
        &[("x-ecsd-consistency", "stale")],
    )
    .await;
    let everything = cluster.list_cluster_names(leader).await;
    assert!(everything.len() >= 60);
    // The stale (local) read shows the first page of exactly what the leader has.
    assert_eq!(names(&body), everything[..100.min(everything.len())].to_vec());
    assert_eq!(cluster.list_cluster_names(lagging).await, everything);

    tracing::info!("--- and keeps replicating after the snapshot");
    let (status, _) = cluster
        .ecs(lagging, "CreateCluster", json!({"clusterName": "later"}))
        .await;
    assert_eq!(status, 200);
    cluster.wait_caught_up(lagging, leader).await;
    cluster.shutdown().await;
}

/// The ARN of the only task of a RunTask reply.
fn only_task(reply: &serde_json::Value) -> String {
    assert_eq!(reply["failures"], json!([]), "{reply}");
    let tasks = reply["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{reply}");
    tasks[0]["taskArn"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_forwarded_request_applies_once() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let (old, old_term) = cluster.leader_and_term().await;
    let follower = cluster.other_than(old);
    let handle = cluster.nodes[&follower].raft.handle().clone();
    cluster
        .ok(follower, "CreateCluster", json!({"clusterName": "svc"}))
        .await;

    tracing::info!("--- a write forwarded by a follower applies under the leader");
    let delete = Batch(vec![Proposal {
        request_id: "retry-me".into(),
        ts_ms: ecsd::stamp::now_ms(),
        command: Command::DeleteCluster { name: "svc".into() },
        request_digest: None,
    }]);
    let first = handle
        .submit_batch(delete.clone(), tokio::time::Instant::now())
        .await
        .unwrap();
    assert!(matches!(&first.0[0], Outcome::Cluster(c) if c.status == ecsd::model::ClusterStatus::Inactive));

    tracing::info!("--- the cluster is created again; a retry of the old delete must not delete it again");
    cluster
        .ok(follower, "CreateCluster", json!({"clusterName": "svc"}))
        .await;
    let retried = handle
        .submit_batch(delete.clone(), tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(first, retried);
    let body = cluster.ok(old, "DescribeClusters", json!({"clusters": ["svc"]})).await;
    assert_eq!(body["clusters"][0]["status"], "ACTIVE");

    tracing::info!("--- RunTask with a clientToken through a follower: forwarded to the leader's API");
    cluster
        .ok(
            follower,
            "RegisterContainerInstance",
            json!({"cluster": "svc", "instanceIdentityDocument": "{\"instanceId\": \"i-once\"}",
                   "totalResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                                      {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]}),
        )
        .await;
    cluster
        .ok(
            follower,
            "RegisterTaskDefinition",
            json!({"family": "once", "containerDefinitions": [{"name": "c", "image": "x", "memory": 64}]}),
        )
        .await;
    let run = json!({"cluster": "svc", "taskDefinition": "once", "clientToken": "once-token"});
    let first_task = only_task(&cluster.ok(follower, "RunTask", run.clone()).await);
    // And one as a follower forwards it, under the request id it got at the follower.
    let forwarded_id = uuid::Uuid::new_v4().to_string();
    let plain = json!({"cluster": "svc", "taskDefinition": "once"});
    let (status, reply) = cluster.forward_as(follower, "RunTask", &forwarded_id, &plain).await;
    assert_eq!(status, 200, "{reply}");
    let forwarded_task = only_task(&reply);

    tracing::info!(old, "--- the leader goes away; a new one is elected");
    cluster.stop(old).await;
    let (new, new_term) = cluster.leader_and_term().await;
    assert!(new != old && new_term > old_term, "{new} in term {new_term}");
    let via = cluster.other_than(new);
    assert_eq!(cluster.nodes[&via].raft.handle().current_leader(), Some(new));
    let via_handle = cluster.nodes[&via].raft.handle().clone();

    tracing::info!(
        new,
        via,
        "--- the same retries, through a follower, reach the new leader and apply once"
    );
    let retried = via_handle
        .submit_batch(delete, tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(first, retried, "the retry at the new leader returns the first outcome");
    let body = cluster.ok(new, "DescribeClusters", json!({"clusters": ["svc"]})).await;
    assert_eq!(body["clusters"][0]["status"], "ACTIVE", "the delete applied twice");
    let again = only_task(&cluster.ok(via, "RunTask", run).await);
    assert_eq!(
        again, first_task,
        "the RunTask retry at the new leader launched another task"
    );
    let (status, reply) = cluster.forward_as(via, "RunTask", &forwarded_id, &plain).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(only_task(&reply), forwarded_task, "the forwarded RunTask applied twice");
    let tasks = cluster.ok(via, "ListTasks", json!({"cluster": "svc"})).await;
    let mut listed = crate::harness::strings(&tasks["taskArns"]);
    listed.sort();
    let mut expected = vec![first_task, forwarded_task];
    expected.sort();
    assert_eq!(listed, expected, "exactly the two tasks, once each");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_requests_fail_fast_with_server_exception() {
    let mut cluster = TestCluster::start(3, |c| c.api.hold_ms = 1000).await;
    // With a 1 s hold, the first election may outlast one attempt.
    wait_for("the first write", Duration::from_secs(30), || async {
        let (status, _) = cluster.ecs(1, "CreateCluster", json!({"clusterName": "before"})).await;
        (status == 200).then_some(())
    })
    .await;
    cluster.wait_caught_up(3, cluster.leader().await).await;

    tracing::info!("--- with two of three nodes down, writes and linearizable reads get 503, not a hang");
    cluster.stop(1).await;
    cluster.stop(2).await;
    let started = std::time::Instant::now();
    let (status, body) = cluster.ecs(3, "CreateCluster", json!({"clusterName": "lost"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["__type"], "ServerException");
    let (status, _) = cluster.ecs(3, "ListClusters", json!({})).await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    tracing::info!("--- a stale read is still served from the local replica");
    let (status, body) = ecs_call(
        &cluster.http,
        &cluster.url(3),
        "ListClusters",
        json!({}),
        &[("x-ecsd-consistency", "stale")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(names(&body).contains(&"before".to_string()));

    tracing::info!("--- once a quorum is back, writes succeed again");
    cluster.restart(1).await;
    // Each attempt is held for at most hold_ms; the election after the restart may need more.
    wait_for(
        "a write to succeed with a quorum back",
        Duration::from_secs(30),
        || async {
            let (status, _) = cluster.ecs(3, "CreateCluster", json!({"clusterName": "after"})).await;
            (status == 200).then_some(())
        },
    )
    .await;
    cluster.shutdown().await;
}
