//! Leader-only work: loops that run on the leader alone, started after a barrier and cancelled
//! the moment leadership is lost.
//!
//! The supervisor watches this node's Raft metrics. When the node becomes leader of a term, it
//! first waits until its state machine has applied everything committed before that term (the
//! barrier), then starts every [`LeaderTask`] under a cancellation token tied to the term. When
//! the node stops leading, or the term changes, the token is cancelled and the tasks are awaited
//! before anything else starts. A partitioned old leader may not notice it was deposed (openraft
//! 0.9 has no step-down without quorum), so task decisions must be term-stamped commands that
//! `apply` re-checks; see ARCHITECTURE.md, Leader-only work.

pub mod gc;
pub mod liveness;
pub mod services;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::raft::{NodeError, RaftNode};
use crate::state::{Command, Outcome};

/// What a leader-only loop is given when it starts.
#[derive(Clone)]
pub struct LeaderContext {
    pub node: RaftNode,
    /// The term this node leads; the loop must not outlive it.
    pub term: u64,
    /// Cancelled when leadership of `term` ends or the node shuts down.
    pub cancel: CancellationToken,
}

/// A loop that runs only on the leader: the service scheduler, stopped-task GC and liveness.
pub trait LeaderTask: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Runs until `ctx.cancel` fires.
    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()>;
}

struct Running {
    term: u64,
    cancel: CancellationToken,
    joins: Vec<JoinHandle<()>>,
}

/// Proposes a decision of `ctx`'s term (a fresh request id, stamped with this node's clock) and
/// waits until it is applied. An unconfirmed attempt (`NodeError::Unavailable`) may still
/// commit later in the term, so the same proposal (same request id: it applies at most once) is
/// retried until it has an outcome or the term's loops are cancelled; a loop's next pass
/// therefore never plans around a decision whose fate is unknown. Any other error is returned.
pub async fn decide(ctx: &LeaderContext, command: Command) -> Result<Outcome, NodeError> {
    let proposal = crate::stamp::proposal(command);
    let mut backoff = Duration::from_millis(50);
    loop {
        match ctx.node.write_as_leader(ctx.term, proposal.clone()).await {
            Ok(outcome) => return Ok(outcome),
            // Only an unconfirmed write is worth proposing again; anything else never will be.
            Err(e) if ctx.cancel.is_cancelled() || !matches!(e, NodeError::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "leader decision not confirmed; proposing it again");
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(e),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The leader loops every node runs: the service scheduler, agent liveness, and forgetting
/// STOPPED tasks after an hour.
pub fn builtin_tasks(
    config: &crate::config::NodeConfig,
    heartbeats: Arc<liveness::Heartbeats>,
) -> Vec<Arc<dyn LeaderTask>> {
    vec![
        Arc::new(services::ServiceScheduler {
            scope: crate::model::ArnScope {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
                long_arns_by_default: config.long_arns_by_default,
            },
            backoff: Duration::from_millis(config.services.restart_backoff_ms),
            backoff_max: Duration::from_millis(config.services.restart_backoff_max_ms),
            settle: Duration::from_millis(config.services.deployment_settle_ms),
        }),
        Arc::new(gc::StoppedTaskGc {
            every: Duration::from_millis(config.services.stopped_task_gc_every_ms),
        }),
        Arc::new(liveness::Liveness {
            heartbeats,
            timeout: Duration::from_millis(config.agent.heartbeat_timeout_ms),
            lost_after: (config.agent.lost_instance_timeout_ms > 0)
                .then(|| Duration::from_millis(config.agent.lost_instance_timeout_ms)),
        }),
    ]
}

/// Starts the supervisor; it ends when `shutdown` is cancelled, after stopping its tasks.
///
/// Leader loops propose through [`RaftNode::write_as_leader`] with their context's term.
pub fn spawn_supervisor(
    node: RaftNode,
    tasks: Vec<Arc<dyn LeaderTask>>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(supervise(node, tasks, shutdown))
}

async fn supervise(node: RaftNode, tasks: Vec<Arc<dyn LeaderTask>>, shutdown: CancellationToken) {
    let handle = node.handle().clone();
    let mut metrics = handle.leadership();
    let mut running: Option<Running> = None;
    // One clock for the periodic re-check: metrics change many times a second (every tick and
    // heartbeat reply), so a sleep re-created on each pass would never fire.
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (handle.is_leader_in(&m), m.current_term)
        };
        if let Some(r) = &running {
            if !leading || r.term != term {
                stop(&node, running.take()).await;
                continue;
            }
        } else if leading && !shutdown.is_cancelled() && barrier(&node, term).await {
            running = Some(start_loops(&node, &tasks, term, &shutdown));
            continue;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = shutdown.cancelled() => break,
            // Re-check now and then: a barrier that failed is retried while still leading, and
            // running loops stop on a leader that lost its quorum without being told.
            _ = check.tick() => {
                if running.is_some() && !handle.confirm_leadership(Duration::from_secs(2)).await {
                    tracing::warn!(node_id = handle.id, "no quorum confirms this leader; stopping leader loops");
                    stop(&node, running.take()).await;
                    // Not restarted until a barrier succeeds again (the next pass retries it).
                }
            }
        }
    }
    stop(&node, running.take()).await;
}

fn start_loops(node: &RaftNode, tasks: &[Arc<dyn LeaderTask>], term: u64, shutdown: &CancellationToken) -> Running {
    let handle = node.handle();
    tracing::info!(
        node_id = handle.id,
        term,
        "leadership established; starting leader loops"
    );
    let cancel = shutdown.child_token();
    let joins = tasks
        .iter()
        .map(|task| {
            let ctx = LeaderContext {
                node: node.clone(),
                term,
                cancel: cancel.clone(),
            };
            tokio::spawn(keep_running(task.clone(), ctx))
        })
        .collect();
    handle.set_leader_loops_running(true);
    Running { term, cancel, joins }
}

/// Runs `task` until its context is cancelled. A loop that panics, or returns while its term
/// lasts, is logged, counted (`ecsd_leader_loop_restarts_total`) and started again after a
/// back-off (0.1 s, doubling to 10 s): the node never leads with a dead loop.
async fn keep_running(task: Arc<dyn LeaderTask>, ctx: LeaderContext) {
    let name = task.name();
    let mut backoff = Duration::from_millis(100);
    loop {
        // Its own task, so that a panic ends this run only.
        let ended = tokio::spawn(task.run(ctx.clone())).await;
        if ctx.cancel.is_cancelled() {
            tracing::debug!(task = name, "leader loop ended");
            return;
        }
        match ended {
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, term = ctx.term, "leader loop panicked; restarting it")
            }
            _ => tracing::error!(
                task = name,
                term = ctx.term,
                "leader loop ended while leading; restarting it"
            ),
        }
        metrics::counter!("ecsd_leader_loop_restarts_total", "task" => name).increment(1);
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// True once this node, still leading `term`, has applied everything committed before it.
async fn barrier(node: &RaftNode, term: u64) -> bool {
    let handle = node.handle();
    if handle.read_barrier().await.is_err() {
        return false;
    }
    let m = handle.leadership().borrow().clone();
    handle.is_leader_in(&m) && m.current_term == term
}

async fn stop(node: &RaftNode, running: Option<Running>) {
    let Some(running) = running else { return };
    running.cancel.cancel();
    for join in running.joins {
        let _ = join.await;
    }
    node.handle().set_leader_loops_running(false);
    tracing::info!(
        node_id = node.handle().id,
        term = running.term,
        "leadership lost; leader loops stopped"
    );
}
