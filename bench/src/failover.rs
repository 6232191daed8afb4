//! The `failover` workload: kill -9 of the leader under load, each window measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cluster::LocalCluster;
use crate::ecs::Ecs;
use crate::settings::LoadArgs;
use crate::util::quantile;

/// A client over every node, and the ARN of the cluster `bench` it creates (what the writers tag).
async fn bench_cluster(local: &LocalCluster) -> anyhow::Result<(Arc<Ecs>, String)> {
    let ecs = Arc::new(Ecs::new(local.endpoints.clone())?);
    let created = ecs.call("CreateCluster", json!({"clusterName": "bench"})).await?;
    let arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((ecs, arn))
}

/// `--workload failover`: under a steady write load (`--concurrency` clients over every node,
/// TagResource), `kill -9` the leader; the window runs from the kill to the first write
/// acknowledged that was sent after it. The node is restarted and the cluster given time to
/// settle before the next round; `--repeat` rounds.
pub async fn failover(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    let (ecs, arn) = bench_cluster(local).await?;
    let mut windows = Vec::new();
    let mut errors_total = 0u64;
    // Every write answered from 1 s before each kill to 3 s after it, in 100 ms bins.
    let mut timeline = crate::timeline::Timeline::new(-1000.0, 3000.0, 100.0);
    let mut unmeasured = Vec::new();
    for round in 1..=load.repeat {
        let (leader, term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
        // Each client records (sent, answered, ok) for every write.
        let stop = CancellationToken::new();
        let log: Arc<std::sync::Mutex<Vec<(Instant, Instant, bool)>>> = Arc::default();
        let mut clients = Vec::new();
        for c in 0..load.concurrency.clamp(1, 64) {
            let (ecs, stop, log, arn) = (ecs.clone(), stop.clone(), log.clone(), arn.clone());
            clients.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.is_cancelled() {
                    i += 1;
                    let body = json!({"resourceArn": arn, "tags": [{"key": format!("c{c}"), "value": i.to_string()}]});
                    let sent = Instant::now();
                    let ok = ecs.once("TagResource", &body, false).await.is_ok();
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((sent, Instant::now(), ok));
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        local.kill(leader);
        let until = killed + Duration::from_secs(30);
        let window = loop {
            let first = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(sent, _, ok)| *ok && *sent >= killed)
                .map(|(_, answered, _)| *answered)
                .min();
            if let Some(t) = first {
                break Some(t - killed);
            }
            if Instant::now() > until {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Keep the clients writing until the timeline's end, then stop them.
        tokio::time::sleep_until((killed + Duration::from_secs(3)).into()).await;
        stop.cancel();
        for c in clients {
            let _ = c.await;
        }
        let relative = |t: Instant| {
            t.saturating_duration_since(killed).as_secs_f64() * 1000.0
                - killed.saturating_duration_since(t).as_secs_f64() * 1000.0
        };
        for (sent, answered, ok) in log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            timeline.add(relative(*sent), relative(*answered), *ok);
        }
        // The errors of the window: sent after the kill, answered before writes were acknowledged
        // again (after it, the clients aimed at the killed node fail until it is back; the
        // timeline shows those).
        let window_end = window.map_or(until, |w| killed + w);
        let errors = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(sent, answered, ok)| !*ok && *sent >= killed && *answered <= window_end)
            .count() as u64;
        errors_total += errors;
        // The node killed led: another one leads now, in a newer term.
        let (successor, new_term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
        if successor == leader || new_term <= term {
            bail!("round {round}: after the kill of n{leader} (leader in term {term}), n{successor} leads in term {new_term}");
        }
        match window {
            Some(w) => {
                println!(
                    "  round {round:>2}: killed leader n{leader} (term {term}); n{successor} leads in term {new_term}; writes acknowledged again after {:.0} ms ({errors} errors)",
                    w.as_secs_f64() * 1000.0
                );
                windows.push(w.as_secs_f64() * 1000.0);
            }
            None => {
                println!("  round {round:>2}: killed leader n{leader}; no write acknowledged within 30 s");
                unmeasured.push(round);
            }
        }
        local.restart(leader)?;
        // The next kill waits until the restarted node has caught up with the leader.
        local.wait_caught_up(leader, Duration::from_secs(30)).await?;
    }
    let mut sorted = windows.clone();
    sorted.sort_by(f64::total_cmp);
    let median = quantile(&sorted, 0.5);
    println!(
        "failover: median unavailability {median:.0} ms (min {:.0}, max {:.0}) over {} kills of the leader",
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len()
    );
    let worst = timeline.max_latency_ms.iter().copied().fold(0.0f64, f64::max);
    println!(
        "failover: over the {} kills, from 1 s before to 3 s after each: {} writes acknowledged, {} failed; slowest answer {worst:.0} ms",
        load.repeat,
        timeline.ok.iter().sum::<u64>(),
        timeline.errors.iter().sum::<u64>()
    );
    if load.smoke {
        if !unmeasured.is_empty() || windows.is_empty() {
            bail!("smoke: failover: no write was acknowledged within 30 s after the kill in rounds {unmeasured:?}");
        }
        println!("smoke: failover: {} windows measured: passed", windows.len());
    }
    Ok(
        json!({"windows_ms": windows, "median_ms": median, "errors_after_kills": errors_total, "rounds": load.repeat,
              "timeline": timeline}),
    )
}

/// `--workload rolling-restart`: under a steady write load (`--concurrency` retrying clients
/// over every node, TagResource), each node in turn is stopped with SIGTERM (a leader hands its
/// leadership off first), started again, and waited for until it has caught up; the leader
/// goes last. Per restart: the longest gap between two acknowledged writes, from the signal
/// until the node is back. A client retries a failed write on the next node (for up to 30 s);
/// a write that still fails is an error a retrying client sees. `--repeat` rolling restarts.
pub async fn rolling_restart(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    let (ecs, arn) = bench_cluster(local).await?;
    let stop = CancellationToken::new();
    // Every acknowledgement's time, and the writes that failed even after their retries.
    let acks: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..load.concurrency.clamp(1, 64) {
        let (ecs, stop, acks, failed, arn) = (ecs.clone(), stop.clone(), acks.clone(), failed.clone(), arn.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let body = json!({"resourceArn": arn, "tags": [{"key": format!("c{c}"), "value": i.to_string()}]});
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    // Each attempt goes to the next node.
                    if ecs.once("TagResource", &body, false).await.is_ok() {
                        acks.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
                        break;
                    }
                    if Instant::now() > deadline {
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut gaps = Vec::new();
    let mut restarts = Vec::new();
    for round in 1..=load.repeat {
        let (leader, _) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
        let mut order: Vec<usize> = (1..=local.endpoints.len()).filter(|i| *i != leader).collect();
        order.push(leader);
        for node in order {
            let (led, term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
            let signalled = Instant::now();
            let stopped_in = local.terminate(node, Duration::from_secs(30)).await?;
            local.restart(node)?;
            local.wait_caught_up(node, Duration::from_secs(60)).await?;
            let back = Instant::now();
            let (new_leader, new_term) = local.wait_for_confirmed_leader(Duration::from_secs(30)).await?;
            let mut times: Vec<Instant> = acks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .filter(|t| *t >= signalled && *t <= back)
                .collect();
            times.sort();
            let mut edges = vec![signalled];
            edges.extend(times);
            edges.push(back);
            let gap = edges
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0;
            let role = if node == led { "leader" } else { "follower" };
            println!(
                "  round {round}: n{node} ({role}, term {term}) stopped in {:.0} ms, back and caught up after {:.0} ms; \
                 longest write gap {gap:.1} ms; n{new_leader} leads in term {new_term}",
                stopped_in.as_secs_f64() * 1000.0,
                (back - signalled).as_secs_f64() * 1000.0
            );
            restarts.push(json!({"round": round, "node": node, "role": role, "gap_ms": gap,
                "stopped_ms": stopped_in.as_secs_f64() * 1000.0, "term_before": term, "term_after": new_term}));
            gaps.push(gap);
        }
    }
    stop.cancel();
    for c in clients {
        let _ = c.await;
    }
    let errors = failed.load(std::sync::atomic::Ordering::SeqCst);
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = quantile(&sorted, 0.5);
    let leader_gaps: Vec<f64> = restarts
        .iter()
        .filter(|r| r["role"] == "leader")
        .filter_map(|r| r["gap_ms"].as_f64())
        .collect();
    println!(
        "rolling-restart: median longest write gap {median:.1} ms (max {:.1}) over {} restarts; the leaders' {:?} ms; \
         {errors} writes failed after their retries",
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len(),
        leader_gaps
            .iter()
            .map(|g| (g * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    if load.smoke {
        if errors > 0 || gaps.len() != load.repeat * local.endpoints.len() {
            bail!(
                "smoke: rolling-restart: {errors} writes failed after retries, {} restarts measured",
                gaps.len()
            );
        }
        println!(
            "smoke: rolling-restart: {} restarts, no failed write: passed",
            gaps.len()
        );
    }
    Ok(
        json!({"gaps_ms": gaps, "median_gap_ms": median, "restarts": restarts, "errors": errors,
              "rounds": load.repeat}),
    )
}
