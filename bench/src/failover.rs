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

/// `--workload failover`: under a steady write load (`--concurrency` clients over every node,
/// TagResource), `kill -9` the leader; the window runs from the kill to the first write
/// acknowledged that was sent after it. The node is restarted and the cluster given time to
/// settle before the next round; `--repeat` rounds.
pub async fn failover(local: &mut LocalCluster, load: &LoadArgs) -> anyhow::Result<Value> {
    let ecs = Arc::new(Ecs::new(local.endpoints.clone())?);
    let created = ecs.call("CreateCluster", json!({"clusterName": "bench"})).await?;
    let arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
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
