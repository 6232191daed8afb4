//! Group commit: concurrent proposals are gathered into one Raft log entry.
//!
//! A single task drains the queue: whatever waits while earlier batches are in flight goes into
//! the next batch, so one log append (and one fsync on each node) serves many requests. A few
//! batches may be in flight at once so that replication of one overlaps the append of the next.
//! A batch is bounded by count and by encoded size, so a log entry stays far below the
//! node-to-node message limit whatever the requests hold.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use super::{NodeError, RaftHandle};
use crate::state::{Batch, Outcome, Proposal};

/// Batches in flight at once.
const IN_FLIGHT: usize = 4;
/// Queued proposals before callers wait.
const QUEUE: usize = 8192;
/// The largest proposal a log entry may carry: a quarter of the node-to-node message limit, so
/// that an entry holding it (and a full batch beside it) still replicates. A larger one would
/// stall replication; it is refused before it is queued.
pub const MAX_PROPOSAL_BYTES: usize = super::network::MAX_MESSAGE_BYTES / 4;
/// How deep a proposal's JSON may nest. serde_json reads at most 128 levels; a log entry and
/// the AppendEntries that carries it wrap a proposal in about ten more. A deeper one would be
/// written to the log and then could not be read back on any node (Raft would stop): it is
/// refused before it is queued.
pub const MAX_PROPOSAL_DEPTH: usize = 100;

type Reply = oneshot::Sender<Result<Outcome, NodeError>>;

/// One queued proposal: its encoded size, when it was queued, and where its outcome goes.
struct Queued {
    proposal: Proposal,
    bytes: usize,
    queued_at: Instant,
    reply: Reply,
}

/// How many proposals and bytes one batch may hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub count: usize,
    pub bytes: usize,
}

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Queued>,
}

/// A handle on a node's writer that does not keep it running (the writer stops when the node's
/// last [`Writer`] is dropped). The leader puts forwarded proposals into its own batches with it.
#[derive(Clone, Default)]
pub(super) struct WeakWriter(Arc<std::sync::OnceLock<mpsc::WeakSender<Queued>>>);

impl WeakWriter {
    pub(super) fn set(&self, writer: &Writer) {
        let _ = self.0.set(writer.queue.downgrade());
    }

    /// The node's writer, while it runs.
    pub(super) fn get(&self) -> Option<Writer> {
        self.0.get()?.upgrade().map(|queue| Writer { queue })
    }

    /// Proposals queued and not yet taken into a batch.
    pub(super) fn queued(&self) -> usize {
        self.get().map_or(0, |w| w.queue.max_capacity() - w.queue.capacity())
    }
}

impl Writer {
    pub(super) fn spawn(handle: RaftHandle, limits: Limits) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(handle, rx, limits));
        Writer { queue }
    }

    pub(super) async fn write(&self, proposal: Proposal) -> Result<Outcome, NodeError> {
        let (bytes, depth) = json_shape(&proposal);
        if bytes > MAX_PROPOSAL_BYTES {
            return Err(NodeError::Rejected(format!(
                "The request is too large to replicate: its command takes {bytes} bytes, more than the {MAX_PROPOSAL_BYTES} one log entry may hold"
            )));
        }
        if depth > MAX_PROPOSAL_DEPTH {
            return Err(NodeError::Rejected(format!(
                "The request nests too deeply: its command nests {depth} levels, more than the {MAX_PROPOSAL_DEPTH} one log entry may hold"
            )));
        }
        let (reply, rx) = oneshot::channel();
        let queued = Queued {
            bytes,
            proposal,
            queued_at: Instant::now(),
            reply,
        };
        self.queue
            .send(queued)
            .await
            .map_err(|_| NodeError::Unavailable("node is shutting down".into()))?;
        rx.await
            .map_err(|_| NodeError::Unavailable("node is shutting down".into()))?
    }
}

