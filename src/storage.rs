//! RocksDB: one instance per node, its column families and key encodings.
//!
//! This is the only module that imports `rocksdb`. It knows nothing of Raft or ECS: it offers
//! atomic batches (synced or not), point reads, ordered range scans and point-in-time dumps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The column families of a node's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Raft's own metadata: vote, committed, last purged log id.
    RaftMeta,
    /// The Raft log, keyed by big-endian index.
    RaftLog,
    /// State-machine metadata: last applied log id, membership, applied-time watermark.
    SmMeta,
    /// Request-dedupe table: request id to recorded outcome, plus an expiry index.
    SmDedupe,
    /// ECS data, keyed for range scans (`cluster/<name>`, …).
    Data,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::RaftMeta, Cf::RaftLog, Cf::SmMeta, Cf::SmDedupe, Cf::Data];
    /// The families that make up the replicated state machine (what a snapshot carries).
    pub const STATE_MACHINE: [Cf; 3] = [Cf::SmMeta, Cf::SmDedupe, Cf::Data];

    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftMeta => "raft_meta",
            Cf::RaftLog => "raft_log",
            Cf::SmMeta => "sm_meta",
            Cf::SmDedupe => "sm_dedupe",
            Cf::Data => "ecs_data",
        }
    }

    pub fn tag(self) -> u8 {
        match self {
            Cf::RaftMeta => 0,
            Cf::RaftLog => 1,
            Cf::SmMeta => 2,
            Cf::SmDedupe => 3,
            Cf::Data => 4,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Cf> {
        Cf::ALL.into_iter().find(|cf| cf.tag() == tag)
    }
}

/// An I/O failure of the database. Fatal for Raft: the node must stop.
#[derive(Debug, thiserror::Error)]
#[error("rocksdb: {0}")]
pub struct StorageError(#[from] rocksdb::Error);

/// A set of writes applied atomically.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Cf, Op)>,
}

enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((cf, Op::Put(key.into(), value.into())));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push((cf, Op::Delete(key.into())));
    }

    /// Deletes keys in `[from, to)`.
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push((cf, Op::DeleteRange(from.into(), to.into())));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Tests only: the environment variable that names the crash point at which the process aborts
/// (a test re-runs itself in a child process with it set, to crash at each step of a protocol).
#[cfg(test)]
pub(crate) const CRASH_AT_ENV: &str = "ECSD_TEST_CRASH_AT";

/// A step of a multi-step write that a crash may follow. In tests, the process aborts here when
/// [`CRASH_AT_ENV`] names `step`; otherwise this does nothing.
#[inline]
pub(crate) fn crash_point(step: &str) {
    #[cfg(test)]
    if std::env::var(CRASH_AT_ENV).is_ok_and(|at| at == step) {
        std::process::abort();
    }
    #[cfg(not(test))]
    let _ = step;
}

/// RocksDB's own figures of a store, summed over its column families.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFigures {
    /// `rocksdb.estimate-live-data-size`: the bytes of live data in the files.
    pub live_data_bytes: u64,
    /// `rocksdb.estimate-pending-compaction-bytes`: what compaction has yet to rewrite.
    pub pending_compaction_bytes: u64,
    /// `rocksdb.total-sst-files-size`: every file, live or awaiting deletion.
    pub sst_files_bytes: u64,
}

impl Store {
    /// RocksDB's estimates of this store's size and compaction debt.
    pub fn figures(&self) -> StoreFigures {
        let sum = |name: &str| -> u64 {
            Cf::ALL
                .iter()
                .filter_map(|cf| self.db.property_int_value_cf(self.handle(*cf), name).ok().flatten())
                .sum()
        };
        StoreFigures {
            live_data_bytes: sum("rocksdb.estimate-live-data-size"),
            pending_compaction_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
            sst_files_bytes: sum("rocksdb.total-sst-files-size"),
        }
    }
}

/// Free bytes for an unprivileged writer on the file system that holds `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Result<u64, String> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Upper bound for "every key" in a family: all keys the project writes are shorter ASCII or
/// 8-byte big-endian integers below `u64::MAX`.
pub const KEY_MAX: [u8; 16] = [0xff; 16];

/// A handle to the node's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

