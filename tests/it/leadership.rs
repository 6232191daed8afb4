//! Leader-only loops run on exactly one node at a time, through leader changes; a leader cut
//! off from the others while it keeps running stops its loops, and its decisions never apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecsd::control::{decide, LeaderContext, LeaderTask};
use ecsd::state::{Command, Outcome, Rejection};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// A one-way TCP link from a node to one peer address that the test can cut and heal. Cut, it
/// closes its open connections and every new one at once (a node cut off from the network,
/// while its process keeps running).
fn link(target: String) -> (String, Arc<watch::Sender<bool>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let up = Arc::new(watch::channel(true).0);
    let state = up.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = state.subscribe();
            if !*rx.borrow_and_update() {
                continue; // dropped: closed at once
            }
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = rx.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    (addr, up)
}

/// Every node-to-node link (Raft and API, both directions) by (dialling node, target node).
type Links = BTreeMap<(u64, u64), Vec<Arc<watch::Sender<bool>>>>;

/// Cuts (`up == false`) or heals every link to and from `node`.
fn set_links(links: &Links, node: u64, up: bool) {
    for ((from, to), switches) in links {
        if *from == node || *to == node {
            for s in switches {
                s.send_replace(up);
            }
        }
    }
}

/// Decisions proposed: (node, term, cluster name, when).
type Proposed = Arc<Mutex<Vec<(u64, u64, String, Instant)>>>;

/// A leader loop that, while it runs, commits a term-stamped decision every 100 ms: a cluster
/// named `d-<node>-t<term>-<seq>`, as the real loops commit theirs (`control::decide`).
struct Decider {
    node: u64,
    ledger: Arc<Ledger>,
    proposed: Proposed,
}

impl LeaderTask for Decider {
    fn name(&self) -> &'static str {
        "decider"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let (ledger, proposed, node) = (self.ledger.clone(), self.proposed.clone(), self.node);
        async move {
            let now = ledger.active.fetch_add(1, Ordering::SeqCst) + 1;
            ledger.max_active.fetch_max(now, Ordering::SeqCst);
            ledger.starts.lock().unwrap().push((node, ctx.term));
            for seq in 0.. {
                let name = format!("d-{node}-t{}-{seq}", ctx.term);
                proposed
                    .lock()
                    .unwrap()
                    .push((node, ctx.term, name.clone(), Instant::now()));
                let command = Command::CreateCluster {
                    arn: format!("arn:aws:ecs:us-east-1:000000000000:cluster/{name}"),
                    name,
                    tags: Vec::new(),
                    options: Default::default(),
                };
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    _ = decide(&ctx, command) => {}
                }
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            ledger.active.fetch_sub(1, Ordering::SeqCst);
        }
        .boxed()
    }
}

/// (state, term, leader) as node `id` reports itself.
/// Waits until the first decision of `leader`'s loops in `term` has applied (on `leader`).
async fn wait_first_decision(cluster: &TestCluster, leader: u64, term: u64) {
    let first = format!("d-{leader}-t{term}-0");
    wait_for(
        &format!("the first decision of leader {leader} in term {term} applied"),
        Duration::from_secs(30),
        || async { cluster.list_cluster_names(leader).await.contains(&first).then_some(()) },
    )
    .await;
}