/// The JSON size of `proposal` and how deep its arrays and objects nest, measured without
/// building the text.
fn json_shape(proposal: &Proposal) -> (usize, usize) {
    #[derive(Default)]
    struct Shape {
        len: usize,
        depth: usize,
        deepest: usize,
        in_string: bool,
        escaped: bool,
    }
    impl std::io::Write for Shape {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.len += buf.len();
            for &b in buf {
                if self.in_string {
                    match (self.escaped, b) {
                        (true, _) => self.escaped = false,
                        (false, b'\\') => self.escaped = true,
                        (false, b'"') => self.in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'[' | b'{' => {
                        self.depth += 1;
                        self.deepest = self.deepest.max(self.depth);
                    }
                    b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut shape = Shape::default();
    // Serialising a proposal cannot fail: it is plain data with string keys.
    let _ = serde_json::to_writer(&mut shape, proposal);
    (shape.len, shape.deepest)
}

/// Takes the next batch: `first`, then whatever is already queued, within `limits`. A proposal
/// that would overflow the byte budget is returned as the start of the following batch.
fn gather(first: Queued, rx: &mut mpsc::Receiver<Queued>, limits: Limits) -> (Vec<Queued>, Option<Queued>) {
    let mut bytes = first.bytes;
    let mut pending = vec![first];
    while pending.len() < limits.count && bytes < limits.bytes {
        match rx.try_recv() {
            Ok(item) if bytes + item.bytes > limits.bytes => return (pending, Some(item)),
            Ok(item) => {
                bytes += item.bytes;
                pending.push(item);
            }
            Err(_) => break,
        }
    }
    (pending, None)
}

async fn run(handle: RaftHandle, mut rx: mpsc::Receiver<Queued>, limits: Limits) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        // Wait for a slot first: proposals that arrive meanwhile join this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (pending, next) = gather(first, &mut rx, limits);
        carried = next;
        // The hold runs from the oldest proposal's arrival, so time spent queued counts.
        let oldest = pending.iter().map(|q| q.queued_at).min().unwrap_or_else(Instant::now);
        let mut proposals = Vec::with_capacity(pending.len());
        let mut replies = Vec::with_capacity(pending.len());
        for q in pending {
            proposals.push(q.proposal);
            replies.push(q.reply);
        }
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            metrics::histogram!("ecsd_write_batch_size").record(proposals.len() as f64);
            match handle.submit_batch(Batch(proposals), oldest).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn queued(bytes: usize) -> Queued {
        Queued {
            proposal: Proposal {
                request_id: String::new(),
                ts_ms: 0,
                command: Command::Noop,
                request_digest: None,
            },
            bytes,
            queued_at: Instant::now(),
            reply: oneshot::channel().0,
        }
    }

    fn sizes(batch: &[Queued]) -> Vec<usize> {
        batch.iter().map(|q| q.bytes).collect()
    }

    #[tokio::test]
    async fn batches_are_bounded_by_count_and_bytes() {
        let (tx, mut rx) = mpsc::channel(16);
        for bytes in [10, 10, 10, 50, 10, 200, 10] {
            tx.send(queued(bytes)).await.unwrap();
        }
        let limits = Limits { count: 3, bytes: 100 };
        let first = rx.recv().await.unwrap();
        let (batch, carried) = gather(first, &mut rx, limits);
        assert_eq!(sizes(&batch), [10, 10, 10]);
        assert!(carried.is_none());

        let first = rx.recv().await.unwrap();
        let (batch, carried) = gather(first, &mut rx, limits);
        assert_eq!(sizes(&batch), [50, 10]);
        // The next one would overflow the byte budget: it opens the following batch, alone,
        // even though it exceeds the budget by itself.
        let (batch, carried) = gather(carried.unwrap(), &mut rx, limits);
        assert_eq!(sizes(&batch), [200]);
        assert!(carried.is_none());
        let first = rx.recv().await.unwrap();
        let (batch, _) = gather(first, &mut rx, limits);
        assert_eq!(sizes(&batch), [10]);
    }

    #[tokio::test]
    async fn a_proposal_too_large_to_replicate_is_refused_before_it_is_queued() {
        let (queue, mut rx) = mpsc::channel(1);
        let writer = Writer { queue };
        let mut proposal = queued(0).proposal;
        proposal.command = Command::DeleteCluster {
            name: "x".repeat(MAX_PROPOSAL_BYTES),
        };
        let refused = writer.write(proposal).await;
        assert!(
            matches!(&refused, Err(NodeError::Rejected(m)) if m.contains("too large")),
            "{refused:?}"
        );
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[tokio::test]
    async fn a_proposal_nested_too_deeply_to_read_back_is_refused_before_it_is_queued() {
        // Found by the fuzzer: an agent's versionInfo nested 120 levels decoded (serde's limit
        // is 128), but the log entry around it did not: every node's Raft stopped reading it.
        let (queue, mut rx) = mpsc::channel(1);
        let writer = Writer { queue };
        let mut version_info = serde_json::json!(1);
        for _ in 0..120 {
            version_info = serde_json::json!([version_info]);
        }
        let mut proposal = queued(0).proposal;
        proposal.command = Command::SetAgentUpdateStatus {
            cluster: "c".into(),
            id: "i".into(),
            status: "UPDATED".into(),
            version_info: Some(version_info),
        };
        let refused = writer.write(proposal).await;
        assert!(
            matches!(&refused, Err(NodeError::Rejected(m)) if m.contains("nests too deeply")),
            "{refused:?}"
        );
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[test]
    fn json_shape_is_the_json_length_and_nesting() {
        let p = queued(0).proposal;
        assert_eq!(json_shape(&p).0, serde_json::to_vec(&p).unwrap().len());
        let mut p = queued(0).proposal;
        // Brackets inside strings do not count; escaped quotes do not end a string.
        p.request_id = "[[[{\\\"[[".into();
        p.command = Command::DeleteCluster { name: "]]]}".into() };
        assert_eq!(json_shape(&p).1, 3, "{}", serde_json::to_string(&p).unwrap());
    }
}
