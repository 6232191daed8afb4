//! Leader-only loops run on exactly one node at a time, through leader changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecsd::control::{LeaderContext, LeaderTask};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use crate::harness::{wait_for, TaskFactory, TestCluster};

/// Records when each node's loop runs and the most loops ever running at once.
#[derive(Default)]
struct Ledger {
    active: AtomicUsize,
    max_active: AtomicUsize,
    starts: Mutex<Vec<(u64, u64)>>,
}

struct Recorder {
    node: u64,
    ledger: Arc<Ledger>,
}

impl LeaderTask for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let ledger = self.ledger.clone();
        let node = self.node;
        async move {
            let now = ledger.active.fetch_add(1, Ordering::SeqCst) + 1;
            ledger.max_active.fetch_max(now, Ordering::SeqCst);
            ledger.starts.lock().unwrap().push((node, ctx.term));
            ctx.cancel.cancelled().await;
            ledger.active.fetch_sub(1, Ordering::SeqCst);
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loops_run_on_one_node_at_a_time() {
    let ledger = Arc::new(Ledger::default());
    let factory: TaskFactory = {
        let ledger = ledger.clone();
        Arc::new(move |node| {
            vec![Arc::new(Recorder {
                node,
                ledger: ledger.clone(),
            }) as Arc<dyn LeaderTask>]
        })
    };
    let mut cluster = TestCluster::start_with_tasks(3, |_| {}, factory).await;

    for round in 0..3 {
        let leader = cluster.leader().await;
        tracing::info!(round, leader, "--- the leader's loops run, and nobody else's");
        wait_for_loops(&cluster, leader).await;
        for (id, node) in &cluster.nodes {
            assert_eq!(node.raft.handle().leader_loops_running(), *id == leader, "node {id}");
        }

        tracing::info!(round, "--- stop the leader; its loops stop before a successor's start");
        let leader = cluster.stop_leader().await;
        let (status, _) = cluster
            .ecs(cluster.other_than(leader), "CreateCluster", json!({"clusterName": "x"}))
            .await;
        assert_eq!(status, 200);
        cluster.restart(leader).await;
    }
    let leader = cluster.leader().await;
    wait_for_loops(&cluster, leader).await;
    assert_eq!(
        ledger.max_active.load(Ordering::SeqCst),
        1,
        "two nodes ran leader loops at once"
    );
    let starts = ledger.starts.lock().unwrap().clone();
    assert!(starts.len() >= 4, "{starts:?}");
    // Each start is in a strictly newer term: no term ever had two loop owners.
    assert!(starts.windows(2).all(|w| w[0].1 < w[1].1), "{starts:?}");
    cluster.shutdown().await;
}

async fn wait_for_loops(cluster: &TestCluster, leader: u64) {
    wait_for("the leader's loops to start", Duration::from_secs(30), || async {
        cluster.nodes[&leader]
            .raft
            .handle()
            .leader_loops_running()
            .then_some(())
    })
    .await;
}
