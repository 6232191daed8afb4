//! The `scale` workload: a large state (memory, snapshot size, a new node's catch-up, a restart).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use crate::cluster::LocalCluster;
use crate::ecs::Ecs;
use crate::settings::LoadArgs;
use crate::util::wait_until;
use crate::workloads::register_instance;

/// `--workload scale`: loads `--tasks` tasks (RunTask of 10 on `--instances` container instances
/// registered through the API, so the tasks stay PENDING and no agent is involved) and
/// `--services` services, then reports each node's resident memory and data size, the newest
/// snapshot's size, how long a new, empty node takes to be added and caught up (by snapshot,
/// the log being purged behind it), and how long a restarted node takes to serve again, caught up.
pub async fn scale(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    use crate::cluster::{dir_bytes, newest_snapshot_bytes, peak_resident_bytes, resident_bytes};
    let ecs = Arc::new(Ecs::new(local.endpoints.clone())?);
    ecs.call("CreateCluster", json!({"clusterName": "bench-scale"})).await?;
    let definition = json!({"family": "bench", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    ecs.call("RegisterTaskDefinition", definition).await?;
    let instances = load.instances.max(1);
    // Room for every task, whatever the spread.
    let memory = (load.tasks * 8 / instances as u64 + 1024).min(i32::MAX as u64);
    for k in 0..instances {
        register_instance(&ecs, "bench-scale", memory, Some(&format!("zone-{}", k % 3))).await?;
    }
    for k in 0..load.services {
        ecs.call(
            "CreateService",
            json!({"cluster": "bench-scale", "serviceName": format!("svc-{k}"), "taskDefinition": "bench", "desiredCount": 0}),
        )
        .await?;
    }
    println!(
        "ecs-bench: {instances} container instances and {} services registered; loading {} tasks",
        load.services, load.tasks
    );
    let started = Instant::now();
    let placed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (ecs, placed, target) = (ecs.clone(), placed.clone(), load.tasks);
        loaders.push(tokio::spawn(async move {
            let body = json!({"cluster": "bench-scale", "taskDefinition": "bench", "count": 10, "startedBy": "bench"});
            while placed.load(std::sync::atomic::Ordering::Relaxed) < target {
                let v = ecs.call("RunTask", body.clone()).await?;
                let n = v["tasks"].as_array().map_or(0, Vec::len) as u64;
                if n == 0 {
                    bail!("RunTask placed nothing: {}", v["failures"]);
                }
                placed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let progress = {
        let placed = placed.clone();
        let target = load.tasks;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = placed.load(std::sync::atomic::Ordering::Relaxed);
                let s = started.elapsed().as_secs_f64();
                println!(
                    "ecs-bench: {n} of {target} tasks placed after {s:.0} s ({:.0}/s)",
                    n as f64 / s
                );
            }
        })
    };
    for l in loaders {
        l.await??;
    }
    progress.abort();
    let loaded = placed.load(std::sync::atomic::Ordering::Relaxed);
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "ecs-bench: {loaded} tasks placed in {load_s:.0} s ({:.0}/s)",
        loaded as f64 / load_s
    );
    let nodes = local.endpoints.len();
    for i in 1..=nodes {
        local.wait_caught_up(i, Duration::from_secs(600)).await?;
    }
    let mut per_node = Vec::new();
    for i in 1..=nodes {
        let rss = resident_bytes(local.pid(i)).unwrap_or(0);
        let peak = peak_resident_bytes(local.pid(i)).unwrap_or(0);
        let disk = dir_bytes(&local.data_dir(i));
        println!(
            "  node {i}: resident memory {:.0} MiB (peak so far {:.0} MiB), data {:.0} MiB",
            rss as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            disk as f64 / 1048576.0
        );
        per_node.push(json!({"node": i, "rss_bytes": rss, "peak_rss_bytes": peak, "data_bytes": disk}));
    }
    let lists = concurrent_lists(local, LIST_CLIENTS).await?;
    let leader = local.wait_for_leader(Duration::from_secs(30)).await?;
    let snapshot = newest_snapshot_bytes(&local.data_dir(leader));
    let me = local.member_status(leader).await?;
    println!(
        "  leader n{leader}: newest snapshot {:.0} MiB; log from index {} (purged before it), last index {}",
        snapshot.unwrap_or(0) as f64 / 1048576.0,
        me["purged_index"].as_u64().map_or(0, |p| p + 1),
        me["last_log_index"]
    );
    // A new node: empty, added through the admin API, caught up by the leader.
    let began = Instant::now();
    let added = local.add_node().await?;
    let added_s = began.elapsed().as_secs_f64();
    local.wait_caught_up(added, Duration::from_secs(900)).await?;
    let catch_up_s = began.elapsed().as_secs_f64();
    let added_snapshot = local.member_status(added).await?["snapshot_index"].clone();
    println!(
        "  new node n{added}: added as a voter after {added_s:.1} s, caught up after {catch_up_s:.1} s (its snapshot: index {added_snapshot})"
    );
    // Each node's highest resident memory since it started: the load, the snapshot builds, and
    // the new node's install and catch-up.
    let peaks: Vec<u64> = (1..=added)
        .map(|i| peak_resident_bytes(local.pid(i)).unwrap_or(0))
        .collect();
    let shown: Vec<String> = peaks
        .iter()
        .enumerate()
        .map(|(i, b)| format!("n{} {:.0} MiB", i + 1, *b as f64 / 1048576.0))
        .collect();
    println!("  peak resident memory so far: {}", shown.join(", "));
    // A restart of a follower: from the kill to serving linearizable reads, caught up.
    let follower = (1..=nodes).find(|i| *i != leader).unwrap_or(1);
    local.kill(follower);
    let began = Instant::now();
    local.restart(follower)?;
    let only = Ecs::new(vec![local.endpoints[follower - 1].clone()])?;
    wait_until(
        "the restarted node to serve a read",
        Duration::from_secs(600),
        async || {
            Ok(only
                .once("DescribeClusters", &json!({"clusters": ["bench-scale"]}), false)
                .await
                .is_ok())
        },
    )
    .await?;
    let serving_s = began.elapsed().as_secs_f64();
    local.wait_caught_up(follower, Duration::from_secs(600)).await?;
    let restart_s = began.elapsed().as_secs_f64();
    println!("  restarted node n{follower}: serving linearizable reads after {serving_s:.1} s, caught up after {restart_s:.1} s");
    Ok(json!({
        "tasks": loaded, "services": load.services, "instances": instances,
        "load_s": load_s, "nodes": per_node, "snapshot_bytes": snapshot,
        "new_node_added_s": added_s, "new_node_caught_up_s": catch_up_s,
        "new_node_snapshot_index": added_snapshot, "peak_rss_bytes": peaks,
        "restart_serving_s": serving_s, "restart_caught_up_s": restart_s,
        "concurrent_lists": lists,
    }))
}

/// Clients paging through every task of the loaded cluster at once.
const LIST_CLIENTS: usize = 16;

/// `clients` paginations of ListTasks over the whole cluster at once, each through one node
/// (round robin), 100 tasks a page, while every node's term is sampled each 100 ms: a list
/// must cost a page, not the state, and must not starve Raft (no election: the term never
/// moves). Fails if the leader or the term changed.
async fn concurrent_lists(local: &LocalCluster, clients: usize) -> anyhow::Result<Value> {
    let (leader, term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
    println!(
        "ecs-bench: {clients} concurrent ListTasks paginations over the whole cluster (leader n{leader}, term {term})"
    );
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (endpoints, done) = (local.endpoints.clone(), done.clone());
        tokio::spawn(async move {
            // Bounded, so a stalled node cannot hold the watcher (and the run) forever.
            let Ok(http) = reqwest::Client::builder().timeout(Duration::from_millis(500)).build() else {
                return 0;
            };
            let mut highest = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for url in &endpoints {
                    let status = http.get(format!("{url}/cluster/status")).send().await;
                    if let Ok(v) = async { status?.json::<Value>().await }.await {
                        highest = highest.max(v["term"].as_u64().unwrap_or(0));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            highest
        })
    };
    let mut paginations = Vec::new();
    for k in 0..clients {
        let ecs = Ecs::new(vec![local.endpoints[k % local.endpoints.len()].clone()])?;
        paginations.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut listed, mut token): (u64, Option<String>) = (0, None);
            loop {
                let mut body = json!({"cluster": "bench-scale", "maxResults": 100});
                if let Some(t) = &token {
                    body["nextToken"] = json!(t);
                }
                let began = Instant::now();
                let page = ecs
                    .once("ListTasks", &body, false)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                latencies.push(began.elapsed().as_secs_f64() * 1000.0);
                listed += page["taskArns"].as_array().map_or(0, Vec::len) as u64;
                match page["nextToken"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => return anyhow::Ok((listed, latencies)),
                }
            }
        }));
    }
    let mut per_client = Vec::new();
    let mut latencies = Vec::new();
    for p in paginations {
        let (listed, mut l) = p.await??;
        per_client.push(listed);
        latencies.append(&mut l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let highest_term = watcher.await?;
    let (after, after_term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let pages = latencies.len();
    println!(
        "  {pages} pages in {elapsed:.1} s ({:.0} pages/s); page latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         each client listed {:?} tasks; highest term seen {highest_term}, leader n{after} in term {after_term}",
        pages as f64 / elapsed,
        at(0.5),
        at(0.99),
        at(1.0),
        per_client.iter().min().zip(per_client.iter().max()),
    );
    if after != leader || after_term != term || highest_term != term {
        bail!("the leader changed during the paginations: n{leader} in term {term}, then n{after} in term {after_term} (highest term seen {highest_term})");
    }
    Ok(json!({
        "clients": clients, "pages": pages, "elapsed_s": elapsed, "listed_per_client": per_client,
        "page_p50_ms": at(0.5), "page_p99_ms": at(0.99), "page_max_ms": at(1.0),
        "term": term, "highest_term_seen": highest_term, "leader_changes": 0,
    }))
}
