//! The state machine store: applies committed entries to RocksDB and builds and installs snapshots.
//!
//! Apply writes the data, `last_applied` and membership in one RocksDB batch. It is not synced on
//! its own: it shares the WAL with the log, whose synced writes make it durable, and after a crash
//! the log is re-applied from `last_applied`. Snapshots are files dumped from one point-in-time
//! view of the state-machine column families; openraft streams them to followers in chunks.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};

use tokio::sync::watch;

use super::log_store::Applied;
use super::{NodeId, NodeInfo, TypeConfig};
use crate::state::{apply_batch, BatchOutcome, KvError, KvRead, Row, Space, Txn};
use crate::storage::{Batch, Cf, Store, KEY_MAX};

const LAST_APPLIED: &[u8] = b"last_applied";
const MEMBERSHIP: &[u8] = b"membership";
/// State-owned keys in `sm_meta` carry this prefix, apart from the adapter's own keys.
const STATE_META_PREFIX: &[u8] = b"s/";
const SNAPSHOT_MAGIC: &[u8; 8] = b"ECSDSNP1";
const TRAILER_TAG: u8 = 0xff;

type Meta = SnapshotMeta<NodeId, NodeInfo>;

/// Read access to the replicated state as the API and `apply` see it.
#[derive(Clone)]
pub struct StateView {
    store: Store,
}

impl StateView {
    pub fn new(store: Store) -> Self {
        StateView { store }
    }

    fn locate(space: Space, key: &[u8]) -> (Cf, Vec<u8>) {
        match space {
            Space::Meta => (Cf::SmMeta, [STATE_META_PREFIX, key].concat()),
            Space::Dedupe => (Cf::SmDedupe, key.to_vec()),
            Space::Data => (Cf::Data, key.to_vec()),
        }
    }
}

impl KvRead for StateView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let (cf, key) = Self::locate(space, key);
        self.store.get(cf, &key).map_err(|e| KvError(e.to_string()))
    }

    fn scan(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        let (cf, from) = Self::locate(space, from);
        let (_, to) = Self::locate(space, to);
        let rows = self
            .store
            .scan(cf, &from, &to, limit)
            .map_err(|e| KvError(e.to_string()))?;
        let strip = if space == Space::Meta {
            STATE_META_PREFIX.len()
        } else {
            0
        };
        Ok(rows.into_iter().map(|(k, v)| (k[strip..].to_vec(), v)).collect())
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::error(e.to_string())),
    }
}

fn snap_err(meta: Option<&Meta>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<NodeId> {
    let subject = ErrorSubject::Snapshot(meta.map(|m| m.signature()));
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::error(e.to_string())),
    }
}

/// Wakes local watchers of data keys after apply writes them: how agents' assignment streams
/// learn of changes. A node-local signal, not replicated state; a watcher re-reads the state.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    watchers: Arc<Mutex<std::collections::BTreeMap<Vec<u8>, watch::Sender<u64>>>>,
}

