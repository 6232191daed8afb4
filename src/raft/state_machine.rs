//! The state machine store: applies committed entries to RocksDB and builds and installs snapshots.
//!
//! Apply writes the data, `last_applied` and membership in one RocksDB batch. It is not synced on
//! its own: it shares the WAL with the log, whose synced writes make it durable, and after a crash
//! the log is re-applied from `last_applied`. A long run of entries handed over at once (after a
//! stall, or while catching up) is cut into batches of about 64 MiB of writes, each with its own
//! `last_applied`.
//!
//! Snapshots. Every `raft.snapshot_every` applied entries openraft asks for one. The builder
//! dumps the state-machine families from one RocksDB snapshot (so `last_applied` and the data
//! agree), through a fresh iterator every 4,096 keys (an iterator pins every memtable alive when
//! it was made), into a file in the format of `snapshot_file.rs`, then fsyncs it and its
//! directory. openraft streams it to a lagging follower in 1 MiB chunks over gRPC
//! `InstallSnapshot`, the bytes raw beside the JSON of the request.
//!
//! The follower keeps the file it received (durable, named `<index>-<id>.installing` until the
//! install completes), writes its records into one SST file per family (memory stays bounded
//! whatever the snapshot's size), then, under the exclusive side of [`StateView`]'s gate (every
//! read holds the shared side, so none sees a mix of old and new families), deletes the
//! families' contents, ingests the files and writes `last_applied` and the membership. A marker
//! in `raft_meta` (`sm_installing`, naming the file) is written before the swap and removed in
//! its last, synced batch: a node that starts with the marker set redoes the install from that
//! file. Without the marker, a `.installing` file is dropped (the swap never began) unless it is
//! the snapshot of the state's `last_applied` (the swap finished, the rename did not): then it
//! gets its `.snap` name. Only the newest `.snap` is kept at start. The log store does not purge
//! past what the state machine has reached (a watch fed by apply and install), so a crash in
//! between never leaves a node with neither the entries nor the state they built.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};

use tokio::sync::watch;

use super::log_store::Applied;
use super::{NodeId, NodeInfo, TypeConfig};
use crate::state::{apply_batch, BatchOutcome, KvError, KvRead, Mirrors, Row, Signals, Space, Txn};
use crate::storage::{crash_point, Batch, Cf, Store};

pub(super) const LAST_APPLIED: &[u8] = b"last_applied";
/// In the Raft metadata family (which an install leaves alone): the name of the snapshot file
/// whose install is under way. Present at startup, the install was cut short and is redone.
const INSTALLING: &[u8] = b"sm_installing";
/// The extension of a received snapshot file until its install is complete.
const STAGED: &str = "installing";
const MEMBERSHIP: &[u8] = b"membership";
/// State-owned keys in `sm_meta` carry this prefix, apart from the adapter's own keys.
const STATE_META_PREFIX: &[u8] = b"s/";
use super::snapshot_file::{self, Meta};

/// Read access to the replicated state as the API and `apply` see it.
///
/// Every read holds the gate's shared side: a snapshot install swaps the state-machine families
/// one at a time under its exclusive side, so no read sees a mix of old and new families.
#[derive(Clone)]
pub struct StateView {
    store: Store,
    gate: Arc<RwLock<()>>,
    /// The rows the state keeps in memory (kept by apply).
    mirrors: Arc<Mirrors>,
}

impl StateView {
    pub fn new(store: Store) -> Self {
        StateView {
            store,
            gate: Arc::default(),
            mirrors: Arc::default(),
        }
    }

    /// The rows the state mirrors in memory, as of the last applied entry (the container
    /// instances, read with `state::container_instances::all_mirrored` over this view).
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
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
        let _shared = self.shared();
        self.store.get(cf, &key).map_err(|e| KvError(e.to_string()))
    }

    fn scan(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        self.rows(space, from, to, limit, false)
    }

    fn scan_rev(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        self.rows(space, from, to, limit, true)
    }
}

