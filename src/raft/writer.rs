//! Group commit: concurrent proposals are gathered into one Raft log entry.
//!
//! A single task drains the queue: whatever waits while earlier batches are in flight goes into
//! the next batch, so one log append (and one fsync on each node) serves many requests. A few
//! batches may be in flight at once so that replication of one overlaps the append of the next.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{NodeError, RaftHandle};
use crate::state::{Batch, Outcome, Proposal};

/// Batches in flight at once.
const IN_FLIGHT: usize = 4;
/// Queued proposals before callers wait.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Outcome, NodeError>>;

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<(Proposal, Reply)>,
}

impl Writer {
    pub(super) fn spawn(handle: RaftHandle, max_batch: usize) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(handle, rx, max_batch));
        Writer { queue }
    }

    pub(super) async fn write(&self, proposal: Proposal) -> Result<Outcome, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((proposal, tx))
            .await
            .map_err(|_| NodeError::Unavailable("node is shutting down".into()))?;
        rx.await
            .map_err(|_| NodeError::Unavailable("node is shutting down".into()))?
    }
}

async fn run(handle: RaftHandle, mut rx: mpsc::Receiver<(Proposal, Reply)>, max_batch: usize) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a slot first: proposals that arrive meanwhile join this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut pending = vec![first];
        while pending.len() < max_batch {
            match rx.try_recv() {
                Ok(item) => pending.push(item),
                Err(_) => break,
            }
        }
        let (proposals, replies): (Vec<Proposal>, Vec<Reply>) = pending.into_iter().unzip();
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            metrics::histogram!("ecsd_write_batch_size").record(proposals.len() as f64);
            match handle.submit_batch(Batch(proposals)).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes.0) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}