impl ChangeFeed {
    /// A receiver that changes whenever `key` is written by apply (or a snapshot is installed).
    pub fn subscribe(&self, key: Vec<u8>) -> watch::Receiver<u64> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers.entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    fn notify<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(tx) = watchers.get(key) {
                if tx.receiver_count() == 0 {
                    watchers.remove(key);
                } else {
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
    }

    fn notify_all(&self) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        for tx in watchers.values() {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// The current snapshot on disk.
#[derive(Clone)]
struct SnapshotFile {
    meta: Meta,
    path: PathBuf,
}

/// The state machine handed to openraft.
pub struct StateMachineStore {
    store: Store,
    dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotFile>>>,
    receiving: Option<PathBuf>,
    /// How far apply or snapshot install has got; gates log purges.
    applied: watch::Sender<Applied>,
    feed: ChangeFeed,
}

/// Builds snapshots concurrently with apply, from a point-in-time view.
pub struct SnapshotBuilder {
    store: Store,
    dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotFile>>>,
}

impl StateMachineStore {
    /// Opens the state machine over `store`, with snapshots under `dir`.
    pub fn open(store: Store, dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut best: Option<SnapshotFile> = None;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("snap") => {
                    let meta = read_snapshot_file(&path, |_, _, _| Ok(()))?;
                    let newer = best.as_ref().is_none_or(|b| b.meta.last_log_id < meta.last_log_id);
                    if newer {
                        best = Some(SnapshotFile { meta, path });
                    }
                }
                Some("tmp") => fs::remove_file(&path)?,
                _ => {}
            }
        }
        let mut sm = StateMachineStore {
            store,
            dir: dir.to_path_buf(),
            current: Arc::new(Mutex::new(best)),
            receiving: None,
            applied: watch::Sender::new(Applied::default()),
            feed: ChangeFeed::default(),
        };
        let upto = sm
            .read_meta::<Option<LogId<NodeId>>>(LAST_APPLIED)
            .map_err(std::io::Error::other)?
            .flatten();
        sm.applied = watch::Sender::new(Applied { upto, failed: false });
        Ok(sm)
    }

    /// The feed that signals applied writes of watched keys.
    pub fn feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    /// Follows how far the state machine has got (for the log store's purge gate).
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    /// Publishes the outcome of an apply or install that reached `upto`.
    fn report<T>(&self, result: &Result<T, StorageError<NodeId>>, upto: Option<LogId<NodeId>>) {
        self.applied.send_modify(|a| match result {
            Ok(_) => a.upto = upto.max(a.upto),
            Err(_) => a.failed = true,
        });
    }

    fn read_meta<T: for<'de> serde::Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
        let bytes = self
            .store
            .get(Cf::SmMeta, key)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| sm_err(ErrorVerb::Read, e)))
            .transpose()
    }
}

