//! The Raft log and vote in RocksDB (`raft_log`, `raft_meta`).
//!
//! Durability: every append, truncate, purge and vote is written with a synced WAL before
//! openraft is told it is done, so an acknowledged entry or vote survives a crash.
//!
//! Purge is gated on the state machine: openraft may ask to purge the log up to a snapshot it
//! is still installing, and a crash in between would leave neither the entries nor the state
//! they built. A purge therefore waits until the state machine has reached its index.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};

use super::log_cache::{LogCache, CACHE_BYTES};
use super::{NodeId, TypeConfig};
use crate::storage::{u64_key, Batch, Cf, Store, KEY_MAX};

pub(super) const VOTE: &[u8] = b"vote";
/// The data directory's format version, written at the first start of a build that knows it.
const FORMAT: &[u8] = b"format_version";
/// The format of the data directory this build writes: the Raft log's entries (JSON `Entry`),
/// the vote, the state's rows, and snapshots (`ECSDSNP1` files). A directory without the record
/// is of format 1, the first (written by builds before the record existed).
pub const DATA_FORMAT: u64 = 1;

/// Reads the data directory's format: refuses one written by a newer build (which this one
/// might misread), and records this build's format in one that has none yet.
pub fn check_format(store: &Store) -> Result<(), String> {
    let found = store
        .get(Cf::RaftMeta, FORMAT)
        .map_err(|e| format!("read the data directory's format: {e}"))?;
    match found.map(|v| String::from_utf8_lossy(&v).trim().parse::<u64>()) {
        Some(Ok(found)) if found <= DATA_FORMAT => Ok(()),
        Some(Ok(found)) => Err(format!(
            "the data directory is of format {found}, written by a newer ecsd; this build reads formats up to {DATA_FORMAT}: \
             run the newer build (a downgrade is not supported)"
        )),
        Some(Err(_)) => Err("the data directory's format record is not a number".to_string()),
        None => {
            let mut batch = Batch::default();
            batch.put(Cf::RaftMeta, FORMAT, DATA_FORMAT.to_string().as_bytes());
            store
                .write(batch, true)
                .map_err(|e| format!("record the data directory's format: {e}"))
        }
    }
}
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Index + 1 of the committed log id (0 = nothing committed), as last reported by openraft.
#[derive(Debug, Default)]
pub struct CommittedIndex(AtomicU64);

impl CommittedIndex {
    pub fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
    fn set(&self, log_id: Option<&LogId<NodeId>>) {
        self.0.store(log_id.map_or(0, |l| l.index + 1), Ordering::Relaxed);
    }
}

/// How far the state machine has got. Apply's writes are not synced themselves, but they precede
/// the purge's synced write in the same write-ahead log, so they are durable once it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Applied {
    pub upto: Option<LogId<NodeId>>,
    /// The state machine failed (openraft stops); a waiting purge gives up.
    pub failed: bool,
}

