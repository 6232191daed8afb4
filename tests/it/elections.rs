//! When elections happen: only when a majority has lost the leader (the pre-vote of
//! `raft/election.rs`), never because one follower stopped hearing from it.

use std::time::Duration;

use crate::harness::wait_for;
use crate::health::{cluster_with_links, isolate};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_the_leader_s_messages_does_not_depose_it() {
    let (cluster, links) = cluster_with_links(3).await;
    let (leader, term) = cluster.leader_and_term().await;
    let cut_off = cluster.other_than(leader);
    let other = (1..=3).find(|id| *id != leader && *id != cut_off).unwrap();
    let handle = |id: u64| cluster.nodes[&id].raft.handle().clone();
    let denied_before = handle(cut_off).pre_votes().1;

    // The leader's messages no longer reach it; its own still reach the others.
    links[&(leader, cut_off)].cut.send_replace(true);
    // It asks for a pre-vote after each election timeout and is refused each time: the leader
    // leads, and the other follower still hears from it.
    wait_for(
        "three refused pre-votes on the cut-off follower",
        Duration::from_secs(30),
        || async { (handle(cut_off).pre_votes().1 >= denied_before + 3).then_some(()) },
    )
    .await;
    for id in [leader, other] {
        let report = handle(id).local_report();
        assert_eq!(
            (report.leader, report.term),
            (Some(leader), term),
            "node {id}: the leader was deposed"
        );
    }
    let lost = handle(cut_off).local_report();
    assert_eq!(lost.term, term, "the cut-off follower raised the term");
    assert_eq!(lost.leader, None, "it still names a leader it no longer hears from");
    assert_eq!(handle(cut_off).pre_votes().0, 0, "no pre-vote was granted");
    // Writes go on meanwhile.
    cluster
        .ok(other, "CreateCluster", json!({"clusterName": "while-cut-off"}))
        .await;

    // Healed, it catches up in the same term, under the same leader.
    links[&(leader, cut_off)].cut.send_replace(false);
    cluster.wait_caught_up(cut_off, leader).await;
    assert_eq!(cluster.leader_and_term().await, (leader, term));
    assert_eq!(
        cluster.list_cluster_names(cut_off).await,
        vec!["while-cut-off".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_majority_loses_the_leader_one_of_it_wins_a_pre_vote_and_an_election() {
    let (cluster, links) = cluster_with_links(3).await;
    let (old, term) = cluster.leader_and_term().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let handle = |id: u64| cluster.nodes[&id].raft.handle().clone();
    // The leader is cut off from both others, both ways (as if its machine were lost).
    isolate(&links, old, true);
    let leader = wait_for("a new leader among the other two", Duration::from_secs(30), || async {
        let reports: Vec<_> = others.iter().map(|id| handle(*id).local_report()).collect();
        let leader = reports[0].leader.filter(|l| *l != old)?;
        (reports.iter().all(|r| r.leader == Some(leader) && r.term > term)).then_some(leader)
    })
    .await;
    let granted: u64 = others.iter().map(|id| handle(*id).pre_votes().0).sum();
    assert!(granted >= 1, "the election followed a granted pre-vote");
    cluster
        .ok(leader, "CreateCluster", json!({"clusterName": "after-the-election"}))
        .await;
    // Healed, the old leader follows the new one.
    isolate(&links, old, false);
    assert_eq!(cluster.leader_and_term().await.0, leader);
    cluster.wait_caught_up(old, leader).await;
}