impl StateView {
    /// [`KvRead::scan`] (or, `reverse`, [`KvRead::scan_rev`]) of the replica.
    fn rows(&self, space: Space, from: &[u8], to: &[u8], limit: usize, reverse: bool) -> Result<Vec<Row>, KvError> {
        let (cf, from) = Self::locate(space, from);
        let (_, to) = Self::locate(space, to);
        let _shared = self.shared();
        let rows = if reverse {
            self.store.scan_rev(cf, &from, &to, limit)
        } else {
            self.store.scan(cf, &from, &to, limit)
        }
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
///
/// A key's entry is dropped once nobody watches it: when the key is written, and, so that keys
/// never written cannot pile up (an agent session for an instance that never changes), by a
/// sweep whenever the map has doubled since the last one.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    watchers: Arc<Mutex<std::collections::BTreeMap<Vec<u8>, watch::Sender<u64>>>>,
    sweep_at: Arc<std::sync::atomic::AtomicUsize>,
}

/// The map's size below which no sweep runs.
const FEED_SWEEP_MIN: usize = 1024;

impl ChangeFeed {
    /// A receiver that changes whenever `key` is written by apply (or a snapshot is installed).
    pub fn subscribe(&self, key: Vec<u8>) -> watch::Receiver<u64> {
        use std::sync::atomic::Ordering;
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers.len() >= self.sweep_at.load(Ordering::Relaxed).max(FEED_SWEEP_MIN) {
            watchers.retain(|_, tx| tx.receiver_count() > 0);
            self.sweep_at.store(watchers.len() * 2, Ordering::Relaxed);
        }
        watchers.entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// How many keys have an entry (watched, or not yet swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).len()
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
    view: StateView,
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
        let installing = store.get(Cf::RaftMeta, INSTALLING).map_err(std::io::Error::other)?;
        let installing = installing.map(|name| dir.join(String::from_utf8_lossy(&name).as_ref()));
        let view = StateView::new(store.clone());
        if let Some(path) = &installing {
            // A crash cut an install short: the state-machine families may be part old, part
            // new. Redo it from the same file, which was made durable before the install began,
            // and then give the file its snapshot name.
            let meta = snapshot_file::read_meta(path)?;
            tracing::warn!(snapshot = %path.display(), "redoing a snapshot install that a restart interrupted");
            load_snapshot(&view, dir, &meta, path).map_err(std::io::Error::other)?;
            fs::rename(path, snapshot_path(dir, &meta))?;
            sync_dir(dir)?;
        }
        let applied = store.get(Cf::SmMeta, LAST_APPLIED).map_err(std::io::Error::other)?;
        let applied: Option<LogId<NodeId>> = match applied {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            None => None,
        };
        // Listed first: the loop renames files in the directory.
        let paths = fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut found: Vec<SnapshotFile> = Vec::new();
        for path in paths {
            match path.extension().and_then(|e| e.to_str()) {
                Some("snap") => found.push(SnapshotFile {
                    meta: snapshot_file::read_meta(&path)?,
                    path,
                }),
                // With no marker, an install either never began its swap (the file goes) or
                // finished it, and a crash came before the file got its snapshot name: then it
                // is the snapshot of the state, which openraft must find (the log may already be
                // purged up to it), so the install is finished here.
                Some(STAGED) => match snapshot_file::read_meta(&path) {
                    Ok(meta) if applied.is_some() && meta.last_log_id == applied => {
                        let named = snapshot_path(dir, &meta);
                        fs::rename(&path, &named)?;
                        sync_dir(dir)?;
                        found.push(SnapshotFile { meta, path: named });
                    }
                    _ => fs::remove_file(&path)?,
                },
                // Left by a build, a receive, or an install that never began its swap.
                Some("tmp") | Some("sst") => fs::remove_file(&path)?,
                _ => {}
            }
        }
        // The newest is current. Older ones are left when a crash came between an install or a
        // build and the removal of the snapshot it replaced: nothing would ever remove them.
        found.sort_by_key(|f| f.meta.last_log_id);
        let best = found.pop();
        for stale in found {
            fs::remove_file(&stale.path)?;
        }
        Ok(StateMachineStore {
            view,
            dir: dir.to_path_buf(),
            current: Arc::new(Mutex::new(best)),
            receiving: None,
            applied: watch::Sender::new(Applied {
                upto: applied,
                failed: false,
            }),
            feed: ChangeFeed::default(),
        })
    }