/// A handle that does not keep the database open; tells when every [`Store`] is gone.
pub struct StoreWatch(std::sync::Weak<DB>);

impl StoreWatch {
    /// Whether the database has been closed (its lock released).
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl Store {
    /// Opens (or creates) the database under `dir`, with every column family.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        let descriptors = Cf::ALL.iter().map(|cf| {
            let mut cf_options = Options::default();
            if *cf == Cf::RaftLog {
                // Append-then-delete-prefix: small memtables, purge drops whole ranges.
                cf_options.set_write_buffer_size(16 * 1024 * 1024);
            }
            ColumnFamilyDescriptor::new(cf.name(), cf_options)
        });
        let db = DB::open_cf_descriptors(&options, dir, descriptors)?;
        Ok(Store { db: Arc::new(db) })
    }

    /// A watch that reports when the last handle is dropped and the database is closed.
    pub fn watch(&self) -> StoreWatch {
        StoreWatch(Arc::downgrade(&self.db))
    }

    fn handle(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every family is created at open, so this lookup cannot fail.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.handle(cf), key)?)
    }

    /// Applies `batch` atomically. With `sync`, the WAL is fsynced before this returns.
    pub fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut inner = WriteBatch::default();
        for (cf, op) in batch.ops {
            let handle = self.handle(cf);
            match op {
                Op::Put(k, v) => inner.put_cf(handle, k, v),
                Op::Delete(k) => inner.delete_cf(handle, k),
                Op::DeleteRange(from, to) => inner.delete_range_cf(handle, from, to),
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        self.db.write_opt(inner, &write_options)?;
        Ok(())
    }

    /// Returns up to `limit` pairs with `from <= key < to`, in key order.
    pub fn scan(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.handle(cf), IteratorMode::From(from, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if &*k >= to || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Returns up to `limit` pairs with `from <= key < to`, in descending key order.
    pub fn scan_rev(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.handle(cf));
        // The last key below `to`: seek_for_prev lands on the greatest key <= `to`.
        iter.seek_for_prev(to);
        if iter.valid() && iter.key() == Some(to) {
            iter.prev();
        }
        while iter.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            if k < from {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            iter.prev();
        }
        iter.status()?;
        Ok(out)
    }

    /// The pair with the greatest key in `cf`.
    pub fn last(&self, cf: Cf) -> Result<Option<KeyValue>, StorageError> {
        let mut iter = self.db.iterator_cf(self.handle(cf), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Calls `visit` with every pair of `cfs`, all read from one point-in-time view.
    pub fn dump(
        &self,
        cfs: &[Cf],
        mut visit: impl FnMut(Cf, &[u8], &[u8]) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>, StorageError> {
        // One point-in-time view, read by short-lived iterators: an iterator pins the memtables
        // alive when it was made, so a single one held for a whole dump kept every memtable
        // written meanwhile in memory (GiBs under load). A snapshot only keeps old versions in
        // the files, and each chunk's iterator is dropped before the next is made.
        const CHUNK: usize = 4096;
        let snapshot = self.db.snapshot();
        for cf in cfs {
            let mut after: Option<Box<[u8]>> = None;
            loop {
                let mode = match &after {
                    None => IteratorMode::Start,
                    Some(key) => IteratorMode::From(key, Direction::Forward),
                };
                let mut read = 0;
                let mut last = None;
                for item in snapshot.iterator_cf(self.handle(*cf), mode) {
                    let (k, v) = item?;
                    // Resuming from the last key read: skip it.
                    if after.as_deref() == Some(&*k) {
                        continue;
                    }
                    if let Err(e) = visit(*cf, &k, &v) {
                        return Ok(Err(e));
                    }
                    read += 1;
                    if read == CHUNK {
                        last = Some(k);
                        break;
                    }
                }
                match last {
                    Some(key) => after = Some(key),
                    None => break,
                }
            }
        }
        Ok(Ok(()))
    }

    /// Replaces the whole contents of `cfs` with the sorted SST files in `files` (made by
    /// [`write_sst_files`]), then applies `last` synced. Each family's swap is atomic on its
    /// own, not the families together: a caller that needs them together keeps readers out and
    /// records that a replacement is under way, so that a restart can redo it.
    pub fn replace_with_files(&self, cfs: &[Cf], files: &[(Cf, PathBuf)], last: Batch) -> Result<(), StorageError> {
        let mut wipe = Batch::default();
        for cf in cfs {
            // An empty family (a new node's) gets no range deletion, which would otherwise sit
            // above the ingested files until a compaction rewrote them all.
            if self.last(*cf)?.is_some() {
                wipe.delete_range(*cf, Vec::new(), KEY_MAX);
            }
        }
        self.write(wipe, false)?;
        crash_point("replace:wiped");
        let mut options = rocksdb::IngestExternalFileOptions::default();
        // The files are ours and on the same file system: link them in, copy nothing.
        options.set_move_files(true);
        for (cf, path) in files {
            // Ingested keys get a sequence number above the range deletion just written.
            self.db
                .ingest_external_file_cf_opts(self.handle(*cf), &options, vec![path])?;
            crash_point(&format!("replace:ingested:{}", cf.name()));
        }
        self.write(last, true)
    }
}

/// Writes records, grouped by family and in key order within each, into one SST file per family
/// under `dir` (named `<prefix>-<family>.sst`), for [`Store::replace_with_files`]. `fill` feeds
/// the records to the sink it is given; memory stays bounded by RocksDB's block size, whatever
/// the number of records. A family that gets no record gets no file.
pub fn write_sst_files<T>(
    dir: &Path,
    prefix: &str,
    fill: impl FnOnce(&mut dyn FnMut(Cf, &[u8], &[u8]) -> std::io::Result<()>) -> std::io::Result<T>,
) -> std::io::Result<(T, Vec<(Cf, PathBuf)>)> {
    let options = Options::default();
    let mut files: Vec<(Cf, PathBuf)> = Vec::new();
    let mut open: Option<(Cf, rocksdb::SstFileWriter<'_>)> = None;
    let result = fill(&mut |cf, key, value| {
        if open.as_ref().is_none_or(|(current, _)| *current != cf) {
            if let Some((_, mut done)) = open.take() {
                done.finish().map_err(std::io::Error::other)?;
            }
            if files.iter().any(|(seen, _)| *seen == cf) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("records of {} are not together", cf.name()),
                ));
            }
            let path = dir.join(format!("{prefix}-{}.sst", cf.name()));
            let writer = rocksdb::SstFileWriter::create(&options);
            writer.open(&path).map_err(std::io::Error::other)?;
            files.push((cf, path));
            open = Some((cf, writer));
        }
        let (_, writer) = open.as_mut().expect("opened above");
        // Fails unless keys come in strictly increasing order.
        writer
            .put(key, value)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    });
    let finished = match open.take() {
        Some((_, mut last)) => last.finish().map_err(std::io::Error::other),
        None => Ok(()),
    };
    match result.and_then(|t| finished.map(|()| t)) {
        Ok(t) => Ok((t, files)),
        Err(e) => {
            for (_, path) in &files {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// Big-endian encoding, so numeric order equals key order.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes a key written by [`u64_key`].
pub fn key_u64(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_scan_and_dump() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for i in [3u64, 1, 2] {
            batch.put(Cf::RaftLog, u64_key(i), format!("e{i}"));
        }
        batch.put(Cf::Data, "cluster/a", "A");
        store.write(batch, true).unwrap();
        let keys: Vec<u64> = store
            .scan(Cf::RaftLog, &u64_key(2), &KEY_MAX, 10)
            .unwrap()
            .iter()
            .filter_map(|(k, _)| key_u64(k))
            .collect();
        assert_eq!(keys, vec![2, 3]);
        assert_eq!(
            store.last(Cf::RaftLog).unwrap().map(|(k, _)| key_u64(&k)),
            Some(Some(3))
        );

        let mut batch = Batch::default();
        batch.delete_range(Cf::RaftLog, u64_key(0), u64_key(3));
        store.write(batch, false).unwrap();
        let mut seen = Vec::new();
        store
            .dump(&[Cf::RaftLog, Cf::Data], |cf, k, _| {
                seen.push((cf, k.to_vec()));
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            vec![(Cf::RaftLog, u64_key(3).to_vec()), (Cf::Data, b"cluster/a".to_vec())]
        );
    }

    #[test]
    fn a_reverse_scan_reads_down_from_below_its_upper_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for k in ["a", "b", "c", "d"] {
            batch.put(Cf::Data, k, k);
        }
        batch.put(Cf::SmDedupe, "z", "other family");
        store.write(batch, false).unwrap();
        let keys = |from: &str, to: &str, limit| -> Vec<String> {
            let rows = store.scan_rev(Cf::Data, from.as_bytes(), to.as_bytes(), limit).unwrap();
            rows.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
        };
        assert_eq!(keys("a", "d", 10), ["c", "b", "a"], "the upper bound is excluded");
        assert_eq!(keys("b", "cc", 10), ["c", "b"], "a bound between keys");
        assert_eq!(keys("a", "zz", 2), ["d", "c"], "past the last key, and the limit");
        assert_eq!(keys("e", "zz", 10), Vec::<String>::new());
    }

    #[test]
    fn replacing_families_with_sst_files_drops_what_they_lack_and_keeps_other_families() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut batch = Batch::default();
        for k in ["a", "b", "c"] {
            batch.put(Cf::Data, k, "old");
        }
        batch.put(Cf::SmDedupe, "r/1", "old");
        batch.put(Cf::RaftLog, u64_key(1), "entry");
        store.write(batch, false).unwrap();

        let (count, files) = write_sst_files(dir.path(), "t", |sink| {
            sink(Cf::SmMeta, b"m", b"new")?;
            sink(Cf::Data, b"b", b"new")?;
            sink(Cf::Data, b"d", b"new")?;
            Ok(3)
        })
        .unwrap();
        assert_eq!(count, 3);
        assert_eq!(files.len(), 2);
        let mut last = Batch::default();
        last.put(Cf::SmMeta, "applied", "7");
        store
            .replace_with_files(&[Cf::SmMeta, Cf::SmDedupe, Cf::Data], &files, last)
            .unwrap();
        let data: Vec<KeyValue> = store.scan(Cf::Data, b"", &KEY_MAX, 10).unwrap();
        assert_eq!(
            data,
            vec![(b"b".to_vec(), b"new".to_vec()), (b"d".to_vec(), b"new".to_vec())]
        );
        assert_eq!(store.scan(Cf::SmDedupe, b"", &KEY_MAX, 10).unwrap(), vec![]);
        assert_eq!(store.get(Cf::SmMeta, b"m").unwrap(), Some(b"new".to_vec()));
        assert_eq!(store.get(Cf::SmMeta, b"applied").unwrap(), Some(b"7".to_vec()));
        assert_eq!(store.get(Cf::RaftLog, &u64_key(1)).unwrap(), Some(b"entry".to_vec()));
        // The files were moved into the database.
        assert!(files.iter().all(|(_, p)| !p.exists()));
        // And they survive a reopen.
        drop(store);
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.scan(Cf::Data, b"", &KEY_MAX, 10).unwrap().len(), 2);
    }

    #[test]
    fn sst_files_refuse_records_out_of_order_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_sst_files(dir.path(), "t", |sink| {
            sink(Cf::Data, b"b", b"1")?;
            sink(Cf::Data, b"a", b"2")
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = write_sst_files(dir.path(), "t", |sink| {
            sink(Cf::Data, b"a", b"1")?;
            sink(Cf::SmMeta, b"a", b"1")?;
            sink(Cf::Data, b"b", b"2")
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_dump_longer_than_a_chunk_visits_every_key_once_from_one_point_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for i in 0..10_000u64 {
            batch.put(Cf::RaftLog, u64_key(i), b"v".to_vec());
        }
        store.write(batch, false).unwrap();
        let mut seen = Vec::new();
        let mut wrote_during = false;
        store
            .dump(&[Cf::RaftLog], |_, k, _| {
                // A write in the middle of the dump is not part of it.
                if !wrote_during {
                    wrote_during = true;
                    let mut late = Batch::default();
                    late.put(Cf::RaftLog, u64_key(20_000), b"late".to_vec());
                    late.delete(Cf::RaftLog, u64_key(9_999));
                    store.write(late, false).unwrap();
                }
                seen.push(key_u64(k).unwrap());
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(seen, (0..10_000u64).collect::<Vec<_>>());
    }
}