fn report(cluster: &TestCluster, id: u64) -> (String, u64, Option<u64>) {
    let r = cluster.nodes[&id].raft.handle().local_report();
    (r.state, r.term, r.leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_stops_its_loops_and_its_decisions_never_apply() {
    let ledger = Arc::new(Ledger::default());
    let proposed: Proposed = Arc::default();
    let factory: TaskFactory = {
        let (ledger, proposed) = (ledger.clone(), proposed.clone());
        Arc::new(move |node| {
            vec![Arc::new(Decider {
                node,
                ledger: ledger.clone(),
                proposed: proposed.clone(),
            }) as Arc<dyn LeaderTask>]
        })
    };
    // Every link between two nodes goes through a switch the test controls (the `[dial]` table).
    let links: Mutex<Links> = Mutex::default();
    let cluster = TestCluster::start_with_tasks(
        3,
        |config| {
            let mut links = links.lock().unwrap();
            for member in config.initial_members.clone() {
                if member.id == config.node_id {
                    continue;
                }
                for target in [&member.raft_addr, &member.api_addr] {
                    let (via, switch) = link(target.clone());
                    config.dial.insert(target.clone(), via);
                    links.entry((config.node_id, member.id)).or_default().push(switch);
                }
            }
        },
        factory,
    )
    .await;
    let links = links.into_inner().unwrap();

    let old = cluster.leader().await;
    wait_for_loops(&cluster, old).await;
    let (_, old_term, _) = report(&cluster, old);
    tracing::info!(old, old_term, "--- the leader's loops run and their decisions apply");
    wait_first_decision(&cluster, old, old_term).await;

    tracing::info!(old, "--- cut the leader off from the others; its process keeps running");
    set_links(&links, old, false);
    let cut_at = Instant::now();
    // A decision the cut-off leader makes now, in the term it still believes it leads. It is
    // proposed again (same request id) until it has an outcome, as the real loops do.
    let stale = {
        let ctx = LeaderContext {
            node: cluster.nodes[&old].raft.clone(),
            term: old_term,
            cancel: CancellationToken::new(),
        };
        tokio::spawn(async move {
            let command = Command::CreateCluster {
                name: "stale".into(),
                arn: "arn:aws:ecs:us-east-1:000000000000:cluster/stale".into(),
                tags: Vec::new(),
                options: Default::default(),
            };
            decide(&ctx, command).await
        })
    };
    let others: Vec<u64> = cluster.nodes.keys().copied().filter(|id| *id != old).collect();
    let (new, new_term) = wait_for("a new leader among the others", Duration::from_secs(60), || async {
        let (state, term, leader) = report(&cluster, others[0]);
        let (state1, term1, leader1) = report(&cluster, others[1]);
        let leader = leader.filter(|l| *l != old && leader1 == Some(*l) && term == term1 && term > old_term)?;
        let leads = if leader == others[0] { &state } else { &state1 };
        (leads == "leader").then_some((leader, term))
    })
    .await;
    tracing::info!(new, new_term, "--- a new leader is elected; its loops start");
    wait_for_loops(&cluster, new).await;

    tracing::info!(
        old,
        "--- the cut-off leader, still leading in its own eyes, stops its loops"
    );
    wait_for(
        "the cut-off leader's loops to stop",
        Duration::from_secs(30),
        || async { (!cluster.nodes[&old].raft.handle().leader_loops_running()).then_some(()) },
    )
    .await;
    let (state, term, _) = report(&cluster, old);
    assert_eq!(
        (state.as_str(), term),
        ("leader", old_term),
        "the cut-off node should still believe it leads (openraft 0.9 does not step down): \
         otherwise this test no longer exercises the leadership confirmation"
    );
    // It still accepts decisions into its log in its old term; they never commit there.
    wait_for(
        "uncommitted entries in the cut-off leader's log",
        Duration::from_secs(30),
        || async {
            let r = cluster.nodes[&old].raft.handle().local_report();
            (r.last_log_index > r.committed_index).then_some(())
        },
    )
    .await;
    wait_first_decision(&cluster, new, new_term).await;
    assert!(
        !cluster.nodes[&old].raft.handle().leader_loops_running(),
        "the cut-off leader restarted its loops"
    );

    tracing::info!(old, "--- heal: the old leader follows the new one");
    set_links(&links, old, true);
    wait_for("the old leader to follow", Duration::from_secs(60), || async {
        let (state, term, leader) = report(&cluster, old);
        (state != "leader" && term >= new_term && leader.is_some() && leader != Some(old)).then_some(())
    })
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), stale)
        .await
        .expect("the stale decision to get an outcome")
        .unwrap();
    assert_eq!(
        outcome.as_ref().ok(),
        Some(&Outcome::Rejected(Rejection::StaleLeader)),
        "the cut-off leader's decision: {outcome:?}"
    );

    tracing::info!("--- only decisions of a term's own leader, made while it led, took effect");
    let leader = cluster.leader().await;
    let names: BTreeSet<String> = cluster.list_cluster_names(leader).await.into_iter().collect();
    assert!(!names.contains("stale"), "the cut-off leader's decision applied");
    let late: Vec<String> = proposed
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, t, _, at)| (*n, *t) == (old, old_term) && *at > cut_at)
        .map(|(_, _, name, _)| name.clone())
        .filter(|name| names.contains(name))
        .collect();
    assert!(late.is_empty(), "decisions of the cut-off leader applied: {late:?}");
    assert!(names.contains(&format!("d-{new}-t{new_term}-0")));
    let starts = ledger.starts.lock().unwrap().clone();
    assert_eq!(
        starts.iter().filter(|s| **s == (old, old_term)).count(),
        1,
        "{starts:?}"
    );
    assert!(starts.contains(&(new, new_term)), "{starts:?}");
    assert!(starts.windows(2).all(|w| w[0].1 < w[1].1), "{starts:?}");
    cluster.shutdown().await;
}

