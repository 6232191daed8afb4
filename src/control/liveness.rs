//! Agent liveness, on the leader: agents' heartbeats reach the leader's inbox (from any node,
//! through `RaftHandle::tell_leader`), their deadlines are kept in memory, and only the
//! transitions of `agentConnected` are committed (as term-stamped leader decisions).
//!
//! After a leader change every instance gets a full timeout of grace, since the new leader has
//! not yet heard from anyone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{LeaderContext, LeaderTask};
use crate::model::InstanceStatus;
use crate::raft::{LeaderInbox, NodeError, RaftHandle};
use crate::state::{self, container_instances, Command};

/// How often the leader compares heartbeats with the state.
const SWEEP: Duration = Duration::from_millis(500);

/// When each agent was last heard from, as the leader saw it (in memory only: after a leader
/// change every instance starts with a grace period).
#[derive(Default)]
pub struct Heartbeats(std::sync::Mutex<BTreeMap<(String, String), Instant>>);

impl Heartbeats {
    fn record(&self, cluster: String, instance: String) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((cluster, instance), Instant::now());
    }

    /// When the agent of `instance` was last heard from by this node, if at all.
    pub fn last_seen(&self, cluster: &str, instance: &str) -> Option<Instant> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(cluster.to_string(), instance.to_string())).copied()
    }

    /// Forgets every instance but those of `live` (the last sweep's registered instances).
    fn keep_only(&self, live: &BTreeSet<(String, String)>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|key, _| live.contains(key));
    }

    /// The leader's inbox for heartbeats: each message is `[cluster, instance id]`. Every
    /// sweep (twice a second) forgets what is not a registered instance, so heartbeats for
    /// unknown or deregistered instances cannot grow the map past one sweep's worth. (The inbox
    /// holds no handle of the node: the node holds the inbox.)
    pub fn inbox(self: &Arc<Self>) -> LeaderInbox {
        let heartbeats = self.clone();
        Arc::new(move |message| {
            let (cluster, instance): (String, String) =
                serde_json::from_value(message).map_err(|e| format!("not a heartbeat: {e}"))?;
            heartbeats.record(cluster, instance);
            Ok(())
        })
    }
}

/// An agent's heartbeat, taken to the leader from this node.
pub async fn heartbeat(handle: &RaftHandle, cluster: String, instance: String) -> Result<(), NodeError> {
    handle.tell_leader(serde_json::json!([cluster, instance])).await
}

pub struct Liveness {
    pub heartbeats: Arc<Heartbeats>,
    pub timeout: Duration,
    /// The lost-instance policy: stop the tasks of instances silent this long (`None`: off).
    pub lost_after: Option<Duration>,
}

impl LeaderTask for Liveness {
    fn name(&self) -> &'static str {
        "liveness"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let timeout = self.timeout;
        let lost_after = self.lost_after;
        let heartbeats = self.heartbeats.clone();
        Box::pin(async move {
            let since = Instant::now();
            loop {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => {
                        // Counted by the leader: a node that no longer leads shows none.
                        metrics::gauge!("ecsd_agents_connected").set(0.0);
                        return;
                    }
                    _ = tokio::time::sleep(SWEEP) => {}
                }
                if let Err(e) = sweep(&ctx, &heartbeats, since, timeout, lost_after).await {
                    tracing::debug!(error = %e, "liveness sweep failed; retrying");
                }
            }
        })
    }
}

async fn sweep(
    ctx: &LeaderContext,
    heartbeats: &Heartbeats,
    since: Instant,
    timeout: Duration,
    lost_after: Option<Duration>,
) -> Result<(), String> {
    let handle = ctx.node.handle();
    let view = handle.view();
    let mut changes = Vec::new();
    let mut lost_instances = Vec::new();
    let mut live = BTreeSet::new();
    let mut connected = 0u64;
    let mut after: Option<String> = None;
    loop {
        let (clusters, more) = state::list_active_clusters(view, after.as_deref(), 256).map_err(|e| e.to_string())?;
        for cluster in &clusters {
            for instance in container_instances::all(view, &cluster.name).map_err(|e| e.to_string())? {
                if instance.status == InstanceStatus::Inactive {
                    continue;
                }
                live.insert((cluster.name.clone(), instance.id.clone()));
                connected += u64::from(instance.agent_connected);
                let heard = heartbeats.last_seen(&cluster.name, &instance.id);
                let silent_since = heard.map_or(since, |t| t.max(since));
                let alive = heard.is_some_and(|t| t.elapsed() < timeout);
                if instance.agent_heartbeats && instance.agent_connected && silent_since.elapsed() >= timeout {
                    changes.push((cluster.name.clone(), instance.id.clone(), false));
                    metrics::counter!("ecsd_agent_heartbeats_missed_total").increment(1);
                } else if alive && !(instance.agent_connected && instance.agent_heartbeats) {
                    changes.push((cluster.name.clone(), instance.id.clone(), true));
                }
                let lost = lost_after.is_some_and(|after| silent_since.elapsed() >= after);
                if lost
                    && instance.agent_heartbeats
                    && !instance.agent_connected
                    && instance.running_tasks + instance.pending_tasks > 0
                {
                    lost_instances.push((cluster.name.clone(), instance.id.clone()));
                }
            }
        }
        after = clusters.last().map(|c| c.name.clone());
        if !more {
            break;
        }
    }
    heartbeats.keep_only(&live);
    metrics::gauge!("ecsd_agents_connected").set(connected as f64);
    let mut commands: Vec<Command> = changes
        .into_iter()
        .map(|(cluster, id, connected)| {
            tracing::info!(%cluster, instance = %id, connected, "agent connection changed");
            Command::SetAgentConnected { cluster, id, connected }
        })
        .collect();
    for (cluster, id) in lost_instances {
        let after = lost_after.unwrap_or_default().as_secs();
        tracing::warn!(%cluster, instance = %id, "agent gone too long; its tasks are marked STOPPED");
        commands.push(Command::StopInstanceTasks {
            cluster,
            id,
            reason: format!("Agent disconnected for longer than {after} s"),
        });
    }
    for command in commands {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        super::decide(ctx, command).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_forgets_the_heartbeats_of_instances_no_longer_registered() {
        let heartbeats = Heartbeats::default();
        for id in ["a", "b", "c"] {
            heartbeats.record("c1".into(), id.into());
        }
        let live: BTreeSet<(String, String)> = [("c1".to_string(), "b".to_string())].into();
        heartbeats.keep_only(&live);
        assert!(heartbeats.last_seen("c1", "b").is_some());
        assert!(heartbeats.last_seen("c1", "a").is_none() && heartbeats.last_seen("c1", "c").is_none());
    }
}