fn apply_entries(
    store: &Store,
    feed: &ChangeFeed,
    entries: Vec<openraft::Entry<TypeConfig>>,
) -> Result<Vec<BatchOutcome>, StorageError<NodeId>> {
    let view = StateView::new(store.clone());
    let mut txn = Txn::new(&view);
    let mut replies = Vec::with_capacity(entries.len());
    let mut last_applied = None;
    let mut membership = None;
    for entry in entries {
        last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => replies.push(BatchOutcome::default()),
            EntryPayload::Normal(batch) => {
                let term = entry.log_id.leader_id.term;
                replies.push(apply_batch(&mut txn, &batch, term).map_err(|e| sm_err(ErrorVerb::Write, e))?)
            }
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(entry.log_id), m));
                replies.push(BatchOutcome::default());
            }
        }
    }
    let mut batch = Batch::default();
    let mut watched: Vec<Vec<u8>> = Vec::new();
    let mut wake_services = false;
    for ((space, key), value) in txn.into_writes() {
        if space == Space::Data && key.starts_with(crate::state::tasks::WORK_PREFIX) {
            watched.push(key.clone());
        }
        wake_services |= space == Space::Data && crate::state::wakes_services(&key);
        let (cf, key) = StateView::locate(space, &key);
        match value {
            Some(v) => batch.put(cf, key, v),
            None => batch.delete(cf, key),
        }
    }
    if let Some(last_applied) = last_applied {
        let bytes = serde_json::to_vec(&Some(last_applied)).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        batch.put(Cf::SmMeta, LAST_APPLIED, bytes);
    }
    if let Some(membership) = membership {
        let bytes = serde_json::to_vec(&membership).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        batch.put(Cf::SmMeta, MEMBERSHIP, bytes);
    }
    store.write(batch, false).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    if wake_services {
        watched.push(crate::state::SERVICE_WAKE.to_vec());
    }
    feed.notify(watched.iter().map(Vec::as_slice));
    Ok(replies)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>> {
        let last_applied = self.read_meta::<Option<LogId<NodeId>>>(LAST_APPLIED)?.flatten();
        let membership = self.read_meta(MEMBERSHIP)?.unwrap_or_default();
        Ok((last_applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let upto = entries.last().map(|e| e.log_id);
        let store = self.store.clone();
        let feed = self.feed.clone();
        let result = tokio::task::spawn_blocking(move || apply_entries(&store, &feed, entries))
            .await
            .unwrap_or_else(|join| panic!("apply task panicked: {join}"));
        self.report(&result, upto);
        result
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            dir: self.dir.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        if let Some(stale) = self.receiving.take() {
            let _ = fs::remove_file(stale);
        }
        let path = self.dir.join(format!("recv-{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(None, ErrorVerb::Write, e))?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let result = self.install(meta, snapshot).await;
        self.report(&result, meta.last_log_id);
        self.feed.notify_all();
        result
    }
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Open under the lock: a concurrent build may replace (and delete) the file.
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None => Ok(None),
            Some(SnapshotFile { meta, path }) => {
                let file = File::open(path).map_err(|e| snap_err(Some(meta), ErrorVerb::Read, e))?;
                Ok(Some(Snapshot {
                    meta: meta.clone(),
                    snapshot: Box::new(tokio::fs::File::from_std(file)),
                }))
            }
        }
    }
}

impl StateMachineStore {
    async fn install(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> Result<(), StorageError<NodeId>> {
        use tokio::io::AsyncSeekExt;
        let err = |e: std::io::Error| snap_err(Some(meta), ErrorVerb::Write, e);
        // Copy whatever file we were handed (usually the one we created for receiving) into a
        // file of our own, durable before it is loaded.
        let mut source = *snapshot;
        source.seek(std::io::SeekFrom::Start(0)).await.map_err(err)?;
        let path = self.dir.join(format!("install-{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut copy = tokio::fs::File::create(&path).await.map_err(err)?;
        tokio::io::copy(&mut source, &mut copy).await.map_err(err)?;
        copy.sync_all().await.map_err(err)?;
        drop((source, copy));
        if let Some(received) = self.receiving.take() {
            let _ = tokio::fs::remove_file(received).await;
        }
        let store = self.store.clone();
        let dir = self.dir.clone();
        let current = self.current.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || install_snapshot_file(&store, &dir, &current, &meta, &path))
            .await
            .unwrap_or_else(|join| panic!("snapshot install task panicked: {join}"))
    }
}

fn install_snapshot_file(
    store: &Store,
    dir: &Path,
    current: &Mutex<Option<SnapshotFile>>,
    meta: &Meta,
    path: &Path,
) -> Result<(), StorageError<NodeId>> {
    let werr = |e: &dyn std::fmt::Display| snap_err(Some(meta), ErrorVerb::Write, e);
    // One batch: wipe the state-machine families, load the snapshot, record its position.
    let mut batch = Batch::default();
    for cf in Cf::STATE_MACHINE {
        batch.delete_range(cf, Vec::new(), KEY_MAX);
    }
    let file_meta = read_snapshot_file(path, |cf, k, v| {
        batch.put(cf, k.to_vec(), v.to_vec());
        Ok(())
    })
    .map_err(|e| werr(&e))?;
    if file_meta.last_log_id != meta.last_log_id {
        return Err(werr(&format!(
            "snapshot file is at {:?} but its metadata says {:?}",
            file_meta.last_log_id, meta.last_log_id
        )));
    }
    batch.put(
        Cf::SmMeta,
        LAST_APPLIED,
        serde_json::to_vec(&meta.last_log_id).map_err(|e| werr(&e))?,
    );
    batch.put(
        Cf::SmMeta,
        MEMBERSHIP,
        serde_json::to_vec(&meta.last_membership).map_err(|e| werr(&e))?,
    );
    store.write(batch, true).map_err(|e| werr(&e))?;
    let final_path = snapshot_path(dir, meta);
    fs::rename(path, &final_path).map_err(|e| werr(&e))?;
    sync_dir(dir).map_err(|e| werr(&e))?;
    replace_current(
        current,
        SnapshotFile {
            meta: meta.clone(),
            path: final_path,
        },
    );
    Ok(())
}

fn snapshot_path(dir: &Path, meta: &Meta) -> PathBuf {
    let index = meta.last_log_id.map_or(0, |l| l.index);
    dir.join(format!("{index:020}-{}.snap", meta.snapshot_id))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `new` the current snapshot and deletes the file of the one it replaces.
fn replace_current(current: &Mutex<Option<SnapshotFile>>, new: SnapshotFile) {
    let mut guard = current.lock().unwrap_or_else(|p| p.into_inner());
    // A slow build may finish after a newer snapshot was installed: keep the newer one.
    if guard
        .as_ref()
        .is_some_and(|old| old.meta.last_log_id > new.meta.last_log_id)
    {
        let _ = fs::remove_file(new.path);
        return;
    }
    if let Some(old) = guard.replace(new) {
        if Some(&old.path) != guard.as_ref().map(|n| &n.path) {
            let _ = fs::remove_file(old.path);
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let store = self.store.clone();
        let dir = self.dir.clone();
        let current = self.current.clone();
        let file = tokio::task::spawn_blocking(move || build_snapshot_file(&store, &dir, &current))
            .await
            .unwrap_or_else(|join| panic!("snapshot build task panicked: {join}"))?;
        let handle = tokio::fs::File::open(&file.path)
            .await
            .map_err(|e| snap_err(Some(&file.meta), ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(handle),
        })
    }
}

fn build_snapshot_file(
    store: &Store,
    dir: &Path,
    current: &Mutex<Option<SnapshotFile>>,
) -> Result<SnapshotFile, StorageError<NodeId>> {
    let werr = |e: &dyn std::fmt::Display| snap_err(None, ErrorVerb::Write, e);
    let tmp = dir.join(format!("build-{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut out = BufWriter::new(File::create(&tmp).map_err(|e| werr(&e))?);
    out.write_all(SNAPSHOT_MAGIC).map_err(|e| werr(&e))?;
    let mut last_applied: Option<LogId<NodeId>> = None;
    let mut membership = StoredMembership::<NodeId, NodeInfo>::default();
    // Meta and data come from the same point-in-time view.
    let dumped = store
        .dump(&Cf::STATE_MACHINE, |cf, k, v| {
            if cf == Cf::SmMeta && k == LAST_APPLIED {
                last_applied = serde_json::from_slice::<Option<LogId<NodeId>>>(v).map_err(std::io::Error::other)?;
            }
            if cf == Cf::SmMeta && k == MEMBERSHIP {
                membership = serde_json::from_slice(v).map_err(std::io::Error::other)?;
            }
            write_record(&mut out, cf.tag(), k, v)
        })
        .map_err(|e| werr(&e))?;
    dumped.map_err(|e| werr(&e))?;
    let meta = Meta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id: format!(
            "{}-{}-{}",
            last_applied.map_or(0, |l| l.leader_id.term),
            last_applied.map_or(0, |l| l.index),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let meta_json = serde_json::to_vec(&meta).map_err(|e| werr(&e))?;
    write_record(&mut out, TRAILER_TAG, b"meta", &meta_json).map_err(|e| werr(&e))?;
    let file = out.into_inner().map_err(|e| werr(&e))?;
    file.sync_all().map_err(|e| werr(&e))?;
    drop(file);
    let path = snapshot_path(dir, &meta);
    fs::rename(&tmp, &path).map_err(|e| werr(&e))?;
    sync_dir(dir).map_err(|e| werr(&e))?;
    let built = SnapshotFile { meta, path };
    replace_current(current, built.clone());
    Ok(built)
}

fn write_record(out: &mut impl Write, tag: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

/// Reads a snapshot file, calling `visit` for each record, and returns its metadata trailer.
fn read_snapshot_file(
    path: &Path,
    mut visit: impl FnMut(Cf, &[u8], &[u8]) -> std::io::Result<()>,
) -> std::io::Result<Meta> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("snapshot {}: {what}", path.display()),
        )
    };
    let mut input = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("not an ecsd snapshot"));
    }
    let read_chunk = |input: &mut BufReader<File>| -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        input.read_exact(&mut buf)?;
        Ok(buf)
    };
    loop {
        let mut tag = [0u8; 1];
        input
            .read_exact(&mut tag)
            .map_err(|_| bad("truncated: no metadata trailer"))?;
        let key = read_chunk(&mut input)?;
        let value = read_chunk(&mut input)?;
        if tag[0] == TRAILER_TAG {
            return serde_json::from_slice(&value).map_err(|e| bad(&e.to_string()));
        }
        let cf = Cf::from_tag(tag[0])
            .filter(|cf| Cf::STATE_MACHINE.contains(cf))
            .ok_or_else(|| bad("unknown record"))?;
        visit(cf, &key, &value)?;
    }
}