    /// The view of the state that reads through the install gate.
    pub fn view(&self) -> StateView {
        self.view.clone()
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
            .view
            .store
            .get(Cf::SmMeta, key)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| sm_err(ErrorVerb::Read, e)))
            .transpose()
    }
}

/// Once a batch of applied entries holds this many bytes of writes, it is written and the rest
/// go into another: memory stays bounded when openraft hands over a long run of entries at once
/// (after a stall, or when a follower catches up).
const APPLY_BATCH_BYTES: usize = 64 << 20;

fn apply_entries(
    view: &StateView,
    feed: &ChangeFeed,
    entries: Vec<openraft::Entry<TypeConfig>>,
) -> Result<Vec<BatchOutcome>, StorageError<NodeId>> {
    let mut replies = Vec::with_capacity(entries.len());
    let mut signals = Signals::default();
    let mut txn = Txn::new(view);
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
        if txn.written_bytes() >= APPLY_BATCH_BYTES {
            let full = std::mem::replace(&mut txn, Txn::new(view));
            write_applied(view, full, last_applied.take(), membership.take(), &mut signals)?;
        }
    }
    if last_applied.is_some() {
        write_applied(view, txn, last_applied, membership, &mut signals)?;
    }
    feed.notify(signals.into_keys().iter().map(Vec::as_slice));
    Ok(replies)
}

/// Writes `txn`'s writes with `last_applied` (and the membership, if one was applied) in one
/// batch, and notes which watchers they wake.
fn write_applied(
    view: &StateView,
    txn: Txn<'_>,
    last_applied: Option<LogId<NodeId>>,
    membership: Option<StoredMembership<NodeId, NodeInfo>>,
    signals: &mut Signals,
) -> Result<(), StorageError<NodeId>> {
    let mut batch = Batch::default();
    let mut mirrored: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for ((space, key), value) in txn.into_writes() {
        if space == Space::Data {
            signals.note(&key);
            if view.mirrors.covers(&key) {
                mirrored.push((key.clone(), value.clone()));
            }
        }
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
    view.store
        .write(batch, false)
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
    if !mirrored.is_empty() {
        view.mirrors
            .note(mirrored.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
    }
    Ok(())
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
        let view = self.view.clone();
        let feed = self.feed.clone();
        let result = tokio::task::spawn_blocking(move || apply_entries(&view, &feed, entries))
            .await
            .unwrap_or_else(|join| panic!("apply task panicked: {join}"));
        self.report(&result, upto);
        result
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.view.store.clone(),
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
        use std::os::unix::fs::MetadataExt;
        use tokio::io::AsyncSeekExt;
        let err = |e: std::io::Error| snap_err(Some(meta), ErrorVerb::Write, e);
        let mut source = *snapshot;
        // The file handed back is usually the one made for receiving: keep it (made durable)
        // rather than copy gigabytes. Any other file is copied into one of our own.
        let handed = source.metadata().await.map_err(err)?;
        let received = self.receiving.take();
        let is_received = match &received {
            Some(path) => fs::metadata(path).is_ok_and(|m| m.dev() == handed.dev() && m.ino() == handed.ino()),
            None => false,
        };
        let path = if let (true, Some(received)) = (is_received, &received) {
            source.sync_all().await.map_err(err)?;
            received.clone()
        } else {
            source.seek(std::io::SeekFrom::Start(0)).await.map_err(err)?;
            let path = self.dir.join(format!("install-{}.tmp", uuid::Uuid::new_v4().simple()));
            let mut copy = tokio::fs::File::create(&path).await.map_err(err)?;
            tokio::io::copy(&mut source, &mut copy).await.map_err(err)?;
            copy.sync_all().await.map_err(err)?;
            if let Some(received) = &received {
                let _ = tokio::fs::remove_file(received).await;
            }
            path
        };
        drop(source);
        crash_point("install:received");
        let view = self.view.clone();
        let dir = self.dir.clone();
        let current = self.current.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || install_snapshot_file(&view, &dir, &current, &meta, &path))
            .await
            .unwrap_or_else(|join| panic!("snapshot install task panicked: {join}"))
    }
}