/// A leader loop that panics on its first two runs, then runs until cancelled.
struct Fragile {
    runs: Arc<AtomicUsize>,
}

impl LeaderTask for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let runs = self.runs.clone();
        async move {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            if run <= 2 {
                panic!("fragile leader loop: run {run} fails on purpose");
            }
            ctx.cancel.cancelled().await;
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_loop_that_panics_is_restarted_while_the_node_leads() {
    let runs = Arc::new(AtomicUsize::new(0));
    let factory: TaskFactory = {
        let runs = runs.clone();
        Arc::new(move |_| vec![Arc::new(Fragile { runs: runs.clone() }) as Arc<dyn LeaderTask>])
    };
    let cluster = TestCluster::start_with_tasks(1, |_| {}, factory).await;
    wait_for(
        "the loop's third run, after two panics",
        Duration::from_secs(10),
        || async { (runs.load(Ordering::SeqCst) >= 3).then_some(()) },
    )
    .await;
    // The third run lasts: no further restart while the node leads.
    let leader = cluster.leader().await;
    assert_eq!(leader, 1);
    cluster
        .ok(1, "CreateCluster", json!({"clusterName": "still-serving"}))
        .await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_off_to_an_up_to_date_voter_in_one_election_and_no_write_fails() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let (leader, term) = cluster.leader_and_term().await;
    cluster
        .ok(leader, "CreateCluster", json!({"clusterName": "handoff"}))
        .await;

    tracing::info!("--- writes through every node, all the while");
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (1..=3u64)
        .map(|id| {
            let (url, http) = (cluster.url(id), cluster.http.clone());
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.is_cancelled() {
                    i += 1;
                    let body = json!({"clusterName": format!("w-{id}-{i}")});
                    let (status, v) = crate::harness::ecs_call(&http, &url, "CreateCluster", body, &[]).await;
                    match status {
                        200 => done.fetch_add(1, Ordering::SeqCst),
                        _ => {
                            failed.lock().unwrap().push(format!("node {id}: {status} {v}"));
                            0
                        }
                    };
                }
            })
        })
        .collect();
    wait_for("writes under way", Duration::from_secs(30), || async {
        (done.load(Ordering::SeqCst) >= 30).then_some(())
    })
    .await;

    tracing::info!("--- the leader hands off");
    let new = cluster.nodes[&leader]
        .raft
        .handle()
        .hand_off_leadership()
        .await
        .expect("the leadership was handed off");
    assert_ne!(new, leader);
    let written = done.load(Ordering::SeqCst);
    wait_for("writes after the handoff", Duration::from_secs(30), || async {
        (done.load(Ordering::SeqCst) >= written + 30).then_some(())
    })
    .await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap();
    }
    let (now_leader, now_term) = cluster.leader_and_term().await;
    assert_eq!(now_leader, new, "the voter it chose leads");
    assert_eq!(now_term, term + 1, "in one election, with no split vote");
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    cluster.stop(leader).await;
    cluster.shutdown().await;
}
