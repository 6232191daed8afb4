//! Forgets STOPPED tasks an hour after they stopped (ECS keeps them visible for at least an
//! hour), as term-stamped leader decisions, a bounded number per cluster and pass.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{LeaderContext, LeaderTask};
use crate::state::{self, Command};

/// How long a STOPPED task stays visible.
pub const KEEP_STOPPED_MS: u64 = 60 * 60 * 1000;
/// Most tasks forgotten per cluster and pass, so one entry stays small.
const PER_PASS: usize = 500;

pub struct StoppedTaskGc {
    pub every: Duration,
}

impl LeaderTask for StoppedTaskGc {
    fn name(&self) -> &'static str {
        "stopped-task-gc"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let every = self.every;
        Box::pin(async move {
            loop {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = pass(&ctx).await {
                    tracing::debug!(error = %e, "stopped-task gc pass failed; retrying later");
                }
            }
        })
    }
}

async fn pass(ctx: &LeaderContext) -> Result<(), String> {
    let before_ms = ctx.node.handle().cluster_now_ms().saturating_sub(KEEP_STOPPED_MS);
    let mut after: Option<String> = None;
    loop {
        let (clusters, more) =
            state::list_active_clusters(ctx.node.handle().view(), after.as_deref(), 256).map_err(|e| e.to_string())?;
        for cluster in &clusters {
            if ctx.cancel.is_cancelled() {
                return Ok(());
            }
            let command = Command::ForgetStoppedTasksByTime {
                cluster: cluster.name.clone(),
                before_ms,
                limit: PER_PASS,
            };
            super::decide(ctx, command).await.map_err(|e| e.to_string())?;
        }
        after = clusters.last().map(|c| c.name.clone());
        if !more {
            return Ok(());
        }
    }
}