fn install_snapshot_file(
    view: &StateView,
    dir: &Path,
    current: &Mutex<Option<SnapshotFile>>,
    meta: &Meta,
    path: &Path,
) -> Result<(), StorageError<NodeId>> {
    let werr = |e: &dyn std::fmt::Display| snap_err(Some(meta), ErrorVerb::Write, e);
    // Durable under a name of its own first: a restart that finds the install marker redoes the
    // install from this file. It becomes a `.snap` (one that openraft may be told about at the
    // next start) only once the state holds it.
    let final_path = snapshot_path(dir, meta);
    let staged = final_path.with_extension(STAGED);
    fs::rename(path, &staged).map_err(|e| werr(&e))?;
    sync_dir(dir).map_err(|e| werr(&e))?;
    crash_point("install:staged");
    let loaded = load_snapshot(view, dir, meta, &staged);
    if loaded.is_err() {
        // Unless a swap began (the marker is set, and a restart needs the file), drop it.
        if view.store.get(Cf::RaftMeta, INSTALLING).is_ok_and(|m| m.is_none()) {
            let _ = fs::remove_file(&staged);
        }
        return loaded;
    }
    fs::rename(&staged, &final_path).map_err(|e| werr(&e))?;
    sync_dir(dir).map_err(|e| werr(&e))?;
    crash_point("install:renamed");
    replace_current(
        current,
        SnapshotFile {
            meta: meta.clone(),
            path: final_path,
        },
    );
    Ok(())
}