/// The log store handed to openraft. Clones share the database.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    committed: Arc<CommittedIndex>,
    purge_gate: Option<watch::Receiver<Applied>>,
    /// The newest entries, decoded (shared by every clone: the readers openraft makes too).
    cache: Arc<std::sync::Mutex<LogCache>>,
}

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(&e)),
    }
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        LogStore {
            store,
            committed: Arc::new(CommittedIndex::default()),
            purge_gate: None,
            cache: Arc::new(std::sync::Mutex::new(LogCache::new(CACHE_BYTES))),
        }
    }

    /// Makes every purge wait until `applied` reaches the purged index.
    pub fn with_purge_gate(mut self, applied: watch::Receiver<Applied>) -> Self {
        self.purge_gate = Some(applied);
        self
    }

    async fn wait_applied(&self, log_id: &LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let Some(gate) = &self.purge_gate else {
            return Ok(());
        };
        let mut gate = gate.clone();
        let reached = gate
            .wait_for(|a| a.failed || a.upto.is_some_and(|u| u.index >= log_id.index))
            .await
            .map(|a| !a.failed);
        match reached {
            Ok(true) => Ok(()),
            _ => Err(write_logs_err(std::io::Error::other(format!(
                "state machine stopped before reaching {log_id}; log not purged"
            )))),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LogCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live view of the committed index, for status reports.
    pub fn committed_index(&self) -> Arc<CommittedIndex> {
        self.committed.clone()
    }

    fn get_meta<T: for<'de> serde::Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
        let bytes = self.store.get(Cf::RaftMeta, key).map_err(read_logs_err)?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(read_logs_err))
            .transpose()
    }

    /// Writes `batch` durably, off the async runtime's worker threads.
    async fn write_synced(&self, batch: Batch) -> Result<(), crate::storage::StorageError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let written = store.write(batch, true);
            metrics::histogram!("ecsd_raft_log_fsync_seconds").record(started.elapsed().as_secs_f64());
            written
        })
        .await
        .unwrap_or_else(|join| panic!("log write task panicked: {join}"))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = self.cache().get(start, end) {
            return Ok(entries);
        }
        let to = end.map(|e| u64_key(e).to_vec()).unwrap_or_else(|| KEY_MAX.to_vec());
        let rows = self
            .store
            .scan(Cf::RaftLog, &u64_key(start), &to, usize::MAX)
            .map_err(read_logs_err)?;
        rows.into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(read_logs_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let last = self.store.last(Cf::RaftLog).map_err(read_logs_err)?;
        let last_log_id = match last {
            Some((_, v)) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(&v).map_err(read_logs_err)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = Batch::default();
        batch.put(
            Cf::RaftMeta,
            VOTE,
            serde_json::to_vec(vote).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?,
        );
        self.write_synced(batch)
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Advisory: lets a restarted node re-apply up to here before hearing from a leader.
        // Not synced; losing it only delays re-application.
        let mut batch = Batch::default();
        batch.put(
            Cf::RaftMeta,
            COMMITTED,
            serde_json::to_vec(&committed).map_err(write_logs_err)?,
        );
        self.store.write(batch, false).map_err(write_logs_err)?;
        self.committed.set(committed.as_ref());
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed: Option<LogId<NodeId>> = self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten();
        self.committed.set(committed.as_ref());
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut batch = Batch::default();
        let mut written = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_logs_err)?;
            let size = bytes.len();
            batch.put(Cf::RaftLog, u64_key(entry.log_id.index), bytes);
            written.push((entry, size));
        }
        // Synced before the callback: openraft counts this entry towards a quorum only after.
        let result = self.write_synced(batch).await;
        metrics::histogram!("ecsd_raft_log_append_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.cache().appended(written);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.cache().truncate(log_id.index);
        let mut batch = Batch::default();
        batch.delete_range(Cf::RaftLog, u64_key(log_id.index), KEY_MAX);
        self.write_synced(batch).await.map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.wait_applied(&log_id).await?;
        self.cache().purge(log_id.index);
        let mut batch = Batch::default();
        batch.put(
            Cf::RaftMeta,
            LAST_PURGED,
            serde_json::to_vec(&log_id).map_err(write_logs_err)?,
        );
        batch.delete_range(Cf::RaftLog, u64_key(0), u64_key(log_id.index + 1));
        self.write_synced(batch).await.map_err(write_logs_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_of_a_newer_format_is_refused_and_an_unmarked_one_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        check_format(&store).expect("a new directory is this build's");
        assert_eq!(
            store.get(Cf::RaftMeta, FORMAT).unwrap().as_deref(),
            Some(b"1".as_slice())
        );
        check_format(&store).expect("and stays readable");
        let mut batch = Batch::default();
        batch.put(Cf::RaftMeta, FORMAT, (DATA_FORMAT + 1).to_string().as_bytes());
        store.write(batch, true).unwrap();
        let e = check_format(&store).unwrap_err();
        assert!(e.contains("written by a newer ecsd"), "{e}");
    }
}