/// Replaces the state-machine families with the snapshot file at `path`. The records go into
/// SST files (memory stays bounded whatever the snapshot's size), which then replace the
/// families, with `last_applied` and the membership written last. Readers of `view` wait out the
/// swap; a marker in the Raft metadata makes a restart redo a swap that a crash cut short.
fn load_snapshot(view: &StateView, dir: &Path, meta: &Meta, path: &Path) -> Result<(), StorageError<NodeId>> {
    let werr = |e: &dyn std::fmt::Display| snap_err(Some(meta), ErrorVerb::Write, e);
    let prefix = format!("load-{}", uuid::Uuid::new_v4().simple());
    let (file_meta, files) =
        crate::storage::write_sst_files(dir, &prefix, |sink| snapshot_file::read(path, sink)).map_err(|e| werr(&e))?;
    crash_point("install:sst-written");
    let remove_files = || {
        for (_, file) in &files {
            let _ = fs::remove_file(file);
        }
    };
    if file_meta.last_log_id != meta.last_log_id {
        remove_files();
        return Err(werr(&format!(
            "snapshot file is at {:?} but its metadata says {:?}",
            file_meta.last_log_id, meta.last_log_id
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut marker = Batch::default();
    marker.put(Cf::RaftMeta, INSTALLING, name.into_bytes());
    let mut last = Batch::default();
    last.put(
        Cf::SmMeta,
        LAST_APPLIED,
        serde_json::to_vec(&meta.last_log_id).map_err(|e| werr(&e))?,
    );
    last.put(
        Cf::SmMeta,
        MEMBERSHIP,
        serde_json::to_vec(&meta.last_membership).map_err(|e| werr(&e))?,
    );
    last.delete(Cf::RaftMeta, INSTALLING);
    let swapped = view.store.write(marker, true).and_then(|()| {
        crash_point("install:marker-written");
        let _exclusive = view.gate.write().unwrap_or_else(|p| p.into_inner());
        view.store.replace_with_files(&Cf::STATE_MACHINE, &files, last)
    });
    crash_point("install:swapped");
    // After the gate is released (a mirror load holds the mirror's lock, then the gate), and
    // before the install is reported applied.
    view.mirrors.reset();
    // Moved into the database on success; left over on failure.
    remove_files();
    swapped.map_err(|e| werr(&e))
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
    let meta = dump_to_file(store, &tmp).map_err(|e| werr(&e))?;
    let path = snapshot_path(dir, &meta);
    fs::rename(&tmp, &path).map_err(|e| werr(&e))?;
    sync_dir(dir).map_err(|e| werr(&e))?;
    let built = SnapshotFile { meta, path };
    replace_current(current, built.clone());
    Ok(built)
}

/// Writes the state machine in `store`, data and metadata from one point-in-time view, to a
/// new snapshot file at `path` (synced), and returns its metadata.
pub(super) fn dump_to_file(store: &Store, path: &Path) -> std::io::Result<Meta> {
    let out = BufWriter::new(File::create(path)?);
    let mut out = snapshot_file::Writer::new(out)?;
    let mut last_applied: Option<LogId<NodeId>> = None;
    let mut membership = StoredMembership::<NodeId, NodeInfo>::default();
    store
        .dump(&Cf::STATE_MACHINE, |cf, k, v| {
            if cf == Cf::SmMeta && k == LAST_APPLIED {
                last_applied = serde_json::from_slice::<Option<LogId<NodeId>>>(v).map_err(std::io::Error::other)?;
            }
            if cf == Cf::SmMeta && k == MEMBERSHIP {
                membership = serde_json::from_slice(v).map_err(std::io::Error::other)?;
            }
            out.record(cf, k, v)
        })
        .map_err(std::io::Error::other)??;
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
    let out = out.finish(&meta)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(meta)
}

/// Makes the snapshot file at `path` (metadata `meta`) the state of the empty store `store`,
/// with its snapshot directory `dir`, as an install from a leader would: `ecsd snapshot restore`.
pub(super) fn install_into(store: &Store, dir: &Path, meta: &Meta, path: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let view = StateView::new(store.clone());
    install_snapshot_file(&view, dir, &Mutex::new(None), meta, path).map_err(std::io::Error::other)
}

/// The key in the state's own meta space of a snapshot row, when it is one (not the adapter's
/// `last_applied` or membership).
pub(super) fn state_meta_key(cf: Cf, key: &[u8]) -> Option<&[u8]> {
    (cf == Cf::SmMeta)
        .then(|| key.strip_prefix(STATE_META_PREFIX))
        .flatten()
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_change_feed_forgets_keys_nobody_watches_any_more() {
        let feed = ChangeFeed::default();
        let kept = feed.subscribe(b"kept".to_vec());
        for i in 0..10 * FEED_SWEEP_MIN {
            // Subscribed and dropped at once: a session that ended before its key changed.
            drop(feed.subscribe(format!("gone/{i}").into_bytes()));
        }
        assert!(feed.len() <= 2 * FEED_SWEEP_MIN, "{} entries", feed.len());
        feed.notify([&b"kept"[..]].into_iter());
        assert_eq!(*kept.borrow(), 1, "a watched key still wakes its watcher");
    }
    use super::*;
    use crate::storage::{KeyValue, KEY_MAX};

    fn rows(store: &Store, cf: Cf) -> Vec<KeyValue> {
        store.scan(cf, b"", &KEY_MAX, usize::MAX).unwrap()
    }

    fn put_all(store: &Store, cf: Cf, pairs: &[(&str, &str)]) {
        let mut batch = Batch::default();
        for (k, v) in pairs {
            batch.put(cf, k.as_bytes().to_vec(), v.as_bytes().to_vec());
        }
        store.write(batch, false).unwrap();
    }

    /// Where a crash test's child process finds its node (set only in the child).
    const CRASH_DIR_ENV: &str = "ECSD_TEST_CRASH_DIR";
    const SIGABRT: i32 = 6;

    /// The steps of an install, in order, at whose ends the child dies, and whether the state
    /// after a restart is the snapshot's (the swap had begun: the marker was written) or the old one.
    const INSTALL_STEPS: [(&str, bool); 10] = [
        ("install:received", false),
        ("install:staged", false),
        ("install:sst-written", false),
        ("install:marker-written", true),
        ("replace:wiped", true),
        ("replace:ingested:sm_meta", true),
        ("replace:ingested:sm_dedupe", true),
        ("replace:ingested:ecs_data", true),
        ("install:swapped", true),
        ("install:renamed", true),
    ];

    /// A whole state: the rows of every state-machine family, and what `applied_state` reports.
    #[derive(Debug, Clone, PartialEq)]
    struct Side {
        rows: [Vec<(String, String)>; 3],
        applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, NodeInfo>,
    }

    /// The rows of the state-machine families, as text (for readable failures).
    fn state_rows(store: &Store) -> [Vec<(String, String)>; 3] {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Cf::STATE_MACHINE.map(|cf| rows(store, cf).iter().map(|(k, v)| (text(k), text(v))).collect())
    }

    fn membership_at(applied: LogId<NodeId>, ids: &[NodeId]) -> StoredMembership<NodeId, NodeInfo> {
        let nodes: std::collections::BTreeMap<NodeId, NodeInfo> = ids
            .iter()
            .map(|id| {
                let info = NodeInfo {
                    rpc_addr: format!("10.0.0.{id}:7000"),
                    api_addr: format!("10.0.0.{id}:8000"),
                };
                (*id, info)
            })
            .collect();
        let voters = ids.iter().copied().collect();
        StoredMembership::new(Some(applied), openraft::Membership::new(vec![voters], nodes))
    }

    /// Writes a whole state-machine state into `store`, as apply would have left it.
    fn write_side(store: &Store, tag: &str, data: &[&str], applied: LogId<NodeId>, ids: &[NodeId]) -> Side {
        let membership = membership_at(applied, ids);
        let mut batch = Batch::default();
        for key in data {
            batch.put(Cf::Data, key.as_bytes().to_vec(), format!("{tag}-{key}").into_bytes());
        }
        batch.put(Cf::SmDedupe, format!("r/{tag}"), tag);
        batch.put(Cf::SmDedupe, format!("t/{tag}"), "");
        batch.put(Cf::SmMeta, [STATE_META_PREFIX, b"applied_ts"].concat(), tag);
        batch.put(Cf::SmMeta, LAST_APPLIED, serde_json::to_vec(&Some(applied)).unwrap());
        batch.put(Cf::SmMeta, MEMBERSHIP, serde_json::to_vec(&membership).unwrap());
        store.write(batch, false).unwrap();
        Side {
            rows: state_rows(store),
            applied: Some(applied),
            membership,
        }
    }

    /// Receives the snapshot file `source` the way openraft hands one over, and installs it.
    fn receive_and_install(sm: &mut StateMachineStore, source: &Path, meta: &Meta) {
        use tokio::io::AsyncWriteExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut file = sm.begin_receiving_snapshot().await.unwrap();
            file.write_all(&fs::read(source).unwrap()).await.unwrap();
            file.flush().await.unwrap();
            sm.install_snapshot(meta, file).await.unwrap();
        });
    }

    /// Checks that the node holds exactly `side`, with no install marker, no leftover file and
    /// the side's snapshot as its current one.
    fn assert_holds(store: &Store, sm: &mut StateMachineStore, snapshots: &Path, side: &Side, when: &str) {
        assert_eq!(
            state_rows(store),
            side.rows,
            "{when}: the state-machine families hold another state (or a mix)"
        );
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (applied, membership) = runtime.block_on(sm.applied_state()).unwrap();
        assert_eq!(
            (applied, membership),
            (side.applied, side.membership.clone()),
            "{when}: last_applied and membership"
        );
        assert_eq!(
            *sm.applied.borrow(),
            Applied {
                upto: side.applied,
                failed: false
            },
            "{when}: the purge gate"
        );
        assert_eq!(store.get(Cf::RaftMeta, INSTALLING).unwrap(), None, "{when}: marker");
        assert_eq!(
            rows(store, Cf::RaftLog),
            vec![(b"log".to_vec(), b"kept".to_vec())],
            "{when}: the log is not the state machine's"
        );
        let current = sm.current.lock().unwrap().clone();
        let current = current.unwrap_or_else(|| panic!("{when}: no current snapshot"));
        assert_eq!(
            current.meta.last_log_id, side.applied,
            "{when}: the current snapshot is not the state's"
        );
        let mut files: Vec<PathBuf> = fs::read_dir(snapshots).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert_eq!(
            files,
            vec![current.path],
            "{when}: files left in the snapshot directory"
        );
    }

    /// The child's side of the crash test: installs the prepared snapshot, and is expected to
    /// abort at the step named by `CRASH_AT_ENV`.
    fn install_in_crashing_child(dir: &Path) {
        let store = Store::open(&dir.join("db")).unwrap();
        let mut sm = StateMachineStore::open(store, &dir.join("snapshots")).unwrap();
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap()).unwrap();
        receive_and_install(&mut sm, &dir.join("source.snap"), &meta);
    }

    #[test]
    fn a_crash_at_each_step_of_an_install_leaves_the_old_or_the_new_state_and_the_install_completes() {
        if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
            install_in_crashing_child(Path::new(&dir));
            return;
        }
        use std::os::unix::process::ExitStatusExt;
        let log_id = |term, index| LogId::new(openraft::CommittedLeaderId::new(term, 1), index);
        // The snapshot: another state, further on, with another membership. Key `a` is in both
        // states with different values, so any mix of the two shows.
        let source_dir = tempfile::tempdir().unwrap();
        let source = Store::open(&source_dir.path().join("db")).unwrap();
        let new_side = write_side(&source, "new", &["a", "b", "d"], log_id(3, 42), &[1, 2, 3, 4]);
        let built = build_snapshot_file(&source, source_dir.path(), &Mutex::new(None)).unwrap();
        let test_name = format!(
            "{}::a_crash_at_each_step_of_an_install_leaves_the_old_or_the_new_state_and_the_install_completes",
            module_path!().split_once("::").unwrap().1
        );
        for (step, swap_began) in INSTALL_STEPS {
            // A node with its own state and a snapshot of it.
            let dir = tempfile::tempdir().unwrap();
            let snapshots = dir.path().join("snapshots");
            let store = Store::open(&dir.path().join("db")).unwrap();
            let old_side = write_side(&store, "old", &["a", "c", "z"], log_id(1, 10), &[1, 2, 3]);
            put_all(&store, Cf::RaftLog, &[("log", "kept")]);
            let sm = StateMachineStore::open(store.clone(), &snapshots).unwrap();
            build_snapshot_file(&store, &snapshots, &sm.current).unwrap();
            drop(sm);
            drop(store);
            fs::copy(&built.path, dir.path().join("source.snap")).unwrap();
            fs::write(dir.path().join("meta.json"), serde_json::to_vec(&built.meta).unwrap()).unwrap();

            // The child process installs it and dies (SIGABRT, no unwinding, no cleanup) at the step.
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([test_name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CRASH_DIR_ENV, dir.path())
                .env(crate::storage::CRASH_AT_ENV, step)
                .output()
                .unwrap();
            assert_eq!(
                child.status.signal(),
                Some(SIGABRT),
                "{step}: the child did not die at the step: {:?}\n{}{}",
                child.status,
                String::from_utf8_lossy(&child.stdout),
                String::from_utf8_lossy(&child.stderr)
            );

            // The restart finds the old state whole or the new one whole (redoing the swap).
            let store = Store::open(&dir.path().join("db")).unwrap();
            let mut sm = StateMachineStore::open(store.clone(), &snapshots).unwrap();
            let expected = if swap_began { &new_side } else { &old_side };
            assert_holds(
                &store,
                &mut sm,
                &snapshots,
                expected,
                &format!("{step}: after the restart"),
            );
            if !swap_began {
                // The leader sends the snapshot again: this time the install completes.
                receive_and_install(&mut sm, &dir.path().join("source.snap"), &built.meta);
                assert_holds(
                    &store,
                    &mut sm,
                    &snapshots,
                    &new_side,
                    &format!("{step}: after a new install"),
                );
            }
            drop(sm);
            let mut sm = StateMachineStore::open(store.clone(), &snapshots).unwrap();
            assert_holds(
                &store,
                &mut sm,
                &snapshots,
                &new_side,
                &format!("{step}: after another restart"),
            );
        }
    }

    #[test]
    fn a_snapshot_replaces_the_state_and_an_interrupted_install_is_redone_at_open() {
        let source_dir = tempfile::tempdir().unwrap();
        let source = Store::open(&source_dir.path().join("db")).unwrap();
        put_all(&source, Cf::Data, &[("a", "1"), ("b", "2")]);
        put_all(&source, Cf::SmDedupe, &[("r/x", "done")]);
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42));
        let mut batch = Batch::default();
        batch.put(Cf::SmMeta, LAST_APPLIED, serde_json::to_vec(&applied).unwrap());
        source.write(batch, false).unwrap();
        let built = build_snapshot_file(&source, source_dir.path(), &Mutex::new(None)).unwrap();
        assert_eq!(built.meta.last_log_id, applied);
        // The footer finds the metadata; a file without one (an earlier version's) is read whole.
        assert_eq!(snapshot_file::read_meta(&built.path).unwrap(), built.meta);
        let bytes = fs::read(&built.path).unwrap();
        let unfooted = source_dir.path().join("old.snap");
        fs::write(&unfooted, &bytes[..bytes.len() - 16]).unwrap();
        assert_eq!(snapshot_file::read_meta(&unfooted).unwrap(), built.meta);

        // A node with other state receives it.
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        let store = Store::open(&dir.path().join("db")).unwrap();
        put_all(&store, Cf::Data, &[("c", "3"), ("z", "9")]);
        put_all(&store, Cf::RaftLog, &[("log", "kept")]);
        let sm = StateMachineStore::open(store.clone(), &snapshots).unwrap();
        let received = snapshots.join("recv-test.tmp");
        fs::copy(&built.path, &received).unwrap();
        install_snapshot_file(&sm.view(), &snapshots, &sm.current, &built.meta, &received).unwrap();
        let expected = vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())];
        assert_eq!(rows(&store, Cf::Data), expected);
        assert_eq!(rows(&store, Cf::SmDedupe), vec![(b"r/x".to_vec(), b"done".to_vec())]);
        assert_eq!(rows(&store, Cf::RaftLog), vec![(b"log".to_vec(), b"kept".to_vec())]);
        assert_eq!(
            sm.read_meta::<Option<LogId<NodeId>>>(LAST_APPLIED).unwrap(),
            Some(applied)
        );
        assert_eq!(store.get(Cf::RaftMeta, INSTALLING).unwrap(), None);
        let current = sm.current.lock().unwrap().clone().unwrap();
        assert!(current.path.exists());
        // Only the snapshot itself is left in the directory: no received copy, no SST file.
        assert_eq!(fs::read_dir(&snapshots).unwrap().count(), 1);

        // A crash in the middle of a swap left the families half replaced, with the marker.
        put_all(&store, Cf::Data, &[("a", "torn"), ("q", "torn")]);
        let staged = current.path.with_extension(STAGED);
        fs::rename(&current.path, &staged).unwrap();
        let name = staged.file_name().unwrap().to_string_lossy().into_owned();
        put_all(
            &store,
            Cf::RaftMeta,
            &[(std::str::from_utf8(INSTALLING).unwrap(), &name)],
        );
        drop(sm);
        let sm = StateMachineStore::open(store.clone(), &snapshots).unwrap();
        assert_eq!(rows(&store, Cf::Data), expected);
        assert_eq!(store.get(Cf::RaftMeta, INSTALLING).unwrap(), None);
        // The file is a snapshot again, and the current one.
        assert_eq!(
            sm.current.lock().unwrap().as_ref().map(|c| c.path.clone()),
            Some(current.path.clone())
        );
        assert_eq!(
            *sm.applied.borrow(),
            Applied {
                upto: applied,
                failed: false
            }
        );
    }
}
